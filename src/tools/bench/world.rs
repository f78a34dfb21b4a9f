//! What the load tool signs in to: an Usher started in-process on a loopback port with
//! a store of the run's own (a temporary sled folder, or a PostgreSQL database opened
//! through the same `store:` config a node reads), local stand-ins for Google and
//! GitHub and seeded users; or an Usher already running somewhere (`--url`).
//!
//! In-process, Usher, the stand-ins and the load generator each run on their own
//! runtime with their own thread names, so the CPU time of each can be told apart.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use super::measure::{UPSTREAM_THREADS, USHER_THREADS};
use super::BenchArgs;
use crate::server::Running;
use crate::store::{Store, User};
use crate::tools::standin::{Kind, Standin, StandinConfig, StandinUser};
use crate::web::Shared;

/// Where the hosted pages send the browser back: never contacted, only parsed.
pub const REDIRECT_URI: &str = "http://127.0.0.1:1/callback";
/// The secret of every bench app, and the password of every bench user.
pub const SECRET: &str = "bench-secret";
pub const PASSWORD: &str = "bench-password-1";

/// Apps of the in-process config.
pub const PASSWORD_APP: &str = "bench-password";
pub const FEDERATED_APP: &str = "bench-federated";
pub const SCRIPT_APP: &str = "bench-script";
pub const SERVICE_APP: &str = "bench-service";

/// The script of the two-step scenario: the JIT article's "MFA only with an account".
const SCRIPT: &str =
    "let first = execute_step(1);\nif first.user.has_account {\n    execute_step(2);\n}\n";

/// The store of the in-process Usher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// sled in a temporary folder: one node.
    Sled,
    /// PostgreSQL, as `store: { postgres: { url, schema } }` in the config, with a
    /// credentials key in the config as every node of a shared database has.
    Postgres { url: String, schema: String },
}

/// Which stand-in the federated scenarios go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Google,
    Github,
}

impl Upstream {
    pub fn connection(self) -> &'static str {
        match self {
            Upstream::Google => "google",
            Upstream::Github => "github",
        }
    }

    /// The upstream id of bench user `n` of a family (GitHub ids are numbers).
    pub fn user_id(self, family: u64, n: u64) -> String {
        match self {
            Upstream::Google => format!("g{family}-{n}"),
            Upstream::Github => (family * 10_000_000 + n).to_string(),
        }
    }
}

/// User families, so the scenarios never share an upstream user.
pub const FAMILY_RETURNING: u64 = 1;
pub const FAMILY_JIT: u64 = 2;
pub const FAMILY_SCRIPT: u64 = 3;

/// An in-process Usher and its upstreams.
pub struct Local {
    server: Runtime,
    upstream_rt: Runtime,
    running: Option<Running>,
    pub state: Shared,
    google: Option<Standin>,
    github: Option<Standin>,
    pub upstream: Upstream,
    /// The database, for what each scenario costs it (PostgreSQL).
    pub db: Option<super::pg::DbProbe>,
    /// Last, so it is removed after the store is closed.
    _dir: TempDir,
}

/// A folder for the store and config, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("usher-bench-{}", crate::crypto::random_token(6)));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the scenarios run against.
pub struct Target {
    pub issuer: String,
    pub http: reqwest::Client,
    pub local: Option<Local>,
    /// An external Usher's process, for its CPU time and memory.
    pub pid: Option<u32>,
    /// Client id and secret of the app used for password sign-ins.
    pub password_client: (String, Option<String>),
    pub redirect_uri: String,
    /// The login and password of the password scenario (external: one given user).
    pub external_user: Option<(String, String)>,
    /// Client id and secret of a `client_credentials` client.
    pub service_client: Option<(String, String)>,
}

fn runtime(name: &'static str, workers: usize) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        // Idle blocking threads stay, so their CPU time stays countable.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
}

/// The HTTP client of the load generator: no redirects (followed by hand), no cookies
/// (each sign-in has its own jar), a timeout so nothing hangs.
pub fn http_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency.max(1) * 2)
        .user_agent("usher-bench")
        .build()?)
}

impl Target {
    /// An Usher someone else started.
    pub fn external(args: &BenchArgs, url: &str) -> anyhow::Result<Target> {
        let client_id = args.client_id.clone().ok_or_else(|| {
            anyhow::anyhow!("--url needs --client-id (and usually --client-secret)")
        })?;
        Ok(Target {
            issuer: url.trim_end_matches('/').to_string(),
            http: http_client(args.concurrency)?,
            local: None,
            pid: args.pid,
            password_client: (client_id, args.client_secret.clone()),
            redirect_uri: args
                .redirect_uri
                .clone()
                .unwrap_or_else(|| REDIRECT_URI.to_string()),
            external_user: args.username.clone().zip(args.password.clone()),
            service_client: args
                .service_client_id
                .clone()
                .zip(args.service_secret.clone()),
        })
    }

    /// Usher in-process on a loopback port over `store`, with stand-ins and seeded
    /// users.
    pub fn local(
        args: &BenchArgs,
        upstream: Upstream,
        alg: &str,
        store: &StoreChoice,
        db: Option<super::pg::DbProbe>,
    ) -> anyhow::Result<Target> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let server = runtime(USHER_THREADS, cores)?;
        let upstream_rt = runtime(UPSTREAM_THREADS, cores)?;
        let google = upstream_rt.block_on(Standin::start(StandinConfig::new(
            Kind::Oidc,
            "usher-google",
            "google-secret",
        )))?;
        let github = upstream_rt.block_on(Standin::start(StandinConfig::new(
            Kind::Github,
            "usher-github",
            "github-secret",
        )))?;
        let dir = TempDir::new()?;
        std::fs::write(dir.path().join("two-step.rhai"), SCRIPT)?;
        let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let mut yaml = config_yaml(
            &issuer,
            &google,
            &github,
            upstream,
            alg,
            args.flow_ttl,
            store,
        );
        yaml.push_str(&store_yaml(store, args.concurrency));
        let path = dir.path().join("usher.yaml");
        std::fs::write(&path, yaml)?;
        let loaded = crate::config::load_with_env(&path, &|_| None)
            .map_err(|d| anyhow::anyhow!("the bench config does not load:\n{d}"))?;
        let store: Arc<dyn Store> = match store {
            StoreChoice::Sled => Arc::new(crate::store::SledStore::open(&dir.path().join("data"))?),
            // As a node opens it: connect, migrate.
            StoreChoice::Postgres { .. } => {
                server.block_on(crate::server::open_store(&loaded.config))?
            }
        };
        let state = server.block_on(crate::server::state_with_store(loaded.config, store))?;
        let running = server.block_on(async { crate::server::spawn(state.clone(), listener) })?;
        server.block_on(seed_password_users(&state, args.users))?;
        Ok(Target {
            issuer,
            http: http_client(args.concurrency)?,
            local: Some(Local {
                server,
                upstream_rt,
                running: Some(running),
                state,
                google: Some(google),
                github: Some(github),
                upstream,
                db,
                _dir: dir,
            }),
            pid: None,
            password_client: (PASSWORD_APP.into(), Some(SECRET.into())),
            redirect_uri: REDIRECT_URI.into(),
            external_user: None,
            service_client: Some((SERVICE_APP.into(), SECRET.into())),
        })
    }

    /// Stop everything that was started here.
    pub fn stop(mut self) {
        if let Some(mut local) = self.local.take() {
            if let Some(running) = local.running.take() {
                local.server.block_on(running.stop());
            }
            for standin in [local.google.take(), local.github.take()]
                .into_iter()
                .flatten()
            {
                local.upstream_rt.block_on(standin.stop());
            }
            local.server.shutdown_timeout(Duration::from_secs(2));
            local.upstream_rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Local {
    /// Make upstream user `n` of `family` known to the stand-in.
    pub fn upstream_user(&self, family: u64, n: u64) -> String {
        let id = self.upstream.user_id(family, n);
        let login = format!("bench{family}x{n}");
        let user = StandinUser::new(
            &id,
            &login,
            &format!("Bench User {family}-{n}"),
            &format!("{login}@bench.example"),
        );
        let standin = match self.upstream {
            Upstream::Google => &self.google,
            Upstream::Github => &self.github,
        };
        if let Some(s) = standin {
            s.set_user(user);
        }
        id
    }

    /// Run `work` on Usher's runtime: a database connection it opens is then driven
    /// by Usher's threads (whose CPU time is Usher's), not the load generator's.
    pub async fn on_server<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.server.spawn(work).await?
    }

    /// Make the store's writes durable (sled flushes; PostgreSQL has committed).
    pub async fn flush(&self) -> anyhow::Result<()> {
        let state = self.state.clone();
        self.on_server(async move { Ok(state.store.flush().await?) })
            .await
    }

    /// Enrol upstream user `n` of `family` (already provisioned) in TOTP; returns the
    /// secret the authenticator app would hold.
    pub async fn enrol_totp(&self, family: u64, n: u64) -> anyhow::Result<Vec<u8>> {
        let (state, upstream) = (self.state.clone(), self.upstream);
        self.on_server(enrol_totp(state, upstream, family, n)).await
    }

    pub fn store_name(&self) -> &'static str {
        match self.state.store.postgres() {
            Some(_) => "postgres",
            None => "sled",
        }
    }

    /// The PostgreSQL store's statements and round trips so far (`None` on sled).
    pub fn pg_counts(&self) -> Option<crate::store::postgres::PgCounts> {
        self.state.store.postgres().map(|p| p.counts())
    }
}

async fn enrol_totp(
    state: Shared,
    upstream: Upstream,
    family: u64,
    n: u64,
) -> anyhow::Result<Vec<u8>> {
    let subject = upstream.user_id(family, n);
    let store = &state.store;
    let uid = store
        .identity(upstream.connection(), &subject)
        .await?
        .ok_or_else(|| anyhow::anyhow!("upstream user {subject} was not provisioned"))?;
    let secret = crate::authn::totp::generate_secret();
    let sealed = state
        .sealing
        .seal(&secret, uid.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .put_totp(
            &uid,
            &crate::store::TotpCredential {
                sealed_secret: sealed,
                created_at: crate::crypto::unix_now(),
                last_step: 0,
                confirmed: true,
            },
        )
        .await?;
    Ok(secret)
}

/// The `store:` of the config.
fn store_yaml(store: &StoreChoice, concurrency: usize) -> String {
    match store {
        StoreChoice::Sled => String::new(),
        StoreChoice::Postgres { url, schema } => {
            // A JSON string is a YAML double-quoted scalar.
            let url = serde_json::to_string(url).unwrap_or_default();
            // Enough connections that no request waits for one: every sign-in in
            // flight holds at most one at a time.
            let pool = (concurrency * 2).clamp(16, 1000);
            format!(
                r#"store:
  postgres:
    url: {url}
    schema: {schema}
    pool: {{ max_connections: {pool} }}
"#
            )
        }
    }
}

/// The login name of password user `n`.
pub fn password_user(n: u64) -> String {
    format!("bench-pw-{n}")
}

/// Local accounts for the password scenario, all with the same Argon2id hash (one
/// hash is enough: verifying costs the same whatever the salt).
async fn seed_password_users(state: &Shared, count: u64) -> anyhow::Result<()> {
    let hash = crate::authn::password::hash(PASSWORD)?;
    let now = crate::crypto::unix_now();
    for n in 0..count.max(1) {
        let name = password_user(n);
        state
            .store
            .create_user(&User {
                role_sources: Default::default(),
                id: format!("u_{name}"),
                username: name.clone(),
                email: Some(format!("{name}@bench.example")),
                email_verified: true,
                name: Some(format!("Bench {n}")),
                given_name: None,
                family_name: None,
                picture: None,
                roles: vec![],
                password_hash: Some(hash.clone()),
                disabled: false,
                created_at: now,
                updated_at: now,
            })
            .await?;
    }
    state.store.flush().await?;
    Ok(())
}

fn config_yaml(
    issuer: &str,
    google: &Standin,
    github: &Standin,
    upstream: Upstream,
    alg: &str,
    flow_ttl: u64,
    store: &StoreChoice,
) -> String {
    // Nodes of a shared database share the key that seals second-factor secrets; it
    // lives in the config, never in the database.
    let credentials_key = match store {
        StoreChoice::Sled => String::new(),
        StoreChoice::Postgres { .. } => format!(
            "  credentials_key: \"{}\"\n",
            crate::crypto::random_token(crate::config::CREDENTIALS_KEY_LEN)
        ),
    };
    let g = google.issuer();
    let h = &github.base_url;
    let conn = upstream.connection();
    format!(
        r#"issuer: "{issuer}"
listen: "127.0.0.1:0"
metrics: {{ enabled: true }}
security:
  flow_ttl_seconds: {flow_ttl}
  # Every simulated user signs in from 127.0.0.1; the bench measures sign-ins, not the
  # per-address throttle that would (rightly) stop one address doing thousands.
  throttle: {{ enabled: false }}
{credentials_key}connections:
  google:
    kind: google
    client_id: usher-google
    client_secret: google-secret
    issuer: "{g}"
  github:
    kind: github
    client_id: usher-github
    client_secret: github-secret
    authorize_url: "{h}/login/oauth/authorize"
    token_url: "{h}/login/oauth/access_token"
    userinfo_url: "{h}/user"
    emails_url: "{h}/user/emails"
apps:
  {PASSWORD_APP}:
    name: Bench
    client_id: {PASSWORD_APP}
    client_secret: {SECRET}
    redirect_uris: ["{REDIRECT_URI}"]
    signing_alg: {alg}
    sign_in:
      steps: [[password]]
  {FEDERATED_APP}:
    name: Bench federated
    client_id: {FEDERATED_APP}
    client_secret: {SECRET}
    redirect_uris: ["{REDIRECT_URI}"]
    signing_alg: {alg}
    sign_in:
      steps: [[{conn}]]
  {SCRIPT_APP}:
    name: Bench two-step
    client_id: {SCRIPT_APP}
    client_secret: {SECRET}
    redirect_uris: ["{REDIRECT_URI}"]
    signing_alg: {alg}
    sign_in:
      steps: [[{conn}], [totp]]
      script: two-step.rhai
  {SERVICE_APP}:
    name: Bench service
    client_id: {SERVICE_APP}
    client_secret: {SECRET}
    signing_alg: {alg}
    grants: [client_credentials]
    scopes: [audit]
"#
    )
}
