//! One-time codes sent by e-mail: generating them, the policy numbers, and the rules for
//! issuing and checking them over the store's versioned record.
//!
//! Each account has at most one pending code; asking for another replaces it. Guessing
//! is bounded twice: a code dies after [`MAX_WRONG`] wrong tries, and at most
//! [`MAX_SENDS`] codes go out per [`RESEND_WINDOW`] (a sliding window) — so at most 15
//! guesses at a one-in-a-million code per ten minutes. Both counts live in the store's
//! record, shared by every session and node. Every decision here is read, decide, then
//! a compare-and-swap of the record (`CredentialStore::swap_email_code`); a swap that
//! lost to a parallel request decides again on what that request wrote, so a code is
//! used once and no count is skipped. Sending the mail is `crate::mail`'s job.

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::crypto::b64url;
use crate::secret::ct_eq;
use crate::secret::Secret;
use crate::store::{CounterStore, CredentialStore, EmailCode, StoreResult};

/// Digits in a code.
pub const DIGITS: usize = 6;
/// How long a code can be used, in seconds.
pub const CODE_TTL: u64 = 5 * 60;
/// The same, in minutes, for the mail text.
pub const CODE_TTL_MINUTES: u64 = CODE_TTL / 60;
/// Codes that may be sent per account within [`RESEND_WINDOW`].
pub const MAX_SENDS: usize = 3;
/// The resend window, in seconds.
pub const RESEND_WINDOW: u64 = 10 * 60;
/// Wrong tries after which the pending code is burned.
pub const MAX_WRONG: u32 = 5;

/// Codes that may be checked per record within [`TRIES_WINDOW`], across every code
/// sent. The per-code and resend limits alone let a patient guesser try 15 codes every
/// ten minutes for as long as it likes — over a year about even odds of hitting one. A
/// code that resets a password or proves an address (where no password stands in front
/// of it) also counts against this daily cap; past it nothing is checked until the
/// window ends (so a stranger can hold such codes up for a day, never guess one).
pub const MAX_TRIES_PER_DAY: u32 = 10;
/// The window of [`MAX_TRIES_PER_DAY`], in seconds.
pub const TRIES_WINDOW: u64 = 24 * 60 * 60;

fn tries_key(key: &str) -> String {
    format!("code-tries:{key}")
}

/// Reserve one check of the record `key`'s code against the daily cap, before it is
/// checked: `false` means the cap is reached and nothing may be checked. Parallel
/// reservations cannot pass the cap together (one atomic hit each).
pub async fn reserve_try<S: CounterStore + ?Sized>(
    store: &S,
    key: &str,
    now: u64,
) -> StoreResult<bool> {
    let counted = store
        .hit(&tries_key(key), now, now.saturating_add(TRIES_WINDOW))
        .await?;
    Ok(counted.count <= MAX_TRIES_PER_DAY)
}

/// After [`reserve_try`] and the check: a right code forgives the day's wrong tries; a
/// check that compared nothing (no code pending, or it expired) gives its try back; a
/// wrong code keeps it counted.
pub async fn settle_try<S: CounterStore + ?Sized>(
    store: &S,
    key: &str,
    outcome: EmailCheck,
    now: u64,
) -> StoreResult<()> {
    match outcome {
        EmailCheck::Ok => store.reset_counter(&tries_key(key)).await,
        EmailCheck::Expired | EmailCheck::Missing => {
            store.take_back(&tries_key(key), now).await.map(|_| ())
        }
        EmailCheck::Wrong { .. } => Ok(()),
    }
}

/// A new code: six digits, each of the million values equally likely, from the OS
/// generator.
pub fn generate_code() -> String {
    // `gen_range` rejects the biased tail, so no value is likelier than another.
    let n: u32 = rand::rngs::OsRng.gen_range(0..1_000_000);
    format!("{n:06}")
}

/// The stored form of `code` for `user_id`. Whitespace is ignored, as people paste
/// codes with stray spaces.
///
/// A million codes are quickly tried against any hash, so this hides nothing from
/// someone holding a copy of the store for five minutes; it keeps live codes out of
/// plain sight in dumps and backups, and binds each hash to its account so a code
/// mailed to one user never matches for another.
pub fn hash_code(user_id: &str, code: &str) -> String {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let mut h = Sha256::new();
    h.update(b"usher email code\0");
    h.update((user_id.len() as u64).to_be_bytes());
    h.update(user_id.as_bytes());
    h.update(code.as_bytes());
    b64url(&h.finalize())
}

/// Outcome of [`issue`].
#[derive(Debug, Clone)]
pub enum Issued {
    /// Mail this code now; it is stored (as a hash) and replaced any earlier one.
    Send(Secret),
    /// The resend limit is reached; another code may be sent at `retry_at`.
    TooMany { retry_at: u64 },
}

/// Outcome of [`store_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailIssue {
    /// Stored; it replaced any earlier code. Send it now.
    Issued,
    /// Too many codes were sent recently; nothing was stored. Another may be sent at
    /// `retry_at`.
    TooMany { retry_at: u64 },
}

/// Outcome of checking an e-mail code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailCheck {
    /// The code matched and is now used up.
    Ok,
    /// The code did not match. At 0 tries left the pending code has been burned and the
    /// user must ask for a new one.
    Wrong { tries_left: u32 },
    /// The code's time ran out (it is now cleared).
    Expired,
    /// No code is pending.
    Missing,
}

/// Make a new code the account's pending one, unless the resend limit forbids it.
/// Blocking (store access); the caller mails the code, then flushes the store.
pub async fn issue<S: CredentialStore + ?Sized>(
    store: &S,
    user_id: &str,
    now: u64,
) -> StoreResult<Issued> {
    let code = generate_code();
    let hash = hash_code(user_id, &code);
    Ok(match store_code(store, user_id, &hash, now).await? {
        EmailIssue::Issued => Issued::Send(Secret::new(code)),
        EmailIssue::TooMany { retry_at } => Issued::TooMany { retry_at },
    })
}

/// Make `code_hash` the key's only pending code, valid for [`CODE_TTL`], unless
/// [`MAX_SENDS`] codes were sent within the last [`RESEND_WINDOW`]. Parallel requests
/// cannot slip past the limit together: each send is one swap of the record.
pub async fn store_code<S: CredentialStore + ?Sized>(
    store: &S,
    key: &str,
    code_hash: &str,
    now: u64,
) -> StoreResult<EmailIssue> {
    loop {
        let current = store.email_code(key).await?;
        let version = current.as_ref().map(|c| c.version);
        let mut sent: Vec<u64> = current
            .map(|c| c.value.sent_at)
            .unwrap_or_default()
            .into_iter()
            .filter(|&t| t.saturating_add(RESEND_WINDOW) > now)
            .collect();
        if sent.len() >= MAX_SENDS {
            let oldest = sent.iter().copied().min().unwrap_or(now);
            return Ok(EmailIssue::TooMany {
                retry_at: oldest.saturating_add(RESEND_WINDOW),
            });
        }
        sent.push(now);
        let record = EmailCode {
            code_hash: code_hash.to_string(),
            expires_at: now.saturating_add(CODE_TTL),
            sent_at: sent,
            wrong: 0,
        };
        if store.swap_email_code(key, version, &record).await? {
            return Ok(EmailIssue::Issued);
        }
    }
}

/// Check what the user typed against the account's pending code; a match uses it up.
pub async fn check<S: CredentialStore + ?Sized>(
    store: &S,
    user_id: &str,
    code: &str,
    now: u64,
) -> StoreResult<EmailCheck> {
    check_hash(store, user_id, &hash_code(user_id, code), now).await
}

/// Check a code's hash against the key's pending one: a match uses it up (of N parallel
/// checks only one sees `Ok`); a miss counts, and the [`MAX_WRONG`]-th miss burns the
/// code. The record outlives its code (cleared, not removed) so that the send history
/// keeps counting against the resend limit.
pub async fn check_hash<S: CredentialStore + ?Sized>(
    store: &S,
    key: &str,
    code_hash: &str,
    now: u64,
) -> StoreResult<EmailCheck> {
    loop {
        let Some(current) = store.email_code(key).await? else {
            return Ok(EmailCheck::Missing);
        };
        let mut record = current.value;
        if record.code_hash.is_empty() {
            return Ok(EmailCheck::Missing);
        }
        let outcome = if record.expires_at <= now {
            record.code_hash.clear();
            EmailCheck::Expired
        } else if ct_eq(record.code_hash.as_bytes(), code_hash.as_bytes()) {
            record.code_hash.clear();
            EmailCheck::Ok
        } else {
            record.wrong = record.wrong.saturating_add(1);
            let tries_left = MAX_WRONG.saturating_sub(record.wrong);
            if tries_left == 0 {
                record.code_hash.clear();
            }
            EmailCheck::Wrong { tries_left }
        };
        if store
            .swap_email_code(key, Some(current.version), &record)
            .await?
        {
            return Ok(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CounterStore, SledStore};

    #[test]
    fn codes_are_six_digits_and_spread_over_the_range() {
        let codes: Vec<String> = (0..2000).map(|_| generate_code()).collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == DIGITS && c.bytes().all(|b| b.is_ascii_digit())));
        // Leading zeros are kept: about a tenth of codes start with 0. Bounds are far
        // outside chance (mean 200, standard deviation about 13).
        let leading_zero = codes.iter().filter(|c| c.starts_with('0')).count();
        assert!((120..=280).contains(&leading_zero), "{leading_zero}");
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert!(unique.len() > 1990, "{}", unique.len());
    }

    #[test]
    fn hashes_ignore_spaces_and_are_bound_to_the_account() {
        assert_eq!(hash_code("u1", "123456"), hash_code("u1", " 123 456 "));
        assert_ne!(hash_code("u1", "123456"), hash_code("u1", "123457"));
        assert_ne!(hash_code("u1", "123456"), hash_code("u2", "123456"));
        assert_ne!(
            hash_code("u1", "123456"),
            crate::authn::recovery::hash("u1", "123456")
        );
    }

    #[tokio::test]
    async fn wrong_codes_are_capped_per_day_across_every_code_sent() {
        let store = SledStore::temporary().unwrap();
        let wrong = EmailCheck::Wrong { tries_left: 4 };
        for _ in 0..MAX_TRIES_PER_DAY {
            assert!(reserve_try(&store, "reset:u1", 1000).await.unwrap());
            settle_try(&store, "reset:u1", wrong, 1000).await.unwrap();
        }
        assert!(!reserve_try(&store, "reset:u1", 2000).await.unwrap());
        assert!(
            reserve_try(&store, "reset:u2", 2000).await.unwrap(),
            "per record"
        );
        assert!(
            reserve_try(&store, "reset:u1", 1000 + TRIES_WINDOW)
                .await
                .unwrap(),
            "a day later"
        );
        // A check that compared nothing gives its try back; a right code forgives all.
        settle_try(&store, "reset:u1", EmailCheck::Missing, 1000 + TRIES_WINDOW)
            .await
            .unwrap();
        assert_eq!(
            store
                .counter("code-tries:reset:u1", 1000 + TRIES_WINDOW)
                .await
                .unwrap(),
            None
        );
        assert!(reserve_try(&store, "reset:u1", 1000 + TRIES_WINDOW)
            .await
            .unwrap());
        settle_try(&store, "reset:u1", EmailCheck::Ok, 1000 + TRIES_WINDOW)
            .await
            .unwrap();
        assert_eq!(
            store
                .counter("code-tries:reset:u1", 1000 + TRIES_WINDOW)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_issued_code_checks_once_and_the_policy_applies() {
        let store = SledStore::temporary().unwrap();
        let Issued::Send(code) = issue(&store, "u1", 1000).await.unwrap() else {
            panic!("the first code must be sent");
        };
        assert_eq!(
            check(&store, "u2", code.expose(), 1001).await.unwrap(),
            EmailCheck::Missing
        );
        assert_eq!(
            check(&store, "u1", code.expose(), 1001).await.unwrap(),
            EmailCheck::Ok
        );
        assert_eq!(
            check(&store, "u1", code.expose(), 1002).await.unwrap(),
            EmailCheck::Missing
        );

        let Issued::Send(code) = issue(&store, "u1", 1010).await.unwrap() else {
            panic!("the second code must be sent");
        };
        assert_eq!(
            check(&store, "u1", code.expose(), 1010 + CODE_TTL)
                .await
                .unwrap(),
            EmailCheck::Expired
        );

        assert!(matches!(
            issue(&store, "u1", 1020).await.unwrap(),
            Issued::Send(_)
        ));
        assert!(matches!(
            issue(&store, "u1", 1030).await.unwrap(),
            Issued::TooMany { retry_at } if retry_at == 1000 + RESEND_WINDOW
        ));
        for left in (0..MAX_WRONG).rev() {
            assert_eq!(
                check(&store, "u1", "not it", 1040).await.unwrap(),
                EmailCheck::Wrong { tries_left: left }
            );
        }
    }
}
