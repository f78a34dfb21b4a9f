//! The world My Account, SCIM and the admin CLI are tested in: Usher with a Google
//! stand-in (JIT on) and a GitHub stand-in (pass-through), the Thrift app, a service
//! client with `scim` and `audit` (`ops`) and one with `audit` only (`auditor`), plus
//! helpers to sign in to My Account and to get API tokens.

use reqwest::StatusCode;
use serde_json::Value;
use usher::store::AuditStore;
use usher::tools::standin::Standin;

use crate::common::*;

pub struct World {
    pub usher: Usher,
    /// The stand-ins live as long as the world (dropping one stops it).
    _google: Standin,
    _github: Standin,
}

pub const OPS_SECRET: &str = "ops-secret";
pub const AUDITOR_SECRET: &str = "auditor-secret";

pub async fn world() -> World {
    world_with(
        tempfile::tempdir().unwrap(),
        "my_account:\n  editable: [name, given_name, family_name]\n",
    )
    .await
}

/// The world with another `my_account:` section, its config written into `dir`.
pub async fn world_with(dir: tempfile::TempDir, my_account: &str) -> World {
    let (google, github) = standins().await;
    let connections = connections_yaml(&google, &github, "");
    let config = format!(
        r#"
issuer: "{{issuer}}"
security:
  max_password_attempts: 5
{connections}apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password, google, github]
  ops:
    name: Operations
    client_id: ops
    client_secret: {OPS_SECRET}
    grants: [client_credentials]
    scopes: [scim, audit]
  auditor:
    name: Auditor
    client_id: auditor
    client_secret: {AUDITOR_SECRET}
    grants: [client_credentials]
    scopes: [audit]
{my_account}"#
    );
    let usher = Usher::start_in(dir, &config).await;
    World {
        usher,
        _google: google,
        _github: github,
    }
}

/// From `/myaccount`, pick `option` on the chooser; answers the page it leads to
/// (the upstream's consent page for a connection, the password form for `password`).
pub async fn my_account_pick(w: &World, browser: &Browser, option: &str) -> Page {
    let chooser = follow_all(browser, browser.get(&w.usher.url("/myaccount")).await)
        .await
        .expect("a page");
    assert!(
        chooser
            .body
            .contains("Sign in to <strong>My Account</strong>"),
        "{chooser:?}"
    );
    let res = browser
        .post(
            &w.usher.url_of(&chooser.form_action(Some("option"))),
            &[("csrf", &chooser.csrf()), ("option", option)],
        )
        .await;
    follow_all(browser, res).await.expect("a page")
}

/// Sign in to My Account through a connection's stand-in as `user`; the page it ends on.
pub async fn my_account_via(w: &World, browser: &Browser, option: &str, user: &str) -> Page {
    let consent = my_account_pick(w, browser, option).await;
    let res = decide(browser, &consent, user, "authorize").await;
    follow_all(browser, res).await.expect("a page")
}

/// Sign in to My Account with a password; the page it ends on.
pub async fn my_account_password(w: &World, browser: &Browser, user: &str, pass: &str) -> Page {
    let form = my_account_pick(w, browser, "password").await;
    let res = browser
        .post(
            &w.usher.url_of(&form.form_action(Some("password"))),
            &[
                ("csrf", &form.csrf()),
                ("username", user),
                ("password", pass),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    follow_all(browser, res).await.expect("a page")
}

/// Post a My Account form found on `page` (the one holding `field`), following the
/// 303 back to the page.
pub async fn submit(
    w: &World,
    browser: &Browser,
    page: &Page,
    field: &str,
    extra: &[(&str, &str)],
) -> Page {
    let mut form = vec![("csrf", page.csrf())];
    form.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = browser
        .post(&w.usher.url_of(&page.form_action(Some(field))), &pairs)
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    follow_all(browser, res).await.expect("a page")
}

/// A `client_credentials` token.
pub async fn token(w: &World, client_id: &str, secret: &str) -> Value {
    let res = reqwest::Client::new()
        .post(w.usher.url("/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

pub async fn bearer(w: &World, client_id: &str, secret: &str) -> String {
    token(w, client_id, secret).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The kinds of the audit events about `sub`, oldest first.
pub async fn kinds_for(w: &World, sub: &str) -> Vec<String> {
    w.usher
        .store
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.sub.as_deref() == Some(sub))
        .map(|e| e.kind)
        .collect()
}

/// The TOTP secret shown on an enrolment page.
pub fn shown_secret(page: &Page) -> Vec<u8> {
    let body = html_unescape(&page.body);
    let at = body.find("id=\"totp-secret\">").expect("a secret") + 17;
    let text: String = body[at..body[at..].find('<').unwrap() + at]
        .split_whitespace()
        .collect();
    totp_rs::Secret::Encoded(text).to_bytes().unwrap()
}

/// Sign in to Thrift with a password (picking it on the chooser); where it leads: the
/// app's redirect URI (`Err`) or a page.
pub async fn thrift_password(
    w: &World,
    browser: &Browser,
    start: &AuthStart,
    user: &str,
    pass: &str,
) -> Result<Page, url::Url> {
    let page = browser
        .follow(&w.usher, browser.get(start.url.as_str()).await)
        .await
        .expect("the chooser");
    let res = browser
        .post(
            &w.usher.url_of(&page.form_action(Some("option"))),
            &[("csrf", &page.csrf()), ("option", "password")],
        )
        .await;
    let form = browser
        .follow(&w.usher, res)
        .await
        .expect("the password form");
    browser.submit_password(&w.usher, &form, user, pass).await
}
