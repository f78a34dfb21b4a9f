//! The sign-in core without HTTP: completion issues one code and rotates the session
//! of a fresh sign-in, keeps it for SSO, refuses a disabled account; sign-up checks its
//! form and creates one account per email.

use super::*;
use crate::config::{Config, StepOption};
use crate::oidc::authorize::AuthRequest;
use crate::signin::federation;
use crate::store::{FlowStore, SessionStore, SledStore, TokenStore, User, UserStore};

const NOW: u64 = 1_700_000_000;

fn config() -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(
        &path,
        "issuer: http://localhost:9000\napps:\n  a:\n    name: A\n    client_id: a\n    redirect_uris: [http://localhost:1/cb]\n    sign_up: true\n    sign_in: { steps: [[password]] }\n",
    )
    .unwrap();
    crate::config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"))
        .config
}

/// The core's view of a request at `NOW` over this config and store.
fn at<'a>(config: &'a Config, store: &'a SledStore) -> Ctx<'a> {
    Ctx {
        config,
        store,
        now: NOW,
    }
}

fn flow(config: &Config) -> Flow {
    let app = &config.apps["a"];
    let request = AuthRequest {
        app_id: "a".into(),
        client_id: "a".into(),
        redirect_uri: "http://localhost:1/cb".into(),
        state: Some("xyz".into()),
        nonce: None,
        scopes: vec!["openid".into()],
        code_challenge: None,
        prompt: vec![],
        max_age: None,
        login_hint: None,
        acr_values: vec![],
    };
    Flow::new("f1".into(), request, app, "browser".into(), NOW, 600)
}

async fn ada(store: &SledStore, disabled: bool) -> User {
    let user = User {
        role_sources: Default::default(),
        id: "u_ada".into(),
        username: "ada".into(),
        email: Some("ada@example.com".into()),
        email_verified: true,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: None,
        disabled,
        created_at: 1,
        updated_at: 1,
    };
    store.create_user(&user).await.unwrap();
    user
}

fn signed_in_flow(config: &Config, user: &User) -> Flow {
    let mut f = flow(config);
    f.step_succeeded(
        1,
        &StepOption::Password,
        crate::authn::steps::local_subject(user, vec![]),
        vec!["pwd".into()],
        NOW,
    )
    .unwrap();
    f
}

fn code_of(redirect: &url::Url) -> String {
    redirect
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code in the redirect")
}

#[tokio::test]
async fn completing_issues_a_code_and_a_fresh_session() {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let user = ada(&store, false).await;
    let ctx = at(&config, &store);
    let mut f = signed_in_flow(&config, &user);
    let Completed::Issued {
        redirect,
        new_session,
        record,
    } = complete(ctx, &config.apps["a"], &mut f, None)
        .await
        .unwrap()
    else {
        panic!("issued");
    };
    assert_eq!(
        redirect
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1,
        "xyz"
    );
    let code = code_of(&redirect);
    assert_eq!(record.grant.sub, "u_ada");
    assert_eq!(record.grant.amr, vec!["pwd".to_string()]);
    assert!(matches!(
        store
            .redeem_code(&crate::crypto::token_hash(&code), "g1")
            .await
            .unwrap(),
        crate::store::Redeem::Fresh(_)
    ));
    let cookie = new_session.expect("a new session cookie");
    let session = store
        .session(&crate::crypto::token_hash(&cookie))
        .await
        .unwrap()
        .expect("the session is stored under the cookie's hash");
    assert_eq!(session.user_id.as_deref(), Some("u_ada"));
    assert!(
        store.flow("f1").await.unwrap().is_none(),
        "the flow is gone"
    );
}

/// An interactive sign-in of `user` to app `a`; the new session's cookie.
async fn first_sign_in(ctx: Ctx<'_>, config: &Config, user: &User) -> String {
    let mut first = signed_in_flow(config, user);
    let Completed::Issued { new_session, .. } = complete(ctx, &config.apps["a"], &mut first, None)
        .await
        .unwrap()
    else {
        panic!("issued");
    };
    new_session.expect("a fresh sign-in sets a session cookie")
}

/// A sign-in to app `a` whose one step `user`'s SSO session satisfied.
fn silent_flow(config: &Config, user: &User) -> Flow {
    let mut silent = flow(config);
    silent.satisfied_by_session(crate::flow::StepRecord {
        step: 1,
        option: "password".into(),
        subject: crate::authn::steps::local_subject(user, vec![]),
        amr: vec!["pwd".into()],
        at: NOW,
        from_session: true,
    });
    silent
}

#[tokio::test]
async fn an_sso_completion_keeps_the_session_and_its_auth_time() {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let user = ada(&store, false).await;
    let ctx = at(&config, &store);
    let cookie = first_sign_in(ctx, &config, &user).await;
    // Later, the session alone satisfies the step.
    let later = Ctx {
        now: NOW + 100,
        ..ctx
    };
    let live = crate::signin::live_session(later, Some(&cookie))
        .await
        .unwrap()
        .unwrap();
    let mut silent = silent_flow(&config, &user);
    let Completed::Issued {
        new_session,
        record,
        ..
    } = complete(later, &config.apps["a"], &mut silent, Some(&live))
        .await
        .unwrap()
    else {
        panic!("issued");
    };
    assert!(new_session.is_none(), "SSO keeps the browser's session id");
    assert_eq!(
        record.grant.auth_time, NOW,
        "auth_time is the real sign-in's"
    );
}

/// A silent sign-in does not undo a sign-out that ended its session (on another node)
/// after this request read it: whether the app is one the session knows (nothing is
/// written) or a new one (the session would gain it).
#[tokio::test]
async fn a_silent_re_authorization_does_not_bring_back_an_ended_session() {
    for known_app in [true, false] {
        silent_sign_in_after_a_sign_out(known_app).await;
    }
}

async fn silent_sign_in_after_a_sign_out(known_app: bool) {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let user = ada(&store, false).await;
    let ctx = at(&config, &store);
    let cookie = first_sign_in(ctx, &config, &user).await;
    let hash = crate::crypto::token_hash(&cookie);
    if !known_app {
        // The session was made signing in to another app.
        let mut other = store.session(&hash).await.unwrap().unwrap();
        other.clients = vec!["other".into()];
        store.put_session(&hash, &other).await.unwrap();
    }
    let live = crate::signin::live_session(ctx, Some(&cookie))
        .await
        .unwrap()
        .unwrap();
    assert!(live.view.is_some(), "the session's account is live");
    // Signed out elsewhere between this request's read and its completion.
    store.delete_session(&hash).await.unwrap();
    let mut silent = silent_flow(&config, &user);
    let done = complete(ctx, &config.apps["a"], &mut silent, Some(&live))
        .await
        .unwrap();
    let Completed::Issued { record, .. } = done else {
        panic!("issued");
    };
    assert_eq!(
        store.session(&hash).await.unwrap(),
        None,
        "the ended session was written back (known app: {known_app})"
    );
    // Its code names the session, so the exchange will find it ended.
    assert_eq!(record.grant.session.as_deref(), Some(hash.as_str()));
}

#[tokio::test]
async fn a_disabled_account_gets_access_denied_and_no_code() {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let user = ada(&store, true).await;
    let ctx = at(&config, &store);
    let mut f = signed_in_flow(&config, &user);
    let Completed::Refused { redirect, .. } = complete(ctx, &config.apps["a"], &mut f, None)
        .await
        .unwrap()
    else {
        panic!("refused");
    };
    assert!(
        redirect.as_str().contains("error=access_denied"),
        "{redirect}"
    );
    assert!(!redirect.as_str().contains("code="));
}

#[tokio::test]
async fn sign_up_checks_the_form_and_creates_one_account_per_email() {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let ctx = at(&config, &store);
    let mut f = flow(&config);
    let problems = sign_up_problems(ctx, &mut f, "not-an-email", "short", "other")
        .await
        .unwrap();
    assert!(problems.iter().any(|p| p.contains("valid email")));
    assert!(problems.iter().any(|p| p.contains("do not match")));
    assert!(f.notice().is_some());

    let mut f = flow(&config);
    let good = "correct-horse-battery";
    assert!(sign_up_problems(ctx, &mut f, "new@example.com", good, good)
        .await
        .unwrap()
        .is_empty());
    let hash = crate::store::PasswordHash("hash".into());
    let SignedUp::Created { user_id } = sign_up(
        ctx,
        &mut f,
        (1, "a"),
        "new@example.com",
        hash.clone(),
        false,
    )
    .await
    .unwrap() else {
        panic!("created");
    };
    assert_eq!(
        f.subject().unwrap().user_id.as_deref(),
        Some(user_id.as_str())
    );
    // The same email again (a second tab that passed the check before the first wrote).
    let mut again = flow(&config);
    assert_eq!(
        sign_up(ctx, &mut again, (1, "a"), "NEW@example.com", hash, false)
            .await
            .unwrap(),
        SignedUp::Taken
    );
    assert!(again.subject().is_none());
}

fn mfa_config() -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(
        &path,
        "issuer: http://localhost:9000\napps:\n  a:\n    name: A\n    client_id: a\n    redirect_uris: [http://localhost:1/cb]\n    sign_in: { steps: [[password], [totp]] }\n",
    )
    .unwrap();
    crate::config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"))
        .config
}

#[tokio::test]
async fn a_second_factor_for_a_subject_without_an_account_ends_the_flow_with_access_denied() {
    let config = mfa_config();
    let store = SledStore::temporary().unwrap();
    let ctx = at(&config, &store);
    let app = &config.apps["a"];
    let mut f = flow(&config);
    save(ctx, &mut f).await.unwrap();
    // Step 1 satisfied by someone without an account (a pass-through subject).
    f.step_succeeded(
        1,
        &StepOption::Password,
        crate::flow::Subject {
            sub: "github|1".into(),
            idp: "github".into(),
            ..Default::default()
        },
        vec!["fed".into()],
        NOW,
    )
    .unwrap();
    let next = decide(&mut f, app, None, NOW);
    let Shown::NeedsAccount { step, error, back } = resolve(ctx, &mut f, next).await.unwrap()
    else {
        panic!("the MFA conflict");
    };
    assert_eq!(step, 2);
    assert_eq!(error.code, crate::oidc::ErrorCode::AccessDenied);
    assert!(back.as_str().contains("error=access_denied"), "{back}");
    assert!(
        f.trace().iter().any(|l| l.contains("enable jit.provision")),
        "the trace names the fix"
    );
    assert!(
        store.flow("f1").await.unwrap().is_none(),
        "the flow is gone"
    );
    let events = crate::store::AuditStore::events(&store, 0, 10)
        .await
        .unwrap();
    assert!(events
        .iter()
        .any(|e| e.outcome.starts_with("access_denied")));
}

#[tokio::test]
async fn a_flow_loads_only_for_its_browser_and_only_until_it_expires() {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let ctx = at(&config, &store);
    let starter = Starter {
        ip: "192.0.2.1".into(),
        user_agent: "test".into(),
        browser: "cookie-a".into(),
        ..Starter::default()
    };
    let request = flow(&config).request;
    let mut started = start(ctx, request, &config.apps["a"], starter, false);
    save(ctx, &mut started).await.unwrap();
    assert!(load(ctx, &started.id, Some("cookie-a"))
        .await
        .unwrap()
        .is_some());
    assert!(load(ctx, &started.id, Some("cookie-b"))
        .await
        .unwrap()
        .is_none());
    assert!(load(ctx, &started.id, None).await.unwrap().is_none());
    let later = Ctx {
        now: started.expires_at,
        ..ctx
    };
    assert!(load(later, &started.id, Some("cookie-a"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn an_upstream_state_brings_back_its_flow_once() {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let ctx = at(&config, &store);
    let mut f = flow(&config);
    let state = "the-state-value";
    let pending = crate::upstream::Pending {
        connection: "google".into(),
        step: 1,
        state_hash: crate::crypto::token_hash(state),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        started_at: NOW,
    };
    federation::sent_upstream(ctx, &mut f, 1, pending)
        .await
        .unwrap();
    let (id, hash) = federation::take_callback(ctx, Some(state))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, "f1");
    assert!(
        federation::take_callback(ctx, Some(state))
            .await
            .unwrap()
            .is_none(),
        "a state is taken once"
    );
    let mut other = f.clone();
    assert!(
        federation::callback_pending(ctx, &mut other, "github", &hash).is_none(),
        "another connection's callback does not fit"
    );
    assert!(federation::callback_pending(ctx, &mut f, "google", &hash).is_some());
}

#[tokio::test]
async fn oversized_sign_in_and_sign_up_fields_are_refused_and_kept_nowhere() {
    use crate::store::AuditStore;
    let config = config();
    let store = SledStore::temporary().unwrap();
    let ctx = at(&config, &store);
    let options = [StepOption::Password];
    let huge = "u".repeat(1024 * 1024);
    for (login, password) in [
        (huge.as_str(), "a-password"),
        ("ada", huge.as_str()),
        (
            &"é".repeat(crate::limits::USERNAME_MAX + 1)[..],
            "a-password",
        ),
    ] {
        let mut f = flow(&config);
        let begun = password::begin(ctx, &mut f, 1, &options, login, password)
            .await
            .unwrap();
        assert!(matches!(begun, password::Begun::Incomplete));
        assert_eq!(f.last_login, None);
        let notice = f.notice().unwrap();
        assert!(
            notice.contains("too long") && notice.len() < 100,
            "{notice}"
        );
    }
    // At the cap, the name is looked up as usual.
    let mut f = flow(&config);
    let at_cap = "é".repeat(crate::limits::USERNAME_MAX);
    let begun = password::begin(ctx, &mut f, 1, &options, &at_cap, "a-password")
        .await
        .unwrap();
    assert!(matches!(begun, password::Begun::Check(_)));

    let mut f = flow(&config);
    let email = format!("{huge}@example.com");
    let problems =
        sign_up_problems(ctx, &mut f, &email, "a-long-password", "a-long-password").await;
    assert!(problems.unwrap()[0].contains("too long"));
    assert_eq!(f.last_login, None);
    let long_password = "p".repeat(crate::limits::PASSWORD_MAX + 1);
    let problems = sign_up_problems(
        ctx,
        &mut f,
        "ok@example.com",
        &long_password,
        &long_password,
    )
    .await;
    assert!(problems.unwrap()[0].contains("password is too long"));
    assert!(
        store.events(0, 10).await.unwrap().is_empty(),
        "nothing audited"
    );
}

#[tokio::test]
async fn a_finished_sign_in_forgives_the_accounts_failures() {
    use crate::authn::attempts::{self, Holder, Reserved, Rules};
    let config = config();
    let store = SledStore::temporary().unwrap();
    let user = ada(&store, false).await;
    let ctx = at(&config, &store);
    for _ in 0..3 {
        let r = attempts::reserve(&store, &Holder::account("u_ada"), Rules::of(&config), NOW).await;
        assert!(matches!(r.unwrap(), Reserved::Granted(_)));
    }
    assert_eq!(
        attempts::standing(&store, "u_ada", NOW)
            .await
            .unwrap()
            .failures,
        3
    );
    let mut f = signed_in_flow(&config, &user);
    let done = complete(ctx, &config.apps["a"], &mut f, None)
        .await
        .unwrap();
    assert!(matches!(done, Completed::Issued { .. }));
    assert_eq!(
        attempts::standing(&store, "u_ada", NOW)
            .await
            .unwrap()
            .failures,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_link_proofs_check_no_more_passwords_than_the_limit() {
    let config = config();
    let store = SledStore::temporary().unwrap();
    let rt = tokio::runtime::Handle::current();
    ada(&store, false).await;
    let start = std::sync::Barrier::new(50);
    let checked: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let ctx = at(&config, &store);
                    let mut f = flow(&config);
                    start.wait();
                    rt.block_on(async {
                        match federation::prove_begin(ctx, &mut f, "u_ada").await.unwrap() {
                            Some(proof) => {
                                let proven =
                                    federation::prove_finish(ctx, &mut f, "u_ada", proof, false)
                                        .await;
                                assert!(proven.unwrap().is_none());
                                1
                            }
                            None => {
                                assert!(f.take_notice().unwrap().contains("Too many"));
                                0
                            }
                        }
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(checked, config.security.max_password_attempts as usize);
    let rejected = crate::store::AuditStore::events(&store, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "credential.rejected" && e.sub.as_deref() == Some("u_ada"))
        .count();
    assert_eq!(rejected, checked, "each checked proof is in the trail");
}

async fn alice_with_password(store: &SledStore, password: &str) -> User {
    let user = User {
        role_sources: Default::default(),
        id: "u_alice".into(),
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        email_verified: true,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: Some(crate::authn::password::hash(password).unwrap()),
        disabled: false,
        created_at: 1,
        updated_at: 1,
    };
    store.create_user(&user).await.unwrap();
    user
}

fn reset_form(code: &str, password: &str) -> reset::ResetForm {
    reset::ResetForm {
        code: code.into(),
        new: password.into(),
        confirm: password.into(),
    }
}

#[tokio::test]
async fn a_reset_code_works_once_even_from_a_stale_copy_of_the_sign_in() {
    let store = SledStore::temporary().unwrap();
    let config = config();
    let ctx = at(&config, &store);
    alice_with_password(&store, "wonderland-rabbit").await;
    let mut f = flow(&config);
    let reset::Requested::Asked { mail: Some(mail) } =
        reset::request(ctx, &mut f, &[StepOption::Password], "alice@example.com")
            .await
            .unwrap()
    else {
        panic!("a code is mailed to a verified address")
    };
    assert_eq!(mail.to, "alice@example.com");
    let code = mail.code.expose().to_string();
    // A copy of the flow from before the reset (a second tab, a replayed request).
    let mut stale = f.clone();
    let done = reset::submit(ctx, &mut f, &reset_form(&code, "a-brand-new-password"))
        .await
        .unwrap();
    assert!(matches!(done, reset::Reset::Done { .. }), "{done:?}");
    assert_eq!(f.picked(), Some("password"), "back at the password step");
    assert!(f.subject().is_none(), "nobody is signed in by a reset");
    let again = reset::submit(ctx, &mut stale, &reset_form(&code, "an-attackers-password"))
        .await
        .unwrap();
    assert!(matches!(again, reset::Reset::Refused), "{again:?}");
    assert_eq!(stale.notice(), Some(reset::WRONG_CODE));
    let user = store.user("u_alice").await.unwrap().unwrap();
    assert!(crate::authn::password::verify(
        Some(&user),
        "a-brand-new-password"
    ));
}

#[tokio::test]
async fn a_reset_code_is_bound_to_its_sign_in_and_a_weak_password_keeps_it_usable() {
    let store = SledStore::temporary().unwrap();
    let config = config();
    let ctx = at(&config, &store);
    alice_with_password(&store, "wonderland-rabbit").await;
    let mut f = flow(&config);
    let reset::Requested::Asked { mail: Some(mail) } =
        reset::request(ctx, &mut f, &[StepOption::Password], "alice")
            .await
            .unwrap()
    else {
        panic!("a code is mailed")
    };
    let code = mail.code.expose().to_string();
    // The same code in another sign-in that asked for the same account: refused.
    let mut other = flow(&config);
    other.id = "f2".into();
    other.reset = f.reset.clone();
    let refused = reset::submit(ctx, &mut other, &reset_form(&code, "a-brand-new-password"))
        .await
        .unwrap();
    assert!(matches!(refused, reset::Reset::Refused));
    // A weak password is refused before the code is looked at.
    let weak = reset::submit(ctx, &mut f, &reset_form(&code, "short"))
        .await
        .unwrap();
    assert!(matches!(weak, reset::Reset::Refused));
    assert!(f.notice().unwrap().contains("at least"), "{:?}", f.notice());
    let done = reset::submit(ctx, &mut f, &reset_form(&code, "a-brand-new-password"))
        .await
        .unwrap();
    assert!(matches!(done, reset::Reset::Done { .. }), "{done:?}");
}

#[tokio::test]
async fn a_held_sign_up_makes_its_account_only_when_the_code_comes_back() {
    let store = SledStore::temporary().unwrap();
    let config = config();
    let ctx = at(&config, &store);
    let mut f = flow(&config);
    let hash = crate::store::PasswordHash("$argon2id$stand-in".into());
    let sent = hold_sign_up(ctx, &mut f, 1, "new@example.com", hash)
        .await
        .unwrap()
        .expect("a code for the address");
    assert_eq!(sent.to, "new@example.com");
    assert!(store.find_user("new@example.com").await.unwrap().is_none());
    assert_eq!(
        verify_sign_up(ctx, &mut f, 1, "a", "not a code")
            .await
            .unwrap(),
        Verified::Refused
    );
    assert_eq!(
        verify_sign_up(ctx, &mut f, 2, "a", sent.code.expose())
            .await
            .unwrap(),
        Verified::NotPending,
        "only at the step it was held for"
    );
    let Verified::Done(SignedUp::Created { user_id }) =
        verify_sign_up(ctx, &mut f, 1, "a", sent.code.expose())
            .await
            .unwrap()
    else {
        panic!("created")
    };
    let user = store.user(&user_id).await.unwrap().unwrap();
    assert!(user.email_verified);
    assert!(f.sign_up.is_none());
    assert_eq!(
        verify_sign_up(ctx, &mut f, 1, "a", sent.code.expose())
            .await
            .unwrap(),
        Verified::NotPending
    );
}

#[tokio::test]
async fn the_address_proven_at_sign_up_counts_as_its_email_factor_for_enrolment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(
        &path,
        "issuer: http://localhost:9000\napps:\n  a:\n    name: A\n    client_id: a\n    redirect_uris: [http://localhost:1/cb]\n    sign_up: true\n    sign_in: { steps: [[password], [totp, email_otp]] }\n",
    )
    .unwrap();
    let config = crate::config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"))
        .config;
    let store = SledStore::temporary().unwrap();
    let ctx = at(&config, &store);
    let mut f = flow(&config);
    let hash = crate::store::PasswordHash("$argon2id$stand-in".into());
    let sent = hold_sign_up(ctx, &mut f, 1, "new@example.com", hash)
        .await
        .unwrap()
        .expect("a code for the address");
    let Verified::Done(SignedUp::Created { user_id }) =
        verify_sign_up(ctx, &mut f, 1, "a", sent.code.expose())
            .await
            .unwrap()
    else {
        panic!("created")
    };
    // The verified address is a second factor the new account already has…
    let user = store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(
        crate::authn::steps::factors(&store, &config, &user)
            .await
            .unwrap(),
        ["email_otp"]
    );
    // …and it was proven in this very sign-in: an authenticator may be set up now.
    assert!(crate::signin::codes::enrolment_allowed(ctx, &f, &user_id)
        .await
        .unwrap());
    // A later sign-in with the password alone may not.
    let later = flow(&config);
    assert!(
        !crate::signin::codes::enrolment_allowed(ctx, &later, &user_id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn past_the_daily_cap_a_reset_code_is_not_even_checked() {
    let store = SledStore::temporary().unwrap();
    let config = config();
    let ctx = at(&config, &store);
    alice_with_password(&store, "wonderland-rabbit").await;
    let mut f = flow(&config);
    let mut code = String::new();
    // Each code burns after a few wrong tries; new ones keep coming within the resend
    // limit (moved past it on the clock), but the day's wrong tries add up.
    for round in 0..4u64 {
        let ctx = Ctx {
            now: NOW + round * crate::authn::email_otp::RESEND_WINDOW,
            ..ctx
        };
        let reset::Requested::Asked { mail: Some(mail) } =
            reset::request(ctx, &mut f, &[StepOption::Password], "alice")
                .await
                .unwrap()
        else {
            panic!("a code is mailed")
        };
        code = mail.code.expose().to_string();
        let wrong = if code == "000000" { "111111" } else { "000000" };
        for _ in 0..3 {
            reset::submit(ctx, &mut f, &reset_form(wrong, "a-brand-new-password"))
                .await
                .unwrap();
        }
    }
    // Twelve wrong tries so far: the right code is refused unchecked, in the same words.
    let late = Ctx {
        now: NOW + 3 * crate::authn::email_otp::RESEND_WINDOW,
        ..ctx
    };
    let refused = reset::submit(late, &mut f, &reset_form(&code, "a-brand-new-password"))
        .await
        .unwrap();
    assert!(matches!(refused, reset::Reset::Refused), "{refused:?}");
    assert_eq!(f.notice(), Some(reset::WRONG_CODE));
    let user = store.user("u_alice").await.unwrap().unwrap();
    assert!(crate::authn::password::verify(
        Some(&user),
        "wonderland-rabbit"
    ));
}
