//! The sled side of `usher store copy`: every record tree walked a batch at a time in
//! key order, and records written back as they are, with the index trees (usernames,
//! emails, identities by account, sessions and grants by account and session) kept in
//! step in the same transaction as the record they point to.

use std::ops::Bound;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::credentials::StoredEmailCode;
use super::{backend, decode, encode, fold, identity_key, owned_by_other, tx_result, SledStore};
use crate::store::transfer::{Kind, Record, Sink, Tally, Transfer, BATCH};
use crate::store::*;
use async_trait::async_trait;

/// A tree's key as text; keys are always written from strings.
fn text(tree: &str, bytes: &[u8]) -> StoreResult<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("a key of the {tree} tree is not UTF-8")))
}

/// One record from an entry of `kind`'s tree; `None` for an entry that holds nothing
/// to copy (an account's emptied recovery-code list).
fn record_of(kind: Kind, key: &[u8], value: &[u8]) -> StoreResult<Option<Record>> {
    let name = kind.label();
    let key = text(name, key)?;
    let value_text = || text(name, value);
    Ok(Some(match kind {
        Kind::Users => Record::User(decode(value)?),
        Kind::ExternalIds => Record::ExternalId {
            user_id: key,
            external_id: value_text()?,
        },
        Kind::Identities => {
            let (connection, subject) = key
                .split_once('\0')
                .ok_or_else(|| StoreError::Corrupt(format!("identity key {key:?}")))?;
            Record::Identity {
                connection: connection.to_string(),
                subject: subject.to_string(),
                user_id: value_text()?,
            }
        }
        Kind::Groups => {
            let stored: super::groups::StoredGroup = decode(value)?;
            Record::Group {
                group: stored.group,
                version: stored.version,
            }
        }
        Kind::Totp => Record::Totp {
            user_id: key,
            credential: decode(value)?,
        },
        Kind::RecoveryCodes => {
            let mut hashes: Vec<String> = decode(value)?;
            if hashes.is_empty() {
                return Ok(None);
            }
            // Their order means nothing; sorted, exports of two backends compare.
            hashes.sort();
            Record::RecoveryCodes {
                user_id: key,
                hashes,
            }
        }
        Kind::EmailCodes => {
            let stored: StoredEmailCode = decode(value)?;
            Record::EmailCode {
                key,
                code: stored.code,
                version: stored.version,
            }
        }
        Kind::Counters => Record::Counter {
            key,
            counter: decode(value)?,
        },
        Kind::Sessions => Record::Session {
            hash: key,
            session: decode(value)?,
        },
        Kind::Flows => Record::Flow {
            id: key,
            bytes: value.to_vec(),
        },
        Kind::UpstreamStates => Record::UpstreamState {
            state_hash: key,
            flow_id: value_text()?,
        },
        Kind::Flashes => {
            let (expires_at, body) = super::flows::split_flash(value)
                .ok_or_else(|| StoreError::Corrupt(format!("flash {key:?} is too short")))?;
            Record::Flash {
                id: key,
                bytes: body.to_vec(),
                expires_at,
            }
        }
        Kind::Codes => Record::Code {
            hash: key,
            record: decode(value)?,
        },
        Kind::Grants => Record::Grant(decode(value)?),
        Kind::RefreshTokens => Record::Refresh {
            hash: key,
            record: decode(value)?,
        },
        Kind::SigningKeys => Record::SigningKey(decode(value)?),
        Kind::Secrets => Record::Secret {
            name: key,
            value: value.to_vec(),
        },
        Kind::AuditEvents => Record::AuditEvent(decode(value)?),
    }))
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl SledStore {
    /// The tree that holds `kind`'s records.
    fn tree_of(&self, kind: Kind) -> &sled::Tree {
        match kind {
            Kind::Users => &self.users,
            Kind::ExternalIds => &self.external_ids,
            Kind::Identities => &self.identities,
            Kind::Groups => &self.groups,
            Kind::Totp => &self.totp,
            Kind::RecoveryCodes => &self.recovery,
            Kind::EmailCodes => &self.email_codes,
            Kind::Counters => &self.counters,
            Kind::Sessions => &self.sessions,
            Kind::Flows => &self.flows,
            Kind::UpstreamStates => &self.upstream_states,
            Kind::Flashes => &self.flashes,
            Kind::Codes => &self.codes,
            Kind::Grants => &self.grants,
            Kind::RefreshTokens => &self.refresh,
            Kind::SigningKeys => &self.keys,
            Kind::Secrets => &self.secrets,
            Kind::AuditEvents => &self.audit,
        }
    }

    /// Up to [`BATCH`] records of `kind` after key `after`, and the last key looked at
    /// (`None` once the tree is done).
    fn batch_after(
        &self,
        kind: Kind,
        after: Option<&[u8]>,
    ) -> StoreResult<(Vec<Record>, Option<sled::IVec>)> {
        let tree = self.tree_of(kind);
        let range = match after {
            Some(key) => tree.range::<&[u8], _>((Bound::Excluded(key), Bound::Unbounded)),
            None => tree.range::<&[u8], _>(..),
        };
        let mut records = Vec::new();
        for entry in range {
            let (key, value) = entry.map_err(backend)?;
            if let Some(r) = record_of(kind, &key, &value)? {
                records.push(r);
            }
            if records.len() == BATCH {
                return Ok((records, Some(key)));
            }
        }
        Ok((records, None))
    }

    /// Write an account with its username and email index entries, replacing the
    /// record and releasing the names of an account with its id.
    fn import_user(&self, user: &User) -> StoreResult<()> {
        let value = encode(user)?;
        let uname = fold(&user.username);
        let email = user.email.as_deref().map(fold);
        let id = user.id.as_bytes();
        tx_result((&self.users, &self.usernames, &self.emails).transaction(
            |(users, names, emails)| {
                if let Some(bytes) = users.get(id)? {
                    let old: User = decode(&bytes).map_err(abort)?;
                    let old_name = fold(&old.username);
                    if names.get(old_name.as_bytes())?.is_some_and(|o| o == id) {
                        names.remove(old_name.as_bytes())?;
                    }
                    if let Some(e) = old.email.as_deref().map(fold) {
                        if emails.get(e.as_bytes())?.is_some_and(|o| o == id) {
                            emails.remove(e.as_bytes())?;
                        }
                    }
                }
                if owned_by_other(names.get(uname.as_bytes())?, &user.id)
                    || owned_by_other(emails.get(uname.as_bytes())?, &user.id)
                {
                    return Err(abort(StoreError::Conflict("username")));
                }
                if let Some(e) = &email {
                    if owned_by_other(emails.get(e.as_bytes())?, &user.id)
                        || owned_by_other(names.get(e.as_bytes())?, &user.id)
                    {
                        return Err(abort(StoreError::Conflict("email")));
                    }
                    emails.insert(e.as_bytes(), id)?;
                }
                names.insert(uname.as_bytes(), id)?;
                users.insert(id, value.clone())?;
                Ok(())
            },
        ))
    }

    /// Link an identity, moving it (and its reverse entry) from any other account.
    fn import_identity(&self, connection: &str, subject: &str, user_id: &str) -> StoreResult<()> {
        let ikey = identity_key(connection, subject);
        tx_result(
            (&self.identities, &self.user_identities).transaction(|(identities, reverse)| {
                if let Some(owner) = identities.get(ikey.as_bytes())? {
                    let owner = String::from_utf8_lossy(&owner).into_owned();
                    reverse.remove(format!("{owner}\0{ikey}").as_bytes())?;
                }
                identities.insert(ikey.as_bytes(), user_id.as_bytes())?;
                reverse.insert(format!("{user_id}\0{ikey}").as_bytes(), &[] as &[u8])?;
                Ok(())
            }),
        )
    }

    /// Write a grant with its index entries, replacing one with its id (and its
    /// entries).
    fn import_grant(&self, grant: &Grant) -> StoreResult<()> {
        let value = encode(grant)?;
        let entry = |owner: &str| format!("{owner}\0{}", grant.id);
        tx_result(
            (&self.grants, &self.user_grants, &self.session_grants).transaction(
                |(grants, users, sessions)| {
                    if let Some(bytes) = grants.get(grant.id.as_bytes())? {
                        let old: Grant = decode(&bytes).map_err(abort)?;
                        if let Some(u) = &old.data.user_id {
                            users.remove(entry(u).as_bytes())?;
                        }
                        if let Some(s) = &old.data.session {
                            sessions.remove(entry(s).as_bytes())?;
                        }
                    }
                    grants.insert(grant.id.as_bytes(), value.clone())?;
                    if let Some(u) = &grant.data.user_id {
                        users.insert(entry(u).as_bytes(), &[] as &[u8])?;
                    }
                    if let Some(s) = &grant.data.session {
                        sessions.insert(entry(s).as_bytes(), &[] as &[u8])?;
                    }
                    Ok(())
                },
            ),
        )
    }

    async fn import_one(&self, record: &Record) -> StoreResult<()> {
        match record {
            Record::User(u) => self.import_user(u),
            Record::ExternalId {
                user_id,
                external_id,
            } => self.set_external_id(user_id, Some(external_id)).await,
            Record::Identity {
                connection,
                subject,
                user_id,
            } => self.import_identity(connection, subject, user_id),
            Record::Totp {
                user_id,
                credential,
            } => self.put_totp(user_id, credential).await,
            Record::RecoveryCodes { user_id, hashes } => {
                self.put_recovery_codes(user_id, hashes).await
            }
            Record::EmailCode { key, code, version } => {
                let stored = StoredEmailCode {
                    code: code.clone(),
                    version: *version,
                };
                Self::put(&self.email_codes, key, &stored)
            }
            Record::Counter { key, counter } => Self::put(&self.counters, key, counter),
            Record::Session { hash, session } => self.put_session(hash, session).await,
            Record::Flow { id, bytes } => self.put_flow(id, bytes).await,
            Record::UpstreamState {
                state_hash,
                flow_id,
            } => self.put_upstream_state(state_hash, flow_id).await,
            Record::Flash {
                id,
                bytes,
                expires_at,
            } => self.put_flash(id, bytes, *expires_at).await,
            Record::Code { hash, record } => self.put_code(hash, record).await,
            Record::Grant(g) => self.import_grant(g),
            Record::Group { group, version } => self.import_group(group, *version),
            Record::Refresh { hash, record } => self.put_refresh(hash, record).await,
            Record::SigningKey(k) => self.put_signing_key(k).await,
            Record::Secret { name, value } => {
                self.secrets
                    .insert(name.as_bytes(), value.as_slice())
                    .map_err(backend)?;
                Ok(())
            }
            Record::AuditEvent(e) => self.append_event(e).await,
        }
    }
}

#[async_trait]
impl Transfer for SledStore {
    async fn export_kinds(&self, kinds: &[Kind], sink: &mut dyn Sink) -> StoreResult<()> {
        for &kind in kinds {
            let mut after: Option<sled::IVec> = None;
            loop {
                let (records, last) = self.batch_after(kind, after.as_deref())?;
                if !records.is_empty() && !sink.take(records).await? {
                    return Ok(());
                }
                match last {
                    Some(key) => after = Some(key),
                    None => break,
                }
            }
        }
        Ok(())
    }

    async fn import(&self, records: &[Record]) -> StoreResult<Tally> {
        // Each record in its own small transaction (with its index entries): sled
        // writes are in memory until the copy's flush makes them durable together.
        let mut written = Tally::default();
        for record in records {
            self.import_one(record).await?;
            written.add(record.kind(), record.weight());
        }
        Ok(written)
    }

    async fn census(&self) -> StoreResult<Tally> {
        self.off_runtime(|s| {
            let mut tally = Tally::default();
            for kind in Kind::ALL {
                let n = if kind == Kind::RecoveryCodes {
                    // Counted code by code: the lists are read.
                    let mut codes = 0;
                    for value in s.recovery.iter().values() {
                        codes += decode::<Vec<String>>(&value.map_err(backend)?)?.len() as u64;
                    }
                    codes
                } else {
                    s.tree_of(kind).len() as u64
                };
                tally.set(kind, n);
            }
            Ok(tally)
        })
        .await
    }
}
