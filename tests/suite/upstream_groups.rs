//! Upstream groups and roles through a real round trip to an OIDC stand-in: a
//! connection mapping `groups` and `roles` makes them the account's stored memberships
//! and roles at JIT provisioning, tokens carry them through the app's filter, and a
//! pass-through subject's go through that same filter. A hostile upstream's claim is
//! capped and its unusable names are dropped.

use openidconnect::TokenResponse;
use serde_json::{json, Value};
use usher::store::GroupStore;
use usher::tools::standin::{Kind, Standin, StandinConfig, StandinUser};

use crate::common::*;

fn upstream_user(id: &str, login: &str, groups: Value, roles: Value) -> StandinUser {
    let mut u = StandinUser::new(id, login, login, &format!("{login}@example.com"));
    u.extra_claims.insert("groups".into(), groups);
    u.extra_claims.insert("app_roles".into(), roles);
    u
}

async fn start(users: Vec<StandinUser>, provision: bool) -> (Usher, Standin) {
    let mut standin = StandinConfig::new(Kind::Oidc, "usher-corp", "corp-secret");
    for u in users {
        standin = standin.with_user(u);
    }
    let corp = Standin::start(standin).await.unwrap();
    let config = format!(
        r#"
issuer: "{{issuer}}"
connections:
  corp:
    kind: oidc
    client_id: usher-corp
    client_secret: corp-secret
    issuer: "{}"
    claims: {{ groups: groups, roles: app_roles }}
    jit: {{ provision: {provision} }}
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: {SECRET}
    redirect_uris: ["http://127.0.0.1:1/callback"]
    groups_claim: ["adm*", "team-*"]
    roles_claim: true
    sign_in:
      steps:
        - [corp]
"#,
        corp.issuer()
    );
    (Usher::start(&config).await, corp)
}

/// Sign in through the stand-in as `who` asking for `scope`: the ID token's claims.
async fn id_token(usher: &Usher, who: &str, scope: &str) -> Value {
    let rp = Rp::discover(usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let mut start = rp.start(&[]);
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
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .expect("the upstream's consent page");
    let back = follow_all(&browser, decide(&browser, &consent, who, "authorize").await)
        .await
        .expect_err("back at the app");
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    decode_payload(&tokens.id_token().unwrap().to_string())
}

fn sorted(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = (list.as_array().unwrap().iter())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn upstream_groups_and_roles_become_the_accounts_and_tokens_carry_them() {
    let (usher, _corp) = start(
        vec![upstream_user(
            "c-1",
            "ada",
            json!(["admins", "secret-project", "team-core"]),
            json!(["approver"]),
        )],
        true,
    )
    .await;
    let id = id_token(&usher, "c-1", "openid groups roles").await;
    assert_eq!(sorted(&id["groups"]), ["admins", "team-core"], "{id}");
    assert_eq!(id["roles"], json!(["approver"]), "{id}");
    // Stored: the account is in the three groups the connection made.
    let account = usher::store::IdentityStore::identity(usher.store.as_ref(), "corp", "c-1")
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<String> = usher
        .store
        .memberships(std::slice::from_ref(&account))
        .await
        .unwrap()
        .remove(&account)
        .unwrap()
        .into_iter()
        .map(|m| m.display_name)
        .collect();
    names.sort();
    assert_eq!(names, ["admins", "secret-project", "team-core"]);
    let admins = usher.store.find_group("admins").await.unwrap().unwrap();
    assert_eq!(admins.value.connection.as_deref(), Some("corp"));
    // A second sign-in of the same person changes nothing.
    let again = id_token(&usher, "c-1", "openid groups roles").await;
    assert_eq!(sorted(&again["groups"]), sorted(&id["groups"]));
    let page = usher
        .store
        .query_groups(&usher::store::GroupQuery {
            filter: None,
            start: 0,
            count: 100,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    assert!(page
        .groups
        .iter()
        .all(|g| g.value.members == [account.clone()]));
}

#[tokio::test]
async fn a_pass_through_subjects_groups_go_through_the_apps_filter() {
    let (usher, _corp) = start(
        vec![upstream_user(
            "c-2",
            "grace",
            json!(["admins", "secret-project"]),
            json!(["approver"]),
        )],
        false,
    )
    .await;
    let id = id_token(&usher, "c-2", "openid groups roles").await;
    assert_eq!(id["sub"], "corp|c-2");
    assert_eq!(id["groups"], json!(["admins"]), "{id}");
    assert_eq!(id["roles"], json!(["approver"]), "{id}");
    // Without the scopes, neither claim: the upstream's raw claim is not passed on.
    let id = id_token(&usher, "c-2", "openid").await;
    assert!(
        id.get("groups").is_none() && id.get("roles").is_none(),
        "{id}"
    );
    // Nothing stored for a subject without an account.
    assert!(usher.store.find_group("admins").await.unwrap().is_none());
}

#[tokio::test]
async fn a_hostile_upstreams_groups_are_capped_and_unusable_names_dropped() {
    let mut groups: Vec<Value> = vec![
        json!("admins\u{0}"),
        json!(format!("adm{}", "x".repeat(10 * 1024))),
        json!(["nested"]),
    ];
    // Thousands of names, yet within the 64 KiB a userinfo answer may hold (a larger
    // answer fails the sign-in: `userinfo` tests).
    groups.extend((0..3_000).map(|i| json!(format!("team-{i}"))));
    for provision in [true, false] {
        let (usher, _corp) = start(
            vec![upstream_user(
                "c-3",
                "mallory",
                Value::Array(groups.clone()),
                json!("approver"),
            )],
            provision,
        )
        .await;
        let id = id_token(&usher, "c-3", "openid groups roles").await;
        let got = id["groups"].as_array().unwrap();
        assert_eq!(
            got.len(),
            usher::provision::UPSTREAM_NAMES_MAX,
            "provision {provision}"
        );
        // The first hundred usable names, in whatever order the groups are listed.
        let mut want: Vec<String> = (0..100).map(|i| format!("team-{i}")).collect();
        want.sort();
        assert_eq!(sorted(&id["groups"]), want);
        assert_eq!(id["roles"], json!(["approver"]));
        let page = usher
            .store
            .query_groups(&usher::store::GroupQuery {
                filter: None,
                start: 0,
                count: 1,
            })
            .await
            .unwrap();
        let stored = if provision {
            usher::provision::UPSTREAM_NAMES_MAX
        } else {
            0
        };
        assert_eq!(page.total, stored);
    }
}

/// Usher with a GitHub connection (JIT on) at a stand-in serving `users`, asking for
/// `scopes`.
async fn start_github(users: Vec<StandinUser>, scopes: &str) -> (Usher, Standin) {
    let mut standin = StandinConfig::new(Kind::Github, "usher-github", "github-secret");
    for u in users {
        standin = standin.with_user(u);
    }
    let github = Standin::start(standin).await.unwrap();
    let h = github.base_url.clone();
    let config = format!(
        r#"
issuer: "{{issuer}}"
connections:
  github:
    kind: github
    client_id: usher-github
    client_secret: github-secret
    authorize_url: "{h}/login/oauth/authorize"
    token_url: "{h}/login/oauth/access_token"
    userinfo_url: "{h}/user"
    emails_url: "{h}/user/emails"
    scopes: [{scopes}]
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: {SECRET}
    redirect_uris: ["http://127.0.0.1:1/callback"]
    groups_claim: ["acme/*"]
    sign_in:
      steps:
        - [github]
"#
    );
    (Usher::start(&config).await, github)
}

fn octocat_in(teams: &[(&str, &str)]) -> StandinUser {
    let mut u = octocat();
    u.teams = teams
        .iter()
        .map(|(o, t)| (o.to_string(), t.to_string()))
        .collect();
    u
}

async fn stored_groups(usher: &Usher, connection: &str, subject: &str) -> Vec<String> {
    let account = usher::store::IdentityStore::identity(usher.store.as_ref(), connection, subject)
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<String> = usher
        .store
        .memberships(std::slice::from_ref(&account))
        .await
        .unwrap()
        .remove(&account)
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.display_name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn github_teams_become_groups_when_the_connection_asks_for_read_org() {
    let teams = [
        ("acme", "Platform Team"),
        ("acme", "admins"),
        ("elsewhere", "ops"),
    ];
    let (usher, _github) = start_github(
        vec![octocat_in(&teams)],
        r#""read:user", "user:email", "read:org""#,
    )
    .await;
    let id = id_token(&usher, "583231", "openid groups").await;
    assert_eq!(
        sorted(&id["groups"]),
        ["acme/admins", "acme/platform-team"],
        "{id}"
    );
    assert_eq!(
        stored_groups(&usher, "github", "583231").await,
        ["acme/admins", "acme/platform-team", "elsewhere/ops"]
    );
}

#[tokio::test]
async fn without_read_org_no_team_becomes_a_group() {
    let (usher, _github) = start_github(
        vec![octocat_in(&[("acme", "admins")])],
        r#""read:user", "user:email""#,
    )
    .await;
    let id = id_token(&usher, "583231", "openid groups").await;
    assert_eq!(id["groups"], json!([]), "{id}");
    assert!(stored_groups(&usher, "github", "583231").await.is_empty());
}

#[tokio::test]
async fn thousands_of_teams_make_at_most_a_hundred_groups() {
    let names: Vec<String> = (0..5_000).map(|i| format!("team {i}")).collect();
    let teams: Vec<(&str, &str)> = names.iter().map(|n| ("acme", n.as_str())).collect();
    let (usher, _github) = start_github(
        vec![octocat_in(&teams)],
        r#""read:user", "user:email", "read:org""#,
    )
    .await;
    let id = id_token(&usher, "583231", "openid groups").await;
    assert_eq!(id["groups"].as_array().unwrap().len(), 100);
    let stored = stored_groups(&usher, "github", "583231").await;
    let mut want: Vec<String> = (0..100).map(|i| format!("acme/team-{i}")).collect();
    want.sort();
    assert_eq!(stored, want, "the first page of the listing");
}

#[tokio::test]
async fn an_oversized_upstream_answer_fails_the_sign_in_and_says_why() {
    let mut u = octocat();
    u.extra_claims
        .insert("bio".into(), json!("x".repeat(2 * 1024 * 1024)));
    let (usher, _github) = start_github(vec![u], r#""read:user", "user:email""#).await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .expect("the upstream's consent page");
    let page = follow_all(
        &browser,
        decide(&browser, &consent, "583231", "authorize").await,
    )
    .await
    .expect("a page explaining the failure");
    assert!(
        page.body.contains("answered more than 65536 bytes"),
        "{}",
        page.body
    );
    assert!(
        usher::store::IdentityStore::identity(usher.store.as_ref(), "github", "583231")
            .await
            .unwrap()
            .is_none(),
        "no account"
    );
}
