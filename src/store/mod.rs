//! Storage: small capability traits, the records they hold, and sled behind them.
//!
//! Nothing outside this module touches sled. Each trait is one capability (users,
//! second-factor credentials, sessions, flows, flash messages, codes and tokens, keys,
//! counters) so a second backend can be added trait by trait, and code that needs only
//! one capability says so in its bounds.
//!
//! The traits are a contract a network database can meet: each method is one atomic
//! operation (insert-if-absent, compare-and-swap, consume-once, a counter with an
//! expiry) that maps to one SQL statement, and its doc says what it promises under
//! concurrency. Rules — how many failures lock an account, for how long, how often a
//! code may be resent — live in the core (`authn`), never here, so every backend keeps
//! them alike. The contract suite (`store::contract`) proves the promises for any
//! backend; writes a response depends on are made durable with [`Store::flush`] before
//! the response leaves.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod groups;
pub mod postgres;
pub mod query;
mod sled_store;
pub mod transfer;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use groups::{Group, GroupPage, GroupQuery, GroupStore, GroupWrite, Membership};
pub use postgres::PgStore;
pub use query::{UserPage, UserQuery};
pub use sled_store::SledStore;
pub use transfer::Transfer;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// The backend cannot be reached right now (a database restarting, a pool with no
    /// free connection in time): the request may succeed when retried, and is answered
    /// 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An Argon2id PHC string. Not a secret by itself, but kept out of logs all the same.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

/// A local account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// Stable, random, never reused; the `sub` of local accounts.
    pub id: String,
    /// Unique (case-insensitive); for sign-up accounts it is the email address.
    pub username: String,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Which of `roles` a connection gave the account (role → connection id), so a
    /// later sign-in through that connection can take back what the upstream no longer
    /// asserts. A role not listed here was given by hand and no sign-in removes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_sources: BTreeMap<String, String>,
    #[serde(default)]
    pub password_hash: Option<PasswordHash>,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A counter with an expiry (`CounterStore`): hits since it last started, and when it
/// is forgotten.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counter {
    pub count: u32,
    /// The counter is forgotten at this time: from then on a read sees none and a hit
    /// starts over.
    pub expires_at: u64,
}

/// A record and the version it was read at, for a later compare-and-swap write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    /// Changes on every write of the record; only the store sets it.
    pub version: u64,
}

/// An SSO session in the browser's cookie (stored under the hash of the cookie value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The subject the session belongs to (`sub` of the tokens).
    pub sub: String,
    /// The local account, when the subject has one.
    pub user_id: Option<String>,
    /// When the user last actively authenticated.
    pub auth_time: u64,
    /// Authentication methods used (`pwd`, `otp`, …).
    pub amr: Vec<String>,
    /// Options satisfied in this session (`password`, `totp`, a connection id), with the
    /// time each was satisfied; later logins may skip steps these satisfy.
    pub satisfied: BTreeMap<String, u64>,
    /// `local`, or the connection that identified the subject.
    #[serde(default = "local_idp")]
    pub idp: String,
    /// Claims of a subject without an account (pass-through), so SSO can serve them.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Apps this session signed in to (for logout).
    #[serde(default)]
    pub clients: Vec<String>,
    /// Group and role names the upstream asserted at the sign-in that made the session,
    /// for the sign-ins it satisfies later.
    #[serde(default, skip_serializing_if = "crate::flow::Asserted::is_empty")]
    pub asserted: crate::flow::Asserted,
    pub created_at: u64,
    pub expires_at: u64,
}

fn local_idp() -> String {
    "local".into()
}

/// Everything an authorization code stands for. Stored under the code's hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge, when the request carried one.
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub grant: GrantData,
    pub expires_at: u64,
    /// Set, atomically, when the code is redeemed: the grant it produced.
    pub redeemed_by: Option<String>,
}

/// What a grant (a code exchange and every refresh after it) issues tokens about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrantData {
    pub sub: String,
    pub user_id: Option<String>,
    pub auth_time: u64,
    pub amr: Vec<String>,
    /// Claims fixed at sign-in: pass-through upstream claims, script `set_claim`s.
    pub claims: BTreeMap<String, serde_json::Value>,
    /// The public handle of the SSO session (`account::session_handle`): the `sid`
    /// claim of the grant's ID tokens.
    pub sid: Option<String>,
    /// The SSO session's store key (the hash of its cookie), which never leaves the
    /// server: the grant is indexed under it, so ending the session revokes the grant,
    /// and a refresh checks the session still lives. `None` for grants written before
    /// grants were indexed by session.
    #[serde(default)]
    pub session: Option<String>,
}

/// A token family: one code exchange and the refresh tokens rotated from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub data: GrantData,
    pub revoked: bool,
    /// The `offline_access` scope was granted: the grant outlives its SSO session
    /// (logout, session end, session expiry) and ends only when revoked, when it
    /// expires, or with everything else of the account (password change, disabling).
    #[serde(default)]
    pub offline: bool,
    pub created_at: u64,
    pub expires_at: u64,
}

/// A refresh token, stored under its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefreshRecord {
    pub grant_id: String,
    pub expires_at: u64,
    /// Set when it has been exchanged; a second use means theft and revokes the family.
    pub used: bool,
}

/// Outcome of trying to redeem a code.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeem {
    /// First use: the code is now marked redeemed by the given grant id.
    Fresh(CodeRecord),
    /// Already redeemed: the record names the grant to revoke.
    Reused(CodeRecord),
    Unknown,
}

/// Outcome of rotating a refresh token.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotate {
    Rotated(RefreshRecord),
    Reused(RefreshRecord),
    Unknown,
}

/// A signing key as stored: its private key in PKCS#8 DER.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    pub pkcs8_der: Vec<u8>,
    pub created_at: u64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A TOTP authenticator of one account.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TotpCredential {
    /// The shared secret, sealed by `authn::sealing` with the user id as associated data.
    pub sealed_secret: Vec<u8>,
    pub created_at: u64,
    /// The last time step accepted; a code of this step or an earlier one is refused,
    /// so an observed code cannot be replayed.
    pub last_step: u64,
    /// Enrolment finished: the user proved the authenticator works with one code.
    pub confirmed: bool,
}

impl std::fmt::Debug for TotpCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpCredential")
            .field("created_at", &self.created_at)
            .field("last_step", &self.last_step)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

/// The pending e-mail code of one account, and its sending history.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmailCode {
    /// Hash of the code (`authn::email_otp::hash_code`); empty once the code has been
    /// used, burned or has expired — the record stays so the resend limit still counts
    /// what was sent.
    pub code_hash: String,
    pub expires_at: u64,
    /// When codes were sent within the resend window, oldest first.
    pub sent_at: Vec<u64>,
    /// Wrong codes tried against the current code.
    pub wrong: u32,
}

impl std::fmt::Debug for EmailCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailCode")
            .field("pending", &!self.code_hash.is_empty())
            .field("expires_at", &self.expires_at)
            .field("sent_at", &self.sent_at)
            .field("wrong", &self.wrong)
            .finish()
    }
}

/// Accounts. Usernames and emails are unique case-insensitively: a backend enforces it
/// with unique indexes written in the same transaction as the account, so of two
/// parallel creations with one name exactly one succeeds.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Create an account; fails with `Conflict` if the username or email is taken.
    /// Usernames and emails are one namespace (sign-in looks a name up as either): a
    /// username may not equal another account's email, nor an email another account's
    /// username, decided in the same transaction as the write.
    /// `INSERT`, with the unique indexes deciding conflicts.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    /// Case-insensitive lookup by username, then by email.
    async fn find_user(&self, login: &str) -> StoreResult<Option<User>>;
    /// Replace an account (username and email indexes follow); `NotFound` if there is
    /// none, `Conflict` if the new name or email is someone else's.
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    async fn user_count(&self) -> StoreResult<usize>;
    /// Up to `limit` accounts with an id greater than `after` (from the first when
    /// `None`), in id order: a keyset page, `SELECT … WHERE id > $1 ORDER BY id LIMIT
    /// $2`. Walking the pages sees every account that exists throughout the walk.
    async fn users_after(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<User>>;
    /// Delete an account together with its username and email indexes, its federated
    /// identities, its external id and its place in every group, atomically.
    /// `NotFound` if there is none.
    async fn delete_user(&self, id: &str) -> StoreResult<()>;
    /// The id a provisioning system knows the account by (SCIM `externalId`).
    async fn external_id(&self, user_id: &str) -> StoreResult<Option<String>>;
    async fn set_external_id(&self, user_id: &str, external_id: Option<&str>) -> StoreResult<()>;
}

/// What an account's SCIM representation shows beside the account record itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserExtras {
    pub external_id: Option<String>,
    /// Linked (connection, upstream subject) pairs, in that order.
    pub identities: Vec<(String, String)>,
    /// A confirmed authenticator app is enrolled.
    pub totp: bool,
    /// The groups the account is in, by group id.
    pub groups: Vec<Membership>,
}

/// Finding accounts by a filter, a page at a time (the SCIM list and the admin CLI).
#[async_trait]
pub trait UserQueryStore: UserStore + IdentityStore + CredentialStore + GroupStore {
    /// The accounts `query.filter` matches, ordered by creation time then id:
    /// `query.count` of them from the `query.start`-th on, with how many match in all.
    /// The default reads every account and filters in memory ([`query::scan`]); a
    /// backend with a query language pushes the filter, order and page into one query.
    async fn query_users(&self, query: &UserQuery) -> StoreResult<UserPage> {
        query::scan(self, query).await
    }

    /// The extras of a page of accounts (external ids, identities, authenticator,
    /// groups), keyed by account id, read together: a networked backend answers in
    /// one statement whatever the page's size, so a list never costs a query per row.
    /// The default asks the embedded store per account,
    /// which costs no round trip.
    async fn user_extras(&self, user_ids: &[String]) -> StoreResult<BTreeMap<String, UserExtras>> {
        let mut groups = self.memberships(user_ids).await?;
        let mut out = BTreeMap::new();
        for id in user_ids {
            out.insert(
                id.clone(),
                UserExtras {
                    external_id: self.external_id(id).await?,
                    identities: self.identities_of(id).await?,
                    totp: self.totp(id).await?.is_some_and(|c| c.confirmed),
                    groups: groups.remove(id).unwrap_or_default(),
                },
            );
        }
        Ok(out)
    }
}

/// Federated identities: (connection, upstream subject) → local account. The pair is
/// unique, so concurrent first logins of one person make exactly one account.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn identity(&self, connection: &str, subject: &str) -> StoreResult<Option<String>>;
    /// Create `user` linked to the identity, atomically. If the identity already has an
    /// account (a concurrent first login won), that account is returned instead and
    /// `user` is not created: of N parallel calls for one identity, all return the one
    /// account that exists afterwards. `Conflict("username")`/`Conflict("email")` when
    /// those are taken by someone else. One transaction: `INSERT` the identity `ON
    /// CONFLICT DO NOTHING`, and the account only when that inserted a row.
    async fn create_federated_user(
        &self,
        user: &User,
        connection: &str,
        subject: &str,
    ) -> StoreResult<User>;
    /// Link the identity to an existing account; false if it is already linked (of N
    /// parallel links of one identity exactly one is true). `INSERT … ON CONFLICT DO
    /// NOTHING`.
    async fn link_identity(
        &self,
        connection: &str,
        subject: &str,
        user_id: &str,
    ) -> StoreResult<bool>;
    /// The (connection, subject) pairs linked to an account.
    async fn identities_of(&self, user_id: &str) -> StoreResult<Vec<(String, String)>>;
    /// Remove the link of an identity to `user_id`; false if it was not linked to that
    /// account. The next sign-in through the identity provisions afresh (JIT on).
    /// `DELETE … WHERE connection = $1 AND subject = $2 AND user_id = $3`.
    async fn unlink_identity(
        &self,
        connection: &str,
        subject: &str,
        user_id: &str,
    ) -> StoreResult<bool>;
}

/// Counters with an expiry, the primitive attempt limits are built from
/// (`authn::attempts` holds the rules: how many failures, within what window, lock for
/// how long). Keys are namespaced by the caller (`password:<user id>`,
/// `totp:<user id>`) and shared by every session and node, so a limit cannot be dodged
/// with a fresh browser or another node.
#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Add one, atomically, and return the counter afterwards. A missing counter, or one
    /// expired at or before `now`, starts over at 1 and expires at `expires_at`; a live
    /// one keeps its expiry. N parallel hits on a counter at c answer c+1 … c+N, each
    /// exactly once: that is what lets the core reserve an attempt before it checks a
    /// secret. `INSERT … ON CONFLICT (key) DO UPDATE SET count = CASE WHEN expires_at <=
    /// $now THEN 1 ELSE count + 1 END, expires_at = CASE … END RETURNING count,
    /// expires_at`.
    async fn hit(&self, key: &str, now: u64, expires_at: u64) -> StoreResult<Counter>;
    /// The live counter; `None` when there is none or it expired at or before `now`.
    async fn counter(&self, key: &str, now: u64) -> StoreResult<Option<Counter>>;
    /// Keep a live counter until at least `until` (a lock that outlasts the window it
    /// was counted in); nothing for a missing or expired one, and never shortened.
    /// `UPDATE … SET expires_at = GREATEST(expires_at, $until) WHERE key = $1 AND
    /// expires_at > $now`.
    async fn extend_counter(&self, key: &str, now: u64, until: u64) -> StoreResult<()>;
    /// Take one back from a live counter, atomically, and return it afterwards: an
    /// attempt reserved with [`hit`](Self::hit) that turned out not to be a failure (the
    /// secret was right, or it was refused before anything was checked). A counter
    /// taken back to 0 is removed (`None`); a missing or expired one is left alone. N
    /// parallel take-backs of a counter at c ≥ N leave c − N, and interleaved with
    /// hits no count is lost. `UPDATE … SET count = count - 1 WHERE key = $1 AND
    /// expires_at > $now RETURNING …`, then `DELETE … WHERE key = $1 AND count <= 0`.
    async fn take_back(&self, key: &str, now: u64) -> StoreResult<Option<Counter>>;
    /// Forget the counter (a success forgives the failures before it). `DELETE`.
    async fn reset_counter(&self, key: &str) -> StoreResult<()>;
    /// Forget several counters at once (a sign-in forgives every count of its
    /// account): as [`reset_counter`](Self::reset_counter) of each, in one call.
    /// `DELETE … WHERE key = ANY($1)`.
    async fn reset_counters(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.reset_counter(key).await?;
        }
        Ok(())
    }
    /// Remove counters expired at or before `now`; returns how many.
    async fn sweep_counters(&self, now: u64) -> StoreResult<usize>;
}

/// Second factors: TOTP authenticators, recovery codes and e-mail codes, all keyed by
/// user id. Everything single-use is consumed atomically.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Store (or replace) the account's TOTP authenticator.
    async fn put_totp(&self, user_id: &str, credential: &TotpCredential) -> StoreResult<()>;
    /// Store `credential` unless the account has one already; returns the one that is
    /// there afterwards (of two enrolment pages opened at once, both show one secret).
    /// `INSERT … ON CONFLICT DO NOTHING`, then a read.
    async fn create_totp(
        &self,
        user_id: &str,
        credential: &TotpCredential,
    ) -> StoreResult<TotpCredential>;
    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpCredential>>;
    /// Remove the authenticator (a reset: the user enrols again).
    async fn delete_totp(&self, user_id: &str) -> StoreResult<()>;
    /// Record `step` as used, atomically, only if it is later than the last accepted
    /// one. `true` means the code may be accepted; of N parallel calls with the same
    /// step exactly one gets `true`. `false` also when there is no authenticator.
    /// `UPDATE … SET last_step = $2 WHERE user_id = $1 AND last_step < $2`.
    async fn accept_totp_step(&self, user_id: &str, step: u64) -> StoreResult<bool>;

    /// Replace all recovery codes of the account with these hashes.
    async fn put_recovery_codes(&self, user_id: &str, hashes: &[String]) -> StoreResult<()>;
    /// Remove one recovery code, atomically: of N parallel calls with one code exactly
    /// one gets `true`. `DELETE … WHERE user_id = $1 AND hash = $2`.
    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool>;
    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<usize>;

    /// Store a code record as is, replacing the key's previous one whatever its version
    /// (fixtures, tests). The version changes, so a swap prepared before it fails.
    async fn put_email_code(&self, key: &str, code: &EmailCode) -> StoreResult<()>;
    /// The key's record, with the version a swap must name.
    async fn email_code(&self, key: &str) -> StoreResult<Option<Versioned<EmailCode>>>;
    /// Write `code` if the key's record is still at version `expected` (`None`: there
    /// is no record yet), atomically; `false`, and nothing written, otherwise. Of N
    /// parallel swaps from one version exactly one is `true`: that makes a code
    /// single-use and the send and wrong-try counts exact while `authn::email_otp`
    /// decides what the record becomes. `UPDATE … SET …, version = version + 1 WHERE
    /// key = $1 AND version = $2` (`INSERT … ON CONFLICT DO NOTHING` for `None`).
    async fn swap_email_code(
        &self,
        key: &str,
        expected: Option<u64>,
        code: &EmailCode,
    ) -> StoreResult<bool>;
}

/// SSO sessions, stored under the hash of the cookie value, with a per-account index
/// kept in step by `put_session` and `delete_session` (My Account lists and ends them;
/// disabling or deleting an account ends them all).
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put_session(&self, id_hash: &str, session: &Session) -> StoreResult<()>;
    /// Replace a session that is still there; `false`, and nothing written, when it is
    /// gone: a silent sign-in that read the session before a sign-out (on any node)
    /// ended it must not bring it back. `UPDATE … WHERE hash = $1`.
    async fn update_session(&self, id_hash: &str, session: &Session) -> StoreResult<bool>;
    async fn session(&self, id_hash: &str) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
    /// The sessions of an account, with their hashes, expired ones included.
    async fn sessions_of(&self, user_id: &str) -> StoreResult<Vec<(String, Session)>>;
    /// End every session of the account but `keep` (the one signing the others out);
    /// returns how many this call ended: of parallel calls, each session is counted
    /// once, and afterwards no session of the account written before the first call
    /// started is left but `keep`. `DELETE … WHERE user_id = $1 AND hash <> $2`.
    async fn end_sessions_of(&self, user_id: &str, keep: Option<&str>) -> StoreResult<usize>;
    /// Remove sessions that expired at or before `now`; returns how many. Safe to run
    /// on every node at once: a session removed twice counts once.
    async fn sweep_sessions(&self, now: u64) -> StoreResult<usize>;
}

/// In-progress logins, as opaque bytes (the flow module owns their format).
#[async_trait]
pub trait FlowStore: Send + Sync {
    async fn put_flow(&self, id: &str, bytes: &[u8]) -> StoreResult<()>;
    async fn flow(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn delete_flow(&self, id: &str) -> StoreResult<()>;
    /// Remove flows whose time-prefixed id is older than `cutoff`, and upstream round
    /// trips whose flow is; returns how many flows. Safe to run on every node at once.
    async fn sweep_flows(&self, cutoff: u64) -> StoreResult<usize>;
    /// How many flows are stored (the `usher_flows_active` gauge). Cheap: no scan of
    /// the flows themselves (a counter, or a database's row estimate).
    async fn flow_count(&self) -> StoreResult<usize>;
    /// Remember which flow an upstream round trip's `state` belongs to.
    async fn put_upstream_state(&self, state_hash: &str, flow_id: &str) -> StoreResult<()>;
    /// Take (and forget) the flow of a `state`: of N callbacks with one state, exactly
    /// one gets it. `DELETE … RETURNING flow_id`.
    async fn take_upstream_state(&self, state_hash: &str) -> StoreResult<Option<String>>;
}

/// One-time messages for the next page (My Account's "password changed", new recovery
/// codes), as opaque bytes named by a cookie.
#[async_trait]
pub trait FlashStore: Send + Sync {
    /// Keep `bytes` under `id` until `expires_at`, replacing what was there.
    async fn put_flash(&self, id: &str, bytes: &[u8], expires_at: u64) -> StoreResult<()>;
    /// Take the message, once: of N parallel takes exactly one gets it, and none does
    /// once it expired (at or before `now`). `DELETE … RETURNING`.
    async fn take_flash(&self, id: &str, now: u64) -> StoreResult<Option<Vec<u8>>>;
    /// Remove messages expired at or before `now`; returns how many.
    async fn sweep_flashes(&self, now: u64) -> StoreResult<usize>;
}

/// Authorization codes, grants (token families) and refresh tokens. Grants are
/// indexed by account (`data.user_id`) and by SSO session (`data.session`), the indexes
/// written in the same transaction as the grant, so revoking "everything of this
/// account" or "everything of this session" never misses a grant that was written
/// before it started.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn put_code(&self, code_hash: &str, record: &CodeRecord) -> StoreResult<()>;
    /// Remove expired refresh tokens and grants (with their index entries), and codes
    /// an hour past their expiry (a late reuse is still recognised); returns how many.
    async fn sweep_tokens(&self, now: u64) -> StoreResult<usize>;
    /// Mark a code redeemed by `grant_id`, atomically: of N parallel calls one sees
    /// `Fresh`, the rest `Reused` naming the winner's grant. `UPDATE … SET redeemed_by
    /// = $2 WHERE hash = $1 AND redeemed_by IS NULL RETURNING`, then a read on a miss.
    async fn redeem_code(&self, code_hash: &str, grant_id: &str) -> StoreResult<Redeem>;
    /// Write a new grant with its account and session index entries; `false` if one
    /// with that id is already there (a reuse of its code barred it first), and then
    /// nothing is written. `INSERT … ON CONFLICT DO NOTHING` (the indexes are the
    /// table's `user_id` and `session` columns).
    async fn create_grant(&self, grant: &Grant) -> StoreResult<bool>;
    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>>;
    async fn revoke_grant(&self, id: &str) -> StoreResult<()>;
    /// The grants of an account that the sweep has not removed yet, revoked and expired
    /// ones included, in id order (ids are time-prefixed: oldest first). `SELECT …
    /// WHERE user_id = $1 ORDER BY id`.
    async fn grants_of(&self, user_id: &str) -> StoreResult<Vec<Grant>>;
    /// The grants issued under an SSO session (its store key), like
    /// [`grants_of`](Self::grants_of). `SELECT … WHERE session = $1 ORDER BY id`.
    async fn session_grants(&self, session: &str) -> StoreResult<Vec<Grant>>;
    /// Revoke every grant of the account, atomically per grant, and return how many
    /// this call turned from live to revoked: of N parallel calls the counts add up to
    /// the number of live grants, each counted once, and afterwards every grant written
    /// before the first call started is revoked. `UPDATE … SET revoked = true WHERE
    /// user_id = $1 AND NOT revoked`.
    async fn revoke_grants_of(&self, user_id: &str) -> StoreResult<usize>;
    /// As [`revoke_grants_of`](Self::revoke_grants_of), sparing the grants of app
    /// `client_id` issued under session `session` (the page signing the account out
    /// everywhere else keeps its own), with the same count and promise under
    /// concurrency. `UPDATE … WHERE user_id = $1 AND NOT revoked
    /// AND NOT (client_id = $2 AND session = $3)`.
    async fn revoke_grants_of_except(
        &self,
        user_id: &str,
        client_id: &str,
        session: &str,
    ) -> StoreResult<usize>;
    /// Revoke the grants issued under an SSO session, all of them or, with
    /// `keep_offline`, all but the `offline` ones; the count and the promise under
    /// concurrency are those of [`revoke_grants_of`](Self::revoke_grants_of). `UPDATE …
    /// SET revoked = true WHERE session = $1 AND NOT revoked AND NOT (offline AND
    /// $2)`.
    async fn revoke_session_grants(&self, session: &str, keep_offline: bool) -> StoreResult<usize>;
    /// File the grants of session `from` under session `to`, whose public handle is
    /// `sid` (a sign-in that replaced the browser's session with a fresh one for the
    /// same subject keeps its apps' grants): each grant's `data.session` and
    /// `data.sid` change together with its index entry, atomically per grant. Returns
    /// how many moved. `UPDATE … SET session = $2, sid = $3 WHERE session = $1`.
    async fn move_session_grants(&self, from: &str, to: &str, sid: &str) -> StoreResult<usize>;
    /// Revoke grant `barred.id`, or, when its code exchange has not written it yet,
    /// write `barred` (revoked) in its place so that exchange cannot issue tokens.
    /// `INSERT … ON CONFLICT DO UPDATE SET revoked = true`.
    async fn bar_grant(&self, barred: &Grant) -> StoreResult<()>;
    async fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()>;
    /// A refresh token's record, used or not, without touching it (revocation and
    /// introspection look a token up; only [`rotate_refresh`](Self::rotate_refresh)
    /// spends one).
    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>>;
    /// Mark `old` used and store `new`, atomically: of N parallel rotations of one token
    /// exactly one is `Rotated`; the rest are `Reused`, naming the grant whose family
    /// the caller revokes, and store nothing.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new: &RefreshRecord,
    ) -> StoreResult<Rotate>;
}

/// Signing keys and named server secrets.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;
    async fn put_signing_key(&self, key: &StoredKey) -> StoreResult<()>;
    /// Store `key` unless a key with its kid is there already; `true` if this call
    /// wrote it. Of N parallel adds of one kid exactly one is `true`, and everyone
    /// reads back the winner's key. `INSERT … ON CONFLICT DO NOTHING`.
    async fn add_signing_key(&self, key: &StoredKey) -> StoreResult<bool>;
    /// A named server secret (CSRF key, …), created with `make` on first use: of N
    /// parallel first uses on any nodes, all get the one value that landed first.
    /// `INSERT … ON CONFLICT DO NOTHING`, then a read.
    async fn secret(
        &self,
        name: &str,
        make: &(dyn Fn() -> Vec<u8> + Send + Sync),
    ) -> StoreResult<Vec<u8>>;
}

/// Something that happened, for the audit trail ("why did this user skip MFA?").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    /// Time-prefixed, so events list in order.
    pub id: String,
    pub at: u64,
    /// `sign_in`, …
    pub kind: String,
    pub app: Option<String>,
    pub sub: Option<String>,
    /// `success`, or what went wrong (`access_denied: …`).
    pub outcome: String,
    /// The flow's trace and the script's log lines.
    pub detail: Vec<String>,
}

/// The audit trail, append-only apart from the retention sweep.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_event(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Events from `since` on, oldest first, at most `limit`.
    async fn events(&self, since: u64, limit: usize) -> StoreResult<Vec<AuditEvent>>;
    /// Show `visit` the events from `since` on, oldest first, until it returns false.
    async fn scan_events(
        &self,
        since: u64,
        visit: &mut (dyn FnMut(AuditEvent) -> bool + Send),
    ) -> StoreResult<()>;
    /// Remove events older than `cutoff`; returns how many (retention).
    async fn sweep_events(&self, cutoff: u64) -> StoreResult<usize>;
}

/// An account read together with what it holds as second factors: a sign-in that knows
/// its account needs both, and on a network database that is one query, not three.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub user: User,
    /// A confirmed TOTP authenticator.
    pub totp: bool,
    /// Recovery codes left.
    pub recovery_codes: usize,
    /// The groups it is in, by group id.
    pub groups: Vec<Membership>,
}

/// A code exchange's redemption ([`TokenStore::redeem_code`]) with what the exchange
/// checks next, read in the same call ([`Store::redeem_code_at`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Redemption {
    pub redeem: Redeem,
    /// On a `Fresh` redemption, the grant's account as it is now; `None` when the grant
    /// has none, or it is gone.
    pub user: Option<User>,
    /// On a `Fresh` redemption, whether the SSO session the code was issued in is
    /// there and unexpired (true for a code that names no session).
    pub session_live: bool,
}

/// A refresh token's rotation ([`TokenStore::rotate_refresh`]) with what the refresh
/// checks next, read in the same call ([`Store::rotate_refresh_at`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub rotate: Rotate,
    /// On `Rotated`, the token's grant as it is now (`None` when it is gone).
    pub grant: Option<Grant>,
    /// On `Rotated`, whether the grant's SSO session is there and unexpired (true for a
    /// grant that names none).
    pub session_live: bool,
    /// On `Rotated`, the grant's account as it is now (`None` when the grant has none,
    /// or it is gone).
    pub user: Option<User>,
}

/// Every capability, plus durability.
#[async_trait]
pub trait Store:
    UserStore
    + UserQueryStore
    + GroupStore
    + IdentityStore
    + AuditStore
    + CredentialStore
    + CounterStore
    + SessionStore
    + FlowStore
    + FlashStore
    + TokenStore
    + KeyStore
    + Send
    + Sync
{
    /// Make every write so far durable: once it returns, a crash or restart loses none
    /// of them. A backend whose durability is a blocking call (sled's fsync) makes it
    /// on the blocking pool itself, so callers simply await.
    async fn flush(&self) -> StoreResult<()>;

    /// Whether the store can serve requests now (`/readyz`): an embedded store that
    /// opened is; a database must answer and have this binary's schema.
    async fn ready(&self) -> StoreResult<()> {
        Ok(())
    }

    /// The PostgreSQL backend behind this store, if it is one (its pool status and
    /// statement counts for metrics and benchmarks).
    fn postgres(&self) -> Option<&PgStore> {
        None
    }

    /// Every record out and in, raw (`usher store copy`); `None` for a store that
    /// cannot (a wrapper that does not pass it on).
    fn transfer(&self) -> Option<&dyn Transfer> {
        None
    }

    // Several capabilities in one call. A silent SSO sign-in is the commonest thing an
    // identity provider serves, and on a network database its cost is counted in round
    // trips: these answer what it needs in one each. The defaults compose the
    // capabilities above (an embedded store pays nothing per call); a database
    // overrides them with one statement apiece, and the contract suite holds both to
    // the same answers.

    /// The account with its second factors and groups ([`Account`]); `None` when there
    /// is none.
    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>> {
        let Some(user) = self.user(user_id).await? else {
            return Ok(None);
        };
        let totp = self.totp(user_id).await?.is_some_and(|c| c.confirmed);
        let recovery_codes = self.recovery_codes_left(user_id).await?;
        let groups = self
            .memberships(std::slice::from_ref(&user.id))
            .await?
            .remove(&user.id)
            .unwrap_or_default();
        Ok(Some(Account {
            user,
            totp,
            recovery_codes,
            groups,
        }))
    }

    /// The SSO session stored under `id_hash` with its account as [`account`]
    /// (Self::account) reads it: `None` for no session; the account is `None` when the
    /// session has none or it is gone.
    async fn session_with_account(
        &self,
        id_hash: &str,
    ) -> StoreResult<Option<(Session, Option<Account>)>> {
        let Some(session) = self.session(id_hash).await? else {
            return Ok(None);
        };
        let account = match &session.user_id {
            Some(id) => self.account(id).await?,
            None => None,
        };
        Ok(Some((session, account)))
    }

    /// Redeem a code exactly as [`redeem_code`](TokenStore::redeem_code) does and, when
    /// this call won it, read the grant's account and whether its session lives at
    /// `now`, in the same call.
    async fn redeem_code_at(
        &self,
        code_hash: &str,
        grant_id: &str,
        now: u64,
    ) -> StoreResult<Redemption> {
        let redeem = self.redeem_code(code_hash, grant_id).await?;
        let Redeem::Fresh(record) = &redeem else {
            return Ok(Redemption {
                redeem,
                user: None,
                session_live: false,
            });
        };
        let user = match &record.grant.user_id {
            Some(id) => self.user(id).await?,
            None => None,
        };
        let session_live = match &record.grant.session {
            Some(hash) => self
                .session(hash)
                .await?
                .is_some_and(|s| s.expires_at > now),
            None => true,
        };
        Ok(Redemption {
            redeem,
            user,
            session_live,
        })
    }

    /// Rotate refresh token `old_hash` as [`rotate_refresh`](TokenStore::rotate_refresh)
    /// does, the new token `new_hash` taking the old one's grant and expiry, and, when
    /// this call spent it, read the grant, its session's liveness at `now` and its
    /// account in the same call.
    async fn rotate_refresh_at(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: u64,
    ) -> StoreResult<Rotation> {
        // The old token's grant and expiry are not known before it is spent: the new
        // one is stored with a placeholder, then written for real.
        let placeholder = RefreshRecord {
            grant_id: String::new(),
            expires_at: 0,
            used: false,
        };
        let rotate = self
            .rotate_refresh(old_hash, new_hash, &placeholder)
            .await?;
        let Rotate::Rotated(old) = &rotate else {
            return Ok(Rotation {
                rotate,
                grant: None,
                session_live: false,
                user: None,
            });
        };
        let inherited = RefreshRecord {
            grant_id: old.grant_id.clone(),
            expires_at: old.expires_at,
            used: false,
        };
        self.put_refresh(new_hash, &inherited).await?;
        let grant = self.grant(&old.grant_id).await?;
        let session_live = match grant.as_ref().and_then(|g| g.data.session.as_deref()) {
            Some(hash) => self
                .session(hash)
                .await?
                .is_some_and(|s| s.expires_at > now),
            None => true,
        };
        let user = match grant.as_ref().and_then(|g| g.data.user_id.as_deref()) {
            Some(id) => self.user(id).await?,
            None => None,
        };
        Ok(Rotation {
            rotate,
            grant,
            session_live,
            user,
        })
    }

    /// Write a new grant and its first refresh token together: as
    /// [`create_grant`](TokenStore::create_grant), `false` (and nothing written, the
    /// token neither) when a grant with that id is there already.
    async fn create_grant_with_refresh(
        &self,
        grant: &Grant,
        refresh_hash: &str,
        refresh: &RefreshRecord,
    ) -> StoreResult<bool> {
        if !self.create_grant(grant).await? {
            return Ok(false);
        }
        self.put_refresh(refresh_hash, refresh).await?;
        Ok(true)
    }

    /// Store a code as [`put_code`](TokenStore::put_code) does, with the audit events of
    /// the sign-in that issued it: an error when either cannot be written, so no code
    /// is handed out without its trail (on a database one statement writes both or
    /// neither; the default may leave a code no one was given).
    async fn put_code_with_events(
        &self,
        code_hash: &str,
        record: &CodeRecord,
        events: &[AuditEvent],
    ) -> StoreResult<()> {
        self.put_code(code_hash, record).await?;
        for event in events {
            self.append_event(event).await?;
        }
        Ok(())
    }
}

/// Every account, in id order, read a page at a time: for small stores only (the
/// fixture runner compares the accounts before and after a case).
pub async fn all_users(store: &dyn UserStore) -> StoreResult<Vec<User>> {
    let mut all: Vec<User> = Vec::new();
    loop {
        let after = all.last().map(|u| u.id.clone());
        let page = store
            .users_after(after.as_deref(), query::SCAN_BATCH)
            .await?;
        let done = page.len() < query::SCAN_BATCH;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

#[cfg(test)]
mod tests;
