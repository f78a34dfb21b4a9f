//! `usher keys`: the signing keys in the configured store. Unlike the other admin
//! commands it opens the store itself: a PostgreSQL store while the nodes run (they
//! pick a new key up within a minute), a sled store only while no server holds it.

use std::path::Path;
use std::process::ExitCode;

use crate::config::SigningAlg;
use crate::oidc::keys::{Keys, PUBLISH_LEAD_SECONDS};

/// `usher keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// List the keys: kid, algorithm, created, and whether it signs now.
    List {
        /// A config file, or a folder holding usher.yaml.
        #[arg(long, short, env = "USHER_CONFIG", default_value = "examples/thrift")]
        config: std::path::PathBuf,
    },
    /// Add a new key of an algorithm (a rotation). Every node publishes it within a
    /// minute; it starts signing once it has been published long enough for clients'
    /// cached key sets to have caught up. Older keys stay published.
    Rotate {
        #[arg(long, short, env = "USHER_CONFIG", default_value = "examples/thrift")]
        config: std::path::PathBuf,
        /// `RS256`, `ES256` or `EdDSA`.
        #[arg(long)]
        alg: String,
    },
}

pub fn keys(command: KeysCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open(config: &Path) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
    let loaded = crate::config::load(config).map_err(|d| anyhow::anyhow!("{}", d.unprefixed()))?;
    crate::server::open_store(&loaded.config).await
}

async fn run(command: KeysCommand) -> anyhow::Result<String> {
    let now = crate::crypto::unix_now();
    match command {
        KeysCommand::List { config } => {
            let store = open(&config).await?;
            let keys = Keys::load(store.as_ref(), now).await?;
            Ok(list(&keys))
        }
        KeysCommand::Rotate { config, alg } => {
            let alg = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa]
                .into_iter()
                .find(|a| a.as_str().eq_ignore_ascii_case(&alg))
                .ok_or_else(|| anyhow::anyhow!("--alg `{alg}`: give RS256, ES256 or EdDSA"))?;
            let store = open(&config).await?;
            let key = Keys::rotate(store.as_ref(), alg, now).await?;
            store.flush().await?;
            let keys = Keys::load(store.as_ref(), now).await?;
            Ok(format!(
                "added {} key {}; it signs from {} on\n\n{}",
                alg.as_str(),
                key.kid,
                crate::timefmt::rfc3339(now + PUBLISH_LEAD_SECONDS),
                list(&keys)
            ))
        }
    }
}

fn list(keys: &Keys) -> String {
    let mut out = format!("{:<40} {:<6} {:<21} SIGNS\n", "KID", "ALG", "CREATED");
    for (kid, alg, created, signing) in keys.summary() {
        out.push_str(&format!(
            "{kid:<40} {alg:<6} {:<21} {}\n",
            crate::timefmt::rfc3339(created),
            if signing { "yes" } else { "no" }
        ));
    }
    out
}
