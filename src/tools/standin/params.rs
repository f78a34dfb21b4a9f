//! Request parameters as the stand-ins read them: query strings and form bodies parsed
//! without an extractor (so a malformed request gets the protocol's error shape rather
//! than a framework rejection), duplicates detected (RFC 6749 §3.1 forbids them), and
//! client credentials taken from HTTP Basic or the body.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::crypto::{b64url, sha256};
use crate::secret::ct_eq;

/// Parsed `application/x-www-form-urlencoded` pairs.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(raw: &[u8]) -> Params {
        Params(url::form_urlencoded::parse(raw).into_owned().collect())
    }

    /// The value of `name`, if present and not empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The first parameter that appears more than once.
    pub(super) fn duplicate(&self) -> Option<&str> {
        self.0.iter().enumerate().find_map(|(i, (k, _))| {
            self.0[..i]
                .iter()
                .any(|(earlier, _)| earlier == k)
                .then_some(k.as_str())
        })
    }
}

/// How the client presented its credentials.
pub(super) enum ClientAuth {
    Basic {
        id: String,
        secret: String,
    },
    Post {
        id: String,
        secret: String,
    },
    None,
    /// Both at once, or an unreadable Basic header.
    Malformed,
}

impl ClientAuth {
    pub(super) fn from_request(headers: &HeaderMap, params: &Params) -> ClientAuth {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest)
            });
        match (basic, params.get("client_secret")) {
            (Some(_), Some(_)) => ClientAuth::Malformed,
            (Some(b64), None) => match decode_basic(b64) {
                // A client_id in the body too is allowed, but must name the same client.
                Some((id, _)) if params.get("client_id").is_some_and(|b| b != id) => {
                    ClientAuth::Malformed
                }
                Some((id, secret)) => ClientAuth::Basic { id, secret },
                None => ClientAuth::Malformed,
            },
            (None, Some(secret)) => match params.get("client_id") {
                Some(id) => ClientAuth::Post {
                    id: id.to_string(),
                    secret: secret.to_string(),
                },
                None => ClientAuth::Malformed,
            },
            (None, None) => ClientAuth::None,
        }
    }

    /// Whether these are the expected credentials (the secret compared in constant time).
    pub(super) fn matches(&self, client_id: &str, client_secret: &str) -> bool {
        match self {
            ClientAuth::Basic { id, secret } | ClientAuth::Post { id, secret } => {
                id == client_id && ct_eq(secret.as_bytes(), client_secret.as_bytes())
            }
            ClientAuth::None | ClientAuth::Malformed => false,
        }
    }
}

/// `id:secret` from a Basic credential, each part form-decoded (RFC 6749 §2.3.1).
fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Undo form encoding of one component: `+` is a space, `%XX` a byte.
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set. A challenge made by
/// S256 has the same shape (43 characters), so the one check serves both.
pub(super) fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `verifier` hashes (S256) to `challenge`.
pub(super) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    is_pkce_string(verifier)
        && ct_eq(
            b64url(&sha256(verifier.as_bytes())).as_bytes(),
            challenge.as_bytes(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_credentials_are_form_decoded_and_exclusive_with_post() {
        let mut headers = HeaderMap::new();
        let creds = STANDARD.encode("my%20app:s%3Ac+r");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {creds}")).unwrap(),
        );
        let auth = ClientAuth::from_request(&headers, &Params::parse(b"grant_type=x"));
        assert!(auth.matches("my app", "s:c r"));
        let both = Params::parse(b"client_id=my+app&client_secret=s");
        assert!(matches!(
            ClientAuth::from_request(&headers, &both),
            ClientAuth::Malformed
        ));
    }

    #[test]
    fn duplicates_and_pkce() {
        assert_eq!(Params::parse(b"a=1&b=2&a=3").duplicate(), Some("a"));
        assert_eq!(Params::parse(b"a=1&b=2").duplicate(), None);
        // The RFC 7636 appendix B example.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches("short", challenge));
        assert!(!pkce_matches(&verifier.replace('d', "e"), challenge));
    }
}
