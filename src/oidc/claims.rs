//! What goes into tokens and userinfo: standard claims by scope, the `groups` and
//! `roles` claims an app is allowed, plus the claims a sign-in fixed (pass-through
//! upstream claims, script `set_claim`s).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::App;
use crate::store::groups::effective_roles;
use crate::store::{GrantData, Membership, Store, StoreResult, User};

/// Standard claims the granted scopes release about a subject.
pub fn scoped_claims(
    scopes: &[String],
    user: Option<&User>,
    grant: &GrantData,
) -> Map<String, Value> {
    let mut out = Map::new();
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if let Some(u) = user {
        if has("profile") {
            out.insert("preferred_username".into(), json!(u.username));
            for (k, v) in [
                ("name", &u.name),
                ("given_name", &u.given_name),
                ("family_name", &u.family_name),
                ("picture", &u.picture),
            ] {
                if let Some(v) = v {
                    out.insert(k.into(), json!(v));
                }
            }
            out.insert("updated_at".into(), json!(u.updated_at));
        }
        if has("email") {
            if let Some(e) = &u.email {
                out.insert("email".into(), json!(e));
                out.insert("email_verified".into(), json!(u.email_verified));
            }
        }
    } else {
        // A subject without an account: release what the sign-in recorded, by scope.
        let profile = [
            "name",
            "given_name",
            "family_name",
            "preferred_username",
            "picture",
        ];
        for (k, v) in &grant.claims {
            let allowed = (has("profile") && profile.contains(&k.as_str()))
                || (has("email") && (k == "email" || k == "email_verified"));
            if allowed {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    // Claims a script set are released whatever the scope: the admin asked for them.
    // A subject without an account has its `groups` and `roles` released only by
    // `membership_claims`, through the app's filter.
    for (k, v) in &grant.claims {
        let membership = user.is_none() && (k == "groups" || k == "roles");
        if !out.contains_key(k) && !is_standard(k) && !membership {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn is_standard(claim: &str) -> bool {
    matches!(
        claim,
        "name"
            | "given_name"
            | "family_name"
            | "preferred_username"
            | "picture"
            | "email"
            | "email_verified"
            | "updated_at"
    )
}

/// The `groups` and `roles` claims of an account, read now (a change in its groups
/// shows at the next token or userinfo), or of a subject without an account, as its
/// sign-in fixed them (`fixed`, the grant's claims): each only when its scope was
/// granted and the app allows it, and `groups` only with the groups the app may see.
/// At most one store call.
pub async fn membership_claims(
    store: &dyn Store,
    app: &App,
    scopes: &[String],
    user: Option<&User>,
    fixed: &BTreeMap<String, Value>,
) -> StoreResult<Map<String, Value>> {
    let mut out = Map::new();
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let want_groups = has("groups") && !app.groups_claim.is_empty();
    let want_roles = has("roles") && app.roles_claim;
    if !(want_groups || want_roles) {
        return Ok(out);
    }
    let Some(user) = user else {
        let names = |claim: &str| -> Vec<String> {
            let list = match fixed.get(claim) {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(one)) => vec![one.as_str()],
                _ => Vec::new(),
            };
            list.into_iter()
                .take(crate::provision::UPSTREAM_NAMES_MAX)
                .map(str::to_string)
                .collect()
        };
        if want_groups {
            let seen: Vec<String> = (names("groups").into_iter())
                .filter(|n| app.sees_group(n))
                .collect();
            out.insert("groups".into(), json!(seen));
        }
        if want_roles {
            out.insert("roles".into(), json!(names("roles")));
        }
        return Ok(out);
    };
    let groups: Vec<Membership> = store
        .memberships(std::slice::from_ref(&user.id))
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    if want_groups {
        let names: Vec<&str> = groups
            .iter()
            .map(|g| g.display_name.as_str())
            .filter(|n| app.sees_group(n))
            .collect();
        out.insert("groups".into(), json!(names));
    }
    if want_roles {
        out.insert("roles".into(), json!(effective_roles(&user.roles, &groups)));
    }
    Ok(out)
}

/// Claims no script or upstream may override: the protocol's own.
pub const RESERVED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "sid",
    "client_id",
    "scope",
    "gid",
];
