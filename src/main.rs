//! The `usher` command line: serve, demo, check, test, users, events, keys, store, bench.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "usher",
    version,
    about = "An identity provider whose sign-in flows are declared, not coded."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage accounts on a running server (through its SCIM API).
    Users(usher::cli::UsersArgs),
    /// Manage groups on a running server (through its SCIM API).
    Groups(usher::cli::GroupsArgs),
    /// List audit events of a running server (through its admin API).
    Events(usher::cli::EventsArgs),
    /// The signing keys in the configured store: list them, or add one (a rotation).
    #[command(subcommand)]
    Keys(usher::cli::KeysCommand),
    /// Move a stopped deployment's data between stores: `usher store copy --from
    /// CONFIG --to CONFIG` (sled to PostgreSQL, back, or sled to sled).
    Store(usher::cli::StoreArgs),
    /// Run the identity provider.
    Serve {
        /// A config file, or a folder holding usher.yaml plus apps/ and connections/.
        #[arg(long, short, env = "USHER_CONFIG", default_value = "examples/thrift")]
        config: PathBuf,
        /// Write every finished sign-in into this folder as a fixture for `usher test`.
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
    },
    /// Run the Thrift demo: Usher, the Thrift sample shop and stand-ins for Google and
    /// GitHub, in one process, offline. Prints the URLs to open and the demo users.
    Demo {
        /// The config folder Usher runs (its URLs and ports are set by the demo).
        #[arg(long, short, default_value = "examples/thrift")]
        config: PathBuf,
        /// Keep the store, keys and outbox here (default: a temporary folder, removed on exit).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Usher's port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// Thrift's port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 3000)]
        app_port: u16,
        /// The Google stand-in's port (0: any free port).
        #[arg(long, default_value_t = 0)]
        google_port: u16,
        /// The GitHub stand-in's port (0: any free port).
        #[arg(long, default_value_t = 0)]
        github_port: u16,
        /// Run Thrift without its adaptive script, to see the MFA conflict.
        #[arg(long)]
        no_script: bool,
        /// Turn JIT provisioning on for GitHub (the other fix of the conflict).
        #[arg(long)]
        github_jit: bool,
    },
    /// Run policy fixtures (`*.test.yaml`) offline against a config.
    Test {
        /// Fixture files or folders (default: the config folder's `tests/`).
        paths: Vec<PathBuf>,
        /// A config file, or a folder holding usher.yaml plus apps/ and connections/.
        #[arg(long, short, env = "USHER_CONFIG", default_value = "examples/thrift")]
        config: PathBuf,
        /// `text` (default) or `junit`.
        #[arg(long, default_value = "text")]
        format: String,
        /// Write the report here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Run only cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Measure complete sign-ins over HTTP: throughput, latency, CPU time and memory,
    /// against the Argon2id and signing limits of the same cores (see
    /// docs/performance.md).
    Bench(Box<usher::tools::bench::BenchArgs>),
    /// Validate a config and print a summary of its apps, connections and steps.
    Check {
        /// A config file, or a folder holding usher.yaml plus apps/ and connections/.
        #[arg(long, short, env = "USHER_CONFIG", default_value = "examples/thrift")]
        config: PathBuf,
        /// Treat warnings as failures.
        #[arg(long)]
        strict: bool,
        /// Do not read the OIDC connections' discovery documents (no network).
        #[arg(long)]
        offline: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match usher::logging::format_from_env() {
        Ok(format) => format,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `usher serve` sets up logging itself, once its config says which format.
    if !matches!(cli.command, Command::Serve { .. }) {
        usher::logging::init(log_format.unwrap_or_default());
    }
    match cli.command {
        Command::Users(args) => usher::cli::users(args),
        Command::Groups(args) => usher::cli::groups(args),
        Command::Events(args) => usher::cli::events(args),
        Command::Store(args) => usher::cli::store(args),
        Command::Check {
            config,
            strict,
            offline,
        } => check(&config, strict, offline),
        Command::Keys(command) => usher::cli::keys(command),
        Command::Bench(args) => match usher::tools::bench::run(&args) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Demo {
            config,
            data,
            port,
            app_port,
            google_port,
            github_port,
            no_script,
            github_jit,
        } => demo(usher::tools::demo::DemoOptions {
            config,
            data,
            usher_port: port,
            thrift_port: app_port,
            google_port,
            github_port,
            script: !no_script,
            github_jit,
        }),
        Command::Test {
            paths,
            config,
            format,
            output,
            filter,
        } => {
            let options = usher::fixtures::TestOptions {
                config,
                paths,
                junit: format == "junit",
                output,
                filter,
            };
            match usher::fixtures::test_command(&options) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { config, record } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(usher::server::serve(config, record, log_format)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    usher::logging::fatal(&format!("{e:#}"));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Read each OIDC connection's discovery document: `false` when one names an issuer
/// other than the configured one. One that cannot be read is a note, not a failure
/// (`--strict` included): the provider may only be unreachable from here.
fn check_issuers(config: &usher::config::Config) -> bool {
    use usher::upstream::IssuerCheck;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return false;
        }
    };
    let checks = runtime.block_on(usher::upstream::Upstreams::new().check_issuers(config));
    let mut ok = true;
    for check in checks {
        match check {
            IssuerCheck::Matches(_) => {}
            IssuerCheck::Differs(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
            IssuerCheck::Unchecked(id, why) => eprintln!(
                "note: connection `{id}`: the issuer could not be checked ({why}); `--offline` skips this"
            ),
        }
    }
    ok
}

fn demo(options: usher::tools::demo::DemoOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(usher::tools::demo::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path, strict: bool, offline: bool) -> ExitCode {
    match usher::config::load(path) {
        Ok(loaded) => {
            print!("{}", usher::config::summary(&loaded.config));
            for w in &loaded.warnings {
                eprintln!("warning: {}", w.message);
            }
            if !offline && !check_issuers(&loaded.config) {
                return ExitCode::FAILURE;
            }
            if strict && !loaded.warnings.is_empty() {
                eprintln!(
                    "{} warning(s); failing because of --strict",
                    loaded.warnings.len()
                );
                return ExitCode::FAILURE;
            }
            println!("config OK");
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!("{} error(s) in {}", diagnostics.0.len(), path.display());
            ExitCode::FAILURE
        }
    }
}
