//! What a browser, a proxy and the machine's other users get to keep: pages (the TOTP
//! secret and recovery codes among them) are never cached, an https issuer sends HSTS
//! and a plain-http one never does, oversized bodies are refused 413 in the route's
//! style before anything is stored, and the data folder is private: created 0700, and
//! an open one refused at start-up unless `store.sled.allow_open_permissions` says so.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, STRICT_TRANSPORT_SECURITY};
use reqwest::StatusCode;
use usher::store::{Store, UserStore};

const TWO_STEP: &str = r#"
issuer: "{issuer}"
apps:
  bank:
    name: Bank
    client_id: bank
    client_secret: bank-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
        - [totp]
"#;

fn no_store(page: &Page) -> bool {
    page.headers
        .get(CACHE_CONTROL)
        .is_some_and(|v| v == "no-store")
}

#[tokio::test]
async fn pages_with_the_totp_secret_and_recovery_codes_are_never_stored() {
    let usher = Usher::start(TWO_STEP).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "bank", Some("bank-secret")).await;
    let browser = Browser::new();
    let login = browser
        .follow(&usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    assert!(no_store(&login), "the sign-in page: {:?}", login.headers);
    let enrol = browser
        .submit_password(&usher, &login, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(
        enrol.body.contains("Set up your authenticator app"),
        "{enrol:?}"
    );
    assert!(no_store(&enrol), "the TOTP secret: {:?}", enrol.headers);
    let secret = totp_secret(&enrol);
    let code = usher::authn::totp::code_at(&secret, usher.clock.now());
    let res = browser
        .post(
            &usher.url_of(&enrol.form_action(Some("code"))),
            &[("csrf", &enrol.csrf()), ("code", &code)],
        )
        .await;
    let codes = browser.follow(&usher, res).await.unwrap();
    assert!(codes.body.contains("Save your recovery codes"), "{codes:?}");
    assert!(no_store(&codes), "the recovery codes: {:?}", codes.headers);

    // Error pages too; the stylesheet stays cacheable.
    let lost = browser.get(&usher.url("/login/no-such-flow")).await;
    assert!(lost.headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(no_store(&lost), "{:?}", lost.headers);
    let css = browser.get(&usher.url("/assets/usher.css")).await;
    assert_eq!(css.headers[CACHE_CONTROL], "public, max-age=3600");
}

#[tokio::test]
async fn an_https_issuer_sends_hsts_and_a_plain_http_one_never_does() {
    let plain = Usher::default().await;
    let browser = Browser::new();
    for path in ["/healthz", "/.well-known/openid-configuration"] {
        let page = browser.get(&plain.url(path)).await;
        assert!(
            !page.headers.contains_key(STRICT_TRANSPORT_SECURITY),
            "{path}: {:?}",
            page.headers
        );
    }
    // The issuer is what the world sees (TLS ends at the proxy in front of Usher).
    let https =
        Usher::start(&BASE_CONFIG.replace("\"{issuer}\"", "https://login.example.com")).await;
    for path in ["/healthz", "/.well-known/openid-configuration", "/login/x"] {
        let page = browser.get(&https.url(path)).await;
        assert_eq!(
            page.headers[STRICT_TRANSPORT_SECURITY], "max-age=31536000",
            "{path}"
        );
    }
}

/// Bytes in the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                size_of(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[tokio::test]
async fn a_megabyte_posted_to_the_password_form_is_refused_413_and_nothing_is_stored() {
    let usher = Usher::default().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let login = browser
        .follow(&usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    usher.store.flush().await.unwrap();
    let data = usher.dir.path().join("data");
    let before = size_of(&data);
    let users = usher.store.user_count().await.unwrap();

    let huge = "x".repeat(1024 * 1024);
    let res = browser
        .post(
            &usher.url_of(&login.form_action(Some("password"))),
            &[
                ("csrf", &login.csrf()),
                ("username", &huge),
                ("password", "wonderland-rabbit"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{res:?}");
    assert!(res.body.contains("This request is too large"), "{res:?}");
    usher.store.flush().await.unwrap();
    let after = size_of(&data);
    assert!(
        after < before + 256 * 1024,
        "the store grew from {before} to {after} bytes"
    );
    assert_eq!(usher.store.user_count().await.unwrap(), users);
    // The form still works at its ordinary size.
    assert!(browser
        .submit_password(&usher, &login, "alice", "wonderland-rabbit")
        .await
        .is_err());
}

#[tokio::test]
async fn json_apis_take_larger_bodies_and_every_refusal_speaks_its_routes_language() {
    let usher = Usher::default().await;
    let http = reqwest::Client::new();
    // 100 KiB: over the form limit, under SCIM's. It reaches SCIM, which wants a token.
    let medium = format!("{{\"userName\":\"{}\"}}", "x".repeat(100 * 1024));
    let res = http
        .post(usher.url("/scim/v2/Users"))
        .header(CONTENT_TYPE, "application/scim+json")
        .body(medium)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // 300 KiB: over SCIM's limit, refused as a SCIM error document.
    let large = format!("{{\"userName\":\"{}\"}}", "x".repeat(300 * 1024));
    let res = http
        .post(usher.url("/scim/v2/Users"))
        .header(CONTENT_TYPE, "application/scim+json")
        .body(large)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/scim+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "413", "{body}");
    // The token endpoint takes forms: 64 KiB is refused as OAuth JSON.
    let res = http
        .post(usher.url("/token"))
        .form(&[("grant_type", "x".repeat(64 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A config file in `dir` whose store lives in `dir/data`.
fn config_in(dir: &Path, extra_sled: &str) -> usher::config::Config {
    let path = dir.join("usher.yaml");
    std::fs::write(
        &path,
        format!("issuer: http://localhost:9000\nstore:\n  sled:\n    path: ./data\n{extra_sled}"),
    )
    .unwrap();
    usher::config::load_with_env(&path, &|_| None)
        .unwrap()
        .config
}

#[tokio::test]
async fn the_data_folder_is_created_private_and_an_open_one_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), "");
    let data = dir.path().join("data");
    let state = tokio::task::spawn_blocking(move || usher::server::open_state(config))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(mode(&data), 0o700, "created for the owner alone");
    assert_eq!(mode(&data.join("credentials.key")), 0o600);
    drop(state);

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = config_in(dir.path(), "");
    let refused = tokio::task::spawn_blocking(move || usher::server::open_state(config))
        .await
        .unwrap()
        .await
        .err()
        .expect("an open data folder is refused")
        .to_string();
    assert!(refused.contains(&data.display().to_string()), "{refused}");
    assert!(
        refused.contains(&format!("chmod 700 {}", data.display())),
        "{refused}"
    );

    // The key file is checked too.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = data.join("credentials.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = config_in(dir.path(), "");
    let refused = tokio::task::spawn_blocking(move || usher::server::open_state(config))
        .await
        .unwrap()
        .await
        .err()
        .expect("a key file others can read is refused")
        .to_string();
    assert!(
        refused.contains(&format!("chmod 600 {}", key.display())),
        "{refused}"
    );
}

#[tokio::test]
async fn allow_open_permissions_starts_with_an_open_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    let config = config_in(dir.path(), "    allow_open_permissions: true\n");
    let state = tokio::task::spawn_blocking(move || usher::server::open_state(config))
        .await
        .unwrap()
        .await;
    assert!(state.is_ok(), "{:?}", state.err());
    assert_eq!(
        mode(&data),
        0o750,
        "the folder is left as the operator set it"
    );
}
