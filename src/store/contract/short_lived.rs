//! Contract: short-lived and append-only records — flows with their count and age
//! sweep, upstream round trips taken once, flash messages taken once, and the audit
//! trail's scans and retention sweep.

use super::*;
use crate::crypto::time_prefixed_id;

pub async fn flows_are_counted_and_swept_by_age(f: &dyn StoreFactory) {
    let s = f.fresh();
    let old = time_prefixed_id(1000);
    let new = time_prefixed_id(5000);
    assert_eq!(s.flow_count().await.unwrap(), 0);
    s.put_flow(&old, b"a").await.unwrap();
    s.put_flow(&new, b"b").await.unwrap();
    // Rewriting a flow does not count it twice.
    s.put_flow(&new, b"b2").await.unwrap();
    assert_eq!(s.flow_count().await.unwrap(), 2);
    assert_eq!(s.sweep_flows(2000).await.unwrap(), 1);
    assert!(s.flow(&old).await.unwrap().is_none());
    assert_eq!(s.flow(&new).await.unwrap().as_deref(), Some(&b"b2"[..]));
    assert_eq!(s.flow_count().await.unwrap(), 1);
    s.delete_flow(&new).await.unwrap();
    s.delete_flow(&new).await.unwrap();
    assert_eq!(s.flow_count().await.unwrap(), 0);
}

pub async fn an_upstream_state_is_taken_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    let flow = time_prefixed_id(1000);
    s.put_upstream_state("st", &flow).await.unwrap();
    let taken = race(&s, |s, _| async move {
        s.take_upstream_state("st").await.unwrap()
    })
    .await;
    let got: Vec<&String> = taken.iter().flatten().collect();
    assert_eq!(got, [&flow], "{taken:?}");
    assert!(s.take_upstream_state("st").await.unwrap().is_none());
}

pub async fn abandoned_round_trips_are_swept_with_their_flows(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.put_upstream_state("st-old", &time_prefixed_id(1000))
        .await
        .unwrap();
    s.put_upstream_state("st-new", &time_prefixed_id(9000))
        .await
        .unwrap();
    s.sweep_flows(5000).await.unwrap();
    assert!(s.take_upstream_state("st-old").await.unwrap().is_none());
    assert!(s.take_upstream_state("st-new").await.unwrap().is_some());
}

pub async fn a_flash_is_taken_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.put_flash("f1", b"Password changed.", 2000).await.unwrap();
    let taken = race(
        &s,
        |s, _| async move { s.take_flash("f1", 1000).await.unwrap() },
    )
    .await;
    let got: Vec<&Vec<u8>> = taken.iter().flatten().collect();
    assert_eq!(got, [&b"Password changed.".to_vec()], "{taken:?}");
    assert!(s.take_flash("f1", 1000).await.unwrap().is_none());
    // A flash is not a flow: it does not show in the sign-ins gauge.
    s.put_flash("f2", b"x", 2000).await.unwrap();
    assert_eq!(s.flow_count().await.unwrap(), 0);
}

pub async fn an_expired_flash_is_not_shown_and_is_swept(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.put_flash("old", b"stale", 1000).await.unwrap();
    s.put_flash("edge", b"stale", 1500).await.unwrap();
    s.put_flash("live", b"fresh", 3000).await.unwrap();
    assert_eq!(s.sweep_flashes(1500).await.unwrap(), 2);
    assert_eq!(s.sweep_flashes(1500).await.unwrap(), 0);
    // One that expired but was not swept yet is not shown either.
    s.put_flash("late", b"stale", 1200).await.unwrap();
    assert!(s.take_flash("late", 1200).await.unwrap().is_none());
    assert_eq!(
        s.take_flash("live", 1500).await.unwrap().as_deref(),
        Some(&b"fresh"[..])
    );
}

pub async fn events_scan_in_order_and_sweep_by_age(f: &dyn StoreFactory) {
    let s = f.fresh();
    for at in [25u64, 5, 15] {
        s.append_event(&AuditEvent {
            id: time_prefixed_id(at),
            at,
            kind: "sign_in".into(),
            app: None,
            sub: None,
            outcome: "success".into(),
            detail: vec![],
        })
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    s.scan_events(10, &mut |e| {
        seen.push(e.at);
        true
    })
    .await
    .unwrap();
    assert_eq!(seen, [15, 25]);
    let mut first = Vec::new();
    s.scan_events(0, &mut |e| {
        first.push(e.at);
        false
    })
    .await
    .unwrap();
    assert_eq!(first, [5], "the visitor stops the scan");
    let listed: Vec<u64> = s
        .events(0, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(listed, [5, 15]);
    assert_eq!(s.sweep_events(20).await.unwrap(), 2);
    assert_eq!(s.events(0, 10).await.unwrap().len(), 1);
}

/// Lookups by text a client chose (a typed sign-in name, a flow id from a cookie or a
/// form, an upstream subject) answer "none" for text holding a NUL, as for any other
/// name nothing is stored under, rather than failing the request: PostgreSQL's text
/// cannot hold a NUL at all, so nothing is ever stored under one.
pub async fn lookups_of_text_holding_a_nul_find_nothing(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u1", "ann", "ann@example.com"))
        .await
        .unwrap();
    s.put_flow("f1", b"x").await.unwrap();
    for odd in ["ann\0", "\0", "u1\0x"] {
        assert!(s.find_user(odd).await.unwrap().is_none(), "{odd:?}");
        assert!(s.user(odd).await.unwrap().is_none(), "{odd:?}");
        assert!(s.flow(odd).await.unwrap().is_none(), "{odd:?}");
        s.delete_flow(odd).await.unwrap();
        assert!(s.session(odd).await.unwrap().is_none(), "{odd:?}");
        s.delete_session(odd).await.unwrap();
        assert!(s.identity("google", odd).await.unwrap().is_none());
        assert!(s.take_upstream_state(odd).await.unwrap().is_none());
        assert!(s.take_flash(odd, 0).await.unwrap().is_none());
    }
    assert!(s.flow("f1").await.unwrap().is_some());
}
