//! TOTP (RFC 6238) with the parameters every authenticator app assumes: HMAC-SHA1,
//! 6 digits, 30-second steps, a 160-bit secret.
//!
//! These functions are pure: the caller passes `now`, opens the sealed secret
//! (`authn::sealing`) and, after [`verify`] names the matching time step, records that
//! step with `CredentialStore::accept_totp_step` — which refuses a step already used, so
//! a code seen over someone's shoulder cannot be replayed within its window. Three
//! steps are live at any time, so a guess wins with odds of 3 in a million: the caller
//! also counts failures per account (`AttemptStore`, key `totp:<user id>`).

use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

/// Code length. Apps ignore other lengths unless told, and many cannot be told.
pub const DIGITS: usize = 6;
/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Secret length in bytes: 160 bits, the size RFC 4226 recommends for HMAC-SHA1.
pub const SECRET_LEN: usize = 20;
/// Steps accepted either side of the current one, for clock drift and typing time.
pub const SKEW: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("invalid TOTP parameters: {0}")]
    Parameters(String),
    #[error("cannot draw the enrolment QR code: {0}")]
    Qr(String),
}

/// What the enrolment page shows: the secret for typing in, the `otpauth://` URI, and
/// the QR code of that URI. All three reveal the secret, hence the redacted `Debug`.
#[derive(Clone)]
pub struct Enrolment {
    /// The secret in base32 without padding, as apps expect it typed.
    pub secret_base32: String,
    pub otpauth_uri: String,
    /// A PNG of the QR code, base64 (for a `data:image/png;base64,` URL).
    pub qr_png_base64: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(***)")
    }
}

/// A new random secret from the OS generator.
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8], issuer: Option<String>, account: String) -> TOTP {
    // Unchecked: the checked constructor refuses secrets under 128 bits, which only
    // matters when minting them; verifying an existing secret must not fail on that.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        SKEW as u8,
        PERIOD,
        secret.to_vec(),
        issuer,
        account,
    )
}

/// The enrolment data for `secret`. `issuer_name` (the app or the Usher name) and
/// `account_name` (the username or e-mail) are how the user tells entries apart in the
/// app.
pub fn enrolment(
    secret: &[u8],
    issuer_name: &str,
    account_name: &str,
) -> Result<Enrolment, TotpError> {
    // The URI label is `issuer:account`, so a colon inside either would be misread;
    // it is only a display name, so it is replaced rather than refused.
    let clean = |s: &str| s.replace(':', " ").trim().to_string();
    let issuer = clean(issuer_name);
    let totp = TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW as u8,
        PERIOD,
        secret.to_vec(),
        (!issuer.is_empty()).then_some(issuer),
        clean(account_name),
    )
    .map_err(|e| TotpError::Parameters(e.to_string()))?;
    let qr_png_base64 = totp.get_qr_base64().map_err(TotpError::Qr)?;
    Ok(Enrolment {
        secret_base32: totp.get_secret_base32(),
        otpauth_uri: totp.get_url(),
        qr_png_base64,
    })
}

/// The time step `now` falls in.
pub fn step_at(now: u64) -> u64 {
    now / PERIOD
}

/// The code for the step `now` falls in (tests, fixtures, the demo).
pub fn code_at(secret: &[u8], now: u64) -> String {
    code_for_step(secret, step_at(now))
}

fn code_for_step(secret: &[u8], step: u64) -> String {
    totp(secret, None, String::new()).generate(step.saturating_mul(PERIOD))
}

/// Checks `code` against the current step and one step either side. Returns the step
/// it matched, for the replay check, or `None`. Spaces are ignored ("123 456" is how
/// apps display codes); anything else but exactly six digits is refused unchecked.
pub fn verify(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let mut matched = None;
    // Every candidate is computed and compared, so the time taken does not tell
    // which step (if any) matched.
    for step in current.saturating_sub(SKEW)..=current.saturating_add(SKEW) {
        let expected = code_for_step(secret, step);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            matched = Some(step);
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6238 test secret ("12345678901234567890") and its published SHA1 codes,
    /// truncated to six digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_the_rfc_6238_vectors() {
        assert_eq!(code_at(RFC_SECRET, 59), "287082");
        assert_eq!(code_at(RFC_SECRET, 1_111_111_109), "081804");
        assert_eq!(code_at(RFC_SECRET, 1_234_567_890), "005924");
        assert_eq!(code_at(RFC_SECRET, 2_000_000_000), "279037");
    }

    #[test]
    fn the_current_step_and_one_either_side_are_accepted() {
        let secret = generate_secret();
        let now = 1_700_000_015;
        let step = now / 30;
        assert_eq!(verify(&secret, &code_at(&secret, now), now), Some(step));
        assert_eq!(
            verify(&secret, &code_at(&secret, now - 30), now),
            Some(step - 1)
        );
        assert_eq!(
            verify(&secret, &code_at(&secret, now + 30), now),
            Some(step + 1)
        );
    }

    #[test]
    fn two_steps_away_is_refused() {
        let secret = generate_secret();
        let now: u64 = 1_700_000_015;
        for offset in [-60i64, 60, -90, 90] {
            let then = now.checked_add_signed(offset).unwrap();
            let code = code_at(&secret, then);
            // A code can repeat by chance across steps; skip that one-in-a-million case.
            if (-1..=1)
                .any(|d: i64| code_at(&secret, now.checked_add_signed(d * 30).unwrap()) == code)
            {
                continue;
            }
            assert_eq!(verify(&secret, &code, now), None, "offset {offset}");
        }
    }

    #[test]
    fn malformed_codes_are_refused_and_spaces_ignored() {
        let secret = generate_secret();
        let now = 1_700_000_000;
        let code = code_at(&secret, now);
        let spaced = format!(" {} {} ", &code[..3], &code[3..]);
        assert_eq!(verify(&secret, &spaced, now), Some(now / 30));
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "１２３４５６",
            &format!("{code}0"),
        ] {
            assert_eq!(verify(&secret, bad, now), None, "{bad:?}");
        }
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(verify(&secret, &wrong, now), None);
    }

    #[test]
    fn steps_near_the_epoch_do_not_underflow() {
        let secret = generate_secret();
        assert_eq!(verify(&secret, &code_at(&secret, 0), 0), Some(0));
    }

    #[test]
    fn enrolment_carries_the_secret_the_uri_and_a_qr_code() {
        let secret = generate_secret();
        assert_eq!(secret.len(), 20);
        assert_ne!(secret, generate_secret());
        let e = enrolment(&secret, "Thrift: Shop", "alice@example.com").unwrap();
        assert_eq!(e.secret_base32.len(), 32);
        assert!(
            e.otpauth_uri
                .starts_with("otpauth://totp/Thrift%20%20Shop:alice%40example.com?secret="),
            "{}",
            e.otpauth_uri
        );
        assert!(e.otpauth_uri.contains(&e.secret_base32));
        assert!(e.otpauth_uri.contains("issuer=Thrift%20%20Shop"));
        // base64 of the PNG signature.
        assert!(
            e.qr_png_base64.starts_with("iVBORw0KGgo"),
            "{}",
            &e.qr_png_base64[..20]
        );
        assert_eq!(format!("{e:?}"), "Enrolment(***)");
    }
}
