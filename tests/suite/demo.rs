//! The demo (`usher demo`) started in-process on free ports: Thrift, Usher and both
//! stand-ins (each with its ready users) answer, and a GitHub (pass-through) sign-in
//! driven over plain HTTP reaches Thrift's claims page without creating an account. The
//! browser walk-through is in `e2e/`; this keeps the demo covered by `cargo test` on a
//! machine with only Rust.

use std::path::Path;

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use url::Url;
use usher::tools::demo::{self, DemoOptions};

struct Page {
    status: StatusCode,
    url: Url,
    location: Option<String>,
    body: String,
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn read(res: reqwest::Response) -> Page {
    let status = res.status();
    let url = res.url().clone();
    let location = res
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let body = res.text().await.unwrap();
    Page {
        status,
        url,
        location,
        body,
    }
}

/// Follow redirects (across hosts, as a browser does) until a page is shown.
async fn follow(http: &reqwest::Client, mut page: Page) -> Page {
    for _ in 0..15 {
        let Some(loc) = page
            .location
            .clone()
            .filter(|_| page.status.is_redirection())
        else {
            return page;
        };
        let next = page.url.join(&loc).unwrap();
        page = read(http.get(next).send().await.unwrap()).await;
    }
    panic!("too many redirects");
}

/// Undo the HTML escaping of an attribute value (minijinja also escapes `/`).
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `value` of the input named `name`.
fn input(body: &str, name: &str) -> String {
    let at = body
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name} in:\n{body}"));
    let tag_start = body[..at].rfind('<').unwrap();
    let tag = &body[tag_start..at + body[at..].find('>').unwrap()];
    let v = tag.find("value=\"").unwrap() + 7;
    unescape(&tag[v..v + tag[v..].find('"').unwrap()])
}

/// The `action` of the first form whose action contains `needle`.
fn action(body: &str, needle: &str) -> String {
    body.match_indices("action=\"")
        .map(|(i, _)| {
            let rest = &body[i + 8..];
            unescape(&rest[..rest.find('"').unwrap()])
        })
        .find(|a| a.contains(needle))
        .unwrap_or_else(|| panic!("no form posting to {needle} in:\n{body}"))
}

#[tokio::test]
async fn the_demo_serves_thrift_usher_and_the_stand_ins_and_github_passes_through() {
    let data = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/thrift");
    let mut options = DemoOptions::ephemeral(config);
    options.data = Some(data.path().to_path_buf());
    let demo = demo::start(options).await.expect("the demo starts");
    let http = browser();

    // Thrift's home page, and the banner that points at it.
    let home = read(http.get(demo.thrift_url.clone()).send().await.unwrap()).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("<title>Thrift</title>"), "{}", home.body);
    assert!(home.body.contains("href=\"/signin\""));
    let banner = demo.banner();
    assert!(banner.contains(demo.thrift_url.as_str()), "{banner}");
    assert!(banner.contains(demo::LOCAL_PASSWORD), "{banner}");
    // Every ready user of the stand-ins is named, so a newcomer knows whom to pick.
    for user in demo::GOOGLE_USERS.iter().chain(&demo::GITHUB_USERS) {
        assert!(banner.contains(user.name), "{banner}");
    }
    for user in &demo::GITHUB_USERS {
        assert!(
            banner.contains(user.login) && banner.contains(user.id),
            "{banner}"
        );
    }
    let outbox = demo
        .outbox
        .clone()
        .expect("the example writes mail to an outbox");
    assert!(outbox.starts_with(data.path()), "{}", outbox.display());
    assert!(banner.contains(&outbox.display().to_string()), "{banner}");

    // Usher's discovery names the issuer the demo chose, and a logout endpoint.
    let discovery: serde_json::Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            demo.usher_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], demo.usher_url.as_str());
    assert!(discovery["end_session_endpoint"].is_string());

    // Both stand-ins answer.
    let google: serde_json::Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            demo.google.issuer()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(google["issuer"], demo.google.issuer().as_str());
    let github_user = http
        .get(demo.github.userinfo_url())
        .header("user-agent", "usher-demo-test")
        .send()
        .await
        .unwrap();
    assert_eq!(github_user.status(), StatusCode::UNAUTHORIZED);

    // Thrift → Usher's chooser.
    let start = read(
        http.get(demo.thrift_url.join("signin").unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let chooser = follow(&http, start).await;
    assert_eq!(chooser.status, StatusCode::OK);
    assert!(chooser.url.as_str().starts_with(&demo.usher_url));
    assert!(
        chooser.body.contains("value=\"github\""),
        "{}",
        chooser.body
    );
    // Google and GitHub each get their own badge, not the same initial.
    assert!(chooser.body.contains("connection-mark-google"));
    assert!(chooser.body.contains("connection-mark-github"));
    let pick = chooser.url.join(&action(&chooser.body, "/pick")).unwrap();
    let csrf = input(&chooser.body, "csrf");
    let res = read(
        http.post(pick)
            .form(&[("csrf", csrf.as_str()), ("option", "github")])
            .send()
            .await
            .unwrap(),
    )
    .await;

    // → the GitHub stand-in's consent page → Authorize.
    let consent = follow(&http, res).await;
    assert!(consent.url.as_str().starts_with(&demo.github.base_url));
    assert!(
        consent.body.contains("Authorize Thrift"),
        "{}",
        consent.body
    );
    // The stand-in offers both of its ready users.
    for user in &demo::GITHUB_USERS {
        assert!(consent.body.contains(user.email), "{}", consent.body);
    }
    let request = input(&consent.body, "request");
    let authorize = consent
        .url
        .join(&action(&consent.body, "/login/oauth/authorize"))
        .unwrap();
    let res = read(
        http.post(authorize)
            .form(&[
                ("request", request.as_str()),
                ("user", demo::GITHUB_USER_ID),
                ("decision", "authorize"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;

    // → Usher's callback → Thrift's callback → the claims page, with no step 2.
    let me = follow(&http, res).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(
        me.url.as_str(),
        demo.thrift_url.join("me").unwrap().as_str()
    );
    assert!(
        me.body.contains("data-claim=\"sub\">github|583231<"),
        "{}",
        me.body
    );
    assert!(me
        .body
        .contains("data-claim=\"preferred_username\">octocat<"));
    assert!(me.body.contains("No account in Usher"));
    assert!(me.body.contains("id=\"accounts-total\">1<"));
    // Only the demo's password user is in the store: GitHub created no account.
    let store = demo.usher.state.store.clone();
    assert_eq!(store.user_count().await.unwrap(), 1);
    assert!(store
        .find_user(demo::LOCAL_USERNAME)
        .await
        .unwrap()
        .is_some());

    demo.stop().await;
}

#[tokio::test]
async fn the_switches_change_the_loaded_config() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/thrift");
    let mut options = DemoOptions::ephemeral(config);
    options.script = false;
    options.github_jit = true;
    let demo = demo::start(options).await.expect("the demo starts");
    let data_dir = demo.data_dir.clone();
    let config = demo.usher.state.config();
    let thrift = &config.apps[demo::APP];
    assert!(
        thrift.sign_in.script.is_none(),
        "--no-script drops the script"
    );
    assert!(config.connections["github"].jit.provision);
    assert_eq!(
        thrift.logo.as_deref(),
        Some(demo.thrift_url.join("logo.svg").unwrap().as_str())
    );
    assert!(
        thrift.redirect_uris[0]
            .as_str()
            .starts_with(demo.thrift_url.as_str()),
        "the redirect URI follows Thrift's port"
    );
    let admin = &config.apps[demo::ADMIN_CLIENT];
    assert!(admin
        .client_secret
        .as_ref()
        .unwrap()
        .matches(&demo.admin_secret));
    assert!(!admin.allows(usher::config::GrantType::AuthorizationCode));
    let banner = demo.banner();
    assert!(banner.contains("--no-script") && banner.contains("--github-jit"));
    assert!(
        banner.contains(&demo.admin_secret),
        "the admin CLI command is printed"
    );
    assert!(data_dir.exists());
    demo.stop().await;
    assert!(!data_dir.exists(), "the temporary data folder is removed");
}
