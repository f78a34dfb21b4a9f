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

    mod props {
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the browser id and the presented text, only the token computed
            /// for that browser verifies, and nothing panics.
            #[test]
            fn only_the_browsers_own_token_verifies(
                key in prop::collection::vec(any::<u8>(), 0..64),
                browser in proptest::option::of(".{0,64}"),
                presented in proptest::option::of(prop_oneof![".{0,64}", "[A-Za-z0-9_-]{43}"]),
            ) {
                let expected = browser.as_deref().map(|b| super::super::token(&key, b));
                let ok = super::super::verify(&key, browser.as_deref(), presented.as_deref());
                let should = matches!(
                    (&expected, &presented),
                    (Some(e), Some(p)) if !p.is_empty() && e == p
                );
                prop_assert_eq!(ok, should);
                if let (Some(b), Some(e)) = (browser.as_deref(), expected) {
                    prop_assert!(super::super::verify(&key, Some(b), Some(&e)));
                }
            }
        }
    }
}
