//! The PostgreSQL store: every node of a deployment shares one database.
//!
//! Each record kind is a table whose row keeps the record as JSON (the form the
//! embedded store keeps it in) beside the columns that a lookup, an index or an atomic
//! update needs. Every promise of the store traits is one statement, or one short
//! transaction, so it holds across nodes: uniqueness is a primary key, single use is an
//! `UPDATE … WHERE` that only one caller can match, a counter is an upsert. Statements
//! are prepared once per connection and cached, so a call is one round trip.
//!
//! The schema is created and upgraded at start by the migrations embedded in the
//! binary (`migrations/`), applied under an advisory lock so that nodes starting
//! together apply each one once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde::de::DeserializeOwned;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{NoTls, Row};

use super::*;

mod accounts;
pub mod cluster;
mod credentials;
mod query;
mod tokens;
mod transfer;

/// The migrations, in order: (version, SQL). A released migration never changes; a
/// new schema is a new file.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("postgres/migrations/0001_initial.sql"))];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i32 = 1;

/// How the "unavailable" error of a database whose schema is older than this binary's
/// begins ([`PgStore::check_ready`]).
pub const MIGRATIONS_PENDING: &str = "schema migrations pending";

/// How to reach the database (`store: { postgres: … }`, resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// A `postgres://` URL (or key=value connection string). May hold a password:
    /// never logged as is (see [`PgSettings::redacted_url`]).
    pub url: String,
    /// The schema Usher's tables live in (default `public`).
    pub schema: String,
    /// Connections this node keeps open at most.
    pub max_connections: usize,
    /// How long a request waits for a free connection, or for a new one to connect,
    /// before it is answered "unavailable".
    pub acquire_timeout: Duration,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> PgSettings {
        PgSettings {
            url: url.into(),
            schema: "public".into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }

    /// The URL with any password replaced by `***`, for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// `url` with its password hidden, whether or not it parses.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // The user information ends at the last `@` before the path.
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            return format!("{scheme}://{user}{hidden}{}", &rest[at..]);
        }
        return url.to_string();
    }
    // A key=value string: hide the value after `password=`.
    url.split_whitespace()
        .map(|part| {
            if part.starts_with("password=") {
                "password=***"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parse a connection URL the way the driver will, for `usher check`.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| e.to_string())
}

/// Whether a schema name can be used as is: it goes into `search_path` unquoted.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Statements and round trips made so far, for `usher bench` to divide by operations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PgCounts {
    pub statements: u64,
    pub round_trips: u64,
}

/// The connection pool of a node, as `/metrics` shows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max: usize,
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
}

/// The PostgreSQL backend. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    schema: String,
    counts: std::sync::Arc<Counts>,
    /// The collation account queries fold case with (found on first use).
    fold: std::sync::Arc<std::sync::OnceLock<&'static str>>,
}

#[derive(Default)]
struct Counts {
    statements: AtomicU64,
    round_trips: AtomicU64,
}

/// A database error: a lost or refused connection is "unavailable" (the request may
/// be retried, and the node answers 503); anything else is a backend error.
fn pg(e: tokio_postgres::Error) -> StoreError {
    // The driver's own text of a server error is just "db error": say what it was.
    let text = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    if e.is_closed() || e.code().is_none() {
        StoreError::Unavailable(text)
    } else if e
        .code()
        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
    {
        // Connection exceptions and operator interventions (a shutdown, a restart).
        StoreError::Unavailable(text)
    } else {
        StoreError::Backend(text)
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {e}"))
}

/// Times and counts are `u64` in Usher and `bigint` in the database. `u64::MAX`, the
/// expiry of what lasts until an administrator acts (an account's failure count, a
/// lock for good), is stored as `i64::MAX` and read back as `u64::MAX`, so it
/// survives the round trip (and a copy between backends) exactly.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    if v == i64::MAX {
        return u64::MAX;
    }
    u64::try_from(v).unwrap_or(0)
}

fn json_of<T: DeserializeOwned>(row: &Row, column: &str) -> StoreResult<T> {
    row.try_get::<_, Json<T>>(column)
        .map(|j| j.0)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, column: &str) -> StoreResult<T> {
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl PgStore {
    /// Connect, and bring the schema up to date (under an advisory lock, so nodes
    /// starting at once apply each migration once).
    pub async fn open(settings: &PgSettings) -> StoreResult<PgStore> {
        let store = Self::connect(settings)?;
        store.migrate().await?;
        Ok(store)
    }

    /// The pool alone, without touching the database (`open` migrates as well).
    pub fn connect(settings: &PgSettings) -> StoreResult<PgStore> {
        if !valid_schema_name(&settings.schema) {
            return Err(StoreError::Backend(format!(
                "schema name `{}` must be lower-case letters, digits and `_`",
                settings.schema
            )));
        }
        let mut config = parse_url(&settings.url).map_err(StoreError::Backend)?;
        config.application_name("usher");
        config.options(format!("-c search_path={}", settings.schema));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.acquire_timeout);
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections.max(1))
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .recycle_timeout(Some(settings.acquire_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(PgStore {
            pool,
            schema: settings.schema.clone(),
            counts: Default::default(),
            fold: Default::default(),
        })
    }

    /// Statements and round trips so far.
    pub fn counts(&self) -> PgCounts {
        PgCounts {
            statements: self.counts.statements.load(Ordering::Relaxed),
            round_trips: self.counts.round_trips.load(Ordering::Relaxed),
        }
    }

    pub fn pool_status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            max: s.max_size,
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
        }
    }

    fn counted(&self, statements: u64, round_trips: u64) {
        self.counts
            .statements
            .fetch_add(statements, Ordering::Relaxed);
        self.counts
            .round_trips
            .fetch_add(round_trips, Ordering::Relaxed);
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A cached prepared statement of this connection (prepared on first use).
    async fn statement(
        &self,
        client: &Object,
        sql: &str,
    ) -> StoreResult<tokio_postgres::Statement> {
        // A statement the connection has not seen yet costs one round trip to prepare.
        let before = client.statement_cache.size();
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        if client.statement_cache.size() > before {
            self.counted(0, 1);
        }
        Ok(statement)
    }

    async fn query(&self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        let statement = self.statement(&client, sql).await?;
        self.counted(1, 1);
        client.query(&statement, params).await.map_err(pg)
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let client = self.client().await?;
        let statement = self.statement(&client, sql).await?;
        self.counted(1, 1);
        client.query_opt(&statement, params).await.map_err(pg)
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let client = self.client().await?;
        let statement = self.statement(&client, sql).await?;
        self.counted(1, 1);
        client.execute(&statement, params).await.map_err(pg)
    }

    /// Begin a transaction on `client` (taken with [`PgStore::client`]): committed by
    /// [`Tx::commit`], rolled back when dropped without it (an error returned early).
    async fn begin<'c>(&'c self, client: &'c mut Object) -> StoreResult<Tx<'c>> {
        let tx = client.transaction().await.map_err(pg)?;
        self.counted(0, 1);
        Ok(Tx { tx, store: self })
    }

    /// Whether the database answers and its schema is the one this binary expects
    /// (`/readyz`): `Unavailable` when it does not answer, or when it starts with
    /// [`MIGRATIONS_PENDING`] because the schema is older (or absent).
    pub async fn check_ready(&self) -> StoreResult<()> {
        let pending = |version: i32| {
            StoreError::Unavailable(format!(
                "{MIGRATIONS_PENDING}: the database is at version {version}, this node needs {SCHEMA_VERSION}"
            ))
        };
        let client = self.client().await?;
        let before = client.statement_cache.size();
        let statement = match client
            .prepare_cached("SELECT max(version) AS v FROM usher_migrations")
            .await
        {
            Ok(statement) => statement,
            // No migrations table: nothing was ever applied in this schema.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Err(pending(0))
            }
            Err(e) => return Err(pg(e)),
        };
        if client.statement_cache.size() > before {
            self.counted(0, 1);
        }
        self.counted(1, 1);
        let row = client.query_opt(&statement, &[]).await.map_err(pg)?;
        let version: Option<i32> = match &row {
            Some(r) => col(r, "v")?,
            None => None,
        };
        match version {
            Some(v) if v >= SCHEMA_VERSION => Ok(()),
            v => Err(pending(v.unwrap_or(0))),
        }
    }

    /// Apply the migrations the database lacks, under a session advisory lock keyed
    /// by the schema (one schema's migrations never wait for another's).
    async fn migrate(&self) -> StoreResult<()> {
        let client = self.client().await?;
        let lock_key = i64::from_be_bytes(
            crate::crypto::sha256(format!("usher-migrations:{}", self.schema).as_bytes())[..8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        client
            .execute("SELECT pg_advisory_lock($1)", &[&lock_key])
            .await
            .map_err(pg)?;
        let outcome = self.migrate_locked(&client).await;
        // Unlocked even when a migration failed; a lost connection unlocks by itself.
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
            .await
            .map_err(pg);
        outcome.and(unlocked.map(|_| ()))
    }

    async fn migrate_locked(&self, client: &Object) -> StoreResult<()> {
        let schema = &self.schema;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS usher_migrations (
                     version integer PRIMARY KEY,
                     applied_at bigint NOT NULL
                 );"
            ))
            .await
            .map_err(pg)?;
        let done: Vec<i32> = client
            .query("SELECT version FROM usher_migrations", &[])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(newer) = done.iter().find(|v| **v > SCHEMA_VERSION) {
            return Err(StoreError::Backend(format!(
                "the database schema is at version {newer}, newer than this binary's {SCHEMA_VERSION}: run a newer Usher"
            )));
        }
        for (version, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            let now = int(crate::crypto::unix_now());
            // One transaction per migration: a failed one leaves nothing behind.
            client
                .batch_execute(&format!(
                    "BEGIN;\n{sql}\nINSERT INTO usher_migrations (version, applied_at) VALUES ({version}, {now});\nCOMMIT;"
                ))
                .await
                .map_err(|e| {
                    StoreError::Backend(format!("schema migration {version} failed: {e}"))
                })?;
            tracing::info!(version, schema = %self.schema, "applied a schema migration");
        }
        Ok(())
    }

    /// Remove every row of every table (tests that reuse one schema).
    pub async fn clear_all(&self) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .batch_execute(
                "TRUNCATE users, login_names, external_ids, identities, totp, recovery_codes,
                 email_codes, counters, sessions, flows, upstream_states, flashes, codes, grants,
                 refresh_tokens, signing_keys, secrets, audit_events",
            )
            .await
            .map_err(pg)
    }
}

/// A transaction in progress, with the store's statement cache and counts.
pub(super) struct Tx<'c> {
    tx: deadpool_postgres::Transaction<'c>,
    store: &'c PgStore,
}

impl Tx<'_> {
    async fn commit(self) -> StoreResult<()> {
        self.store.counted(0, 1);
        self.tx.commit().await.map_err(pg)
    }

    async fn statement(&self, sql: &str) -> StoreResult<tokio_postgres::Statement> {
        let statement = self.tx.prepare_cached(sql).await.map_err(pg)?;
        Ok(statement)
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql).await?;
        self.store.counted(1, 1);
        self.tx.query_opt(&statement, params).await.map_err(pg)
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let statement = self.statement(sql).await?;
        self.store.counted(1, 1);
        self.tx.execute(&statement, params).await.map_err(pg)
    }
}

#[async_trait]
impl FlowStore for PgStore {
    async fn put_flow(&self, id: &str, bytes: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO flows (id, value) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            &[&id, &bytes],
        )
        .await
        .map(|_| ())
    }

    async fn flow(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = self
            .query_opt("SELECT value FROM flows WHERE id = $1", &[&id])
            .await?;
        row.map(|r| col(&r, "value")).transpose()
    }

    async fn delete_flow(&self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM flows WHERE id = $1", &[&id])
            .await
            .map(|_| ())
    }

    async fn sweep_flows(&self, cutoff: u64) -> StoreResult<usize> {
        // Ids start with their creation time in fixed-width hex: old ones sort first.
        // Deletes are idempotent, so every node may sweep at once.
        let end = format!("{cutoff:016x}");
        let removed = self
            .execute("DELETE FROM flows WHERE id < $1", &[&end])
            .await?;
        self.execute("DELETE FROM upstream_states WHERE flow_id < $1", &[&end])
            .await?;
        Ok(removed as usize)
    }

    async fn flow_count(&self) -> StoreResult<usize> {
        // An index-only count: no flow body is read.
        let row = self
            .query_opt("SELECT count(*) AS n FROM flows", &[])
            .await?;
        let n: i64 = match &row {
            Some(r) => col(r, "n")?,
            None => 0,
        };
        Ok(uint(n) as usize)
    }

    async fn put_upstream_state(&self, state_hash: &str, flow_id: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO upstream_states (state_hash, flow_id) VALUES ($1, $2)
             ON CONFLICT (state_hash) DO UPDATE SET flow_id = EXCLUDED.flow_id",
            &[&state_hash, &flow_id],
        )
        .await
        .map(|_| ())
    }

    async fn take_upstream_state(&self, state_hash: &str) -> StoreResult<Option<String>> {
        let row = self
            .query_opt(
                "DELETE FROM upstream_states WHERE state_hash = $1 RETURNING flow_id",
                &[&state_hash],
            )
            .await?;
        row.map(|r| col(&r, "flow_id")).transpose()
    }
}

#[async_trait]
impl FlashStore for PgStore {
    async fn put_flash(&self, id: &str, bytes: &[u8], expires_at: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO flashes (id, value, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
            &[&id, &bytes, &int(expires_at)],
        )
        .await
        .map(|_| ())
    }

    async fn take_flash(&self, id: &str, now: u64) -> StoreResult<Option<Vec<u8>>> {
        let row = self
            .query_opt(
                "DELETE FROM flashes WHERE id = $1 RETURNING value, expires_at",
                &[&id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let expires_at: i64 = col(&row, "expires_at")?;
        if uint(expires_at) <= now {
            return Ok(None);
        }
        col(&row, "value").map(Some)
    }

    async fn sweep_flashes(&self, now: u64) -> StoreResult<usize> {
        let n = self
            .execute("DELETE FROM flashes WHERE expires_at <= $1", &[&int(now)])
            .await?;
        Ok(n as usize)
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = self
            .query(
                "SELECT kid, alg, pkcs8_der, created_at FROM signing_keys ORDER BY created_at, kid",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: col(r, "kid")?,
                    alg: col(r, "alg")?,
                    pkcs8_der: col(r, "pkcs8_der")?,
                    created_at: uint(col(r, "created_at")?),
                })
            })
            .collect()
    }

    async fn put_signing_key(&self, key: &StoredKey) -> StoreResult<()> {
        self.execute(
            "INSERT INTO signing_keys (kid, alg, pkcs8_der, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kid) DO UPDATE SET alg = EXCLUDED.alg, pkcs8_der = EXCLUDED.pkcs8_der,
                 created_at = EXCLUDED.created_at",
            &[&key.kid, &key.alg, &key.pkcs8_der, &int(key.created_at)],
        )
        .await
        .map(|_| ())
    }

    async fn add_signing_key(&self, key: &StoredKey) -> StoreResult<bool> {
        let n = self
            .execute(
                "INSERT INTO signing_keys (kid, alg, pkcs8_der, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kid) DO NOTHING",
                &[&key.kid, &key.alg, &key.pkcs8_der, &int(key.created_at)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn secret(
        &self,
        name: &str,
        make: &(dyn Fn() -> Vec<u8> + Send + Sync),
    ) -> StoreResult<Vec<u8>> {
        if let Some(row) = self
            .query_opt("SELECT value FROM secrets WHERE name = $1", &[&name])
            .await?
        {
            return col(&row, "value");
        }
        let fresh = make();
        // Whoever lands first wins; everyone reads that value back.
        self.execute(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &fresh],
        )
        .await?;
        let row = self
            .query_opt("SELECT value FROM secrets WHERE name = $1", &[&name])
            .await?;
        match row {
            Some(row) => col(&row, "value"),
            None => Ok(fresh),
        }
    }
}

/// Audit events are read in pages of this many rows.
const AUDIT_PAGE: i64 = 500;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_event(&self, event: &AuditEvent) -> StoreResult<()> {
        self.execute(
            "INSERT INTO audit_events (id, value) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            &[&event.id, &Json(event)],
        )
        .await
        .map(|_| ())
    }

    async fn events(&self, since: u64, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        let start = format!("{since:016x}");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT value FROM audit_events WHERE id >= $1 ORDER BY id LIMIT $2",
                &[&start, &limit],
            )
            .await?;
        rows.iter().map(|r| json_of(r, "value")).collect()
    }

    async fn scan_events(
        &self,
        since: u64,
        visit: &mut (dyn FnMut(AuditEvent) -> bool + Send),
    ) -> StoreResult<()> {
        let mut after = None::<String>;
        let start = format!("{since:016x}");
        loop {
            let rows = match &after {
                None => {
                    self.query(
                        "SELECT id, value FROM audit_events WHERE id >= $1 ORDER BY id LIMIT $2",
                        &[&start, &AUDIT_PAGE],
                    )
                    .await?
                }
                Some(last) => {
                    self.query(
                        "SELECT id, value FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2",
                        &[last, &AUDIT_PAGE],
                    )
                    .await?
                }
            };
            for row in &rows {
                if !visit(json_of(row, "value")?) {
                    return Ok(());
                }
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == AUDIT_PAGE => after = Some(col(last, "id")?),
                _ => return Ok(()),
            }
        }
    }

    async fn sweep_events(&self, cutoff: u64) -> StoreResult<usize> {
        let end = format!("{cutoff:016x}");
        let n = self
            .execute("DELETE FROM audit_events WHERE id < $1", &[&end])
            .await?;
        Ok(n as usize)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn flush(&self) -> StoreResult<()> {
        // Every statement commits durably before it answers (synchronous commit).
        Ok(())
    }

    async fn ready(&self) -> StoreResult<()> {
        self.check_ready().await
    }

    fn postgres(&self) -> Option<&PgStore> {
        Some(self)
    }

    fn transfer(&self) -> Option<&dyn Transfer> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
