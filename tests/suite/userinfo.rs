//! OIDC connections that read the provider's userinfo endpoint after the code exchange,
//! over real HTTP against the OIDC stand-in: a provider that sends the profile only from
//! userinfo, issuers with a trailing slash, and every way a userinfo answer can be bad
//! (someone else's `sub`, megabytes, HTML, a JWT, no answer at all).

use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use usher::store::{IdentityStore, UserStore};
use usher::tools::standin::{Faults, Kind, Standin, StandinConfig, StandinUser, UserinfoFault};

/// Grace, a user whose email the provider does not share: her username has to come from
/// `preferred_username`.
fn grace() -> StandinUser {
    let mut user = StandinUser::new("g-1002", "grace", "Grace Hopper", "unused@example.com");
    user.extra_claims.insert("email".into(), json!(null));
    user.extra_claims
        .insert("email_verified".into(), json!(null));
    user
}

async fn provider(config: StandinConfig) -> Standin {
    Standin::start(config.with_user(ada()).with_user(grace()))
        .await
        .unwrap()
}

/// Usher with one connection `corp` (kind oidc) at `idp`, with `settings` added to it,
/// and the app `thrift` whose only step is that connection.
async fn usher_for(idp: &Standin, settings: &str) -> Usher {
    let config = format!(
        r#"
issuer: "{{issuer}}"
connections:
  corp:
    kind: oidc
    display_name: Corp
    client_id: usher-corp
    client_secret: corp-secret
    issuer: "{}"
{settings}
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [corp]
"#,
        idp.issuer()
    );
    Usher::start(&config).await
}

/// Sign in as `user` at the provider; the app's callback URL, or the page Usher stopped
/// at.
async fn sign_in(rp: &Rp, user: &str) -> (Result<Page, url::Url>, AuthStart) {
    let browser = Browser::new();
    let start = rp.start(&[]);
    // The only option of the only step: straight to the provider's consent page.
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .expect("the provider's consent page");
    assert!(consent.body.contains("name=\"decision\""), "{consent:?}");
    let back = follow_all(
        &browser,
        decide(&browser, &consent, user, "authorize").await,
    )
    .await;
    (back, start)
}

fn standin_config() -> StandinConfig {
    StandinConfig::new(Kind::Oidc, "usher-corp", "corp-secret")
}

#[tokio::test]
async fn a_provider_that_sends_the_profile_only_from_userinfo_makes_a_complete_account() {
    let idp = provider(standin_config().profile_in_userinfo_only()).await;
    let usher = usher_for(&idp, "").await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;

    // First sign-in: the account is made from userinfo's profile.
    let (back, start) = sign_in(&rp, "g-1001").await;
    let claims = rp.claims(&back.expect_err("signed in"), start).await;
    let user_id = usher
        .store
        .identity("corp", "g-1001")
        .await
        .unwrap()
        .expect("an account linked to the upstream subject");
    let user = usher.store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(user.email.as_deref(), Some("ada@example.com"));
    assert!(user.email_verified);
    assert_eq!(user.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        user.username, "ada@example.com",
        "the username is the email"
    );
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["name"], "Ada Lovelace");

    // A returning sign-in reads userinfo again: a rename upstream reaches the account.
    let mut renamed = ada();
    renamed.name = "Augusta Ada King".into();
    idp.set_user(renamed);
    let (back, start) = sign_in(&rp, "g-1001").await;
    let claims = rp.claims(&back.expect_err("signed in again"), start).await;
    assert_eq!(claims["sub"], user_id, "the same account, found again");
    assert_eq!(claims["name"], "Augusta Ada King");
    assert_eq!(usher.store.user_count().await.unwrap(), 1);
    let user = usher.store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(user.name.as_deref(), Some("Augusta Ada King"));

    // Without an email, the username is userinfo's preferred_username.
    let (back, _) = sign_in(&rp, "g-1002").await;
    back.expect_err("signed in");
    let grace_id = usher
        .store
        .identity("corp", "g-1002")
        .await
        .unwrap()
        .unwrap();
    let grace = usher.store.user(&grace_id).await.unwrap().unwrap();
    assert_eq!(grace.username, "grace");
    assert_eq!(grace.name.as_deref(), Some("Grace Hopper"));
    assert_eq!(grace.email, None);
}

#[tokio::test]
async fn userinfo_never_keeps_to_the_id_token() {
    let idp = provider(standin_config().profile_in_userinfo_only()).await;
    let usher = usher_for(&idp, "    userinfo: never\n").await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let (back, start) = sign_in(&rp, "g-1001").await;
    let claims = rp.claims(&back.expect_err("signed in"), start).await;
    assert!(claims.get("email").is_none(), "{claims}");
    let user_id = usher
        .store
        .identity("corp", "g-1001")
        .await
        .unwrap()
        .unwrap();
    let user = usher.store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(
        user.username, "corp-g-1001",
        "nothing but the subject to go on"
    );
}

#[tokio::test]
async fn the_id_token_wins_where_it_and_userinfo_disagree() {
    let idp = provider(standin_config()).await;
    // `given_name` is read from a claim only userinfo sends.
    let usher = usher_for(&idp, "    claims: { given_name: nickname }\n").await;
    let mut ada = ada();
    ada.userinfo_claims
        .insert("name".into(), json!("Someone Else"));
    ada.userinfo_claims
        .insert("nickname".into(), json!("Countess"));
    idp.set_user(ada);
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let (back, start) = sign_in(&rp, "g-1001").await;
    let claims = rp.claims(&back.expect_err("signed in"), start).await;
    assert_eq!(claims["name"], "Ada Lovelace", "the ID token's name");
    let user_id = usher
        .store
        .identity("corp", "g-1001")
        .await
        .unwrap()
        .unwrap();
    let user = usher.store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(user.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        user.given_name.as_deref(),
        Some("Countess"),
        "the connection's mapping applies to userinfo's claims"
    );
}

/// Sign in while the provider's userinfo misbehaves as `fault`: the step fails with a
/// page naming the provider, and no account is made.
async fn refused(idp: &Standin, usher: &Usher, rp: &Rp, fault: UserinfoFault) -> Page {
    idp.set_faults(Faults {
        userinfo: Some(fault),
        ..Faults::default()
    });
    let (back, _) = sign_in(rp, "g-1001").await;
    let page = back.unwrap_or_else(|u| panic!("{fault:?}: must not sign in, went to {u}"));
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{fault:?}");
    assert!(
        page.body.contains("Signing in with Corp failed"),
        "{fault:?}: {page:?}"
    );
    assert_eq!(usher.store.user_count().await.unwrap(), 0, "{fault:?}");
    page
}

#[tokio::test]
async fn a_bad_userinfo_answer_fails_the_step_and_makes_no_account() {
    let idp = provider(standin_config().profile_in_userinfo_only()).await;
    let usher = usher_for(&idp, "").await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    for (fault, says) in [
        (UserinfoFault::WrongSubject, "describes someone else"),
        (UserinfoFault::Huge, "answered more than 65536 bytes"),
        (UserinfoFault::NotJson, "did not answer a JSON object"),
        (UserinfoFault::Jwt, "signed JWT"),
    ] {
        let page = refused(&idp, &usher, &rp, fault).await;
        assert!(
            html_unescape(&page.body).contains(says),
            "{fault:?}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn a_userinfo_endpoint_that_never_answers_fails_the_step_within_seconds() {
    let idp = provider(standin_config().profile_in_userinfo_only()).await;
    let usher = usher_for(&idp, "").await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let started = Instant::now();
    let page = refused(&idp, &usher, &rp, UserinfoFault::Slow).await;
    assert!(html_unescape(&page.body).contains("did not answer within 5 s"));
    assert!(started.elapsed() < Duration::from_secs(20));
    // Meanwhile and after, the server serves everyone else.
    let res = reqwest::get(usher.url("/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_issuer_with_a_trailing_slash_is_used_exactly_as_configured() {
    let mut config = standin_config();
    config.issuer_with_trailing_slash = true;
    let idp = provider(config).await;
    assert!(idp.issuer().ends_with('/'));
    let usher = usher_for(&idp, "").await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let (back, start) = sign_in(&rp, "g-1001").await;
    let claims = rp.claims(&back.expect_err("signed in"), start).await;
    assert_eq!(claims["email"], "ada@example.com");
}

#[tokio::test]
async fn an_issuer_configured_without_the_providers_trailing_slash_is_a_clear_error() {
    let mut config = standin_config();
    config.issuer_with_trailing_slash = true;
    let idp = provider(config).await;
    let dir = tempfile::tempdir().unwrap();
    let without = idp.issuer().trim_end_matches('/').to_string();
    let yaml = format!(
        r#"
issuer: http://127.0.0.1:9
listen: 127.0.0.1:0
store: {{ sled: {{ path: ./data }} }}
connections:
  corp:
    kind: oidc
    client_id: usher-corp
    client_secret: corp-secret
    issuer: "{without}"
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [corp]
"#
    );
    std::fs::write(dir.path().join("usher.yaml"), yaml).unwrap();
    let path = dir.path().join("usher.yaml");
    let out = usher_command(&["check", "--config"], &path).await;
    assert!(!out.0, "{}", out.1);
    assert!(
        out.1.contains(&format!("names the issuer `{without}/`"))
            && out
                .1
                .contains(&format!("the configuration says `{without}`")),
        "both issuers shown: {}",
        out.1
    );
    assert!(!out.1.contains("error: error:"), "{}", out.1);
    // `--offline` does not look.
    let out = usher_command(&["check", "--offline", "--config"], &path).await;
    assert!(out.0, "{}", out.1);
    // And the server refuses to start with it.
    let out = usher_command(&["serve", "--config"], &path).await;
    assert!(!out.0, "{}", out.1);
    assert!(out.1.contains("names the issuer"), "{}", out.1);
}

/// Run the `usher` binary with `args` and `config`, off the runtime (the stand-in must
/// keep answering); whether it succeeded, and its stderr. Killed after 30 s.
async fn usher_command(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(args)
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("usher {args:?} did not finish");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stderr)
}

#[tokio::test]
async fn a_reload_that_changes_the_issuer_uses_the_new_providers_discovery_at_once() {
    let old = provider(standin_config()).await;
    let new = provider(standin_config()).await;
    let usher = usher_for(&old, "").await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let (back, _) = sign_in(&rp, "g-1001").await;
    back.expect_err("signed in through the old provider");

    let path = usher.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&old.issuer(), &new.issuer());
    std::fs::write(&path, text).unwrap();
    assert!(usher::server::reload(&usher.running.state, &path));

    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    assert!(
        consent.url.starts_with(&new.base_url),
        "sent to the new provider, not a cached old one: {}",
        consent.url
    );
}
