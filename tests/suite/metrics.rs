//! `/metrics`: off by default, what it counts after real sign-ins (password, federated
//! with JIT, a refused one, token grants), and its separate listener setting.

use crate::common::*;
use reqwest::StatusCode;
use usher::tools::standin::{Kind, Standin, StandinConfig, StandinUser};

async fn scrape(usher: &Usher) -> (StatusCode, String, String) {
    let res = reqwest::get(usher.url("/metrics")).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, res.text().await.unwrap())
}

/// The value of one series in a scrape.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_off_unless_enabled() {
    let usher = Usher::default().await;
    let (status, _, _) = scrape(&usher).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // With a separate address, the main listener does not answer either.
    let config = format!("{BASE_CONFIG}metrics: {{ enabled: true, bind: \"127.0.0.1:0\" }}\n");
    let usher = Usher::start(&config).await;
    let (status, _, _) = scrape(&usher).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sign_ins_tokens_and_flows_are_counted() {
    let google = Standin::start(
        StandinConfig::new(Kind::Oidc, "usher-google", "google-secret").with_user(
            StandinUser::new("g-1", "ada", "Ada Lovelace", "ada@example.com"),
        ),
    )
    .await
    .unwrap();
    let config = format!(
        "{BASE_CONFIG}  fed:\n    name: Fed\n    client_id: fed\n    client_secret: fed-secret\n    redirect_uris: [\"{REDIRECT}\"]\n    signing_alg: ES256\n    sign_in:\n      steps: [[google]]\nconnections:\n  google:\n    kind: google\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{}\"\nmetrics:\n  enabled: true\n",
        google.issuer()
    );
    let usher = Usher::start(&config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-1")
        .await;

    // A password sign-in and its code exchange.
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "alice", "wonderland-1").await;
    rp.exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    // A refused one: prompt=none without a session.
    let start = rp.start(&[("prompt", "none")]);
    let fresh = Browser::new();
    let back = fresh
        .follow(&usher, fresh.get(start.url.as_str()).await)
        .await
        .expect_err("sent back to the app");
    assert_eq!(query(&back)["error"], "login_required");
    // A second exchange of nothing: a token error.
    let refused = rp.exchange("not-a-code", start.verifier).await;
    assert_eq!(refused.unwrap_err(), "invalid_grant");
    // A federated first sign-in: JIT creates the account.
    let fed = Rp::discover(&usher, "fed", Some("fed-secret")).await;
    let browser = Browser::new();
    let start = fed.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let res = decide(&browser, &consent, "g-1", "authorize").await;
    let back = follow_all(&browser, res).await.expect_err("signed in");
    fed.exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    // A sign-in started and left.
    let left = Browser::new();
    let start = rp.start(&[]);
    let _ = left.get(start.url.as_str()).await;

    let (status, content_type, text) = scrape(&usher).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let expect = [
        (
            r#"usher_sign_ins_total{app="thrift",connection="local",outcome="success"}"#,
            1.0,
        ),
        (
            r#"usher_sign_ins_total{app="thrift",connection="none",outcome="login_required"}"#,
            1.0,
        ),
        (
            r#"usher_sign_ins_total{app="fed",connection="google",outcome="success"}"#,
            1.0,
        ),
        (
            r#"usher_token_requests_total{grant_type="authorization_code",outcome="ok"}"#,
            2.0,
        ),
        (
            r#"usher_token_requests_total{grant_type="authorization_code",outcome="invalid_grant"}"#,
            1.0,
        ),
        (
            r#"usher_provisioning_total{connection="google",result="created"}"#,
            1.0,
        ),
        (
            r#"usher_upstream_duration_seconds_count{connection="google",phase="finish"}"#,
            1.0,
        ),
        (
            r#"usher_request_duration_seconds_count{route="/login/{flow}/password"}"#,
            1.0,
        ),
        ("usher_flows_active", 1.0),
    ];
    for (series, want) in expect {
        assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(value(&text, "process_resident_memory_bytes").unwrap_or(0.0) > 0.0);
    assert!(value(&text, "usher_request_longest_poll_seconds_count").unwrap_or(0.0) >= 8.0);
    // Nothing a user typed becomes a label.
    assert!(!text.contains("alice"), "{text}");
}

#[test]
fn a_metrics_bind_that_is_not_an_address_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(
        &path,
        "issuer: http://127.0.0.1:9000\nmetrics:\n  enabled: true\n  bind: localhost:9464\n",
    )
    .unwrap();
    let Err(d) = usher::config::load_with_env(&path, &|_| None) else {
        panic!("a host name is not a socket address");
    };
    let text = d.to_string();
    assert!(text.contains("metrics.bind"), "{text}");
    assert!(text.contains("127.0.0.1:9464"), "{text}");
}
