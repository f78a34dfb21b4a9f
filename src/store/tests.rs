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
