//! Signing keys: generated on first start, kept in the store, published as a JWKS.
//!
//! One active key per algorithm (RS256, ES256, EdDSA); an app picks its algorithm and
//! gets the key of that kind. Every stored key stays published, so tokens signed before
//! a rotation still verify until they expire.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
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

struct Key {
    kid: String,
    alg: SigningAlg,
    created_at: u64,
    encoding: EncodingKey,
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
    let (encoding, decoding, mut jwk) = match alg {
        SigningAlg::Rs256 => {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| bad(e.to_string()))?;
            let n = key.n().to_bytes_be();
            let e = key.e().to_bytes_be();
            (
                EncodingKey::from_rsa_der(der),
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
                EncodingKey::from_ec_der(der),
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
                EncodingKey::from_ed_der(der),
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
        encoding,
        decoding,
        jwk,
    })
}

impl Keys {
    /// Load every stored key, generating (and storing) one for each algorithm that has
    /// none yet. Generation is slow (RSA): call this at start-up, not on a request.
    pub fn load_or_generate(store: &dyn KeyStore, now: u64) -> Result<Keys, KeyError> {
        let mut stored = store.signing_keys()?;
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            if !stored.iter().any(|k| k.alg == alg.as_str()) {
                let key = generate(alg, now)?;
                store.put_signing_key(&key)?;
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
        let mut header = Header::new(jwt_alg(alg));
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
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

    #[test]
    fn keys_are_generated_once_and_verify_their_own_tokens() {
        let store = SledStore::temporary().unwrap();
        let keys = Keys::load_or_generate(&store, 100).unwrap();
        let again = Keys::load_or_generate(&store, 200).unwrap();
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
