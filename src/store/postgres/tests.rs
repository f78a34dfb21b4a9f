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
