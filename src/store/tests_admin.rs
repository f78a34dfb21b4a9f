//! The store behind My Account and the admin APIs: the per-account session index,
//! deleting an account with everything pointing at it, unlinking, external ids, and
//! the audit trail's scan and sweep.

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

fn session(user_id: Option<&str>, expires_at: u64) -> Session {
    Session {
        sub: user_id.unwrap_or("github|1").into(),
        user_id: user_id.map(String::from),
        auth_time: 10,
        amr: vec!["pwd".into()],
        satisfied: Default::default(),
        idp: "local".into(),
        claims: Default::default(),
        clients: vec![],
        created_at: 10,
        expires_at,
    }
}

fn hashes(store: &SledStore, user_id: &str) -> Vec<String> {
    let mut h: Vec<String> = store
        .sessions_of(user_id)
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    h.sort();
    h
}

#[test]
fn the_session_index_follows_puts_and_deletes() {
    let store = SledStore::temporary().unwrap();
    store.put_session("h1", &session(Some("u_a"), 100)).unwrap();
    store.put_session("h2", &session(Some("u_a"), 100)).unwrap();
    store.put_session("h3", &session(Some("u_b"), 100)).unwrap();
    store.put_session("h4", &session(None, 100)).unwrap();
    assert_eq!(hashes(&store, "u_a"), ["h1", "h2"]);
    assert_eq!(hashes(&store, "u_b"), ["h3"]);
    // The same cookie now signed in as someone else moves between indexes.
    store.put_session("h2", &session(Some("u_b"), 100)).unwrap();
    assert_eq!(hashes(&store, "u_a"), ["h1"]);
    assert_eq!(hashes(&store, "u_b"), ["h2", "h3"]);
    store.delete_session("h1").unwrap();
    assert!(hashes(&store, "u_a").is_empty());
    // Expired sessions are swept with their index entries.
    store.put_session("h5", &session(Some("u_b"), 50)).unwrap();
    assert_eq!(store.sweep_sessions(60).unwrap(), 1);
    assert_eq!(hashes(&store, "u_b"), ["h2", "h3"]);
}

#[test]
fn sessions_written_before_the_index_are_indexed_on_open() {
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
    assert_eq!(hashes(&store, "u_a"), ["old"]);
}

#[test]
fn deleting_an_account_frees_its_names_and_identities() {
    let store = SledStore::temporary().unwrap();
    let ada = user("u_ada", "Ada", "ada@example.com");
    store.create_federated_user(&ada, "google", "g-1").unwrap();
    store.link_identity("github", "7", "u_ada").unwrap();
    store.set_external_id("u_ada", Some("HR-1")).unwrap();
    store.delete_user("u_ada").unwrap();
    assert!(store.user("u_ada").unwrap().is_none());
    assert!(store.find_user("ada").unwrap().is_none());
    assert!(store.find_user("ada@example.com").unwrap().is_none());
    assert!(store.identity("google", "g-1").unwrap().is_none());
    assert!(store.identity("github", "7").unwrap().is_none());
    assert!(store.identities_of("u_ada").unwrap().is_empty());
    assert_eq!(store.external_id("u_ada").unwrap(), None);
    assert!(matches!(
        store.delete_user("u_ada"),
        Err(StoreError::NotFound)
    ));
    // The name and address can be used again.
    store
        .create_user(&user("u_new", "ada", "ada@example.com"))
        .unwrap();
    assert_eq!(store.users().unwrap().len(), 1);
}

#[test]
fn unlinking_needs_the_owner() {
    let store = SledStore::temporary().unwrap();
    store
        .create_user(&user("u_a", "a", "a@example.com"))
        .unwrap();
    store.link_identity("google", "g-1", "u_a").unwrap();
    assert!(!store.unlink_identity("google", "g-1", "u_b").unwrap());
    assert_eq!(
        store.identity("google", "g-1").unwrap().as_deref(),
        Some("u_a")
    );
    assert!(store.unlink_identity("google", "g-1", "u_a").unwrap());
    assert!(store.identity("google", "g-1").unwrap().is_none());
    assert!(store.identities_of("u_a").unwrap().is_empty());
    assert!(!store.unlink_identity("google", "g-1", "u_a").unwrap());
}

#[test]
fn events_scan_in_order_and_sweep_by_age() {
    let store = SledStore::temporary().unwrap();
    for at in [5u64, 15, 25] {
        store
            .append_event(&AuditEvent {
                id: crate::crypto::time_prefixed_id(at),
                at,
                kind: "sign_in".into(),
                app: None,
                sub: None,
                outcome: "success".into(),
                detail: vec![],
            })
            .unwrap();
    }
    let mut seen = Vec::new();
    store
        .scan_events(10, &mut |e| {
            seen.push(e.at);
            true
        })
        .unwrap();
    assert_eq!(seen, [15, 25]);
    let mut first = Vec::new();
    store
        .scan_events(0, &mut |e| {
            first.push(e.at);
            false
        })
        .unwrap();
    assert_eq!(first, [5], "the visitor stops the scan");
    assert_eq!(store.sweep_events(20).unwrap(), 2);
    assert_eq!(store.events(0, 10).unwrap().len(), 1);
}
