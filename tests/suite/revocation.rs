//! Tokens die with what issued them: logout (with and without `id_token_hint`) and the
//! end of the SSO session end the session's refresh tokens while `offline_access` ones
//! live on until revoked; `/revoke` (RFC 7009) and `/introspect` (RFC 7662), with
//! another client's tokens left alone and unseen; discovery naming both.

use openidconnect::PkceCodeChallenge;
use reqwest::StatusCode;
use serde_json::Value;

use crate::accounts_world::*;
use crate::common::*;
use usher::store::{SessionStore, TokenStore};

/// The tokens of one code exchange.
struct Tokens {
    access: String,
    refresh: String,
    id_token: String,
}

/// Sign in to `client_id` in `browser` (with the password if the browser has no
/// session yet) asking for `scope`, and redeem the code.
async fn sign_in(
    usher: &Usher,
    browser: &Browser,
    client_id: &str,
    secret: Option<&str>,
    scope: &str,
) -> Tokens {
    sign_in_with(usher, browser, client_id, secret, scope, &[]).await
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
async fn post(usher: &Usher, path: &str, form: &[(String, String)]) -> (StatusCode, Value) {
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
fn as_client(
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
async fn refresh(
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

async fn userinfo_status(usher: &Usher, access: &str) -> StatusCode {
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
    let online = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    let offline = sign_in(
        &usher,
        &browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
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
    let online = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    let offline = sign_in(
        &usher,
        &browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
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
    let online = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid").await;
    let offline = sign_in(
        &usher,
        &browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
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
    refresh(&usher, "spa", None, &spa.refresh)
        .await
        .expect("another client cannot revoke the public app's token");
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

/// The grant an access token names.
fn grant_of(access: &str) -> String {
    decode_payload(access)["gid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn after_a_password_change_every_refresh_token_is_dead() {
    let w = world().await;
    let usher = &w.usher;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let phone = Browser::new();
    let online = sign_in(usher, &phone, "thrift", Some(SECRET), "openid").await;
    let offline = sign_in(
        usher,
        &phone,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
    let laptop = Browser::new();
    let page = my_account_password(&w, &laptop, "alice", "wonderland-rabbit").await;
    // An app signed in in the same browser as My Account loses its tokens as well.
    let beside = sign_in(usher, &laptop, "thrift", Some(SECRET), "openid").await;
    let page = submit(
        &w,
        &laptop,
        &page,
        "current_password",
        &[
            ("current_password", "wonderland-rabbit"),
            ("new_password", "through-the-glass"),
            ("new_password_confirm", "through-the-glass"),
        ],
    )
    .await;
    assert!(page.body.contains("Your password was changed"), "{page:?}");
    for t in [&online, &offline, &beside] {
        assert_eq!(
            refresh(usher, "thrift", Some(SECRET), &t.refresh).await,
            Err("invalid_grant".into())
        );
        assert_eq!(
            userinfo_status(usher, &t.access).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Whoever changed it stays in My Account.
    let still = laptop.get(&usher.url("/myaccount")).await;
    assert!(still.body.contains("<h1>My Account</h1>"), "{still:?}");
}

#[tokio::test]
async fn an_administrator_signs_an_account_out_everywhere() {
    let w = world().await;
    let usher = &w.usher;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();
    let offline = sign_in(
        usher,
        &browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
    let ops = bearer(&w, "ops", OPS_SECRET).await;
    let res = reqwest::Client::new()
        .post(usher.url("/admin/v1/users/u_alice/sign-out"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["userName"], "alice");
    assert_eq!(
        refresh(usher, "thrift", Some(SECRET), &offline.refresh).await,
        Err("invalid_grant".into()),
        "offline grants go too"
    );
    assert!(usher.store.sessions_of("u_alice").await.unwrap().is_empty());
    let kinds = kinds_for(&w, "u_alice").await;
    assert!(
        kinds.iter().any(|k| k == "admin.user_signed_out"),
        "{kinds:?}"
    );
    // An unknown account is the admin API's not_found.
    let res = reqwest::Client::new()
        .post(usher.url("/admin/v1/users/u_nobody/sign-out"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn resetting_the_factor_or_the_password_or_disabling_the_account_revokes_its_grants() {
    let w = world().await;
    let usher = &w.usher;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let ops = bearer(&w, "ops", OPS_SECRET).await;
    let http = reqwest::Client::new();

    let browser = Browser::new();
    let t = sign_in(
        usher,
        &browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
    let res = http
        .post(usher.url("/admin/v1/users/u_alice/reset-totp"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        refresh(usher, "thrift", Some(SECRET), &t.refresh).await,
        Err("invalid_grant".into())
    );
    assert!(usher.store.sessions_of("u_alice").await.unwrap().is_empty());

    // A password an administrator sets is a reset: every grant goes.
    let browser = Browser::new();
    let t = sign_in(
        usher,
        &browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
    let patch = |op: serde_json::Value| {
        http.patch(usher.url("/scim/v2/Users/u_alice"))
            .bearer_auth(&ops)
            .header("content-type", "application/scim+json")
            .body(
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [op],
                })
                .to_string(),
            )
            .send()
    };
    let res = patch(
        serde_json::json!({ "op": "replace", "path": "password", "value": "wonderland-rabbit" }),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        refresh(usher, "thrift", Some(SECRET), &t.refresh).await,
        Err("invalid_grant".into())
    );

    let browser = Browser::new();
    let t = sign_in(
        usher,
        &browser,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
    let res = http
        .patch(usher.url("/scim/v2/Users/u_alice"))
        .bearer_auth(&ops)
        .header("content-type", "application/scim+json")
        .body(
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": "active", "value": false }],
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let grant = usher
        .store
        .grant(&grant_of(&t.access))
        .await
        .unwrap()
        .unwrap();
    assert!(grant.revoked, "disabling revokes, not only refuses");
}

/// The handle of the first session on a My Account page that is not this browser's.
fn other_session(page: &Page) -> String {
    page.body
        .split("name=\"session\" value=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .find(|h| {
            let at = page.body.find(h.as_str()).unwrap();
            !page.body[..at]
                .rsplit("Signed in ")
                .next()
                .unwrap()
                .contains("(this browser)")
        })
        .expect("another session is listed")
}

#[tokio::test]
async fn my_account_lists_each_sessions_apps_and_offline_access_and_revokes_either() {
    let w = world().await;
    let usher = &w.usher;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let phone = Browser::new();
    let online = sign_in(usher, &phone, "thrift", Some(SECRET), "openid").await;
    let offline = sign_in(
        usher,
        &phone,
        "thrift",
        Some(SECRET),
        "openid offline_access",
    )
    .await;
    let laptop = Browser::new();
    let page = my_account_password(&w, &laptop, "alice", "wonderland-rabbit").await;
    let (online_g, offline_g) = (grant_of(&online.access), grant_of(&offline.access));
    for g in [&online_g, &offline_g] {
        assert!(
            page.body.contains(&format!("name=\"grant\" value=\"{g}\"")),
            "{page:?}"
        );
    }
    assert!(page.body.contains("offline access"), "{page:?}");

    // Revoke one app's grant.
    let revoke = |page: Page, grant: String| {
        let laptop = &laptop;
        let usher = &w.usher;
        async move {
            let res = laptop
                .post(
                    &usher.url("/myaccount/grants/revoke"),
                    &[("csrf", &page.csrf()), ("grant", &grant)],
                )
                .await;
            assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
            follow_all(laptop, res).await.unwrap()
        }
    };
    let page = revoke(page, online_g.clone()).await;
    assert!(
        page.body.contains("Thrift can no longer use your account"),
        "{page:?}"
    );
    assert!(!page.body.contains(&online_g));
    assert_eq!(
        refresh(usher, "thrift", Some(SECRET), &online.refresh).await,
        Err("invalid_grant".into())
    );
    // Revoking it again changes nothing.
    let page = revoke(page, online_g.clone()).await;
    assert!(page.body.contains("already ended"), "{page:?}");

    // Ending the phone's session leaves the offline grant, now listed on its own.
    let handle = other_session(&page);
    let res = laptop
        .post(
            &usher.url("/myaccount/sessions/end"),
            &[("csrf", &page.csrf()), ("session", &handle)],
        )
        .await;
    let page = follow_all(&laptop, res).await.unwrap();
    assert!(
        page.body.contains("That session was signed out"),
        "{page:?}"
    );
    assert!(page.body.contains("Apps with offline access"), "{page:?}");
    assert!(page.body.contains(&offline_g));
    let offline_r = refresh(usher, "thrift", Some(SECRET), &offline.refresh)
        .await
        .expect("offline access outlives the session");
    let page = revoke(page, offline_g.clone()).await;
    assert!(!page.body.contains("Apps with offline access"), "{page:?}");
    assert_eq!(
        refresh(usher, "thrift", Some(SECRET), &offline_r).await,
        Err("invalid_grant".into())
    );
    let kinds = kinds_for(&w, "u_alice").await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "account.grant_revoked")
            .count(),
        2,
        "{kinds:?}"
    );
}
