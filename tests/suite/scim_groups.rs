//! SCIM `/Groups` under attack and in use: fifty requests at once keep every limit
//! (one group per name, every parallel member addition kept, the member cap exact),
//! ETags, members that leave with their account, and the audit trail.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use usher::limits::{GROUP_MEMBERS_MAX, SCIM_MEMBERS_PER_REQUEST_MAX};
use usher::store::{AuditStore, User, UserStore};

use crate::accounts_world::*;
use crate::scim_conformance::{patch, Client};

const PARALLEL: usize = 50;

async fn create_group(c: &Client, name: &str) -> Value {
    let (s, g) = c
        .send(
            Method::POST,
            "/Groups",
            Some(json!({ "displayName": name })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    g
}

/// `n` accounts written straight to the store (fast), ids `u_t00000`….
async fn accounts(w: &World, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("u_t{i:05}");
        w.usher
            .store
            .create_user(&User {
                role_sources: Default::default(),
                id: id.clone(),
                username: format!("t{i}"),
                email: None,
                email_verified: false,
                name: None,
                given_name: None,
                family_name: None,
                picture: None,
                roles: vec![],
                password_hash: None,
                disabled: false,
                created_at: 1,
                updated_at: 1,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

async fn in_parallel<F, Fut>(n: usize, f: F) -> Vec<(StatusCode, Value)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value)> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_creations_with_one_name_make_one_group() {
    let w = world().await;
    let c = Arc::new(Client::of(&w).await);
    let answers = in_parallel(PARALLEL, |i| {
        let c = c.clone();
        async move {
            let name = if i % 2 == 0 { "Admins" } else { "ADMINS" };
            c.send(
                Method::POST,
                "/Groups",
                Some(json!({ "displayName": name })),
            )
            .await
        }
    })
    .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    for (s, b) in &answers {
        if *s != StatusCode::CREATED {
            assert_eq!(
                (*s, b["scimType"].as_str()),
                (StatusCode::CONFLICT, Some("uniqueness"))
            );
        }
    }
    let (_, list) = c.send(Method::GET, "/Groups", None).await;
    assert_eq!(list["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_member_additions_all_land() {
    let w = world().await;
    let c = Arc::new(Client::of(&w).await);
    let ids = Arc::new(accounts(&w, PARALLEL).await);
    let g = create_group(&c, "staff").await;
    let path = Arc::new(format!("/Groups/{}", g["id"].as_str().unwrap()));
    let answers = in_parallel(PARALLEL, |i| {
        let (c, ids, path) = (c.clone(), ids.clone(), path.clone());
        async move {
            let op =
                patch(json!([{ "op": "add", "path": "members", "value": [{ "value": ids[i] }] }]));
            c.send(Method::PATCH, &path, Some(op)).await
        }
    })
    .await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    let (_, g) = c.send(Method::GET, &path, None).await;
    let mut members: Vec<String> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    members.sort();
    assert_eq!(members, *ids, "no parallel addition was lost");
    // Each member's own resource names the group.
    let (_, u) = c
        .send(Method::GET, &format!("/Users/{}", ids[7]), None)
        .await;
    assert_eq!(u["groups"][0]["display"], "staff", "{u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_member_cap_holds_when_requests_arrive_together() {
    let w = world().await;
    let c = Arc::new(Client::of(&w).await);
    let per = SCIM_MEMBERS_PER_REQUEST_MAX;
    let batches = GROUP_MEMBERS_MAX / per + 1;
    let ids = Arc::new(accounts(&w, batches * per).await);
    let g = create_group(&c, "everyone").await;
    let path = Arc::new(format!("/Groups/{}", g["id"].as_str().unwrap()));
    let answers = in_parallel(batches, |i| {
        let (c, ids, path) = (c.clone(), ids.clone(), path.clone());
        async move {
            let values: Vec<Value> = ids[i * per..(i + 1) * per]
                .iter()
                .map(|id| json!({ "value": id }))
                .collect();
            let op = patch(json!([{ "op": "add", "path": "members", "value": values }]));
            c.send(Method::PATCH, &path, Some(op)).await
        }
    })
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, GROUP_MEMBERS_MAX / per, "exactly as many as fit");
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert!(
        refused.iter().all(|b| b["scimType"] == "invalidValue"
            && b["detail"].as_str().unwrap().contains("at most")),
        "{refused:?}"
    );
    let (_, g) = c.send(Method::GET, &path, None).await;
    assert_eq!(g["members"].as_array().unwrap().len(), GROUP_MEMBERS_MAX);
    // One request may not name more than its share, added or removed.
    let many: Vec<Value> = (0..=per)
        .map(|i| json!({ "value": format!("u_{i}") }))
        .collect();
    for op in ["add", "remove"] {
        let body = patch(json!([{ "op": op, "path": "members", "value": many }]));
        let (s, b) = c.send(Method::PATCH, &path, Some(body)).await;
        assert_eq!(
            (s, b["scimType"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalidValue")),
            "{op}"
        );
    }
}

#[tokio::test]
async fn etags_members_that_leave_with_their_account_and_the_audit_trail() {
    let w = world().await;
    let c = Client::of(&w).await;
    let ids = accounts(&w, 3).await;
    let (s, g) = c
        .send(
            Method::POST,
            "/Groups",
            Some(json!({
                "displayName": "admins",
                "members": ids.iter().map(|i| json!({ "value": i })).collect::<Vec<_>>(),
                "urn:usher:params:scim:schemas:extension:2.0:Group": { "roles": [{ "value": "admin" }] },
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let path = format!("/Groups/{}", g["id"].as_str().unwrap());
    let v1 = g["meta"]["version"].as_str().unwrap().to_string();
    // A stale If-Match is refused and changes nothing; If-None-Match is 304.
    let rename = patch(json!([{ "op": "replace", "path": "displayName", "value": "Admins" }]));
    let res = c
        .http
        .patch(format!("{}{path}", c.base))
        .bearer_auth(&c.token)
        .header("if-match", "W/\"stale\"")
        .header("content-type", "application/scim+json")
        .body(rename.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let res = c
        .http
        .get(format!("{}{path}", c.base))
        .bearer_auth(&c.token)
        .header("if-none-match", &v1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // Filter by member, by role.
    let found = |f: &str| {
        let url = format!(
            "/Groups?filter={}",
            url::form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>()
        );
        let c = &c;
        async move { c.send(Method::GET, &url, None).await.1["totalResults"].clone() }
    };
    assert_eq!(found(&format!("members.value eq \"{}\"", ids[1])).await, 1);
    assert_eq!(
        found("urn:usher:params:scim:schemas:extension:2.0:Group:roles.value eq \"ADMIN\"").await,
        1
    );
    assert_eq!(
        found("displayName sw \"adm\" and not (externalId pr)").await,
        1
    );
    // Deleting an account takes it out of the group, and the ETag moves on.
    let (s, _) = c
        .send(Method::DELETE, &format!("/Users/{}", ids[0]), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, g) = c.send(Method::GET, &path, None).await;
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    assert_ne!(g["meta"]["version"].as_str().unwrap(), v1);
    // Members removed by a filter, and by a list as some clients send it.
    let ops = patch(json!([
        { "op": "remove", "path": format!("members[value eq \"{}\"]", ids[1]) },
        { "op": "remove", "path": "members", "value": [{ "value": ids[2] }] },
    ]));
    let (s, g) = c.send(Method::PATCH, &path, Some(ops)).await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["members"], json!([]));
    let (s, _) = c.send(Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let events = w.usher.store.events(0, 1000).await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e.kind.starts_with("admin.group"))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "admin.group_created",
            "admin.group_updated",
            "admin.group_deleted"
        ]
    );
    let updated = events
        .iter()
        .find(|e| e.kind == "admin.group_updated")
        .unwrap();
    assert!(
        updated
            .detail
            .iter()
            .any(|d| d == "0 member(s) joined, 2 left"),
        "{updated:?}"
    );
    assert!(
        !updated.detail.iter().any(|d| d.contains(&ids[1])),
        "ids stay out of the trail"
    );
}

/// The per-request cap on member values counts every spelling a PATCH value may use
/// for `members` (any case, the schema's full name) together: two lists under the cap
/// each are over it together.
#[tokio::test]
async fn the_per_request_member_cap_counts_every_spelling() {
    let w = world().await;
    let c = Client::of(&w).await;
    let g = create_group(&c, "staff").await;
    let path = format!("/Groups/{}", g["id"].as_str().unwrap());
    let half: Vec<Value> = (0..SCIM_MEMBERS_PER_REQUEST_MAX / 2 + 1)
        .map(|i| json!({ "value": format!("nobody-{i}") }))
        .collect();
    for other in [
        "Members",
        "urn:ietf:params:scim:schemas:core:2.0:Group:members",
    ] {
        let mut value = serde_json::Map::new();
        value.insert("members".to_string(), Value::Array(half.clone()));
        value.insert(other.to_string(), Value::Array(half.clone()));
        let op = patch(json!([{ "op": "add", "value": value }]));
        let (status, body) = c.send(Method::PATCH, &path, Some(op)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{other}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(&format!(
                "one request may name at most {SCIM_MEMBERS_PER_REQUEST_MAX} members"
            ))),
            "{other}: {body}"
        );
    }
}
