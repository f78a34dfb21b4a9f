//! Signing keys: generated on first start, kept in the store, published as a JWKS.
//!
//! One active key per algorithm (RS256, ES256, EdDSA); an app picks its algorithm and
//! gets the key of that kind. Every stored key stays published, so tokens signed before
//! a rotation still verify until they expire.
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

/// The server's signing keys.
pub struct Keys {
    keys: Vec<Key>,
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

impl Keys {
    /// Load every stored key, generating (and storing) one for each algorithm that has
    /// none yet. Generation is slow (RSA): call this at start-up, not on a request.
    pub async fn load_or_generate(store: &dyn KeyStore, now: u64) -> Result<Keys, KeyError> {
        let mut stored = store.signing_keys().await?;
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            if !stored.iter().any(|k| k.alg == alg.as_str()) {
                let key = generate(alg, now)?;
                store.put_signing_key(&key).await?;
                stored.push(key);
            }
        }
        // A stable order, so the JWKS does not shuffle between restarts.
        stored.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        let keys = stored.iter().map(load).collect::<Result<Vec<_>, _>>()?;
        Ok(Keys { keys })
    }

    /// The newest key of an algorithm.
    fn active(&self, alg: SigningAlg) -> Option<&Key> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg)
            .max_by_key(|k| k.created_at)
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
