//! Adaptive scripts driving real sign-ins over HTTP: skipping steps, claims from
//! scripts, `fail()`, a runaway script failing only its own login, and script errors
//! reported when the config loads.

use crate::common::*;
use openidconnect::TokenResponse;
use reqwest::StatusCode;

/// Thrift with a script that adds a claim and refuses one user; `loopy` runs forever.
fn config(dir: &std::path::Path) -> String {
    std::fs::write(
        dir.join("thrift.rhai"),
        r#"
let first = execute_step(1);
if first.user.username == "mallory" {
    fail(#{ error: "access_denied", description: "mallory is not welcome" });
}
let greeting = "signed in with " + first.option;
set_claim("greeting", greeting);
set_claim("tier", #{ level: 3, perks: ["early", "free-shipping"] });
set_claim("seen_from", ctx.request.ip);
set_claim("agent", ctx.request.user_agent);
log("claims set");
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("loop.rhai"),
        "let n = 0;\nwhile true {\n    n += 1;\n}\n",
    )
    .unwrap();
    r#"
issuer: "{issuer}"
security:
  max_password_attempts: 10
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
      script: thrift.rhai
  loopy:
    name: Loopy
    client_id: loopy
    client_secret: loopy-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
      script: loop.rhai
"#
    .to_string()
}

async fn start() -> Usher {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path());
    Usher::start_in(dir, &text).await
}

#[tokio::test]
async fn set_claim_reaches_the_id_token() {
    let usher = start().await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "alice", "wonderland-rabbit").await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    let raw = tokens.id_token().unwrap().to_string();
    let claims = decode_payload(&raw);
    assert_eq!(claims["greeting"], "signed in with password");
    assert_eq!(claims["tier"]["level"], 3);
    assert_eq!(claims["tier"]["perks"][1], "free-shipping");
    assert_eq!(
        claims["seen_from"], "127.0.0.1",
        "the script sees the client's address"
    );
    assert_eq!(claims["agent"], "UsherTestBrowser/1.0");
    // The library still validates the token with the extra claims in it.
    tokens
        .id_token()
        .unwrap()
        .claims(&rp.client.id_token_verifier(), &start.nonce)
        .unwrap();
}

#[tokio::test]
async fn fail_reaches_the_app_as_an_oauth_error() {
    let usher = start().await;
    usher
        .add_user("mallory", "mallory@example.com", "i-am-not-evil")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "mallory", "i-am-not-evil").await;
    let q = query(&back);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["error_description"], "mallory is not welcome");
    assert_eq!(q["state"], *start.state.secret());
    assert!(!q.contains_key("code"));
    // The audit trail says why.
    use usher::store::AuditStore;
    let events = usher.store.events(0, 100).await.unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == "sign_in")
        .expect("an audit event");
    assert_eq!(e.outcome, "access_denied: mallory is not welcome");
    assert!(
        e.detail
            .iter()
            .any(|l| l == "script: fail(): access_denied: mallory is not welcome"),
        "{:?}",
        e.detail
    );
    assert!(
        e.detail
            .iter()
            .any(|l| l.starts_with("step 1: password succeeded")),
        "{:?}",
        e.detail
    );
}

#[tokio::test]
async fn a_runaway_script_fails_its_own_login_while_others_sign_in() {
    let usher = start().await;
    for i in 0..20 {
        usher
            .add_user(
                &format!("user{i}"),
                &format!("user{i}@example.com"),
                "pass-word-123",
            )
            .await;
    }
    let loopy = {
        let rp = Rp::discover(&usher, "loopy", Some("loopy-secret")).await;
        let url = rp.start(&[]).url.to_string();
        let usher_url = usher.issuer.clone();
        tokio::spawn(async move {
            let browser = Browser::new();
            // The script first runs as /authorize turns the request into a flow.
            let page = browser.get(&url).await;
            assert!(page.url.starts_with(&usher_url));
            (page.status, page.body)
        })
    };
    let mut ordinary = Vec::new();
    for i in 0..20 {
        let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
        let usher_issuer = usher.issuer.clone();
        ordinary.push(tokio::spawn(async move {
            let browser = Browser::new();
            let start = rp.start(&[]);
            let first = browser.get(start.url.as_str()).await;
            let loc = first.headers["location"].to_str().unwrap().to_string();
            let page = browser.get(&format!("{usher_issuer}{loc}")).await;
            let action = format!("{usher_issuer}{}", page.form_action(Some("password")));
            let res = browser
                .post(
                    &action,
                    &[
                        ("csrf", &page.csrf()),
                        ("username", &format!("user{i}")),
                        ("password", "pass-word-123"),
                    ],
                )
                .await;
            let loc = res.headers["location"].to_str().unwrap().to_string();
            let page = browser.get(&format!("{usher_issuer}{loc}")).await;
            let back = url::Url::parse(page.headers["location"].to_str().unwrap()).unwrap();
            rp.exchange(&query(&back)["code"], start.verifier)
                .await
                .is_ok()
        }));
    }
    let (status, body) = loopy.await.unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.contains("sign-in policy stopped with an error"),
        "{body}"
    );
    assert!(body.contains("Request ID"));
    assert!(
        !body.contains("ran too long"),
        "the browser is not shown the script's internals: {body}"
    );
    for o in ordinary {
        assert!(o.await.unwrap(), "an ordinary login failed");
    }
    // The admin finds the cause, with the script line of the loop, in the audit trail.
    use usher::store::AuditStore;
    let cause = format!(
        "line 3: the script ran too long (more than {} operations)",
        usher::policy::MAX_OPERATIONS
    );
    let events = usher.store.events(0, 1000).await.unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == "sign_in" && e.app.as_deref() == Some("loopy"))
        .expect("the runaway sign-in is in the audit trail");
    assert_eq!(e.outcome, format!("script_error: {cause}"));
    assert!(
        e.detail.contains(&format!("script error: {cause}")),
        "{:?}",
        e.detail
    );
}

#[tokio::test]
async fn a_script_syntax_error_is_reported_at_load_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.rhai"),
        "let first = execute_step(1);\nif first.user.has_account {\n    execute_step(2));\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("typo.rhai"),
        "let first = execute_step(1);\nexcute_step(2);\n",
    )
    .unwrap();
    let yaml = r#"
issuer: http://localhost:9000
apps:
  a:
    name: A
    client_id: a
    redirect_uris: ["http://localhost/cb"]
    sign_in:
      steps: [[password], [password]]
      script: broken.rhai
  b:
    name: B
    client_id: b
    redirect_uris: ["http://localhost/cb"]
    sign_in:
      steps: [[password], [password]]
      script: typo.rhai
"#;
    std::fs::write(dir.path().join("usher.yaml"), yaml).unwrap();
    let err = usher::config::load_with_env(&dir.path().join("usher.yaml"), &|_| None).unwrap_err();
    let broken = err
        .0
        .iter()
        .find(|d| d.file.ends_with("broken.rhai"))
        .expect("broken.rhai reported");
    // The stray `)` after `execute_step(2)`, line 3, column 20.
    assert_eq!((broken.line, broken.column), (3, 20), "{broken}");
    assert!(broken.message.starts_with("script error"), "{broken}");
    assert!(
        broken
            .to_string()
            .contains("broken.rhai:3:20: script error"),
        "{broken}"
    );
    let typo = err
        .0
        .iter()
        .find(|d| d.file.ends_with("typo.rhai"))
        .unwrap_or_else(|| panic!("typo.rhai reported: {err}"));
    assert_eq!((typo.line, typo.column), (2, 1));
    assert_eq!(typo.suggestion.as_deref(), Some("execute_step"));
    assert!(
        typo.to_string()
            .contains("typo.rhai:2:1: script error: unknown function `excute_step`"),
        "{typo}"
    );
}

#[test]
fn usher_check_refuses_a_ported_policy_that_would_skip_its_step() {
    let dir = tempfile::tempdir().unwrap();
    // The JavaScript spelling of the callback: accepted and ignored, it would let every
    // local user through without step 2.
    std::fs::write(
        dir.path().join("ported.rhai"),
        "fn on_login_request(ctx) {\n    execute_step(1, #{\n        onSuccess: |ctx| {\n            if ctx.steps[1].idp == \"local\" { execute_step(2); }\n        }\n    });\n}\n",
    )
    .unwrap();
    let yaml = "issuer: http://localhost:9000\napps:\n  a:\n    name: A\n    client_id: a\n    redirect_uris: [\"http://localhost/cb\"]\n    sign_in:\n      steps: [[password], [totp]]\n      script: ported.rhai\n";
    std::fs::write(dir.path().join("usher.yaml"), yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(["check", "--config"])
        .arg(dir.path().join("usher.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ported.rhai:3:9: script error: execute_step(1): unknown option `onSuccess`; did you mean `on_success`?"),
        "{stderr}"
    );
    assert!(!stderr.contains("error: error:"), "{stderr}");
}
