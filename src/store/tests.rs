//! Store behaviour the rest of Usher relies on: unique accounts, single-use codes and
//! refresh tokens under concurrency, shared attempt counters, and data surviving a reopen.

use std::sync::Arc;

use super::*;

fn user(id: &str, name: &str, email: &str) -> User {
    User {
        id: id.into(),
        username: name.into(),
        email: Some(email.into()),
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: None,
        disabled: false,
        created_at: 1,
        updated_at: 1,
    }
}

fn code() -> CodeRecord {
    CodeRecord {
        client_id: "thrift".into(),
        redirect_uri: "http://localhost:3000/callback".into(),
        code_challenge: None,
        nonce: None,
        scopes: vec!["openid".into()],
        grant: GrantData {
            sub: "u1".into(),
            user_id: Some("u1".into()),
            auth_time: 1,
            amr: vec!["pwd".into()],
            claims: Default::default(),
            sid: None,
        },
        expires_at: 100,
        redeemed_by: None,
    }
}

#[test]
fn usernames_and_emails_are_unique_case_insensitively() {
    let s = SledStore::temporary().unwrap();
    s.create_user(&user("u1", "Alice", "alice@example.com"))
        .unwrap();
    let dup = s.create_user(&user("u2", "alice", "other@example.com"));
    assert!(matches!(dup, Err(StoreError::Conflict("username"))));
    let dup = s.create_user(&user("u3", "bob", "ALICE@example.com"));
    assert!(matches!(dup, Err(StoreError::Conflict("email"))));
    assert_eq!(s.user_count().unwrap(), 1);
    assert_eq!(s.find_user("ALICE").unwrap().unwrap().id, "u1");
    assert_eq!(s.find_user("alice@EXAMPLE.com").unwrap().unwrap().id, "u1");
}

#[test]
fn renaming_moves_the_index() {
    let s = SledStore::temporary().unwrap();
    let mut u = user("u1", "alice", "alice@example.com");
    s.create_user(&u).unwrap();
    u.username = "alicia".into();
    u.email = Some("alicia@example.com".into());
    s.update_user(&u).unwrap();
    assert!(s.find_user("alice").unwrap().is_none());
    assert!(s.find_user("alice@example.com").unwrap().is_none());
    assert_eq!(s.find_user("alicia@example.com").unwrap().unwrap().id, "u1");
}

#[test]
fn parallel_redemptions_of_one_code_give_exactly_one_success() {
    let s = Arc::new(SledStore::temporary().unwrap());
    s.put_code("h", &code()).unwrap();
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || s.redeem_code("h", &format!("g{i}")).unwrap())
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let fresh = results
        .iter()
        .filter(|r| matches!(r, Redeem::Fresh(_)))
        .count();
    assert_eq!(fresh, 1);
    let winner = results
        .iter()
        .find_map(|r| match r {
            Redeem::Fresh(c) => c.redeemed_by.clone(),
            _ => None,
        })
        .unwrap();
    // Every loser is told which grant to revoke: the winner's.
    for r in &results {
        if let Redeem::Reused(c) = r {
            assert_eq!(c.redeemed_by.as_deref(), Some(winner.as_str()));
        }
    }
    assert_eq!(s.redeem_code("nope", "g").unwrap(), Redeem::Unknown);
}

fn grant(id: &str) -> Grant {
    let c = code();
    Grant {
        id: id.into(),
        client_id: c.client_id,
        scopes: c.scopes,
        nonce: None,
        data: c.grant,
        revoked: false,
        created_at: 1,
        expires_at: 100,
    }
}

#[test]
fn a_reuse_that_beats_the_first_exchange_bars_its_grant() {
    let s = SledStore::temporary().unwrap();
    // The reuse is noticed before the first exchange has written its grant.
    s.bar_grant(&grant("g1")).unwrap();
    assert!(!s.create_grant(&grant("g1")).unwrap());
    assert!(s.grant("g1").unwrap().unwrap().revoked);
    // Noticed afterwards, it revokes the grant that was written.
    assert!(s.create_grant(&grant("g2")).unwrap());
    s.bar_grant(&grant("g2")).unwrap();
    assert!(s.grant("g2").unwrap().unwrap().revoked);
}

#[test]
fn refresh_rotation_detects_reuse() {
    let s = SledStore::temporary().unwrap();
    let rec = RefreshRecord {
        grant_id: "g".into(),
        expires_at: 100,
        used: false,
    };
    s.put_refresh("r1", &rec).unwrap();
    assert!(matches!(
        s.rotate_refresh("r1", "r2", &rec).unwrap(),
        Rotate::Rotated(_)
    ));
    assert!(matches!(
        s.rotate_refresh("r1", "r3", &rec).unwrap(),
        Rotate::Reused(_)
    ));
    // The reused attempt's new token was never stored.
    assert!(matches!(
        s.rotate_refresh("r3", "r4", &rec).unwrap(),
        Rotate::Unknown
    ));
    assert!(matches!(
        s.rotate_refresh("r2", "r5", &rec).unwrap(),
        Rotate::Rotated(_)
    ));
}

#[test]
fn failures_lock_after_the_limit_and_the_lock_expires() {
    let s = SledStore::temporary().unwrap();
    for i in 0..4 {
        let a = s.record_failure("password:u1", 1000 + i, 5, 900).unwrap();
        assert!(!a.locked_at(1000 + i), "locked after {} failures", i + 1);
    }
    let a = s.record_failure("password:u1", 1004, 5, 900).unwrap();
    assert!(a.locked_at(1005));
    assert!(s.attempts("password:u1").unwrap().locked_at(1800));
    assert!(!s.attempts("password:u1").unwrap().locked_at(1904));
    // After the lock runs out, counting starts over.
    let a = s.record_failure("password:u1", 2000, 5, 900).unwrap();
    assert_eq!(a.failures, 1);
    assert!(!a.locked_at(2000));
}

#[test]
fn flows_are_swept_by_age() {
    let s = SledStore::temporary().unwrap();
    let old = crate::crypto::time_prefixed_id(1000);
    let new = crate::crypto::time_prefixed_id(5000);
    s.put_flow(&old, b"a").unwrap();
    s.put_flow(&new, b"b").unwrap();
    assert_eq!(s.sweep_flows(2000).unwrap(), 1);
    assert!(s.flow(&old).unwrap().is_none());
    assert_eq!(s.flow(&new).unwrap().as_deref(), Some(&b"b"[..]));
}

#[test]
fn data_survives_reopening_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.create_user(&user("u1", "alice", "alice@example.com"))
            .unwrap();
        s.put_code("h", &code()).unwrap();
        s.redeem_code("h", "g1").unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.find_user("alice").unwrap().unwrap().id, "u1");
    // A consumed code stays consumed after a restart.
    assert!(matches!(
        s.redeem_code("h", "g2").unwrap(),
        Redeem::Reused(_)
    ));
}

#[test]
fn server_secrets_are_created_once() {
    let s = SledStore::temporary().unwrap();
    let a = s.secret("csrf", &|| vec![1, 2, 3]).unwrap();
    let b = s.secret("csrf", &|| vec![9]).unwrap();
    assert_eq!(a, vec![1, 2, 3]);
    assert_eq!(a, b);
}

fn totp_credential() -> TotpCredential {
    TotpCredential {
        sealed_secret: vec![1, 2, 3],
        created_at: 1,
        last_step: 0,
        confirmed: true,
    }
}

/// Runs `f` on 16 threads at once and returns their answers.
fn race<T: Send + 'static>(f: impl Fn() -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let start = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (f, start) = (f.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                f()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_totp_step_is_accepted_once_even_in_parallel() {
    let s = Arc::new(SledStore::temporary().unwrap());
    s.put_totp("u1", &totp_credential()).unwrap();
    let store = s.clone();
    let results = race(move || store.accept_totp_step("u1", 1000).unwrap());
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

#[test]
fn totp_debug_hides_the_sealed_secret() {
    let shown = format!("{:?}", totp_credential());
    assert!(!shown.contains("sealed_secret"), "{shown}");
    assert!(shown.contains("last_step: 0"), "{shown}");
}

#[test]
fn a_recovery_code_is_consumed_once_across_threads() {
    let s = Arc::new(SledStore::temporary().unwrap());
    let hashes: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    s.put_recovery_codes("u1", &hashes).unwrap();
    assert_eq!(s.recovery_codes_left("u1").unwrap(), 10);
    let store = s.clone();
    let results = race(move || store.consume_recovery_code("u1", "h3").unwrap());
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

/// E-mail policy used by these tests: 300 s life, 3 sends per 600 s, 5 wrong tries.
fn issue(s: &SledStore, hash: &str, now: u64) -> EmailIssue {
    s.issue_email_code("u1", hash, now, 300, 600, 3).unwrap()
}

fn check(s: &SledStore, hash: &str, now: u64) -> EmailCheck {
    s.consume_email_code("u1", hash, now, 5).unwrap()
}

#[test]
fn an_email_code_works_once_and_a_new_one_supersedes_it() {
    let s = SledStore::temporary().unwrap();
    assert_eq!(check(&s, "a", 1000), EmailCheck::Missing);
    assert_eq!(issue(&s, "a", 1000), EmailIssue::Issued);
    assert_eq!(issue(&s, "b", 1010), EmailIssue::Issued);
    assert_eq!(check(&s, "a", 1020), EmailCheck::Wrong { tries_left: 4 });
    assert_eq!(check(&s, "b", 1030), EmailCheck::Ok);
    assert_eq!(check(&s, "b", 1031), EmailCheck::Missing);
    let record = s.email_code("u1").unwrap().unwrap();
    assert!(record.code_hash.is_empty());
    assert_eq!(record.sent_at, vec![1000, 1010]);
}

#[test]
fn parallel_checks_of_one_email_code_give_one_success() {
    let s = Arc::new(SledStore::temporary().unwrap());
    assert_eq!(issue(&s, "a", 1000), EmailIssue::Issued);
    let store = s.clone();
    let results = race(move || store.consume_email_code("u1", "a", 1001, 5).unwrap());
    let ok = results.iter().filter(|r| **r == EmailCheck::Ok).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, EmailCheck::Ok | EmailCheck::Missing)));
}

#[test]
fn an_expired_email_code_is_refused() {
    let s = SledStore::temporary().unwrap();
    issue(&s, "a", 1000);
    assert_eq!(check(&s, "a", 1300), EmailCheck::Expired);
    assert_eq!(check(&s, "a", 1301), EmailCheck::Missing);
    issue(&s, "b", 1400);
    assert_eq!(check(&s, "b", 1699), EmailCheck::Ok);
}

#[test]
fn five_wrong_tries_burn_an_email_code() {
    let s = SledStore::temporary().unwrap();
    issue(&s, "a", 1000);
    for left in (1..5).rev() {
        assert_eq!(check(&s, "x", 1001), EmailCheck::Wrong { tries_left: left });
    }
    assert_eq!(check(&s, "x", 1001), EmailCheck::Wrong { tries_left: 0 });
    // Burned: even the right code no longer works.
    assert_eq!(check(&s, "a", 1002), EmailCheck::Missing);
    // A fresh code starts a fresh count.
    issue(&s, "c", 1003);
    assert_eq!(check(&s, "x", 1004), EmailCheck::Wrong { tries_left: 4 });
}

#[test]
fn resending_is_limited_per_window_even_after_codes_are_used() {
    let s = SledStore::temporary().unwrap();
    assert_eq!(issue(&s, "a", 1000), EmailIssue::Issued);
    assert_eq!(check(&s, "a", 1001), EmailCheck::Ok);
    assert_eq!(issue(&s, "b", 1100), EmailIssue::Issued);
    assert_eq!(issue(&s, "c", 1200), EmailIssue::Issued);
    assert_eq!(issue(&s, "d", 1300), EmailIssue::TooMany { retry_at: 1600 });
    // The refused request stored nothing: "c" is still the pending code.
    assert_eq!(check(&s, "d", 1301), EmailCheck::Wrong { tries_left: 4 });
    // Once the first send leaves the window, one more may go out.
    assert_eq!(issue(&s, "e", 1600), EmailIssue::Issued);
    assert_eq!(
        s.email_code("u1").unwrap().unwrap().sent_at,
        vec![1100, 1200, 1600]
    );
}

#[test]
fn parallel_sends_cannot_pass_the_resend_limit_together() {
    let s = Arc::new(SledStore::temporary().unwrap());
    let store = s.clone();
    let results = race(move || {
        store
            .issue_email_code("u1", "h", 1000, 300, 600, 3)
            .unwrap()
    });
    let issued = results.iter().filter(|r| **r == EmailIssue::Issued).count();
    assert_eq!(issued, 3, "{results:?}");
}

#[test]
fn second_factors_survive_reopening_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_totp("u1", &totp_credential()).unwrap();
        assert!(s.accept_totp_step("u1", 50).unwrap());
        s.put_recovery_codes("u1", &["h1".to_string()]).unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    // An accepted step stays used after a restart.
    assert!(!s.accept_totp_step("u1", 50).unwrap());
    assert_eq!(s.recovery_codes_left("u1").unwrap(), 1);
}

#[test]
fn expired_tokens_and_abandoned_round_trips_are_swept() {
    let s = SledStore::temporary().unwrap();
    let mut c = code();
    c.expires_at = 100;
    s.put_code("old", &c).unwrap();
    c.expires_at = 10_000;
    s.put_code("fresh", &c).unwrap();
    // A code is kept an hour past its expiry, to still recognise reuse.
    assert_eq!(s.sweep_tokens(3000).unwrap(), 0);
    assert_eq!(s.sweep_tokens(3701).unwrap(), 1);
    assert!(matches!(
        s.redeem_code("fresh", "g").unwrap(),
        Redeem::Fresh(_)
    ));
    assert_eq!(s.redeem_code("old", "g").unwrap(), Redeem::Unknown);

    let old_flow = crate::crypto::time_prefixed_id(1000);
    s.put_upstream_state("st-old", &old_flow).unwrap();
    s.put_upstream_state("st-new", &crate::crypto::time_prefixed_id(9000))
        .unwrap();
    s.sweep_flows(5000).unwrap();
    assert!(s.take_upstream_state("st-old").unwrap().is_none());
    assert!(s.take_upstream_state("st-new").unwrap().is_some());
}

#[test]
fn of_two_enrolments_at_once_the_first_secret_stays() {
    let s = SledStore::temporary().unwrap();
    let pending = |secret: &[u8]| TotpCredential {
        sealed_secret: secret.to_vec(),
        created_at: 1,
        last_step: 0,
        confirmed: false,
    };
    assert_eq!(
        s.create_totp("u1", &pending(b"first"))
            .unwrap()
            .sealed_secret,
        b"first"
    );
    // The second page is shown the first page's secret, and nothing is overwritten.
    assert_eq!(
        s.create_totp("u1", &pending(b"second"))
            .unwrap()
            .sealed_secret,
        b"first"
    );
    assert_eq!(s.totp("u1").unwrap().unwrap().sealed_secret, b"first");
}
