//! CSRF tokens: an HMAC of the browser cookie under a server key. Every form carries
//! the token; every POST recomputes it and compares in constant time. A page from
//! another site can neither read the HttpOnly cookie nor compute the HMAC.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto::b64url;
use crate::secret::ct_eq;

pub fn token(key: &[u8], browser: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(b"usher-csrf:");
            mac.update(browser.as_bytes());
            b64url(&mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this arm cannot happen, and an empty token
        // would simply never verify.
        Err(_) => String::new(),
    }
}

pub fn verify(key: &[u8], browser: Option<&str>, presented: Option<&str>) -> bool {
    match (browser, presented) {
        (Some(b), Some(p)) if !p.is_empty() => {
            let expected = token(key, b);
            !expected.is_empty() && ct_eq(expected.as_bytes(), p.as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_bound_to_the_browser() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = super::token(key, "browser-a");
        assert!(super::verify(key, Some("browser-a"), Some(&t)));
        assert!(!super::verify(key, Some("browser-b"), Some(&t)));
        assert!(!super::verify(key, Some("browser-a"), None));
        assert!(!super::verify(key, None, Some(&t)));
    }
}
