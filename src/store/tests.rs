//! Sled's store: the contract suite run against it, and what only sled promises —
//! data surviving a reopen on disk, and records written by older versions being read
//! (or moved) when it opens.

use std::sync::Arc;

use super::contract::{code, session, totp_credential, user};
use super::*;

fn fresh_sled() -> Arc<dyn Store> {
    Arc::new(SledStore::temporary().unwrap())
}

mod contract_on_sled {
    use super::*;

    crate::store_contract_tests!(fresh_sled);
}

#[tokio::test]
async fn data_survives_reopening_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.create_user(&user("u1", "alice", "alice@example.com"))
            .await
            .unwrap();
        s.put_code("h", &code()).await.unwrap();
        s.redeem_code("h", "g1").await.unwrap();
        s.put_flow(&crate::crypto::time_prefixed_id(1000), b"f")
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.find_user("alice").await.unwrap().unwrap().id, "u1");
    // A consumed code stays consumed after a restart.
    assert!(matches!(
        s.redeem_code("h", "g2").await.unwrap(),
        Redeem::Reused(_)
    ));
    // The gauge's count is rebuilt from what is on disk.
    assert_eq!(s.flow_count().await.unwrap(), 1);
}

#[tokio::test]
async fn second_factors_survive_reopening_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_totp("u1", &totp_credential()).await.unwrap();
        assert!(s.accept_totp_step("u1", 50).await.unwrap());
        s.put_recovery_codes("u1", &["h1".to_string()])
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    // An accepted step stays used after a restart.
    assert!(!s.accept_totp_step("u1", 50).await.unwrap());
    assert_eq!(s.recovery_codes_left("u1").await.unwrap(), 1);
}

#[test]
fn totp_debug_hides_the_sealed_secret() {
    let shown = format!("{:?}", totp_credential());
    assert!(!shown.contains("sealed_secret"), "{shown}");
    assert!(shown.contains("last_step: 0"), "{shown}");
}

#[tokio::test]
async fn sessions_written_before_the_index_are_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("sessions").unwrap();
        tree.insert(
            "old",
            serde_json::to_vec(&session(Some("u_a"), 100)).unwrap(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let listed: Vec<String> = store
        .sessions_of("u_a")
        .await
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert_eq!(listed, ["old"]);
}

#[tokio::test]
async fn grants_written_before_the_index_are_revoked_with_their_account() {
    let dir = tempfile::tempdir().unwrap();
    {
        // An older version's grant: no `offline`, no `session`, and no index entry.
        let db = sled::open(dir.path()).unwrap();
        let mut old = serde_json::to_value(super::contract::grant("g_old")).unwrap();
        old.as_object_mut().unwrap().remove("offline");
        old["data"].as_object_mut().unwrap().remove("session");
        db.open_tree("grants")
            .unwrap()
            .insert("g_old", serde_json::to_vec(&old).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let listed = store.grants_of("u1").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].offline && listed[0].data.session.is_none());
    assert_eq!(store.revoke_grants_of("u1").await.unwrap(), 1);
    assert!(store.grant("g_old").await.unwrap().unwrap().revoked);
}

/// Open a folder with plain sled right after a store of it was dropped: its flusher
/// thread may hold the folder's lock a moment longer.
fn reopen_raw(path: &std::path::Path) -> sled::Db {
    for _ in 0..40 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    sled::open(path).unwrap()
}

#[tokio::test]
async fn a_lock_from_an_older_version_survives_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    {
        // How older versions kept failure counts, with the rule inside the record.
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("attempts").unwrap();
        let record = |failures, locked_until| {
            serde_json::json!({"failures": failures, "window_start": 1000, "locked_until": locked_until})
                .to_string()
        };
        tree.insert("password:u1", record(5, 1900).as_bytes())
            .unwrap();
        tree.insert("totp:u2", record(2, 0).as_bytes()).unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert!(crate::authn::attempts::locked(&s, "password:u1", 1500)
        .await
        .unwrap());
    assert!(!crate::authn::attempts::locked(&s, "password:u1", 1900)
        .await
        .unwrap());
    // A count below the limit starts over.
    assert_eq!(
        crate::authn::attempts::state(&s, "totp:u2", 1500)
            .await
            .unwrap()
            .failures,
        0
    );
    drop(s);
    // Moved once: the old tree is gone.
    let db = reopen_raw(dir.path());
    assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"attempts"));
}

#[tokio::test]
async fn an_email_code_from_an_older_version_still_checks() {
    let dir = tempfile::tempdir().unwrap();
    let hash = crate::authn::email_otp::hash_code("u1", "123456");
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("email_codes").unwrap();
        let old = serde_json::json!({
            "code_hash": hash, "expires_at": 1300, "sent_at": [1000], "wrong": 0
        });
        tree.insert("u1", old.to_string().as_bytes()).unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        crate::authn::email_otp::check(&s, "u1", "123456", 1100)
            .await
            .unwrap(),
        crate::authn::email_otp::EmailCheck::Ok
    );
}
