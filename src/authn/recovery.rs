//! Recovery codes: ten single-use codes shown once at enrolment, for when the
//! authenticator is lost. Only their hashes are stored; using one removes it
//! (`CredentialStore::consume_recovery_code`).
//!
//! A code is 12 characters from Crockford's base32 alphabet, shown as `xxxx-xxxx-xxxx`:
//! 60 random bits, letters that cannot be confused with digits, and no case to get
//! wrong. Typing is forgiving: case, spaces and dashes do not matter, and `o`, `i`, `l`
//! read as the digits they look like.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::crypto::b64url;

/// Codes generated at once.
pub const COUNT: usize = 10;
/// Characters per code (5 bits each).
pub const LENGTH: usize = 12;
/// Digits and lower-case letters without `i`, `l`, `o` and `u`: 32 symbols, so every
/// random byte masked to 5 bits picks one with equal chance.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Ten new codes, formatted for display, and their hashes for the store, in the same
/// order. The codes are shown to the user once and never kept.
pub fn generate(user_id: &str) -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..COUNT).map(|_| new_code()).collect();
    let hashes = codes.iter().map(|c| hash(user_id, c)).collect();
    (codes, hashes)
}

fn new_code() -> String {
    let mut bytes = [0u8; LENGTH];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut code = String::with_capacity(LENGTH + 2);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    code
}

/// The canonical form of what a user typed: lower case, no spaces or dashes, and the
/// look-alike letters read as digits.
pub fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect()
}

/// The stored form of a code of `user_id`.
///
/// A fast hash is enough here, unlike for passwords: the codes are random, not chosen
/// by people, so there is no dictionary to try first, and with 60 bits finding one of
/// an account's ten codes from a stolen store takes on the order of 2^56 SHA-256
/// evaluations — months of GPU time. The user id in the input salts the hash, so such
/// an attacker cannot test one guess against every account at once.
pub fn hash(user_id: &str, code: &str) -> String {
    let mut h = Sha256::new();
    // The label separates these hashes from every other hash Usher makes; the lengths
    // keep (user id, code) pairs from running into each other.
    h.update(b"usher recovery code\0");
    h.update((user_id.len() as u64).to_be_bytes());
    h.update(user_id.as_bytes());
    h.update(normalize(code).as_bytes());
    b64url(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_distinct_readable_codes_with_matching_hashes() {
        let (codes, hashes) = generate("u1");
        assert_eq!(codes.len(), COUNT);
        assert_eq!(hashes.len(), COUNT);
        for (code, h) in codes.iter().zip(&hashes) {
            assert_eq!(code.len(), 14, "{code}");
            let parts: Vec<&str> = code.split('-').collect();
            assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [4, 4, 4]);
            assert!(
                normalize(code).bytes().all(|b| ALPHABET.contains(&b)),
                "{code}"
            );
            assert!(!code.contains(['i', 'l', 'o', 'u']), "{code}");
            assert_eq!(&hash("u1", code), h);
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
    }

    #[test]
    fn typing_is_forgiving_but_the_code_must_be_right() {
        let h = hash("u1", "ab12-cd34-ef56");
        assert_eq!(hash("u1", "AB12 CD34 EF56"), h);
        assert_eq!(hash("u1", " ab12cd34ef56 "), h);
        assert_eq!(hash("u1", "ab12-cd34-ef57"), hash("u1", "ab12cd34ef57"));
        assert_ne!(hash("u1", "ab12-cd34-ef57"), h);
        // Look-alikes read as the digits the alphabet has instead.
        assert_eq!(hash("u1", "1010"), hash("u1", "IoLO"));
    }

    #[test]
    fn the_same_code_hashes_differently_for_another_account() {
        assert_ne!(hash("u1", "ab12-cd34-ef56"), hash("u2", "ab12-cd34-ef56"));
        // The length prefix keeps the user id and the code apart.
        assert_ne!(hash("u1", "1abc"), hash("u11", "abc"));
    }

    #[test]
    fn every_symbol_is_used() {
        // 5 bits per symbol only if all 32 turn up; 10 × 12 × 5 draws make missing one
        // vanishingly unlikely (32 × (31/32)^600 < 1e-6).
        let all: String = (0..5).flat_map(|_| generate("u").0).collect();
        for &symbol in ALPHABET.iter() {
            assert!(all.as_bytes().contains(&symbol), "{}", char::from(symbol));
        }
    }
}
