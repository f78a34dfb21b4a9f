//! Sealing credential secrets at rest: authenticated encryption under the credentials
//! key from the configuration.
//!
//! A TOTP secret must be readable by the server (it computes the codes), so it cannot be
//! hashed like a password; it is encrypted instead, with XChaCha20-Poly1305 under a key
//! kept outside the store. The account's user id is the associated data, so a sealed
//! secret copied into another account's record does not open: someone able to write the
//! store still cannot give their own authenticator to a victim's account.
//!
//! Sealed layout: one version byte, the 24-byte random nonce, then ciphertext and tag.
//! The version byte leaves room for a later key rotation or algorithm change without
//! guessing what old records are.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::config::{decode_key_text, CredentialsKey, KeyTextError, CREDENTIALS_KEY_LEN};

/// The first byte of every sealed value made by this version.
const VERSION: u8 = 1;
/// XChaCha20's nonce length. Its 192 bits make random nonces safe for any number of
/// seals under one key, which is why XChaCha20 is used rather than ChaCha20.
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error("cannot read the credentials key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the credentials key file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the credentials key file {path} holds {len} bytes; it must hold {CREDENTIALS_KEY_LEN} raw bytes or their base64")]
    BadFile { path: PathBuf, len: usize },
    #[error("security.credentials_key {0}")]
    BadInline(KeyTextError),
    #[error("the secret is too long to seal")]
    TooLong,
}

/// The key that seals credential secrets. Its `Debug` shows nothing of the key.
pub struct SealingKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

impl SealingKey {
    /// Reads the key the configuration names. A key file that does not exist yet is
    /// created with 32 random bytes, readable by the owner only. Blocking (file I/O).
    pub fn load(source: &CredentialsKey) -> Result<SealingKey, SealingError> {
        match source {
            CredentialsKey::Inline(text) => decode_key_text(text.expose())
                .map(|key| SealingKey::from_bytes(&key))
                .map_err(SealingError::BadInline),
            CredentialsKey::File(path) => load_or_create(path).map(|k| SealingKey::from_bytes(&k)),
        }
    }

    /// Reads the key the configuration names, like [`load`](Self::load), but never
    /// creates a key file: a missing one is an error (`usher store copy` checks that a
    /// target opens the source's secrets, and must not mint a key doing so).
    pub fn load_existing(source: &CredentialsKey) -> Result<SealingKey, SealingError> {
        match source {
            CredentialsKey::File(path) => read_key_file(path).map(|k| SealingKey::from_bytes(&k)),
            inline => Self::load(inline),
        }
    }

    pub fn from_bytes(key: &[u8; CREDENTIALS_KEY_LEN]) -> SealingKey {
        SealingKey {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Encrypts `plaintext`, bound to `associated_data` (the user id for credentials).
    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: associated_data,
        };
        // The only failure is a plaintext beyond the cipher's limit (about 256 GiB).
        let ciphertext = self
            .cipher
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SealingError::TooLong)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`seal`](Self::seal) made with the same key and associated data;
    /// `None` for anything else (other key, other account, tampered, truncated).
    pub fn open(&self, sealed: &[u8], associated_data: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let payload = Payload {
            msg: ciphertext,
            aad: associated_data,
        };
        self.cipher.decrypt(&XNonce::from(nonce), payload).ok()
    }
}

/// The key in `path`: 32 raw bytes, or base64 of them (what `openssl rand -base64 32 >
/// file` writes). Created when missing.
fn load_or_create(path: &Path) -> Result<[u8; CREDENTIALS_KEY_LEN], SealingError> {
    match read_key_file(path) {
        Err(SealingError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {
            create_key_file(path)
        }
        other => other,
    }
}

fn read_key_file(path: &Path) -> Result<[u8; CREDENTIALS_KEY_LEN], SealingError> {
    let read_error = |source| SealingError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(read_error)?;
    warn_if_readable_by_others(path);
    if let Ok(key) = <[u8; CREDENTIALS_KEY_LEN]>::try_from(bytes.as_slice()) {
        return Ok(key);
    }
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| decode_key_text(text).ok())
        .ok_or(SealingError::BadFile {
            path: path.to_path_buf(),
            len: bytes.len(),
        })
}

fn create_key_file(path: &Path) -> Result<[u8; CREDENTIALS_KEY_LEN], SealingError> {
    let create_error = |source| SealingError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(create_error)?;
    }
    let mut key = [0u8; CREDENTIALS_KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let mut options = OpenOptions::new();
    // `create_new` never overwrites: replacing an existing key would make every sealed
    // secret unreadable. Two servers cannot race here, since sled locks the store folder.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(create_error)?;
    // Durable before any secret is sealed under it, or a crash could lose the key
    // while the store keeps what it sealed.
    file.write_all(&key)
        .and_then(|()| file.sync_all())
        .map_err(create_error)?;
    tracing::info!(path = %path.display(), "created a new credentials key; back it up");
    Ok(key)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the credentials key file can be read by other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn key() -> SealingKey {
        SealingKey::from_bytes(&[7; 32])
    }

    #[test]
    fn sealed_secrets_open_only_for_their_account_and_key() {
        let sealed = key().seal(b"totp secret", b"user-1").unwrap();
        assert_eq!(key().open(&sealed, b"user-1").unwrap(), b"totp secret");
        assert!(key().open(&sealed, b"user-2").is_none());
        assert!(SealingKey::from_bytes(&[8; 32])
            .open(&sealed, b"user-1")
            .is_none());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key().open(&tampered, b"user-1").is_none());
        assert!(key().open(&sealed[..10], b"user-1").is_none());
        assert!(key().open(&[], b"user-1").is_none());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let a = key().seal(b"same", b"u").unwrap();
        let b = key().seal(b"same", b"u").unwrap();
        assert_ne!(a, b);
        assert_eq!(a[0], VERSION);
        // Version, nonce, plaintext, 16-byte tag: the secret is not stored in the clear.
        assert_eq!(a.len(), 1 + NONCE_LEN + 4 + 16);
        assert!(!a.windows(4).any(|w| w == b"same"));
    }

    #[test]
    fn debug_shows_nothing_of_the_key() {
        assert_eq!(format!("{:?}", key()), "SealingKey(***)");
    }

    #[test]
    fn a_missing_key_file_is_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("credentials.key");
        let source = CredentialsKey::File(path.clone());
        let first = SealingKey::load(&source).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = first.seal(b"s", b"u").unwrap();
        let again = SealingKey::load(&source).unwrap();
        assert_eq!(again.open(&sealed, b"u").unwrap(), b"s");
    }

    #[test]
    fn key_files_hold_raw_bytes_or_base64_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, [7u8; 32]).unwrap();
        let text = dir.path().join("text.key");
        std::fs::write(&text, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap();
        let sealed = key().seal(b"s", b"u").unwrap();
        for path in [raw, text] {
            let loaded = SealingKey::load(&CredentialsKey::File(path)).unwrap();
            assert_eq!(loaded.open(&sealed, b"u").unwrap(), b"s");
        }
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, b"too short").unwrap();
        let err = SealingKey::load(&CredentialsKey::File(bad.clone())).unwrap_err();
        assert!(matches!(err, SealingError::BadFile { len: 9, .. }), "{err}");
        // A bad key file is an error, never silently replaced.
        assert_eq!(std::fs::read(&bad).unwrap(), b"too short");
    }

    #[test]
    fn an_inline_key_is_decoded() {
        let inline =
            CredentialsKey::Inline(Secret::new("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="));
        let sealed = key().seal(b"s", b"u").unwrap();
        assert_eq!(
            SealingKey::load(&inline)
                .unwrap()
                .open(&sealed, b"u")
                .unwrap(),
            b"s"
        );
        let short = CredentialsKey::Inline(Secret::new("c2hvcnQ="));
        assert!(matches!(
            SealingKey::load(&short),
            Err(SealingError::BadInline(KeyTextError::WrongLength(5)))
        ));
    }
}
