//! Operational metrics in the Prometheus text format: sign-ins by app, outcome and
//! connection, request and upstream latencies, provisioning, token grants, sign-ins in
//! progress, and the process's CPU time and memory.
//!
//! Each server state owns its own registry (no process-wide global), so several servers
//! in one process — the test suite, `usher bench` — keep separate counts. Every label
//! takes its values from a bounded set (app, connection and route ids from the config
//! and the router, outcome codes from the protocol), never from user input, so the
//! number of series cannot grow with traffic.

use std::time::Duration;

use crate::store::StoreResult;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// Latency buckets (seconds) for requests and upstream round trips: fine below 10 ms
/// where most requests fall, coarse up to Argon2id and slow upstreams.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for the longest single poll of a request's future: how long it held an
/// async worker without yielding. Everything over 1 ms is a bug to find.
const POLL_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    sign_ins: IntCounterVec,
    requests: HistogramVec,
    longest_poll: Histogram,
    longest_poll_cpu: Histogram,
    upstream: HistogramVec,
    provisioning: IntCounterVec,
    tokens: IntCounterVec,
    flows_active: IntGauge,
    cpu_seconds: Gauge,
    resident: IntGauge,
    resident_peak: IntGauge,
    /// The database's pool and statements: only for a PostgreSQL store, so an embedded
    /// store's scrape has no such series (rather than zeros that would mean nothing).
    db: Option<DbMetrics>,
}

/// The series of a PostgreSQL store.
struct DbMetrics {
    max: IntGauge,
    open: IntGauge,
    idle: IntGauge,
    waiting: IntGauge,
    statements: IntCounter,
    round_trips: IntCounter,
    unavailable: IntCounter,
    /// Held while the counters catch up with the store's totals, so two scrapes at
    /// once cannot both add the same difference.
    catching_up: std::sync::Mutex<()>,
}

impl DbMetrics {
    fn new(registry: &Registry) -> Result<DbMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(DbMetrics {
            max: gauge(
                "usher_db_pool_max_connections",
                "Connections to the database this node may open at most (store.postgres.pool.max_connections).",
            )?,
            open: gauge(
                "usher_db_pool_open_connections",
                "Connections to the database this node holds open, busy or idle.",
            )?,
            idle: gauge(
                "usher_db_pool_idle_connections",
                "Open connections waiting in the pool for a request.",
            )?,
            waiting: gauge(
                "usher_db_pool_waiting_requests",
                "Requests waiting for a connection: above zero, the pool is the bottleneck.",
            )?,
            statements: counter(
                "usher_db_statements_total",
                "SQL statements this node has run.",
            )?,
            round_trips: counter(
                "usher_db_round_trips_total",
                "Round trips to the database: statements, their first preparation on a connection, transaction begins and commits.",
            )?,
            unavailable: counter(
                "usher_db_unavailable_responses_total",
                "Requests answered 503 because the database could not be reached (not counting /readyz).",
            )?,
            catching_up: std::sync::Mutex::new(()),
        })
    }

    /// Set the gauges to the pool as it is, and bring the counters up to the store's
    /// totals.
    fn read(&self, store: &crate::store::PgStore) {
        let pool = store.pool_status();
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.max.set(int(pool.max));
        self.open.set(int(pool.open));
        self.idle.set(int(pool.idle));
        self.waiting.set(int(pool.waiting));
        let counts = store.counts();
        let _one_at_a_time = match self.catching_up.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let catch_up = |counter: &IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.statements, counts.statements);
        catch_up(&self.round_trips, counts.round_trips);
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let sign_ins = IntCounterVec::new(
            Opts::new(
                "usher_sign_ins_total",
                "Finished sign-ins by app, outcome (success or the OAuth error code) and the connection of the first step (local for passwords, none when no step passed).",
            ),
            &["app", "outcome", "connection"],
        )?;
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "usher_request_duration_seconds",
                "Time to answer a request, by route template; the /login/{flow}/… and /callback/{connection} routes are the sign-in steps.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let longest_poll = Histogram::with_opts(
            HistogramOpts::new(
                "usher_request_longest_poll_seconds",
                "The longest time one request held an async worker in a single poll (blocking work belongs on the blocking pool).",
            )
            .buckets(POLL_BUCKETS.to_vec()),
        )?;
        let longest_poll_cpu = Histogram::with_opts(
            HistogramOpts::new(
                "usher_request_longest_poll_cpu_seconds",
                "CPU time of that longest poll: the work done in it, without the time the thread was descheduled.",
            )
            .buckets(POLL_BUCKETS.to_vec()),
        )?;
        let upstream = HistogramVec::new(
            HistogramOpts::new(
                "usher_upstream_duration_seconds",
                "Upstream round trips by connection and phase: begin (discovery, cached) and finish (code exchange, ID-token check, profile).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["connection", "phase"],
        )?;
        let provisioning = IntCounterVec::new(
            Opts::new(
                "usher_provisioning_total",
                "Federated identities by connection and result: created, existing, linked, pass_through, waiting (for consent, a username or proof) or refused.",
            ),
            &["connection", "result"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "usher_token_requests_total",
                "Token endpoint requests by grant type and outcome (ok or the OAuth error code).",
            ),
            &["grant_type", "outcome"],
        )?;
        let flows_active = IntGauge::new(
            "usher_flows_active",
            "Sign-ins in progress: flows stored and not yet finished or swept (expired ones count until the next sweep).",
        )?;
        let cpu_seconds = Gauge::new(
            "process_cpu_seconds_total",
            "User and system CPU time of the process, in seconds.",
        )?;
        let resident = IntGauge::new(
            "process_resident_memory_bytes",
            "Resident memory of the process, in bytes.",
        )?;
        let resident_peak = IntGauge::new(
            "process_resident_memory_peak_bytes",
            "The highest resident memory of the process so far, in bytes.",
        )?;
        registry.register(Box::new(sign_ins.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(longest_poll.clone()))?;
        registry.register(Box::new(longest_poll_cpu.clone()))?;
        registry.register(Box::new(upstream.clone()))?;
        registry.register(Box::new(provisioning.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(flows_active.clone()))?;
        registry.register(Box::new(cpu_seconds.clone()))?;
        registry.register(Box::new(resident.clone()))?;
        registry.register(Box::new(resident_peak.clone()))?;
        Ok(Metrics {
            registry,
            sign_ins,
            requests,
            longest_poll,
            longest_poll_cpu,
            upstream,
            provisioning,
            tokens,
            flows_active,
            cpu_seconds,
            resident,
            resident_peak,
            db: None,
        })
    }

    /// Add the series of a PostgreSQL store: its pool, statements, round trips and the
    /// requests it could not serve.
    pub fn with_database(mut self) -> Result<Metrics, prometheus::Error> {
        if self.db.is_none() {
            self.db = Some(DbMetrics::new(&self.registry)?);
        }
        Ok(self)
    }

    /// A request answered 503 because the store could not be reached.
    pub fn store_unavailable(&self) {
        if let Some(db) = &self.db {
            db.unavailable.inc();
        }
    }

    /// A finished sign-in. `outcome` is `success`, or a text starting with the error
    /// code (`access_denied: …`, `script_error: …`); only the code becomes a label.
    pub fn sign_in(&self, app: &str, outcome: &str, connection: &str) {
        let code = outcome.split(':').next().unwrap_or(outcome).trim();
        self.sign_ins
            .with_label_values(&[app, code, connection])
            .inc();
    }

    /// One answered request: its duration, and the wall and CPU time of the longest
    /// single poll of its handler.
    pub fn request(&self, route: &str, took: Duration, poll: Duration, poll_cpu: Duration) {
        self.requests
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
        self.longest_poll.observe(poll.as_secs_f64());
        self.longest_poll_cpu.observe(poll_cpu.as_secs_f64());
    }

    /// One upstream call of a connection (`begin` or `finish`).
    pub fn upstream(&self, connection: &str, phase: &str, took: Duration) {
        self.upstream
            .with_label_values(&[connection, phase])
            .observe(took.as_secs_f64());
    }

    /// What provisioning did with a federated identity.
    pub fn provisioned(&self, connection: &str, result: &str) {
        self.provisioning
            .with_label_values(&[connection, result])
            .inc();
    }

    /// One token request. `grant_type` is whatever the client sent; unknown values are
    /// counted as `other` so a client cannot invent series.
    pub fn token(&self, grant_type: Option<&str>, outcome: &str) {
        let grant = match grant_type {
            Some(g @ ("authorization_code" | "refresh_token" | "client_credentials")) => g,
            None => "none",
            Some(_) => "other",
        };
        self.tokens.with_label_values(&[grant, outcome]).inc();
    }

    /// Everything, with the sign-ins in progress counted in `store` and, for a
    /// PostgreSQL store, its pool and statement figures as they are now.
    pub async fn scrape(&self, store: &dyn crate::store::Store) -> String {
        // Read before counting the flows, so a database that does not answer cannot
        // hold back what the pool shows (a queue of waiting requests).
        if let (Some(db), Some(pg)) = (&self.db, store.postgres()) {
            db.read(pg);
        }
        self.render(store.flow_count().await)
    }

    /// Everything, in the Prometheus text format. `flows_active` is counted by the
    /// caller (the store knows); when the store could not say, the gauge keeps its last
    /// value and the failure is logged, so a scrape still gets every other figure. The
    /// process figures are read now.
    pub fn render(&self, flows_active: StoreResult<usize>) -> String {
        match flows_active {
            Ok(n) => self.flows_active.set(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(e) => tracing::warn!(error = %e, "the store could not count active sign-ins"),
        }
        let process = ProcessStats::read();
        if let Some(cpu) = process.cpu {
            self.cpu_seconds.set(cpu.as_secs_f64());
        }
        if let Some(rss) = process.rss_bytes {
            self.resident.set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        if let Some(peak) = process.peak_rss_bytes {
            self.resident_peak
                .set(i64::try_from(peak).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// CPU time and memory of this process, where the platform tells (Linux `/proc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu: Option<Duration>,
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// Peak resident set size (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
}

impl ProcessStats {
    /// This process.
    pub fn read() -> ProcessStats {
        Self::of("self")
    }

    /// Another process on this machine, by pid (`usher bench --pid`).
    pub fn of_pid(pid: u32) -> ProcessStats {
        Self::of(&pid.to_string())
    }

    fn of(which: &str) -> ProcessStats {
        let status = std::fs::read_to_string(format!("/proc/{which}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .map(|k| k * 1024)
        };
        let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).unwrap_or_default();
        ProcessStats {
            cpu: cpu_from_stat(&stat),
            rss_bytes: kib("VmRSS:"),
            peak_rss_bytes: kib("VmHWM:"),
        }
    }
}

/// CPU time of the calling thread (zero where the platform cannot tell).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own and reads nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// utime + stime from a `/proc/…/stat` line (fields 14 and 15, counted after the
/// parenthesised command name, which may itself contain spaces).
fn cpu_from_stat(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    Some(Duration::from_nanos(
        (utime + stime).saturating_mul(1_000_000_000) / ticks,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_codes_and_grants_are_bounded() {
        let m = Metrics::new().unwrap();
        m.sign_in("thrift", "access_denied: the user said no", "google");
        m.sign_in("thrift", "success", "local");
        m.token(Some("made_up_grant"), "unsupported_grant_type");
        let text = m.render(Ok(3));
        assert!(text.contains(
            r#"usher_sign_ins_total{app="thrift",connection="google",outcome="access_denied"} 1"#
        ));
        assert!(!text.contains("the user said no"));
        assert!(text.contains(r#"grant_type="other""#));
        assert!(text.contains("usher_flows_active 3"));
    }

    #[test]
    fn a_store_that_cannot_count_flows_leaves_the_gauge_as_it_was() {
        let m = Metrics::new().unwrap();
        m.render(Ok(7));
        let text = m.render(Err(crate::store::StoreError::Backend(
            "connection refused".into(),
        )));
        assert!(text.contains("usher_flows_active 7"), "{text}");
        assert!(!text.contains("connection refused"));
    }

    #[test]
    fn database_series_are_there_only_when_asked_for() {
        let plain = Metrics::new().unwrap();
        plain.store_unavailable();
        assert!(!plain.render(Ok(0)).contains("usher_db_"));
        let db = Metrics::new().unwrap().with_database().unwrap();
        db.store_unavailable();
        let text = db.render(Ok(0));
        assert!(
            text.contains("usher_db_unavailable_responses_total 1"),
            "{text}"
        );
        assert!(text.contains("usher_db_pool_max_connections 0"), "{text}");
    }

    #[test]
    fn process_stats_read_this_process() {
        let s = ProcessStats::read();
        if cfg!(target_os = "linux") {
            assert!(s.rss_bytes.unwrap() > 0);
            assert!(s.peak_rss_bytes.unwrap() >= s.rss_bytes.unwrap());
            assert!(s.cpu.is_some());
        }
    }

    #[test]
    fn stat_parsing_skips_a_command_with_spaces() {
        let line = "42 (tokio runtime) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0";
        let cpu = cpu_from_stat(line).unwrap();
        assert!(cpu > Duration::ZERO);
    }
}
