//! Upstream group and role names applied to stored accounts.
//!
//! A connection that maps `groups` (or `roles`) makes the names its upstream asserts
//! part of the account: at JIT provisioning, and at later sign-ins as far as the
//! connection's `jit.attributes` lets the upstream change the account (`override`:
//! join and leave; `preserve_local`: join only; `none`: nothing).
//!
//! Two rules keep a sync from touching what an administrator made:
//! - a sync only ever joins or leaves groups its own connection created (the group's
//!   `connection`); a group made over SCIM or by `usher groups` is never joined because
//!   an upstream names it, since an upstream's names are not Usher's namespace (anyone
//!   can name a GitHub organisation `admins`);
//! - within such a group, a sync takes out only the members it put in (`synced`), and
//!   of the account's roles only those the connection gave (`role_sources`).
//!
//! Every group write is a compare-and-swap retried on a lost race, and a missing group
//! is created with the name index deciding between parallel creations, so parallel
//! first sign-ins of one identity leave one group with the account in it once.

use serde_json::Value;

use crate::config::{Connection, JitAttributes};
use crate::limits;
use crate::store::groups::name_key;
use crate::store::{Group, GroupWrite, Store, StoreError, StoreResult, User};
use crate::upstream::UpstreamIdentity;

/// Upstream-named groups or roles kept for one sign-in, at most; also the most groups
/// (and roles) a connection keeps an account in.
pub const UPSTREAM_NAMES_MAX: usize = 100;

/// Tries of one group write that keeps losing races before the sync gives it up.
const SWAP_ATTEMPTS: usize = 64;

/// How far a sign-in may change the account's memberships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Join what the upstream asserts and leave what it no longer does.
    Full,
    /// Join only.
    JoinOnly,
    /// Change nothing.
    Nothing,
}

impl Reach {
    /// A returning (or linked) account, under the connection's `jit.attributes`.
    pub fn returning(conn: &Connection) -> Reach {
        match conn.jit.attributes {
            JitAttributes::Override => Reach::Full,
            JitAttributes::PreserveLocal => Reach::JoinOnly,
            JitAttributes::None => Reach::Nothing,
        }
    }
}

/// Whether a name from an upstream may become a group or role name: not blank, no
/// control characters (a NUL cannot even be stored by every backend), within `max`.
fn acceptable(name: &str, max: usize) -> bool {
    !name.is_empty()
        && !name.chars().any(char::is_control)
        && limits::check_len("group", name, max).is_ok()
}

/// The names an upstream claim holds (a list of strings, or one string): trimmed, each
/// acceptable and once (case-insensitively), at most [`UPSTREAM_NAMES_MAX`]; anything
/// else is ignored. `None` when the claim is neither (absent counts as an empty list
/// only when the connection maps the claim: an upstream omits an empty `groups`).
pub fn asserted(
    conn: Option<&Connection>,
    identity: &UpstreamIdentity,
    claim: &str,
    max_len: usize,
) -> Option<Vec<String>> {
    let values: Vec<&Value> = match identity.claims.get(claim) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v @ Value::String(_)) => vec![v],
        None if conn.is_some_and(|c| maps(c, claim)) => Vec::new(),
        _ => return None,
    };
    let mut out: Vec<String> = Vec::new();
    for name in values.into_iter().filter_map(Value::as_str).map(str::trim) {
        if out.len() >= UPSTREAM_NAMES_MAX {
            break;
        }
        if acceptable(name, max_len) && !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            out.push(name.to_string());
        }
    }
    Some(out)
}

/// Whether the connection brings this claim from its upstream.
pub fn maps(conn: &Connection, claim: &str) -> bool {
    conn.claims.contains_key(claim)
}

/// The group names an upstream asserts for stored memberships.
pub fn asserted_groups(conn: &Connection, identity: &UpstreamIdentity) -> Option<Vec<String>> {
    asserted(Some(conn), identity, "groups", limits::GROUP_NAME_MAX)
}

/// The role names an upstream asserts for the account's roles.
pub fn asserted_roles(conn: &Connection, identity: &UpstreamIdentity) -> Option<Vec<String>> {
    asserted(Some(conn), identity, "roles", limits::ROLE_MAX)
}

/// Apply asserted roles to an account in memory (the caller writes it): add each it
/// lacks, marked as the connection's, and with [`Reach::Full`] take out the
/// connection's roles the upstream no longer asserts. The account keeps at most
/// [`limits::ROLES_MAX`] roles; hand-given ones always stay.
pub fn apply_roles(user: &mut User, connection: &str, names: &[String], reach: Reach) {
    if reach == Reach::Nothing {
        return;
    }
    // A role an administrator took away is no longer the connection's to manage.
    let roles = user.roles.clone();
    user.role_sources.retain(|r, _| roles.contains(r));
    if reach == Reach::Full {
        let gone: Vec<String> = (user.role_sources.iter())
            .filter(|(r, c)| {
                c.as_str() == connection && !names.iter().any(|n| n.eq_ignore_ascii_case(r))
            })
            .map(|(r, _)| r.clone())
            .collect();
        for r in gone {
            user.role_sources.remove(&r);
            user.roles.retain(|x| *x != r);
        }
    }
    let mut held = user
        .role_sources
        .values()
        .filter(|c| c.as_str() == connection)
        .count();
    for name in names {
        if user.roles.len() >= limits::ROLES_MAX || held >= UPSTREAM_NAMES_MAX {
            break;
        }
        if !user.roles.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            user.roles.push(name.clone());
            user.role_sources
                .insert(name.clone(), connection.to_string());
            held += 1;
        }
    }
}

/// What a group sync did, for the sign-in's trace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupSync {
    pub joined: Vec<String>,
    pub left: Vec<String>,
    /// Asserted names not applied: a group of that name is an administrator's (or
    /// another connection's), is full, or the account is at the cap.
    pub skipped: Vec<String>,
}

/// Make the account's memberships of the connection's groups follow `names`, as far
/// as `reach` allows.
pub async fn sync_groups(
    store: &dyn Store,
    connection: &str,
    user_id: &str,
    names: &[String],
    reach: Reach,
    now: u64,
) -> StoreResult<GroupSync> {
    let mut done = GroupSync::default();
    if reach == Reach::Nothing {
        return Ok(done);
    }
    let current = store
        .memberships(&[user_id.to_string()])
        .await?
        .remove(user_id)
        .unwrap_or_default();
    let wanted: Vec<String> = names.iter().map(|n| name_key(n)).collect();
    // The connection's memberships the upstream no longer asserts: left with `Full`,
    // counted against the cap with `JoinOnly`.
    let mut kept_elsewhere = 0;
    for m in current
        .iter()
        .filter(|m| !wanted.contains(&name_key(&m.display_name)))
    {
        if reach == Reach::Full {
            if leave(store, connection, &m.group_id, user_id, now).await? {
                done.left.push(m.display_name.clone());
            }
        } else if let Some(g) = store.group(&m.group_id).await? {
            if g.value.connection.as_deref() == Some(connection) {
                kept_elsewhere += 1;
            }
        }
    }
    let room = UPSTREAM_NAMES_MAX.saturating_sub(kept_elsewhere);
    for name in names.iter().take(room) {
        if current
            .iter()
            .any(|m| name_key(&m.display_name) == name_key(name))
        {
            continue;
        }
        if join(store, connection, name, user_id, now).await? {
            done.joined.push(name.clone());
        } else {
            done.skipped.push(name.clone());
        }
    }
    done.skipped.extend(names.iter().skip(room).cloned());
    Ok(done)
}

/// Put the account in the connection's group called `name`, creating it if there is
/// none. `false` when a group of that name is not the connection's, or is full.
async fn join(
    store: &dyn Store,
    connection: &str,
    name: &str,
    user_id: &str,
    now: u64,
) -> StoreResult<bool> {
    for _ in 0..SWAP_ATTEMPTS {
        let Some(found) = store.find_group(name).await? else {
            let group = Group {
                id: crate::crypto::ordered_id("g_"),
                display_name: name.to_string(),
                external_id: None,
                members: vec![user_id.to_string()],
                roles: Vec::new(),
                connection: Some(connection.to_string()),
                synced: vec![user_id.to_string()],
                created_at: now,
                updated_at: now,
            };
            match store.create_group(&group).await {
                Ok(GroupWrite::Written) => return Ok(true),
                // A parallel sign-in made it first: join that one.
                Err(StoreError::Conflict(_)) | Ok(GroupWrite::Stale) => continue,
                Ok(GroupWrite::NoSuchAccount(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        };
        let mut group = found.value;
        if group.connection.as_deref() != Some(connection) {
            return Ok(false);
        }
        if group.members.iter().any(|m| m == user_id) {
            return Ok(true);
        }
        if group.members.len() >= limits::GROUP_MEMBERS_MAX {
            return Ok(false);
        }
        group.members.push(user_id.to_string());
        group.synced.push(user_id.to_string());
        group.updated_at = now;
        match store.swap_group(&group, found.version).await? {
            GroupWrite::Written => return Ok(true),
            GroupWrite::Stale => continue,
            GroupWrite::NoSuchAccount(_) => return Ok(false),
        }
    }
    tracing::warn!(
        group = name,
        "gave up joining a group after losing every race"
    );
    Ok(false)
}

/// Take the account out of group `id` if the connection put it there; a group the
/// connection made that is left with no members goes. `true` if it left.
async fn leave(
    store: &dyn Store,
    connection: &str,
    id: &str,
    user_id: &str,
    now: u64,
) -> StoreResult<bool> {
    for _ in 0..SWAP_ATTEMPTS {
        let Some(found) = store.group(id).await? else {
            return Ok(false);
        };
        let mut group = found.value;
        if group.connection.as_deref() != Some(connection)
            || !group.synced.iter().any(|m| m == user_id)
        {
            return Ok(false);
        }
        group.members.retain(|m| m != user_id);
        group.synced.retain(|m| m != user_id);
        // A group left with nothing an administrator gave it goes with its last member.
        if group.members.is_empty() && group.roles.is_empty() && group.external_id.is_none() {
            if store.delete_group(id, Some(found.version)).await? {
                return Ok(true);
            }
            continue;
        }
        group.updated_at = now;
        match store.swap_group(&group, found.version).await? {
            GroupWrite::Written => return Ok(true),
            GroupWrite::Stale | GroupWrite::NoSuchAccount(_) => continue,
        }
    }
    tracing::warn!(
        group = id,
        "gave up leaving a group after losing every race"
    );
    Ok(false)
}

#[cfg(test)]
mod tests;
