//! `usher serve --record`: real sign-ins over HTTP (password with TOTP enrolment, Google
//! with JIT, GitHub pass-through, Deny) are written as fixtures, and `usher test`
//! replays every recorded file green, unedited.

use crate::common::*;

/// A new browser at the upstream's consent page, having picked `option` at step 1.
async fn to_consent(usher: &Usher, rp: &Rp, option: &str) -> (Browser, Page) {
    let browser = Browser::new();
    let chooser = browser
        .follow(usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .expect("the chooser");
    let res = pick_raw(usher, &browser, &chooser, option).await;
    let consent = follow_all(&browser, res).await.expect("the consent page");
    (browser, consent)
}

#[tokio::test]
async fn recorded_sign_ins_replay_green() {
    let (google, github) = standins().await;
    let dir = tempfile::tempdir().unwrap();
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies/mfa-only-with-account.rhai"),
    )
    .unwrap();
    std::fs::write(dir.path().join("mfa.rhai"), script).unwrap();
    let connections = connections_yaml(&google, &github, "");
    let config = format!(
        r#"
issuer: "{{issuer}}"
{connections}apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password, google, github]
        # No codes by email: the accounts have no second factor yet, so each sets up
        # an authenticator while signing in.
        - [totp, recovery_code]
      script: mfa.rhai
"#
    );
    let config_path = dir.path().join("usher.yaml");
    let usher = Usher::start_in(dir, &config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let recorded = tempfile::tempdir().unwrap();
    usher.running.state.record_to(recorded.path().to_path_buf());
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;

    // 1. A local user: a wrong password, the right one, then TOTP enrolment.
    let browser = Browser::new();
    let chooser = browser
        .follow(&usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    let page = pick(&usher, &browser, &chooser, "password").await;
    let page = browser
        .submit_password(&usher, &page, "alice", "not-her-password")
        .await
        .unwrap();
    let chooser = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    let enrol = pick(&usher, &browser, &chooser, "totp").await;
    let (alice_secret, done) = enrol_totp(&usher, &browser, &enrol).await;
    assert!(done.is_err(), "alice signed in");
    let code = usher::authn::totp::code_at(&alice_secret, usher.clock.now());

    // 2. Google, first time: an account is provisioned; the script asks for step 2.
    let (browser, consent) = to_consent(&usher, &rp, "google").await;
    let step2 = follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .unwrap();
    let enrol = pick(&usher, &browser, &step2, "totp").await;
    assert!(
        enrol_totp(&usher, &browser, &enrol).await.1.is_err(),
        "ada signed in"
    );

    // 3. GitHub: passed through, one step.
    let (browser, consent) = to_consent(&usher, &rp, "github").await;
    assert!(follow_all(
        &browser,
        decide(&browser, &consent, "583231", "authorize").await
    )
    .await
    .is_err());

    // 4. Deny at GitHub.
    let (browser, consent) = to_consent(&usher, &rp, "github").await;
    let back = follow_all(&browser, decide(&browser, &consent, "", "deny").await)
        .await
        .unwrap_err();
    assert_eq!(query(&back)["error"], "access_denied");

    let files: Vec<_> = std::fs::read_dir(recorded.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        4,
        "one fixture per finished sign-in: {files:?}"
    );
    let all = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert!(
        !all.contains("wonderland-rabbit") && !all.contains("not-her-password"),
        "no password is written"
    );
    assert!(!all.contains(&code), "no code is written");
    assert!(
        all.contains("password: invalid") && all.contains("password: valid"),
        "{all}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .arg("test")
        .arg("--config")
        .arg(&config_path)
        .arg(recorded.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{all}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l == "4 passed, 0 failed"),
        "{stdout}"
    );
}
