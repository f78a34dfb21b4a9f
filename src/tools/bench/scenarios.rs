//! The scenarios: what each one sets up, the operation it repeats, and the figures it
//! collects around the measured run (CPU time by part, memory, and Usher's own view
//! through `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::Nonce;

use super::client::{self, Rp};
use super::logins;
use super::measure::{drive, CpuSnapshot, Outcome, Scrape};
use super::world::{self, Target, FAMILY_JIT, FAMILY_RETURNING, FAMILY_SCRIPT};
use crate::metrics::ProcessStats;

/// Everything a scenario needs.
pub struct Ctx {
    pub target: Arc<Target>,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_ops: u64,
    /// Size of the seeded user pools.
    pub users: u64,
    pub verify_refresh: bool,
}

/// The figures of one scenario.
pub struct ScenarioResult {
    pub name: String,
    pub outcome: Outcome,
    /// CPU time used during the run, by part (in-process).
    pub cpu: CpuSnapshot,
    /// CPU time of an external Usher named with `--pid`.
    pub target_cpu: Option<Duration>,
    /// Resident memory after the run, and the peak so far (process, or `--pid`).
    pub memory: ProcessStats,
    /// Requests whose handler held an async worker over 1 ms in one poll, of all: by
    /// wall-clock time, and by CPU time.
    pub slow_polls: Option<((u64, u64), (u64, u64))>,
    /// Usher's time by route: (route, requests, mean).
    pub routes: Vec<(String, u64, Duration)>,
    /// The database's share, on PostgreSQL.
    pub db: Option<DbFigures>,
    /// The in-process Usher's store (`sled`, `postgres`), or `external` with `--url`.
    pub store: String,
    pub notes: Vec<String>,
}

/// What the measured run asked of PostgreSQL: the store's own counts (statements, and
/// round trips including prepares, transaction begins and commits), the CPU time of
/// the database's processes when they run on this machine, the transactions that
/// wrote (each commit of one waits for the WAL to reach the disk) and the WAL written.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbFigures {
    pub statements: u64,
    pub round_trips: u64,
    pub cpu: Option<Duration>,
    pub write_transactions: Option<u64>,
    pub wal_bytes: Option<u64>,
}

impl DbFigures {
    /// Per successful operation: (statements, round trips, CPU time).
    pub fn per_op(&self, ops: u64) -> Option<(f64, f64, Option<Duration>)> {
        let n = u32::try_from(ops).ok().filter(|n| *n > 0)?;
        Some((
            self.statements as f64 / f64::from(n),
            self.round_trips as f64 / f64::from(n),
            self.cpu.map(|c| c / n),
        ))
    }

    /// Per successful operation: (write transactions, WAL bytes).
    pub fn writes_per_op(&self, ops: u64) -> Option<(Option<f64>, Option<f64>)> {
        let n = (ops > 0).then_some(ops as f64)?;
        Some((
            self.write_transactions.map(|w| w as f64 / n),
            self.wal_bytes.map(|w| w as f64 / n),
        ))
    }
}

impl ScenarioResult {
    /// Usher's CPU time per operation: its threads in-process, its process with
    /// `--pid`.
    pub fn usher_cpu_per_op(&self) -> Option<Duration> {
        let ops = u32::try_from(self.outcome.ops).ok().filter(|n| *n > 0)?;
        match self.target_cpu {
            Some(t) => Some(t / ops),
            None if self.cpu.usher > Duration::ZERO => Some(self.cpu.usher / ops),
            None => None,
        }
    }
}

async fn scrape(target: &Target) -> Option<Scrape> {
    let res = target
        .http
        .get(format!("{}/metrics", target.issuer))
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    Some(Scrape::parse(&res.text().await.ok()?))
}

fn memory(target: &Target) -> ProcessStats {
    match (target.pid, &target.local) {
        (Some(pid), _) => ProcessStats::of_pid(pid),
        (None, Some(_)) => ProcessStats::read(),
        (None, None) => ProcessStats::default(),
    }
}

/// Run `op` as the measured part of scenario `name`, with the figures around it.
async fn measured<F, Fut>(ctx: &Ctx, name: &str, rate: Option<f64>, op: F) -> ScenarioResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let target = &ctx.target;
    let scrape_before = scrape(target).await;
    let local = target.local.as_ref();
    let counts_before = local.and_then(|l| l.pg_counts());
    let probe = local.and_then(|l| l.db.clone());
    let db_before = match &probe {
        Some(p) => Some(p.mark().await),
        None => None,
    };
    let cpu_before = CpuSnapshot::now();
    let pid_before = target.pid.map(CpuSnapshot::of_pid);
    let outcome = drive(ctx.concurrency, ctx.duration, ctx.max_ops, rate, op).await;
    let cpu = CpuSnapshot::now().since(&cpu_before);
    let db_after = match &probe {
        Some(p) => Some(p.mark().await),
        None => None,
    };
    let db = local
        .and_then(|l| l.pg_counts())
        .zip(counts_before)
        .map(|(after, before)| {
            let (b, a) = (db_before.unwrap_or_default(), db_after.unwrap_or_default());
            DbFigures {
                statements: after.statements.saturating_sub(before.statements),
                round_trips: after.round_trips.saturating_sub(before.round_trips),
                cpu: a.cpu.zip(b.cpu).map(|(a, b)| a.saturating_sub(b)),
                // The later mark's own transaction is not the scenario's.
                write_transactions: a
                    .xid
                    .zip(b.xid)
                    .map(|(a, b)| a.saturating_sub(b).saturating_sub(1)),
                wal_bytes: a.wal.zip(b.wal).map(|(a, b)| a.saturating_sub(b)),
            }
        });
    let target_cpu = target
        .pid
        .zip(pid_before)
        .map(|(pid, before)| CpuSnapshot::of_pid(pid).saturating_sub(before));
    let scrape_after = scrape(target).await;
    let (slow_polls, routes) = match (&scrape_before, &scrape_after) {
        (Some(b), Some(a)) => (
            Some((a.slow_polls_since(b, false), a.slow_polls_since(b, true))),
            a.routes_since(b),
        ),
        _ => (None, Vec::new()),
    };
    ScenarioResult {
        name: name.to_string(),
        outcome,
        cpu,
        target_cpu,
        memory: memory(target),
        slow_polls,
        routes,
        db,
        store: local.map_or("external", |l| l.store_name()).to_string(),
        notes: Vec::new(),
    }
}

/// A short unmeasured run: connections opened, caches warm.
async fn warm_up<F, Fut>(ctx: &Ctx, op: F) -> Result<(), String>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let n = ctx.concurrency as u64;
    let o = drive(ctx.concurrency, Duration::from_secs(60), n, None, op).await;
    match o.first_error {
        Some(e) if o.ops == 0 => Err(e),
        _ => Ok(()),
    }
}

fn local(ctx: &Ctx, scenario: &str) -> anyhow::Result<()> {
    if ctx.target.local.is_none() {
        anyhow::bail!(
            "the {scenario} scenario needs the in-process Usher and its stand-ins (no --url)"
        );
    }
    Ok(())
}

async fn rp(target: &Target, app: &str) -> anyhow::Result<Arc<Rp>> {
    let (client_id, secret) = match &target.local {
        Some(_) => (app.to_string(), Some(world::SECRET.to_string())),
        None => target.password_client.clone(),
    };
    Ok(Arc::new(
        Rp::discover(
            &target.http,
            &target.issuer,
            &client_id,
            secret.as_deref(),
            &target.redirect_uri,
        )
        .await
        .map_err(anyhow::Error::msg)?,
    ))
}

/// (a) Password sign-ins of existing users: Argon2id with Usher's parameters.
pub async fn password(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let rp = rp(&ctx.target, world::PASSWORD_APP).await?;
    let target = ctx.target.clone();
    let users = ctx.users.max(1);
    let op = move |i: u64| {
        let (rp, target) = (rp.clone(), target.clone());
        async move {
            let (login, password) = match &target.external_user {
                Some((l, p)) => (l.clone(), p.clone()),
                None if target.local.is_some() => {
                    (world::password_user(i % users), world::PASSWORD.to_string())
                }
                None => return Err("--url needs --username and --password".to_string()),
            };
            logins::password(&target.http, &rp, &login, &password)
                .await
                .map(|_| ())
        }
    };
    let op = Arc::new(op);
    let o = op.clone();
    warm_up(ctx, move |i| o(i))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(measured(ctx, "password", None, move |i| op(i)).await)
}

/// A one-step federated sign-in as upstream user `n` of `family` (made known first).
fn federated_op(
    ctx: &Ctx,
    rp: Arc<Rp>,
    family: u64,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
       + Send
       + Sync
       + 'static {
    let target = ctx.target.clone();
    move |n: u64| {
        let (rp, target) = (rp.clone(), target.clone());
        Box::pin(async move {
            let local = target.local.as_ref().ok_or("no in-process Usher")?;
            let user = local.upstream_user(family, n);
            logins::federated(&target.http, &rp, &user)
                .await
                .map(|_| ())
        })
    }
}

/// Make `count` upstream users of `family` sign in once (JIT creates their accounts).
async fn provision(ctx: &Ctx, rp: Arc<Rp>, family: u64, count: u64) -> anyhow::Result<()> {
    let op = federated_op(ctx, rp, family);
    let o = drive(ctx.concurrency, Duration::from_secs(600), count, None, op).await;
    if o.ops < count {
        anyhow::bail!(
            "provisioning {count} bench users failed ({} done): {}",
            o.ops,
            o.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// (b) Federated first sign-ins: a new upstream user each time, provisioned by JIT.
pub async fn jit(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    local(ctx, "jit")?;
    let rp = rp(&ctx.target, world::FEDERATED_APP).await?;
    // One counter for warm-up and measured run, so every sign-in is a first one.
    let counter = Arc::new(AtomicU64::new(0));
    let op = Arc::new(federated_op(ctx, rp, FAMILY_JIT));
    let (o, c) = (op.clone(), counter.clone());
    warm_up(ctx, move |_| o(c.fetch_add(1, Ordering::Relaxed)))
        .await
        .map_err(anyhow::Error::msg)?;
    let c = counter.clone();
    Ok(measured(ctx, "jit", None, move |_| {
        op(c.fetch_add(1, Ordering::Relaxed))
    })
    .await)
}

/// (c) Federated returning sign-ins over a pool of provisioned users; at `rate` per
/// second when given (the latency-under-load run).
pub async fn federated(
    ctx: &Ctx,
    rate: Option<f64>,
    seeded: bool,
) -> anyhow::Result<ScenarioResult> {
    local(ctx, "federated")?;
    let rp = rp(&ctx.target, world::FEDERATED_APP).await?;
    let pool = ctx.users.max(1);
    if !seeded {
        provision(ctx, rp.clone(), FAMILY_RETURNING, pool).await?;
    }
    let op = federated_op(ctx, rp, FAMILY_RETURNING);
    let name = match rate {
        Some(r) => format!("federated @{r:.0}/s"),
        None => "federated".to_string(),
    };
    Ok(measured(ctx, &name, rate, move |i| op(i % pool)).await)
}

/// (g) Silent SSO re-authorization: each task holds a browser signed in once (a
/// password sign-in, not measured); an operation is the app asking again with
/// `prompt=none` — `/authorize` answered with a code straight away from the SSO
/// session — and the code exchange with its ID-token validation.
pub async fn sso(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let target = ctx.target.clone();
    let rp = rp(&target, world::PASSWORD_APP).await?;
    let mut jars = Vec::new();
    for n in 0..ctx.concurrency as u64 {
        let (login, password) = match &target.external_user {
            Some(user) => user.clone(),
            None if target.local.is_some() => (
                world::password_user(n % ctx.users.max(1)),
                world::PASSWORD.into(),
            ),
            None => anyhow::bail!("--url needs --username and --password"),
        };
        let jar = logins::password_keeping_cookies(&target.http, &rp, &login, &password)
            .await
            .map_err(anyhow::Error::msg)?;
        jars.push(jar);
    }
    let pool = Arc::new(Mutex::new(jars));
    let op = move |_| {
        let (rp, target, pool) = (rp.clone(), target.clone(), pool.clone());
        async move {
            let jar = pool.lock().map_err(|e| e.to_string())?.pop();
            let jar = jar.ok_or("no signed-in browser left (earlier ones failed)")?;
            let jar = logins::silent(&target.http, &rp, jar).await?;
            pool.lock().map_err(|e| e.to_string())?.push(jar);
            Ok(())
        }
    };
    Ok(measured(ctx, "sso", None, op).await)
}

/// (d) The refresh-token grant: each task keeps rotating its own token.
pub async fn refresh(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let target = ctx.target.clone();
    let mut tokens = Vec::new();
    if target.local.is_some() {
        let rp = rp(&target, world::FEDERATED_APP).await?;
        let local = target
            .local
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no Usher"))?;
        for n in 0..ctx.concurrency as u64 {
            let user = local.upstream_user(FAMILY_RETURNING, n);
            let t = logins::federated(&target.http, &rp, &user)
                .await
                .map_err(anyhow::Error::msg)?;
            tokens.push((t.refresh_token, t.nonce));
        }
        run_refresh(ctx, rp, tokens).await
    } else {
        let rp = rp(&target, world::PASSWORD_APP).await?;
        let (login, password) = target
            .external_user
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--url needs --username and --password"))?;
        for _ in 0..ctx.concurrency {
            let t = logins::password(&target.http, &rp, &login, &password)
                .await
                .map_err(anyhow::Error::msg)?;
            tokens.push((t.refresh_token, t.nonce));
        }
        run_refresh(ctx, rp, tokens).await
    }
}

async fn run_refresh(
    ctx: &Ctx,
    rp: Arc<Rp>,
    tokens: Vec<(Option<String>, Nonce)>,
) -> anyhow::Result<ScenarioResult> {
    let pool: Vec<(String, Nonce)> = tokens
        .into_iter()
        .map(|(t, n)| t.map(|t| (t, n)))
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow::anyhow!("the sign-ins gave no refresh tokens"))?;
    let pool = Arc::new(Mutex::new(pool));
    let target = ctx.target.clone();
    let verify = ctx.verify_refresh;
    let mut result = measured(ctx, "refresh", None, move |_| {
        let (rp, target, pool) = (rp.clone(), target.clone(), pool.clone());
        async move {
            let taken = pool.lock().map_err(|e| e.to_string())?.pop();
            let (token, nonce) = taken.ok_or("no refresh token left (earlier refreshes failed)")?;
            let next = rp.refresh(&target.http, &token, &nonce, verify).await?;
            pool.lock().map_err(|e| e.to_string())?.push((next, nonce));
            Ok(())
        }
    })
    .await;
    if !verify {
        result.notes.push(
            "ID tokens of refreshes parsed, signatures not checked (--verify-refresh checks them)"
                .into(),
        );
    }
    Ok(result)
}

/// (e) The `client_credentials` grant of a service client.
pub async fn client_credentials(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    let target = ctx.target.clone();
    let (id, secret) = target
        .service_client
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--url needs --service-client-id and --service-secret"))?;
    let token_url = format!("{}/token", target.issuer);
    let op = move |_| {
        let (target, id, secret, url) = (
            target.clone(),
            id.clone(),
            secret.clone(),
            token_url.clone(),
        );
        async move { client::client_credentials(&target.http, &url, &id, &secret).await }
    };
    let op = Arc::new(op);
    let o = op.clone();
    warm_up(ctx, move |i| o(i))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(measured(ctx, "client-credentials", None, move |i| op(i)).await)
}

/// TOTP codes of the two-step pool: each code is good once, so each user can sign in
/// with the current time step and the next one, then waits for the clock.
struct TotpPool {
    secrets: Vec<Vec<u8>>,
    last_step: Mutex<Vec<u64>>,
    cursor: AtomicU64,
}

impl TotpPool {
    /// The next user with an unused code: (user number, code).
    fn take(&self) -> Result<(u64, String), String> {
        let now = crate::crypto::unix_now();
        let current = crate::authn::totp::step_at(now);
        let n = self.secrets.len() as u64;
        let mut last = self.last_step.lock().map_err(|e| e.to_string())?;
        for _ in 0..n {
            let u = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let slot = last.get_mut(u as usize).ok_or("pool index")?;
            let step = current.max(*slot + 1);
            if step <= current + 1 {
                *slot = step;
                let secret = self.secrets.get(u as usize).ok_or("pool index")?;
                return Ok((u, crate::authn::totp::code_at(secret, step * 30)));
            }
        }
        Err(format!(
            "{}every two-step user has used its codes for this 30-second window; raise --users",
            super::measure::STOP
        ))
    }
}

/// (f) Two steps under a script: federated, then TOTP, for users with an account.
pub async fn script(ctx: &Ctx) -> anyhow::Result<ScenarioResult> {
    local(ctx, "script")?;
    let target = ctx.target.clone();
    let local = target
        .local
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no Usher"))?;
    let pool_size = ctx.users.max(ctx.concurrency as u64 * 2);
    let fed = rp(&target, world::FEDERATED_APP).await?;
    provision(ctx, fed, FAMILY_SCRIPT, pool_size).await?;
    let mut secrets = Vec::new();
    for n in 0..pool_size {
        secrets.push(local.enrol_totp(FAMILY_SCRIPT, n).await?);
    }
    local.flush().await?;
    let pool = Arc::new(TotpPool {
        secrets,
        last_step: Mutex::new(vec![0; pool_size as usize]),
        cursor: AtomicU64::new(0),
    });
    let rp = rp(&target, world::SCRIPT_APP).await?;
    let upstream = local.upstream;
    let op = move |_| {
        let (rp, target, pool) = (rp.clone(), target.clone(), pool.clone());
        async move {
            let (n, code) = pool.take()?;
            let user = upstream.user_id(FAMILY_SCRIPT, n);
            logins::federated_then_totp(&target.http, &rp, &user, &code)
                .await
                .map(|_| ())
        }
    };
    Ok(measured(ctx, "script", None, op).await)
}

/// A sign-in page to come back to, with the browser's cookies.
type Revisit = (url::Url, Option<String>);

/// Sign-ins started and never finished: how much memory `count` of them hold, and —
/// with `wait_expiry` — that they stop working at `flow_ttl` and are swept.
pub async fn pending(
    ctx: &Ctx,
    count: u64,
    wait_expiry: Option<u64>,
) -> anyhow::Result<ScenarioResult> {
    let target = ctx.target.clone();
    let rp = rp(&target, world::PASSWORD_APP).await?;
    let sample: Arc<Mutex<Option<Revisit>>> = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let bounded = Ctx {
        target: target.clone(),
        concurrency: ctx.concurrency,
        // Bounded by count; the time bound only stops a run that stalls.
        duration: Duration::from_secs(600),
        max_ops: count,
        users: ctx.users,
        verify_refresh: false,
    };
    let s = sample.clone();
    let t = target.clone();
    let mut result = measured(&bounded, "pending", None, move |_| {
        let (rp, target, sample) = (rp.clone(), t.clone(), s.clone());
        async move {
            let left = logins::abandoned(&target.http, &rp).await?;
            if let Ok(mut s) = sample.lock() {
                s.get_or_insert(left);
            }
            Ok(())
        }
    })
    .await;
    if let Some(active) = scrape(&target).await.map(|s| s.get("usher_flows_active")) {
        result
            .notes
            .push(format!("{active:.0} sign-ins in progress after the run"));
    }
    let Some(ttl) = wait_expiry else {
        return Ok(result);
    };
    let probe = sample.lock().ok().and_then(|mut s| s.take());
    let expires = started + Duration::from_secs(ttl + 1);
    tokio::time::sleep_until(expires.into()).await;
    if let Some((url, cookies)) = probe {
        let mut req = target.http.get(url);
        if let Some(c) = cookies {
            req = req.header(reqwest::header::COOKIE, c);
        }
        let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        result.notes.push(format!(
            "the first sign-in, revisited {:.0} s after it started (flow_ttl {ttl} s): HTTP {status}{}",
            started.elapsed().as_secs_f64(),
            if status == 200 { " — STILL USABLE" } else { " (expired)" }
        ));
    }
    // The sweeper runs once a minute; give it two rounds at most.
    let give_up = Instant::now() + Duration::from_secs(130);
    loop {
        let active = scrape(&target).await.map(|s| s.get("usher_flows_active"));
        if active == Some(0.0) || Instant::now() >= give_up {
            let after = memory(&target);
            result.notes.push(format!(
                "{} sign-ins in progress {:.0} s after the first started; RSS then {}",
                active.map_or("unknown".to_string(), |a| format!("{a:.0}")),
                started.elapsed().as_secs_f64(),
                super::mib(after.rss_bytes),
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(result)
}
