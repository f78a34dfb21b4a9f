//! `usher bench`: complete sign-ins over real HTTP, measured the way an operator sizing
//! a deployment needs — throughput, latency percentiles, CPU time per sign-in, memory —
//! next to the physical limits of the work on the same cores (Argon2id hashes and
//! signatures per second), so each figure can be read as a fraction of its ceiling.
//!
//! It is a subcommand rather than an example binary so that it ships with the server:
//! an operator can point it at a deployment (`--url`, `--pid`) with the binary they
//! already have. By default it starts Usher in-process on a loopback port with a
//! temporary store, local stand-ins for Google and GitHub and seeded users; every run
//! is bounded in time and count and talks to loopback only.
//!
//! `--store postgres` runs the scenarios twice in one invocation, on sled and then on
//! PostgreSQL (a throwaway cluster, or `--store-url`), and prints the two side by side
//! with the statements, round trips and database CPU time each operation cost.

mod client;
mod logins;
pub mod measure;
mod pg;
mod scenarios;
mod world;

use std::sync::Arc;
use std::time::Duration;

use crate::config::SigningAlg;
pub use scenarios::{DbFigures, ScenarioResult};
use world::{StoreChoice, Target, Upstream};

/// The scenarios, in the order `all` runs them.
pub const SCENARIOS: [&str; 9] = [
    "password",
    "sso",
    "jit",
    "federated",
    "federated-half",
    "refresh",
    "client-credentials",
    "script",
    "pending",
];

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenarios, comma-separated: password, sso (silent re-authorization with the SSO
    /// cookie and prompt=none, then the code exchange), jit, federated, federated-half
    /// (returning federated sign-ins at half the rate `federated` reached), refresh,
    /// client-credentials, script, pending; or all.
    #[arg(long, short, value_delimiter = ',', default_value = "all")]
    pub scenario: Vec<String>,
    /// Sign-ins (or grants) in flight at once.
    #[arg(long, short, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds each scenario is measured for.
    #[arg(long, short, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop a scenario after this many operations even if time is left.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_ops: u64,
    /// ID-token algorithm of the in-process apps: RS256, ES256 or EdDSA (with --url:
    /// the algorithm the target's app uses, for the comparison with signing).
    #[arg(long, default_value = "RS256")]
    pub alg: String,
    /// The stand-in the federated scenarios go through: google (OIDC) or github.
    #[arg(long, default_value = "google")]
    pub upstream: String,
    /// Users seeded per pool (password users, returning federated users, two-step
    /// users; each two-step user signs in at most twice per 30-second TOTP window).
    #[arg(long, default_value_t = 200)]
    pub users: u64,
    /// Sign-ins the `pending` scenario starts and leaves unfinished.
    #[arg(long, default_value_t = 10_000)]
    pub pending: u64,
    /// `security.flow_ttl_seconds` of the in-process Usher.
    #[arg(long, default_value_t = 600)]
    pub flow_ttl: u64,
    /// After `pending`, wait for its sign-ins to expire and be swept (flow_ttl plus up
    /// to two minutes), checking that they stop working on time.
    #[arg(long)]
    pub wait_expiry: bool,
    /// Check the signature of the ID token of every refresh too (the client's CPU
    /// competes with Usher's in-process).
    #[arg(long)]
    pub verify_refresh: bool,
    /// Skip measuring the Argon2id and signing limits.
    #[arg(long)]
    pub no_limits: bool,
    /// Seconds each limit is measured for.
    #[arg(long, default_value_t = 2.0)]
    pub limit_seconds: f64,
    /// Target a running Usher at this issuer URL instead (password, refresh,
    /// client-credentials and pending only: the others need the in-process stand-ins).
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: the app to sign in to.
    #[arg(long)]
    pub client_id: Option<String>,
    /// With --url: that app's secret.
    #[arg(long, env = "USHER_BENCH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// With --url: a redirect URI registered for the app (never contacted).
    #[arg(long)]
    pub redirect_uri: Option<String>,
    /// With --url: an account with a password (the password and refresh scenarios).
    #[arg(long)]
    pub username: Option<String>,
    /// With --url: that account's password.
    #[arg(long, env = "USHER_BENCH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// With --url: a client allowed the client_credentials grant.
    #[arg(long)]
    pub service_client_id: Option<String>,
    /// With --url: that client's secret.
    #[arg(long, env = "USHER_BENCH_SERVICE_SECRET", hide_env_values = true)]
    pub service_secret: Option<String>,
    /// With --url on this machine: the Usher process, for its CPU time and memory.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The in-process Usher's store: sled, or postgres — measured next to sled in the
    /// same run (a column per store), with the statements, round trips and database
    /// CPU time per operation.
    #[arg(long, default_value = "sled")]
    pub store: String,
    /// With --store postgres: a running database (postgres://user:password@host/db)
    /// instead of a throwaway cluster; the run makes a schema of its own there and
    /// drops it afterwards.
    #[arg(long, env = "USHER_BENCH_STORE_URL", hide_env_values = true)]
    pub store_url: Option<String>,
    /// With --store postgres: the database's server process, for its CPU time (found by
    /// itself for a throwaway cluster, and for a local server started with `-p PORT`).
    #[arg(long)]
    pub db_pid: Option<u32>,
}

/// The physical limits, measured on the same cores in the same run.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub argon2_per_second: f64,
    /// (algorithm, signatures per second).
    pub signatures_per_second: Vec<(SigningAlg, f64)>,
}

impl Limits {
    pub fn signing(&self, alg: SigningAlg) -> Option<f64> {
        self.signatures_per_second
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, r)| *r)
    }
}

/// Everything a run measured.
pub struct Report {
    pub idle_rss: Option<u64>,
    pub limits: Option<Limits>,
    /// Every scenario of every store, in the order run (each says its `store`).
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    /// The result of scenario `name` on `store`.
    pub fn find(&self, store: &str, name: &str) -> Option<&ScenarioResult> {
        self.scenarios
            .iter()
            .find(|r| r.store == store && r.name == name)
    }
}

fn parse_alg(s: &str) -> anyhow::Result<SigningAlg> {
    match s.to_ascii_uppercase().as_str() {
        "RS256" => Ok(SigningAlg::Rs256),
        "ES256" => Ok(SigningAlg::Es256),
        "EDDSA" => Ok(SigningAlg::EdDsa),
        _ => anyhow::bail!("--alg must be RS256, ES256 or EdDSA, not {s}"),
    }
}

fn parse_scenarios(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for name in names.iter().map(|n| n.trim()) {
        if name == "all" {
            out.extend(SCENARIOS);
            continue;
        }
        match SCENARIOS.iter().find(|s| **s == name) {
            Some(s) => out.push(s),
            None => anyhow::bail!(
                "unknown scenario {name}; choose from {}",
                SCENARIOS.join(", ")
            ),
        }
    }
    out.dedup();
    Ok(out)
}

/// Mebibytes, for the report.
pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The CPU model, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Which stores to measure, in order.
fn parse_stores(args: &BenchArgs) -> anyhow::Result<Vec<&'static str>> {
    let stores = match args.store.trim() {
        "sled" => vec!["sled"],
        // PostgreSQL is always read against sled, measured in the same run.
        "postgres" | "postgresql" => vec!["sled", "postgres"],
        other => anyhow::bail!("--store must be sled or postgres, not {other}"),
    };
    if args.url.is_some() && stores.len() > 1 {
        anyhow::bail!(
            "--store postgres starts Usher in-process; with --url the target's own config \
             decides its store"
        );
    }
    if args.store_url.is_some() && stores.len() == 1 {
        anyhow::bail!("--store-url needs --store postgres");
    }
    Ok(stores)
}

/// The load average of this machine (1, 5 and 15 minutes), for the report: on a
/// shared machine it says how much else was running.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// One store under test: its database (PostgreSQL), the Usher on it, and what ran.
struct Bench {
    store: &'static str,
    target: Arc<Target>,
    db: Option<pg::PgBackend>,
    results: Vec<ScenarioResult>,
    /// Whether the returning federated users were provisioned already.
    seeded: bool,
}

/// Run the benchmark and print its figures as they come. With two stores, each
/// scenario runs on one and then at once on the other, so that whatever else the
/// machine is doing weighs on both alike.
pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let scenarios = parse_scenarios(&args.scenario)?;
    let stores = parse_stores(args)?;
    let alg = parse_alg(&args.alg)?;
    let upstream = match args.upstream.as_str() {
        "google" => Upstream::Google,
        "github" => Upstream::Github,
        other => anyhow::bail!("--upstream must be google or github, not {other}"),
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name(measure::CLIENT_THREADS)
        .enable_all()
        .build()?;
    println!(
        "usher bench: {} on {cores} cores ({}), load average {}; {} ID tokens; concurrency {}; {} s per scenario",
        match &args.url {
            Some(u) => format!("Usher at {u}"),
            None => format!(
                "in-process Usher on {}, upstream {}",
                stores.join(" and "),
                args.upstream
            ),
        },
        cpu_model(),
        load_average(),
        alg.as_str(),
        args.concurrency,
        args.duration
    );
    let mut benches: Vec<Bench> = Vec::new();
    for store in &stores {
        // The database lives as long as the Usher on it, and is cleaned up after.
        let db = match *store {
            "postgres" => Some(pg::PgBackend::start(
                args.store_url.as_deref(),
                args.db_pid,
            )?),
            _ => None,
        };
        let choice = match &db {
            Some(db) => StoreChoice::Postgres {
                url: db.url.clone(),
                schema: db.schema.clone(),
            },
            None => StoreChoice::Sled,
        };
        let target = match &args.url {
            Some(url) => Target::external(args, url)?,
            None => Target::local(
                args,
                upstream,
                alg.as_str(),
                &choice,
                db.as_ref().map(|d| d.probe()),
            )?,
        };
        if let Some(db) = &db {
            println!("{}", client_rt.block_on(db.describe()));
        }
        benches.push(Bench {
            store,
            target: Arc::new(target),
            db,
            results: Vec::new(),
            seeded: false,
        });
    }
    let first = benches
        .first()
        .map(|b| b.target.clone())
        .ok_or_else(|| anyhow::anyhow!("no store to measure"))?;
    let idle_rss = match (first.pid, &first.local) {
        (Some(pid), _) => crate::metrics::ProcessStats::of_pid(pid).rss_bytes,
        (None, Some(_)) => crate::metrics::ProcessStats::read().rss_bytes,
        _ => None,
    };
    println!(
        "RSS before the first sign-in: {}{}",
        mib(idle_rss),
        if benches.len() > 1 {
            " (every store's Usher started)"
        } else {
            ""
        }
    );
    let limits = (!args.no_limits)
        .then(|| measure_limits(&first, cores, args.limit_seconds))
        .transpose()?;
    drop(first);
    if let Some(l) = &limits {
        print_limits(l, cores);
    }
    for name in &scenarios {
        for bench in benches.iter_mut() {
            if stores.len() > 1 {
                println!();
                print!("[{}] ", bench.store);
            }
            run_scenario(args, &client_rt, bench, name);
        }
    }
    let mut results: Vec<ScenarioResult> = Vec::new();
    for mut bench in benches {
        if let Some(l) = &limits {
            if stores.len() > 1 {
                println!();
                println!("=== {} ===", bench.store);
            }
            print_ratios(l, alg, cores, &bench.results);
        }
        match Arc::try_unwrap(bench.target) {
            Ok(t) => t.stop(),
            Err(_) => tracing::warn!("the bench target is still in use; not stopped cleanly"),
        }
        if let Some(db) = &bench.db {
            if let Err(e) = client_rt.block_on(db.clean_up()) {
                println!("{e:#}");
            }
        }
        results.append(&mut bench.results);
    }
    if stores.len() > 1 {
        print_comparison(&stores, cores, &results);
        println!("load average at the end: {}", load_average());
    }
    client_rt.shutdown_timeout(Duration::from_secs(2));
    Ok(Report {
        idle_rss,
        limits,
        scenarios: results,
    })
}

/// One scenario against one store's Usher.
fn run_scenario(
    args: &BenchArgs,
    client_rt: &tokio::runtime::Runtime,
    bench: &mut Bench,
    name: &str,
) {
    let ctx = scenarios::Ctx {
        target: bench.target.clone(),
        concurrency: args.concurrency.max(1),
        duration: Duration::from_secs_f64(args.duration.max(0.1)),
        max_ops: args.max_ops,
        users: args.users.max(1),
        verify_refresh: args.verify_refresh,
    };
    let (results, seeded) = (&bench.results, bench.seeded);
    let outcome = client_rt.block_on(async {
        match name {
            "password" => scenarios::password(&ctx).await,
            "sso" => scenarios::sso(&ctx).await,
            "jit" => scenarios::jit(&ctx).await,
            "federated" => scenarios::federated(&ctx, None, seeded).await,
            "federated-half" => {
                let full = results
                    .iter()
                    .find(|r| r.name == "federated")
                    .map(|r| r.outcome.per_second());
                let full = match full {
                    Some(f) => f,
                    None => {
                        let r = scenarios::federated(&ctx, None, seeded).await?;
                        r.outcome.per_second()
                    }
                };
                scenarios::federated(&ctx, Some((full / 2.0).max(1.0)), true).await
            }
            "refresh" => scenarios::refresh(&ctx).await,
            "client-credentials" => scenarios::client_credentials(&ctx).await,
            "script" => scenarios::script(&ctx).await,
            _ => {
                let wait = args.wait_expiry.then_some(args.flow_ttl);
                scenarios::pending(&ctx, args.pending, wait).await
            }
        }
    });
    match outcome {
        Ok(r) => {
            bench.seeded |= r.name.starts_with("federated");
            print_result(&r);
            bench.results.push(r);
        }
        Err(e) => println!("{name}: not run: {e:#}"),
    }
}

fn measure_limits(target: &Target, cores: usize, seconds: f64) -> anyhow::Result<Limits> {
    let d = Duration::from_secs_f64(seconds.max(0.1));
    let keys = match &target.local {
        Some(l) => l.state.keys.current(),
        None => {
            let store = crate::store::SledStore::temporary()?;
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            Arc::new(rt.block_on(crate::oidc::keys::Keys::load_or_generate(
                &store,
                crate::crypto::unix_now(),
            ))?)
        }
    };
    let mut signatures = Vec::new();
    for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
        signatures.push((alg, measure::signing_rate(keys.clone(), alg, cores, d)));
    }
    Ok(Limits {
        argon2_per_second: measure::argon2_rate(cores, d),
        signatures_per_second: signatures,
    })
}

fn print_limits(l: &Limits, cores: usize) {
    use crate::authn::password::{M_COST, P_COST, T_COST};
    println!("limits on these cores ({cores} threads):");
    println!(
        "  Argon2id (m={M_COST} KiB, t={T_COST}, p={P_COST}): {:>10.1} hashes/s",
        l.argon2_per_second
    );
    for (alg, r) in &l.signatures_per_second {
        println!("  {:<32} {:>10.0} signatures/s", alg.as_str(), r);
    }
}

fn print_result(r: &ScenarioResult) {
    let o = &r.outcome;
    println!();
    println!(
        "{}: {} ok, {} failed in {:.2} s = {:.1}/s; latency ms p50 {} p95 {} p99 {} max {}",
        r.name,
        o.ops,
        o.errors,
        o.elapsed.as_secs_f64(),
        o.per_second(),
        ms(o.quantile(0.50)),
        ms(o.quantile(0.95)),
        ms(o.quantile(0.99)),
        ms(o.latencies.last().copied().unwrap_or_default()),
    );
    if let Some(e) = &o.first_error {
        println!("  first failure: {e}");
    }
    if let Some(why) = &o.stopped_early {
        println!("  stopped early: {why}");
    }
    if o.ops > 0 {
        let per = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6 / o.ops as f64);
        match r.target_cpu {
            Some(t) => println!("  CPU per op: Usher process {}", per(t)),
            None => println!(
                "  CPU per op: Usher {}, upstream stand-ins {}, load generator {}, whole process {}",
                per(r.cpu.usher),
                per(r.cpu.upstream),
                per(r.cpu.client),
                per(r.cpu.process)
            ),
        }
    }
    println!(
        "  memory: RSS {}, peak {}",
        mib(r.memory.rss_bytes),
        mib(r.memory.peak_rss_bytes)
    );
    if let Some((statements, round_trips, cpu)) = r.db.as_ref().and_then(|d| d.per_op(o.ops)) {
        let (writes, wal) =
            r.db.as_ref()
                .and_then(|d| d.writes_per_op(o.ops))
                .unwrap_or_default();
        println!(
            "  PostgreSQL per op: {statements:.2} statements, {round_trips:.2} round trips, {} transactions that wrote, {} of WAL, database CPU {}",
            writes.map_or("?".into(), |w| format!("{w:.2}")),
            wal.map_or("?".into(), |w| format!("{:.1} KiB", w / 1024.0)),
            cpu.map_or("not measured".into(), |c| format!(
                "{:.0} µs",
                c.as_secs_f64() * 1e6
            ))
        );
    }
    if let Some(((slow, all), (slow_cpu, _))) = r.slow_polls {
        println!(
            "  requests holding an async worker over 1 ms in one poll: {slow} of {all} by the clock, {slow_cpu} by CPU time"
        );
    }
    if !r.routes.is_empty() && o.ops > 0 {
        let mut routes = r.routes.clone();
        routes.sort_by_key(|r| std::cmp::Reverse(r.2 * r.1 as u32));
        println!("  Usher's time per op, by route (requests per op × mean):");
        for (route, n, mean) in routes.iter().take(8) {
            println!(
                "    {route:<28} {:>5.2} × {:>7} ms",
                *n as f64 / o.ops as f64,
                ms(*mean)
            );
        }
    }
    for note in &r.notes {
        println!("  {note}");
    }
}

fn print_ratios(l: &Limits, alg: SigningAlg, cores: usize, results: &[ScenarioResult]) {
    println!();
    println!("against the limits measured above (same cores, same run):");
    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.outcome.per_second())
    };
    if let Some(p) = rate("password").filter(|_| l.argon2_per_second > 0.0) {
        println!(
            "  password sign-ins/s ÷ Argon2id hashes/s:                 {:>6.1} %",
            100.0 * p / l.argon2_per_second
        );
    }
    if let Some(sig) = l.signing(alg).filter(|s| *s > 0.0) {
        // A sign-in or a refresh signs an ID token with `alg` and an access token with
        // ES256 (always); client_credentials only the access token.
        let access = usize::from(alg == crate::oidc::ACCESS_TOKEN_ALG);
        for (name, per_op) in [
            ("federated", 1 + access),
            ("jit", 1 + access),
            ("script", 1 + access),
            ("refresh", 1 + access),
            ("client-credentials", access),
        ] {
            if per_op == 0 {
                continue;
            }
            if let Some(r) = rate(name) {
                println!(
                    "  {name:<18} per s ÷ {} signatures/s:    {:>6.1} %  (ceiling {} %)",
                    alg.as_str(),
                    100.0 * r / sig,
                    100 / per_op
                );
            }
        }
    }
    println!("what the cores would give Usher alone ({cores} cores ÷ Usher's CPU time per op):");
    for r in results {
        if let Some(cpu) = r.usher_cpu_per_op().filter(|c| !c.is_zero()) {
            println!(
                "  {:<22} {:>9.0}/s",
                r.name,
                cores as f64 / cpu.as_secs_f64()
            );
        }
    }
}

/// The stores side by side, a column per store: rates, latency, CPU time per operation
/// (Usher's threads, and the database's processes), and what each PostgreSQL operation
/// asked of the database. Markdown, to paste as it is.
fn print_comparison(stores: &[&str], cores: usize, results: &[ScenarioResult]) {
    fn title(store: &str) -> &str {
        match store {
            "postgres" => "PostgreSQL",
            other => other,
        }
    }
    // The half-load run is named by its rate, which differs by store.
    let key = |name: &str| {
        if name.starts_with("federated @") {
            "federated at half load".to_string()
        } else {
            name.to_string()
        }
    };
    let mut names: Vec<String> = Vec::new();
    for r in results {
        if !names.contains(&key(&r.name)) {
            names.push(key(&r.name));
        }
    }
    let find = |store: &str, name: &str| {
        results
            .iter()
            .find(|r| r.store == store && key(&r.name) == name)
    };
    let ms_cell = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let cpu_cell = |d: Option<Duration>| {
        d.map_or("–".to_string(), |d| {
            format!("{:.2} ms", d.as_secs_f64() * 1000.0)
        })
    };
    println!();
    println!("{} side by side (same run, same {cores} cores):", {
        let t: Vec<&str> = stores.iter().map(|s| title(s)).collect();
        t.join(" vs ")
    });
    println!();
    let mut header = vec!["scenario".to_string()];
    for (what, _) in COLUMNS {
        for s in stores {
            header.push(format!("{what}, {}", title(s)));
        }
    }
    header.extend(
        [
            "database CPU/op",
            "statements/op",
            "round trips/op",
            "write transactions/op",
            "WAL KiB/op",
        ]
        .map(String::from),
    );
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    for name in &names {
        let name: &str = name;
        let mut row = vec![name.to_string()];
        for (_, column) in COLUMNS {
            for s in stores {
                row.push(match find(s, name) {
                    Some(r) if r.outcome.ops > 0 => match column {
                        Column::Rate => format!("{:.0}", r.outcome.per_second()),
                        Column::P50 => ms_cell(r.outcome.quantile(0.50)),
                        Column::P99 => ms_cell(r.outcome.quantile(0.99)),
                        Column::UsherCpu => cpu_cell(r.usher_cpu_per_op()),
                    },
                    _ => "–".into(),
                });
            }
        }
        let pg = find("postgres", name).and_then(|r| Some((r.db.as_ref()?, r.outcome.ops)));
        match pg.and_then(|(d, ops)| Some((d.per_op(ops)?, d.writes_per_op(ops)?))) {
            Some(((statements, round_trips, cpu), (writes, wal))) => {
                row.push(cpu_cell(cpu));
                row.push(format!("{statements:.1}"));
                row.push(format!("{round_trips:.1}"));
                row.push(writes.map_or("–".into(), |w| format!("{w:.1}")));
                row.push(wal.map_or("–".into(), |w| format!("{:.1}", w / 1024.0)));
            }
            None => row.extend(["–", "–", "–", "–", "–"].map(String::from)),
        }
        println!("| {} |", row.join(" | "));
    }
    println!();
    println!(
        "(per s: operations per second; p50/p99: latency in ms; Usher CPU/op: Usher's \
         threads; database CPU/op: the PostgreSQL server's processes; statements and \
         round trips counted by the store, prepares, begins and commits included; write \
         transactions: those that wrote, each of whose commits waits for the WAL on disk)"
    );
}

#[derive(Clone, Copy)]
enum Column {
    Rate,
    P50,
    P99,
    UsherCpu,
}

const COLUMNS: [(&str, Column); 4] = [
    ("per s", Column::Rate),
    ("p50 ms", Column::P50),
    ("p99 ms", Column::P99),
    ("Usher CPU/op", Column::UsherCpu),
];
