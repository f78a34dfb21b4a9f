//! `usher store copy --from CONFIG --to CONFIG`: move a deployment's data to another
//! store (sled to PostgreSQL, back, or sled to sled): every record, with counts per
//! kind printed and compared. Unlike the other admin commands it opens the stores
//! itself, so the servers using them must be stopped (sled's folder lock enforces it
//! for sled; nothing does for a database).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::authn::sealing::SealingKey;
use crate::config::{Config, CredentialsKey, StoreConfig};
use crate::store::transfer::{self, CopyError, CopyOptions, Kind, Record, Sink};
use crate::store::{Store, StoreResult};

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy every record of one config's store into another config's: accounts,
    /// identities, second factors, sessions, tokens, signing keys, server secrets and
    /// the audit trail. Stop the servers first. The target config must use the same
    /// credentials key (`security.credentials_key`), which seals the TOTP secrets.
    Copy {
        /// The config whose store is read (a file, or a folder holding usher.yaml).
        #[arg(long, value_name = "CONFIG")]
        from: PathBuf,
        /// The config whose store is written.
        #[arg(long, value_name = "CONFIG")]
        to: PathBuf,
        /// Copy even when the target holds accounts or signing keys: records with the
        /// same key are replaced by the source's, the others are kept.
        #[arg(long)]
        into_nonempty: bool,
    },
}

/// `usher store …`.
pub fn store(args: StoreArgs) -> ExitCode {
    match args.command {
        StoreCommand::Copy {
            from,
            to,
            into_nonempty,
        } => copy_command(&from, &to, CopyOptions { into_nonempty }),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn load(flag: &str, path: &Path) -> Result<Config, String> {
    crate::config::load(path)
        .map(|loaded| loaded.config)
        .map_err(|d| format!("the {flag} config {} does not load:\n{d}", path.display()))
}

/// What the store of a config is, for messages (a database URL without its password).
fn describe(store: &StoreConfig) -> String {
    match store {
        StoreConfig::Sled { path, .. } => format!("the sled store in {}", path.display()),
        StoreConfig::Postgres(pg) => format!(
            "the PostgreSQL store {} (schema {})",
            pg.redacted_url(),
            pg.schema
        ),
    }
}

/// Whether two configs name one store.
fn same_store(a: &StoreConfig, b: &StoreConfig) -> bool {
    match (a, b) {
        (StoreConfig::Sled { path: p, .. }, StoreConfig::Sled { path: q, .. }) => {
            let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
            canonical(p) == canonical(q)
        }
        (StoreConfig::Postgres(p), StoreConfig::Postgres(q)) => {
            p.url == q.url && p.schema == q.schema
        }
        _ => false,
    }
}

fn copy_command(from: &Path, to: &Path, options: CopyOptions) -> ExitCode {
    let (source, target) = match (load("--from", from), load("--to", to)) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    if same_store(&source.store, &target.store) {
        return fail(format!(
            "--from and --to name the same store ({})",
            describe(&source.store)
        ));
    }
    if let StoreConfig::Sled { path, .. } = &source.store {
        // Opening would create an empty store there and copy nothing.
        if !path.join("db").exists() {
            return fail(format!(
                "there is no sled store in {} (the --from config's store.sled.path)",
                path.display()
            ));
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(&source, &target, options)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn open(config: &Config, flag: &str) -> Result<std::sync::Arc<dyn Store>, String> {
    crate::server::open_store(config).await.map_err(|e| {
        let text = format!("{e:#}");
        let hint = if text.contains("lock") {
            " (is a server still running on it? stop it first)"
        } else {
            ""
        };
        format!("cannot open the {flag} store: {text}{hint}")
    })
}

async fn run(source: &Config, target: &Config, options: CopyOptions) -> Result<String, String> {
    let from = open(source, "--from").await?;
    let to = open(target, "--to").await?;
    check_credentials_key(from.as_ref(), source, target).await?;
    println!("copying {}", describe(&source.store));
    println!("   into {}", describe(&target.store));
    let last = Mutex::new(Instant::now());
    let progress = |read: u64| {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= Duration::from_secs(2) {
            *last = Instant::now();
            eprintln!("… {read} records copied");
        }
    };
    match transfer::copy(from.as_ref(), to.as_ref(), options, &progress).await {
        Ok(report) => Ok(format!(
            "{}copied {} records in {:.2} s; every count adds up\n",
            report.table(),
            report.written(),
            report.elapsed.as_secs_f64()
        )),
        Err(CopyError::Mismatch(report)) => {
            print!("{}", report.table());
            Err(CopyError::Mismatch(report).to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The first batch of one kind, then stop.
#[derive(Default)]
struct FirstBatch(Vec<Record>);

#[async_trait]
impl Sink for FirstBatch {
    async fn take(&mut self, batch: Vec<Record>) -> StoreResult<bool> {
        self.0 = batch;
        Ok(false)
    }
}

/// Where a config's credentials key comes from, for messages.
fn key_source(config: &Config) -> String {
    match &config.security.credentials_key {
        CredentialsKey::File(path) => format!("the key file {}", path.display()),
        CredentialsKey::Inline(_) => "its security.credentials_key".into(),
    }
}

/// Refuse a target whose credentials key would not open the source's TOTP secrets
/// (the key is not in the store, so the copy cannot carry it): up to a batch of them
/// is tried with the target's key.
async fn check_credentials_key(
    from: &dyn Store,
    source: &Config,
    target: &Config,
) -> Result<(), String> {
    let mut sample = FirstBatch::default();
    if let Some(t) = from.transfer() {
        t.export_kinds(&[Kind::Totp], &mut sample)
            .await
            .map_err(|e| format!("cannot read the source's authenticators: {e}"))?;
    }
    if sample.0.is_empty() {
        return Ok(());
    }
    let advice = format!(
        "the --to config must use the key the source uses ({}): set its security.credentials_key or security.credentials_key_file to it",
        key_source(source)
    );
    let key = SealingKey::load_existing(&target.security.credentials_key)
        .map_err(|e| format!("the target's credentials key cannot be read ({e}); {advice}"))?;
    let opened = sample
        .0
        .iter()
        .filter(|r| match r {
            Record::Totp {
                user_id,
                credential,
            } => key
                .open(&credential.sealed_secret, user_id.as_bytes())
                .is_some(),
            _ => true,
        })
        .count();
    if opened == 0 {
        return Err(format!(
            "the target config's credentials key opens none of the {} TOTP secrets tried, so every authenticator app would stop working after the move; {advice}",
            sample.0.len()
        ));
    }
    if opened < sample.0.len() {
        eprintln!(
            "warning: {} of {} TOTP secrets tried do not open with the target's credentials key (they may not have opened with the source's either)",
            sample.0.len() - opened,
            sample.0.len()
        );
    }
    Ok(())
}
