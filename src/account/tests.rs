//! My Account's rules without HTTP: editable fields only, never the last way in, the
//! old password and the policy, TOTP set-up with one code, sessions of one's own only,
//! and an audit event for each change.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::account::notify::By;
use crate::config::Config;
use crate::store::{
    AuditStore, CredentialStore, IdentityStore, SessionStore, SledStore, TokenStore, UserStore,
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

async fn ada(store: &SledStore, password: Option<&str>) -> User {
    let user = User {
        role_sources: Default::default(),
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
    store.create_user(&user).await.unwrap();
    user
}

async fn kinds(store: &SledStore) -> Vec<String> {
    store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn only_editable_fields_change() {
    let store = SledStore::temporary().unwrap();
    let config = config("my_account:\n  editable: [given_name]\n");
    let user = ada(&store, None).await;
    let form: BTreeMap<String, String> = [("name", "Mallory"), ("given_name", " Ada ")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let changed = update_profile(&at(&store, &config, 5), &user, &form)
        .await
        .unwrap();
    assert_eq!(changed, ["given_name"]);
    let stored = store.user("u_ada").await.unwrap().unwrap();
    assert_eq!(stored.given_name.as_deref(), Some("Ada"));
    assert_eq!(
        stored.name.as_deref(),
        Some("Ada"),
        "name is not editable here"
    );
    assert_eq!(kinds(&store).await, ["account.profile_updated"]);
}

#[tokio::test]
async fn a_picture_must_be_a_web_address() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let user = ada(&store, None).await;
    let form = BTreeMap::from([("picture".to_string(), "javascript:alert(1)".to_string())]);
    assert!(matches!(
        update_profile(&at(&store, &config, 5), &user, &form).await,
        Err(AccountError::Refused(_))
    ));
}

#[tokio::test]
async fn the_only_way_in_cannot_be_unlinked() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let user = ada(&store, None).await;
    store.link_identity("google", "g-1", "u_ada").await.unwrap();
    let e = unlink(&at(&store, &config, 5), &user, "google", "g-1")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("only way"), "{e}");
    store.link_identity("github", "7", "u_ada").await.unwrap();
    unlink(&at(&store, &config, 5), &user, "google", "g-1")
        .await
        .unwrap();
    assert_eq!(
        store.identities_of("u_ada").await.unwrap(),
        [("github".to_string(), "7".to_string())]
    );
    assert!(
        unlink(&at(&store, &config, 5), &user, "github", "7")
            .await
            .is_err(),
        "now github is the only way in"
    );
    assert_eq!(kinds(&store).await, ["account.identity_unlinked"]);
}

#[tokio::test]
async fn changing_the_password_needs_the_old_one_and_the_policy() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let user = ada(&store, Some("old-password-1")).await;
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
                asserted: Default::default(),
            },
        )
        .await
        .unwrap();
    let other = store.session("mine").await.unwrap().unwrap();
    store.put_session("elsewhere", &other).await.unwrap();
    let wrong = change_password(
        &at(&store, &config, 5),
        &user,
        &pw("nope", "new-password-1", "new-password-1"),
        "mine",
    )
    .await;
    assert!(wrong.unwrap_err().to_string().contains("not right"));
    let short = change_password(
        &at(&store, &config, 5),
        &user,
        &pw("old-password-1", "short", "short"),
        "mine",
    )
    .await;
    assert!(short.unwrap_err().to_string().contains("at least"));
    let ended = change_password(
        &at(&store, &config, 5),
        &user,
        &pw("old-password-1", "new-password-1", "new-password-1"),
        "mine",
    )
    .await
    .unwrap();
    assert_eq!(ended, 1, "the other session ends, this one stays");
    assert!(store.session("mine").await.unwrap().is_some());
    let stored = store.user("u_ada").await.unwrap();
    assert!(password::verify(stored.as_ref(), "new-password-1"));
    // Wrong old passwords count against the sign-in lock (2 in this config).
    let user = stored.unwrap();
    for _ in 0..2 {
        let _ = change_password(
            &at(&store, &config, 6),
            &user,
            &pw("x", "new-password-2", "new-password-2"),
            "mine",
        )
        .await;
    }
    let locked = change_password(
        &at(&store, &config, 6),
        &user,
        &pw("new-password-1", "new-password-2", "new-password-2"),
        "mine",
    )
    .await;
    assert!(locked.unwrap_err().to_string().contains("Too many"));
    assert_eq!(kinds(&store).await, ["account.password_changed"]);
}

#[tokio::test]
async fn an_account_without_a_password_has_none_to_change() {
    let store = SledStore::temporary().unwrap();
    let user = ada(&store, None).await;
    let e = change_password(
        &at(&store, &config(""), 5),
        &user,
        &pw("", "new-password-1", "new-password-1"),
        "",
    )
    .await;
    assert!(e.unwrap_err().to_string().contains("no password"));
}

#[tokio::test]
async fn totp_is_confirmed_by_one_code_and_brings_recovery_codes() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let sealing = SealingKey::from_bytes(&[7u8; 32]);
    ada(&store, None).await;
    let now = 1_700_000_000;
    let secret = totp_secret(&at(&store, &config, now), &sealing, "u_ada")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        totp_secret(&at(&store, &config, now), &sealing, "u_ada")
            .await
            .unwrap()
            .unwrap(),
        secret,
        "a reload shows the same key"
    );
    assert!(
        confirm_totp(&at(&store, &config, now), &sealing, "u_ada", "000000")
            .await
            .is_err()
    );
    let codes = confirm_totp(
        &at(&store, &config, now),
        &sealing,
        "u_ada",
        &totp::code_at(&secret, now),
    )
    .await
    .unwrap();
    assert_eq!(codes.len(), recovery::COUNT);
    assert!(store.totp("u_ada").await.unwrap().unwrap().confirmed);
    assert_eq!(
        totp_secret(&at(&store, &config, now), &sealing, "u_ada")
            .await
            .unwrap(),
        None
    );
    // Later times, so the events list in the order they happened.
    let again = regenerate_recovery_codes(&at(&store, &config, now + 1), "u_ada")
        .await
        .unwrap();
    assert_ne!(again, codes);
    reset_totp(&at(&store, &config, now + 2), "u_ada")
        .await
        .unwrap();
    assert!(store.totp("u_ada").await.unwrap().is_none());
    assert!(
        regenerate_recovery_codes(&at(&store, &config, now + 3), "u_ada")
            .await
            .is_err()
    );
    assert_eq!(
        kinds(&store).await,
        [
            "account.totp_enrolled",
            "account.recovery_codes_regenerated",
            "account.totp_reset"
        ]
    );
}

#[tokio::test]
async fn only_ones_own_sessions_can_be_ended() {
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
        asserted: Default::default(),
    };
    store.put_session("h-ada", &s("u_ada")).await.unwrap();
    store.put_session("h-bob", &s("u_bob")).await.unwrap();
    assert_eq!(
        end_session(&at(&store, &config, 5), "u_ada", &session_handle("h-bob"))
            .await
            .unwrap(),
        None
    );
    assert!(store.session("h-bob").await.unwrap().is_some());
    assert_eq!(
        end_session(&at(&store, &config, 5), "u_ada", &session_handle("h-ada"))
            .await
            .unwrap()
            .as_deref(),
        Some("h-ada")
    );
    assert!(store.session("h-ada").await.unwrap().is_none());
    assert_eq!(end_sessions(&store, "u_bob").await.unwrap(), 1);
}

fn session_of(uid: &str) -> Session {
    Session {
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
        asserted: Default::default(),
    }
}

/// Ada signed in to My Account: a session `h-ada` and the grant of its token.
async fn signed_ada(store: &SledStore, password: Option<&str>) -> access::Signed {
    let user = ada(store, password).await;
    store
        .put_session("h-ada", &session_of("u_ada"))
        .await
        .unwrap();
    let grant = crate::store::Grant {
        id: "g-ada".into(),
        client_id: MY_ACCOUNT_APP.into(),
        scopes: vec!["openid".into()],
        nonce: None,
        data: crate::store::GrantData {
            sub: "u_ada".into(),
            user_id: Some("u_ada".into()),
            auth_time: 1,
            amr: vec![],
            claims: Default::default(),
            sid: Some(session_handle("h-ada")),
            session: Some("h-ada".into()),
        },
        revoked: false,
        offline: false,
        created_at: 1,
        expires_at: 100,
    };
    assert!(store.create_grant(&grant).await.unwrap());
    access::Signed {
        user,
        session_hash: "h-ada".into(),
        grant_id: "g-ada".into(),
    }
}

async fn flash_of(ctx: &Ctx<'_>, reply: forms::Reply) -> forms::Flash {
    let forms::Reply::Back { flash } = reply else {
        panic!("expected a message for the page, got {reply:?}");
    };
    forms::take_flash(ctx, Some(&flash), "u_ada").await.unwrap()
}

#[tokio::test]
async fn a_refused_change_is_a_message_on_the_page_not_an_error() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let signed = signed_ada(&store, Some("old-password-1")).await;
    let ctx = at(&store, &config, 5);
    let reply = forms::password(
        &ctx,
        &By::default(),
        &signed,
        &pw("nope", "new-password-1", "new-password-1"),
    )
    .await
    .unwrap();
    let flash = flash_of(&ctx, reply).await;
    assert_eq!(flash.notice, None);
    assert_eq!(
        flash.error.as_deref(),
        Some("Your current password is not right.")
    );
    let reply = forms::password(
        &ctx,
        &By::default(),
        &signed,
        &pw("old-password-1", "new-password-1", "new-password-1"),
    )
    .await
    .unwrap();
    assert_eq!(
        flash_of(&ctx, reply).await.notice.as_deref(),
        Some("Your password was changed.")
    );
}

#[tokio::test]
async fn a_message_is_shown_once_and_only_to_its_account() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let ctx = at(&store, &config, 5);
    let flash = forms::Flash {
        user_id: "u_ada".into(),
        notice: Some("saved".into()),
        ..Default::default()
    };
    let id = forms::put_flash(&ctx, &flash).await.unwrap();
    assert_eq!(
        forms::take_flash(&ctx, Some(&id), "u_bob").await.unwrap(),
        forms::Flash::default(),
        "another account's browser sees nothing"
    );
    let id = forms::put_flash(&ctx, &flash).await.unwrap();
    assert_eq!(
        forms::take_flash(&ctx, Some(&id), "u_ada").await.unwrap(),
        flash
    );
    assert_eq!(
        forms::take_flash(&ctx, Some(&id), "u_ada").await.unwrap(),
        forms::Flash::default(),
        "shown once"
    );
}

#[tokio::test]
async fn ending_ones_own_session_signs_out_of_my_account() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let signed = signed_ada(&store, Some("old-password-1")).await;
    store
        .put_session("h-phone", &session_of("u_ada"))
        .await
        .unwrap();
    let ctx = at(&store, &config, 5);
    let reply = forms::end_session(&ctx, &signed, &session_handle("h-phone"))
        .await
        .unwrap();
    assert_eq!(
        flash_of(&ctx, reply).await.notice.as_deref(),
        Some("That session was signed out.")
    );
    assert!(!store.grant("g-ada").await.unwrap().unwrap().revoked);
    let reply = forms::end_session(&ctx, &signed, &session_handle("h-phone"))
        .await
        .unwrap();
    assert_eq!(
        flash_of(&ctx, reply).await.error.as_deref(),
        Some("That session has already ended.")
    );
    let reply = forms::end_session(&ctx, &signed, &session_handle("h-ada"))
        .await
        .unwrap();
    assert_eq!(reply, forms::Reply::SignedOut);
    assert!(store.session("h-ada").await.unwrap().is_none());
    assert!(
        store.grant("g-ada").await.unwrap().unwrap().revoked,
        "My Account's token dies with its session"
    );
}

#[tokio::test]
async fn recovery_codes_are_shown_with_the_message() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let signed = signed_ada(&store, None).await;
    let ctx = at(&store, &config, 5);
    let refused = flash_of(
        &ctx,
        forms::recovery_codes(&ctx, &By::default(), &signed)
            .await
            .unwrap(),
    )
    .await;
    assert!(refused.codes.is_empty());
    assert!(refused.error.unwrap().contains("authenticator app first"));
    let sealing = SealingKey::from_bytes(&[7u8; 32]);
    let now = 1_700_000_000;
    let ctx = at(&store, &config, now);
    // A sign-in a day old is too old to set up a factor: sign in again first.
    assert!(matches!(
        forms::totp_setup(&ctx, &sealing, &signed).await.unwrap(),
        forms::Setup::StepUp(forms::Reply::StepUp {
            after: forms::After::TotpSetup
        })
    ));
    assert!(
        store.totp("u_ada").await.unwrap().is_none(),
        "no secret yet"
    );
    signed_in_again(&store, now).await;
    let forms::Setup::Scan(enrolment) = forms::totp_setup(&ctx, &sealing, &signed).await.unwrap()
    else {
        panic!("the authenticator to scan")
    };
    let secret = totp_secret(&ctx, &sealing, "u_ada").await.unwrap().unwrap();
    assert!(!enrolment.qr_png_base64.is_empty());
    let code = totp::code_at(&secret, now);
    let done = flash_of(
        &ctx,
        forms::confirm_totp(&ctx, &By::default(), &sealing, &signed, &code)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(done.codes.len(), recovery::COUNT);
    assert!(
        matches!(
            forms::totp_setup(&ctx, &sealing, &signed).await.unwrap(),
            forms::Setup::AlreadySet
        ),
        "set up already"
    );
    // Now that the account has an authenticator, a password alone is not enough to
    // change its factors, however recent: the authenticator must be passed again.
    assert_eq!(
        forms::recovery_codes(&ctx, &By::default(), &signed)
            .await
            .unwrap(),
        forms::Reply::StepUp {
            after: forms::After::Home
        }
    );
    assert_eq!(
        forms::reset_totp(&ctx, &By::default(), &signed)
            .await
            .unwrap(),
        forms::Reply::StepUp {
            after: forms::After::Home
        }
    );
    assert!(store
        .totp("u_ada")
        .await
        .unwrap()
        .is_some_and(|c| c.confirmed));
    let mut session = store.session("h-ada").await.unwrap().unwrap();
    session.satisfied.insert("totp".into(), now);
    store.put_session("h-ada", &session).await.unwrap();
    let again = flash_of(
        &ctx,
        forms::recovery_codes(&ctx, &By::default(), &signed)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again.codes.len(), recovery::COUNT);
}

/// Ada's session `h-ada` signed in (with her password only) at `now`.
async fn signed_in_again(store: &SledStore, now: u64) {
    let mut session = store.session("h-ada").await.unwrap().unwrap();
    session.auth_time = now;
    session.satisfied.insert("password".into(), now);
    session.expires_at = now + 1000;
    store.put_session("h-ada", &session).await.unwrap();
}

#[tokio::test]
async fn oversized_profile_fields_and_passwords_are_refused_before_any_work() {
    let store = SledStore::temporary().unwrap();
    let config = config("my_account:\n  editable: [name, picture]\n");
    let user = ada(&store, Some("old-password-1")).await;
    let at_cap = "é".repeat(crate::limits::NAME_MAX);
    let form = BTreeMap::from([("name".to_string(), at_cap.clone())]);
    assert_eq!(
        update_profile(&at(&store, &config, 5), &user, &form)
            .await
            .unwrap(),
        ["name"]
    );
    let user = store.user("u_ada").await.unwrap().unwrap();
    for (field, value) in [
        ("name", format!("{at_cap}é")),
        (
            "picture",
            format!("https://x.example/{}", "p".repeat(crate::limits::URL_MAX)),
        ),
    ] {
        let form = BTreeMap::from([(field.to_string(), value)]);
        let e = update_profile(&at(&store, &config, 6), &user, &form)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("too long"), "{field}: {e}");
    }
    // A megabyte of current password is refused without Argon2 and without counting
    // against the lock: the right password still works right after, many times over.
    let huge = "p".repeat(1024 * 1024);
    for _ in 0..3 {
        let e = change_password(
            &at(&store, &config, 7),
            &user,
            &pw(&huge, "new-password-1", "new-password-1"),
            "mine",
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("at most 1024 bytes"), "{e}");
    }
    let e = change_password(
        &at(&store, &config, 7),
        &user,
        &pw("old-password-1", &huge, &huge),
        "mine",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("at most 1024 bytes"), "{e}");
    change_password(
        &at(&store, &config, 7),
        &user,
        &pw("old-password-1", "new-password-1", "new-password-1"),
        "mine",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_current_passwords_check_no_more_than_the_limit() {
    let store = Arc::new(SledStore::temporary().unwrap());
    let config = Arc::new(config(""));
    let user = Arc::new(ada(&store, Some("old-password-1")).await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, config, user) = (store.clone(), config.clone(), user.clone());
            tokio::spawn(async move {
                let change = pw("not-it", "new-password-1", "new-password-1");
                change_password(&at(store.as_ref(), &config, 5), &user, &change, "mine")
                    .await
                    .unwrap_err()
                    .to_string()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    // Only the attempts within the limit (2 in this config) had their password
    // checked; the rest were refused before Argon2 ran.
    let checked = answers.iter().filter(|a| a.contains("not right")).count();
    let locked = answers.iter().filter(|a| a.contains("Too many")).count();
    assert_eq!((checked, locked), (2, 48), "{answers:?}");
    let right = pw("old-password-1", "new-password-1", "new-password-1");
    let still = change_password(&at(&store, &config, 6), &user, &right, "mine").await;
    assert!(still.unwrap_err().to_string().contains("Too many"));
}

/// An app's grant of `uid` issued in session `session`.
fn app_grant(id: &str, uid: &str, session: &str, offline: bool) -> crate::store::Grant {
    crate::store::Grant {
        id: id.into(),
        client_id: "a".into(),
        scopes: vec!["openid".into()],
        nonce: None,
        data: crate::store::GrantData {
            sub: uid.into(),
            user_id: Some(uid.into()),
            auth_time: 1,
            amr: vec![],
            claims: Default::default(),
            sid: Some(session_handle(session)),
            session: Some(session.into()),
        },
        revoked: false,
        offline,
        created_at: 1,
        expires_at: 100,
    }
}

#[tokio::test]
async fn only_ones_own_app_grants_are_listed_and_revoked() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let signed = signed_ada(&store, Some("old-password-1")).await;
    store
        .put_session("h-bob", &session_of("u_bob"))
        .await
        .unwrap();
    for g in [
        app_grant("g-a1", "u_ada", "h-ada", false),
        app_grant("g-a2", "u_ada", "h-gone", true),
        app_grant("g-a3", "u_ada", "h-gone", false),
        app_grant("g-b1", "u_bob", "h-bob", false),
    ] {
        assert!(store.create_grant(&g).await.unwrap());
    }
    let ctx = at(&store, &config, 5);
    let o = overview(&ctx, signed.user.clone(), "h-ada").await.unwrap();
    let listed: Vec<&str> = o.sessions[0].grants.iter().map(|g| g.id.as_str()).collect();
    // My Account's own grant is the page itself; a dead session's only offline grant
    // still works, so it is listed on its own.
    assert_eq!(listed, ["g-a1"]);
    let offline: Vec<&str> = o.offline.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(offline, ["g-a2"]);

    assert_eq!(revoke_grant(&ctx, "u_ada", "g-b1").await.unwrap(), None);
    assert!(!store.grant("g-b1").await.unwrap().unwrap().revoked);
    assert_eq!(revoke_grant(&ctx, "u_ada", "g-ada").await.unwrap(), None);
    assert_eq!(
        revoke_grant(&ctx, "u_ada", &"x".repeat(10_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        revoke_grant(&ctx, "u_ada", "g-a2")
            .await
            .unwrap()
            .as_deref(),
        Some("a")
    );
    assert!(store.grant("g-a2").await.unwrap().unwrap().revoked);
    assert_eq!(revoke_grant(&ctx, "u_ada", "g-a2").await.unwrap(), None);
}

#[tokio::test]
async fn a_password_change_revokes_every_grant_but_my_accounts_own() {
    let store = SledStore::temporary().unwrap();
    let config = config("");
    let signed = signed_ada(&store, Some("old-password-1")).await;
    for g in [
        app_grant("g-a1", "u_ada", "h-ada", false),
        app_grant("g-a2", "u_ada", "h-phone", true),
    ] {
        assert!(store.create_grant(&g).await.unwrap());
    }
    change_password(
        &at(&store, &config, 5),
        &signed.user,
        &pw("old-password-1", "new-password-22", "new-password-22"),
        "h-ada",
    )
    .await
    .unwrap();
    assert!(store.grant("g-a1").await.unwrap().unwrap().revoked);
    assert!(store.grant("g-a2").await.unwrap().unwrap().revoked);
    assert!(!store.grant("g-ada").await.unwrap().unwrap().revoked);
}
