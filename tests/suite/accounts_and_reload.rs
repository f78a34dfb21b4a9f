//! Sign-up, logout confirmation, disabled accounts, and config reload under a live
//! server (valid configs swap in, invalid ones are refused, logins in progress restart
//! cleanly).

use crate::common::*;
use reqwest::StatusCode;
use usher::store::UserStore;

#[tokio::test]
async fn sign_up_creates_an_account_and_signs_in() {
    let usher = Usher::default().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let body = html_unescape(&page.body);
    let signup_link = body
        .split("href=\"")
        .find(|s| s.starts_with("/signup/"))
        .expect("a sign-up link");
    let signup_url = usher.url(&signup_link[..signup_link.find('"').unwrap()]);
    let form = browser.get(&signup_url).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains("At least 10 characters"),
        "the policy is shown"
    );

    // Too short and mismatched: both problems reported, nothing created.
    let action = usher.url_of(&form.form_action(Some("email")));
    let res = browser
        .post(
            &action,
            &[
                ("csrf", &form.csrf()),
                ("email", "carol@example.com"),
                ("password", "short"),
                ("password_confirm", "other"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let again = browser.follow(&usher, res).await.unwrap();
    assert!(again.body.contains("Use at least 10 characters."));
    assert!(again.body.contains("The two passwords do not match."));
    assert_eq!(usher.store.user_count().await.unwrap(), 0);

    let res = browser
        .post(
            &action,
            &[
                ("csrf", &again.csrf()),
                ("email", "carol@example.com"),
                ("password", "a-long-enough-secret"),
                ("password_confirm", "a-long-enough-secret"),
            ],
        )
        .await;
    // The address is verified first: a code goes to it, and no account exists yet.
    let verify = browser.follow(&usher, res).await.unwrap();
    assert!(
        verify.body.contains("Confirm your email address"),
        "{verify:?}"
    );
    assert_eq!(usher.store.user_count().await.unwrap(), 0);
    let code = outbox_code(&usher, 0).await;
    let verify_action = usher.url_of(&verify.form_action(Some("code")));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let res = browser
        .post(&verify_action, &[("csrf", &verify.csrf()), ("code", wrong)])
        .await;
    let refused = browser.follow(&usher, res).await.unwrap();
    assert!(
        refused.body.contains("That code is not right"),
        "{refused:?}"
    );
    assert_eq!(usher.store.user_count().await.unwrap(), 0);
    let res = browser
        .post(
            &verify_action,
            &[("csrf", &refused.csrf()), ("code", &code)],
        )
        .await;
    let back = browser
        .follow(&usher, res)
        .await
        .expect_err("signed in after sign-up");
    let user = usher
        .store
        .find_user("carol@example.com")
        .await
        .unwrap()
        .expect("account stored");
    assert!(user.email_verified, "the address was proven");
    assert!(user.password_hash.unwrap().0.starts_with("$argon2id$"));
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    use openidconnect::TokenResponse;
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&rp.client.id_token_verifier(), &start.nonce)
        .unwrap();
    assert_eq!(claims.subject().as_str(), user.id);
    assert_eq!(claims.email().unwrap().as_str(), "carol@example.com");
    assert_eq!(claims.email_verified(), Some(true));
}

/// With `security.verify_sign_up_email: false` the account is made at once, and its
/// address stays unverified in the tokens.
#[tokio::test]
async fn without_verification_sign_up_makes_an_account_whose_email_is_unverified() {
    let usher = Usher::start(
        &BASE_CONFIG.replace("security:\n", "security:\n  verify_sign_up_email: false\n"),
    )
    .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let body = html_unescape(&page.body);
    let link = body
        .split("href=\"")
        .find(|s| s.starts_with("/signup/"))
        .expect("a sign-up link");
    let form = browser
        .get(&usher.url(&link[..link.find('"').unwrap()]))
        .await;
    let res = browser
        .post(
            &usher.url_of(&form.form_action(Some("email"))),
            &[
                ("csrf", &form.csrf()),
                ("email", "dave@example.com"),
                ("password", "a-long-enough-secret"),
                ("password_confirm", "a-long-enough-secret"),
            ],
        )
        .await;
    let back = browser
        .follow(&usher, res)
        .await
        .expect_err("signed in at once");
    assert_eq!(outbox_count(&usher), 0, "nothing mailed");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["email"], "dave@example.com");
    assert_eq!(claims["email_verified"], false);
}

#[tokio::test]
async fn sign_up_is_not_offered_where_the_app_does_not_allow_it() {
    let usher = Usher::default().await;
    let rp = Rp::discover(&usher, "spa", None).await;
    let browser = Browser::new();
    let page = browser
        .follow(&usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    assert!(!html_unescape(&page.body).contains("/signup/"));
    let flow = page.form_action(Some("password"));
    let id = flow
        .trim_start_matches("/login/")
        .trim_end_matches("/password");
    let res = browser.get(&usher.url(&format!("/signup/{id}"))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logout_without_a_hint_asks_first_and_checks_the_return_address() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    password_login(
        &usher,
        &browser,
        &rp.start(&[]),
        "alice",
        "wonderland-rabbit",
    )
    .await;

    let bad = browser
        .get(&usher.url(
            "/logout?client_id=thrift&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fbye%2F",
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "exact match only");
    assert!(bad.headers.get("location").is_none());

    let confirm = browser
        .get(&usher.url("/logout?client_id=thrift&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fbye&state=z"))
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Sign out"));
    let forged = browser
        .post(&usher.url("/logout"), &[("client_id", "thrift")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let fields: Vec<(String, String)> = ["csrf", "client_id", "post_logout_redirect_uri", "state"]
        .iter()
        .map(|n| (n.to_string(), confirm.input(n).unwrap()))
        .collect();
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let done = browser.post(&usher.url("/logout"), &fields).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.headers["location"], "http://127.0.0.1:1/bye?state=z");
    // The session is gone.
    let page = browser
        .follow(
            &usher,
            browser
                .get(rp.start(&[("prompt", "none")]).url.as_str())
                .await,
        )
        .await;
    assert_eq!(query(&page.unwrap_err())["error"], "login_required");
}

#[tokio::test]
async fn a_disabled_account_cannot_sign_in_or_refresh() {
    let usher = Usher::default().await;
    let mut alice = usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "alice", "wonderland-rabbit").await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();

    alice.disabled = true;
    usher.store.update_user(&alice).await.unwrap();
    use openidconnect::OAuth2TokenResponse;
    let refresh = rp
        .client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&rp.http)
        .await;
    assert!(format!("{refresh:?}").contains("invalid_grant"));
    // SSO does not carry a disabled account into an app either.
    let page = browser
        .follow(&usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .expect("no code for a disabled account's session: the sign-in page instead");
    assert!(page.body.contains("name=\"password\""));
    let fresh = Browser::new();
    let page = fresh
        .follow(&usher, fresh.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    let page = fresh
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(page.body.contains("This account is disabled"));
}

#[tokio::test]
async fn reload_swaps_valid_configs_and_refuses_broken_ones() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let state = usher.running.state.clone();
    let path = usher.config_path();
    let original = std::fs::read_to_string(&path).unwrap();

    // A login begins under the old config…
    let browser = Browser::new();
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();

    // …a broken config is refused and the old one keeps serving…
    std::fs::write(
        &path,
        original.replace("client_id: thrift", "client_idd: thrift"),
    )
    .unwrap();
    assert!(!usher::server::reload(&state, &path));
    assert!(state.config().apps.contains_key("thrift"));

    // …a valid one that changes Thrift's steps swaps in, and the login in progress
    // carries on under the new steps instead of failing.
    let changed = original.replace(
        "        - [password]\n  spa:",
        "        - [password]\n        - [password]\n  spa:",
    );
    assert_ne!(changed, original);
    std::fs::write(&path, &changed).unwrap();
    assert!(usher::server::reload(&state, &path));
    assert_eq!(state.config().apps["thrift"].sign_in.steps.len(), 2);
    let after = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert_eq!(after.status, StatusCode::OK, "{after:?}");
    assert!(after.body.contains("name=\"password\""));
    // The sign-in goes on under the new steps: the password was step 1, this page is
    // the new step 2, and passing it returns a code to the app.
    let back = browser
        .submit_password(&usher, &after, "alice", "wonderland-rabbit")
        .await
        .expect_err("both steps of the new config done: back at the app");
    assert!(query(&back).contains_key("code"), "{back}");
}

/// Whether the served config names Thrift `name` within five seconds.
async fn renamed_within_5s(state: &usher::web::Shared, name: &str) -> bool {
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if state.config().apps["thrift"].name == name {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn the_watcher_picks_up_a_changed_file() {
    let usher = Usher::default().await;
    let state = usher.running.state.clone();
    let path = usher.config_path();
    let watcher = tokio::spawn(usher::server::watch_config(state.clone(), path.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("name: Thrift", "name: Thrift Shop");
    std::fs::write(&path, text).unwrap();
    let renamed = renamed_within_5s(&state, "Thrift Shop").await;
    watcher.abort();
    assert!(renamed, "the edited file was reloaded");
}

#[tokio::test]
async fn sighup_reloads_a_change_the_watcher_cannot_see() {
    use tokio::signal::unix::{signal, SignalKind};
    // Handle SIGHUP in this process before anything sends it (the default would end
    // the whole test binary); the watcher below registers its own as well.
    let _hup = signal(SignalKind::hangup()).unwrap();
    let usher = Usher::default().await;
    let state = usher.running.state.clone();
    let path = usher.config_path();
    let watcher = tokio::spawn(usher::server::watch_config(state.clone(), path.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Same length, same modification time: the once-a-second poll sees no change.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("name: Thrift", "name: Thrifx");
    std::fs::write(&path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        state.config().apps["thrift"].name,
        "Thrift",
        "not reloaded yet"
    );

    // SAFETY: kill(2) on our own pid with a signal this process handles.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let renamed = renamed_within_5s(&state, "Thrifx").await;
    watcher.abort();
    assert!(renamed, "SIGHUP reloaded the configuration");
}

#[tokio::test]
async fn a_theme_folder_overrides_a_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("theme")).unwrap();
    std::fs::write(
        dir.path().join("theme/password.html"),
        "{% extends \"base.html\" %}{% block content %}<p>Welcome to the Acme door</p>\
         <form method=\"post\" action=\"{{ action }}\"><input type=\"hidden\" name=\"csrf\" value=\"{{ csrf }}\">\
         <input name=\"username\"><input name=\"password\" type=\"password\"></form>{% endblock %}",
    )
    .unwrap();
    let config = BASE_CONFIG.replace(
        "listen: \"127.0.0.1:0\"",
        "listen: \"127.0.0.1:0\"\ntheme: theme",
    );
    let usher = Usher::start_in(dir, &config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    assert!(page.body.contains("Welcome to the Acme door"), "{page:?}");
    // The other pages keep the built-in look, and the themed form still works.
    let back = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await;
    assert!(query(&back.expect_err("signed in")).contains_key("code"));
}
