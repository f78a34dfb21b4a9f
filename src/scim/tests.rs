//! The SCIM operations against PostgreSQL, counted: a list page costs the same number
//! of statements whatever its size, for accounts and for groups.

use super::*;
use crate::config::Config;
use crate::store::contract::user;
use crate::store::{CredentialStore, GroupStore, IdentityStore, PgStore, UserStore};

fn config() -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(
        &path,
        "issuer: http://localhost:9000\napps:\n  a:\n    name: A\n    client_id: a\n    redirect_uris: [http://localhost:1/cb]\n    sign_in: { steps: [[password]] }\n",
    )
    .unwrap();
    crate::config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{d}"))
        .config
}

/// Accounts `u000`…, each with an external id, an identity, an authenticator, and a
/// place in one of two groups.
async fn fill(store: &PgStore, n: usize) {
    let mut members = (Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("u{i:03}");
        let mut u = user(&id, &format!("user{i}"), &format!("user{i}@example.com"));
        u.created_at = 100 + i as u64;
        store.create_user(&u).await.unwrap();
        store.set_external_id(&id, Some("hr")).await.unwrap();
        store.link_identity("google", &id, &id).await.unwrap();
        store
            .put_totp(&id, &crate::store::contract::totp_credential())
            .await
            .unwrap();
        if i % 2 == 0 {
            members.0.push(id);
        } else {
            members.1.push(id);
        }
    }
    for (gid, list) in [("g_even", members.0), ("g_odd", members.1)] {
        let mut g = crate::store::contract::groups::group(gid, gid, &[]);
        g.members = list;
        g.roles = vec!["staff".into()];
        store.create_group(&g).await.unwrap();
    }
}

/// The statements one call of `list` makes, and how many resources it listed.
async fn statements_of(store: &PgStore, config: &Config, what: &str, count: usize) -> (u64, usize) {
    let admin = Admin {
        store,
        config,
        client_id: "ops",
        now: 1_000,
    };
    let before = store.counts().statements;
    let count = count.to_string();
    let answer = match what {
        "Users" => admin.list(None, None, Some(&count)).await.unwrap(),
        _ => admin.list_groups(None, None, Some(&count)).await.unwrap(),
    };
    let spent = store.counts().statements - before;
    let listed = answer.body.unwrap()["Resources"].as_array().unwrap().len();
    (spent, listed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_page_costs_the_same_statements_for_one_account_and_for_fifty() {
    let Some(store) = crate::store::postgres::cluster::fresh_store().await else {
        return;
    };
    fill(&store, 50).await;
    let config = config();
    // The first query of a pool looks up the collation it folds case with, once.
    statements_of(&store, &config, "Users", 1).await;
    let (one, listed) = statements_of(&store, &config, "Users", 1).await;
    assert_eq!(listed, 1);
    let (fifty, listed) = statements_of(&store, &config, "Users", 50).await;
    assert_eq!(listed, 50);
    assert_eq!(one, fifty, "a page of 50 costs what a page of 1 does");
    assert_eq!(fifty, 2, "the page and its extras");
    // Every account of the page shows its extras and groups.
    let admin = Admin {
        store: &store,
        config: &config,
        client_id: "ops",
        now: 1_000,
    };
    let page = admin.list(None, None, Some("50")).await.unwrap();
    for u in page.body.unwrap()["Resources"].as_array().unwrap() {
        assert_eq!(u["externalId"], "hr", "{u}");
        assert_eq!(u["groups"].as_array().unwrap().len(), 1, "{u}");
        assert_eq!(u[USHER_USER_SCHEMA]["totp"], true, "{u}");
        assert_eq!(
            u[USHER_USER_SCHEMA]["identities"].as_array().unwrap().len(),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_page_costs_the_same_statements_for_one_group_and_for_all() {
    let Some(store) = crate::store::postgres::cluster::fresh_store().await else {
        return;
    };
    fill(&store, 50).await;
    let config = config();
    let (one, listed) = statements_of(&store, &config, "Groups", 1).await;
    assert_eq!(listed, 1);
    let (all, listed) = statements_of(&store, &config, "Groups", 2).await;
    assert_eq!(listed, 2);
    assert_eq!(one, all);
    assert_eq!(all, 1, "the page and the total in one statement");
}
