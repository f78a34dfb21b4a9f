//! Running the server: open the store, load keys, bind, serve, and reload the config
//! on SIGHUP or when a config file changes. A config that fails to load is refused with
//! its diagnostics logged, and the previous one keeps serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;

use crate::authn::sealing::SealingKey;
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config, CredentialsKey, StoreConfig};
use crate::oidc::keys::Keys;
use crate::store::{SledStore, Store};
use crate::web::{self, AppState, Shared};

/// Open the store and keys for a config. Blocking (RSA key generation on first start).
/// The data folder is created private, and refused when others can read it or the
/// credentials key file (see `data_folder`).
pub async fn open_state(config: Config) -> anyhow::Result<Shared> {
    let store = open_store(&config).await?;
    state_with_store(config, store).await
}

/// Open the configured store. Opening sled is blocking (it may wait out the folder
/// lock of a process that is just exiting), so it runs on the blocking pool.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let key_file = match &config.security.credentials_key {
        CredentialsKey::File(path) => Some(path.clone()),
        CredentialsKey::Inline(_) => None,
    };
    match &config.store {
        StoreConfig::Sled {
            path,
            allow_open_permissions,
        } => {
            let (path, open) = (path.clone(), *allow_open_permissions);
            let store = tokio::task::spawn_blocking(move || -> anyhow::Result<SledStore> {
                crate::data_folder::prepare(&path, key_file.as_deref(), open)?;
                SledStore::open(&path).map_err(|e| {
                    anyhow::anyhow!("cannot open the store at {}: {e}", path.display())
                })
            })
            .await??;
            Ok(Arc::new(store))
        }
        StoreConfig::Postgres(settings) => {
            let store = crate::store::PgStore::open(settings).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the PostgreSQL store at {}: {e}",
                    settings.redacted_url()
                )
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// Build the state over an existing store (tests use a temporary one).
pub async fn state_with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Shared> {
    state_with(config, store, Arc::new(SystemClock)).await
}

/// Build the state over an existing store and a clock (tests move a manual one).
pub async fn state_with(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Shared> {
    let keys = Keys::load_or_generate(store.as_ref(), clock.now()).await?;
    store.flush().await?;
    let sealing = SealingKey::load(&config.security.credentials_key)?;
    AppState::new(config, store, keys, sealing, clock).await
}

/// A running server: its address, and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish (up to `server.shutdown_grace_seconds`),
    /// and wait.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Serve `state` on `listener` in a background task.
pub fn spawn(state: Shared, listener: TcpListener) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = web::app(state.clone());
    let sweeper_state = state.clone();
    let sweeper = tokio::spawn(async move { sweep_forever(sweeper_state).await });
    let keys_state = state.clone();
    let key_reloader = tokio::spawn(async move { reload_keys_forever(keys_state).await });
    // Transport limits are read once: the listener outlives any reload.
    let settings = state.config().server.clone();
    let task = tokio::spawn(async move {
        crate::transport::run(listener, router, &settings, async {
            let _ = rx.await;
        })
        .await;
        sweeper.abort();
        key_reloader.abort();
    });
    Ok(Running {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Read the signing keys again every minute: another node, or `usher keys rotate`, may
/// have added one, and a new key starts signing once its publication lead has passed.
async fn reload_keys_forever(state: Shared) {
    let period = Duration::from_secs(crate::oidc::keys::RELOAD_SECONDS);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        match state.keys.reload(state.store.as_ref(), state.now()).await {
            Ok(true) => tracing::info!(
                "signing keys reloaded: the published set or the signing key changed"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "reloading the signing keys failed"),
        }
    }
}

/// Drop expired in-progress logins once a minute.
async fn sweep_forever(state: Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let ttl = state.config().security.flow_ttl;
        let store = state.store.clone();
        let cutoff = state.now().saturating_sub(ttl);
        match store.sweep_flows(cutoff).await {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "expired sign-ins swept"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired sign-ins failed"),
            _ => {}
        }
        sweep_sessions_and_audit(&state).await;
    }
}

/// Drop expired SSO sessions, tokens, flash messages and counters, and audit events
/// past `audit.retention_days`.
async fn sweep_sessions_and_audit(state: &Shared) {
    let store = state.store.clone();
    let retention = state.config().audit.retention_days;
    let now = state.now();
    let swept = async {
        let sessions = store.sweep_sessions(now).await?
            + store.sweep_tokens(now).await?
            + store.sweep_flashes(now).await?
            + store.sweep_counters(now).await?;
        let events = crate::audit::sweep(store.as_ref(), now, retention).await?;
        Ok::<_, crate::store::StoreError>((sessions, events))
    }
    .await;
    match swept {
        Ok((sessions, events)) if sessions + events > 0 => {
            tracing::debug!(
                sessions,
                events,
                "expired sessions and old audit events swept"
            )
        }
        Err(e) => tracing::warn!(error = %e, "sweeping sessions and audit events failed"),
        _ => {}
    }
}

/// What the watcher compares to notice a change: every config file's path, length and
/// modification time, plus the folder listings (a new file under `apps/` counts).
fn snapshot(path: &Path, files: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut all: Vec<PathBuf> = files.to_vec();
    if path.is_dir() {
        for sub in ["apps", "connections"] {
            if let Ok(entries) = std::fs::read_dir(path.join(sub)) {
                all.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    all.sort();
    all.dedup();
    all.into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let mtime = meta.and_then(|m| m.modified().ok());
            (p, len, mtime)
        })
        .collect()
}

/// Try to load the config again; swap it in if it is valid. Returns whether it was.
pub fn reload(state: &Shared, path: &Path) -> bool {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                tracing::warn!("{}", w.message);
            }
            let old = state.config();
            if old.store != loaded.config.store
                || old.listen != loaded.config.listen
                || old.metrics.bind != loaded.config.metrics.bind
                || old.server != loaded.config.server
                || old.log != loaded.config.log
            {
                tracing::warn!(
                    "store, listen, metrics.bind, server and log changes take effect on restart"
                );
            }
            state.replace_config(loaded.config);
            tracing::info!(config = %path.display(), "configuration reloaded");
            true
        }
        Err(diagnostics) => {
            tracing::error!(config = %path.display(), "new configuration refused; still serving the previous one:\n{diagnostics}");
            false
        }
    }
}

/// Watch the config files (polling once a second) and SIGHUP; reload on either.
pub async fn watch_config(state: Shared, path: PathBuf) {
    let mut last = snapshot(&path, &state.config().files);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let by_signal = match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = tick.tick() => false,
                _ = h.recv() => true,
            },
            None => {
                tick.tick().await;
                false
            }
        };
        #[cfg(not(unix))]
        let by_signal = {
            tick.tick().await;
            false
        };
        let files = state.config().files.clone();
        let p = path.clone();
        let now = tokio::task::spawn_blocking(move || snapshot(&p, &files))
            .await
            .unwrap_or_default();
        if by_signal || now != last {
            if by_signal {
                tracing::info!("SIGHUP: reloading configuration");
            }
            let st = state.clone();
            let p = path.clone();
            let _ = tokio::task::spawn_blocking(move || reload(&st, &p)).await;
            last = snapshot(&path, &state.config().files);
        }
    }
}

/// `usher serve`: run until Ctrl-C or SIGTERM. Logging is set up here, once the
/// config is read: in `log_format` (from `USHER_LOG_FORMAT`) when given, else in the
/// config's `log.format`; a config that does not load is reported in `log_format` or
/// as text.
pub async fn serve(
    config_path: PathBuf,
    record: Option<PathBuf>,
    log_format: Option<crate::logging::LogFormat>,
) -> anyhow::Result<()> {
    let loaded = config::load(&config_path);
    let from_config = loaded.as_ref().ok().map(|l| l.config.log.format);
    crate::logging::init(crate::logging::choose(log_format, from_config));
    let loaded = loaded.map_err(|d| anyhow::anyhow!("{}", d.unprefixed()))?;
    for w in &loaded.warnings {
        tracing::warn!("{}", w.message);
    }
    for check in crate::upstream::Upstreams::new()
        .check_issuers(&loaded.config)
        .await
    {
        match check {
            crate::upstream::IssuerCheck::Matches(_) => {}
            crate::upstream::IssuerCheck::Differs(e) => anyhow::bail!("{e}"),
            crate::upstream::IssuerCheck::Unchecked(id, why) => tracing::warn!(
                connection = %id,
                "the connection's issuer could not be checked at start-up: {why}"
            ),
        }
    }
    let listen = loaded.config.listen;
    let issuer = crate::oidc::issuer(&loaded.config);
    let state = open_state(loaded.config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    if let Some(dir) = record {
        tracing::info!(dir = %dir.display(), "recording every finished sign-in as a fixture");
        state.record_to(dir);
    }
    let running = spawn(state.clone(), listener)?;
    tracing::info!(%issuer, addr = %running.addr, "Usher is serving");
    // For people; a log collector reads the line above (JSON keeps stdout empty).
    if crate::logging::active() != Some(crate::logging::LogFormat::Json) {
        println!("Usher is serving {issuer} on http://{}", running.addr);
    }
    let metrics = spawn_metrics_listener(&state).await?;
    let watcher = tokio::spawn(watch_config(state, config_path));
    shutdown_signal().await;
    tracing::info!("shutting down");
    watcher.abort();
    if let Some(task) = metrics {
        task.abort();
    }
    running.stop().await;
    Ok(())
}

/// Serve `/metrics` on its own address when `metrics.bind` asks for one, so it can stay
/// off the public listener. Changing `bind` takes effect on restart.
async fn spawn_metrics_listener(
    state: &Shared,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let settings = state.config().metrics.clone();
    let (true, Some(bind)) = (settings.enabled, settings.bind) else {
        return Ok(None);
    };
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {bind}: {e}"))?;
    tracing::info!(addr = %bind, "metrics at /metrics");
    let router = web::metrics::router(state.clone());
    let limits = state.config().server.clone();
    Ok(Some(tokio::spawn(async move {
        crate::transport::run(listener, router, &limits, std::future::pending()).await;
    })))
}

/// Wait for Ctrl-C or SIGTERM (`usher serve` and `usher demo` stop on either).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
