//! Groups and roles at sign-in: the sample policy asks members of `admins` (and only
//! them) for step 2, scripts see `ctx.user.groups` and `ctx.user.roles` with the roles
//! groups give, and the ID token and userinfo carry `groups` and `roles` when the app
//! asked for the scope and allows it, filtered to the groups the app may see.

use openidconnect::{OAuth2TokenResponse, TokenResponse};
use serde_json::{json, Value};
use usher::store::{Group, GroupStore};

use crate::common::*;

fn config(dir: &std::path::Path) -> String {
    let policy = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/mfa-for-admins.rhai"),
    )
    .unwrap();
    std::fs::write(dir.join("admins.rhai"), policy).unwrap();
    std::fs::write(
        dir.join("claims.rhai"),
        r#"
let first = execute_step(1);
set_claim("seen_groups", first.user.groups);
set_claim("seen_roles", ctx.user.roles);
set_claim("is_auditor", ctx.user.has_any_role(["AUDITOR", "nobody"]));
set_claim("in_ops", ctx.user.in_any_group(["ops"]));
"#,
    )
    .unwrap();
    r#"
issuer: "{issuer}"
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    groups_claim: ["adm*", "staff"]
    roles_claim: true
    sign_in:
      steps:
        - [password]
        - [totp]
      script: admins.rhai
  other:
    name: Other
    client_id: other
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
      script: claims.rhai
"#
    .to_string()
}

async fn start() -> Usher {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path());
    let usher = Usher::start_in(dir, &text).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    usher
        .add_user("bob", "bob@example.com", "builder-of-things")
        .await;
    for (id, name, members, roles) in [
        ("g_1", "admins", vec!["u_alice"], vec!["auditor"]),
        ("g_2", "staff", vec!["u_alice", "u_bob"], vec![]),
        ("g_3", "secret-project", vec!["u_alice"], vec![]),
    ] {
        usher
            .store
            .create_group(&Group {
                connection: Default::default(),
                synced: Default::default(),
                id: id.into(),
                display_name: name.into(),
                external_id: None,
                members: members.into_iter().map(String::from).collect(),
                roles: roles.into_iter().map(String::from).collect(),
                created_at: 1,
                updated_at: 1,
            })
            .await
            .unwrap();
    }
    usher
}

/// The start of a sign-in asking for `scope` instead of the usual scopes.
fn with_scope(start: &mut AuthStart, scope: &str) {
    let pairs: Vec<(String, String)> = start
        .url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "scope" {
                scope.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    start.url.query_pairs_mut().clear().extend_pairs(pairs);
}

#[tokio::test]
async fn members_of_admins_are_asked_for_step_two_and_others_are_not() {
    let usher = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    // Bob is in `staff` only: step 1 is the whole sign-in.
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "bob", "builder-of-things").await;
    assert!(query(&back).contains_key("code"), "{back}");
    // Alice is in `admins`: after her password, the second step's page.
    let browser = Browser::new();
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let next = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .expect("a second step, not a redirect to the app");
    assert!(
        next.body.to_lowercase().contains("authenticator"),
        "{}",
        next.body
    );
}

#[tokio::test]
async fn tokens_carry_the_groups_the_app_may_see_and_the_roles_groups_give() {
    let usher = start().await;
    let rp = Rp::discover(&usher, "other", Some(SECRET)).await;
    // The scripts see every group and role, by any app.
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(&usher, &browser, &start, "alice", "wonderland-rabbit").await;
    let claims = rp.claims(&back, start).await;
    assert_eq!(
        claims["seen_groups"],
        json!(["admins", "staff", "secret-project"])
    );
    assert_eq!(claims["seen_roles"], json!(["auditor"]));
    assert_eq!(claims["is_auditor"], true);
    assert_eq!(claims["in_ops"], false);
    // `other` allows neither claim: asking for the scopes releases nothing.
    let mut start = rp.start(&[]);
    with_scope(&mut start, "openid groups roles");
    let back = password_login(&usher, &Browser::new(), &start, "bob", "builder-of-things").await;
    let claims = rp.claims(&back, start).await;
    assert!(
        claims.get("groups").is_none() && claims.get("roles").is_none(),
        "{claims}"
    );

    // Thrift allows both, and only `adm*` and `staff` groups. Bob skips step 2.
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let mut start = rp.start(&[]);
    with_scope(&mut start, "openid groups");
    let back = password_login(&usher, &Browser::new(), &start, "bob", "builder-of-things").await;
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["groups"], json!(["staff"]));
    assert!(claims.get("roles").is_none(), "no roles scope: {claims}");
    let mut start = rp.start(&[]);
    with_scope(&mut start, "openid groups roles");
    let back = password_login(&usher, &Browser::new(), &start, "bob", "builder-of-things").await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    let id = decode_payload(&tokens.id_token().unwrap().to_string());
    assert_eq!(id["groups"], json!(["staff"]));
    assert_eq!(id["roles"], json!([]));
    // Userinfo reads them afresh: bob joins `admins`, which gives `auditor`.
    let admins = usher.store.group("g_1").await.unwrap().unwrap();
    let mut g = admins.value.clone();
    g.members.push("u_bob".into());
    usher.store.swap_group(&g, admins.version).await.unwrap();
    let info: Value = reqwest::Client::new()
        .get(usher.url("/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["groups"], json!(["admins", "staff"]), "{info}");
    assert_eq!(info["roles"], json!(["auditor"]), "{info}");
}

/// A Google stand-in whose users (`id`, `login`, `groups` claim) carry groups.
async fn google_with_groups(users: &[(&str, &str, Value)]) -> usher::tools::standin::Standin {
    use usher::tools::standin::{Kind, Standin, StandinConfig, StandinUser};
    let mut config = StandinConfig::new(Kind::Oidc, "usher-google", "google-secret");
    for (id, login, groups) in users {
        let mut u = StandinUser::new(id, login, login, &format!("{login}@example.com"));
        u.extra_claims.insert("groups".into(), groups.clone());
        config = config.with_user(u);
    }
    Standin::start(config).await.unwrap()
}

/// A config folder holding the sample policy `mfa-for-admins.rhai` as `admins.rhai`.
fn with_admins_policy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/mfa-for-admins.rhai"),
    )
    .unwrap();
    std::fs::write(dir.path().join("admins.rhai"), policy).unwrap();
    dir
}

/// Through a Google stand-in whose ID token carries a `groups` claim, mapped with
/// `claims: { groups: groups }`: the upstream user in `admins` is asked for step 2 and
/// the one in `staff` is not — and an account in Usher's own `admins` group is too.
#[tokio::test]
async fn an_upstream_user_in_admins_is_asked_for_step_two_and_others_are_not() {
    let google = google_with_groups(&[
        ("g-1", "ada", json!(["staff", "admins"])),
        ("g-2", "grace", json!(["staff"])),
        ("g-3", "linus", json!([])),
    ])
    .await;
    let dir = with_admins_policy();
    let config = format!(
        r#"
issuer: "{{issuer}}"
connections:
  google:
    kind: google
    client_id: usher-google
    client_secret: google-secret
    issuer: "{}"
    claims: {{ groups: groups }}
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [google]
        - [totp]
      script: admins.rhai
"#,
        google.issuer()
    );
    let usher = Usher::start_in(dir, &config).await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    // Sign in through Google as `who`; where the sign-in goes after the upstream.
    let sign_in = |who: &'static str| {
        let (usher, rp) = (&usher, &rp);
        async move {
            let browser = Browser::new();
            let start = rp.start(&[]);
            let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
                .await
                .expect("the upstream's consent page");
            let res = decide(&browser, &consent, who, "authorize").await;
            let _ = usher;
            follow_all(&browser, res).await
        }
    };
    let asked = |r: &Result<Page, url::Url>| matches!(r, Ok(p) if p.body.to_lowercase().contains("authenticator"));
    let ada = sign_in("g-1").await;
    assert!(asked(&ada), "ada is in admins upstream: {ada:?}");
    let grace = sign_in("g-2").await;
    assert!(
        matches!(&grace, Err(back) if query(back).contains_key("code")),
        "grace is in staff only: {grace:?}"
    );
    // Linus's upstream names no group, but his account joins Usher's own `admins`.
    let linus = sign_in("g-3").await;
    assert!(linus.is_err(), "{linus:?}");
    let id = usher::store::IdentityStore::identity(usher.store.as_ref(), "google", "g-3")
        .await
        .unwrap()
        .unwrap();
    // Ada's sign-in made the connection's `admins` group; an administrator adds Linus
    // to it by hand, and his own sign-ins (his upstream names no group) keep him in.
    let admins = usher.store.find_group("Admins").await.unwrap().unwrap();
    assert_eq!(admins.value.connection.as_deref(), Some("google"));
    let mut by_hand = admins.value.clone();
    by_hand.members.push(id);
    let written = usher
        .store
        .swap_group(&by_hand, admins.version)
        .await
        .unwrap();
    assert_eq!(written, usher::store::GroupWrite::Written);
    assert!(
        asked(&sign_in("g-3").await),
        "linus is in Usher's admins now"
    );
    assert!(
        asked(&sign_in("g-3").await),
        "a sign-in does not take out a member added by hand"
    );
}

/// A sign-in the SSO session satisfies sees the groups the upstream asserted when the
/// session was made: signed in through Google to an app that asks nothing more, an
/// upstream `admins` user opening an app whose policy asks admins for step 2 is not
/// let through on the session alone (here a subject without an account, whose
/// upstream names live nowhere but in the session).
#[tokio::test]
async fn a_sign_in_the_session_satisfies_keeps_the_upstreams_groups() {
    let google = google_with_groups(&[("g-1", "ada", json!(["staff", "admins"]))]).await;
    let dir = with_admins_policy();
    let config = format!(
        r#"
issuer: "{{issuer}}"
connections:
  google:
    kind: google
    client_id: usher-google
    client_secret: google-secret
    issuer: "{}"
    claims: {{ groups: groups }}
    jit: {{ provision: false }}
apps:
  wiki:
    name: Wiki
    client_id: wiki
    client_secret: wiki-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [google]
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [google]
        - [totp]
      script: admins.rhai
"#,
        google.issuer()
    );
    let usher = Usher::start_in(dir, &config).await;
    let wiki = Rp::discover(&usher, "wiki", Some("wiki-secret")).await;
    let thrift = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = wiki.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .expect("the upstream's consent page");
    let back = follow_all(
        &browser,
        decide(&browser, &consent, "g-1", "authorize").await,
    )
    .await
    .expect_err("the wiki asks nothing more");
    assert!(query(&back).contains_key("code"), "{back}");
    // Thrift: step 1 is the session's; its policy sees `admins` and asks for step 2,
    // which a subject without an account cannot pass. Not a code on the session alone.
    let start = thrift.start(&[]);
    let thrift_says = follow_all(&browser, browser.get(start.url.as_str()).await).await;
    assert!(
        !matches!(&thrift_says, Err(back) if query(back).contains_key("code")),
        "an upstream admin got past step 2 on the session alone: {thrift_says:?}"
    );
}
