//! The sled side of grants: the grant tree and its two indexes, by account and by SSO
//! session, written in one transaction with the grant; revoking through an index; the
//! sweep that removes expired grants with their index entries; and the one-time
//! indexing of grants written before the indexes existed.

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{backend, cas_update, decode, encode, tx_result, Change, SledStore};
use crate::store::*;

/// `<owner>\0<grant id>`: an account id or a session hash cannot hold a NUL.
fn index_key(owner: &str, grant_id: &str) -> String {
    format!("{owner}\0{grant_id}")
}

impl SledStore {
    pub(super) fn insert_grant(&self, grant: &Grant) -> StoreResult<bool> {
        let value = encode(grant)?;
        let by_user = grant
            .data
            .user_id
            .as_deref()
            .map(|u| index_key(u, &grant.id));
        let by_session = grant
            .data
            .session
            .as_deref()
            .map(|s| index_key(s, &grant.id));
        tx_result(
            (&self.grants, &self.user_grants, &self.session_grants).transaction(
                |(grants, users, sessions)| {
                    if grants.get(grant.id.as_bytes())?.is_some() {
                        return Ok(false);
                    }
                    grants.insert(grant.id.as_bytes(), value.clone())?;
                    if let Some(k) = &by_user {
                        users.insert(k.as_bytes(), &[] as &[u8])?;
                    }
                    if let Some(k) = &by_session {
                        sessions.insert(k.as_bytes(), &[] as &[u8])?;
                    }
                    Ok(true)
                },
            ),
        )
    }

    /// Mark one grant revoked, atomically; `true` if this call did it (it was live).
    pub(super) fn revoke_one(&self, id: &str, keep_offline: bool) -> StoreResult<bool> {
        self.revoke_one_unless(id, &|g: &Grant| keep_offline && g.offline)
    }

    /// [`revoke_one`](Self::revoke_one), sparing a grant `spare` says to keep.
    pub(super) fn revoke_one_unless(
        &self,
        id: &str,
        spare: &dyn Fn(&Grant) -> bool,
    ) -> StoreResult<bool> {
        cas_update(&self.grants, id, |current: Option<Grant>| match current {
            Some(g) if g.revoked || spare(&g) => (Change::Keep, false),
            Some(mut g) => {
                g.revoked = true;
                (Change::Put(g), true)
            }
            None => (Change::Keep, false),
        })
    }

    /// The ids a grant index lists under `owner`.
    fn indexed(index: &sled::Tree, owner: &str) -> StoreResult<Vec<String>> {
        let prefix = format!("{owner}\0");
        index
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| {
                let k = k.map_err(backend)?;
                Ok(String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            })
            .collect()
    }

    /// The grants an index lists under `owner`; an entry whose grant is gone (a sweep
    /// between the two reads) is skipped.
    pub(super) fn indexed_grants(
        &self,
        index: &sled::Tree,
        owner: &str,
    ) -> StoreResult<Vec<Grant>> {
        let mut out = Vec::new();
        for id in Self::indexed(index, owner)? {
            if let Some(g) = Self::get::<Grant>(&self.grants, &id)? {
                out.push(g);
            }
        }
        Ok(out)
    }

    pub(super) fn revoke_indexed(
        &self,
        index: &sled::Tree,
        owner: &str,
        keep_offline: bool,
    ) -> StoreResult<usize> {
        let mut revoked = 0;
        for id in Self::indexed(index, owner)? {
            if self.revoke_one(&id, keep_offline)? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Revoke the account's grants but `client_id`'s under `session`; how many this
    /// call revoked.
    pub(super) fn revoke_user_grants_except(
        &self,
        user_id: &str,
        client_id: &str,
        session: &str,
    ) -> StoreResult<usize> {
        let spare =
            |g: &Grant| g.client_id == client_id && g.data.session.as_deref() == Some(session);
        let mut revoked = 0;
        for id in Self::indexed(&self.user_grants, user_id)? {
            if self.revoke_one_unless(&id, &spare)? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    pub(super) fn move_grants(&self, from: &str, to: &str, sid: &str) -> StoreResult<usize> {
        let mut moved = 0;
        for id in Self::indexed(&self.session_grants, from)? {
            let old_key = index_key(from, &id);
            let new_key = index_key(to, &id);
            let done = tx_result((&self.grants, &self.session_grants).transaction(
                |(grants, sessions)| {
                    let Some(bytes) = grants.get(id.as_bytes())? else {
                        sessions.remove(old_key.as_bytes())?;
                        return Ok(false);
                    };
                    let mut grant: Grant =
                        decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
                    if grant.data.session.as_deref() != Some(from) {
                        return Ok(false);
                    }
                    grant.data.session = Some(to.to_string());
                    grant.data.sid = Some(sid.to_string());
                    let value = encode(&grant).map_err(ConflictableTransactionError::Abort)?;
                    grants.insert(id.as_bytes(), value)?;
                    sessions.remove(old_key.as_bytes())?;
                    sessions.insert(new_key.as_bytes(), &[] as &[u8])?;
                    Ok(true)
                },
            ))?;
            if done {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Remove grants expired before `now` together with their index entries; returns
    /// how many grants.
    pub(super) fn sweep_grants(&self, now: u64) -> StoreResult<usize> {
        let mut removed = 0;
        for entry in self.grants.iter() {
            let (key, value) = entry.map_err(backend)?;
            let Ok(grant) = decode::<Grant>(&value) else {
                continue;
            };
            if grant.expires_at >= now {
                continue;
            }
            let gone = tx_result(
                (&self.grants, &self.user_grants, &self.session_grants).transaction(
                    |(grants, users, sessions)| {
                        if grants.remove(&key)?.is_none() {
                            return Ok(false);
                        }
                        if let Some(u) = &grant.data.user_id {
                            users.remove(index_key(u, &grant.id).as_bytes())?;
                        }
                        if let Some(s) = &grant.data.session {
                            sessions.remove(index_key(s, &grant.id).as_bytes())?;
                        }
                        Ok::<_, ConflictableTransactionError<StoreError>>(true)
                    },
                ),
            )?;
            if gone {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Index the grants an older version wrote without indexes, once: an account's
    /// "revoke everything" must reach them too.
    pub(super) fn index_old_grants(&self) -> StoreResult<()> {
        if !self.user_grants.is_empty() || self.grants.is_empty() {
            return Ok(());
        }
        for entry in self.grants.iter() {
            let (_, value) = entry.map_err(backend)?;
            let Ok(grant) = decode::<Grant>(&value) else {
                continue;
            };
            if let Some(u) = &grant.data.user_id {
                self.user_grants
                    .insert(index_key(u, &grant.id), &[] as &[u8])
                    .map_err(backend)?;
            }
        }
        Ok(())
    }
}
