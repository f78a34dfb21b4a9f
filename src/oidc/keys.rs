//! Signing keys: generated on first start, kept in the store, published as a JWKS.
//!
//! One active key per algorithm (RS256, ES256, EdDSA); an app picks its algorithm and
//! gets the key of that kind. Every stored key stays published, so tokens signed before
//! a rotation still verify until they expire.
//!
//! Several nodes share the keys through the store. The first key of an algorithm has a
//! kid every node derives alike (from a store secret) and is written only if absent, so
//! nodes starting together on an empty database end with one key, not one each. A key
//! added later (`usher keys rotate`) is published at once but signs only after
//! [`PUBLISH_LEAD_SECONDS`]: every node reloads the keys every
//! [`RELOAD_SECONDS`] and clients cache the JWKS for at most its `max-age`, so by then
//! every node publishes it and every client that refetches sees it.
//!
//! Private keys are parsed once, at load, and tokens are signed with the parsed keys
//! directly: handing DER to a JOSE library would parse it again for every signature,
//! which for RSA (key checks and CRT precomputation) costs more than the signature.
//! RS256 and ES256 signatures are made with `ring` (already linked for TLS), whose
//! assembly is several times faster than the portable RustCrypto code, which stays as
//! the fallback for a stored key `ring` refuses; EdDSA uses `ed25519-dalek`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::PublicKeyParts;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::SigningAlg;
use crate::crypto::{b64url, random_token};
use crate::store::{KeyStore, StoreError, StoredKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored {alg} key {kid} cannot be read: {reason}")]
    BadKey {
        kid: String,
        alg: String,
        reason: String,
    },
    #[error("cannot generate a {0} key: {1}")]
    Generate(&'static str, String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A parsed private key, ready to sign.
enum Signer {
    RingRs256(Box<ring::signature::RsaKeyPair>),
    RingEs256(Box<ring::signature::EcdsaKeyPair>),
    Rs256(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
    Es256(Box<p256::ecdsa::SigningKey>),
    EdDsa(Box<ed25519_dalek::SigningKey>),
}

fn ring_failed(_: ring::error::Unspecified) -> KeyError {
    KeyError::Sign("the signature could not be made".into())
}

impl Signer {
    fn rs256(der: &[u8], key: rsa::RsaPrivateKey) -> Signer {
        match ring::signature::RsaKeyPair::from_der(der) {
            Ok(pair) => Signer::RingRs256(Box::new(pair)),
            Err(_) => Signer::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(key))),
        }
    }

    fn es256(der: &[u8], key: p256::SecretKey) -> Signer {
        let rng = ring::rand::SystemRandom::new();
        match ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &rng,
        ) {
            Ok(pair) => Signer::RingEs256(Box::new(pair)),
            Err(_) => Signer::Es256(Box::new(p256::ecdsa::SigningKey::from(key))),
        }
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(match self {
            // ring blinds RSA and draws ECDSA nonces from the OS generator.
            Signer::RingRs256(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    input,
                    &mut sig,
                )
                .map_err(ring_failed)?;
                sig
            }
            Signer::RingEs256(k) => k
                .sign(&ring::rand::SystemRandom::new(), input)
                .map_err(ring_failed)?
                .as_ref()
                .to_vec(),
            // Blinded with fresh randomness, as RSA signing must be against timing.
            Signer::Rs256(k) => k
                .try_sign_with_rng(&mut rand::rngs::OsRng, input)
                .map_err(|e| KeyError::Sign(e.to_string()))?
                .to_vec(),
            // RFC 6979 deterministic nonces; JWS wants the fixed-size `r || s`.
            Signer::Es256(k) => {
                let sig: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::try_sign(k.as_ref(), input)
                        .map_err(|e| KeyError::Sign(e.to_string()))?;
                sig.to_bytes().to_vec()
            }
            Signer::EdDsa(k) => ed25519_dalek::Signer::sign(k.as_ref(), input)
                .to_bytes()
                .to_vec(),
        })
    }
}

struct Key {
    kid: String,
    alg: SigningAlg,
    created_at: u64,
    signer: Signer,
    decoding: DecodingKey,
    jwk: Value,
}

/// How often a node reads the keys from the store again.
pub const RELOAD_SECONDS: u64 = 60;

/// How long the JWKS may be cached (`Cache-Control: max-age` of `/jwks`).
pub const JWKS_MAX_AGE_SECONDS: u64 = 300;

/// How long a new key is only published before it signs: longer than a node's reload
/// interval plus a client's JWKS cache lifetime, with margin.
pub const PUBLISH_LEAD_SECONDS: u64 = 2 * (RELOAD_SECONDS + JWKS_MAX_AGE_SECONDS);

/// The server's signing keys.
pub struct Keys {
    keys: Vec<Key>,
    /// The kid that signs, per algorithm, as chosen when the set was loaded.
    signing: Vec<(SigningAlg, String)>,
}

/// The keys in use, swapped whole when a reload finds the set or the signing choice
/// changed; a request takes one snapshot.
pub struct KeyRing {
    current: std::sync::RwLock<std::sync::Arc<Keys>>,
}

impl KeyRing {
    pub fn new(keys: Keys) -> KeyRing {
        KeyRing {
            current: std::sync::RwLock::new(std::sync::Arc::new(keys)),
        }
    }

    pub fn current(&self) -> std::sync::Arc<Keys> {
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Read the keys from the store again; `true` if what is published or what signs
    /// changed.
    pub async fn reload(&self, store: &dyn KeyStore, now: u64) -> Result<bool, KeyError> {
        let fresh = Keys::load(store, now).await?;
        let old = self.current();
        if old.jwks() == fresh.jwks() && old.signing == fresh.signing {
            return Ok(false);
        }
        match self.current.write() {
            Ok(mut w) => *w = std::sync::Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = std::sync::Arc::new(fresh),
        }
        Ok(true)
    }
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::Rs256 => Algorithm::RS256,
        SigningAlg::Es256 => Algorithm::ES256,
        SigningAlg::EdDsa => Algorithm::EdDSA,
    }
}

fn parse_alg(s: &str) -> Option<SigningAlg> {
    match s {
        "RS256" => Some(SigningAlg::Rs256),
        "ES256" => Some(SigningAlg::Es256),
        "EdDSA" => Some(SigningAlg::EdDsa),
        _ => None,
    }
}

fn generate(alg: SigningAlg, now: u64) -> Result<StoredKey, KeyError> {
    let mut rng = rand::rngs::OsRng;
    let der = match alg {
        SigningAlg::Rs256 => rsa::RsaPrivateKey::new(&mut rng, 2048)
            .and_then(|k| k.to_pkcs1_der().map_err(rsa::Error::from))
            .map_err(|e| KeyError::Generate("RS256", e.to_string()))?
            .as_bytes()
            .to_vec(),
        SigningAlg::Es256 => p256::SecretKey::random(&mut rng)
            .to_pkcs8_der()
            .map_err(|e| KeyError::Generate("ES256", e.to_string()))?
            .as_bytes()
            .to_vec(),
        SigningAlg::EdDsa => ed25519_dalek::SigningKey::generate(&mut rng)
            .to_pkcs8_der()
            .map_err(|e| KeyError::Generate("EdDSA", e.to_string()))?
            .as_bytes()
            .to_vec(),
    };
    Ok(StoredKey {
        // The kid says which algorithm and when, plus randomness against collisions.
        kid: format!("{}-{now}-{}", alg.as_str().to_lowercase(), random_token(6)),
        alg: alg.as_str().to_string(),
        pkcs8_der: der,
        created_at: now,
    })
}

fn load(stored: &StoredKey) -> Result<Key, KeyError> {
    let bad = |reason: String| KeyError::BadKey {
        kid: stored.kid.clone(),
        alg: stored.alg.clone(),
        reason,
    };
    let alg = parse_alg(&stored.alg).ok_or_else(|| bad("unknown algorithm".into()))?;
    let der = &stored.pkcs8_der;
    let (signer, decoding, mut jwk) = match alg {
        SigningAlg::Rs256 => {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| bad(e.to_string()))?;
            let n = key.n().to_bytes_be();
            let e = key.e().to_bytes_be();
            (
                Signer::rs256(der, key),
                DecodingKey::from_rsa_raw_components(&n, &e),
                json!({ "kty": "RSA", "n": b64url(&n), "e": b64url(&e) }),
            )
        }
        SigningAlg::Es256 => {
            let key = p256::SecretKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?;
            let point = key.public_key().to_encoded_point(false);
            let (x, y) = match (point.x(), point.y()) {
                (Some(x), Some(y)) => (b64url(x), b64url(y)),
                _ => return Err(bad("public point is not affine".into())),
            };
            let decoding =
                DecodingKey::from_ec_components(&x, &y).map_err(|e| bad(e.to_string()))?;
            (
                Signer::es256(der, key),
                decoding,
                json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
            )
        }
        SigningAlg::EdDsa => {
            let key =
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?;
            let x = b64url(key.verifying_key().as_bytes());
            let decoding = DecodingKey::from_ed_components(&x).map_err(|e| bad(e.to_string()))?;
            (
                Signer::EdDsa(Box::new(key)),
                decoding,
                json!({ "kty": "OKP", "crv": "Ed25519", "x": x }),
            )
        }
    };
    jwk["kid"] = json!(stored.kid);
    jwk["alg"] = json!(alg.as_str());
    jwk["use"] = json!("sig");
    Ok(Key {
        kid: stored.kid.clone(),
        alg,
        created_at: stored.created_at,
        signer,
        decoding,
        jwk,
    })
}

const ALGS: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];

impl Keys {
    /// Load every stored key, generating (and storing) one for each algorithm that has
    /// none yet. Generation is slow (RSA): call this at start-up, not on a request.
    /// Nodes doing this at once on one store end with the same keys: a first key's kid
    /// is derived from a store secret and the key is written only if that kid is free,
    /// then everyone reads back what landed.
    pub async fn load_or_generate(store: &dyn KeyStore, now: u64) -> Result<Keys, KeyError> {
        let stored = store.signing_keys().await?;
        let missing: Vec<SigningAlg> = ALGS
            .into_iter()
            .filter(|alg| !stored.iter().any(|k| k.alg == alg.as_str()))
            .collect();
        if !missing.is_empty() {
            let seed = store
                .secret("signing-key-ids", &|| random_token(6).into_bytes())
                .await?;
            let seed = String::from_utf8_lossy(&seed).into_owned();
            for alg in missing {
                let mut key = generate(alg, now)?;
                key.kid = format!("{}-{seed}", alg.as_str().to_lowercase());
                store.add_signing_key(&key).await?;
            }
        }
        Self::load(store, now).await
    }

    /// The stored keys as they are (a reload; nothing is generated).
    pub async fn load(store: &dyn KeyStore, now: u64) -> Result<Keys, KeyError> {
        Self::from_stored(store.signing_keys().await?, now)
    }

    fn from_stored(mut stored: Vec<StoredKey>, now: u64) -> Result<Keys, KeyError> {
        // A stable order, so the JWKS does not shuffle between restarts or nodes.
        stored.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        let keys = stored.iter().map(load).collect::<Result<Vec<_>, _>>()?;
        let signing = ALGS
            .into_iter()
            .filter_map(|alg| {
                let of_alg = keys.iter().filter(|k| k.alg == alg);
                // The newest key that every node has published for long enough; before
                // any has (a first start), the oldest, which every node picks alike.
                let published = of_alg
                    .clone()
                    .filter(|k| k.created_at.saturating_add(PUBLISH_LEAD_SECONDS) <= now)
                    .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
                let chosen = published.or_else(|| {
                    of_alg.min_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
                })?;
                Some((alg, chosen.kid.clone()))
            })
            .collect();
        Ok(Keys { keys, signing })
    }

    /// Add a new key of `alg` to the store (a rotation): published by every node
    /// within [`RELOAD_SECONDS`], signing after [`PUBLISH_LEAD_SECONDS`].
    pub async fn rotate(
        store: &dyn KeyStore,
        alg: SigningAlg,
        now: u64,
    ) -> Result<StoredKey, KeyError> {
        let key = generate(alg, now)?;
        store.add_signing_key(&key).await?;
        Ok(key)
    }

    /// The stored keys with what each does now, for `usher keys list`: (kid, alg,
    /// created at, signing).
    pub fn summary(&self) -> Vec<(String, &'static str, u64, bool)> {
        self.keys
            .iter()
            .map(|k| {
                let signing = self.signing.iter().any(|(_, kid)| kid == &k.kid);
                (k.kid.clone(), k.alg.as_str(), k.created_at, signing)
            })
            .collect()
    }

    /// The key that signs for an algorithm.
    fn active(&self, alg: SigningAlg) -> Option<&Key> {
        let (_, kid) = self.signing.iter().find(|(a, _)| *a == alg)?;
        self.keys.iter().find(|k| &k.kid == kid)
    }

    /// The public keys, for `/jwks`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    /// Sign `claims` as a compact JWS with the active key of `alg`.
    pub fn sign<T: Serialize>(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        let key = self
            .active(alg)
            .ok_or_else(|| KeyError::Sign(format!("no {} key", alg.as_str())))?;
        let header = json!({ "typ": typ, "alg": alg.as_str(), "kid": key.kid });
        let header = serde_json::to_vec(&header).map_err(|e| KeyError::Sign(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Sign(e.to_string()))?;
        let mut jws = b64url(&header);
        jws.push('.');
        jws.push_str(&b64url(&payload));
        let signature = key.signer.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&b64url(&signature));
        Ok(jws)
    }

    /// Verify a token this server signed: known `kid`, matching algorithm, good
    /// signature, expected `typ`, not expired, and issued by `issuer`.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, typ: &str, issuer: &str) -> Option<T> {
        self.check(token, typ, issuer, true)
    }

    /// As [`Keys::verify`] but accepting an expired token: an `id_token_hint` at logout
    /// is often old, and only proves which app and user the request is about.
    pub fn verify_ignoring_expiry<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
    ) -> Option<T> {
        self.check(token, typ, issuer, false)
    }

    fn check<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
        exp: bool,
    ) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(typ) {
            return None;
        }
        let kid = header.kid?;
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        if header.alg != jwt_alg(key.alg) {
            return None;
        }
        let mut validation = Validation::new(jwt_alg(key.alg));
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.validate_exp = exp;
        if !exp {
            validation.required_spec_claims.remove("exp");
        }
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[tokio::test]
    async fn generated_keys_sign_on_the_fast_path() {
        let store = SledStore::temporary().unwrap();
        let keys = Keys::load_or_generate(&store, 100).await.unwrap();
        for key in &keys.keys {
            let fast = match key.alg {
                SigningAlg::Rs256 => matches!(key.signer, Signer::RingRs256(_)),
                SigningAlg::Es256 => matches!(key.signer, Signer::RingEs256(_)),
                SigningAlg::EdDsa => matches!(key.signer, Signer::EdDsa(_)),
            };
            assert!(
                fast,
                "{} key is signed with the slow fallback",
                key.alg.as_str()
            );
        }
        // The fallbacks make tokens that verify too.
        for key in &keys.keys {
            let der = store
                .signing_keys()
                .await
                .unwrap()
                .into_iter()
                .find(|k| k.kid == key.kid)
                .unwrap()
                .pkcs8_der;
            let slow = match key.alg {
                SigningAlg::Rs256 => Signer::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(
                    rsa::RsaPrivateKey::from_pkcs1_der(&der).unwrap(),
                ))),
                SigningAlg::Es256 => Signer::Es256(Box::new(p256::ecdsa::SigningKey::from(
                    p256::SecretKey::from_pkcs8_der(&der).unwrap(),
                ))),
                SigningAlg::EdDsa => continue,
            };
            let one = Keys {
                signing: vec![(key.alg, key.kid.clone())],
                keys: vec![Key {
                    signer: slow,
                    ..load(&StoredKey {
                        kid: key.kid.clone(),
                        alg: key.alg.as_str().into(),
                        pkcs8_der: der,
                        created_at: 1,
                    })
                    .unwrap()
                }],
            };
            let now = crate::crypto::unix_now();
            let token = one
                .sign(
                    key.alg,
                    "JWT",
                    &json!({ "iss": "http://i", "exp": now + 60 }),
                )
                .unwrap();
            assert!(one.verify::<Value>(&token, "JWT", "http://i").is_some());
        }
    }

    /// The kid that signs for `alg`.
    fn signing_kid(keys: &Keys, alg: SigningAlg) -> String {
        keys.active(alg).unwrap().kid.clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn nodes_starting_together_on_one_store_get_the_same_keys() {
        let store = std::sync::Arc::new(SledStore::temporary().unwrap());
        let starts: Vec<_> = (0..4)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    Keys::load_or_generate(store.as_ref(), 100 + i)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut nodes = Vec::new();
        for s in starts {
            nodes.push(s.await.unwrap());
        }
        // One key per algorithm in the store, and every node publishes and signs alike.
        assert_eq!(store.signing_keys().await.unwrap().len(), 3);
        for node in &nodes[1..] {
            assert_eq!(node.jwks(), nodes[0].jwks());
            for alg in ALGS {
                assert_eq!(signing_kid(node, alg), signing_kid(&nodes[0], alg));
            }
        }
        // A token one node signs, another verifies.
        let now = crate::crypto::unix_now();
        let token = nodes[1]
            .sign(
                SigningAlg::Es256,
                "JWT",
                &json!({ "iss": "http://i", "exp": now + 60 }),
            )
            .unwrap();
        assert!(nodes[3]
            .verify::<Value>(&token, "JWT", "http://i")
            .is_some());
    }

    #[tokio::test]
    async fn a_rotated_key_is_published_at_once_and_signs_only_after_the_lead() {
        let store = SledStore::temporary().unwrap();
        let start = 1_000;
        let ring = KeyRing::new(Keys::load_or_generate(&store, start).await.unwrap());
        let old = signing_kid(&ring.current(), SigningAlg::Rs256);
        assert!(
            !ring.reload(&store, start + 10).await.unwrap(),
            "nothing changed"
        );

        let rotated_at = start + 5_000;
        let new = Keys::rotate(&store, SigningAlg::Rs256, rotated_at)
            .await
            .unwrap();
        assert!(ring.reload(&store, rotated_at).await.unwrap());
        let keys = ring.current();
        let jwks = keys.jwks();
        let published: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(published.contains(&new.kid.as_str()), "published at once");
        assert_eq!(
            signing_kid(&keys, SigningAlg::Rs256),
            old,
            "but not signing yet"
        );

        // One second before the lead has passed, still the old key; then the new one.
        let almost = rotated_at + PUBLISH_LEAD_SECONDS - 1;
        assert!(!ring.reload(&store, almost).await.unwrap());
        assert_eq!(signing_kid(&ring.current(), SigningAlg::Rs256), old);
        assert!(ring.reload(&store, almost + 1).await.unwrap());
        assert_eq!(signing_kid(&ring.current(), SigningAlg::Rs256), new.kid);
        // The old key stays published, so tokens it signed still verify.
        assert!(ring.current().keys.iter().any(|k| k.kid == old));
        // Other algorithms are untouched.
        assert_eq!(ring.current().keys.len(), 4);
    }

    #[tokio::test]
    async fn keys_are_generated_once_and_verify_their_own_tokens() {
        let store = SledStore::temporary().unwrap();
        let keys = Keys::load_or_generate(&store, 100).await.unwrap();
        let again = Keys::load_or_generate(&store, 200).await.unwrap();
        assert_eq!(
            keys.jwks(),
            again.jwks(),
            "keys must persist, not regenerate"
        );
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 3);

        let now = crate::crypto::unix_now();
        let claims = json!({ "iss": "http://i", "sub": "s", "exp": now + 60 });
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            let token = keys.sign(alg, "JWT", &claims).unwrap();
            let back: Value = keys.verify(&token, "JWT", "http://i").unwrap();
            assert_eq!(back["sub"], "s");
            assert!(keys.verify::<Value>(&token, "at+jwt", "http://i").is_none());
            assert!(keys
                .verify::<Value>(&token, "JWT", "http://other")
                .is_none());
            let mut tampered = token.clone();
            tampered.insert(token.rfind('.').unwrap() + 2, 'A');
            assert!(keys.verify::<Value>(&tampered, "JWT", "http://i").is_none());
        }
    }
}
