//! The sled side of groups: `groups` holds each group with its version, `group_names`
//! the folded display names, and `user_groups` each account's group ids (one key per
//! account, so a transaction that deletes the account can read and clear it). Every
//! write is one transaction over the trees it touches, the accounts tree included, so
//! a member is checked to exist in the same transaction that adds it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::{backend, decode, encode, tx_result, SledStore};
use crate::store::groups::name_key;
use crate::store::*;

/// A group as stored: the record and its version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredGroup {
    pub(super) version: u64,
    pub(super) group: Group,
}

type Abort = ConflictableTransactionError<StoreError>;

fn abort(e: StoreError) -> Abort {
    ConflictableTransactionError::Abort(e)
}

fn read_group(groups: &TransactionalTree, id: &str) -> Result<Option<StoredGroup>, Abort> {
    match groups.get(id.as_bytes())? {
        Some(bytes) => decode(&bytes).map(Some).map_err(abort),
        None => Ok(None),
    }
}

/// The group ids of an account, inside a transaction.
pub(super) fn read_user_groups(
    index: &TransactionalTree,
    user_id: &str,
) -> Result<Vec<String>, Abort> {
    match index.get(user_id.as_bytes())? {
        Some(bytes) => decode(&bytes).map_err(abort),
        None => Ok(Vec::new()),
    }
}

fn write_user_groups(
    index: &TransactionalTree,
    user_id: &str,
    ids: &[String],
) -> Result<(), Abort> {
    if ids.is_empty() {
        index.remove(user_id.as_bytes())?;
    } else {
        index.insert(user_id.as_bytes(), encode(&ids).map_err(abort)?)?;
    }
    Ok(())
}

/// Add and remove `group_id` in the index entries of the accounts that joined or left.
fn reindex(
    index: &TransactionalTree,
    group_id: &str,
    joined: &[&String],
    left: &[&String],
) -> Result<(), Abort> {
    for u in joined {
        let mut ids = read_user_groups(index, u)?;
        if !ids.iter().any(|g| g == group_id) {
            ids.push(group_id.to_string());
            write_user_groups(index, u, &ids)?;
        }
    }
    for u in left {
        let mut ids = read_user_groups(index, u)?;
        ids.retain(|g| g != group_id);
        write_user_groups(index, u, &ids)?;
    }
    Ok(())
}

/// Remove an account from a group's members, taking a new version (an account being
/// deleted); the caller clears the account's index entry.
pub(super) fn drop_member(
    groups: &TransactionalTree,
    group_id: &str,
    user_id: &str,
) -> Result<(), Abort> {
    if let Some(mut stored) = read_group(groups, group_id)? {
        stored.group.members.retain(|m| m != user_id);
        stored.version += 1;
        groups.insert(group_id.as_bytes(), encode(&stored).map_err(abort)?)?;
    }
    Ok(())
}

impl SledStore {
    /// `usher store copy`: write a group as it is, at its version, replacing one with
    /// its id (and that one's name and index entries). Members are not checked: the
    /// copy writes accounts first.
    pub(super) fn import_group(&self, group: &Group, version: u64) -> StoreResult<()> {
        let key = name_key(&group.display_name);
        let stored = StoredGroup {
            version,
            group: group.clone(),
        };
        let value = encode(&stored)?;
        tx_result(
            (&self.groups, &self.group_names, &self.user_groups).transaction(
                |(groups, names, index)| {
                    if let Some(owner) = names.get(key.as_bytes())? {
                        if owner.as_ref() != group.id.as_bytes() {
                            return Err(abort(StoreError::Conflict("displayName")));
                        }
                    }
                    if let Some(old) = read_group(groups, &group.id)? {
                        names.remove(name_key(&old.group.display_name).as_bytes())?;
                        let left: Vec<&String> = old.group.members.iter().collect();
                        reindex(index, &group.id, &[], &left)?;
                    }
                    names.insert(key.as_bytes(), group.id.as_bytes())?;
                    let joined: Vec<&String> = group.members.iter().collect();
                    reindex(index, &group.id, &joined, &[])?;
                    groups.insert(group.id.as_bytes(), value.clone())?;
                    Ok(())
                },
            ),
        )
    }

    fn stored_group(&self, id: &str) -> StoreResult<Option<StoredGroup>> {
        match self.groups.get(id.as_bytes()).map_err(backend)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn write_group(&self, group: &Group, expected: Option<u64>) -> StoreResult<GroupWrite> {
        let key = name_key(&group.display_name);
        tx_result(
            (
                &self.groups,
                &self.group_names,
                &self.user_groups,
                &self.users,
            )
                .transaction(|(groups, names, index, users)| {
                    let old = read_group(groups, &group.id)?;
                    let (version, old_members, old_key) = match (&old, expected) {
                        (None, None) => (1, Vec::new(), None),
                        (Some(_), None) => return Err(abort(StoreError::Conflict("id"))),
                        (Some(o), Some(v)) if o.version == v => (
                            v + 1,
                            o.group.members.clone(),
                            Some(name_key(&o.group.display_name)),
                        ),
                        _ => return Ok(GroupWrite::Stale),
                    };
                    // Every check before the first write: sled commits whatever a
                    // closure that returns `Ok` has staged.
                    let renamed = old_key.as_deref() != Some(key.as_str());
                    if renamed {
                        if let Some(owner) = names.get(key.as_bytes())? {
                            if owner.as_ref() != group.id.as_bytes() {
                                return Err(abort(StoreError::Conflict("displayName")));
                            }
                        }
                    }
                    let joined: Vec<&String> = group
                        .members
                        .iter()
                        .filter(|m| !old_members.contains(m))
                        .collect();
                    for m in &joined {
                        if users.get(m.as_bytes())?.is_none() {
                            return Ok(GroupWrite::NoSuchAccount((*m).clone()));
                        }
                    }
                    if renamed {
                        if let Some(k) = &old_key {
                            names.remove(k.as_bytes())?;
                        }
                        names.insert(key.as_bytes(), group.id.as_bytes())?;
                    }
                    let left: Vec<&String> = old_members
                        .iter()
                        .filter(|m| !group.members.contains(m))
                        .collect();
                    reindex(index, &group.id, &joined, &left)?;
                    let stored = StoredGroup {
                        version,
                        group: group.clone(),
                    };
                    groups.insert(group.id.as_bytes(), encode(&stored).map_err(abort)?)?;
                    Ok(GroupWrite::Written)
                }),
        )
    }
}

#[async_trait]
impl GroupStore for SledStore {
    async fn create_group(&self, group: &Group) -> StoreResult<GroupWrite> {
        self.write_group(group, None)
    }

    async fn group(&self, id: &str) -> StoreResult<Option<Versioned<Group>>> {
        Ok(self.stored_group(id)?.map(|s| Versioned {
            value: s.group,
            version: s.version,
        }))
    }

    async fn find_group(&self, display_name: &str) -> StoreResult<Option<Versioned<Group>>> {
        let key = name_key(display_name);
        match self.group_names.get(key.as_bytes()).map_err(backend)? {
            Some(id) => self.group(&String::from_utf8_lossy(&id)).await,
            None => Ok(None),
        }
    }

    async fn swap_group(&self, group: &Group, expected: u64) -> StoreResult<GroupWrite> {
        self.write_group(group, Some(expected))
    }

    async fn delete_group(&self, id: &str, expected: Option<u64>) -> StoreResult<bool> {
        tx_result(
            (&self.groups, &self.group_names, &self.user_groups).transaction(
                |(groups, names, index)| {
                    let Some(old) = read_group(groups, id)? else {
                        return Ok(false);
                    };
                    if expected.is_some_and(|v| v != old.version) {
                        return Ok(false);
                    }
                    let key = name_key(&old.group.display_name);
                    if names
                        .get(key.as_bytes())?
                        .is_some_and(|owner| owner.as_ref() == id.as_bytes())
                    {
                        names.remove(key.as_bytes())?;
                    }
                    let left: Vec<&String> = old.group.members.iter().collect();
                    reindex(index, id, &[], &left)?;
                    groups.remove(id.as_bytes())?;
                    Ok(true)
                },
            ),
        )
    }

    async fn groups_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Versioned<Group>>> {
        let range = match after {
            Some(id) => self.groups.range::<&[u8], _>((
                std::ops::Bound::Excluded(id.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.groups.range::<&[u8], _>(..),
        };
        range
            .values()
            .take(limit)
            .map(|v| {
                let s: StoredGroup = decode(&v.map_err(backend)?)?;
                Ok(Versioned {
                    value: s.group,
                    version: s.version,
                })
            })
            .collect()
    }

    async fn memberships(
        &self,
        user_ids: &[String],
    ) -> StoreResult<BTreeMap<String, Vec<Membership>>> {
        let mut out = BTreeMap::new();
        let mut cache: BTreeMap<String, Option<Membership>> = BTreeMap::new();
        for uid in user_ids {
            let ids: Vec<String> = match self.user_groups.get(uid.as_bytes()).map_err(backend)? {
                Some(bytes) => decode(&bytes)?,
                None => continue,
            };
            let mut groups = Vec::new();
            for gid in ids {
                if !cache.contains_key(&gid) {
                    let m = self.stored_group(&gid)?.map(|s| Membership {
                        group_id: s.group.id,
                        display_name: s.group.display_name,
                        roles: s.group.roles,
                    });
                    cache.insert(gid.clone(), m);
                }
                if let Some(Some(m)) = cache.get(&gid) {
                    groups.push(m.clone());
                }
            }
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            out.insert(uid.clone(), groups);
        }
        Ok(out)
    }
}
