//! Contract: grants indexed by account and by SSO session, revoked through either
//! index (offline grants kept when asked), each revocation counted once even in
//! parallel, swept with their index entries; refresh tokens looked up without being
//! spent.

use super::*;

/// A grant of `user` issued under `session`, offline or not.
fn grant_in(id: &str, user: &str, session: Option<&str>, offline: bool) -> Grant {
    let mut g = grant(id);
    g.data.sub = user.into();
    g.data.user_id = Some(user.into());
    g.data.session = session.map(String::from);
    g.offline = offline;
    if offline {
        g.scopes.push("offline_access".into());
    }
    g
}

fn ids(grants: &[Grant]) -> Vec<&str> {
    grants.iter().map(|g| g.id.as_str()).collect()
}

pub async fn grants_are_listed_by_account_and_by_session(f: &dyn StoreFactory) {
    let s = f.fresh();
    for g in [
        grant_in("g1", "u1", Some("s1"), false),
        grant_in("g2", "u1", Some("s2"), true),
        grant_in("g3", "u1", Some("s1"), true),
        grant_in("g4", "u2", Some("s3"), false),
        grant_in("g5", "u1", None, false),
    ] {
        assert!(s.create_grant(&g).await.unwrap());
    }
    // A grant whose code was reused before it was written is barred: still listed.
    s.bar_grant(&grant_in("g6", "u1", Some("s1"), false))
        .await
        .unwrap();
    assert_eq!(
        ids(&s.grants_of("u1").await.unwrap()),
        ["g1", "g2", "g3", "g5", "g6"]
    );
    assert_eq!(ids(&s.grants_of("u2").await.unwrap()), ["g4"]);
    assert!(s.grants_of("u3").await.unwrap().is_empty());
    assert_eq!(
        ids(&s.session_grants("s1").await.unwrap()),
        ["g1", "g3", "g6"]
    );
    assert_eq!(ids(&s.session_grants("s3").await.unwrap()), ["g4"]);
    assert!(s.session_grants("nope").await.unwrap().is_empty());
    let listed = s.grants_of("u1").await.unwrap();
    assert!(listed[1].offline && !listed[0].offline);
    assert!(listed[4].revoked);
    // A second write of an id changes neither the grant nor the indexes.
    assert!(!s
        .create_grant(&grant_in("g1", "u2", Some("s3"), false))
        .await
        .unwrap());
    assert_eq!(ids(&s.session_grants("s3").await.unwrap()), ["g4"]);
}

pub async fn ending_a_session_revokes_its_grants_and_can_keep_offline_ones(f: &dyn StoreFactory) {
    let s = f.fresh();
    for g in [
        grant_in("g1", "u1", Some("s1"), false),
        grant_in("g2", "u1", Some("s1"), true),
        grant_in("g3", "u1", Some("s2"), false),
    ] {
        assert!(s.create_grant(&g).await.unwrap());
    }
    assert_eq!(s.revoke_session_grants("s1", true).await.unwrap(), 1);
    assert!(s.grant("g1").await.unwrap().unwrap().revoked);
    assert!(
        !s.grant("g2").await.unwrap().unwrap().revoked,
        "offline stays"
    );
    assert!(
        !s.grant("g3").await.unwrap().unwrap().revoked,
        "other session"
    );
    // Already revoked ones are not counted again.
    assert_eq!(s.revoke_session_grants("s1", true).await.unwrap(), 0);
    assert_eq!(s.revoke_session_grants("s1", false).await.unwrap(), 1);
    assert!(s.grant("g2").await.unwrap().unwrap().revoked);
    assert_eq!(s.revoke_session_grants("unknown", false).await.unwrap(), 0);
}

pub async fn revoking_an_account_revokes_every_grant_it_holds(f: &dyn StoreFactory) {
    let s = f.fresh();
    for g in [
        grant_in("g1", "u1", Some("s1"), false),
        grant_in("g2", "u1", Some("s2"), true),
        grant_in("g3", "u1", None, false),
        grant_in("g4", "u2", Some("s3"), true),
    ] {
        assert!(s.create_grant(&g).await.unwrap());
    }
    s.revoke_grant("g3").await.unwrap();
    assert_eq!(s.revoke_grants_of("u1").await.unwrap(), 2);
    for id in ["g1", "g2", "g3"] {
        assert!(s.grant(id).await.unwrap().unwrap().revoked, "{id}");
    }
    assert!(
        !s.grant("g4").await.unwrap().unwrap().revoked,
        "another account"
    );
    assert_eq!(s.revoke_grants_of("u1").await.unwrap(), 0);
    assert_eq!(s.revoke_grants_of("nobody").await.unwrap(), 0);
    // Revoking an unknown grant is no error and writes nothing.
    s.revoke_grant("g9").await.unwrap();
    assert!(s.grant("g9").await.unwrap().is_none());
}

pub async fn parallel_revocations_count_each_grant_once(f: &dyn StoreFactory) {
    let s = f.fresh();
    const GRANTS: usize = 20;
    for i in 0..GRANTS {
        let session = format!("s{}", i % 2);
        let g = grant_in(&format!("g{i:02}"), "u1", Some(&session), i % 4 == 0);
        assert!(s.create_grant(&g).await.unwrap());
    }
    // Half the callers revoke the account, half one of its sessions: every grant is
    // counted by exactly one of them.
    let counts = race(&s, |s, i| async move {
        if i % 2 == 0 {
            s.revoke_grants_of("u1").await.unwrap()
        } else {
            s.revoke_session_grants("s1", false).await.unwrap()
        }
    })
    .await;
    assert_eq!(counts.iter().sum::<usize>(), GRANTS, "{counts:?}");
    assert!(s.grants_of("u1").await.unwrap().iter().all(|g| g.revoked));
}

pub async fn swept_grants_leave_both_indexes(f: &dyn StoreFactory) {
    let s = f.fresh();
    let mut old = grant_in("g_old", "u1", Some("s1"), false);
    old.expires_at = 50;
    assert!(s.create_grant(&old).await.unwrap());
    assert!(s
        .create_grant(&grant_in("g_live", "u1", Some("s1"), false))
        .await
        .unwrap());
    assert_eq!(s.sweep_tokens(60).await.unwrap(), 1);
    assert_eq!(ids(&s.grants_of("u1").await.unwrap()), ["g_live"]);
    assert_eq!(ids(&s.session_grants("s1").await.unwrap()), ["g_live"]);
    assert_eq!(s.revoke_grants_of("u1").await.unwrap(), 1);
    // The id is free again, and a grant written under it is indexed afresh.
    assert!(s
        .create_grant(&grant_in("g_old", "u2", Some("s2"), false))
        .await
        .unwrap());
    assert_eq!(ids(&s.grants_of("u2").await.unwrap()), ["g_old"]);
    assert!(s
        .grants_of("u1")
        .await
        .unwrap()
        .iter()
        .all(|g| g.id == "g_live"));
}

pub async fn a_sessions_grants_move_to_the_session_replacing_it(f: &dyn StoreFactory) {
    let s = f.fresh();
    for g in [
        grant_in("g1", "u1", Some("s1"), false),
        grant_in("g2", "u1", Some("s1"), true),
        grant_in("g3", "u1", Some("s2"), false),
    ] {
        assert!(s.create_grant(&g).await.unwrap());
    }
    assert_eq!(s.move_session_grants("s1", "s9", "sid9").await.unwrap(), 2);
    assert!(s.session_grants("s1").await.unwrap().is_empty());
    let moved = s.session_grants("s9").await.unwrap();
    assert_eq!(ids(&moved), ["g1", "g2"]);
    for g in &moved {
        assert_eq!(g.data.session.as_deref(), Some("s9"));
        assert_eq!(g.data.sid.as_deref(), Some("sid9"));
    }
    assert_eq!(ids(&s.session_grants("s2").await.unwrap()), ["g3"]);
    // They end with their new session now.
    assert_eq!(s.revoke_session_grants("s9", true).await.unwrap(), 1);
    assert_eq!(s.move_session_grants("s1", "s8", "sid8").await.unwrap(), 0);
    assert_eq!(ids(&s.grants_of("u1").await.unwrap()), ["g1", "g2", "g3"]);
}

pub async fn a_refresh_token_is_looked_up_without_being_spent(f: &dyn StoreFactory) {
    let s = f.fresh();
    let rec = RefreshRecord {
        grant_id: "g1".into(),
        expires_at: 100,
        used: false,
    };
    s.put_refresh("r1", &rec).await.unwrap();
    assert_eq!(s.refresh_token("r1").await.unwrap(), Some(rec.clone()));
    assert_eq!(s.refresh_token("r1").await.unwrap(), Some(rec.clone()));
    assert!(matches!(
        s.rotate_refresh("r1", "r2", &rec).await.unwrap(),
        Rotate::Rotated(_)
    ));
    assert!(s.refresh_token("r1").await.unwrap().unwrap().used);
    assert_eq!(s.refresh_token("nope").await.unwrap(), None);
}

pub async fn revoking_an_account_can_spare_one_apps_grant_in_one_session(f: &dyn StoreFactory) {
    let s = f.fresh();
    let mine = |id: &str, session: Option<&str>| {
        let mut g = grant_in(id, "u1", session, false);
        g.client_id = "my-account".into();
        g
    };
    for g in [
        mine("g1", Some("s1")),
        mine("g2", Some("s2")),
        mine("g3", None),
        grant_in("g4", "u1", Some("s1"), true),
        grant_in("g5", "u2", Some("s1"), false),
    ] {
        assert!(s.create_grant(&g).await.unwrap());
    }
    assert_eq!(
        s.revoke_grants_of_except("u1", "my-account", "s1")
            .await
            .unwrap(),
        3
    );
    assert!(
        !s.grant("g1").await.unwrap().unwrap().revoked,
        "the spared grant"
    );
    for id in ["g2", "g3", "g4"] {
        assert!(s.grant(id).await.unwrap().unwrap().revoked, "{id}");
    }
    assert!(
        !s.grant("g5").await.unwrap().unwrap().revoked,
        "another account"
    );
    assert_eq!(
        s.revoke_grants_of_except("u1", "my-account", "s1")
            .await
            .unwrap(),
        0
    );
    // Parallel calls count each grant once, and every one spares the same grants.
    for i in 0..20 {
        let mut g = grant_in(&format!("p{i:02}"), "u3", Some("s9"), false);
        if i % 4 == 0 {
            g.client_id = "my-account".into();
        }
        assert!(s.create_grant(&g).await.unwrap());
    }
    let counts = race(&s, |s, _| async move {
        s.revoke_grants_of_except("u3", "my-account", "s9")
            .await
            .unwrap()
    })
    .await;
    assert_eq!(counts.iter().sum::<usize>(), 15, "{counts:?}");
    for g in s.grants_of("u3").await.unwrap() {
        assert_eq!(g.revoked, g.client_id != "my-account", "{}", g.id);
    }
}
