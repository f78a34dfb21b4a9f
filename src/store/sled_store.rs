//! The embedded store: one sled database, one tree per kind of record, JSON values.
//!
//! Indexes (username, email) are kept in their own trees and written in the same
//! transaction as the record they point to, so a crash never leaves an account without
//! its index or an index pointing at nothing.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::*;
use crate::secret::ct_eq;

mod accounts;
mod group_commit;

pub struct SledStore {
    db: sled::Db,
    /// Concurrent flushes share one fsync.
    group_commit: group_commit::GroupCommit,
    users: sled::Tree,
    usernames: sled::Tree,
    emails: sled::Tree,
    totp: sled::Tree,
    recovery: sled::Tree,
    email_codes: sled::Tree,
    audit: sled::Tree,
    identities: sled::Tree,
    upstream_states: sled::Tree,
    user_identities: sled::Tree,
    attempts: sled::Tree,
    sessions: sled::Tree,
    /// `<user id>\0<session hash>` → nothing: the per-account session index.
    user_sessions: sled::Tree,
    /// user id → SCIM `externalId`.
    external_ids: sled::Tree,
    flows: sled::Tree,
    /// How many entries `flows` holds, kept by every insert and removal so the
    /// metrics gauge needs no scan of what may be 100,000 sign-ins in progress.
    live_flows: std::sync::atomic::AtomicUsize,
    codes: sled::Tree,
    grants: sled::Tree,
    refresh: sled::Tree,
    keys: sled::Tree,
    secrets: sled::Tree,
    /// Tests only: runs once at the start of the next `find_user`, to put another
    /// request's write between two reads of the code under test.
    #[cfg(test)]
    pub(crate) before_find_user: std::sync::Mutex<Option<TestHook>>,
}

/// A test's one-off action on the store (see `SledStore::before_find_user`).
#[cfg(test)]
pub(crate) type TestHook = Box<dyn FnOnce(&SledStore) + Send>;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

impl SledStore {
    /// Open (or create) the store in `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let db = sled::Config::new().path(path).open().map_err(backend)?;
        Self::from_db(db)
    }

    /// A store in a temporary folder that disappears when dropped (tests, fixtures).
    pub fn temporary() -> StoreResult<Self> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(backend)?;
        Self::from_db(db)
    }

    fn from_db(db: sled::Db) -> StoreResult<Self> {
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let flows = tree("flows")?;
        let live_flows = std::sync::atomic::AtomicUsize::new(flows.len());
        let store = SledStore {
            users: tree("users")?,
            usernames: tree("usernames")?,
            emails: tree("emails")?,
            totp: tree("totp")?,
            recovery: tree("recovery_codes")?,
            email_codes: tree("email_codes")?,
            audit: tree("audit")?,
            identities: tree("identities")?,
            upstream_states: tree("upstream_states")?,
            user_identities: tree("user_identities")?,
            attempts: tree("attempts")?,
            sessions: tree("sessions")?,
            user_sessions: tree("user_sessions")?,
            external_ids: tree("external_ids")?,
            flows,
            live_flows,
            codes: tree("codes")?,
            grants: tree("grants")?,
            refresh: tree("refresh")?,
            keys: tree("keys")?,
            secrets: tree("secrets")?,
            db,
            group_commit: Default::default(),
            #[cfg(test)]
            before_find_user: Default::default(),
        };
        store.index_old_sessions()?;
        Ok(store)
    }

    fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &str) -> StoreResult<Option<T>> {
        match tree.get(key).map_err(backend)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(tree: &sled::Tree, key: &str, value: &T) -> StoreResult<()> {
        tree.insert(key, encode(value)?).map_err(backend)?;
        Ok(())
    }
}

/// What a compare-and-swap update does with the record it was shown.
enum Change<T> {
    Keep,
    Put(T),
}

/// Read-decide-write on one key, retried until the write lands on the value the
/// decision was made from. A parallel writer makes the swap fail and the decision is
/// taken again on what that writer stored, so single-use things are used once.
fn cas_update<T, R>(
    tree: &sled::Tree,
    key: &str,
    mut decide: impl FnMut(Option<T>) -> (Change<T>, R),
) -> StoreResult<R>
where
    T: Serialize + DeserializeOwned,
{
    loop {
        let current = tree.get(key).map_err(backend)?;
        let value = match &current {
            Some(bytes) => Some(decode(bytes)?),
            None => None,
        };
        let (change, result) = decide(value);
        let new = match change {
            Change::Keep => return Ok(result),
            Change::Put(v) => encode(&v)?,
        };
        if tree
            .compare_and_swap(key, current, Some(new))
            .map_err(backend)?
            .is_ok()
        {
            return Ok(result);
        }
    }
}

/// Map a transaction's outcome, turning an abort into the error it carried.
fn tx_result<T>(r: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(backend(e)),
    }
}

impl UserStore for SledStore {
    fn create_user(&self, user: &User) -> StoreResult<()> {
        let value = encode(user)?;
        let uname = fold(&user.username);
        let email = user.email.as_deref().map(fold);
        tx_result((&self.users, &self.usernames, &self.emails).transaction(
            |(users, names, emails)| {
                if names.get(uname.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        "username",
                    )));
                }
                if let Some(email) = &email {
                    if emails.get(email.as_bytes())?.is_some() {
                        return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                            "email",
                        )));
                    }
                    emails.insert(email.as_bytes(), user.id.as_bytes())?;
                }
                if users.get(user.id.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        "id",
                    )));
                }
                names.insert(uname.as_bytes(), user.id.as_bytes())?;
                users.insert(user.id.as_bytes(), value.clone())?;
                Ok(())
            },
        ))
    }

    fn user(&self, id: &str) -> StoreResult<Option<User>> {
        Self::get(&self.users, id)
    }

    fn find_user(&self, login: &str) -> StoreResult<Option<User>> {
        #[cfg(test)]
        if let Some(hook) = self.before_find_user.lock().ok().and_then(|mut h| h.take()) {
            hook(self);
        }
        let key = fold(login);
        let id = match self.usernames.get(key.as_bytes()).map_err(backend)? {
            Some(id) => Some(id),
            None => self.emails.get(key.as_bytes()).map_err(backend)?,
        };
        match id {
            Some(id) => self.user(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn update_user(&self, user: &User) -> StoreResult<()> {
        let value = encode(user)?;
        let uname = fold(&user.username);
        let email = user.email.as_deref().map(fold);
        tx_result((&self.users, &self.usernames, &self.emails).transaction(
            |(users, names, emails)| {
                let old: User = match users.get(user.id.as_bytes())? {
                    Some(bytes) => decode(&bytes).map_err(ConflictableTransactionError::Abort)?,
                    None => return Err(ConflictableTransactionError::Abort(StoreError::NotFound)),
                };
                let old_name = fold(&old.username);
                if old_name != uname {
                    if names.get(uname.as_bytes())?.is_some() {
                        return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                            "username",
                        )));
                    }
                    names.remove(old_name.as_bytes())?;
                    names.insert(uname.as_bytes(), user.id.as_bytes())?;
                }
                let old_email = old.email.as_deref().map(fold);
                if old_email != email {
                    if let Some(new) = &email {
                        if emails.get(new.as_bytes())?.is_some() {
                            return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                                "email",
                            )));
                        }
                        emails.insert(new.as_bytes(), user.id.as_bytes())?;
                    }
                    if let Some(old) = old_email {
                        emails.remove(old.as_bytes())?;
                    }
                }
                users.insert(user.id.as_bytes(), value.clone())?;
                Ok(())
            },
        ))
    }

    fn user_count(&self) -> StoreResult<usize> {
        Ok(self.users.len())
    }

    fn users(&self) -> StoreResult<Vec<User>> {
        self.all_users()
    }

    fn delete_user(&self, id: &str) -> StoreResult<()> {
        self.delete_account(id)
    }

    fn external_id(&self, user_id: &str) -> StoreResult<Option<String>> {
        self.external_id_of(user_id)
    }

    fn set_external_id(&self, user_id: &str, external_id: Option<&str>) -> StoreResult<()> {
        self.put_external_id(user_id, external_id)
    }
}

impl CredentialStore for SledStore {
    fn put_totp(&self, user_id: &str, credential: &TotpCredential) -> StoreResult<()> {
        Self::put(&self.totp, user_id, credential)
    }

    fn create_totp(
        &self,
        user_id: &str,
        credential: &TotpCredential,
    ) -> StoreResult<TotpCredential> {
        let created = self
            .totp
            .compare_and_swap(user_id, None as Option<&[u8]>, Some(encode(credential)?))
            .map_err(backend)?;
        match created {
            Ok(()) => Ok(credential.clone()),
            // Expecting nothing, a failed swap always reports what is there.
            Err(e) => e
                .current
                .map_or_else(|| Ok(credential.clone()), |bytes| decode(&bytes)),
        }
    }

    fn totp(&self, user_id: &str) -> StoreResult<Option<TotpCredential>> {
        Self::get(&self.totp, user_id)
    }

    fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        self.totp.remove(user_id).map_err(backend)?;
        Ok(())
    }

    fn accept_totp_step(&self, user_id: &str, step: u64) -> StoreResult<bool> {
        cas_update(
            &self.totp,
            user_id,
            |current: Option<TotpCredential>| match current {
                Some(mut c) if step > c.last_step => {
                    c.last_step = step;
                    (Change::Put(c), true)
                }
                _ => (Change::Keep, false),
            },
        )
    }

    fn put_recovery_codes(&self, user_id: &str, hashes: &[String]) -> StoreResult<()> {
        Self::put(&self.recovery, user_id, &hashes)
    }

    fn consume_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool> {
        cas_update(&self.recovery, user_id, |current: Option<Vec<String>>| {
            let Some(mut hashes) = current else {
                return (Change::Keep, false);
            };
            // Look at every entry, so the time taken does not say which one matched.
            let mut found = None;
            for (i, h) in hashes.iter().enumerate() {
                if ct_eq(h.as_bytes(), hash.as_bytes()) {
                    found = Some(i);
                }
            }
            match found {
                Some(i) => {
                    hashes.remove(i);
                    (Change::Put(hashes), true)
                }
                None => (Change::Keep, false),
            }
        })
    }

    fn recovery_codes_left(&self, user_id: &str) -> StoreResult<usize> {
        let hashes: Option<Vec<String>> = Self::get(&self.recovery, user_id)?;
        Ok(hashes.map_or(0, |h| h.len()))
    }

    fn put_email_code(&self, key: &str, code: &EmailCode) -> StoreResult<()> {
        Self::put(&self.email_codes, key, code)
    }

    fn email_code(&self, key: &str) -> StoreResult<Option<EmailCode>> {
        Self::get(&self.email_codes, key)
    }

    fn issue_email_code(
        &self,
        key: &str,
        code_hash: &str,
        now: u64,
        ttl: u64,
        window: u64,
        max_sends: usize,
    ) -> StoreResult<EmailIssue> {
        cas_update(&self.email_codes, key, |current: Option<EmailCode>| {
            let mut sent: Vec<u64> = current
                .map(|c| c.sent_at)
                .unwrap_or_default()
                .into_iter()
                .filter(|&t| t.saturating_add(window) > now)
                .collect();
            if sent.len() >= max_sends {
                let oldest = sent.iter().copied().min().unwrap_or(now);
                let retry_at = oldest.saturating_add(window);
                return (Change::Keep, EmailIssue::TooMany { retry_at });
            }
            sent.push(now);
            let record = EmailCode {
                code_hash: code_hash.to_string(),
                expires_at: now.saturating_add(ttl),
                sent_at: sent,
                wrong: 0,
            };
            (Change::Put(record), EmailIssue::Issued)
        })
    }

    fn consume_email_code(
        &self,
        key: &str,
        code_hash: &str,
        now: u64,
        max_wrong: u32,
    ) -> StoreResult<EmailCheck> {
        cas_update(&self.email_codes, key, |current: Option<EmailCode>| {
            let Some(mut record) = current.filter(|c| !c.code_hash.is_empty()) else {
                return (Change::Keep, EmailCheck::Missing);
            };
            // The record outlives its code (cleared, not removed) so that the send
            // history keeps counting against the resend limit.
            if record.expires_at <= now {
                record.code_hash.clear();
                return (Change::Put(record), EmailCheck::Expired);
            }
            if ct_eq(record.code_hash.as_bytes(), code_hash.as_bytes()) {
                record.code_hash.clear();
                return (Change::Put(record), EmailCheck::Ok);
            }
            record.wrong = record.wrong.saturating_add(1);
            let tries_left = max_wrong.saturating_sub(record.wrong);
            if tries_left == 0 {
                record.code_hash.clear();
            }
            (Change::Put(record), EmailCheck::Wrong { tries_left })
        })
    }
}

impl AttemptStore for SledStore {
    fn attempts(&self, key: &str) -> StoreResult<Attempts> {
        Ok(Self::get(&self.attempts, key)?.unwrap_or_default())
    }

    fn record_failure(&self, key: &str, now: u64, max: u32, window: u64) -> StoreResult<Attempts> {
        // update_and_fetch retries on contention, so parallel failures all count.
        let mut result = Attempts::default();
        let mut err = None;
        self.attempts
            .update_and_fetch(key, |old| {
                let mut a: Attempts = old
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                if a.locked_until != 0 && a.locked_until <= now {
                    // A lock that ran out starts a fresh count.
                    a = Attempts::default();
                }
                if now.saturating_sub(a.window_start) >= window {
                    a.failures = 0;
                    a.window_start = now;
                }
                a.failures += 1;
                if a.failures >= max {
                    a.locked_until = now + window;
                }
                result = a;
                match serde_json::to_vec(&a) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        err = Some(e.to_string());
                        old.map(|b| b.to_vec())
                    }
                }
            })
            .map_err(backend)?;
        match err {
            Some(e) => Err(StoreError::Corrupt(e)),
            None => Ok(result),
        }
    }

    fn clear_attempts(&self, key: &str) -> StoreResult<()> {
        self.attempts.remove(key).map_err(backend)?;
        Ok(())
    }
}

impl FlowStore for SledStore {
    fn put_flow(&self, id: &str, bytes: &[u8]) -> StoreResult<()> {
        if self.flows.insert(id, bytes).map_err(backend)?.is_none() {
            self.live_flows.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn flow(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.flows.get(id).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn delete_flow(&self, id: &str) -> StoreResult<()> {
        if self.flows.remove(id).map_err(backend)?.is_some() {
            self.forget_flows(1);
        }
        Ok(())
    }

    fn flow_count(&self) -> usize {
        self.live_flows.load(Ordering::Relaxed)
    }

    fn put_upstream_state(&self, state_hash: &str, flow_id: &str) -> StoreResult<()> {
        self.upstream_states
            .insert(state_hash, flow_id.as_bytes())
            .map_err(backend)?;
        Ok(())
    }

    fn take_upstream_state(&self, state_hash: &str) -> StoreResult<Option<String>> {
        // `remove` is atomic: exactly one caller sees the value.
        Ok(self
            .upstream_states
            .remove(state_hash)
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn sweep_flows(&self, cutoff: u64) -> StoreResult<usize> {
        // Ids start with their creation time in fixed-width hex, so the old ones are a
        // prefix range of the tree.
        let end = format!("{cutoff:016x}");
        let mut removed = 0;
        for entry in self.flows.range(..end.as_bytes()) {
            let (key, _) = entry.map_err(backend)?;
            // A flow finished meanwhile is not counted twice.
            if self.flows.remove(key).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        self.forget_flows(removed);
        // Round trips that never came back: their value is the (time-prefixed) flow id.
        for entry in self.upstream_states.iter() {
            let (key, flow_id) = entry.map_err(backend)?;
            let started = crate::crypto::id_time(&String::from_utf8_lossy(&flow_id));
            if started.is_none_or(|t| t < cutoff) {
                self.upstream_states.remove(key).map_err(backend)?;
            }
        }
        Ok(removed)
    }
}

impl SledStore {
    /// Remove every record of `tree` (JSON with an `expires_at`) that expired before
    /// `cutoff`.
    fn sweep_expired(tree: &sled::Tree, cutoff: u64) -> StoreResult<usize> {
        #[derive(serde::Deserialize)]
        struct Expiring {
            expires_at: u64,
        }
        let mut removed = 0;
        for entry in tree.iter() {
            let (key, value) = entry.map_err(backend)?;
            let expired = serde_json::from_slice::<Expiring>(&value)
                .map(|e| e.expires_at < cutoff)
                .unwrap_or(false);
            if expired && tree.remove(key).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl TokenStore for SledStore {
    fn sweep_tokens(&self, now: u64) -> StoreResult<usize> {
        // Codes are kept an hour past their expiry, so a late second use is still
        // recognised as reuse and revokes what the first use issued.
        let codes = Self::sweep_expired(&self.codes, now.saturating_sub(3600))?;
        let refresh = Self::sweep_expired(&self.refresh, now)?;
        let grants = Self::sweep_expired(&self.grants, now)?;
        Ok(codes + refresh + grants)
    }

    fn put_code(&self, code_hash: &str, record: &CodeRecord) -> StoreResult<()> {
        Self::put(&self.codes, code_hash, record)
    }

    fn redeem_code(&self, code_hash: &str, grant_id: &str) -> StoreResult<Redeem> {
        loop {
            let Some(current) = self.codes.get(code_hash).map_err(backend)? else {
                return Ok(Redeem::Unknown);
            };
            let mut record: CodeRecord = decode(&current)?;
            if record.redeemed_by.is_some() {
                return Ok(Redeem::Reused(record));
            }
            record.redeemed_by = Some(grant_id.to_string());
            let swapped = self
                .codes
                .compare_and_swap(code_hash, Some(current), Some(encode(&record)?))
                .map_err(backend)?;
            if swapped.is_ok() {
                return Ok(Redeem::Fresh(record));
            }
            // Someone else changed it first: look again, and they will have won.
        }
    }

    fn create_grant(&self, grant: &Grant) -> StoreResult<bool> {
        let created = self
            .grants
            .compare_and_swap(&grant.id, None as Option<&[u8]>, Some(encode(grant)?))
            .map_err(backend)?;
        Ok(created.is_ok())
    }

    fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        Self::get(&self.grants, id)
    }

    fn revoke_grant(&self, id: &str) -> StoreResult<()> {
        let mut err = None;
        self.grants
            .update_and_fetch(id, |old| {
                let bytes = old?;
                match serde_json::from_slice::<Grant>(bytes) {
                    Ok(mut g) => {
                        g.revoked = true;
                        serde_json::to_vec(&g).ok().or_else(|| Some(bytes.to_vec()))
                    }
                    Err(e) => {
                        err = Some(e.to_string());
                        Some(bytes.to_vec())
                    }
                }
            })
            .map_err(backend)?;
        match err {
            Some(e) => Err(StoreError::Corrupt(e)),
            None => Ok(()),
        }
    }

    fn bar_grant(&self, barred: &Grant) -> StoreResult<()> {
        let mut barred = barred.clone();
        barred.revoked = true;
        if self.create_grant(&barred)? {
            return Ok(());
        }
        self.revoke_grant(&barred.id)
    }

    fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()> {
        Self::put(&self.refresh, token_hash, record)
    }

    fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new: &RefreshRecord,
    ) -> StoreResult<Rotate> {
        let new_value = encode(new)?;
        tx_result(self.refresh.transaction(|tree| {
            let Some(current) = tree.get(old_hash.as_bytes())? else {
                return Ok(Rotate::Unknown);
            };
            let mut old: RefreshRecord =
                decode(&current).map_err(ConflictableTransactionError::Abort)?;
            if old.used {
                return Ok(Rotate::Reused(old));
            }
            old.used = true;
            let old_value = encode(&old).map_err(ConflictableTransactionError::Abort)?;
            tree.insert(old_hash.as_bytes(), old_value)?;
            tree.insert(new_hash.as_bytes(), new_value.clone())?;
            Ok(Rotate::Rotated(old))
        }))
    }
}

impl KeyStore for SledStore {
    fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.keys
            .iter()
            .values()
            .map(|v| decode(&v.map_err(backend)?))
            .collect()
    }

    fn put_signing_key(&self, key: &StoredKey) -> StoreResult<()> {
        Self::put(&self.keys, &key.kid, key)
    }

    fn secret(&self, name: &str, make: &dyn Fn() -> Vec<u8>) -> StoreResult<Vec<u8>> {
        if let Some(v) = self.secrets.get(name).map_err(backend)? {
            return Ok(v.to_vec());
        }
        let fresh = make();
        // Two first starts racing: whoever lands first wins, and both use that value.
        match self
            .secrets
            .compare_and_swap(name, None as Option<&[u8]>, Some(fresh.clone()))
            .map_err(backend)?
        {
            Ok(()) => Ok(fresh),
            Err(e) => Ok(e.current.map(|v| v.to_vec()).unwrap_or(fresh)),
        }
    }
}

impl Store for SledStore {
    fn flush(&self) -> StoreResult<()> {
        self.group_commit
            .flush(|| self.db.flush().map(|_| ()).map_err(|e| e.to_string()))
            .map_err(StoreError::Backend)
    }
}

/// Key of an identity: the connection id cannot contain a NUL, so the pair is unambiguous.
fn identity_key(connection: &str, subject: &str) -> String {
    format!("{connection}\0{subject}")
}

impl IdentityStore for SledStore {
    fn identity(&self, connection: &str, subject: &str) -> StoreResult<Option<String>> {
        Ok(self
            .identities
            .get(identity_key(connection, subject))
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn create_federated_user(
        &self,
        user: &User,
        connection: &str,
        subject: &str,
    ) -> StoreResult<User> {
        let value = encode(user)?;
        let uname = fold(&user.username);
        let email = user.email.as_deref().map(fold);
        let ikey = identity_key(connection, subject);
        let rkey = format!("{}\0{ikey}", user.id);
        let winner: Option<String> = tx_result(
            (
                &self.users,
                &self.usernames,
                &self.emails,
                &self.identities,
                &self.user_identities,
            )
                .transaction(|(users, names, emails, identities, reverse)| {
                    if let Some(existing) = identities.get(ikey.as_bytes())? {
                        return Ok(Some(String::from_utf8_lossy(&existing).into_owned()));
                    }
                    if names.get(uname.as_bytes())?.is_some() {
                        return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                            "username",
                        )));
                    }
                    if let Some(email) = &email {
                        if emails.get(email.as_bytes())?.is_some() {
                            return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                                "email",
                            )));
                        }
                        emails.insert(email.as_bytes(), user.id.as_bytes())?;
                    }
                    names.insert(uname.as_bytes(), user.id.as_bytes())?;
                    users.insert(user.id.as_bytes(), value.clone())?;
                    identities.insert(ikey.as_bytes(), user.id.as_bytes())?;
                    reverse.insert(rkey.as_bytes(), &[] as &[u8])?;
                    Ok(None)
                }),
        )?;
        match winner {
            None => Ok(user.clone()),
            Some(id) => self.user(&id)?.ok_or(StoreError::NotFound),
        }
    }

    fn link_identity(&self, connection: &str, subject: &str, user_id: &str) -> StoreResult<bool> {
        let ikey = identity_key(connection, subject);
        let rkey = format!("{user_id}\0{ikey}");
        tx_result(
            (&self.identities, &self.user_identities).transaction(|(identities, reverse)| {
                if identities.get(ikey.as_bytes())?.is_some() {
                    return Ok(false);
                }
                identities.insert(ikey.as_bytes(), user_id.as_bytes())?;
                reverse.insert(rkey.as_bytes(), &[] as &[u8])?;
                Ok(true)
            }),
        )
    }

    fn identities_of(&self, user_id: &str) -> StoreResult<Vec<(String, String)>> {
        let prefix = format!("{user_id}\0");
        self.user_identities
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| {
                let k = k.map_err(backend)?;
                let text = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let (c, s) = text.split_once('\0').unwrap_or((text.as_str(), ""));
                Ok((c.to_string(), s.to_string()))
            })
            .collect()
    }

    fn unlink_identity(&self, connection: &str, subject: &str, user_id: &str) -> StoreResult<bool> {
        self.unlink(connection, subject, user_id)
    }
}

impl SledStore {
    /// Count `n` flows as gone, never below zero.
    fn forget_flows(&self, n: usize) {
        let _ = self
            .live_flows
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(n))
            });
    }

    /// Empty every tree: the fixture runner reuses one temporary store across cases,
    /// which is far cheaper than opening a new one each time.
    pub fn clear_all(&self) -> StoreResult<()> {
        for name in self.db.tree_names() {
            if name.as_ref() == b"__sled__default" {
                continue;
            }
            self.db
                .open_tree(&name)
                .map_err(backend)?
                .clear()
                .map_err(backend)?;
        }
        self.live_flows.store(0, Ordering::Relaxed);
        Ok(())
    }
}
