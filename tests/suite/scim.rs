//! SCIM 2.0 and the admin API over real HTTP: `client_credentials` tokens, 401 and
//! 403, create, filter, paging, PATCH, PUT with ETags, deactivation (and that the
//! account then cannot sign in), delete, the discovery documents, federated links on
//! the user, and the audit trail of every write.

use crate::accounts_world::*;
use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use usher::store::{AuditStore, IdentityStore, SessionStore, UserStore};

const SCIM: &str = "application/scim+json";

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn new(w: &World, client_id: &str, secret: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: w.usher.url("/scim/v2"),
            token: bearer(w, client_id, secret).await,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", SCIM).body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, b) = self.send(reqwest::Method::GET, path, None, &[]).await;
        (s, b)
    }

    async fn filter(&self, filter: &str) -> Vec<String> {
        let url = format!(
            "/Users?filter={}",
            url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
        );
        let (s, b) = self.get(&url).await;
        assert_eq!(s, StatusCode::OK, "{filter}: {b}");
        let mut names: Vec<String> = b["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    async fn create(&self, body: Value) -> Value {
        let (s, h, b) = self
            .send(reqwest::Method::POST, "/Users", Some(body), &[])
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(h["content-type"], SCIM);
        assert_eq!(
            h["location"].to_str().unwrap(),
            b["meta"]["location"].as_str().unwrap()
        );
        assert_eq!(
            h["etag"].to_str().unwrap(),
            b["meta"]["version"].as_str().unwrap()
        );
        b
    }
}

fn user(name: &str, email: &str, external: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "externalId": external,
        "name": { "givenName": name, "familyName": "Example" },
        "emails": [{ "value": email, "primary": true }],
    })
}

#[tokio::test]
async fn client_credentials_tokens_are_short_lived_api_tokens() {
    let w = world().await;
    let t = token(&w, "ops", OPS_SECRET).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "scim audit");
    assert_eq!(t["expires_in"], 600);
    assert!(
        t.get("refresh_token").is_none() && t.get("id_token").is_none(),
        "{t}"
    );
    let jwt = t["access_token"].as_str().unwrap();
    let header = decode_payload(&format!("x.{}", jwt.split('.').next().unwrap()));
    assert_eq!(header["typ"], "at+jwt");
    let claims = decode_payload(jwt);
    assert_eq!(claims["sub"], "ops");
    assert_eq!(claims["client_id"], "ops");
    assert_eq!(claims["aud"], format!("{}/scim/v2", w.usher.issuer));
    // A narrower scope on request; one not granted is refused.
    let http = reqwest::Client::new();
    let ask = |scope: &'static str| {
        http.post(w.usher.url("/token"))
            .basic_auth("ops", Some(OPS_SECRET))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
    };
    let narrow: Value = ask("audit").await.unwrap().json().await.unwrap();
    assert_eq!(narrow["scope"], "audit");
    let res = ask("scim openid").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");
    // An app that signs users in may not use the grant, and a service client may not
    // sign users in.
    let res = http
        .post(w.usher.url("/token"))
        .basic_auth("thrift", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    let res = http
        .post(w.usher.url("/token"))
        .basic_auth("ops", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let page =
        Browser::new()
            .get(&w.usher.url(
                "/authorize?client_id=ops&response_type=code&scope=openid&redirect_uri=http://x/",
            ))
            .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("service client"), "{page:?}");
    let discovery: Value = http
        .get(w.usher.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(discovery["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == "client_credentials"));
}

#[tokio::test]
async fn no_token_is_401_and_a_token_without_scim_is_403() {
    let w = world().await;
    let http = reqwest::Client::new();
    let res = http
        .get(w.usher.url("/scim/v2/Users"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(body["status"], "401");
    let res = http
        .get(w.usher.url("/scim/v2/Users"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let auditor = Api::new(&w, "auditor", AUDITOR_SECRET).await;
    let (status, headers, body) = auditor
        .send(
            reqwest::Method::POST,
            "/Users",
            Some(user("eve", "eve@example.com", "x")),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    assert_eq!(body["status"], "403");
    assert_eq!(w.usher.store.user_count().await.unwrap(), 0);
    // The same token may read the audit trail, and the admin TOTP reset needs scim.
    let res = http
        .get(w.usher.url("/admin/v1/events"))
        .bearer_auth(&auditor.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = http
        .post(w.usher.url("/admin/v1/users/u_x/reset-totp"))
        .bearer_auth(&auditor.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A user's own access token (from signing in to an app) is no admin token.
    w.usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let start = rp.start(&[]);
    let back = thrift_password(&w, &Browser::new(), &start, "alice", "wonderland-rabbit")
        .await
        .expect_err("signed in");
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    use openidconnect::OAuth2TokenResponse;
    let res = http
        .get(w.usher.url("/scim/v2/Users"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn create_filter_page_patch_replace_deactivate_and_delete() {
    let w = world().await;
    let api = Api::new(&w, "ops", OPS_SECRET).await;
    let grace = api
        .create(user("grace", "grace@navy.example", "HR-1"))
        .await;
    let gid = grace["id"].as_str().unwrap().to_string();
    assert_eq!(grace["active"], true);
    assert_eq!(grace["emails"][0]["value"], "grace@navy.example");
    assert_eq!(
        grace["urn:usher:params:scim:schemas:extension:2.0:User"]["hasPassword"],
        false
    );
    for (name, email, ext) in [
        ("alan", "alan@example.com", "HR-2"),
        ("ada", "ada@analytical.example", "HR-3"),
    ] {
        api.create(user(name, email, ext)).await;
    }
    // A taken userName is a conflict.
    let (s, _, b) = api
        .send(
            reqwest::Method::POST,
            "/Users",
            Some(user("GRACE", "other@example.com", "HR-9")),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["scimType"], "uniqueness");

    // Filters.
    assert_eq!(api.filter("userName eq \"Grace\"").await, ["grace"]);
    assert_eq!(api.filter("userName sw \"a\"").await, ["ada", "alan"]);
    assert_eq!(
        api.filter("emails.value co \"example.com\"").await,
        ["alan"]
    );
    assert_eq!(api.filter("externalId eq \"HR-3\"").await, ["ada"]);
    assert!(
        api.filter("externalId eq \"hr-3\"").await.is_empty(),
        "externalId is case-exact"
    );
    assert_eq!(
        api.filter("userName eq \"ada\" or externalId eq \"HR-1\"")
            .await,
        ["ada", "grace"]
    );
    assert_eq!(
        api.filter("userName sw \"a\" and not (emails.value ew \".com\")")
            .await,
        ["ada"]
    );
    let (s, b) = api.get("/Users?filter=userName%20like%20%22a%22").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["scimType"], "invalidFilter");
    // Paging, in a stable order.
    let (_, all) = api.get("/Users").await;
    let (_, page) = api.get("/Users?startIndex=2&count=1").await;
    assert_eq!(page["totalResults"], 3);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 1);
    assert_eq!(page["Resources"][0]["id"], all["Resources"][1]["id"]);
    let (_, none) = api.get("/Users?count=0").await;
    assert_eq!(none["totalResults"], 3);
    assert_eq!(none["Resources"], json!([]));

    // PATCH with the current ETag; a stale one is refused.
    let etag = grace["meta"]["version"].as_str().unwrap().to_string();
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            { "op": "replace", "path": "name.familyName", "value": "Hopper" },
            { "op": "add", "path": "roles", "value": [{ "value": "admiral" }] },
        ],
    });
    let (s, h, patched) = api
        .send(
            reqwest::Method::PATCH,
            &format!("/Users/{gid}"),
            Some(patch.clone()),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"]["familyName"], "Hopper");
    assert_eq!(patched["roles"][0]["value"], "admiral");
    assert_ne!(h["etag"].to_str().unwrap(), etag);
    let (s, _, b) = api
        .send(
            reqwest::Method::PATCH,
            &format!("/Users/{gid}"),
            Some(patch),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
    let (s, _, _) = api
        .send(
            reqwest::Method::GET,
            &format!("/Users/{gid}"),
            None,
            &[("if-none-match", h["etag"].to_str().unwrap())],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);

    // PATCH remove takes an attribute away.
    let (s, _, removed) = api
        .send(
            reqwest::Method::PATCH,
            &format!("/Users/{gid}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "remove", "path": "roles" }],
            })),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{removed}");
    assert!(removed.get("roles").is_none(), "{removed}");
    assert_eq!(removed["name"]["familyName"], "Hopper", "the rest stays");

    // PUT replaces: what the body leaves out is gone.
    let (s, _, replaced) = api
        .send(
            reqwest::Method::PUT,
            &format!("/Users/{gid}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "grace",
                "displayName": "Rear Admiral Grace Hopper",
                "emails": [{ "value": "grace@navy.example" }],
            })),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["displayName"], "Rear Admiral Grace Hopper");
    assert!(
        replaced.get("externalId").is_none() && replaced.get("roles").is_none(),
        "{replaced}"
    );

    // Delete: 204, then 404.
    let (alan_status, alan) = api.get("/Users?filter=userName%20eq%20%22alan%22").await;
    assert_eq!(alan_status, StatusCode::OK);
    let aid = alan["Resources"][0]["id"].as_str().unwrap().to_string();
    let (s, _, _) = api
        .send(reqwest::Method::DELETE, &format!("/Users/{aid}"), None, &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = api.get(&format!("/Users/{aid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["status"], "404");
    assert!(w.usher.store.find_user("alan").await.unwrap().is_none());

    // Every write is in the audit trail, named after the client.
    let admin: Vec<(String, String)> = w
        .usher
        .store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.starts_with("admin."))
        .map(|e| (e.kind, e.app.unwrap_or_default()))
        .collect();
    let kinds: Vec<&str> = admin.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "admin.user_created").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "admin.user_updated").count(),
        3,
        "two PATCHes and a PUT; the refused PATCH changed nothing: {kinds:?}"
    );
    assert!(kinds.contains(&"admin.user_deleted"));
    assert!(admin.iter().all(|(_, app)| app == "ops"));
    // And the admin API lists them, filtered.
    let events: Value = reqwest::Client::new()
        .get(
            w.usher
                .url(&format!("/admin/v1/events?kind=admin&user={gid}")),
        )
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "admin.user_created",
            "admin.user_updated",
            "admin.user_updated",
            "admin.user_updated"
        ]
    );
}

#[tokio::test]
async fn a_deactivated_account_cannot_sign_in() {
    let w = world().await;
    let api = Api::new(&w, "ops", OPS_SECRET).await;
    let mut body = user("grace", "grace@navy.example", "HR-1");
    body["password"] = json!("short");
    let (s, _, b) = api
        .send(reqwest::Method::POST, "/Users", Some(body.clone()), &[])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the password policy applies");
    assert_eq!(b["scimType"], "invalidValue");
    body["password"] = json!("cobol-forever-1959");
    let grace = api.create(body).await;
    let gid = grace["id"].as_str().unwrap().to_string();
    // Grace signs in to Thrift with the password the admin set.
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = thrift_password(&w, &browser, &start, "grace", "cobol-forever-1959").await;
    assert!(query(&back.expect_err("signed in")).contains_key("code"));
    assert_eq!(w.usher.store.sessions_of(&gid).await.unwrap().len(), 1);

    // Deactivated: her session ends, and neither SSO nor the password lets her in.
    let (s, _, b) = api
        .send(
            reqwest::Method::PATCH,
            &format!("/Users/{gid}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "value": { "active": false } }],
            })),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["active"], false);
    assert!(w.usher.store.user(&gid).await.unwrap().unwrap().disabled);
    assert!(
        w.usher.store.sessions_of(&gid).await.unwrap().is_empty(),
        "her sessions ended"
    );
    let start = rp.start(&[]);
    let page = browser
        .follow(&w.usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    assert!(
        page.body.contains("name=\"option\""),
        "asked to sign in again: {page:?}"
    );
    let refused = thrift_password(&w, &Browser::new(), &start, "grace", "cobol-forever-1959")
        .await
        .expect("a page, not a code");
    assert!(
        refused.body.contains("This account is disabled"),
        "{refused:?}"
    );
    // Reactivated, she can.
    let (s, _, _) = api
        .send(
            reqwest::Method::PATCH,
            &format!("/Users/{gid}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": "active", "value": true }],
            })),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let start = rp.start(&[]);
    let back = thrift_password(&w, &Browser::new(), &start, "grace", "cobol-forever-1959").await;
    assert!(query(&back.expect_err("signed in again")).contains_key("code"));
    let kinds = kinds_for(&w, &gid).await;
    assert!(
        kinds.iter().any(|k| k == "admin.user_disabled"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "admin.user_enabled"), "{kinds:?}");
}

#[tokio::test]
async fn federated_links_show_on_the_user_and_discovery_is_public() {
    let w = world().await;
    let browser = Browser::new();
    my_account_via(&w, &browser, "google", "g-1001").await;
    let uid = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .unwrap();
    let api = Api::new(&w, "ops", OPS_SECRET).await;
    let (s, u) = api.get(&format!("/Users/{uid}")).await;
    assert_eq!(s, StatusCode::OK);
    let ext = &u["urn:usher:params:scim:schemas:extension:2.0:User"];
    assert_eq!(
        ext["identities"],
        json!([{ "connection": "google", "subject": "g-1001" }])
    );
    assert_eq!(
        api.filter(
            "urn:usher:params:scim:schemas:extension:2.0:User:identities.subject eq \"g-1001\""
        )
        .await,
        ["ada@example.com"]
    );
    assert!(u["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "urn:usher:params:scim:schemas:extension:2.0:User"));
    let http = reqwest::Client::new();
    let spc: Value = http
        .get(w.usher.url("/scim/v2/ServiceProviderConfig"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let types: Value = http
        .get(w.usher.url("/scim/v2/ResourceTypes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        types["Resources"][0]["schemaExtensions"][0]["schema"],
        "urn:usher:params:scim:schemas:extension:2.0:User"
    );
    let schemas: Value = http
        .get(w.usher.url("/scim/v2/Schemas"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // User and Group, each with Usher's extension.
    assert_eq!(schemas["totalResults"], 4);
    let res = http
        .get(
            w.usher
                .url("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
