//! Tokens die with the account's credentials and with the user's say: a password
//! change, an administrator's sign-out, TOTP reset, password reset or disabling revoke
//! every grant of the account; My Account lists each session's apps and the offline
//! ones, and revokes either.

use reqwest::StatusCode;
use serde_json::Value;
use usher::store::{SessionStore, TokenStore};

use crate::accounts_world::*;
use crate::common::*;
use crate::revocation::{online_and_offline, refresh, sign_in, userinfo_status};

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
    let (online, offline) = online_and_offline(usher, &phone).await;
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
    let (online, offline) = online_and_offline(usher, &phone).await;
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
