//! What Usher refuses, and how: bad redirect URIs get a page and no redirect, protocol
//! errors are the RFC's, and every single-use thing is single use.

use crate::common::*;
use openidconnect::{OAuth2TokenResponse, PkceCodeVerifier, TokenResponse};
use reqwest::StatusCode;
use usher::store::{AuditStore, CodeRecord, GrantData, TokenStore, UserStore};

fn authorize_url(usher: &Usher, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&usher.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.to_string()
}

/// SHA-256 of VERIFIER, base64url.
const CHALLENGE: &str = "lI9T0z6eLk2H_VJB9Ep8R_IMoy6HLovf5cqZVO4lNYo";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ0M75tXtVl7kXWXRjYWi4U6Uz4Iy8";

fn good(redirect: &str) -> Vec<(&str, &str)> {
    vec![
        ("response_type", "code"),
        ("client_id", "thrift"),
        ("redirect_uri", redirect),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

#[tokio::test]
async fn unregistered_redirect_uris_get_a_page_never_a_redirect() {
    let usher = Usher::default().await;
    let browser = Browser::new();
    for bad in [
        "http://127.0.0.1:1/callback/",
        "http://127.0.0.1:1/callback?x=1",
        "http://127.0.0.1:1/CALLBACK",
        "http://127.0.0.1:1/callback#frag",
        "http://127.0.0.1:1/x/../callback",
        "http://127.0.0.1:1/%63allback",
        "HTTP://127.0.0.1:1/callback",
        "http://evil.example/callback",
        "not a url",
    ] {
        let page = browser.get(&authorize_url(&usher, &good(bad))).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            page.headers.get("location").is_none(),
            "{bad} must not be redirected to"
        );
        assert!(
            page.body.contains("redirect URI is not registered"),
            "{bad}: {}",
            page.body
        );
        assert!(
            page.body.contains("Request ID"),
            "error pages carry a request id"
        );
    }
    let mut unknown = good(REDIRECT);
    unknown[1] = ("client_id", "nobody");
    let page = browser.get(&authorize_url(&usher, &unknown)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("not registered with this server"));
    assert!(page.headers.get("location").is_none());
}

async fn redirected_error(
    usher: &Usher,
    pairs: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let page = Browser::new().get(&authorize_url(usher, pairs)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:?}");
    let loc = url::Url::parse(page.headers["location"].to_str().unwrap()).unwrap();
    assert!(loc.as_str().starts_with(REDIRECT));
    query(&loc)
}

#[tokio::test]
async fn pkce_rules_for_public_and_confidential_clients() {
    let usher = Usher::default().await;
    // A public client without PKCE.
    let q = redirected_error(
        &usher,
        &[
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "s1"),
        ],
    )
    .await;
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("PKCE"));
    assert_eq!(q["state"], "s1");
    assert_eq!(q["iss"], usher.issuer);
    // `plain` is refused for everyone.
    let mut plain = good(REDIRECT);
    plain[6] = ("code_challenge_method", "plain");
    let q = redirected_error(&usher, &plain).await;
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("plain"));
    // Wrong response type and a missing openid scope.
    let mut implicit = good(REDIRECT);
    implicit[0] = ("response_type", "token");
    assert_eq!(
        redirected_error(&usher, &implicit).await["error"],
        "unsupported_response_type"
    );
    let mut no_openid = good(REDIRECT);
    no_openid[3] = ("scope", "email");
    assert_eq!(
        redirected_error(&usher, &no_openid).await["error"],
        "invalid_scope"
    );
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let usher = Usher::default().await;
    let mut pairs = good(REDIRECT);
    pairs.push(("prompt", "none"));
    let q = redirected_error(&usher, &pairs).await;
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st");
}

/// A fresh sign-in page for Thrift (the fixed PKCE pair, state `st`).
async fn sign_in_page(usher: &Usher, browser: &Browser) -> Page {
    let res = browser.get(&authorize_url(usher, &good(REDIRECT))).await;
    browser.follow(usher, res).await.expect("a sign-in page")
}

/// Sign alice in with the fixed PKCE pair and return the code.
async fn code_for_alice(usher: &Usher, browser: &Browser) -> String {
    let back = match browser
        .follow(
            usher,
            browser.get(&authorize_url(usher, &good(REDIRECT))).await,
        )
        .await
    {
        Ok(page) => browser
            .submit_password(usher, &page, "alice", "wonderland-rabbit")
            .await
            .expect_err("code"),
        // Already signed in: SSO sends the code straight back.
        Err(back) => back,
    };
    query(&back)["code"].clone()
}

async fn token_call(
    usher: &Usher,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, serde_json::Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new().post(usher.url("/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, res.json().await.unwrap(), headers)
}

fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ]
}

#[tokio::test]
async fn a_malformed_token_request_gets_an_oauth_error_not_a_bare_status() {
    let usher = Usher::default().await;
    let res = reqwest::Client::new()
        .post(usher.url("/token"))
        .basic_auth("thrift", Some(SECRET))
        .json(&serde_json::json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("x-www-form-urlencoded"));

    // A parameter given twice is refused rather than one copy silently winning.
    let (status, body, _) = token_call(
        &usher,
        &[
            ("grant_type", "authorization_code"),
            ("code", "a"),
            ("code", "b"),
        ],
        Some(("thrift", SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert!(body["error_description"].as_str().unwrap().contains("code"));
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();
    let code = code_for_alice(&usher, &browser).await;
    let (status, first, headers) = token_call(
        &usher,
        &code_form(&code, VERIFIER),
        Some(("thrift", SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(headers["cache-control"], "no-store");
    let (status, again, _) = token_call(
        &usher,
        &code_form(&code, VERIFIER),
        Some(("thrift", SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");
    // The refresh token and access token from the first exchange are now dead.
    let refresh = first["refresh_token"].as_str().unwrap();
    let (status, r, _) = token_call(
        &usher,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        Some(("thrift", SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(r["error"], "invalid_grant");
    let info = reqwest::Client::new()
        .get(usher.url("/userinfo"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::UNAUTHORIZED);
    assert!(info.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
}

#[tokio::test]
async fn wrong_verifier_wrong_secret_and_wrong_redirect_are_refused() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();

    let code = code_for_alice(&usher, &browser).await;
    let wrong = "x".repeat(43);
    let (status, body, _) =
        token_call(&usher, &code_form(&code, &wrong), Some(("thrift", SECRET))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("code_verifier"));

    let code = code_for_alice(&usher, &browser).await;
    let (status, body, headers) = token_call(
        &usher,
        &code_form(&code, VERIFIER),
        Some(("thrift", "not-the-secret")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    // The failed client authentication did not burn the code.
    let (status, _, _) = token_call(
        &usher,
        &code_form(&code, VERIFIER),
        Some(("thrift", SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let code = code_for_alice(&usher, &browser).await;
    let mut form = code_form(&code, VERIFIER);
    form[2] = ("redirect_uri", "http://127.0.0.1:1/other");
    let (status, body, _) = token_call(&usher, &form, Some(("thrift", SECRET))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let (status, body, _) = token_call(
        &usher,
        &[("grant_type", "password")],
        Some(("thrift", SECRET)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let usher = Usher::default().await;
    let record = CodeRecord {
        client_id: "thrift".into(),
        redirect_uri: REDIRECT.into(),
        code_challenge: None,
        nonce: None,
        scopes: vec!["openid".into()],
        grant: GrantData {
            sub: "u_x".into(),
            user_id: None,
            auth_time: 1,
            amr: vec!["pwd".into()],
            claims: Default::default(),
            sid: None,
            session: None,
        },
        expires_at: usher.clock.now() - 1,
        redeemed_by: None,
    };
    usher
        .store
        .put_code(&usher::crypto::token_hash("old-code"), &record)
        .await
        .unwrap();
    let (status, body, _) = token_call(
        &usher,
        &[
            ("grant_type", "authorization_code"),
            ("code", "old-code"),
            ("redirect_uri", REDIRECT),
        ],
        Some(("thrift", SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn the_openidconnect_client_sees_a_wrong_verifier_as_invalid_grant() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "alice", "wonderland-rabbit").await;
    let err = rp
        .exchange(&query(&back)["code"], PkceCodeVerifier::new("y".repeat(50)))
        .await
        .unwrap_err();
    assert_eq!(err, "invalid_grant");
}

#[tokio::test]
async fn lockout_after_repeated_failures_is_shared_across_browsers() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    // An unknown user gets exactly the words a wrong password gets.
    let probe = Browser::new();
    let page = sign_in_page(&usher, &probe).await;
    let stranger = probe
        .submit_password(&usher, &page, "mallory", "whatever-it-is")
        .await
        .unwrap();
    assert!(stranger
        .body
        .contains("The username or password is incorrect."));

    let first = Browser::new();
    let mut page = sign_in_page(&usher, &first).await;
    for _ in 0..2 {
        page = first
            .submit_password(&usher, &page, "alice", "wrong-password")
            .await
            .unwrap();
        assert!(page.body.contains("The username or password is incorrect."));
    }
    // The third failure (limit 3) locks the account and ends this login for good:
    // the app hears access_denied.
    let back = first
        .submit_password(&usher, &page, "alice", "wrong-password")
        .await
        .expect_err("the login ends at the limit");
    let q = query(&back);
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].contains("too many failed password attempts"));
    // Another browser, the right password: still locked.
    let second = Browser::new();
    let page2 = sign_in_page(&usher, &second).await;
    let page2 = second
        .submit_password(&usher, &page2, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(page2.body.contains("Too many failed attempts"), "{page2:?}");
    // Every wrong password is in the audit trail when it happens, the stranger's too,
    // even though the stranger's sign-in was never finished.
    let rejected: Vec<_> = usher
        .store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "credential.rejected")
        .collect();
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert!(rejected.iter().all(|e| e.outcome == "failure"));
    assert!(rejected[0].sub.is_none() && rejected[0].detail[0].contains("`mallory`"));
    let alice = usher.store.find_user("alice").await.unwrap().unwrap();
    assert!(rejected[1..]
        .iter()
        .all(|e| e.sub.as_deref() == Some(alice.id.as_str())));
}

#[tokio::test]
async fn cancelling_a_step_returns_access_denied_to_the_app() {
    let usher = Usher::default().await;
    let browser = Browser::new();
    let page = sign_in_page(&usher, &browser).await;
    let cancel = html_unescape(&page.body)
        .split("action=\"")
        .find(|s| s.contains("/cancel\""))
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .expect("a cancel form");
    let res = browser
        .post(&usher.url(&cancel), &[("csrf", &page.csrf())])
        .await;
    let back = browser
        .follow(&usher, res)
        .await
        .expect_err("back at the app");
    let q = query(&back);
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].contains("cancelled"));
    assert_eq!(q["state"], "st");
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_are_refused() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();
    let page = sign_in_page(&usher, &browser).await;
    let action = usher.url_of(&page.form_action(Some("password")));
    let missing = browser
        .post(
            &action,
            &[("username", "alice"), ("password", "wonderland-rabbit")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("security token"));
    let forged = browser
        .post(
            &action,
            &[
                ("csrf", "forged"),
                ("username", "alice"),
                ("password", "wonderland-rabbit"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // Another browser cannot post into this browser's flow, even with its own token.
    let other = Browser::new();
    let other_page = sign_in_page(&usher, &other).await;
    let cross = other
        .post(
            &action,
            &[
                ("csrf", &other_page.csrf()),
                ("username", "alice"),
                ("password", "wonderland-rabbit"),
            ],
        )
        .await;
    assert_eq!(cross.status, StatusCode::BAD_REQUEST);
    assert!(cross.body.contains("no longer valid"));
}

#[tokio::test]
async fn sso_prompt_login_and_max_age() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "alice", "wonderland-rabbit").await;
    let t1 = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    let c1 = t1
        .id_token()
        .unwrap()
        .claims(&rp.client.id_token_verifier(), &start.nonce)
        .unwrap()
        .clone();

    // prompt=none with a session: a code without any page.
    let silent = rp.start(&[("prompt", "none")]);
    let back = browser
        .follow(&usher, browser.get(silent.url.as_str()).await)
        .await
        .expect_err("silent");
    let t2 = rp
        .exchange(&query(&back)["code"], silent.verifier)
        .await
        .unwrap();
    let c2 = t2
        .id_token()
        .unwrap()
        .claims(&rp.client.id_token_verifier(), &silent.nonce)
        .unwrap()
        .clone();
    assert_eq!(
        c2.auth_time(),
        c1.auth_time(),
        "SSO keeps the original auth_time"
    );
    assert_eq!(c2.subject(), c1.subject());

    // prompt=login asks again even with a session; so does a max_age that has passed.
    let login = rp.start(&[("prompt", "login")]);
    let page = browser
        .follow(&usher, browser.get(login.url.as_str()).await)
        .await
        .unwrap();
    assert!(page.body.contains("name=\"password\""));
    usher.clock.advance(2);
    let aged = rp.start(&[("max_age", "0")]);
    let page = browser
        .follow(&usher, browser.get(aged.url.as_str()).await)
        .await
        .unwrap();
    assert!(page.body.contains("name=\"password\""));
    let back = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .expect_err("code");
    let t3 = rp
        .exchange(&query(&back)["code"], aged.verifier)
        .await
        .unwrap();
    let c3 = t3
        .id_token()
        .unwrap()
        .claims(&rp.client.id_token_verifier(), &aged.nonce)
        .unwrap()
        .clone();
    assert!(
        c3.auth_time().unwrap() > c1.auth_time().unwrap(),
        "a fresh sign-in moves auth_time"
    );
    assert!(t3.access_token().secret().len() > 20);
}
