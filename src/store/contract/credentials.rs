//! Contract: second factors — TOTP steps and recovery codes used once, enrolment that
//! keeps the first secret, and e-mail code records swapped once per version, with the
//! rules of `authn::email_otp` (one pending code, wrong tries, resend limit) on top.

use super::*;
use crate::authn::email_otp::{self, EmailCheck, EmailIssue, MAX_SENDS};

pub async fn a_totp_step_is_accepted_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.put_totp("u1", &totp_credential()).await.unwrap();
    let results = race(&s, |s, _| async move {
        s.accept_totp_step("u1", 1000).await.unwrap()
    })
    .await;
    assert_eq!(results.iter().filter(|&&ok| ok).count(), 1, "{results:?}");
    assert_eq!(s.totp("u1").await.unwrap().unwrap().last_step, 1000);
    // The same step again, or an earlier one, is a replay.
    assert!(!s.accept_totp_step("u1", 1000).await.unwrap());
    assert!(!s.accept_totp_step("u1", 999).await.unwrap());
    assert!(s.accept_totp_step("u1", 1001).await.unwrap());
    // No authenticator, nothing to accept.
    assert!(!s.accept_totp_step("u2", 1).await.unwrap());
    s.delete_totp("u1").await.unwrap();
    assert!(s.totp("u1").await.unwrap().is_none());
    assert!(!s.accept_totp_step("u1", 2000).await.unwrap());
}

pub async fn of_parallel_enrolments_the_first_secret_stays(f: &dyn StoreFactory) {
    let s = f.fresh();
    let pending = |secret: Vec<u8>| TotpCredential {
        sealed_secret: secret,
        created_at: 1,
        last_step: 0,
        confirmed: false,
    };
    let shown = race(&s, move |s, i| async move {
        s.create_totp("u1", &pending(vec![i as u8]))
            .await
            .unwrap()
            .sealed_secret
    })
    .await;
    // Every page shows the one secret that was stored, and nothing overwrote it.
    let stored = s.totp("u1").await.unwrap().unwrap().sealed_secret;
    assert!(shown.iter().all(|secret| *secret == stored), "{shown:?}");
}

pub async fn a_recovery_code_is_consumed_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    let hashes: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    s.put_recovery_codes("u1", &hashes).await.unwrap();
    assert_eq!(s.recovery_codes_left("u1").await.unwrap(), 10);
    let results = race(&s, |s, _| async move {
        s.consume_recovery_code("u1", "h3").await.unwrap()
    })
    .await;
    assert_eq!(results.iter().filter(|&&ok| ok).count(), 1, "{results:?}");
    assert_eq!(s.recovery_codes_left("u1").await.unwrap(), 9);
    assert!(!s.consume_recovery_code("u1", "h3").await.unwrap());
    assert!(!s.consume_recovery_code("u1", "nope").await.unwrap());
    // Another account's codes are not this account's.
    assert!(!s.consume_recovery_code("u2", "h4").await.unwrap());
    // New codes replace every old one.
    s.put_recovery_codes("u1", &["n1".to_string()])
        .await
        .unwrap();
    assert!(!s.consume_recovery_code("u1", "h4").await.unwrap());
    assert!(s.consume_recovery_code("u1", "n1").await.unwrap());
    assert_eq!(s.recovery_codes_left("u1").await.unwrap(), 0);
    assert_eq!(s.recovery_codes_left("nobody").await.unwrap(), 0);
}

fn record(hash: &str) -> EmailCode {
    EmailCode {
        code_hash: hash.into(),
        expires_at: 1300,
        sent_at: vec![1000],
        wrong: 0,
    }
}

pub async fn an_email_code_record_swaps_once_per_version(f: &dyn StoreFactory) {
    let s = f.fresh();
    assert!(s.email_code("u1").await.unwrap().is_none());
    // Of parallel first writes, one lands.
    let created = race(&s, |s, i| async move {
        s.swap_email_code("u1", None, &record(&format!("h{i}")))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(created.iter().filter(|&&ok| ok).count(), 1, "{created:?}");
    let first = s.email_code("u1").await.unwrap().unwrap();
    let winner = created.iter().position(|&ok| ok).unwrap();
    assert_eq!(first.value.code_hash, format!("h{winner}"));
    // Of parallel swaps from one version, one lands; the version moves.
    let version = first.version;
    let swapped = race(&s, move |s, i| async move {
        s.swap_email_code("u1", Some(version), &record(&format!("x{i}")))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(swapped.iter().filter(|&&ok| ok).count(), 1, "{swapped:?}");
    let second = s.email_code("u1").await.unwrap().unwrap();
    assert_ne!(second.version, version);
    assert!(!s
        .swap_email_code("u1", Some(version), &record("late"))
        .await
        .unwrap());
    assert!(!s
        .swap_email_code("u1", None, &record("late"))
        .await
        .unwrap());
    // A plain put also moves the version, so a swap prepared before it fails.
    s.put_email_code("u1", &record("put")).await.unwrap();
    let third = s.email_code("u1").await.unwrap().unwrap();
    assert_eq!(third.value, record("put"));
    assert_ne!(third.version, second.version);
    assert!(!s
        .swap_email_code("u1", Some(second.version), &record("late"))
        .await
        .unwrap());
}

/// The rules of `authn::email_otp` on this store, with hashes standing for codes.
async fn issue(s: &dyn Store, hash: &str, now: u64) -> EmailIssue {
    email_otp::store_code(s, "u1", hash, now).await.unwrap()
}

async fn check(s: &dyn Store, hash: &str, now: u64) -> EmailCheck {
    email_otp::check_hash(s, "u1", hash, now).await.unwrap()
}

pub async fn an_email_code_works_once_and_a_new_one_supersedes_it(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    assert_eq!(check(s, "a", 1000).await, EmailCheck::Missing);
    assert_eq!(issue(s, "a", 1000).await, EmailIssue::Issued);
    assert_eq!(issue(s, "b", 1010).await, EmailIssue::Issued);
    assert_eq!(
        check(s, "a", 1020).await,
        EmailCheck::Wrong { tries_left: 4 }
    );
    assert_eq!(check(s, "b", 1030).await, EmailCheck::Ok);
    assert_eq!(check(s, "b", 1031).await, EmailCheck::Missing);
    let record = s.email_code("u1").await.unwrap().unwrap().value;
    assert!(record.code_hash.is_empty());
    assert_eq!(record.sent_at, vec![1000, 1010]);
}

pub async fn parallel_checks_of_one_email_code_give_one_success(f: &dyn StoreFactory) {
    let s = f.fresh();
    assert_eq!(issue(s.as_ref(), "a", 1000).await, EmailIssue::Issued);
    let results = race(&s, |s, _| async move { check(s.as_ref(), "a", 1001).await }).await;
    let ok = results.iter().filter(|r| **r == EmailCheck::Ok).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, EmailCheck::Ok | EmailCheck::Missing)));
}

pub async fn parallel_wrong_email_codes_are_each_counted(f: &dyn StoreFactory) {
    let s = f.fresh();
    issue(s.as_ref(), "a", 1000).await;
    let results = race(&s, |s, _| async move { check(s.as_ref(), "x", 1001).await }).await;
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
    assert_eq!(check(s.as_ref(), "a", 1002).await, EmailCheck::Missing);
}

pub async fn an_expired_email_code_is_refused(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    issue(s, "a", 1000).await;
    assert_eq!(check(s, "a", 1300).await, EmailCheck::Expired);
    assert_eq!(check(s, "a", 1301).await, EmailCheck::Missing);
    issue(s, "b", 1400).await;
    assert_eq!(check(s, "b", 1699).await, EmailCheck::Ok);
}

pub async fn five_wrong_tries_burn_an_email_code(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    issue(s, "a", 1000).await;
    for left in (1..5).rev() {
        assert_eq!(
            check(s, "x", 1001).await,
            EmailCheck::Wrong { tries_left: left }
        );
    }
    assert_eq!(
        check(s, "x", 1001).await,
        EmailCheck::Wrong { tries_left: 0 }
    );
    // Burned: even the right code no longer works.
    assert_eq!(check(s, "a", 1002).await, EmailCheck::Missing);
    // A fresh code starts a fresh count.
    issue(s, "c", 1003).await;
    assert_eq!(
        check(s, "x", 1004).await,
        EmailCheck::Wrong { tries_left: 4 }
    );
}

pub async fn resending_is_limited_per_window_even_after_codes_are_used(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    assert_eq!(issue(s, "a", 1000).await, EmailIssue::Issued);
    assert_eq!(check(s, "a", 1001).await, EmailCheck::Ok);
    assert_eq!(issue(s, "b", 1100).await, EmailIssue::Issued);
    assert_eq!(issue(s, "c", 1200).await, EmailIssue::Issued);
    assert_eq!(
        issue(s, "d", 1300).await,
        EmailIssue::TooMany { retry_at: 1600 }
    );
    // The refused request stored nothing: "c" is still the pending code.
    assert_eq!(
        check(s, "d", 1301).await,
        EmailCheck::Wrong { tries_left: 4 }
    );
    // Once the first send leaves the window, one more may go out — and the window
    // slides: the next waits for the second send to leave it.
    assert_eq!(issue(s, "e", 1600).await, EmailIssue::Issued);
    assert_eq!(
        s.email_code("u1").await.unwrap().unwrap().value.sent_at,
        vec![1100, 1200, 1600]
    );
    assert_eq!(
        issue(s, "f", 1650).await,
        EmailIssue::TooMany { retry_at: 1700 }
    );
}

pub async fn parallel_sends_cannot_pass_the_resend_limit_together(f: &dyn StoreFactory) {
    let s = f.fresh();
    let results = race(&s, |s, i| async move {
        issue(s.as_ref(), &format!("h{i}"), 1000).await
    })
    .await;
    let issued = results.iter().filter(|r| **r == EmailIssue::Issued).count();
    assert_eq!(issued, MAX_SENDS, "{results:?}");
    assert_eq!(
        s.email_code("u1")
            .await
            .unwrap()
            .unwrap()
            .value
            .sent_at
            .len(),
        MAX_SENDS
    );
}

/// New recovery codes generated twice at once (a double click on "new codes", two
/// tabs): afterwards exactly one request's codes are valid. Every other set was
/// replaced, so no code from a page the user may never have seen still works.
pub async fn parallel_new_recovery_codes_leave_exactly_one_set(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.put_recovery_codes("u1", &["old".to_string()])
        .await
        .unwrap();
    race(&s, |s, i| async move {
        let set: Vec<String> = (0..10).map(|n| format!("r{i}-{n}")).collect();
        s.put_recovery_codes("u1", &set).await.unwrap();
    })
    .await;
    assert_eq!(s.recovery_codes_left("u1").await.unwrap(), 10);
    assert!(!s.consume_recovery_code("u1", "old").await.unwrap());
    // The ten left are one request's set.
    let mut winner = None;
    for i in 0..PARALLEL {
        if s.consume_recovery_code("u1", &format!("r{i}-0"))
            .await
            .unwrap()
        {
            assert!(winner.is_none(), "codes of two sets are valid");
            winner = Some(i);
        }
    }
    let winner = winner.expect("one set is valid");
    for n in 1..10 {
        assert!(s
            .consume_recovery_code("u1", &format!("r{winner}-{n}"))
            .await
            .unwrap());
    }
}
