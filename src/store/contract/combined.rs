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
