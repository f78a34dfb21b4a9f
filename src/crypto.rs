//! Small cryptographic helpers shared by every layer: random tokens, hashes of tokens,
//! time-prefixed ids and the clock type passed into the core.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS generator, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A random id that sorts by creation time: 8 bytes of big-endian seconds (hex) then
/// 16 random bytes. Expiry sweeps walk these in order.
pub fn time_prefixed_id(now: u64) -> String {
    format!("{now:016x}{}", random_token(16))
}

/// A new account id: `u_`, the wall-clock time in milliseconds (12 hex digits), and
/// random characters. Lists order accounts by creation second, then id, so within one
/// second an account made later sorts later, and a new account never lands before one
/// a client has already paged past.
pub fn account_id() -> String {
    ordered_id("u_")
}

/// `prefix`, the wall-clock time in milliseconds (12 hex digits) and random
/// characters: ids that sort in creation order within one second (accounts, groups).
pub fn ordered_id(prefix: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{prefix}{:012x}{}", ms & 0xffff_ffff_ffff, random_token(12))
}

/// The creation time encoded in a [`time_prefixed_id`], if it has one.
pub fn id_time(id: &str) -> Option<u64> {
    id.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// SHA-256 of a token, base64url. Tokens are stored only by this hash, so a copy of the
/// store gives no usable codes or refresh tokens.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Base64url (no padding) of SHA-256: PKCE S256 and `at_hash` both start from this.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Seconds since the Unix epoch. Only the web shell and the CLI read the clock; the
/// core receives `now` as an argument.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_time_and_differ() {
        let a = time_prefixed_id(1_700_000_000);
        let b = time_prefixed_id(1_700_000_000);
        assert_ne!(a, b);
        assert_eq!(id_time(&a), Some(1_700_000_000));
    }

    #[test]
    fn tokens_have_the_requested_entropy() {
        // 32 bytes → 43 base64url characters.
        assert_eq!(random_token(32).len(), 43);
        assert_ne!(random_token(32), random_token(32));
    }
}
