//! The `usher` command line: serve, check.

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
    /// Run the identity provider.
    Serve {
        /// A config file, or a folder holding usher.yaml plus apps/ and connections/.
        #[arg(long, short, env = "USHER_CONFIG", default_value = "examples/thrift")]
        config: PathBuf,
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
    /// Validate a config and print a summary of its apps, connections and steps.
    Check {
        /// A config file, or a folder holding usher.yaml plus apps/ and connections/.
        #[arg(long, short, env = "USHER_CONFIG", default_value = "examples/thrift")]
        config: PathBuf,
        /// Treat warnings as failures.
        #[arg(long)]
        strict: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("USHER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, strict } => check(&config, strict),
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
        Command::Serve { config } => {
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
            match runtime.block_on(usher::server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &std::path::Path, strict: bool) -> ExitCode {
    match usher::config::load(path) {
        Ok(loaded) => {
            print!("{}", usher::config::summary(&loaded.config));
            for w in &loaded.warnings {
                eprintln!("warning: {}", w.message);
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
