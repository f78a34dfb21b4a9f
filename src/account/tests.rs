//! My Account's rules without HTTP: editable fields only, never the last way in, the
//! old password and the policy, TOTP set-up with one code, sessions of one's own only,
//! and an audit event for each change.

use std::collections::BTreeMap;

use super::*;
use crate::config::Config;
use crate::store::{
    AuditStore, CredentialStore, IdentityStore, SessionStore, SledStore, UserStore,
};

fn config(extra: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(
        &path,
        format!(
            "issuer: http://localhost:9000\nsecurity:\n  max_password_attempts: 2\n{extra}apps:\n  a:\n    name: A\n    client_id: a\n    redirect_uris: [http://localhost:1/cb]\n    sign_in: {{ steps: [[password]] }}\n"
        ),
    )
    .unwrap();
    crate::config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"))
        .config
}

fn at<'a>(store: &'a SledStore, config: &'a Config, now: u64) -> Ctx<'a> {
    Ctx { config, store, now }
}

fn pw(current: &str, new: &str, confirm: &str) -> PasswordChange {
    PasswordChange {
        current: current.into(),
        new: new.into(),
        confirm: confirm.into(),
    }
}

fn ada(store: &SledStore, password: Option<&str>) -> User {
    let user = User {
        id: "u_ada".into(),
        username: "ada".into(),
        email: Some("ada@example.com".into()),
        email_verified: true,
        name: Some("Ada".into()),
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: password.map(|p| password::hash(p).unwrap()),
        disabled: false,
        created_at: 1,
        updated_at: 1,
    };
    store.create_user(&user).unwrap();
    user
}

fn kinds(store: &SledStore) -> Vec<String> {
    store
        .events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn only_editable_fields_change() {
    let store = SledStore::temporary().unwrap();
    let config = config("my_account:\n  editable: [given_name]\n");
    let user = ada(&store, None);
    let form: BTreeMap<String, String> = [("name", "Mallory"), ("given_name", " Ada ")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let changed = update_profile(&at(&store, &config, 5), &user, &form).unwrap();
    assert_eq!(changed, ["given_name"]);
    let stored = store.user("u_ada").unwrap().unwrap();
    assert_eq!(stored.given_name.as_deref(), Some("Ada"));
    assert_eq!(
        stored.name.as_deref(),
        Some("Ada"),
        "name is not editable here"
    );
    assert_eq!(kinds(&store), ["account.profile_updated"]);
}

#[test]
fn a_picture_must_be_a_web_address() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let user = ada(&store, None);
    let form = BTreeMap::from([("picture".to_string(), "javascript:alert(1)".to_string())]);
    assert!(matches!(
        update_profile(&at(&store, &config, 5), &user, &form),
        Err(AccountError::Refused(_))
    ));
}

#[test]
fn the_only_way_in_cannot_be_unlinked() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let user = ada(&store, None);
    store.link_identity("google", "g-1", "u_ada").unwrap();
    let e = unlink(&at(&store, &config, 5), &user, "google", "g-1").unwrap_err();
    assert!(e.to_string().contains("only way"), "{e}");
    store.link_identity("github", "7", "u_ada").unwrap();
    unlink(&at(&store, &config, 5), &user, "google", "g-1").unwrap();
    assert_eq!(
        store.identities_of("u_ada").unwrap(),
        [("github".to_string(), "7".to_string())]
    );
    assert!(
        unlink(&at(&store, &config, 5), &user, "github", "7").is_err(),
        "now github is the only way in"
    );
    assert_eq!(kinds(&store), ["account.identity_unlinked"]);
}

#[test]
fn changing_the_password_needs_the_old_one_and_the_policy() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let user = ada(&store, Some("old-password-1"));
    store
        .put_session(
            "mine",
            &crate::store::Session {
                sub: "u_ada".into(),
                user_id: Some("u_ada".into()),
                auth_time: 1,
                amr: vec![],
                satisfied: Default::default(),
                idp: "local".into(),
                claims: Default::default(),
                clients: vec![],
                created_at: 1,
                expires_at: 100,
            },
        )
        .unwrap();
    let other = store.session("mine").unwrap().unwrap();
    store.put_session("elsewhere", &other).unwrap();
    let wrong = change_password(
        &at(&store, &config, 5),
        &user,
        &pw("nope", "new-password-1", "new-password-1"),
        "mine",
    );
    assert!(wrong.unwrap_err().to_string().contains("not right"));
    let short = change_password(
        &at(&store, &config, 5),
        &user,
        &pw("old-password-1", "short", "short"),
        "mine",
    );
    assert!(short.unwrap_err().to_string().contains("at least"));
    let ended = change_password(
        &at(&store, &config, 5),
        &user,
        &pw("old-password-1", "new-password-1", "new-password-1"),
        "mine",
    )
    .unwrap();
    assert_eq!(ended, 1, "the other session ends, this one stays");
    assert!(store.session("mine").unwrap().is_some());
    let stored = store.user("u_ada").unwrap();
    assert!(password::verify(stored.as_ref(), "new-password-1"));
    // Wrong old passwords count against the sign-in lock (2 in this config).
    let user = stored.unwrap();
    for _ in 0..2 {
        let _ = change_password(
            &at(&store, &config, 6),
            &user,
            &pw("x", "new-password-2", "new-password-2"),
            "mine",
        );
    }
    let locked = change_password(
        &at(&store, &config, 6),
        &user,
        &pw("new-password-1", "new-password-2", "new-password-2"),
        "mine",
    );
    assert!(locked.unwrap_err().to_string().contains("Too many"));
    assert_eq!(kinds(&store), ["account.password_changed"]);
}

#[test]
fn an_account_without_a_password_has_none_to_change() {
    let store = SledStore::temporary().unwrap();
    let user = ada(&store, None);
    let e = change_password(
        &at(&store, &config(""), 5),
        &user,
        &pw("", "new-password-1", "new-password-1"),
        "",
    );
    assert!(e.unwrap_err().to_string().contains("no password"));
}

#[test]
fn totp_is_confirmed_by_one_code_and_brings_recovery_codes() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let sealing = SealingKey::from_bytes(&[7u8; 32]);
    ada(&store, None);
    let now = 1_700_000_000;
    let secret = totp_secret(&at(&store, &config, now), &sealing, "u_ada")
        .unwrap()
        .unwrap();
    assert_eq!(
        totp_secret(&at(&store, &config, now), &sealing, "u_ada")
            .unwrap()
            .unwrap(),
        secret,
        "a reload shows the same key"
    );
    assert!(confirm_totp(&at(&store, &config, now), &sealing, "u_ada", "000000").is_err());
    let codes = confirm_totp(
        &at(&store, &config, now),
        &sealing,
        "u_ada",
        &totp::code_at(&secret, now),
    )
    .unwrap();
    assert_eq!(codes.len(), recovery::COUNT);
    assert!(store.totp("u_ada").unwrap().unwrap().confirmed);
    assert_eq!(
        totp_secret(&at(&store, &config, now), &sealing, "u_ada").unwrap(),
        None
    );
    // Later times, so the events list in the order they happened.
    let again = regenerate_recovery_codes(&at(&store, &config, now + 1), "u_ada").unwrap();
    assert_ne!(again, codes);
    reset_totp(&at(&store, &config, now + 2), "u_ada").unwrap();
    assert!(store.totp("u_ada").unwrap().is_none());
    assert!(regenerate_recovery_codes(&at(&store, &config, now + 3), "u_ada").is_err());
    assert_eq!(
        kinds(&store),
        [
            "account.totp_enrolled",
            "account.recovery_codes_regenerated",
            "account.totp_reset"
        ]
    );
}

#[test]
fn only_ones_own_sessions_can_be_ended() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let s = |uid: &str| crate::store::Session {
        sub: uid.into(),
        user_id: Some(uid.into()),
        auth_time: 1,
        amr: vec![],
        satisfied: Default::default(),
        idp: "local".into(),
        claims: Default::default(),
        clients: vec![],
        created_at: 1,
        expires_at: 100,
    };
    store.put_session("h-ada", &s("u_ada")).unwrap();
    store.put_session("h-bob", &s("u_bob")).unwrap();
    assert_eq!(
        end_session(&at(&store, &config, 5), "u_ada", &session_handle("h-bob")).unwrap(),
        None
    );
    assert!(store.session("h-bob").unwrap().is_some());
    assert_eq!(
        end_session(&at(&store, &config, 5), "u_ada", &session_handle("h-ada"))
            .unwrap()
            .as_deref(),
        Some("h-ada")
    );
    assert!(store.session("h-ada").unwrap().is_none());
    assert_eq!(end_sessions(&store, "u_bob").unwrap(), 1);
}
