//! The store contract suite against a real PostgreSQL server: a throwaway cluster
//! started for this test process, one schema per test.

use std::sync::Arc;

use crate::store::Store;

fn fresh_store() -> Arc<dyn Store> {
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(super::cluster::fresh_store())
    });
    Arc::new(store.expect("the guard checked the cluster is there"))
}

crate::store_contract_tests!(fresh_store; when = super::cluster::shared().is_some());

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
