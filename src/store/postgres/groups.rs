//! The PostgreSQL side of groups, and the one-statement reads a page of accounts needs.
//!
//! Lock order, which every writer keeps so none waits on another in a cycle: account
//! rows first (a group write takes `FOR KEY SHARE` on the accounts it adds, an account
//! deletion its own row), then group rows. An account deletion therefore waits for a
//! group write that is adding it, or makes that write find no account.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::{col, int, json_of, storable, uint, Doc, PgStore, Tx};
use crate::store::groups::name_key;
use crate::store::*;

fn versioned(row: &Row) -> StoreResult<Versioned<Group>> {
    Ok(Versioned {
        value: json_of(row, "value")?,
        version: uint(col(row, "version")?),
    })
}

/// The first of `wanted` that is no account, taking a key-share lock on those that
/// are, so none is deleted before the transaction ends.
async fn missing_account(tx: &Tx<'_>, wanted: &[String]) -> StoreResult<Option<String>> {
    if wanted.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = wanted.iter().find(|w| !storable(w)) {
        return Ok(Some(bad.clone()));
    }
    let found: Vec<String> = tx
        .query(
            "SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR KEY SHARE",
            &[&wanted],
        )
        .await?
        .iter()
        .map(|r| col(r, "id"))
        .collect::<StoreResult<_>>()?;
    Ok(wanted.iter().find(|w| !found.contains(w)).cloned())
}

#[async_trait]
impl GroupStore for PgStore {
    async fn create_group(&self, group: &Group) -> StoreResult<GroupWrite> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        if let Some(missing) = missing_account(&tx, &group.members).await? {
            return Ok(GroupWrite::NoSuchAccount(missing));
        }
        let named = tx
            .execute(
                "INSERT INTO group_names (name, group_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name_key(&group.display_name), &group.id],
            )
            .await?;
        if named == 0 {
            return Err(StoreError::Conflict("displayName"));
        }
        let inserted = tx
            .execute(
                "INSERT INTO groups (id, created_at, version, value) VALUES ($1, $2, 1, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&group.id, &int(group.created_at), &Doc::of(group)?],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict("id"));
        }
        if !group.members.is_empty() {
            tx.execute(
                "INSERT INTO group_members (user_id, group_id) SELECT u, $2 FROM unnest($1::text[]) AS u",
                &[&group.members, &group.id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(GroupWrite::Written)
    }

    async fn group(&self, id: &str) -> StoreResult<Option<Versioned<Group>>> {
        if !storable(id) {
            return Ok(None);
        }
        let row = self
            .query_opt("SELECT version, value FROM groups WHERE id = $1", &[&id])
            .await?;
        row.map(|r| versioned(&r)).transpose()
    }

    async fn find_group(&self, display_name: &str) -> StoreResult<Option<Versioned<Group>>> {
        if !storable(display_name) {
            return Ok(None);
        }
        let row = self
            .query_opt(
                "SELECT g.version, g.value FROM group_names n JOIN groups g ON g.id = n.group_id
                 WHERE n.name = $1",
                &[&name_key(display_name)],
            )
            .await?;
        row.map(|r| versioned(&r)).transpose()
    }

    async fn swap_group(&self, group: &Group, expected: u64) -> StoreResult<GroupWrite> {
        // What changes is decided against the version the caller read; the UPDATE
        // below writes only if the group is still at it.
        let Some(old) = self.group(&group.id).await? else {
            return Ok(GroupWrite::Stale);
        };
        if old.version != expected {
            return Ok(GroupWrite::Stale);
        }
        let joined: Vec<String> = group
            .members
            .iter()
            .filter(|m| !old.value.members.contains(m))
            .cloned()
            .collect();
        let left: Vec<String> = old
            .value
            .members
            .iter()
            .filter(|m| !group.members.contains(m))
            .cloned()
            .collect();
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        if let Some(missing) = missing_account(&tx, &joined).await? {
            return Ok(GroupWrite::NoSuchAccount(missing));
        }
        let updated = tx
            .execute(
                "UPDATE groups SET value = $2, version = version + 1 WHERE id = $1 AND version = $3",
                &[&group.id, &Doc::of(group)?, &int(expected)],
            )
            .await?;
        if updated == 0 {
            return Ok(GroupWrite::Stale);
        }
        let (old_key, new_key) = (
            name_key(&old.value.display_name),
            name_key(&group.display_name),
        );
        if old_key != new_key {
            let named = tx
                .execute(
                    "INSERT INTO group_names (name, group_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[&new_key, &group.id],
                )
                .await?;
            if named == 0 {
                return Err(StoreError::Conflict("displayName"));
            }
            tx.execute(
                "DELETE FROM group_names WHERE name = $1 AND group_id = $2",
                &[&old_key, &group.id],
            )
            .await?;
        }
        if !left.is_empty() {
            tx.execute(
                "DELETE FROM group_members WHERE group_id = $1 AND user_id = ANY($2)",
                &[&group.id, &left],
            )
            .await?;
        }
        if !joined.is_empty() {
            tx.execute(
                "INSERT INTO group_members (user_id, group_id) SELECT u, $2 FROM unnest($1::text[]) AS u
                 ON CONFLICT DO NOTHING",
                &[&joined, &group.id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(GroupWrite::Written)
    }

    async fn delete_group(&self, id: &str, expected: Option<u64>) -> StoreResult<bool> {
        if !storable(id) {
            return Ok(false);
        }
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let gone = tx
            .execute(
                "DELETE FROM groups WHERE id = $1 AND ($2::bigint IS NULL OR version = $2)",
                &[&id, &expected.map(int)],
            )
            .await?;
        if gone == 0 {
            return Ok(false);
        }
        tx.execute("DELETE FROM group_names WHERE group_id = $1", &[&id])
            .await?;
        tx.execute("DELETE FROM group_members WHERE group_id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn groups_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Versioned<Group>>> {
        let after = after.unwrap_or("");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT version, value FROM groups WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await?;
        rows.iter().map(versioned).collect()
    }

    /// A page with no filter is one statement (the page and the total together); a
    /// filter on one display name or id is one index lookup; any other filter reads the
    /// groups in batches and tests them in memory.
    async fn query_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage> {
        use crate::store::groups::{scan_groups, GroupAttr};
        use crate::store::query::{Filter, Literal, Op};
        let one = |found: Option<Versioned<Group>>| {
            let groups: Vec<Versioned<Group>> = found.into_iter().collect();
            let total = groups.len();
            GroupPage {
                groups: groups
                    .into_iter()
                    .skip(query.start)
                    .take(query.count)
                    .collect(),
                total,
            }
        };
        match &query.filter {
            None => {}
            Some(Filter::Compare(GroupAttr::DisplayName, Op::Eq, Literal::Str(name))) => {
                return Ok(one(self.find_group(name).await?));
            }
            Some(Filter::Compare(GroupAttr::Id, Op::Eq, Literal::Str(id))) => {
                return Ok(one(self.group(id).await?));
            }
            Some(_) => return scan_groups(self, query).await,
        }
        let limit = i64::try_from(query.count).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.start).unwrap_or(i64::MAX);
        // The outer join keeps a row (with no group) when the page is empty, so the
        // total still comes back.
        let rows = self
            .query(
                "SELECT t.total, p.version, p.value FROM (SELECT count(*) AS total FROM groups) t
                 LEFT JOIN (SELECT version, value, created_at, id FROM groups
                            ORDER BY created_at, id LIMIT $1 OFFSET $2) p ON true
                 ORDER BY p.created_at, p.id",
                &[&limit, &offset],
            )
            .await?;
        let total: i64 = match rows.first() {
            Some(r) => col(r, "total")?,
            None => 0,
        };
        let mut groups = Vec::new();
        for r in &rows {
            let version: Option<i64> = col(r, "version")?;
            if let Some(v) = version {
                groups.push(Versioned {
                    value: json_of(r, "value")?,
                    version: uint(v),
                });
            }
        }
        Ok(GroupPage {
            groups,
            total: uint(total) as usize,
        })
    }

    async fn memberships(
        &self,
        user_ids: &[String],
    ) -> StoreResult<BTreeMap<String, Vec<Membership>>> {
        let ids: Vec<&String> = user_ids.iter().filter(|u| storable(u)).collect();
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows = self
            .query(
                "SELECT m.user_id, g.id, g.value->>'display_name' AS name,
                        coalesce(g.value->'roles', '[]') AS roles
                 FROM group_members m JOIN groups g ON g.id = m.group_id
                 WHERE m.user_id = ANY($1) ORDER BY m.user_id, g.id",
                &[&ids],
            )
            .await?;
        let mut out: BTreeMap<String, Vec<Membership>> = BTreeMap::new();
        for r in &rows {
            out.entry(col(r, "user_id")?).or_default().push(Membership {
                group_id: col(r, "id")?,
                display_name: col(r, "name")?,
                roles: json_of(r, "roles")?,
            });
        }
        Ok(out)
    }
}

/// [`UserQueryStore::user_extras`] in one statement: every extra of every account of
/// the page, whatever its size.
pub(super) async fn user_extras(
    store: &PgStore,
    user_ids: &[String],
) -> StoreResult<BTreeMap<String, UserExtras>> {
    let ids: Vec<&String> = user_ids.iter().filter(|u| storable(u)).collect();
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = store
        .query(
            "SELECT u.id,
                (SELECT e.external_id FROM external_ids e WHERE e.user_id = u.id) AS external_id,
                coalesce((SELECT jsonb_agg(jsonb_build_array(i.connection, i.subject)
                          ORDER BY i.connection, i.subject)
                          FROM identities i WHERE i.user_id = u.id), '[]') AS identities,
                EXISTS (SELECT 1 FROM totp t WHERE t.user_id = u.id AND t.confirmed) AS totp,
                coalesce((SELECT jsonb_agg(jsonb_build_object('group_id', g.id,
                          'display_name', g.value->>'display_name',
                          'roles', coalesce(g.value->'roles', '[]')) ORDER BY g.id)
                          FROM group_members m JOIN groups g ON g.id = m.group_id
                          WHERE m.user_id = u.id), '[]') AS groups
             FROM unnest($1::text[]) AS u(id)",
            &[&ids],
        )
        .await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let identities: Json<Vec<(String, String)>> = col(r, "identities")?;
        out.insert(
            col(r, "id")?,
            UserExtras {
                external_id: col(r, "external_id")?,
                identities: identities.0,
                totp: col(r, "totp")?,
                groups: json_of(r, "groups")?,
            },
        );
    }
    Ok(out)
}
