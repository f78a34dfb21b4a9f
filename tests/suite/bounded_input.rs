//! Bounded input over real HTTP: the attacks that once crashed or bloated a running
//! Usher — a SCIM filter nested thousands deep, PATCH bodies with endless operations,
//! megabyte-sized SCIM values, `state` and `login_hint` values of tens of kilobytes, and
//! sign-in and sign-up forms carrying a megabyte username — are refused with the
//! protocol's own error, and refused requests leave nothing in the store.

use std::path::Path;

use crate::accounts_world::*;
use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use usher::store::{AuditStore, FlowStore, Store, UserStore};

const SCIM: &str = "application/scim+json";

async fn scim(
    w: &World,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, w.usher.url(&format!("/scim/v2{path}")))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", SCIM).body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn filter_path(filter: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/Users?filter={encoded}")
}

#[tokio::test]
async fn a_filter_nested_three_thousand_deep_is_refused_and_the_server_keeps_serving() {
    let w = world().await;
    let token = bearer(&w, "ops", OPS_SECRET).await;
    let deep = format!("{}userName eq \"a\"{}", "(".repeat(3000), ")".repeat(3000));
    let (status, body) = scim(&w, &token, reqwest::Method::GET, &filter_path(&deep), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["scimType"], "invalidFilter", "{body}");

    // Deep but short enough for the length cap: the depth cap answers.
    let nested = format!("{}userName eq \"a\"{}", "(".repeat(40), ")".repeat(40));
    let (status, body) = scim(
        &w,
        &token,
        reqwest::Method::GET,
        &filter_path(&nested),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["scimType"], "invalidFilter");
    assert!(body["detail"].as_str().unwrap().contains("deep"), "{body}");

    // The same server still answers a sensible filter.
    let (status, body) = scim(
        &w,
        &token,
        reqwest::Method::GET,
        &filter_path("userName eq \"nobody\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 0);
}

#[tokio::test]
async fn a_filter_longer_than_the_cap_is_refused_before_parsing() {
    let w = world().await;
    let token = bearer(&w, "ops", OPS_SECRET).await;
    let long = format!("userName eq \"{}\"", "a".repeat(3000));
    let (status, body) = scim(&w, &token, reqwest::Method::GET, &filter_path(&long), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["scimType"], "invalidFilter");
    assert!(body["detail"].as_str().unwrap().contains("long"), "{body}");
}

#[tokio::test]
async fn scim_writes_with_oversized_values_or_endless_operations_are_refused() {
    let w = world().await;
    let token = bearer(&w, "ops", OPS_SECRET).await;
    let users_before = w.usher.store.user_count().await.unwrap();
    let big = "x".repeat(100_000);
    let base = || {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bounded",
            "emails": [{ "value": "bounded@example.com", "primary": true }],
        })
    };
    for (field, value) in [
        ("userName", json!(big)),
        ("externalId", json!(big)),
        ("displayName", json!(big)),
        ("name", json!({ "givenName": big })),
        ("name", json!({ "familyName": big })),
        (
            "emails",
            json!([{ "value": format!("{big}@example.com"), "primary": true }]),
        ),
        ("roles", json!([{ "value": big }])),
        ("password", json!(big)),
    ] {
        let mut body = base();
        body[field] = value;
        let (status, answer) = scim(&w, &token, reqwest::Method::POST, "/Users", Some(body)).await;
        // The answer is not printed: it would echo the 100 KB value.
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(answer["scimType"], "invalidValue", "{field}");
    }
    assert_eq!(w.usher.store.user_count().await.unwrap(), users_before);

    let (status, created) = scim(&w, &token, reqwest::Method::POST, "/Users", Some(base())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    let ops: Vec<Value> = (0..101)
        .map(|i| json!({ "op": "add", "path": "roles", "value": [{ "value": format!("r{i}") }] }))
        .collect();
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    });
    let (status, answer) = scim(&w, &token, reqwest::Method::PATCH, &path, Some(patch)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["scimType"], "invalidValue", "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("100"),
        "{answer}"
    );
    let (_, now) = scim(&w, &token, reqwest::Method::GET, &path, None).await;
    assert!(now.get("roles").is_none(), "nothing was applied: {now}");
}

fn authorize_url(usher: &Usher, pairs: &[(String, String)]) -> String {
    let mut url = url::Url::parse(&usher.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.to_string()
}

const CHALLENGE: &str = "lI9T0z6eLk2H_VJB9Ep8R_IMoy6HLovf5cqZVO4lNYo";

fn good() -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", "thrift"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The good request with `name` set to `value`.
fn with(name: &str, value: String) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = good().into_iter().filter(|(k, _)| k != name).collect();
    pairs.push((name.to_string(), value));
    pairs
}

#[tokio::test]
async fn each_authorization_parameter_over_its_cap_is_an_invalid_request() {
    let usher = Usher::default().await;
    let browser = Browser::new();
    for (name, len) in [
        ("state", 2049),
        ("nonce", 513),
        ("login_hint", 257),
        ("acr_values", 513),
        ("scope", 1025),
        ("code_challenge", 129),
        ("ui_locales", 4097),
    ] {
        let value = match name {
            "scope" => format!("openid {}", "e".repeat(len)),
            _ => "a".repeat(len),
        };
        let page = browser
            .get(&authorize_url(&usher, &with(name, value)))
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{name}: {page:?}");
        let loc = url::Url::parse(page.headers["location"].to_str().unwrap()).unwrap();
        assert!(loc.as_str().starts_with(REDIRECT), "{name}: {loc}");
        let q = query(&loc);
        assert_eq!(q["error"], "invalid_request", "{name}");
        assert!(q["error_description"].contains(name), "{name}: {q:?}");
        // An oversized state is not echoed back; a short one is.
        if name == "state" {
            assert!(!q.contains_key("state"), "{q:?}");
        } else {
            assert_eq!(q["state"], "st");
        }
    }
    // Too many parameters.
    let mut many = good();
    many.extend((0..40).map(|i| (format!("extra{i}"), "1".to_string())));
    let page = browser.get(&authorize_url(&usher, &many)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:?}");
    let q = query(&url::Url::parse(page.headers["location"].to_str().unwrap()).unwrap());
    assert_eq!(q["error"], "invalid_request");
    // An unverifiable redirect URI (over its cap) gets the error page, never a redirect.
    let long_redirect = format!("{REDIRECT}?{}", "a".repeat(2100));
    let page = browser
        .get(&authorize_url(&usher, &with("redirect_uri", long_redirect)))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get("location").is_none());
    assert_eq!(
        usher.store.flow_count().await.unwrap(),
        0,
        "nothing was started"
    );
}

#[tokio::test]
async fn token_parameters_over_their_caps_are_invalid_requests() {
    let usher = Usher::default().await;
    let call = |form: Vec<(String, String)>| {
        let req = reqwest::Client::new()
            .post(usher.url("/token"))
            .basic_auth("thrift", Some(SECRET))
            .form(&form);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let pair = |k: &str, v: String| (k.to_string(), v);
    for form in [
        vec![
            pair("grant_type", "authorization_code".into()),
            pair("code", "c".repeat(5000)),
        ],
        vec![
            pair("grant_type", "authorization_code".into()),
            pair("code", "abc".into()),
            pair("code_verifier", "v".repeat(129)),
        ],
        (0..40)
            .map(|i| pair(&format!("p{i}"), "1".into()))
            .collect(),
    ] {
        let (status, body) = call(form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
}

/// Every file under `dir`, in bytes.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// The limit within which refused requests may grow the store: sled's own bookkeeping
/// and the one genuine sign-in the form posts need (about 4 KB measured), below the
/// smallest oversized value sent (the 60 KB state). Before the caps the same requests
/// grew it by about 310 MiB: 100 flows holding the state and hint, plus the counters,
/// audit events and flow fields holding the 1 MiB username.
const STORE_GROWTH_BOUND: u64 = 32 * 1024;

#[tokio::test]
async fn refused_oversized_sign_ins_leave_the_store_as_it_was() {
    let usher = Usher::default().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    usher.store.flush().await.unwrap();
    let data = usher.dir.path().join("data");
    let size_before = dir_size(&data);
    let events_before = usher.store.events(0, 10_000).await.unwrap().len();

    // 100 authorization requests with a 60 KB state and a 1 MiB login_hint.
    let mut form = with("state", "s".repeat(60 * 1024));
    form.push(("login_hint".into(), "h".repeat(1024 * 1024)));
    let mut authorize_answers = Vec::new();
    for _ in 0..100 {
        let res = http
            .post(usher.url("/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        authorize_answers.push((res.status(), location));
    }
    let flows_after_authorize = usher.store.flow_count().await.unwrap();

    // One genuine sign-in, then form posts with a 1 MiB username and a 1 MiB password,
    // and a sign-up with a 1 MiB email.
    let browser = Browser::new();
    let page = browser
        .follow(&usher, browser.get(&authorize_url(&usher, &good())).await)
        .await
        .expect("the password form");
    let action = usher.url_of(&page.form_action(Some("password")));
    // A mebibyte is refused by the form body limit (413) before any handler runs;
    // 8 KiB fits the body limit and is refused by the field caps, with a notice.
    let huge = "u".repeat(1024 * 1024);
    let large = "u".repeat(8 * 1024);
    let mut form_answers = Vec::new();
    for (username, password) in [
        (huge.as_str(), "whatever-password"),
        ("alice", huge.as_str()),
        (large.as_str(), "whatever-password"),
        ("alice", large.as_str()),
    ] {
        // Five of each: twenty posts stay under the per-address sign-in throttle, which
        // is not what this test is about.
        for _ in 0..5 {
            let res = browser
                .post(
                    &action,
                    &[
                        ("csrf", &page.csrf()),
                        ("username", username),
                        ("password", password),
                    ],
                )
                .await;
            form_answers.push(res.status);
        }
    }
    let again = browser.get(&page.url).await;
    let signup_url = html_unescape(&again.body)
        .split("href=\"")
        .find(|s| s.starts_with("/signup/"))
        .map(|link| usher.url(&link[..link.find('"').unwrap()]));
    let mut signed_up = None;
    if let Some(signup_url) = signup_url {
        let form = browser.get(&signup_url).await;
        let res = browser
            .post(
                &usher.url_of(&form.form_action(Some("email"))),
                &[
                    ("csrf", &form.csrf()),
                    ("email", &format!("{large}@example.com")),
                    ("password", "a-long-enough-secret"),
                    ("password_confirm", "a-long-enough-secret"),
                ],
            )
            .await;
        signed_up = Some(browser.follow(&usher, res).await);
    }

    // Measured before anything is asserted, so the figure shows even where it fails.
    usher.store.flush().await.unwrap();
    let grown = dir_size(&data).saturating_sub(size_before);
    let events = usher.store.events(0, 10_000).await.unwrap();
    eprintln!(
        "store grew by {grown} bytes; {} new audit event(s); {flows_after_authorize} flow(s) \
         after the authorize requests, {} in all",
        events.len() - events_before,
        usher.store.flow_count().await.unwrap()
    );

    for (status, location) in authorize_answers {
        // Refused either here (a redirect with invalid_request) or, once a body limit
        // stands in front, by the transport; never a sign-in started.
        if status == StatusCode::SEE_OTHER {
            let q = query(&url::Url::parse(&location.unwrap()).unwrap());
            assert_eq!(q["error"], "invalid_request", "{q:?}");
            assert!(!q.contains_key("state"), "the 60 KB state is not echoed");
        } else {
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
    assert_eq!(flows_after_authorize, 0);
    for status in form_answers {
        assert!(
            status == StatusCode::SEE_OTHER || status == StatusCode::PAYLOAD_TOO_LARGE,
            "{status}"
        );
    }
    assert!(again.body.contains("too long"), "{again:?}");
    let shown = signed_up.expect("sign-up offered").expect("the form again");
    assert!(shown.body.contains("too long"), "{shown:?}");
    assert_eq!(usher.store.user_count().await.unwrap(), 0);
    assert_eq!(events.len(), events_before, "refusals are not audited");
    assert_eq!(
        usher.store.flow_count().await.unwrap(),
        1,
        "only the genuine one"
    );
    assert!(
        grown < STORE_GROWTH_BOUND,
        "the store grew by {grown} bytes"
    );
}
