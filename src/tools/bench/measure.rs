//! Measuring: the bounded load loop, latency percentiles, CPU time by thread group,
//! reading Usher's `/metrics`, and the physical limits (Argon2id hashes and signatures
//! per second on the same cores).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::SigningAlg;
use crate::oidc::keys::Keys;

/// Thread names of the in-process parts, so CPU time can be split between them. Linux
/// keeps 15 bytes of a thread's name; these fit.
pub const USHER_THREADS: &str = "usher-srv";
pub const UPSTREAM_THREADS: &str = "bench-upstream";
pub const CLIENT_THREADS: &str = "bench-client";

/// CPU time so far, of the process and of each group of its threads.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    pub process: Duration,
    pub usher: Duration,
    pub upstream: Duration,
    pub client: Duration,
}

impl CpuSnapshot {
    /// This process, its threads grouped by name (`sled*` threads are Usher's store).
    pub fn now() -> CpuSnapshot {
        let mut snap = CpuSnapshot {
            process: crate::metrics::ProcessStats::read().cpu.unwrap_or_default(),
            ..CpuSnapshot::default()
        };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return snap;
        };
        for task in tasks.flatten() {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            // The first field of schedstat is the time spent on a CPU, in nanoseconds.
            let ns = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let t = Duration::from_nanos(ns);
            let name = name.trim();
            if name.starts_with(USHER_THREADS) || name.starts_with("sled") {
                snap.usher += t;
            } else if name.starts_with(UPSTREAM_THREADS) {
                snap.upstream += t;
            } else if name.starts_with(CLIENT_THREADS) {
                snap.client += t;
            }
        }
        snap
    }

    /// Another process (an external Usher named with `--pid`): its total only.
    pub fn of_pid(pid: u32) -> Duration {
        crate::metrics::ProcessStats::of_pid(pid)
            .cpu
            .unwrap_or_default()
    }

    pub fn since(&self, earlier: &CpuSnapshot) -> CpuSnapshot {
        CpuSnapshot {
            process: self.process.saturating_sub(earlier.process),
            usher: self.usher.saturating_sub(earlier.usher),
            upstream: self.upstream.saturating_sub(earlier.upstream),
            client: self.client.saturating_sub(earlier.client),
        }
    }
}

/// An operation failing with a message that starts with this ends the whole run (not
/// counted as a failure): the scenario has used up something it needs.
pub const STOP: &str = "stop: ";

/// What a load run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Why the run ended before its time, if an operation said [`STOP`].
    pub stopped_early: Option<String>,
    pub elapsed: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency at quantile `q` (0..1), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).max(1);
        self.latencies[rank.min(self.latencies.len()) - 1]
    }
}

/// Run `op` from `concurrency` tasks until `duration` has passed or `max_ops` were
/// started, whichever comes first; `op` gets the operation's number. With a `rate`,
/// operation `i` starts no earlier than `i / rate` seconds in (a steady offered load);
/// without, each task starts the next as soon as the last ended. Every task stops by
/// itself: the loop is bounded in count and time.
pub async fn drive<F, Fut>(
    concurrency: usize,
    duration: Duration,
    max_ops: u64,
    rate: Option<f64>,
    op: F,
) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let stop: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (op, next, errors, first_error) = (
            op.clone(),
            next.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let (stop, stopped) = (stop.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                if Instant::now() >= deadline || stopped.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max_ops {
                    break;
                }
                if let Some(r) = rate.filter(|r| *r > 0.0) {
                    let due = start + Duration::from_secs_f64(i as f64 / r);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) if e.starts_with(STOP) => {
                        stopped.store(true, Ordering::Relaxed);
                        if let Ok(mut s) = stop.lock() {
                            s.get_or_insert(e[STOP.len()..].to_string());
                        }
                        break;
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(e);
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(mut l) = task.await {
            latencies.append(&mut l);
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let first_error = first_error.lock().ok().and_then(|mut f| f.take());
    let stopped_early = stop.lock().ok().and_then(|mut s| s.take());
    Outcome {
        ops: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        stopped_early,
        elapsed,
        latencies,
    }
}

/// One scrape of `/metrics`: series (name with labels) → value.
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    series.insert(name.to_string(), v);
                }
            }
        }
        Scrape(series)
    }

    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// Requests whose handler held a worker longer than 1 ms in one poll, and all
    /// requests, between `earlier` and this scrape: by wall-clock time (`cpu` false) or
    /// by the CPU time of that poll (`cpu` true, which leaves out preemption).
    pub fn slow_polls_since(&self, earlier: &Scrape, cpu: bool) -> (u64, u64) {
        let metric = if cpu {
            "usher_request_longest_poll_cpu_seconds"
        } else {
            "usher_request_longest_poll_seconds"
        };
        let count = format!("{metric}_count");
        let count = count.as_str();
        let fast = format!("{metric}_bucket{{le=\"0.001\"}}");
        let fast = fast.as_str();
        let total = self.get(count) - earlier.get(count);
        let within = self.get(fast) - earlier.get(fast);
        ((total - within).max(0.0) as u64, total.max(0.0) as u64)
    }

    /// Server time by route between `earlier` and this scrape: (route, requests, mean).
    pub fn routes_since(&self, earlier: &Scrape) -> Vec<(String, u64, Duration)> {
        let mut out = Vec::new();
        for (series, count) in &self.0 {
            let Some(labels) = series
                .strip_prefix("usher_request_duration_seconds_count{route=\"")
                .and_then(|r| r.strip_suffix("\"}"))
            else {
                continue;
            };
            let n = count - earlier.get(series);
            if n < 1.0 {
                continue;
            }
            let sum_key = format!("usher_request_duration_seconds_sum{{route=\"{labels}\"}}");
            let sum = self.get(&sum_key) - earlier.get(&sum_key);
            out.push((
                labels.to_string(),
                n as u64,
                Duration::from_secs_f64((sum / n).max(0.0)),
            ));
        }
        out
    }
}

/// A rate measured by running `work` on `threads` threads for `duration`.
fn rate(threads: usize, duration: Duration, work: Arc<dyn Fn() -> bool + Send + Sync>) -> f64 {
    let start = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (work, done) = (work.clone(), done.clone());
            std::thread::spawn(move || {
                while start.elapsed() < duration {
                    if work() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Argon2id verifications per second with Usher's parameters, one per core at a time
/// (what a password sign-in does once).
pub fn argon2_rate(threads: usize, duration: Duration) -> f64 {
    let Ok(hash) = crate::authn::password::hash("bench-password-1") else {
        return 0.0;
    };
    let user = crate::store::User {
        role_sources: Default::default(),
        id: "u_limit".into(),
        username: "limit".into(),
        email: None,
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: Some(hash),
        disabled: false,
        created_at: 0,
        updated_at: 0,
    };
    rate(
        threads,
        duration,
        Arc::new(move || crate::authn::password::verify(Some(&user), "bench-password-1")),
    )
}

/// Signatures per second through [`Keys::sign`], over claims shaped like an ID token.
pub fn signing_rate(keys: Arc<Keys>, alg: SigningAlg, threads: usize, duration: Duration) -> f64 {
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:9000", "sub": "u_7QmZ3uS1n0xYbq9L2kV8rA", "aud": "bench",
        "azp": "bench", "iat": 1_700_000_000u64, "exp": 1_700_003_600u64,
        "auth_time": 1_700_000_000u64, "amr": ["fed"], "nonce": "n-0S6_WzA2Mj",
        "email": "user@example.com", "email_verified": true, "name": "Bench User",
    });
    rate(
        threads,
        duration,
        Arc::new(move || keys.sign(alg, "JWT", &claims).is_ok()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_give_slow_polls_and_route_means() {
        let before = Scrape::parse(
            "usher_request_longest_poll_seconds_bucket{le=\"0.001\"} 10\nusher_request_longest_poll_seconds_count 10\n",
        );
        let after = Scrape::parse(
            "# HELP x y\nusher_request_longest_poll_seconds_bucket{le=\"0.001\"} 17\nusher_request_longest_poll_seconds_count 20\nusher_request_duration_seconds_sum{route=\"/token\"} 0.5\nusher_request_duration_seconds_count{route=\"/token\"} 100\n",
        );
        assert_eq!(after.slow_polls_since(&before, false), (3, 10));
        assert_eq!(after.slow_polls_since(&before, true), (0, 0));
        let routes = after.routes_since(&before);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].0, "/token");
        assert_eq!(routes[0].2, Duration::from_millis(5));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let o = Outcome {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..Outcome::default()
        };
        assert_eq!(o.quantile(0.5), Duration::from_millis(50));
        assert_eq!(o.quantile(0.99), Duration::from_millis(99));
    }
}
