//! The sled side of account administration and sessions: paging, deleting an account
//! with everything that points at it, unlinking an identity, external ids, the
//! per-account session index, and the audit trail's scans and retention sweep.

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{backend, decode, encode, fold, identity_key, tx_result, SledStore};
use crate::store::*;
use async_trait::async_trait;

impl SledStore {
    /// `IdentityStore::unlink_identity`.
    pub(super) fn unlink(
        &self,
        connection: &str,
        subject: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
        let ikey = identity_key(connection, subject);
        let rkey = format!("{user_id}\0{ikey}");
        tx_result(
            (&self.identities, &self.user_identities).transaction(|(identities, reverse)| {
                match identities.get(ikey.as_bytes())? {
                    Some(owner) if owner == user_id.as_bytes() => {
                        identities.remove(ikey.as_bytes())?;
                        reverse.remove(rkey.as_bytes())?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }),
        )
    }

    /// `UserStore::users_after`.
    pub(super) fn users_from(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<User>> {
        let range = match after {
            // Keys are the ids' bytes, so sled's key order is id order.
            Some(id) => self.users.range::<&[u8], _>((
                std::ops::Bound::Excluded(id.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.users.range::<&[u8], _>(..),
        };
        range
            .values()
            .take(limit)
            .map(|v| decode(&v.map_err(backend)?))
            .collect()
    }

    /// `UserStore::external_id`.
    pub(super) fn external_id_of(&self, user_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .external_ids
            .get(user_id)
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// `UserStore::set_external_id`.
    pub(super) fn put_external_id(
        &self,
        user_id: &str,
        external_id: Option<&str>,
    ) -> StoreResult<()> {
        match external_id {
            Some(v) => self.external_ids.insert(user_id, v.as_bytes()),
            None => self.external_ids.remove(user_id),
        }
        .map_err(backend)?;
        Ok(())
    }

    /// `UserStore::delete_user`.
    pub(super) async fn delete_account(&self, id: &str) -> StoreResult<()> {
        // A transaction cannot scan, so the identities are listed first. One linked in
        // between would point at nothing, which provisioning refuses cleanly.
        let links = self.identities_of(id).await?;
        tx_result(
            (
                &self.users,
                &self.usernames,
                &self.emails,
                &self.identities,
                &self.user_identities,
                &self.external_ids,
                &self.groups,
                &self.user_groups,
            )
                .transaction(
                    |(users, names, emails, identities, reverse, external, groups, member_of)| {
                        let old: User = match users.get(id.as_bytes())? {
                            Some(bytes) => {
                                decode(&bytes).map_err(ConflictableTransactionError::Abort)?
                            }
                            None => {
                                return Err(ConflictableTransactionError::Abort(
                                    StoreError::NotFound,
                                ))
                            }
                        };
                        let points_here =
                            |v: Option<sled::IVec>| v.is_some_and(|v| v == id.as_bytes());
                        let uname = fold(&old.username);
                        if points_here(names.get(uname.as_bytes())?) {
                            names.remove(uname.as_bytes())?;
                        }
                        if let Some(email) = old.email.as_deref().map(fold) {
                            if points_here(emails.get(email.as_bytes())?) {
                                emails.remove(email.as_bytes())?;
                            }
                        }
                        for (connection, subject) in &links {
                            let ikey = identity_key(connection, subject);
                            if points_here(identities.get(ikey.as_bytes())?) {
                                identities.remove(ikey.as_bytes())?;
                            }
                            reverse.remove(format!("{id}\0{ikey}").as_bytes())?;
                        }
                        external.remove(id.as_bytes())?;
                        // Out of every group, in the same transaction: a group write
                        // adding the account either ran before (and is undone here)
                        // or runs after and finds no account.
                        for gid in super::groups::read_user_groups(member_of, id)? {
                            super::groups::drop_member(groups, &gid, id)?;
                        }
                        member_of.remove(id.as_bytes())?;
                        users.remove(id.as_bytes())?;
                        Ok(())
                    },
                ),
        )
    }

    /// Stores written before the per-account session index existed have sessions but
    /// no index: build it once, so My Account lists those sessions too.
    pub(super) fn index_old_sessions(&self) -> StoreResult<()> {
        if !self.user_sessions.is_empty() || self.sessions.is_empty() {
            return Ok(());
        }
        for entry in self.sessions.iter() {
            let (key, value) = entry.map_err(backend)?;
            let Ok(session) = decode::<Session>(&value) else {
                continue;
            };
            if let Some(uid) = &session.user_id {
                let hash = String::from_utf8_lossy(&key);
                self.user_sessions
                    .insert(session_index_key(uid, &hash), &[] as &[u8])
                    .map_err(backend)?;
            }
        }
        Ok(())
    }
}

fn session_index_key(user_id: &str, hash: &str) -> String {
    format!("{user_id}\0{hash}")
}

#[async_trait]
impl SessionStore for SledStore {
    async fn put_session(&self, id_hash: &str, session: &Session) -> StoreResult<()> {
        self.write_session(id_hash, session, false).map(|_| ())
    }

    async fn update_session(&self, id_hash: &str, session: &Session) -> StoreResult<bool> {
        self.write_session(id_hash, session, true)
    }

    async fn session(&self, id_hash: &str) -> StoreResult<Option<Session>> {
        Self::get(&self.sessions, id_hash)
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.remove_session(id_hash).map(|_| ())
    }

    async fn end_sessions_of(&self, user_id: &str, keep: Option<&str>) -> StoreResult<usize> {
        let mut ended = 0;
        for (hash, _) in self.sessions_of(user_id).await? {
            // Counted only by the call whose remove took it.
            if Some(hash.as_str()) != keep && self.remove_session(&hash)? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    async fn sessions_of(&self, user_id: &str) -> StoreResult<Vec<(String, Session)>> {
        let prefix = format!("{user_id}\0");
        let mut out = Vec::new();
        for key in self.user_sessions.scan_prefix(prefix.as_bytes()).keys() {
            let key = key.map_err(backend)?;
            let hash = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(session) = self.session(&hash).await? {
                if session.user_id.as_deref() == Some(user_id) {
                    out.push((hash, session));
                }
            }
        }
        Ok(out)
    }

    async fn sweep_sessions(&self, now: u64) -> StoreResult<usize> {
        self.off_runtime(move |s| s.sweep_sessions_now(now)).await
    }
}

#[async_trait]
impl AuditStore for SledStore {
    async fn append_event(&self, event: &AuditEvent) -> StoreResult<()> {
        Self::put(&self.audit, &event.id, event)
    }

    async fn events(&self, since: u64, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        let start = format!("{since:016x}");
        self.audit
            .range(start.as_bytes()..)
            .take(limit)
            .map(|kv| {
                let (_, v) = kv.map_err(backend)?;
                decode(&v)
            })
            .collect()
    }

    async fn scan_events(
        &self,
        since: u64,
        visit: &mut (dyn FnMut(AuditEvent) -> bool + Send),
    ) -> StoreResult<()> {
        let start = format!("{since:016x}");
        for kv in self.audit.range(start.as_bytes()..) {
            let (_, v) = kv.map_err(backend)?;
            if !visit(decode(&v)?) {
                break;
            }
        }
        Ok(())
    }

    async fn sweep_events(&self, cutoff: u64) -> StoreResult<usize> {
        self.off_runtime(move |s| s.sweep_events_now(cutoff)).await
    }
}

/// The sweeps: each walks a whole tree, so the trait methods run them on the
/// blocking pool.
impl SledStore {
    fn sweep_sessions_now(&self, now: u64) -> StoreResult<usize> {
        let mut expired = Vec::new();
        for entry in self.sessions.iter() {
            let (key, value) = entry.map_err(backend)?;
            let gone = decode::<Session>(&value).map_or(true, |s| s.expires_at <= now);
            if gone {
                expired.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        for hash in &expired {
            self.remove_session(hash)?;
        }
        Ok(expired.len())
    }

    fn sweep_events_now(&self, cutoff: u64) -> StoreResult<usize> {
        // Ids start with their time in fixed-width hex: the old ones are a key range.
        let end = format!("{cutoff:016x}");
        let mut removed = 0;
        for entry in self.audit.range(..end.as_bytes()) {
            let (key, _) = entry.map_err(backend)?;
            self.audit.remove(key).map_err(backend)?;
            removed += 1;
        }
        Ok(removed)
    }
}

impl SledStore {
    /// Remove a session and its index entry, in one transaction.
    /// Write a session with its index entry, or with `only_if_there` only replace one
    /// that is there; `true` if it was written.
    fn write_session(
        &self,
        id_hash: &str,
        session: &Session,
        only_if_there: bool,
    ) -> StoreResult<bool> {
        let value = encode(session)?;
        tx_result(
            (&self.sessions, &self.user_sessions).transaction(|(sessions, index)| {
                match sessions.get(id_hash.as_bytes())? {
                    Some(bytes) => {
                        let old: Session =
                            decode(&bytes).map_err(ConflictableTransactionError::Abort)?;
                        if let Some(uid) =
                            old.user_id.filter(|u| Some(u) != session.user_id.as_ref())
                        {
                            index.remove(session_index_key(&uid, id_hash).as_bytes())?;
                        }
                    }
                    None if only_if_there => return Ok(false),
                    None => {}
                }
                if let Some(uid) = &session.user_id {
                    index.insert(session_index_key(uid, id_hash).as_bytes(), &[] as &[u8])?;
                }
                sessions.insert(id_hash.as_bytes(), value.clone())?;
                Ok(true)
            }),
        )
    }

    /// Remove a session and its index entry; `true` if this call removed it.
    fn remove_session(&self, id_hash: &str) -> StoreResult<bool> {
        tx_result(
            (&self.sessions, &self.user_sessions).transaction(|(sessions, index)| {
                let Some(bytes) = sessions.remove(id_hash.as_bytes())? else {
                    return Ok(false);
                };
                // A corrupt record is removed all the same; only its index entry
                // cannot be found, and `sessions_of` skips such leftovers.
                if let Ok(old) = decode::<Session>(&bytes) {
                    if let Some(uid) = old.user_id {
                        index.remove(session_index_key(&uid, id_hash).as_bytes())?;
                    }
                }
                Ok(true)
            }),
        )
    }
}
