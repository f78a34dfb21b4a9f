//! Contract: second factors — TOTP steps and recovery codes used once, enrolment that
//! keeps the first secret, and e-mail code records swapped once per version, with the
//! rules of `authn::email_otp` (one pending code, wrong tries, resend limit) on top.

use super::*;
use crate::authn::email_otp::{self, EmailCheck, EmailIssue, MAX_SENDS};

pub fn a_totp_step_is_accepted_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.put_totp("u1", &totp_credential()).unwrap();
    let results = race(&s, |s, _| s.accept_totp_step("u1", 1000).unwrap());
    assert_eq!(results.iter().filter(|&&ok| ok).count(), 1, "{results:?}");
    assert_eq!(s.totp("u1").unwrap().unwrap().last_step, 1000);
    // The same step again, or an earlier one, is a replay.
    assert!(!s.accept_totp_step("u1", 1000).unwrap());
    assert!(!s.accept_totp_step("u1", 999).unwrap());
    assert!(s.accept_totp_step("u1", 1001).unwrap());
    // No authenticator, nothing to accept.
    assert!(!s.accept_totp_step("u2", 1).unwrap());
    s.delete_totp("u1").unwrap();
    assert!(s.totp("u1").unwrap().is_none());
    assert!(!s.accept_totp_step("u1", 2000).unwrap());
}

pub fn of_parallel_enrolments_the_first_secret_stays(f: &dyn StoreFactory) {
    let s = f.fresh();
    let pending = |secret: Vec<u8>| TotpCredential {
        sealed_secret: secret,
        created_at: 1,
        last_step: 0,
        confirmed: false,
    };
    let shown = race(&s, move |s, i| {
        s.create_totp("u1", &pending(vec![i as u8]))
            .unwrap()
            .sealed_secret
    });
    // Every page shows the one secret that was stored, and nothing overwrote it.
    let stored = s.totp("u1").unwrap().unwrap().sealed_secret;
    assert!(shown.iter().all(|secret| *secret == stored), "{shown:?}");
}

pub fn a_recovery_code_is_consumed_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    let hashes: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    s.put_recovery_codes("u1", &hashes).unwrap();
    assert_eq!(s.recovery_codes_left("u1").unwrap(), 10);
    let results = race(&s, |s, _| s.consume_recovery_code("u1", "h3").unwrap());
    assert_eq!(results.iter().filter(|&&ok| ok).count(), 1, "{results:?}");
    assert_eq!(s.recovery_codes_left("u1").unwrap(), 9);
    assert!(!s.consume_recovery_code("u1", "h3").unwrap());
    assert!(!s.consume_recovery_code("u1", "nope").unwrap());
    // Another account's codes are not this account's.
    assert!(!s.consume_recovery_code("u2", "h4").unwrap());
    // New codes replace every old one.
    s.put_recovery_codes("u1", &["n1".to_string()]).unwrap();
    assert!(!s.consume_recovery_code("u1", "h4").unwrap());
    assert!(s.consume_recovery_code("u1", "n1").unwrap());
    assert_eq!(s.recovery_codes_left("u1").unwrap(), 0);
    assert_eq!(s.recovery_codes_left("nobody").unwrap(), 0);
}

fn record(hash: &str) -> EmailCode {
    EmailCode {
        code_hash: hash.into(),
        expires_at: 1300,
        sent_at: vec![1000],
        wrong: 0,
    }
}

pub fn an_email_code_record_swaps_once_per_version(f: &dyn StoreFactory) {
    let s = f.fresh();
    assert!(s.email_code("u1").unwrap().is_none());
    // Of parallel first writes, one lands.
    let created = race(&s, |s, i| {
        s.swap_email_code("u1", None, &record(&format!("h{i}")))
            .unwrap()
    });
    assert_eq!(created.iter().filter(|&&ok| ok).count(), 1, "{created:?}");
    let first = s.email_code("u1").unwrap().unwrap();
    let winner = created.iter().position(|&ok| ok).unwrap();
    assert_eq!(first.value.code_hash, format!("h{winner}"));
    // Of parallel swaps from one version, one lands; the version moves.
    let version = first.version;
    let swapped = race(&s, move |s, i| {
        s.swap_email_code("u1", Some(version), &record(&format!("x{i}")))
            .unwrap()
    });
    assert_eq!(swapped.iter().filter(|&&ok| ok).count(), 1, "{swapped:?}");
    let second = s.email_code("u1").unwrap().unwrap();
    assert_ne!(second.version, version);
    assert!(!s
        .swap_email_code("u1", Some(version), &record("late"))
        .unwrap());
    assert!(!s.swap_email_code("u1", None, &record("late")).unwrap());
    // A plain put also moves the version, so a swap prepared before it fails.
    s.put_email_code("u1", &record("put")).unwrap();
    let third = s.email_code("u1").unwrap().unwrap();
    assert_eq!(third.value, record("put"));
    assert_ne!(third.version, second.version);
    assert!(!s
        .swap_email_code("u1", Some(second.version), &record("late"))
        .unwrap());
}

/// The rules of `authn::email_otp` on this store, with hashes standing for codes.
fn issue(s: &dyn Store, hash: &str, now: u64) -> EmailIssue {
    email_otp::store_code(s, "u1", hash, now).unwrap()
}

fn check(s: &dyn Store, hash: &str, now: u64) -> EmailCheck {
    email_otp::check_hash(s, "u1", hash, now).unwrap()
}

pub fn an_email_code_works_once_and_a_new_one_supersedes_it(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    assert_eq!(check(s, "a", 1000), EmailCheck::Missing);
    assert_eq!(issue(s, "a", 1000), EmailIssue::Issued);
    assert_eq!(issue(s, "b", 1010), EmailIssue::Issued);
    assert_eq!(check(s, "a", 1020), EmailCheck::Wrong { tries_left: 4 });
    assert_eq!(check(s, "b", 1030), EmailCheck::Ok);
    assert_eq!(check(s, "b", 1031), EmailCheck::Missing);
    let record = s.email_code("u1").unwrap().unwrap().value;
    assert!(record.code_hash.is_empty());
    assert_eq!(record.sent_at, vec![1000, 1010]);
}

pub fn parallel_checks_of_one_email_code_give_one_success(f: &dyn StoreFactory) {
    let s = f.fresh();
    assert_eq!(issue(s.as_ref(), "a", 1000), EmailIssue::Issued);
    let results = race(&s, |s, _| check(s, "a", 1001));
    let ok = results.iter().filter(|r| **r == EmailCheck::Ok).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, EmailCheck::Ok | EmailCheck::Missing)));
}

pub fn parallel_wrong_email_codes_are_each_counted(f: &dyn StoreFactory) {
    let s = f.fresh();
    issue(s.as_ref(), "a", 1000);
    let results = race(&s, |s, _| check(s, "x", 1001));
    // Five wrong tries, each told a different number of tries left; then it is burned.
    let mut left: Vec<u32> = results
        .iter()
        .filter_map(|r| match r {
            EmailCheck::Wrong { tries_left } => Some(*tries_left),
            _ => None,
        })
        .collect();
    left.sort();
    assert_eq!(left, [0, 1, 2, 3, 4], "{results:?}");
    assert_eq!(check(s.as_ref(), "a", 1002), EmailCheck::Missing);
}

pub fn an_expired_email_code_is_refused(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    issue(s, "a", 1000);
    assert_eq!(check(s, "a", 1300), EmailCheck::Expired);
    assert_eq!(check(s, "a", 1301), EmailCheck::Missing);
    issue(s, "b", 1400);
    assert_eq!(check(s, "b", 1699), EmailCheck::Ok);
}

pub fn five_wrong_tries_burn_an_email_code(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    issue(s, "a", 1000);
    for left in (1..5).rev() {
        assert_eq!(check(s, "x", 1001), EmailCheck::Wrong { tries_left: left });
    }
    assert_eq!(check(s, "x", 1001), EmailCheck::Wrong { tries_left: 0 });
    // Burned: even the right code no longer works.
    assert_eq!(check(s, "a", 1002), EmailCheck::Missing);
    // A fresh code starts a fresh count.
    issue(s, "c", 1003);
    assert_eq!(check(s, "x", 1004), EmailCheck::Wrong { tries_left: 4 });
}

pub fn resending_is_limited_per_window_even_after_codes_are_used(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    assert_eq!(issue(s, "a", 1000), EmailIssue::Issued);
    assert_eq!(check(s, "a", 1001), EmailCheck::Ok);
    assert_eq!(issue(s, "b", 1100), EmailIssue::Issued);
    assert_eq!(issue(s, "c", 1200), EmailIssue::Issued);
    assert_eq!(issue(s, "d", 1300), EmailIssue::TooMany { retry_at: 1600 });
    // The refused request stored nothing: "c" is still the pending code.
    assert_eq!(check(s, "d", 1301), EmailCheck::Wrong { tries_left: 4 });
    // Once the first send leaves the window, one more may go out — and the window
    // slides: the next waits for the second send to leave it.
    assert_eq!(issue(s, "e", 1600), EmailIssue::Issued);
    assert_eq!(
        s.email_code("u1").unwrap().unwrap().value.sent_at,
        vec![1100, 1200, 1600]
    );
    assert_eq!(issue(s, "f", 1650), EmailIssue::TooMany { retry_at: 1700 });
}

pub fn parallel_sends_cannot_pass_the_resend_limit_together(f: &dyn StoreFactory) {
    let s = f.fresh();
    let results = race(&s, |s, i| issue(s, &format!("h{i}"), 1000));
    let issued = results.iter().filter(|r| **r == EmailIssue::Issued).count();
    assert_eq!(issued, MAX_SENDS, "{results:?}");
    assert_eq!(
        s.email_code("u1").unwrap().unwrap().value.sent_at.len(),
        MAX_SENDS
    );
}
