//! Federated sign-in over real HTTP against the local stand-ins for Google and GitHub:
//! JIT provisioning and pass-through, attribute re-sync, Deny, every upstream-safety
//! failure, username choice, linking with proof, the MFA conflict, concurrency, and a
//! disabled account.

use crate::common::*;
use reqwest::StatusCode;
use usher::store::{IdentityStore, UserStore};
use usher::tools::standin::{Faults, Standin};

struct World {
    usher: Usher,
    google: Standin,
    /// Kept alive for the test's length (dropping a stand-in stops it).
    _github: Standin,
}

/// Usher with google (JIT on), github (JIT off), and variants, and apps using them.
async fn world(extra_connections: &str, apps: &str) -> World {
    let (google, github) = standins().await;
    let extra = extra_connections.replace("{google}", &google.issuer());
    let connections = connections_yaml(&google, &github, &extra);
    let config = format!(
        r#"
issuer: "{{issuer}}"
{connections}
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password, google, github]
{apps}"#
    );
    let usher = Usher::start(&config).await;
    World {
        usher,
        google,
        _github: github,
    }
}

async fn plain() -> World {
    world("", "").await
}

/// The id of the flow a page belongs to (from its form's action).
fn flow_id(page: &Page) -> String {
    let action = page.form_action(None);
    action
        .trim_start_matches("/login/")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// From the step-1 chooser, pick `option` and arrive at the upstream's consent page.
async fn to_consent(w: &World, browser: &Browser, rp: &Rp, option: &str) -> (Page, AuthStart) {
    let (consent, start, _) = to_consent_in(w, browser, rp, option).await;
    (consent, start)
}

async fn to_consent_in(
    w: &World,
    browser: &Browser,
    rp: &Rp,
    option: &str,
) -> (Page, AuthStart, String) {
    let start = rp.start(&[]);
    let chooser = browser
        .follow(&w.usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let flow = flow_id(&chooser);
    let res = browser
        .post(
            &w.usher.url_of(&chooser.form_action(Some("option"))),
            &[("csrf", &chooser.csrf()), ("option", option)],
        )
        .await;
    let consent = follow_all(browser, res).await.unwrap();
    assert!(
        consent.body.contains("name=\"decision\""),
        "the upstream's consent page: {consent:?}"
    );
    (consent, start, flow)
}

async fn login_with(
    w: &World,
    rp: &Rp,
    option: &str,
    user: &str,
) -> (Result<Page, url::Url>, AuthStart, Browser) {
    let browser = Browser::new();
    let (consent, start) = to_consent(w, &browser, rp, option).await;
    let res = decide(&browser, &consent, user, "authorize").await;
    (follow_all(&browser, res).await, start, browser)
}

#[tokio::test]
async fn google_with_jit_creates_an_account_once_and_resyncs() {
    let w = plain().await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let (back, start, _) = login_with(&w, &rp, "google", "g-1001").await;
    let back = back.expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    let user_id = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .expect("identity linked");
    assert_eq!(claims["sub"], user_id, "the app sees the local account");
    let user = w.usher.store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(user.email.as_deref(), Some("ada@example.com"));
    assert!(user.email_verified);
    assert_eq!(user.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["amr"], serde_json::json!(["fed"]));

    // The upstream renames her; the next login re-syncs (attributes: override).
    let mut renamed = ada();
    renamed.name = "Augusta Ada King".into();
    w.google.set_user(renamed);
    let (back, start, _) = login_with(&w, &rp, "google", "g-1001").await;
    let claims = rp.claims(&back.unwrap_err(), start).await;
    assert_eq!(claims["sub"], user_id, "found, not created again");
    assert_eq!(w.usher.store.user_count().await.unwrap(), 1);
    assert_eq!(
        w.usher
            .store
            .user(&user_id)
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Augusta Ada King")
    );
    assert_eq!(claims["name"], "Augusta Ada King");
}

#[tokio::test]
async fn preserve_local_keeps_local_attributes() {
    let w = world(
        "  keep:\n    kind: oidc\n    display_name: Keep\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{google}\"\n    jit: { attributes: preserve_local }\n",
        "  keeper:\n    name: Keeper\n    client_id: keeper\n    client_secret: keeper-secret\n    redirect_uris: [\"http://127.0.0.1:1/callback\"]\n    sign_in:\n      steps: [[keep]]\n",
    )
    .await;
    let rp = Rp::discover(&w.usher, "keeper", Some("keeper-secret")).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    // One option: straight to the upstream.
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let back = follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await;
    assert!(back.is_err());
    let uid = w
        .usher
        .store
        .identity("keep", "g-1001")
        .await
        .unwrap()
        .unwrap();
    let mut renamed = ada();
    renamed.name = "Someone Else".into();
    w.google.set_user(renamed);
    let browser = Browser::new();
    let consent = follow_all(&browser, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .unwrap_err();
    assert_eq!(
        w.usher
            .store
            .user(&uid)
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Ada Lovelace")
    );
}

#[tokio::test]
async fn github_without_jit_passes_claims_through_and_stores_nothing() {
    let w = plain().await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let (back, start, _) = login_with(&w, &rp, "github", "583231").await;
    let claims = rp.claims(&back.expect_err("signed in"), start).await;
    assert_eq!(
        claims["sub"], "github|583231",
        "stable, per connection, not a local id"
    );
    assert_eq!(claims["preferred_username"], "octocat");
    assert_eq!(claims["name"], "The Octocat");
    assert_eq!(claims["email"], "octocat@github.example");
    assert_eq!(w.usher.store.user_count().await.unwrap(), 0, "no account");
    assert!(
        w.usher
            .store
            .identity("github", "583231")
            .await
            .unwrap()
            .is_none(),
        "no identity record"
    );
}

#[tokio::test]
async fn deny_at_the_upstream_returns_access_denied_to_the_app() {
    let w = plain().await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    for option in ["google", "github"] {
        let browser = Browser::new();
        let (consent, start) = to_consent(&w, &browser, &rp, option).await;
        let back = follow_all(&browser, decide(&browser, &consent, "", "deny").await)
            .await
            .expect_err("back at the app");
        let q = query(&back);
        assert_eq!(q["error"], "access_denied", "{option}");
        assert!(
            q["error_description"].contains("denied access"),
            "{option}: {q:?}"
        );
        assert_eq!(q["state"], *start.state.secret());
    }
    assert_eq!(w.usher.store.user_count().await.unwrap(), 0);
}

/// Authorize at the upstream, but stop at the redirect back to Usher.
async fn callback_url(w: &World, rp: &Rp, browser: &Browser) -> url::Url {
    callback_url_in(w, rp, browser).await.0
}

async fn callback_url_in(w: &World, rp: &Rp, browser: &Browser) -> (url::Url, String) {
    let (consent, _, flow) = to_consent_in(w, browser, rp, "google").await;
    let res = decide(browser, &consent, "g-1001", "authorize").await;
    (
        url::Url::parse(res.headers["location"].to_str().unwrap()).unwrap(),
        flow,
    )
}

#[tokio::test]
async fn tampered_replayed_and_expired_state_are_refused() {
    let w = plain().await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;

    let browser = Browser::new();
    let cb = callback_url(&w, &rp, &browser).await;
    let mut tampered = cb.clone();
    let pairs: Vec<(String, String)> = cb
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let page = browser.get(tampered.as_str()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("cannot be used"));

    // The genuine answer still works once…
    let first = follow_all(&browser, browser.get(cb.as_str()).await).await;
    assert!(first.is_err(), "signed in");
    // …and never twice.
    let replay = browser.get(cb.as_str()).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("already used"));

    // Another browser cannot use someone's answer.
    let victim = Browser::new();
    let cb = callback_url(&w, &rp, &victim).await;
    let thief = Browser::new();
    let stolen = thief.get(cb.as_str()).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);

    // An answer that arrives after the round trip expired.
    let browser = Browser::new();
    let (cb, flow_id) = callback_url_in(&w, &rp, &browser).await;
    use usher::store::FlowStore;
    let mut flow: serde_json::Value =
        serde_json::from_slice(&w.usher.store.flow(&flow_id).await.unwrap().unwrap()).unwrap();
    flow["upstream"]["started_at"] = serde_json::json!(1);
    w.usher
        .store
        .put_flow(&flow_id, &serde_json::to_vec(&flow).unwrap())
        .await
        .unwrap();
    let late = browser.get(cb.as_str()).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        w.usher.store.user_count().await.unwrap(),
        1,
        "only the one genuine login made an account"
    );
}

#[tokio::test]
async fn every_id_token_fault_fails_the_step_without_an_account() {
    let w = plain().await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let faults = [
        Faults {
            wrong_nonce: true,
            ..Faults::default()
        },
        Faults {
            wrong_issuer_in_id_token: true,
            ..Faults::default()
        },
        Faults {
            wrong_audience: true,
            ..Faults::default()
        },
        Faults {
            expired_id_token: true,
            ..Faults::default()
        },
        Faults {
            bad_signature: true,
            ..Faults::default()
        },
        Faults {
            iss_param: Some("https://evil.example".into()),
            ..Faults::default()
        },
    ];
    for fault in faults {
        w.google.set_faults(fault.clone());
        let (page, _, browser) = login_with(&w, &rp, "google", "g-1001").await;
        let page = page.unwrap_or_else(|u| panic!("{fault:?}: must not sign in, went to {u}"));
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{fault:?}");
        assert!(
            page.body.contains("Signing in with Google failed"),
            "{fault:?}: {page:?}"
        );
        // Continuing takes the app an access_denied.
        let body = html_unescape(&page.body);
        let back_link = body
            .split("href=\"")
            .find(|s| s.starts_with("/login/"))
            .map(|s| s[..s.find('"').unwrap()].to_string())
            .unwrap();
        let back = follow_all(&browser, browser.get(&w.usher.url(&back_link)).await)
            .await
            .expect_err("to the app");
        assert_eq!(query(&back)["error"], "access_denied");
    }
    assert_eq!(
        w.usher.store.user_count().await.unwrap(),
        0,
        "no fault made an account"
    );
}

#[tokio::test]
async fn prompt_username_refuses_a_taken_name() {
    let w = world(
        "  picky:\n    kind: oidc\n    display_name: Picky\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{google}\"\n    jit: { scheme: prompt_username }\n",
        "  pick:\n    name: Pick\n    client_id: pick\n    client_secret: pick-secret\n    redirect_uris: [\"http://127.0.0.1:1/callback\"]\n    sign_in:\n      steps: [[picky]]\n",
    )
    .await;
    let alice = w
        .usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&w.usher, "pick", Some("pick-secret")).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let page = follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .unwrap();
    assert!(page.body.contains("Choose a username"));
    let action = w.usher.url_of(&page.form_action(Some("username")));
    let res = browser
        .post(&action, &[("csrf", &page.csrf()), ("username", "Alice")])
        .await;
    let again = browser.follow(&w.usher, res).await.unwrap();
    assert!(again.body.contains("That username is taken"));
    assert!(
        w.usher
            .store
            .identity("picky", "g-1001")
            .await
            .unwrap()
            .is_none(),
        "never alice's account"
    );
    let res = browser
        .post(&action, &[("csrf", &again.csrf()), ("username", "ada")])
        .await;
    let back = browser.follow(&w.usher, res).await.expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    assert_ne!(claims["sub"], alice.id);
    assert_eq!(
        w.usher.store.find_user("ada").await.unwrap().unwrap().id,
        claims["sub"]
    );
}

#[tokio::test]
async fn linking_needs_the_existing_accounts_password() {
    let w = world(
        "  linky:\n    kind: oidc\n    display_name: Linky\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{google}\"\n    jit: { link: verified_email_with_proof }\n",
        "  link:\n    name: Link\n    client_id: link\n    client_secret: link-secret\n    redirect_uris: [\"http://127.0.0.1:1/callback\"]\n    sign_in:\n      steps: [[linky]]\n",
    )
    .await;
    let local = w
        .usher
        .add_user("ada-local", "ada@example.com", "analytical-engine")
        .await;
    let rp = Rp::discover(&w.usher, "link", Some("link-secret")).await;

    // Without the plain google connection (link: never) the email clash is refused.
    let thrift = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let (page, _, _) = login_with(&w, &thrift, "google", "g-1001").await;
    let page = page.expect("refused");
    assert!(page.body.contains("already exists"));

    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let page = follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .unwrap();
    assert!(page.body.contains("Link your account"));
    let action = w.usher.url_of(&page.form_action(Some("password")));
    let res = browser
        .post(
            &action,
            &[("csrf", &page.csrf()), ("password", "wrong-guess")],
        )
        .await;
    let again = browser.follow(&w.usher, res).await.unwrap();
    assert!(again.body.contains("That password is not right"));
    assert!(
        w.usher
            .store
            .identity("linky", "g-1001")
            .await
            .unwrap()
            .is_none(),
        "not linked without proof"
    );
    let res = browser
        .post(
            &action,
            &[("csrf", &again.csrf()), ("password", "analytical-engine")],
        )
        .await;
    let back = browser.follow(&w.usher, res).await.expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["sub"], local.id, "linked to the proven account");
    assert_eq!(
        w.usher.store.identity("linky", "g-1001").await.unwrap(),
        Some(local.id.clone())
    );
    use usher::store::AuditStore;
    let linked = w.usher.store.events(0, 100).await.unwrap();
    assert!(
        linked
            .iter()
            .any(|e| e.kind == "identity.linked" && e.sub.as_deref() == Some(local.id.as_str())),
        "the link is in the audit trail"
    );
}

#[tokio::test]
async fn a_disabled_account_cannot_sign_in_through_a_connection() {
    let w = plain().await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    login_with(&w, &rp, "google", "g-1001").await.0.unwrap_err();
    let uid = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .unwrap();
    let mut user = w.usher.store.user(&uid).await.unwrap().unwrap();
    user.disabled = true;
    w.usher.store.update_user(&user).await.unwrap();
    let (page, _, _) = login_with(&w, &rp, "google", "g-1001").await;
    let page = page.expect("refused with a page");
    assert!(page.body.contains("disabled"));
}

#[tokio::test]
async fn fifty_parallel_first_logins_make_one_account() {
    let w = plain().await;
    let rp = std::sync::Arc::new(Rp::discover(&w.usher, "thrift", Some(SECRET)).await);
    // Bring 50 browsers to the point of returning from Google, then return all at once.
    let mut ready = Vec::new();
    for _ in 0..50 {
        let browser = Browser::new();
        let cb = callback_url(&w, &rp, &browser).await;
        ready.push((browser, cb));
    }
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(browser, cb)| tokio::spawn(async move { browser.get(cb.as_str()).await.status }))
        .collect();
    for t in tasks {
        let status = t.await.unwrap();
        assert_eq!(status, StatusCode::SEE_OTHER, "no server error");
    }
    assert_eq!(
        w.usher.store.user_count().await.unwrap(),
        1,
        "exactly one account"
    );
}

const MFA_APP: &str = "  mfa:\n    name: Vault\n    client_id: mfa\n    client_secret: mfa-secret\n    redirect_uris: [\"http://127.0.0.1:1/callback\"]\n    sign_in:\n      steps:\n        - [google, github]\n        - [totp, email_otp]\n";

#[tokio::test]
async fn mfa_after_a_pass_through_login_is_the_conflict_page() {
    let w = world("", MFA_APP).await;
    let rp = Rp::discover(&w.usher, "mfa", Some("mfa-secret")).await;
    let (page, start, browser) = login_with(&w, &rp, "github", "583231").await;
    let page = page.expect("a page, not a sign-in");
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("needs an account"), "{page:?}");
    // The page's way back takes the app an access_denied with a description.
    let body = html_unescape(&page.body);
    let back = body
        .split("href=\"")
        .find(|s| s.starts_with(REDIRECT))
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .expect("a way back to the app");
    let q = query(&url::Url::parse(&back).unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].contains("requires a local account"));
    assert_eq!(q["state"], *start.state.secret());
    drop(browser);
    // The admin's trace names both fixes.
    use usher::store::AuditStore;
    let events = w.usher.store.events(0, 10).await.unwrap();
    let trace = events.last().unwrap().detail.join("\n");
    assert!(
        trace.contains("enable jit.provision on connection `github`"),
        "{trace}"
    );
    assert!(trace.contains("in the app's script"), "{trace}");
    // And loading the config warns about exactly this app and connection.
    let loaded = usher::config::load_with_env(&w.usher.config_path(), &|_| None).unwrap();
    let warning = loaded
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .find(|m| m.contains("`mfa`") || m.contains("mfa"))
        .expect("an MFA warning");
    assert!(warning.contains("github"), "{warning}");
}

// Several threads: `usher check` reads the stand-in's discovery while this test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usher_check_warns_and_strict_fails() {
    let w = world("", MFA_APP).await;
    let bin = env!("CARGO_BIN_EXE_usher");
    let out = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(w.usher.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("github"),
        "{stderr}"
    );
    let strict = std::process::Command::new(bin)
        .args(["check", "--strict", "--config"])
        .arg(w.usher.config_path())
        .output()
        .unwrap();
    assert!(
        !strict.status.success(),
        "--strict turns the warning into a failure"
    );
}

#[tokio::test]
async fn a_jit_user_enrols_totp_in_the_first_login_and_uses_it_in_the_second() {
    // Step 2 offers no codes by email, so the new account has no second factor yet and
    // may set up an authenticator (with codes by email its verified address would be
    // one, and would have to be passed first).
    let w = world(
        "",
        &MFA_APP.replace("[totp, email_otp]", "[totp, recovery_code]"),
    )
    .await;
    let rp = Rp::discover(&w.usher, "mfa", Some("mfa-secret")).await;
    let (chooser, start, browser) = login_with(&w, &rp, "google", "g-1001").await;
    let chooser = chooser.expect("step 2");
    assert!(chooser.body.contains("Step 2 of 2"));
    let uid = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .expect("the account exists already, before step 2");
    let enrol = pick(&w.usher, &browser, &chooser, "totp").await;
    assert!(enrol.body.contains("Set up your authenticator app"));
    let (secret, done) = enrol_totp(&w.usher, &browser, &enrol).await;
    let back = done.expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["sub"], uid);
    assert_eq!(claims["amr"], serde_json::json!(["fed", "otp", "mfa"]));

    // Second login, next time step: Google, then a code from the enrolled secret.
    w.usher.clock.advance(30);
    let (chooser, start, browser) = login_with(&w, &rp, "google", "g-1001").await;
    let chooser = chooser.expect("step 2");
    let page = pick(&w.usher, &browser, &chooser, "totp").await;
    assert!(page.body.contains("Enter your authenticator code"));
    let res = browser
        .post(
            &w.usher.url_of(&page.form_action(Some("code"))),
            &[
                ("csrf", &page.csrf()),
                (
                    "code",
                    &usher::authn::totp::code_at(&secret, w.usher.clock.now()),
                ),
            ],
        )
        .await;
    let back = browser.follow(&w.usher, res).await.expect_err("signed in");
    assert_eq!(rp.claims(&back, start).await["sub"], uid);
}

/// Someone signs up with Ada's address and never verifies it (a sign-up made with
/// verification off, or before it existed). The address is not theirs to claim: Ada's
/// Google sign-in, whose address Google verified, gets an account of its own, and the
/// unverified holder gives the address up.
async fn squat_adas_address(w: &World) -> usher::store::User {
    let squatter = usher::store::User {
        role_sources: Default::default(),
        id: "u_squatter".into(),
        username: "ada@example.com".into(),
        email: Some("ada@example.com".into()),
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: Some(usher::authn::password::hash("not-adas-password").unwrap()),
        disabled: false,
        created_at: 1,
        updated_at: 1,
    };
    w.usher.store.create_user(&squatter).await.unwrap();
    squatter
}

#[tokio::test]
async fn an_unverified_sign_up_does_not_block_a_verified_google_identity() {
    let w = plain().await;
    let squatter = squat_adas_address(&w).await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let (back, start, _) = login_with(&w, &rp, "google", "g-1001").await;
    let back = back.expect_err("signed in, not refused");
    let claims = rp.claims(&back, start).await;
    let user_id = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .expect("identity linked");
    assert_ne!(user_id, squatter.id, "not linked to the unverified holder");
    assert_eq!(claims["sub"], user_id);
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["email_verified"], true);
    let released = w.usher.store.user(&squatter.id).await.unwrap().unwrap();
    assert_eq!(released.email, None, "the holder gave the address up");
    assert_eq!(released.username, squatter.id);
    assert!(released.password_hash.is_some(), "and kept everything else");
    use usher::store::AuditStore;
    assert!(w
        .usher
        .store
        .events(0, 100)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "user.email_released" && e.sub.as_deref() == Some("u_squatter")));
}

#[tokio::test]
async fn an_unverified_address_cannot_be_linked_to() {
    let w = world(
        "  linky:\n    kind: oidc\n    display_name: Linky\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{google}\"\n    jit: { link: verified_email_with_proof }\n",
        "  link:\n    name: Link\n    client_id: link\n    client_secret: link-secret\n    redirect_uris: [\"http://127.0.0.1:1/callback\"]\n    sign_in:\n      steps: [[linky]]\n",
    )
    .await;
    let squatter = squat_adas_address(&w).await;
    let rp = Rp::discover(&w.usher, "link", Some("link-secret")).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let back = follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .expect_err("signed in without a link proof page");
    let claims = rp.claims(&back, start).await;
    assert_ne!(claims["sub"], squatter.id);
    assert_ne!(
        w.usher.store.identity("linky", "g-1001").await.unwrap(),
        Some(squatter.id.clone())
    );
}
