//! The client address and the per-address throttles, seen from outside: a forwarded
//! header counts only from a trusted proxy, and then the flow, its script and its audit
//! line all see the address the proxy vouches for; an address over its throttle is held
//! back with a page or a 429 its client can read, other addresses are not, and time
//! lets it back in; racing requests get no more than the limit; and an attacker at one
//! address cannot lock many accounts, nor keep one locked past the lock window.

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use usher::store::{AuditStore, FlowStore};

use crate::common::*;

/// A browser whose requests all say, in `X-Forwarded-For`, that they come from `addr`.
fn browser_from(addr: &str) -> Browser {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_str(addr).unwrap());
    Browser {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

/// The base test config behind a trusted proxy on loopback, with `throttle` lines
/// (indented under `security.throttle`).
fn behind_proxy(throttle: &str) -> String {
    BASE_CONFIG.replace(
        "security:\n",
        &format!(
            "server:\n  trusted_proxies: [\"127.0.0.0/8\"]\nsecurity:\n  throttle:\n{throttle}\n"
        ),
    )
}

/// Start a sign-in at Thrift and return its password page.
async fn sign_in_page(usher: &Usher, browser: &Browser) -> Page {
    let rp = Rp::discover(usher, "thrift", Some(SECRET)).await;
    let start = rp.start(&[]);
    browser
        .follow(usher, browser.get(start.url.as_str()).await)
        .await
        .expect("a sign-in page")
}

/// The address the flow behind a sign-in page recorded.
async fn recorded_ip(usher: &Usher, page: &Page) -> String {
    let id = page.url.rsplit('/').next().unwrap();
    let bytes = usher
        .store
        .flow(id)
        .await
        .unwrap()
        .expect("the flow is stored");
    let flow: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    flow["ip"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_forwarded_address_counts_only_from_a_trusted_proxy() {
    // Loopback is not a trusted proxy: the header is the client's word, ignored.
    let usher = Usher::default().await;
    let page = sign_in_page(&usher, &browser_from("203.0.113.7")).await;
    assert_eq!(recorded_ip(&usher, &page).await, "127.0.0.1");

    // Trusted: the rightmost address that is not a proxy; a spoofed entry to its left
    // is not believed.
    let usher = Usher::start(&behind_proxy("    enabled: true")).await;
    let page = sign_in_page(&usher, &browser_from("198.51.100.1, 203.0.113.7")).await;
    assert_eq!(recorded_ip(&usher, &page).await, "203.0.113.7");
    // A garbled header from the trusted peer falls back to the peer.
    let page = sign_in_page(&usher, &browser_from("203.0.113.7, unknown")).await;
    assert_eq!(recorded_ip(&usher, &page).await, "127.0.0.1");
}

#[tokio::test]
async fn scripts_and_audit_lines_see_the_address_the_proxy_vouches_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("where.rhai"),
        r#"
        log("client " + ctx.request.ip);
        if ip_in_range(ctx.request.ip, "203.0.113.0/24") { set_claim("office", "documentation"); }
        execute_step(1);
        "#,
    )
    .unwrap();
    let config = behind_proxy("    enabled: true").replace(
        "      steps:\n        - [password]\n  spa:",
        "      steps:\n        - [password]\n      script: where.rhai\n  spa:",
    );
    assert!(config.contains("where.rhai"));
    let usher = Usher::start_in(dir, &config).await;
    usher
        .add_user("alice", "alice@example.com", "correct horse battery")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = browser_from("203.0.113.7");
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    // One wrong password first: the audit trail records where it came from.
    let page = browser
        .submit_password(&usher, &page, "alice", "a wrong guess")
        .await
        .expect("the form again");
    let back = browser
        .submit_password(&usher, &page, "alice", "correct horse battery")
        .await
        .expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["office"], "documentation", "{claims}");
    let events = usher.store.events(0, 100).await.unwrap();
    let rejected = events
        .iter()
        .find(|e| e.kind == "credential.rejected")
        .expect("the wrong password is audited");
    assert!(
        rejected.detail.iter().any(|d| d == "from 203.0.113.7"),
        "{:?}",
        rejected.detail
    );
    let signed_in = events
        .iter()
        .find(|e| e.kind == "sign_in")
        .expect("the sign-in is audited");
    assert!(
        signed_in
            .detail
            .iter()
            .any(|d| d == "script: client 203.0.113.7"),
        "{:?}",
        signed_in.detail
    );
    assert!(
        signed_in.detail.iter().any(|d| d == "from 203.0.113.7"),
        "the sign-in's own event names the address: {:?}",
        signed_in.detail
    );
}

/// Post a password form without a good CSRF token: the throttle counts it before the
/// handler refuses it (403).
async fn stray_password_post(usher: &Usher, browser: &Browser) -> Page {
    browser
        .post(
            &usher.url("/login/no-such-flow/password"),
            &[("csrf", "x"), ("username", "u"), ("password", "p")],
        )
        .await
}

#[tokio::test]
async fn an_address_over_the_sign_in_throttle_gets_a_page_and_others_do_not() {
    let usher = Usher::start(&behind_proxy("    sign_in: { max: 5, seconds: 60 }")).await;
    let noisy = browser_from("203.0.113.50");
    for _ in 0..5 {
        let page = stray_password_post(&usher, &noisy).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    }
    let held = stray_password_post(&usher, &noisy).await;
    assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS, "{held:?}");
    assert!(held.body.contains("Too many attempts"), "{held:?}");
    assert!(held.body.contains("Please wait"), "{held:?}");
    let retry_after: u64 = held.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=120).contains(&retry_after), "{retry_after}");

    // Another address behind the same proxy is not held back.
    let other = stray_password_post(&usher, &browser_from("203.0.113.51")).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{other:?}");

    // Once the promised time has passed, the first address is let through again.
    usher.clock.advance(retry_after);
    let again = stray_password_post(&usher, &noisy).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{again:?}");
}

#[tokio::test]
async fn the_token_endpoint_answers_429_as_oauth_json_with_retry_after() {
    let usher = Usher::start(&behind_proxy("    token: { max: 3, seconds: 60 }")).await;
    let http = reqwest::Client::new();
    let post = || {
        http.post(usher.url("/token"))
            .header("x-forwarded-for", "203.0.113.60")
            .form(&[("grant_type", "authorization_code"), ("code", "nope")])
            .send()
    };
    for _ in 0..3 {
        let res = post().await.unwrap();
        assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let res = post().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("retry after"),
        "{body}"
    );
}

#[tokio::test]
async fn scim_answers_429_as_a_scim_error_document() {
    let usher = Usher::start(&behind_proxy("    api: { max: 2, seconds: 60 }")).await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let res = http
            .get(usher.url("/scim/v2/Users"))
            .header("x-forwarded-for", "203.0.113.70")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = http
        .get(usher.url("/scim/v2/Users"))
        .header("x-forwarded-for", "203.0.113.70")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["content-type"], "application/scim+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "429", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_sign_in_posts_get_no_more_than_the_limit() {
    let usher = Usher::start(&behind_proxy("    sign_in: { max: 10, seconds: 60 }")).await;
    let browser = browser_from("203.0.113.80");
    let url = usher.url("/login/no-such-flow/password");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (http, url) = (browser.http.clone(), url.clone());
        tasks.spawn(async move {
            http.post(url)
                .form(&[("csrf", "x"), ("username", "u"), ("password", "p")])
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = tasks.join_all().await;
    let let_through = statuses
        .iter()
        .filter(|s| **s != StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(let_through, 10, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::TOO_MANY_REQUESTS || *s == StatusCode::FORBIDDEN));
}

/// Post a password on `page` and return the answer (a 303, or the throttle's 429).
async fn try_password(usher: &Usher, browser: &Browser, page: &Page, user: &str) -> Page {
    browser
        .post(
            &usher.url_of(&page.form_action(Some("password"))),
            &[
                ("csrf", &page.csrf()),
                ("username", user),
                ("password", "a wrong guess"),
            ],
        )
        .await
}

#[tokio::test]
async fn one_address_cannot_lock_many_accounts_nor_keep_one_locked_past_the_window() {
    // Accounts lock after 3 wrong passwords for 600 s; one address may post 10 a minute.
    let config = behind_proxy("    sign_in: { max: 10, seconds: 60 }");
    assert!(config.contains("max_password_attempts: 3") && config.contains("lockout_seconds: 600"));
    let usher = Usher::start(&config).await;
    let users: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    for u in &users {
        usher
            .add_user(u, &format!("{u}@example.com"), "the right password")
            .await;
    }

    // The attacker walks the accounts, three wrong guesses each (a fresh sign-in per
    // account, since a sign-in ends at three failures), until held back.
    let attacker = browser_from("203.0.113.66");
    let mut held_back = false;
    'accounts: for u in &users {
        let mut page = sign_in_page(&usher, &attacker).await;
        for _ in 0..3 {
            let res = try_password(&usher, &attacker, &page, u).await;
            if res.status == StatusCode::TOO_MANY_REQUESTS {
                held_back = true;
                break 'accounts;
            }
            match attacker.follow(&usher, res).await {
                Ok(next) => page = next,
                Err(_) => continue 'accounts,
            }
        }
    }
    assert!(held_back, "the per-address throttle stopped the attacker");
    let now = usher.clock.now();
    let mut locked: Vec<&String> = Vec::new();
    for u in &users {
        let key = format!("password:u_{u}");
        if usher::authn::attempts::locked(usher.store.as_ref(), &key, now)
            .await
            .unwrap()
        {
            locked.push(u);
        }
    }
    assert_eq!(
        locked.len(),
        3,
        "10 posts a minute lock at most 10 / 3 accounts: {locked:?}"
    );
    assert_eq!(locked[0], "user0");

    // The real user of a locked account, elsewhere, is refused while the lock lasts …
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let owner = browser_from("198.51.100.20");
    let start = rp.start(&[]);
    let login = owner
        .follow(&usher, owner.get(start.url.as_str()).await)
        .await
        .unwrap();
    let refused = owner
        .submit_password(&usher, &login, "user0", "the right password")
        .await
        .expect("the form again, saying the account is locked");
    assert!(
        refused.body.contains("Too many failed attempts"),
        "{refused:?}"
    );

    // … the attacker, back within its throttle, cannot make the lock last longer by
    // guessing at a locked account …
    usher.clock.advance(300);
    let mut page = sign_in_page(&usher, &attacker).await;
    for _ in 0..5 {
        let res = try_password(&usher, &attacker, &page, "user0").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
        page = attacker.follow(&usher, res).await.expect("the form again");
    }

    // … and once the lock window has passed, the owner signs in.
    usher.clock.advance(300);
    let start = rp.start(&[]);
    let back = password_login(&usher, &owner, &start, "user0", "the right password").await;
    assert!(query(&back).contains_key("code"), "{back}");
}

#[test]
fn a_bad_proxy_range_or_a_zero_limit_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(
        &path,
        "issuer: https://id.example.com\nserver:\n  trusted_proxies: [10.0.0.0/8, 10.0.0.0/40]\nsecurity:\n  throttle:\n    sign_in: { max: 0, seconds: 60 }\n",
    )
    .unwrap();
    let Err(usher::config::Diagnostics(d)) = usher::config::load_with_env(&path, &|_| None) else {
        panic!("the config was accepted")
    };
    let proxy = d
        .iter()
        .find(|d| d.path == "server.trusted_proxies[1]")
        .unwrap_or_else(|| panic!("{d:#?}"));
    assert_eq!(proxy.line, 3, "{proxy:?}");
    assert!(proxy.message.contains("/40"), "{proxy:?}");
    let zero = d
        .iter()
        .find(|d| d.path == "security.throttle.sign_in.max")
        .unwrap_or_else(|| panic!("{d:#?}"));
    assert!(zero.message.contains("enabled: false"), "{zero:?}");
    // The defaults, when nothing is written: on, 30 sign-in posts a minute.
    std::fs::write(&path, "issuer: https://id.example.com\n").unwrap();
    let config = usher::config::load_with_env(&path, &|_| None)
        .unwrap()
        .config;
    let t = &config.security.throttle;
    assert!(t.enabled);
    assert_eq!((t.sign_in.max, t.sign_in.seconds), (30, 60));
    assert!(config.server.trusted_proxies.is_empty());
}
