//! Upstream groups and roles applied to stored accounts, on sled and on PostgreSQL
//! (when a cluster is there): hostile claims, parallel first sign-ins, and the rule
//! that a sign-in never undoes what an administrator did by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::config::{ConnectionKind, Jit, JitLink, JitScheme};
use crate::provision::{provision, Provisioned};
use crate::secret::Secret;
use crate::store::contract::race;

fn conn(attributes: JitAttributes) -> Connection {
    Connection {
        id: "corp".into(),
        kind: ConnectionKind::Oidc,
        display_name: "Corp".into(),
        client_id: "c".into(),
        client_secret: Secret::new("s"),
        issuer: None,
        issuer_text: None,
        authorize_url: None,
        token_url: None,
        userinfo_url: None,
        userinfo: crate::config::UserinfoMode::Auto,
        emails_url: None,
        scopes: vec![],
        claims: [("groups", "groups"), ("roles", "app_roles")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        jit: Jit {
            provision: true,
            scheme: JitScheme::Silent,
            attributes,
            link: JitLink::Never,
        },
        trust_upstream_mfa: false,
    }
}

/// An identity as the connection maps it: `groups` and `roles` already local names.
fn identity(sub: &str, groups: Value, roles: Value) -> UpstreamIdentity {
    let mut claims = BTreeMap::new();
    claims.insert("email".into(), json!(format!("{sub}@example.com")));
    claims.insert("email_verified".into(), json!(true));
    claims.insert("groups".into(), groups);
    claims.insert("roles".into(), roles);
    UpstreamIdentity {
        connection: "corp".into(),
        subject: sub.into(),
        claims,
        amr: vec![],
        raw: Default::default(),
    }
}

async fn sign_in(store: &dyn Store, conn: &Connection, id: &UpstreamIdentity, now: u64) -> String {
    match provision(store, conn, id, now).await.unwrap() {
        Provisioned::Subject(s) => s.user_id.unwrap(),
        other => panic!("{other:?}"),
    }
}

/// The account's group names, sorted.
async fn groups_of(store: &dyn Store, user_id: &str) -> Vec<String> {
    let mut names: Vec<String> = store
        .memberships(&[user_id.to_string()])
        .await
        .unwrap()
        .remove(user_id)
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.display_name)
        .collect();
    names.sort();
    names
}

async fn all_groups(store: &dyn Store) -> Vec<Group> {
    store
        .groups_after(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.value)
        .collect()
}

async fn hand_group(store: &dyn Store, id: &str, name: &str, members: &[&str]) {
    let g = Group {
        id: id.into(),
        display_name: name.into(),
        external_id: None,
        members: members.iter().map(|m| m.to_string()).collect(),
        roles: vec![],
        connection: None,
        synced: vec![],
        created_at: 1,
        updated_at: 1,
    };
    assert_eq!(store.create_group(&g).await.unwrap(), GroupWrite::Written);
}

pub async fn fifty_parallel_first_sign_ins_make_one_account_in_each_group_once(
    store: Arc<dyn Store>,
) {
    let answers = race(&store, |store, _| async move {
        let id = identity(
            "ada",
            json!(["admins", "dev", "ADMINS"]),
            json!(["approver"]),
        );
        provision(store.as_ref(), &conn(JitAttributes::Override), &id, 1)
            .await
            .unwrap()
    })
    .await;
    let ids: Vec<String> = answers
        .into_iter()
        .map(|a| match a {
            Provisioned::Subject(s) => s.user_id.unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one account: {ids:?}");
    let groups = all_groups(store.as_ref()).await;
    assert_eq!(groups.len(), 2, "{groups:?}");
    for g in &groups {
        assert_eq!(g.members, vec![ids[0].clone()], "{g:?}");
        assert_eq!(g.synced, vec![ids[0].clone()], "{g:?}");
        assert_eq!(g.connection.as_deref(), Some("corp"));
    }
    assert_eq!(groups_of(store.as_ref(), &ids[0]).await, ["admins", "dev"]);
    let user = store.user(&ids[0]).await.unwrap().unwrap();
    assert_eq!(user.roles, ["approver"]);
}

pub async fn a_hostile_groups_claim_is_capped_and_bad_names_are_dropped(store: Arc<dyn Store>) {
    let mut names: Vec<Value> = vec![
        json!("nul\u{0}byte"),
        json!("x".repeat(10 * 1024)),
        json!("   "),
        json!(42),
        json!({"name": "object"}),
        json!("line\nbreak"),
    ];
    names.extend((0..5_000).map(|i| json!(format!("team-{i}"))));
    let roles: Vec<Value> = (0..5_000).map(|i| json!(format!("role-{i}"))).collect();
    let id = identity("mallory", Value::Array(names), Value::Array(roles));
    let uid = sign_in(store.as_ref(), &conn(JitAttributes::Override), &id, 1).await;
    let groups = groups_of(store.as_ref(), &uid).await;
    assert_eq!(groups.len(), UPSTREAM_NAMES_MAX);
    assert!(groups.iter().all(|g| g.starts_with("team-")), "{groups:?}");
    assert_eq!(all_groups(store.as_ref()).await.len(), UPSTREAM_NAMES_MAX);
    let user = store.user(&uid).await.unwrap().unwrap();
    assert_eq!(user.roles.len(), limits::ROLES_MAX);
    // Not a list: ignored, and the memberships the last sign-in made stay.
    let odd = identity("mallory", json!({"admins": true}), json!(7));
    sign_in(store.as_ref(), &conn(JitAttributes::Override), &odd, 2).await;
    assert_eq!(
        groups_of(store.as_ref(), &uid).await.len(),
        UPSTREAM_NAMES_MAX
    );
}

pub async fn an_upstream_never_joins_a_group_an_administrator_made(store: Arc<dyn Store>) {
    hand_group(store.as_ref(), "g_admins", "Admins", &[]).await;
    let id = identity("eve", json!(["admins"]), json!([]));
    let subject = match provision(store.as_ref(), &conn(JitAttributes::Override), &id, 1)
        .await
        .unwrap()
    {
        Provisioned::Subject(s) => s,
        other => panic!("{other:?}"),
    };
    let uid = subject.user_id.clone().unwrap();
    assert!(groups_of(store.as_ref(), &uid).await.is_empty());
    let admins = store.group("g_admins").await.unwrap().unwrap().value;
    assert!(admins.members.is_empty(), "{admins:?}");
    // A script still sees what the upstream asserted at this sign-in.
    assert_eq!(subject.groups, ["admins"]);
}

pub async fn a_sign_in_takes_out_only_what_its_connection_put_in(store: Arc<dyn Store>) {
    let c = conn(JitAttributes::Override);
    let uid = sign_in(
        store.as_ref(),
        &c,
        &identity("ada", json!(["dev", "ops"]), json!(["approver", "auditor"])),
        1,
    )
    .await;
    let other = sign_in(
        store.as_ref(),
        &c,
        &identity("bob", json!(["x"]), json!([])),
        1,
    )
    .await;
    // By hand: Ada into the administrator's `staff`, Bob into the connection's `dev`,
    // and a role for Ada.
    hand_group(store.as_ref(), "g_staff", "staff", &[&uid]).await;
    let dev = store.find_group("dev").await.unwrap().unwrap();
    let mut with_bob = dev.value.clone();
    with_bob.members.push(other.clone());
    assert_eq!(
        store.swap_group(&with_bob, dev.version).await.unwrap(),
        GroupWrite::Written
    );
    let mut ada = store.user(&uid).await.unwrap().unwrap();
    ada.roles.push("owner".into());
    store.update_user(&ada).await.unwrap();

    // The upstream drops `dev`, `ops` and `auditor`.
    sign_in(
        store.as_ref(),
        &c,
        &identity("ada", json!([]), json!(["approver"])),
        2,
    )
    .await;
    assert_eq!(groups_of(store.as_ref(), &uid).await, ["staff"]);
    let dev = store.find_group("dev").await.unwrap().unwrap().value;
    assert_eq!(dev.members, vec![other.clone()], "Bob was added by hand");
    assert!(
        store.find_group("ops").await.unwrap().is_none(),
        "a connection's group left empty goes"
    );
    let ada = store.user(&uid).await.unwrap().unwrap();
    assert_eq!(ada.roles, ["approver", "owner"]);
    // Bob's own sign-in (his upstream names no `dev`) keeps him: he was added by hand.
    sign_in(
        store.as_ref(),
        &c,
        &identity("bob", json!([]), json!([])),
        3,
    )
    .await;
    assert_eq!(groups_of(store.as_ref(), &other).await, ["dev"]);
}

pub async fn attributes_decide_how_far_a_later_sign_in_goes(store: Arc<dyn Store>) {
    let first = identity("ada", json!(["dev"]), json!(["approver"]));
    let later = identity("ada", json!(["ops"]), json!(["auditor"]));
    let uid = sign_in(store.as_ref(), &conn(JitAttributes::None), &first, 1).await;
    assert_eq!(
        groups_of(store.as_ref(), &uid).await,
        ["dev"],
        "JIT applies"
    );
    sign_in(store.as_ref(), &conn(JitAttributes::None), &later, 2).await;
    assert_eq!(groups_of(store.as_ref(), &uid).await, ["dev"]);
    sign_in(
        store.as_ref(),
        &conn(JitAttributes::PreserveLocal),
        &later,
        3,
    )
    .await;
    assert_eq!(groups_of(store.as_ref(), &uid).await, ["dev", "ops"]);
    let user = store.user(&uid).await.unwrap().unwrap();
    assert_eq!(user.roles, ["approver", "auditor"]);
    sign_in(store.as_ref(), &conn(JitAttributes::Override), &later, 4).await;
    assert_eq!(groups_of(store.as_ref(), &uid).await, ["ops"]);
    let user = store.user(&uid).await.unwrap().unwrap();
    assert_eq!(user.roles, ["auditor"]);
    assert!(store.identity("corp", "ada").await.unwrap().is_some());
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = crate::store::SledStore::temporary().unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if crate::store::postgres::cluster::shared().is_none() {
                        return;
                    }
                    let store = crate::store::postgres::cluster::fresh_store().await.unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

on_both_backends!(
    fifty_parallel_first_sign_ins_make_one_account_in_each_group_once,
    a_hostile_groups_claim_is_capped_and_bad_names_are_dropped,
    an_upstream_never_joins_a_group_an_administrator_made,
    a_sign_in_takes_out_only_what_its_connection_put_in,
    attributes_decide_how_far_a_later_sign_in_goes,
);
