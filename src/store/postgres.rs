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
mod combined;
mod credentials;
mod groups;
mod query;
mod tokens;
mod transfer;

/// The migrations, in order: (version, SQL). A released migration never changes; a
/// new schema is a new file.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("postgres/migrations/0001_initial.sql")),
    (2, include_str!("postgres/migrations/0002_groups.sql")),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i32 = 2;

/// How the "unavailable" error of a database whose schema is older than this binary's
/// begins ([`PgStore::check_ready`]).
pub const MIGRATIONS_PENDING: &str = "schema migrations pending";

/// How to reach the database (`store: { postgres: … }`, resolved). Its `Debug` shows
/// the URL redacted.
#[derive(Clone, PartialEq, Eq)]
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
    /// The certificate authorities (PEM) that sign the database's certificate, for a
    /// URL with `sslmode=require`; without it, the public web's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> PgSettings {
        PgSettings {
            url: url.into(),
            schema: "public".into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }

    /// The URL with any password replaced by `***`, for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// `url` with its password hidden, whether or not it parses: wherever the driver would
/// find one (the user information, a `password` query parameter, a key=value pair),
/// and erring towards hiding more.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", redact_url_rest(rest)),
        None => redact_key_values(url),
    }
}

/// A URL after its `scheme://`.
fn redact_url_rest(rest: &str) -> String {
    // The driver takes everything before the first `@` as the user information, `/`,
    // `?` and all; an unencoded `@` in a password pushes the host after a later one.
    let (userinfo, tail) = match rest.find('@') {
        Some(first) => {
            let after = &rest[first + 1..];
            let host_end = after.find(['/', '?']).unwrap_or(after.len());
            let at = match after[..host_end].rfind('@') {
                Some(later) => first + 1 + later,
                None => first,
            };
            (Some(&rest[..at]), &rest[at..])
        }
        None => (None, rest),
    };
    let mut out = String::new();
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(userinfo),
        }
    }
    match tail.split_once('?') {
        Some((head, query)) => {
            out.push_str(head);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if percent_decoded(key).eq_ignore_ascii_case(b"password") => {
                        format!("{key}=***")
                    }
                    _ => param.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

/// `%XX` escapes decoded, as the driver decodes a query parameter's name.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A key=value connection string, read as the driver reads it (spaces around `=`,
/// quoted values with backslash escapes), with the value of `password` hidden.
fn redact_key_values(text: &str) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(text.len(), |&(o, _)| o);
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < chars.len() {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let key_start = i;
        while at(i).is_some_and(|c| !c.is_whitespace() && c != '=') {
            i += 1;
        }
        let key = &text[offset(key_start)..offset(i)];
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            // Not a pair the driver would accept: hide the rest, to be safe.
            if key_start < chars.len() && !key.is_empty() {
                out.push_str(&text[copied..offset(key_start)]);
                out.push_str("***");
                return out;
            }
            break;
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let value_start = i;
        if at(i) == Some('\'') {
            i += 1;
            while let Some(c) = at(i) {
                i += if c == '\\' { 2 } else { 1 };
                if c == '\'' {
                    break;
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                i += if c == '\\' { 2 } else { 1 };
            }
        }
        let value_end = i.min(chars.len());
        if key.eq_ignore_ascii_case("password") {
            out.push_str(&text[copied..offset(value_start)]);
            out.push_str("***");
            copied = offset(value_end);
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// Parse a connection URL the way the driver will, for `usher check`.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| e.to_string())
}

/// Whether a schema name can be used: lower-case letters, digits and `_`, so that
/// quoted (as it is wherever it is written into SQL, a keyword like `user` too) it
/// names the schema an unquoted mention would.
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

/// The TLS client for a URL that asks for TLS (`sslmode=require`), verifying the
/// server's certificate and name against `ca_file`'s authorities, or the public web's
/// roots without one; `None` for a URL that does not (`disable`, or the default
/// `prefer`, which Usher does not upgrade on its own: it either verifies TLS or says,
/// through `usher check`, that it does not use it).
pub fn tls_client(
    config: &tokio_postgres::Config,
    ca_file: Option<&std::path::Path>,
) -> Result<Option<rustls::ClientConfig>, String> {
    if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_ca_file(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a certificate is not usable: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tls))
}

/// The first host of a connection config that is neither a loopback address, nor
/// `localhost`, nor a Unix socket: a database reached over the network.
pub fn remote_host(config: &tokio_postgres::Config) -> Option<String> {
    config.get_hosts().iter().find_map(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            let local = name == "localhost"
                || name
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            (!local).then(|| name.clone())
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => None,
    })
}

/// The certificates of a PEM file of certificate authorities; an error names the file
/// and says what is wrong with it (unreadable, no certificate, not PEM).
pub fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    // A CA bundle is a few hundred KiB at most; refuse to read a larger file whole.
    const MAX: u64 = 4 << 20;
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len > MAX {
        return Err(format!(
            "{} is {len} bytes; a file of certificate authorities is at most 4 MiB",
            path.display()
        ));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM file of certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate (a PEM block `BEGIN CERTIFICATE`)",
            path.display()
        ));
    }
    Ok(certs)
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    // The driver's top error says what failed ("error performing TLS handshake"), its
    // sources why ("invalid peer certificate: UnknownIssuer"): an operator needs both.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    StoreError::Unavailable(format!("no database connection: {text}"))
}

/// Whether `text` can be stored at all: PostgreSQL's text holds no NUL, so a lookup
/// by text with one (a client's choice) finds nothing, without asking the database,
/// which would refuse the parameter and fail the request.
fn storable(text: &str) -> bool {
    !text.contains('\0')
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

/// A record as a `jsonb` parameter. `jsonb` cannot hold a NUL, and a record refused
/// for one would fail the request that wrote it (a pass-through claim of an upstream,
/// a name someone typed): every NUL in a string or a key is written as U+FFFD instead.
#[derive(Debug)]
pub(super) struct Doc(serde_json::Value);

impl Doc {
    pub(super) fn of<T: serde::Serialize>(record: &T) -> StoreResult<Doc> {
        let mut value =
            serde_json::to_value(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        scrub_nul(&mut value);
        Ok(Doc(value))
    }
}

fn scrub_nul(value: &mut serde_json::Value) {
    use serde_json::Value;
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    match value {
        Value::String(s) if s.contains('\0') => *s = clean(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    map.insert(clean(&k), v);
                }
            }
            map.values_mut().for_each(scrub_nul);
        }
        _ => {}
    }
}

impl ToSql for Doc {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Json(&self.0).to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <Json<serde_json::Value> as ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

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
        // Added to the URL's own server options (a statement timeout, …), not in
        // their place.
        // Quoted: a valid name may still be a keyword (`user`).
        let search_path = format!("-c search_path=\"{}\"", settings.schema);
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {search_path}"),
            _ => search_path,
        };
        config.options(options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.acquire_timeout);
        }
        // A database that vanishes without closing its connections (a failover, a
        // dropped network) must not hold a node's pool for the kernel's default of two
        // hours: probe idle connections after 30 s, and give up on unacknowledged
        // writes after 30 s, unless the URL says otherwise.
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives(true);
            config.keepalives_idle(Duration::from_secs(30));
            config.keepalives_interval(Duration::from_secs(10));
            config.keepalives_retries(3);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(30));
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager =
            match tls_client(&config, settings.ca_file.as_deref()).map_err(StoreError::Backend)? {
                Some(tls) => Manager::from_config(
                    config,
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                    manager_config,
                ),
                None => Manager::from_config(config, NoTls, manager_config),
            };
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

    /// A one-off statement: sent unnamed with its parameters' types, in one round trip,
    /// and not cached (for SQL built per call, like an account filter).
    async fn query_unprepared(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), tokio_postgres::types::Type)],
    ) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        self.counted(1, 1);
        client.query_typed(sql, params).await.map_err(pg)
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
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
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
                 refresh_tokens, signing_keys, secrets, audit_events, groups, group_names,
                 group_members",
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

    async fn query(&self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql).await?;
        self.store.counted(1, 1);
        self.tx.query(&statement, params).await.map_err(pg)
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
        if !storable(id) {
            return Ok(None);
        }
        let row = self
            .query_opt("SELECT value FROM flows WHERE id = $1", &[&id])
            .await?;
        row.map(|r| col(&r, "value")).transpose()
    }

    async fn delete_flow(&self, id: &str) -> StoreResult<()> {
        if !storable(id) {
            return Ok(());
        }
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
        if !storable(state_hash) {
            return Ok(None);
        }
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
        if !storable(id) {
            return Ok(None);
        }
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

/// The event as PostgreSQL can keep it. JSON there cannot hold a NUL, and a refused
/// event would be lost (the core logs the failure and goes on): whoever typed or sent
/// a NUL would leave no trace. The event is kept with U+FFFD in its place.
fn clean_event(event: &AuditEvent) -> AuditEvent {
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    AuditEvent {
        id: clean(&event.id),
        at: event.at,
        kind: clean(&event.kind),
        app: event.app.as_deref().map(clean),
        sub: event.sub.as_deref().map(clean),
        outcome: clean(&event.outcome),
        detail: event.detail.iter().map(|d| clean(d)).collect(),
    }
}

/// Audit events are read in pages of this many rows.
const AUDIT_PAGE: i64 = 500;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_event(&self, event: &AuditEvent) -> StoreResult<()> {
        let event = clean_event(event);
        self.execute(
            "INSERT INTO audit_events (id, value) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            &[&event.id, &Doc::of(&event)?],
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

    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>> {
        self.account_joined(user_id).await
    }

    async fn session_with_account(
        &self,
        id_hash: &str,
    ) -> StoreResult<Option<(Session, Option<Account>)>> {
        self.session_with_account_joined(id_hash).await
    }

    async fn redeem_code_at(
        &self,
        code_hash: &str,
        grant_id: &str,
        now: u64,
    ) -> StoreResult<Redemption> {
        self.redeem_code_joined(code_hash, grant_id, now).await
    }

    async fn rotate_refresh_at(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: u64,
    ) -> StoreResult<Rotation> {
        self.rotate_refresh_joined(old_hash, new_hash, now).await
    }

    async fn create_grant_with_refresh(
        &self,
        grant: &Grant,
        refresh_hash: &str,
        refresh: &RefreshRecord,
    ) -> StoreResult<bool> {
        self.create_grant_with_refresh_joined(grant, refresh_hash, refresh)
            .await
    }

    async fn put_code_with_events(
        &self,
        code_hash: &str,
        record: &CodeRecord,
        events: &[AuditEvent],
    ) -> StoreResult<()> {
        self.put_code_with_events_joined(code_hash, record, events)
            .await
    }
}

#[cfg(test)]
mod tests;
