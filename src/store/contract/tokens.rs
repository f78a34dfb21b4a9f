//! Contract: authorization codes redeemed once, grants barred by a code's reuse,
//! refresh tokens rotated once with reuse naming the family, token sweeps, server
//! secrets and signing keys.

use super::*;

pub async fn parallel_redemptions_of_one_code_give_exactly_one_success(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.put_code("h", &code()).await.unwrap();
    let results = race(&s, |s, i| async move {
        s.redeem_code("h", &format!("g{i}")).await.unwrap()
    })
    .await;
    let fresh: Vec<&CodeRecord> = results
        .iter()
        .filter_map(|r| match r {
            Redeem::Fresh(c) => Some(c),
            _ => None,
        })
        .collect();
    let fresh_for: Vec<_> = fresh.iter().map(|c| c.redeemed_by.clone()).collect();
    assert_eq!(
        fresh.len(),
        1,
        "the code was redeemed fresh for several grants: {fresh_for:?}"
    );
    let winner = fresh[0].redeemed_by.clone().unwrap();
    // Every loser is told which grant to revoke: the winner's.
    for r in &results {
        match r {
            Redeem::Fresh(_) => {}
            Redeem::Reused(c) => assert_eq!(c.redeemed_by.as_deref(), Some(winner.as_str())),
            Redeem::Unknown => panic!("a stored code was unknown"),
        }
    }
    assert_eq!(s.redeem_code("nope", "g").await.unwrap(), Redeem::Unknown);
}

pub async fn a_reuse_that_beats_the_first_exchange_bars_its_grant(f: &dyn StoreFactory) {
    let s = f.fresh();
    // The reuse is noticed before the first exchange has written its grant.
    s.bar_grant(&grant("g1")).await.unwrap();
    assert!(!s.create_grant(&grant("g1")).await.unwrap());
    assert!(s.grant("g1").await.unwrap().unwrap().revoked);
    // Noticed afterwards, it revokes the grant that was written.
    assert!(s.create_grant(&grant("g2")).await.unwrap());
    assert!(!s.grant("g2").await.unwrap().unwrap().revoked);
    s.bar_grant(&grant("g2")).await.unwrap();
    assert!(s.grant("g2").await.unwrap().unwrap().revoked);
    assert!(s.grant("g3").await.unwrap().is_none());
}

fn refresh(grant_id: &str) -> RefreshRecord {
    RefreshRecord {
        grant_id: grant_id.into(),
        expires_at: 100,
        used: false,
    }
}

pub async fn refresh_rotation_detects_reuse(f: &dyn StoreFactory) {
    let s = f.fresh();
    let rec = refresh("g");
    s.put_refresh("r1", &rec).await.unwrap();
    assert!(matches!(
        s.rotate_refresh("r1", "r2", &rec).await.unwrap(),
        Rotate::Rotated(_)
    ));
    assert!(matches!(
        s.rotate_refresh("r1", "r3", &rec).await.unwrap(),
        Rotate::Reused(_)
    ));
    // The reused attempt's new token was never stored.
    assert!(matches!(
        s.rotate_refresh("r3", "r4", &rec).await.unwrap(),
        Rotate::Unknown
    ));
    assert!(matches!(
        s.rotate_refresh("r2", "r5", &rec).await.unwrap(),
        Rotate::Rotated(_)
    ));
}

pub async fn parallel_refreshes_rotate_once_and_the_reuse_names_the_family(f: &dyn StoreFactory) {
    let s = f.fresh();
    assert!(s.create_grant(&grant("g1")).await.unwrap());
    s.put_refresh("r1", &refresh("g1")).await.unwrap();
    let results = race(&s, |s, i| async move {
        s.rotate_refresh("r1", &format!("n{i}"), &refresh("g1"))
            .await
            .unwrap()
    })
    .await;
    let rotated: Vec<usize> = (0..PARALLEL)
        .filter(|&i| matches!(results[i], Rotate::Rotated(_)))
        .collect();
    assert_eq!(rotated.len(), 1, "rotated by callers {rotated:?}");
    for r in &results {
        match r {
            Rotate::Rotated(old) => assert_eq!(old.grant_id, "g1"),
            // The reuse names the family, and the caller revokes it.
            Rotate::Reused(old) => assert_eq!(old.grant_id, "g1"),
            Rotate::Unknown => panic!("a stored token was unknown"),
        }
    }
    // Only the winner's new token exists.
    for i in 0..PARALLEL {
        let next = s
            .rotate_refresh(&format!("n{i}"), &format!("m{i}"), &refresh("g1"))
            .await
            .unwrap();
        if i == rotated[0] {
            assert!(matches!(next, Rotate::Rotated(_)), "{next:?}");
        } else {
            assert_eq!(next, Rotate::Unknown);
        }
    }
    s.revoke_grant("g1").await.unwrap();
    assert!(s.grant("g1").await.unwrap().unwrap().revoked);
}

pub async fn expired_tokens_are_swept_and_late_code_reuse_is_still_seen(f: &dyn StoreFactory) {
    let s = f.fresh();
    let mut c = code();
    c.expires_at = 100;
    s.put_code("old", &c).await.unwrap();
    c.expires_at = 10_000;
    s.put_code("fresh", &c).await.unwrap();
    // A code is kept an hour past its expiry, to still recognise reuse.
    assert_eq!(s.sweep_tokens(3000).await.unwrap(), 0);
    assert_eq!(s.sweep_tokens(3701).await.unwrap(), 1);
    assert!(matches!(
        s.redeem_code("fresh", "g").await.unwrap(),
        Redeem::Fresh(_)
    ));
    assert_eq!(s.redeem_code("old", "g").await.unwrap(), Redeem::Unknown);
    // Grants and refresh tokens go at their expiry.
    let mut g = grant("g_old");
    g.expires_at = 50;
    s.create_grant(&g).await.unwrap();
    s.create_grant(&grant("g_live")).await.unwrap();
    let mut r = refresh("g_old");
    r.expires_at = 50;
    s.put_refresh("r_old", &r).await.unwrap();
    s.put_refresh("r_live", &refresh("g_live")).await.unwrap();
    assert_eq!(s.sweep_tokens(60).await.unwrap(), 2);
    assert!(s.grant("g_old").await.unwrap().is_none());
    assert!(s.grant("g_live").await.unwrap().is_some());
    assert_eq!(
        s.rotate_refresh("r_old", "x", &refresh("g_old"))
            .await
            .unwrap(),
        Rotate::Unknown
    );
}

pub async fn server_secrets_are_created_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    let seen = race(&s, |s, i| async move {
        s.secret("csrf", &|| vec![i as u8; 4]).await.unwrap()
    })
    .await;
    assert!(seen.iter().all(|v| *v == seen[0]), "{seen:?}");
    assert_eq!(s.secret("csrf", &|| vec![9]).await.unwrap(), seen[0]);
    assert_eq!(s.secret("other", &|| vec![7]).await.unwrap(), vec![7]);
}

pub async fn signing_keys_are_kept(f: &dyn StoreFactory) {
    let s = f.fresh();
    assert!(s.signing_keys().await.unwrap().is_empty());
    for kid in ["k1", "k2"] {
        s.put_signing_key(&StoredKey {
            kid: kid.into(),
            alg: "ES256".into(),
            pkcs8_der: vec![1, 2, 3],
            created_at: 5,
        })
        .await
        .unwrap();
    }
    let mut kids: Vec<String> = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    kids.sort();
    assert_eq!(kids, ["k1", "k2"]);
}

pub async fn a_signing_key_is_added_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    // Nodes starting together each make a first key under the one kid they all derive.
    let added = race(&s, |s, i| async move {
        s.add_signing_key(&StoredKey {
            kid: "rs256-first".into(),
            alg: "RS256".into(),
            pkcs8_der: vec![i as u8; 3],
            created_at: 5,
        })
        .await
        .unwrap()
    })
    .await;
    let winners: Vec<usize> = (0..PARALLEL).filter(|i| added[*i]).collect();
    assert_eq!(winners.len(), 1, "{added:?}");
    let stored = s.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].pkcs8_der, vec![winners[0] as u8; 3]);
}
