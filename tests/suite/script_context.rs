//! What a script sees of the request and the user beyond the steps: allow-listed
//! request headers (never credentials), the user's other live sessions and groups —
//! over real HTTP, with the values reaching the app as claims the script set.

use crate::common::*;
use reqwest::header::{HeaderMap, HeaderValue};

const CONTEXT_SCRIPT: &str = r#"
let first = execute_step(1);
let h = ctx.request.headers;
set_claim("device", h["x-device-id"]);
set_claim("seen_headers", h.keys());
set_claim("other_sessions", first.user.sessions.len());
if first.user.sessions.len() > 0 {
    set_claim("other_apps", first.user.sessions[0].apps);
    set_claim("other_since", first.user.sessions[0].started_at);
}
set_claim("groups", first.user.groups);
"#;

/// Thrift plain; `kiosk` with the context script and an allow-list of headers; the
/// tests' loopback address a trusted proxy when `proxied`.
async fn start(proxied: bool) -> Usher {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("context.rhai"), CONTEXT_SCRIPT).unwrap();
    let config = format!(
        "{BASE_CONFIG}  kiosk:
    name: Kiosk
    client_id: kiosk
    client_secret: kiosk-secret
    redirect_uris: [\"http://127.0.0.1:1/callback\"]
    sign_in:
      steps:
        - [password]
      script: context.rhai
      request_headers: [X-Device-Id, x-long]
{proxy}",
        proxy = if proxied {
            "server:\n  trusted_proxies: [\"127.0.0.0/8\"]\n"
        } else {
            ""
        }
    );
    Usher::start_in(dir, &config).await
}

fn browser_with(headers: &[(&'static str, String)]) -> Browser {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    Browser {
        http: Browser::builder().default_headers(map).build().unwrap(),
    }
}

#[tokio::test]
async fn a_script_sees_allowed_headers_and_the_users_other_sessions() {
    let usher = start(true).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let thrift = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let kiosk = Rp::discover(&usher, "kiosk", Some("kiosk-secret")).await;

    // Alice is signed in to Thrift on her laptop.
    let laptop = Browser::new();
    let start = thrift.start(&[]);
    password_login(&usher, &laptop, &start, "alice", "wonderland-rabbit").await;
    let signed_in_at = usher.clock.now();

    // Then at a kiosk, whose proxy sets a device id; the browser also sends a cookie,
    // credentials and an oversized allowed header.
    let kiosk_browser = browser_with(&[
        ("x-device-id", "kiosk-7".into()),
        ("authorization", "Bearer secret-token".into()),
        ("x-long", "x".repeat(2000)),
        ("x-not-listed", "nope".into()),
    ]);
    let start = kiosk.start(&[]);
    let back = password_login(&usher, &kiosk_browser, &start, "alice", "wonderland-rabbit").await;
    let claims = kiosk.claims(&back, start).await;
    assert_eq!(
        claims["device"], "kiosk-7",
        "names are matched case-insensitively"
    );
    assert_eq!(
        claims["seen_headers"],
        serde_json::json!(["x-device-id"]),
        "only allowed headers, and none over 1 KiB"
    );
    assert_eq!(claims["other_sessions"], 1, "the laptop's session");
    assert_eq!(claims["other_apps"], serde_json::json!(["thrift"]));
    assert_eq!(claims["other_since"], signed_in_at);
    assert_eq!(claims["groups"], serde_json::json!([]));

    // Again at the kiosk: its own session passes the step, and is not one of the
    // user's *other* sessions.
    let start = kiosk.start(&[]);
    let back = kiosk_browser
        .follow(&usher, kiosk_browser.get(start.url.as_str()).await)
        .await
        .expect_err("single sign-on, straight back");
    let claims = kiosk.claims(&back, start).await;
    assert_eq!(claims["other_sessions"], 1, "still only the laptop's");
    assert_eq!(claims["other_apps"], serde_json::json!(["thrift"]));
}

/// Without a trusted proxy in front, every header is the client's own choice: a script
/// that decided on one could be steered by whoever signs in. It sees none.
#[tokio::test]
async fn a_script_sees_no_headers_a_client_sent_directly() {
    let usher = start(false).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let kiosk = Rp::discover(&usher, "kiosk", Some("kiosk-secret")).await;
    let browser = browser_with(&[("x-device-id", "office-laptop".into())]);
    let start = kiosk.start(&[]);
    let back = password_login(&usher, &browser, &start, "alice", "wonderland-rabbit").await;
    let claims = kiosk.claims(&back, start).await;
    assert_eq!(claims["seen_headers"], serde_json::json!([]), "{claims}");
}

#[tokio::test]
async fn credentials_headers_cannot_be_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    let config = format!(
        "{BASE_CONFIG}  kiosk:
    name: Kiosk
    client_id: kiosk
    client_secret: kiosk-secret
    redirect_uris: [\"http://127.0.0.1:1/callback\"]
    sign_in:
      steps: [[password]]
      request_headers: [x-device-id, Authorization]
"
    )
    .replace("{issuer}", "http://127.0.0.1:9");
    std::fs::write(&path, &config).unwrap();
    let errors = usher::config::load_with_env(&path, &|_| None).unwrap_err();
    let e = &errors.0[0];
    let line = config
        .lines()
        .position(|l| l.contains("request_headers"))
        .unwrap()
        + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.column > 0, "{e}");
    assert_eq!(e.path, "apps.kiosk.sign_in.request_headers[1]");
    assert!(
        e.message.contains("scripts never see `authorization`"),
        "{e}"
    );
    // Nor any other name that says it carries a credential.
    for name in [
        "cookie2",
        "x-api-key",
        "x-forwarded-access-token",
        "cf-access-jwt-assertion",
    ] {
        let text = config.replace("Authorization", name);
        std::fs::write(&path, &text).unwrap();
        let errors = usher::config::load_with_env(&path, &|_| None).unwrap_err();
        assert!(
            errors.0[0].message.contains("carries credentials"),
            "{name}: {}",
            errors.0[0]
        );
    }
}
