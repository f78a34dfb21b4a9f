//! The embedded store: one sled database, one tree per kind of record, JSON values.
//!
//! Indexes (username, email) are kept in their own trees and written in the same
//! transaction as the record they point to, so a crash never leaves an account without
//! its index or an index pointing at nothing.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::*;

mod accounts;
mod credentials;
mod flows;
mod grants;
mod group_commit;
mod groups;
mod transfer;

/// The sled backend. A handle: clones share one database, so blocking work (the
/// fsync of [`Store::flush`], expiry sweeps that walk a tree) moves to the blocking
/// pool with a clone while small reads and writes run where they are called.
#[derive(Clone)]
pub struct SledStore {
    trees: Arc<Trees>,
}

impl std::ops::Deref for SledStore {
    type Target = Trees;
    fn deref(&self) -> &Trees {
        &self.trees
    }
}

/// The database and its trees.
pub struct Trees {
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
    /// key → `Counter` (`CounterStore`).
    counters: sled::Tree,
    sessions: sled::Tree,
    /// `<user id>\0<session hash>` → nothing: the per-account session index.
    user_sessions: sled::Tree,
    /// user id → SCIM `externalId`.
    external_ids: sled::Tree,
    flows: sled::Tree,
    /// id → expiry (8 bytes, big-endian) followed by the message (`FlashStore`).
    flashes: sled::Tree,
    /// How many entries `flows` holds, kept by every insert and removal so the
    /// metrics gauge needs no scan of what may be 100,000 sign-ins in progress.
    live_flows: std::sync::atomic::AtomicUsize,
    codes: sled::Tree,
    grants: sled::Tree,
    /// `<user id>\0<grant id>` → nothing: grants by account.
    user_grants: sled::Tree,
    /// `<session hash>\0<grant id>` → nothing: grants by SSO session.
    session_grants: sled::Tree,
    refresh: sled::Tree,
    keys: sled::Tree,
    secrets: sled::Tree,
    /// group id → `groups::StoredGroup` (the group and its version).
    groups: sled::Tree,
    /// folded display name → group id.
    group_names: sled::Tree,
    /// account id → the ids of its groups (a JSON list).
    user_groups: sled::Tree,
}

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
        // The folder's lock may still be held for a moment by a store of the same folder
        // being dropped (its flusher thread lets go last) or by a process that is just
        // exiting: wait for it briefly rather than fail a restart.
        let mut waited = 0;
        loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => return Self::from_db(db),
                Err(sled::Error::Io(e)) if lock_held(&e) && waited < 40 => {
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(backend(e)),
            }
        }
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
        let trees = Trees {
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
            counters: tree("counters")?,
            sessions: tree("sessions")?,
            user_sessions: tree("user_sessions")?,
            external_ids: tree("external_ids")?,
            flows,
            flashes: tree("flashes")?,
            live_flows,
            codes: tree("codes")?,
            grants: tree("grants")?,
            user_grants: tree("user_grants")?,
            session_grants: tree("session_grants")?,
            refresh: tree("refresh")?,
            keys: tree("keys")?,
            secrets: tree("secrets")?,
            groups: tree("groups")?,
            group_names: tree("group_names")?,
            user_groups: tree("user_groups")?,
            db,
            group_commit: Default::default(),
        };
        let store = SledStore {
            trees: Arc::new(trees),
        };
        store.index_old_sessions()?;
        store.index_old_grants()?;
        store.migrate_attempts()?;
        Ok(store)
    }

    /// Run blocking work (an fsync, a sweep over a whole tree) on the blocking pool,
    /// so it never holds up an async worker; inline when there is no runtime.
    async fn off_runtime<T: Send + 'static>(
        &self,
        work: impl FnOnce(&SledStore) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        if tokio::runtime::Handle::try_current().is_err() {
            return work(self);
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
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
    Remove,
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
            Change::Put(v) => Some(encode(&v)?),
            Change::Remove => None,
        };
        if tree
            .compare_and_swap(key, current, new)
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

/// Whether opening failed only because another handle still holds the folder's lock
/// (sled reports it as `Other` with the OS's would-block inside).
fn lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// Whether an index entry names an account other than `user_id`.
fn owned_by_other(entry: Option<sled::IVec>, user_id: &str) -> bool {
    entry.is_some_and(|owner| owner.as_ref() != user_id.as_bytes())
}

#[async_trait]
impl UserStore for SledStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let value = encode(user)?;
        let uname = fold(&user.username);
        let email = user.email.as_deref().map(fold);
        tx_result((&self.users, &self.usernames, &self.emails).transaction(
            |(users, names, emails)| {
                // One namespace for sign-in names: a username may not be another
                // account's email, nor an email another account's username.
                if names.get(uname.as_bytes())?.is_some()
                    || owned_by_other(emails.get(uname.as_bytes())?, &user.id)
                {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        "username",
                    )));
                }
                if let Some(email) = &email {
                    if emails.get(email.as_bytes())?.is_some()
                        || owned_by_other(names.get(email.as_bytes())?, &user.id)
                    {
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

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        Self::get(&self.users, id)
    }

    async fn find_user(&self, login: &str) -> StoreResult<Option<User>> {
        let key = fold(login);
        let id = match self.usernames.get(key.as_bytes()).map_err(backend)? {
            Some(id) => Some(id),
            None => self.emails.get(key.as_bytes()).map_err(backend)?,
        };
        match id {
            Some(id) => self.user(&String::from_utf8_lossy(&id)).await,
            None => Ok(None),
        }
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
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
                    if names.get(uname.as_bytes())?.is_some()
                        || owned_by_other(emails.get(uname.as_bytes())?, &user.id)
                    {
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
                        if emails.get(new.as_bytes())?.is_some()
                            || owned_by_other(names.get(new.as_bytes())?, &user.id)
                        {
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

    async fn user_count(&self) -> StoreResult<usize> {
        Ok(self.users.len())
    }

    async fn users_after(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<User>> {
        self.users_from(after, limit)
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        self.delete_account(id).await
    }

    async fn external_id(&self, user_id: &str) -> StoreResult<Option<String>> {
        self.external_id_of(user_id)
    }

    async fn set_external_id(&self, user_id: &str, external_id: Option<&str>) -> StoreResult<()> {
        self.put_external_id(user_id, external_id)
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

#[async_trait]
impl TokenStore for SledStore {
    async fn sweep_tokens(&self, now: u64) -> StoreResult<usize> {
        self.off_runtime(move |s| s.sweep_tokens_now(now)).await
    }

    async fn put_code(&self, code_hash: &str, record: &CodeRecord) -> StoreResult<()> {
        Self::put(&self.codes, code_hash, record)
    }

    async fn redeem_code(&self, code_hash: &str, grant_id: &str) -> StoreResult<Redeem> {
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

    async fn create_grant(&self, grant: &Grant) -> StoreResult<bool> {
        self.insert_grant(grant)
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        Self::get(&self.grants, id)
    }

    async fn revoke_grant(&self, id: &str) -> StoreResult<()> {
        self.revoke_one(id, false).map(|_| ())
    }

    async fn grants_of(&self, user_id: &str) -> StoreResult<Vec<Grant>> {
        self.indexed_grants(&self.user_grants, user_id)
    }

    async fn session_grants(&self, session: &str) -> StoreResult<Vec<Grant>> {
        self.indexed_grants(&self.session_grants, session)
    }

    async fn revoke_grants_of(&self, user_id: &str) -> StoreResult<usize> {
        self.revoke_indexed(&self.user_grants, user_id, false)
    }

    async fn revoke_grants_of_except(
        &self,
        user_id: &str,
        client_id: &str,
        session: &str,
    ) -> StoreResult<usize> {
        self.revoke_user_grants_except(user_id, client_id, session)
    }

    async fn revoke_session_grants(&self, session: &str, keep_offline: bool) -> StoreResult<usize> {
        self.revoke_indexed(&self.session_grants, session, keep_offline)
    }

    async fn move_session_grants(&self, from: &str, to: &str, sid: &str) -> StoreResult<usize> {
        self.move_grants(from, to, sid)
    }

    async fn bar_grant(&self, barred: &Grant) -> StoreResult<()> {
        let mut barred = barred.clone();
        barred.revoked = true;
        if self.create_grant(&barred).await? {
            return Ok(());
        }
        self.revoke_grant(&barred.id).await
    }

    async fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()> {
        Self::put(&self.refresh, token_hash, record)
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
        Self::get(&self.refresh, token_hash)
    }

    async fn rotate_refresh(
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

#[async_trait]
impl KeyStore for SledStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.keys
            .iter()
            .values()
            .map(|v| decode(&v.map_err(backend)?))
            .collect()
    }

    async fn put_signing_key(&self, key: &StoredKey) -> StoreResult<()> {
        Self::put(&self.keys, &key.kid, key)
    }

    async fn add_signing_key(&self, key: &StoredKey) -> StoreResult<bool> {
        let added = self
            .keys
            .compare_and_swap(&key.kid, None as Option<&[u8]>, Some(encode(key)?))
            .map_err(backend)?;
        Ok(added.is_ok())
    }

    async fn secret(
        &self,
        name: &str,
        make: &(dyn Fn() -> Vec<u8> + Send + Sync),
    ) -> StoreResult<Vec<u8>> {
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

#[async_trait]
impl UserQueryStore for SledStore {}

#[async_trait]
impl Store for SledStore {
    async fn flush(&self) -> StoreResult<()> {
        self.off_runtime(|s| {
            s.group_commit
                .flush(|| s.db.flush().map(|_| ()).map_err(|e| e.to_string()))
                .map_err(StoreError::Backend)
        })
        .await
    }

    fn transfer(&self) -> Option<&dyn Transfer> {
        Some(self)
    }
}

/// Key of an identity: the connection id cannot contain a NUL, so the pair is unambiguous.
fn identity_key(connection: &str, subject: &str) -> String {
    format!("{connection}\0{subject}")
}

#[async_trait]
impl IdentityStore for SledStore {
    async fn identity(&self, connection: &str, subject: &str) -> StoreResult<Option<String>> {
        Ok(self
            .identities
            .get(identity_key(connection, subject))
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn create_federated_user(
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
                    if names.get(uname.as_bytes())?.is_some()
                        || owned_by_other(emails.get(uname.as_bytes())?, &user.id)
                    {
                        return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                            "username",
                        )));
                    }
                    if let Some(email) = &email {
                        if emails.get(email.as_bytes())?.is_some()
                            || owned_by_other(names.get(email.as_bytes())?, &user.id)
                        {
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
            Some(id) => self.user(&id).await?.ok_or(StoreError::NotFound),
        }
    }

    async fn link_identity(
        &self,
        connection: &str,
        subject: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
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

    async fn identities_of(&self, user_id: &str) -> StoreResult<Vec<(String, String)>> {
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

    async fn unlink_identity(
        &self,
        connection: &str,
        subject: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
        self.unlink(connection, subject, user_id)
    }
}

impl SledStore {
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

/// The sweeps: each walks a whole tree, so the trait methods run them on the
/// blocking pool.
impl SledStore {
    fn sweep_tokens_now(&self, now: u64) -> StoreResult<usize> {
        // Codes are kept an hour past their expiry, so a late second use is still
        // recognised as reuse and revokes what the first use issued.
        let codes = Self::sweep_expired(&self.codes, now.saturating_sub(3600))?;
        let refresh = Self::sweep_expired(&self.refresh, now)?;
        let grants = self.sweep_grants(now)?;
        Ok(codes + refresh + grants)
    }
}
