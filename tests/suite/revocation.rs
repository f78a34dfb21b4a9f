//! Tokens die with what issued them: logout (with and without `id_token_hint`) and the
//! end of the SSO session end the session's refresh tokens while `offline_access` ones
//! live on until revoked; `/revoke` (RFC 7009) and `/introspect` (RFC 7662), with
//! another client's tokens left alone and unseen; discovery naming both.

use openidconnect::PkceCodeChallenge;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

/// The tokens of one code exchange.
pub(crate) struct Tokens {
    pub access: String,
    pub refresh: String,
    pub id_token: String,
}

/// Sign in to `client_id` in `browser` (with the password if the browser has no
/// session yet) asking for `scope`, and redeem the code.
pub(crate) async fn sign_in(
    usher: &Usher,
    browser: &Browser,
    client_id: &str,
    secret: Option<&str>,
    scope: &str,
) -> Tokens {
    sign_in_with(usher, browser, client_id, secret, scope, &[]).await
}

/// Two sign-ins to Thrift in `browser`: one plain, one with `offline_access`.
pub(crate) async fn online_and_offline(usher: &Usher, browser: &Browser) -> (Tokens, Tokens) {
    let online = sign_in(usher, browser, "thrift", Some(SECRET), "openid").await;
    let offline = sign_in(
        usher,
        browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
    (online, offline)
}

/// [`sign_in`] with more authorization parameters (`prompt`, `max_age`).
async fn sign_in_with(
    usher: &Usher,
    browser: &Browser,
    client_id: &str,
    secret: Option<&str>,
    scope: &str,
    extra: &[(&str, &str)],
) -> Tokens {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut url = url::Url::parse(&usher.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "st")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    let back = match follow_all(browser, browser.get(url.as_str()).await).await {
        Err(back) => back,
        Ok(mut page) => {
            if page.body.contains("name=\"option\"") {
                // A chooser first: take the password.
                let res = browser
                    .post(
                        &usher.url_of(&page.form_action(Some("option"))),
                        &[("csrf", &page.csrf()), ("option", "password")],
                    )
                    .await;
                page = browser.follow(usher, res).await.expect("the password form");
            }
            browser
                .submit_password(usher, &page, "alice", "wonderland-rabbit")
                .await
                .expect_err("back at the app")
        }
    };
    let code = query(&back)["code"].clone();
    let form = as_client(
        client_id,
        secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.secret()),
        ],
    );
    let (status, body) = post(usher, "/token", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Tokens {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap().into(),
        id_token: body["id_token"].as_str().unwrap().into(),
    }
}

/// Post a form to one of the client endpoints; the status and the JSON body.
pub(crate) async fn post(
    usher: &Usher,
    path: &str,
    form: &[(String, String)],
) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(usher.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A form authenticated as `client_id` (with its secret, if it has one).
pub(crate) fn as_client(
    client_id: &str,
    secret: Option<&str>,
    rest: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut form = vec![("client_id".to_string(), client_id.to_string())];
    if let Some(s) = secret {
        form.push(("client_secret".into(), s.into()));
    }
    form.extend(rest.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    form
}

/// Refresh as `client_id`; the error code, or `None` on success (the rotated token is
/// then returned in the second place).
pub(crate) async fn refresh(
    usher: &Usher,
    client_id: &str,
    secret: Option<&str>,
    token: &str,
) -> Result<String, String> {
    let form = as_client(
        client_id,
        secret,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    );
    let (status, body) = post(usher, "/token", &form).await;
    if status == StatusCode::OK {
        Ok(body["refresh_token"].as_str().unwrap().to_string())
    } else {
        Err(body["error"].as_str().unwrap_or("?").to_string())
    }
}

pub(crate) async fn userinfo_status(usher: &Usher, access: &str) -> StatusCode {
    reqwest::Client::new()
        .get(usher.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

async fn alice() -> Usher {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    usher
}

#[tokio::test]
async fn logout_with_an_id_token_hint_ends_the_sessions_refresh_tokens_but_not_offline_ones() {
    let usher = alice().await;
    let browser = Browser::new();
    let (online, offline) = online_and_offline(&usher, &browser).await;
    // Both refresh before the logout.
    let online_r = refresh(&usher, "thrift", Some(SECRET), &online.refresh)
        .await
        .unwrap();
    let offline_r = refresh(&usher, "thrift", Some(SECRET), &offline.refresh)
        .await
        .unwrap();

    let mut logout = url::Url::parse(&usher.url("/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", &online.id_token);
    let out = browser.get(logout.as_str()).await;
    assert_eq!(out.status, StatusCode::OK, "signed out at once: {out:?}");
    assert!(out.body.contains("You have signed out"), "{out:?}");

    assert_eq!(
        refresh(&usher, "thrift", Some(SECRET), &online_r).await,
        Err("invalid_grant".into()),
        "the session's refresh token died with it"
    );
    assert_eq!(
        userinfo_status(&usher, &online.access).await,
        StatusCode::UNAUTHORIZED,
        "and its access token stops at userinfo"
    );
    // The offline grant survives the logout, until it is revoked.
    let offline_r2 = refresh(&usher, "thrift", Some(SECRET), &offline_r)
        .await
        .expect("offline_access outlives the session");
    let (status, _) = post(
        &usher,
        "/revoke",
        &as_client("thrift", Some(SECRET), &[("token", &offline_r2)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        refresh(&usher, "thrift", Some(SECRET), &offline_r2).await,
        Err("invalid_grant".into())
    );
}

#[tokio::test]
async fn logout_without_a_hint_ends_the_sessions_refresh_tokens_once_confirmed() {
    let usher = alice().await;
    let browser = Browser::new();
    let (online, offline) = online_and_offline(&usher, &browser).await;
    let confirm = browser.get(&usher.url("/logout")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Sign out"), "{confirm:?}");
    // Asking is not signing out: the tokens still work.
    let online_r = refresh(&usher, "thrift", Some(SECRET), &online.refresh)
        .await
        .unwrap();
    let done = browser
        .post(&usher.url("/logout"), &[("csrf", &confirm.csrf())])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(
        refresh(&usher, "thrift", Some(SECRET), &online_r).await,
        Err("invalid_grant".into())
    );
    refresh(&usher, "thrift", Some(SECRET), &offline.refresh)
        .await
        .expect("offline_access outlives the session");
}

#[tokio::test]
async fn once_the_session_expires_only_offline_grants_refresh() {
    let usher = alice().await;
    let browser = Browser::new();
    let (online, offline) = online_and_offline(&usher, &browser).await;
    // Past the session's 12 hours, well within the refresh tokens' 30 days.
    usher.clock.advance(13 * 3600);
    assert_eq!(
        refresh(&usher, "thrift", Some(SECRET), &online.refresh).await,
        Err("invalid_grant".into())
    );
    refresh(&usher, "thrift", Some(SECRET), &offline.refresh)
        .await
        .expect("offline_access outlives the session");
}

#[tokio::test]
async fn signing_in_again_in_the_same_browser_keeps_the_apps_tokens() {
    let usher = alice().await;
    let browser = Browser::new();
    let first = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    // A fresh sign-in (a new session id) by the same user, as step-up asks for.
    let again = sign_in_with(
        &usher,
        &browser,
        "spa",
        None,
        "openid",
        &[("prompt", "login")],
    )
    .await;
    assert_ne!(
        decode_payload(&first.id_token)["sid"],
        decode_payload(&again.id_token)["sid"],
        "the session id was renewed"
    );
    let r = refresh(&usher, "thrift", Some(SECRET), &first.refresh)
        .await
        .expect("the earlier app keeps its tokens");
    // And they now end with the new session.
    let mut logout = url::Url::parse(&usher.url("/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", &again.id_token);
    assert_eq!(browser.get(logout.as_str()).await.status, StatusCode::OK);
    assert_eq!(
        refresh(&usher, "thrift", Some(SECRET), &r).await,
        Err("invalid_grant".into())
    );
}

#[tokio::test]
async fn a_revoked_refresh_token_is_refused_and_its_access_token_stops_at_userinfo() {
    let usher = alice().await;
    let browser = Browser::new();
    let t = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    assert_eq!(userinfo_status(&usher, &t.access).await, StatusCode::OK);
    let (status, _) = post(
        &usher,
        "/revoke",
        &as_client(
            "thrift",
            Some(SECRET),
            &[("token", &t.refresh), ("token_type_hint", "refresh_token")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        refresh(&usher, "thrift", Some(SECRET), &t.refresh).await,
        Err("invalid_grant".into())
    );
    assert_eq!(
        userinfo_status(&usher, &t.access).await,
        StatusCode::UNAUTHORIZED
    );
    // Revoking again, or something unknown, is still a success.
    for token in [t.refresh.as_str(), "no-such-token"] {
        let (status, _) = post(
            &usher,
            "/revoke",
            &as_client("thrift", Some(SECRET), &[("token", token)]),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    // Revoking an access token ends its grant too, refresh token included.
    let t = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    let (status, _) = post(
        &usher,
        "/revoke",
        &as_client(
            "thrift",
            Some(SECRET),
            &[("token", &t.access), ("token_type_hint", "access_token")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        userinfo_status(&usher, &t.access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&usher, "thrift", Some(SECRET), &t.refresh).await,
        Err("invalid_grant".into())
    );
}

#[tokio::test]
async fn revoke_authenticates_the_client_and_refuses_unknown_token_types() {
    let usher = alice().await;
    let browser = Browser::new();
    let t = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    let (status, body) = post(
        &usher,
        "/revoke",
        &as_client("thrift", Some("wrong"), &[("token", &t.refresh)]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = post(
        &usher,
        "/revoke",
        &as_client(
            "thrift",
            Some(SECRET),
            &[("token", &t.refresh), ("token_type_hint", "id_token")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_token_type");
    let (status, body) = post(&usher, "/revoke", &as_client("thrift", Some(SECRET), &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    // None of that revoked anything.
    refresh(&usher, "thrift", Some(SECRET), &t.refresh)
        .await
        .expect("still good");
}

#[tokio::test]
async fn another_clients_token_is_not_revoked_and_introspects_as_inactive() {
    let usher = alice().await;
    let browser = Browser::new();
    // The public app's tokens, in the same session.
    let spa = sign_in(&usher, &browser, "spa", None, "openid").await;
    for token in [&spa.refresh, &spa.access] {
        let (status, _) = post(
            &usher,
            "/revoke",
            &as_client("thrift", Some(SECRET), &[("token", token)]),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "the same answer as for any token");
        let (status, body) = post(
            &usher,
            "/introspect",
            &as_client("thrift", Some(SECRET), &[("token", token)]),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({ "active": false }));
    }
    assert_eq!(userinfo_status(&usher, &spa.access).await, StatusCode::OK);
    let r = refresh(&usher, "spa", None, &spa.refresh)
        .await
        .expect("another client cannot revoke the public app's token");
    // The public app revokes its own token, naming itself only.
    let (status, _) = post(&usher, "/revoke", &as_client("spa", None, &[("token", &r)])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        refresh(&usher, "spa", None, &r).await,
        Err("invalid_grant".into())
    );
}

#[tokio::test]
async fn introspection_reports_active_then_inactive_after_revoke() {
    let usher = alice().await;
    let browser = Browser::new();
    let t = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid email").await;
    let introspect = |token: String, hint: Option<&'static str>| {
        let usher = &usher;
        async move {
            let mut rest = vec![("token", token.as_str())];
            if let Some(h) = hint {
                rest.push(("token_type_hint", h));
            }
            let (status, body) = post(
                usher,
                "/introspect",
                &as_client("thrift", Some(SECRET), &rest),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let at = introspect(t.access.clone(), None).await;
    assert_eq!(at["active"], true, "{at}");
    assert_eq!(at["scope"], "openid email");
    assert_eq!(at["client_id"], "thrift");
    assert_eq!(at["sub"], "u_alice");
    assert_eq!(at["token_type"], "Bearer");
    assert_eq!(at["iat"], usher.clock.now());
    assert!(at["exp"].as_u64().unwrap() > usher.clock.now());
    let rt = introspect(t.refresh.clone(), Some("refresh_token")).await;
    assert_eq!(rt["active"], true, "{rt}");
    assert_eq!(rt["token_type"], "refresh_token");
    assert_eq!(rt["sub"], "u_alice");
    // A wrong hint only costs the other lookup.
    assert_eq!(
        introspect(t.access.clone(), Some("refresh_token")).await["active"],
        true
    );

    let (status, _) = post(
        &usher,
        "/revoke",
        &as_client("thrift", Some(SECRET), &[("token", &t.refresh)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let inactive = serde_json::json!({ "active": false });
    assert_eq!(introspect(t.access.clone(), None).await, inactive);
    assert_eq!(introspect(t.refresh.clone(), None).await, inactive);
    assert_eq!(introspect("garbage".into(), None).await, inactive);

    // An expired access token is inactive too.
    let t = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    usher.clock.advance(3601);
    assert_eq!(introspect(t.access.clone(), None).await, inactive);
}

#[tokio::test]
async fn a_public_client_cannot_introspect() {
    let usher = alice().await;
    let browser = Browser::new();
    let spa = sign_in(&usher, &browser, "spa", None, "openid").await;
    let (status, body) = post(
        &usher,
        "/introspect",
        &as_client("spa", None, &[("token", &spa.access)]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(body.get("active").is_none(), "{body}");
}

#[tokio::test]
async fn discovery_names_the_revocation_and_introspection_endpoints() {
    let usher = Usher::default().await;
    let doc: Value = reqwest::get(usher.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["revocation_endpoint"], usher.url("/revoke"));
    assert_eq!(doc["introspection_endpoint"], usher.url("/introspect"));
    let methods = |k: &str| -> Vec<String> { serde_json::from_value(doc[k].clone()).unwrap() };
    assert!(methods("revocation_endpoint_auth_methods_supported").contains(&"none".into()));
    assert!(!methods("introspection_endpoint_auth_methods_supported").contains(&"none".into()));
    assert!(methods("scopes_supported").contains(&"offline_access".into()));
}
