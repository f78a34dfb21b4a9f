//! Contract: the calls that answer several capabilities at once (the silent SSO
//! sign-in's) give exactly what the single calls they stand for would, and keep their
//! promises under concurrency.

use super::*;

/// `u1` with a confirmed authenticator and three recovery codes; `u2` with nothing.
async fn two_accounts(s: &Arc<dyn Store>) {
    s.create_user(&user("u1", "ann", "ann@example.com"))
        .await
        .unwrap();
    s.create_user(&user("u2", "bob", "bob@example.com"))
        .await
        .unwrap();
    s.put_totp("u1", &totp_credential()).await.unwrap();
    let codes = ["a".to_string(), "b".into(), "c".into()];
    s.put_recovery_codes("u1", &codes).await.unwrap();
}

pub async fn an_account_is_read_with_its_second_factors(f: &dyn StoreFactory) {
    let s = f.fresh();
    two_accounts(&s).await;
    let ann = s.account("u1").await.unwrap().unwrap();
    assert_eq!(ann.user, s.user("u1").await.unwrap().unwrap());
    assert!(ann.totp, "a confirmed authenticator was not seen");
    assert_eq!(ann.recovery_codes, 3);
    let bob = s.account("u2").await.unwrap().unwrap();
    assert_eq!((bob.totp, bob.recovery_codes), (false, 0));
    // An authenticator not confirmed yet is no second factor.
    let unconfirmed = TotpCredential {
        confirmed: false,
        ..totp_credential()
    };
    s.put_totp("u2", &unconfirmed).await.unwrap();
    assert!(!s.account("u2").await.unwrap().unwrap().totp);
    assert!(s.consume_recovery_code("u1", "b").await.unwrap());
    assert_eq!(s.account("u1").await.unwrap().unwrap().recovery_codes, 2);
    assert_eq!(s.account("nobody").await.unwrap(), None);
    // Its groups, with the roles they give, as `memberships` reads them.
    assert!(ann.groups.is_empty());
    let mut admins = super::groups::group("g2", "admins", &["u1"]);
    admins.roles = vec!["admin".into()];
    s.create_group(&admins).await.unwrap();
    s.create_group(&super::groups::group("g1", "staff", &["u1", "u2"]))
        .await
        .unwrap();
    let ann = s.account("u1").await.unwrap().unwrap();
    let names: Vec<&str> = ann.groups.iter().map(|g| g.display_name.as_str()).collect();
    assert_eq!(names, ["staff", "admins"]);
    assert_eq!(ann.groups[1].roles, ["admin"]);
    let read = s.memberships(&["u1".to_string()]).await.unwrap();
    assert_eq!(Some(&ann.groups), read.get("u1"));
    assert_eq!(s.account("u2").await.unwrap().unwrap().groups.len(), 1);
}

pub async fn a_session_is_read_with_its_account(f: &dyn StoreFactory) {
    let s = f.fresh();
    two_accounts(&s).await;
    s.put_session("s1", &session(Some("u1"), 100))
        .await
        .unwrap();
    s.put_session("s2", &session(None, 100)).await.unwrap();
    s.put_session("s3", &session(Some("u2"), 100))
        .await
        .unwrap();
    let (found, account) = s.session_with_account("s1").await.unwrap().unwrap();
    assert_eq!(found, session(Some("u1"), 100));
    assert_eq!(account, s.account("u1").await.unwrap());
    // A subject without an account has a session and nothing more.
    let (found, account) = s.session_with_account("s2").await.unwrap().unwrap();
    assert_eq!((found.user_id, account), (None, None));
    // An account deleted while its session lives: the session, without it.
    s.delete_user("u2").await.unwrap();
    let (found, account) = s.session_with_account("s3").await.unwrap().unwrap();
    assert_eq!((found.user_id.as_deref(), account), (Some("u2"), None));
    assert_eq!(s.session_with_account("nope").await.unwrap(), None);
}

/// A code for `u1` issued in session `s1`.
fn code_in(session: Option<&str>) -> CodeRecord {
    let mut c = code();
    c.grant.session = session.map(String::from);
    c
}

pub async fn a_redemption_reads_the_account_and_session_it_needs(f: &dyn StoreFactory) {
    let s = f.fresh();
    two_accounts(&s).await;
    s.put_session("s1", &session(Some("u1"), 100))
        .await
        .unwrap();
    s.put_code("live", &code_in(Some("s1"))).await.unwrap();
    let r = s.redeem_code_at("live", "g1", 50).await.unwrap();
    let Redeem::Fresh(record) = &r.redeem else {
        panic!("a fresh code was not redeemed: {:?}", r.redeem)
    };
    assert_eq!(record.redeemed_by.as_deref(), Some("g1"));
    assert_eq!(r.user, s.user("u1").await.unwrap());
    assert!(r.session_live);
    // The second use is a reuse naming the first grant, and reads nothing else.
    let again = s.redeem_code_at("live", "g2", 50).await.unwrap();
    match again.redeem {
        Redeem::Reused(c) => assert_eq!(c.redeemed_by.as_deref(), Some("g1")),
        other => panic!("a used code was not reported reused: {other:?}"),
    }
    assert_eq!(
        s.redeem_code_at("nope", "g3", 50).await.unwrap().redeem,
        Redeem::Unknown
    );
    // The session expired at the exchange's time, or ended: not live.
    s.put_code("late", &code_in(Some("s1"))).await.unwrap();
    assert!(
        !s.redeem_code_at("late", "g4", 100)
            .await
            .unwrap()
            .session_live
    );
    s.put_code("ended", &code_in(Some("s1"))).await.unwrap();
    s.delete_session("s1").await.unwrap();
    assert!(
        !s.redeem_code_at("ended", "g5", 50)
            .await
            .unwrap()
            .session_live
    );
    // A code that names no session has none to check.
    s.put_code("bare", &code_in(None)).await.unwrap();
    assert!(
        s.redeem_code_at("bare", "g6", 50)
            .await
            .unwrap()
            .session_live
    );
    // The account as it is now: disabled since, or gone.
    let mut ann = s.user("u1").await.unwrap().unwrap();
    ann.disabled = true;
    s.update_user(&ann).await.unwrap();
    s.put_code("disabled", &code_in(None)).await.unwrap();
    let r = s.redeem_code_at("disabled", "g7", 50).await.unwrap();
    assert!(r.user.is_some_and(|u| u.disabled));
    s.delete_user("u1").await.unwrap();
    s.put_code("deleted", &code_in(None)).await.unwrap();
    assert_eq!(
        s.redeem_code_at("deleted", "g8", 50).await.unwrap().user,
        None
    );
}

pub async fn parallel_redemptions_read_standing_once(f: &dyn StoreFactory) {
    let s = f.fresh();
    two_accounts(&s).await;
    s.put_session("s1", &session(Some("u1"), 100))
        .await
        .unwrap();
    s.put_code("h", &code_in(Some("s1"))).await.unwrap();
    let results = race(&s, |s, i| async move {
        s.redeem_code_at("h", &format!("g{i}"), 50).await.unwrap()
    })
    .await;
    let fresh: Vec<&Redemption> = results
        .iter()
        .filter(|r| matches!(r.redeem, Redeem::Fresh(_)))
        .collect();
    assert_eq!(fresh.len(), 1, "one code was redeemed fresh several times");
    assert!(fresh[0].user.is_some() && fresh[0].session_live);
    let Redeem::Fresh(won) = &fresh[0].redeem else {
        unreachable!()
    };
    for r in &results {
        if let Redeem::Reused(c) = &r.redeem {
            assert_eq!(c.redeemed_by, won.redeemed_by);
        }
    }
}

fn first_refresh(grant_id: &str) -> RefreshRecord {
    RefreshRecord {
        grant_id: grant_id.into(),
        expires_at: 100,
        used: false,
    }
}

pub async fn a_grant_and_its_refresh_token_are_written_together_or_not_at_all(
    f: &dyn StoreFactory,
) {
    let s = f.fresh();
    assert!(s
        .create_grant_with_refresh(&grant("g1"), "r1", &first_refresh("g1"))
        .await
        .unwrap());
    assert_eq!(s.grant("g1").await.unwrap(), Some(grant("g1")));
    assert_eq!(
        s.refresh_token("r1").await.unwrap(),
        Some(first_refresh("g1"))
    );
    // A reuse of the code barred the grant first: no grant of this exchange, no token.
    s.bar_grant(&grant("g2")).await.unwrap();
    assert!(!s
        .create_grant_with_refresh(&grant("g2"), "r2", &first_refresh("g2"))
        .await
        .unwrap());
    assert!(s.grant("g2").await.unwrap().unwrap().revoked);
    assert_eq!(s.refresh_token("r2").await.unwrap(), None);
    // Of parallel writes of one grant, one writes it with its token; the rest nothing.
    let results = race(&s, |s, i| async move {
        s.create_grant_with_refresh(&grant("g3"), &format!("p{i}"), &first_refresh("g3"))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(results.iter().filter(|w| **w).count(), 1);
    let mut tokens = 0;
    for (i, won) in results.iter().enumerate() {
        if s.refresh_token(&format!("p{i}")).await.unwrap().is_some() {
            tokens += 1;
            assert!(*won, "a losing write left its refresh token");
        }
    }
    assert_eq!(tokens, 1);
}

pub async fn a_code_is_written_with_its_audit_events(f: &dyn StoreFactory) {
    let s = f.fresh();
    let event = |n: u64, kind: &str| AuditEvent {
        id: crate::audit::event_id(n),
        at: n,
        kind: kind.into(),
        app: Some("thrift".into()),
        sub: Some("u1".into()),
        outcome: "success".into(),
        detail: vec![format!("line {n}")],
    };
    let events = [event(10, "sign_in"), event(11, "mfa.skipped")];
    s.put_code_with_events("h", &code(), &events).await.unwrap();
    assert!(matches!(
        s.redeem_code("h", "g").await.unwrap(),
        Redeem::Fresh(_)
    ));
    assert_eq!(s.events(0, 10).await.unwrap(), events);
    // A sign-in with nothing to record still gets its code.
    s.put_code_with_events("h2", &code(), &[]).await.unwrap();
    assert!(matches!(
        s.redeem_code("h2", "g2").await.unwrap(),
        Redeem::Fresh(_)
    ));
    assert_eq!(s.events(0, 10).await.unwrap().len(), 2);
}

/// Grant `g1` of `u1` in session `s1` (or none), with refresh token `r1`.
async fn granted(s: &Arc<dyn Store>, session: Option<&str>) {
    let mut g = grant("g1");
    g.data.session = session.map(String::from);
    assert!(s
        .create_grant_with_refresh(&g, "r1", &first_refresh("g1"))
        .await
        .unwrap());
}

pub async fn a_rotation_reads_the_grant_session_and_account_it_needs(f: &dyn StoreFactory) {
    let s = f.fresh();
    two_accounts(&s).await;
    s.put_session("s1", &session(Some("u1"), 100))
        .await
        .unwrap();
    granted(&s, Some("s1")).await;
    let r = s.rotate_refresh_at("r1", "r2", 50).await.unwrap();
    let Rotate::Rotated(old) = &r.rotate else {
        panic!("a fresh token was not rotated: {:?}", r.rotate)
    };
    assert_eq!(old.grant_id, "g1");
    assert_eq!(r.grant.as_ref().map(|g| g.id.as_str()), Some("g1"));
    assert_eq!(r.user, s.user("u1").await.unwrap());
    assert!(r.session_live);
    // The new token carries the grant and expiry on, and rotates in turn.
    assert_eq!(
        s.refresh_token("r2").await.unwrap(),
        Some(first_refresh("g1"))
    );
    // Spending the old one again is a reuse naming its grant; nothing else is read.
    let again = s.rotate_refresh_at("r1", "r3", 50).await.unwrap();
    assert!(matches!(&again.rotate, Rotate::Reused(o) if o.grant_id == "g1"));
    assert_eq!((again.grant, again.user), (None, None));
    assert_eq!(
        s.refresh_token("r3").await.unwrap(),
        None,
        "a reuse stored its token"
    );
    assert_eq!(
        s.rotate_refresh_at("nope", "r4", 50).await.unwrap().rotate,
        Rotate::Unknown
    );
    // The session expired at the refresh's time, then ended.
    assert!(
        !s.rotate_refresh_at("r2", "r5", 100)
            .await
            .unwrap()
            .session_live
    );
    s.delete_session("s1").await.unwrap();
    assert!(
        !s.rotate_refresh_at("r5", "r6", 50)
            .await
            .unwrap()
            .session_live
    );
    // The account gone: the grant is still read, the account is not there.
    s.delete_user("u1").await.unwrap();
    let r = s.rotate_refresh_at("r6", "r7", 50).await.unwrap();
    assert!(r.grant.is_some());
    assert_eq!(r.user, None);
}

pub async fn a_rotation_of_a_grant_without_a_session_has_none_to_check(f: &dyn StoreFactory) {
    let s = f.fresh();
    two_accounts(&s).await;
    granted(&s, None).await;
    let r = s.rotate_refresh_at("r1", "r2", 50).await.unwrap();
    assert!(matches!(r.rotate, Rotate::Rotated(_)));
    assert!(r.session_live);
    // A token whose grant the sweep removed: rotated, with no grant to issue from.
    s.put_refresh("orphan", &first_refresh("gone"))
        .await
        .unwrap();
    let r = s.rotate_refresh_at("orphan", "o2", 50).await.unwrap();
    assert!(matches!(r.rotate, Rotate::Rotated(_)));
    assert_eq!(r.grant, None);
}

pub async fn parallel_rotations_at_spend_a_token_once(f: &dyn StoreFactory) {
    let s = f.fresh();
    two_accounts(&s).await;
    granted(&s, None).await;
    let results = race(&s, |s, i| async move {
        s.rotate_refresh_at("r1", &format!("n{i}"), 50)
            .await
            .unwrap()
    })
    .await;
    let won: Vec<usize> = (0..PARALLEL)
        .filter(|i| matches!(results[*i].rotate, Rotate::Rotated(_)))
        .collect();
    assert_eq!(won.len(), 1, "one token was rotated several times");
    for (i, r) in results.iter().enumerate() {
        let stored = s.refresh_token(&format!("n{i}")).await.unwrap();
        match &r.rotate {
            Rotate::Rotated(_) => assert_eq!(stored, Some(first_refresh("g1"))),
            Rotate::Reused(old) => {
                assert_eq!(old.grant_id, "g1");
                assert_eq!(stored, None, "a losing rotation stored its token");
            }
            Rotate::Unknown => panic!("a stored token was unknown"),
        }
    }
}
