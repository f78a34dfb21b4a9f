//! The store contract suite against a real PostgreSQL server: a throwaway cluster
//! started for this test process, one schema per test.

use std::sync::Arc;

use crate::store::{CounterStore, SessionStore, Store};

fn fresh_store() -> Arc<dyn Store> {
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(super::cluster::fresh_store())
    });
    Arc::new(store.expect("the guard checked the cluster is there"))
}

crate::store_contract_tests!(fresh_store; when = super::cluster::shared().is_some());

/// Two nodes (two pools on one schema) migrating and sweeping at once: the migration is
/// applied once, every expired row goes exactly once between them, no live row goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_migrate_and_sweep_at_once_without_double_work_or_lost_rows() {
    let Some(settings) = super::cluster::fresh_settings() else {
        return;
    };
    let (a, b) = tokio::join!(
        super::PgStore::open(&settings),
        super::PgStore::open(&settings)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let applied = a
        .query("SELECT version FROM usher_migrations", &[])
        .await
        .unwrap();
    assert_eq!(applied.len(), 1, "each migration is recorded once");

    let now = 10_000;
    for i in 0..400u64 {
        let expires_at = if i % 2 == 0 { now - 1 } else { now + 600 };
        let session = crate::store::contract::session(Some("u1"), expires_at);
        a.put_session(&format!("s{i}"), &session).await.unwrap();
        a.hit(&format!("c{i}"), now - 700, expires_at)
            .await
            .unwrap();
    }
    let sweeps = |store: super::PgStore| async move {
        let mut removed = 0;
        for _ in 0..5 {
            removed += store.sweep_sessions(now).await.unwrap();
            removed += store.sweep_counters(now).await.unwrap();
        }
        removed
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(sweeps(a.clone())),
        tokio::spawn(sweeps(b.clone()))
    );
    assert_eq!(
        ra.unwrap() + rb.unwrap(),
        400,
        "each expired row counted once"
    );
    assert_eq!(a.sessions_of("u1").await.unwrap().len(), 200);
    for i in (1..400u64).step_by(2) {
        assert!(b.counter(&format!("c{i}"), now).await.unwrap().is_some());
    }
}

/// `/readyz` on PostgreSQL: a schema the migrations never ran in is "pending", not an
/// error of another kind, and a migrated one is ready.
#[tokio::test]
async fn an_unmigrated_schema_is_not_ready_and_a_migrated_one_is() {
    let Some(cluster) = super::cluster::shared() else {
        return;
    };
    let schema = format!(
        "r_{}",
        crate::crypto::random_token(9)
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    );
    let mut settings = super::PgSettings::new(cluster.url("postgres"));
    settings.schema = schema;
    settings.max_connections = 2;
    let bare = super::PgStore::connect(&settings).unwrap();
    match bare.ready().await {
        Err(crate::store::StoreError::Unavailable(d)) => {
            assert!(d.starts_with(super::MIGRATIONS_PENDING), "{d}")
        }
        other => panic!("expected migrations pending, got {other:?}"),
    }
    let migrated = super::PgStore::open(&settings).await.unwrap();
    migrated.ready().await.unwrap();
    bare.ready().await.unwrap();
}
