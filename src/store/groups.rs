//! Groups of accounts and the roles they carry: the records, the capability trait that
//! keeps them ([`GroupStore`]), and the in-memory query every backend answers group
//! lists with.
//!
//! A group's members are accounts only — groups do not nest — so "is this account in
//! `admins`" is one index lookup, never a walk. Display names are unique
//! case-insensitively, decided in the write's own transaction, so of fifty parallel
//! creations with one name exactly one makes a group. Every write of a group is a
//! compare-and-swap on its version: parallel PATCHes of one group's members each apply
//! to what the other left, none is lost, and a cap the core checks on the finished
//! group holds however many arrive at once.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::query::{Filter, Val};
use super::{StoreResult, Versioned};
use crate::timefmt::rfc3339;

/// A group of accounts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    /// Stable, random, never reused (`g_…`).
    pub id: String,
    /// Unique, compared case-insensitively (after trimming).
    pub display_name: String,
    /// The id a provisioning system knows the group by (SCIM `externalId`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Account ids, each once, in the order they were added.
    #[serde(default)]
    pub members: Vec<String>,
    /// Roles every member holds through the group.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The connection that created the group from an upstream's group names, and the
    /// only one whose sign-ins add members to it or take them out; `None` for a group
    /// made over SCIM or by `usher groups`, which no sign-in ever changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The members `connection` added (each also in `members`). A member not listed was
    /// added by hand, and a sign-in never takes it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synced: Vec<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A group an account is in, as its tokens, scripts and SCIM representation see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Membership {
    pub group_id: String,
    pub display_name: String,
    pub roles: Vec<String>,
}

/// What a group write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupWrite {
    Written,
    /// The group changed (or went) since the version the write was prepared from;
    /// nothing was written. The caller reads it again and decides afresh.
    Stale,
    /// A member named no account (none was ever made, or it was deleted meanwhile);
    /// nothing was written.
    NoSuchAccount(String),
}

/// The lower-cased, trimmed form display names are unique in.
pub fn name_key(display_name: &str) -> String {
    display_name.trim().to_lowercase()
}

/// Groups: their records, their unique names, and the per-account index of who is in
/// which, kept in step with every write.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Create a group with its members; `Conflict("displayName")` if the name is
    /// taken, `Conflict("id")` if the id is, `NoSuchAccount` if a member is no account.
    /// One transaction: the name index's unique key decides between parallel
    /// creations, and the members are checked against the accounts they name.
    async fn create_group(&self, group: &Group) -> StoreResult<GroupWrite>;
    /// A group with the version a later [`swap_group`](Self::swap_group) must name.
    async fn group(&self, id: &str) -> StoreResult<Option<Versioned<Group>>>;
    /// The group with this display name (case-insensitive).
    async fn find_group(&self, display_name: &str) -> StoreResult<Option<Versioned<Group>>>;
    /// Replace the group if it is still at version `expected`, atomically with the
    /// name index and the membership index: `Stale` (nothing written) if another write
    /// came first, so of N parallel swaps from one version exactly one is `Written`.
    /// `Conflict("displayName")` if the new name is another group's; `NoSuchAccount`
    /// if an added member is no account (a deletion of that account waits for this
    /// write or makes it fail, so a group never keeps a member that is gone).
    async fn swap_group(&self, group: &Group, expected: u64) -> StoreResult<GroupWrite>;
    /// Delete the group (with its name and memberships) if it is at version
    /// `expected` (any version when `None`); `false` if it is not there or changed.
    async fn delete_group(&self, id: &str, expected: Option<u64>) -> StoreResult<bool>;
    /// Up to `limit` groups with an id greater than `after`, in id order.
    async fn groups_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Versioned<Group>>>;
    /// The groups each of `user_ids` is in, by group id, for a whole page of accounts
    /// at once: one read whatever the page's size (`… WHERE user_id = ANY($1)`).
    /// Accounts in no group are absent from the map.
    async fn memberships(
        &self,
        user_ids: &[String],
    ) -> StoreResult<BTreeMap<String, Vec<Membership>>>;
    /// A page of groups a filter matches, ordered by creation time then id, with how
    /// many match in all. The default reads the groups in batches and filters in
    /// memory.
    async fn query_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage> {
        scan_groups(self, query).await
    }
}

/// What a group filter may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAttr {
    Id,
    DisplayName,
    ExternalId,
    /// A member's account id.
    Member,
    Role,
    Created,
    Updated,
}

impl GroupAttr {
    /// Ids, external ids and times compare case-exactly; names and roles folded.
    pub fn case_exact(self) -> bool {
        !matches!(self, GroupAttr::DisplayName | GroupAttr::Role)
    }

    fn values(self, g: &Group) -> Vec<Val> {
        let s = |v: &str| Val::Str(v.to_string());
        match self {
            GroupAttr::Id => vec![s(&g.id)],
            GroupAttr::DisplayName => vec![s(&g.display_name)],
            GroupAttr::ExternalId => g.external_id.iter().map(|x| s(x)).collect(),
            GroupAttr::Member => g.members.iter().map(|x| s(x)).collect(),
            GroupAttr::Role => g.roles.iter().map(|x| s(x)).collect(),
            GroupAttr::Created => vec![Val::Str(rfc3339(g.created_at))],
            GroupAttr::Updated => vec![Val::Str(rfc3339(g.updated_at))],
        }
    }
}

/// A page of groups to find.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupQuery {
    pub filter: Option<Filter<GroupAttr>>,
    /// How many matching groups to skip.
    pub start: usize,
    /// The most groups to return.
    pub count: usize,
}

/// One page of a [`GroupQuery`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPage {
    /// Ordered by creation time, then id.
    pub groups: Vec<Versioned<Group>>,
    pub total: usize,
}

/// Groups read per call of `groups_after` by [`scan_groups`].
pub const GROUP_SCAN_BATCH: usize = 200;

/// Every group read in batches, tested in memory, sorted and paged.
pub async fn scan_groups<S: GroupStore + ?Sized>(
    store: &S,
    query: &GroupQuery,
) -> StoreResult<GroupPage> {
    let mut matched = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store
            .groups_after(after.as_deref(), GROUP_SCAN_BATCH)
            .await?;
        let done = batch.len() < GROUP_SCAN_BATCH;
        after = batch.last().map(|g| g.value.id.clone());
        for g in batch {
            let keep = match &query.filter {
                None => true,
                Some(f) => f.matches(&|a: &GroupAttr| (a.values(&g.value), a.case_exact())),
            };
            if keep {
                matched.push(g);
            }
        }
        if done || after.is_none() {
            break;
        }
    }
    matched
        .sort_by(|a, b| (a.value.created_at, &a.value.id).cmp(&(b.value.created_at, &b.value.id)));
    let total = matched.len();
    let groups = matched
        .into_iter()
        .skip(query.start)
        .take(query.count)
        .collect();
    Ok(GroupPage { groups, total })
}

/// An account's roles: its own, then those its groups give it, each once.
pub fn effective_roles(own: &[String], groups: &[Membership]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in own.iter().chain(groups.iter().flat_map(|g| g.roles.iter())) {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}
