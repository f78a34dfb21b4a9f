//! Two real `usher serve` processes on one PostgreSQL database, as a deployment runs
//! them: a sign-in whose every request alternates between the nodes, SSO and refresh
//! rotation across them; fifty first federated sign-ins of one identity racing over
//! both; a node killed with SIGKILL under load losing nothing it acknowledged; the
//! database restarted under load answered with 503s and then served again; and two
//! nodes started at the same moment on an empty database agreeing on their keys.
//!
//! Each test gets its own database of the shared throwaway cluster (the restart test a
//! cluster of its own) and is skipped, loudly, where PostgreSQL is not installed.
//!
//! The nodes serve one issuer, `http://localhost`, with one config file. The test's
//! clients resolve that name themselves (a [`Route`]): to each node in turn or to one
//! chosen node, with a new connection per request, so "in turn" means every request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::{OAuth2TokenResponse, TokenResponse};
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{json, Value};
use usher::store::postgres::cluster::{shared, TempCluster};
use usher::store::postgres::PgSettings;
use usher::store::{IdentityStore, PgStore, User, UserStore};
use usher::tools::standin::{Kind, Standin, StandinConfig};

use crate::common::*;

const ISSUER: &str = "http://localhost";
const HOST: &str = "localhost";
const PASSWORD: &str = "wonderland-rabbit";
const OPS_SECRET: &str = "ops-secret";
const FED_SECRET: &str = "fed-secret";
const A: usize = 0;
const B: usize = 1;
const NAMES: [&str; 2] = ["A", "B"];
/// Where a node not running is "reached": a port nothing listens on (as `REDIRECT`'s).
const CLOSED: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

// ---------------------------------------------------------------------------------
// Nodes

/// A `usher serve` process; killed (SIGKILL) when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node started, not yet known to serve.
struct Starting {
    process: Process,
    serving: mpsc::Receiver<SocketAddr>,
}

/// A node serving on `addr`.
struct Node {
    process: Process,
    addr: SocketAddr,
}

/// The last lines of a node's log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Start `usher serve` on `config`, its log into `log`. Call it from the test's own
/// body: the node is told to die with the thread that started it, so that a test
/// binary killed before it can stop its nodes leaves none behind.
fn spawn_node(config: &Path, log: &Path) -> Starting {
    let mut command = Command::new(env!("CARGO_BIN_EXE_usher"));
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env_remove("USHER_CONFIG")
        .env("USHER_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, serving) = mpsc::channel();
    // `usher serve` prints "Usher is serving <issuer> on http://<addr>" once bound.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split(" on http://").nth(1) {
                if let Ok(addr) = addr.trim().parse() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    Starting {
        process: Process {
            child,
            log: log.to_path_buf(),
        },
        serving,
    }
}

impl Starting {
    /// Wait (up to 60 s) until the node says where it serves.
    async fn ready(mut self) -> Node {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(addr) = self.serving.try_recv() {
                return Node {
                    process: self.process,
                    addr,
                };
            }
            if let Some(status) = self.process.child.try_wait().unwrap() {
                panic!(
                    "the node exited ({status}) before serving:\n{}",
                    tail(&self.process.log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the node is not serving after 60 s:\n{}",
                tail(&self.process.log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Where this test's clients connect for `localhost`: to each node in turn, or to one
/// chosen node. Every client built over a route opens a connection per request.
#[derive(Clone)]
struct Route {
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    /// The pinned node, if any, and the next node in turn.
    how: Arc<Mutex<(Option<usize>, usize)>>,
    /// Connections opened to each node.
    opened: Arc<Mutex<[usize; 2]>>,
}

impl Route {
    fn pin(&self, node: usize) {
        self.how.lock().unwrap().0 = Some(node);
    }

    fn next(&self) -> SocketAddr {
        let mut how = self.how.lock().unwrap();
        let node = match how.0 {
            Some(node) => node,
            None => {
                how.1 += 1;
                (how.1 - 1) % 2
            }
        };
        self.opened.lock().unwrap()[node] += 1;
        self.addrs.lock().unwrap()[node]
    }

    fn opened(&self) -> [usize; 2] {
        *self.opened.lock().unwrap()
    }
}

impl reqwest::dns::Resolve for Route {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let found: Result<SocketAddr, Box<dyn std::error::Error + Send + Sync>> =
            if name.as_str() == HOST {
                Ok(self.next())
            } else {
                Err(format!("{} is not the issuer's host", name.as_str()).into())
            };
        Box::pin(async move {
            let addr = found?;
            Ok(Box::new(std::iter::once(addr)) as reqwest::dns::Addrs)
        })
    }
}

/// `builder` connecting over `route`, one connection per request, bounded in time.
fn over(route: &Route, builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .dns_resolver(Arc::new(route.clone()))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Two nodes of one deployment: one config file, one database, one issuer.
struct Deployment {
    dir: tempfile::TempDir,
    url: String,
    nodes: Vec<Option<Node>>,
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    starts: usize,
}

impl Issuer for Deployment {
    fn issuer(&self) -> &str {
        ISSUER
    }
}

/// The config every node runs: Thrift (password), a service client with `scim`, and
/// with a stand-in, Google (JIT) and an app signing in through it alone.
fn config(db_url: &str, google: Option<&Standin>) -> String {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let (connections, fed) = match google {
        None => (String::new(), String::new()),
        Some(g) => (
            format!(
                "connections:\n  google:\n    kind: google\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{}\"\n    jit: {{ provision: true }}\n",
                g.issuer()
            ),
            format!(
                "  fed:\n    name: Federated\n    client_id: fed\n    client_secret: {FED_SECRET}\n    redirect_uris: [\"{REDIRECT}\"]\n    sign_in:\n      steps:\n        - [google]\n"
            ),
        ),
    };
    format!(
        r#"issuer: "{ISSUER}"
listen: "127.0.0.1:0"
store:
  postgres:
    url: "{db_url}"
    pool: {{ max_connections: 8, acquire_timeout_seconds: 2 }}
security:
  credentials_key: "{key}"
  # All of a test's load comes from one address.
  throttle: {{ enabled: false }}
{connections}apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: {SECRET}
    redirect_uris: ["{REDIRECT}"]
    sign_in:
      steps:
        - [password]
  ops:
    name: Operations
    client_id: ops
    client_secret: {OPS_SECRET}
    grants: [client_credentials]
    scopes: [scim]
{fed}"#
    )
}

impl Deployment {
    fn new(db_url: &str, google: Option<&Standin>) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usher.yaml"), config(db_url, google)).unwrap();
        Deployment {
            dir,
            url: db_url.to_string(),
            nodes: vec![None, None],
            addrs: Arc::new(Mutex::new(vec![CLOSED, CLOSED])),
            starts: 0,
        }
    }

    /// Start A, wait until it serves, then start B.
    async fn start(db_url: &str, google: Option<&Standin>) -> Deployment {
        let mut d = Deployment::new(db_url, google);
        d.restart(A).await;
        d.restart(B).await;
        d
    }

    /// Start both nodes at the same moment.
    async fn start_together(db_url: &str) -> Deployment {
        let mut d = Deployment::new(db_url, None);
        let a = d.spawn(A);
        let b = d.spawn(B);
        let (a, b) = (a.ready().await, b.ready().await);
        d.serving(A, a);
        d.serving(B, b);
        d
    }

    fn spawn(&mut self, node: usize) -> Starting {
        self.starts += 1;
        let log = self
            .dir
            .path()
            .join(format!("node-{}-{}.log", NAMES[node], self.starts));
        spawn_node(&self.dir.path().join("usher.yaml"), &log)
    }

    fn serving(&mut self, node: usize, started: Node) {
        self.addrs.lock().unwrap()[node] = started.addr;
        self.nodes[node] = Some(started);
    }

    /// Start `node` (again), on a new port, and wait until it serves.
    async fn restart(&mut self, node: usize) {
        let started = self.spawn(node).ready().await;
        self.serving(node, started);
    }

    /// `kill -9` the node. Until it is started again its clients meet a closed port
    /// (not its old one, which another server may take meanwhile).
    fn kill(&mut self, node: usize) {
        self.nodes[node] = None;
        self.addrs.lock().unwrap()[node] = CLOSED;
    }

    /// The node's process is running.
    fn alive(&mut self, node: usize) -> bool {
        let node = self.nodes[node].as_mut().expect("a started node");
        node.process.child.try_wait().unwrap().is_none()
    }

    /// No node has logged a panic (the server survives one in a request, which a
    /// client sees only as a lost connection).
    fn assert_no_panics(&self) {
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(!text.contains("panicked"), "{}:\n{text}", path.display());
            }
        }
    }

    /// The errors the nodes logged, for failure messages.
    fn logged_errors(&self) -> String {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            found.extend(
                text.lines()
                    .filter(|l| l.contains("ERROR"))
                    .take(10)
                    .map(String::from),
            );
        }
        found.join("\n")
    }

    /// A route taking the nodes in turn.
    fn route(&self) -> Route {
        Route {
            addrs: self.addrs.clone(),
            how: Arc::new(Mutex::new((None, 0))),
            opened: Default::default(),
        }
    }

    /// A route to one node.
    fn pinned(&self, node: usize) -> Route {
        let route = self.route();
        route.pin(node);
        route
    }

    fn browser(&self, route: &Route) -> Browser {
        Browser {
            http: over(route, Browser::builder()),
        }
    }

    /// A browser over `route` keeping its cookies in `jar` (several share a session).
    fn browser_in(&self, route: &Route, jar: &Arc<reqwest::cookie::Jar>) -> Browser {
        Browser {
            http: over(route, Browser::builder().cookie_provider(jar.clone())),
        }
    }

    /// An app's back end: no cookies, no redirects followed.
    fn client(&self, route: &Route) -> reqwest::Client {
        over(
            route,
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()),
        )
    }

    async fn rp(&self, route: &Route) -> Rp {
        Rp::discover_with(self, self.client(route), "thrift", Some(SECRET)).await
    }

    /// The database, as the test reads it.
    async fn store(&self) -> PgStore {
        let mut settings = PgSettings::new(self.url.clone());
        settings.max_connections = 2;
        PgStore::open(&settings).await.unwrap()
    }
}

/// Alice, with a password, straight into the database (migrating it if needed).
async fn seed_alice(db_url: &str) -> User {
    let mut settings = PgSettings::new(db_url);
    settings.max_connections = 2;
    let store = PgStore::open(&settings).await.unwrap();
    let user = User {
        role_sources: Default::default(),
        id: "u_alice".into(),
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        email_verified: true,
        name: Some("Alice Example".into()),
        given_name: Some("Alice".into()),
        family_name: Some("Example".into()),
        picture: None,
        roles: vec![],
        password_hash: Some(usher::authn::password::hash(PASSWORD).unwrap()),
        disabled: false,
        created_at: 1,
        updated_at: 1,
    };
    store.create_user(&user).await.unwrap();
    user
}

// ---------------------------------------------------------------------------------
// Requests that may meet a dead node or database

/// An answer, or the transport error of a node that could not be reached.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snippet: String = self.body.chars().take(300).collect();
        write!(f, "{} {snippet}", self.status)
    }
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The answer to an unreachable store: 503, when to retry, and a request id to
    /// quote (in the page, the OAuth description or the SCIM detail).
    fn is_unavailable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            && self.headers.contains_key(RETRY_AFTER)
            && self.body.to_lowercase().contains("request id")
    }
}

async fn send(req: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let res = req.send().await?;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.text().await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A `/token` call authenticated as Thrift.
async fn token_call(
    http: &reqwest::Client,
    form: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    send(
        http.post(format!("{ISSUER}/token"))
            .basic_auth("thrift", Some(SECRET))
            .form(form),
    )
    .await
}

async fn redeem(
    http: &reqwest::Client,
    code: &str,
    verifier: &str,
) -> Result<Answer, reqwest::Error> {
    token_call(
        http,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A `client_credentials` token of the service client, for SCIM.
async fn api_token(http: &reqwest::Client) -> String {
    let res = send(
        http.post(format!("{ISSUER}/token"))
            .basic_auth("ops", Some(OPS_SECRET))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    res.json()["access_token"].as_str().unwrap().to_string()
}

async fn scim_create(
    http: &reqwest::Client,
    bearer: &str,
    username: &str,
) -> Result<Answer, reqwest::Error> {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": username,
    });
    send(
        http.post(format!("{ISSUER}/scim/v2/Users"))
            .bearer_auth(bearer)
            .header("content-type", "application/scim+json")
            .body(user.to_string()),
    )
    .await
}

/// Follow an authorization request through Usher back to the app: the redirect's
/// query, or the answer that was not a redirect.
async fn authorize(
    http: &reqwest::Client,
    url: &str,
) -> Result<Result<HashMap<String, String>, Answer>, reqwest::Error> {
    let mut url = url::Url::parse(url).unwrap();
    for _ in 0..5 {
        let answer = send(http.get(url.as_str())).await?;
        if !answer.status.is_redirection() {
            return Ok(Err(answer));
        }
        let next = url
            .join(answer.headers[LOCATION].to_str().unwrap())
            .unwrap();
        if next.as_str().starts_with(REDIRECT) {
            return Ok(Ok(query(&next)));
        }
        url = next;
    }
    panic!("a redirect loop at {url}");
}

// ---------------------------------------------------------------------------------
// Load: workers, the phase they run in, and what they saw

/// What a load saw, by (what, node, phase), and everything it did not expect.
#[derive(Default)]
struct Tally {
    seen: HashMap<(&'static str, usize, usize), usize>,
    failures: Vec<String>,
    /// Accounts created and acknowledged: (id, userName).
    accounts: Vec<(String, String)>,
    /// Codes redeemed successfully: (code, PKCE verifier).
    codes: Vec<(String, String)>,
}

impl Tally {
    /// The first failures, and how many there were.
    fn failures(&self) -> String {
        let first: Vec<&String> = self.failures.iter().take(15).collect();
        format!("{} failures, the first: {first:#?}", self.failures.len())
    }

    fn count(&self, what: &str, node: usize, phase: usize) -> usize {
        self.seen
            .iter()
            .filter(|((w, n, p), _)| *w == what && *n == node && *p == phase)
            .map(|(_, c)| c)
            .sum()
    }
}

/// A phase the worker's operation did not begin and end in.
const BETWEEN: usize = 99;

#[derive(Default)]
struct Load {
    tally: Mutex<Tally>,
    phase: AtomicUsize,
    stop: AtomicBool,
}

/// Rounds per worker at most; each round pauses, so a worker makes ~40 a second.
const ROUNDS: usize = 1_000;
const PAUSE: Duration = Duration::from_millis(25);

impl Load {
    fn phase(&self) -> usize {
        self.phase.load(Ordering::SeqCst)
    }

    fn set_phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// The phase an operation begun in `began` belongs to, now that it is over.
    fn over(&self, began: usize) -> usize {
        if self.phase() == began {
            began
        } else {
            BETWEEN
        }
    }

    fn note(&self, what: &'static str, node: usize, phase: usize) {
        *self
            .tally
            .lock()
            .unwrap()
            .seen
            .entry((what, node, phase))
            .or_default() += 1;
    }

    fn fail(&self, message: String) {
        self.tally.lock().unwrap().failures.push(message);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Wait (at most `limit`) until every `(what, node)` has been seen `n` times in
    /// `phase`.
    async fn wait_for(&self, phase: usize, wanted: &[(&str, usize)], n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let late = {
                let tally = self.tally.lock().unwrap();
                if wanted
                    .iter()
                    .all(|(what, node)| tally.count(what, *node, phase) >= n)
                {
                    return;
                }
                (Instant::now() > deadline).then(|| {
                    format!(
                        "phase {phase}: not {n} of each of {wanted:?} within {limit:?}; seen {:?}; {}",
                        tally.seen,
                        tally.failures()
                    )
                })
            };
            if let Some(message) = late {
                self.stop.store(true, Ordering::SeqCst);
                panic!("{message}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_alternating_between_nodes_works_and_sso_and_refresh_cross_them() {
    let Some(cluster) = shared() else { return };
    let url = cluster.create_database("multinode_sign_in").unwrap();
    let alice = seed_alice(&url).await;
    let d = Deployment::start(&url, None).await;

    // Every request of the browser, and of the app's back end, goes to the other node
    // than the one before.
    let browser_route = d.route();
    let browser = d.browser(&browser_route);
    let rp = d.rp(&d.route()).await;
    let start = rp.start(&[]);
    let back = password_login(&d, &browser, &start, "alice", PASSWORD).await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .expect("the code is redeemed");
    let [to_a, to_b] = browser_route.opened();
    assert!(
        to_a >= 2 && to_b >= 2 && to_a.abs_diff(to_b) <= 1,
        "the browser alternated: {to_a} requests to A, {to_b} to B"
    );
    // The ID token verifies against either node's JWKS.
    let id_token = tokens.id_token().expect("an ID token");
    let rps = [d.rp(&d.pinned(A)).await, d.rp(&d.pinned(B)).await];
    for (node, pinned) in rps.iter().enumerate() {
        let claims = id_token
            .claims(&pinned.client.id_token_verifier(), &start.nonce)
            .unwrap_or_else(|e| panic!("against node {}'s JWKS: {e}", NAMES[node]));
        assert_eq!(claims.subject().as_str(), alice.id);
    }

    // SSO made on A is honoured by B: a code without a page.
    let route = d.pinned(A);
    let browser = d.browser(&route);
    let start = rps[A].start(&[]);
    let back = password_login(&d, &browser, &start, "alice", PASSWORD).await;
    let from_a = rps[A]
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .expect("A redeems its code");
    route.pin(B);
    let silent = rps[B].start(&[("prompt", "none")]);
    let back = browser
        .follow(&d, browser.get(silent.url.as_str()).await)
        .await
        .expect_err("B returns to the app without a page");
    assert!(
        query(&back).contains_key("code"),
        "B honours A's session: {back}"
    );
    let from_b = rps[B]
        .exchange(&query(&back)["code"], silent.verifier)
        .await
        .expect("B redeems its code");
    let claims = from_b
        .id_token()
        .unwrap()
        .claims(&rps[A].client.id_token_verifier(), &silent.nonce)
        .expect("B's ID token verifies against A's JWKS");
    assert_eq!(claims.subject().as_str(), alice.id);

    // A refresh token issued by A rotates on B; presented to A again it is a reuse,
    // which ends the family on B too.
    let r1 = from_a.refresh_token().expect("A issues a refresh token");
    let rotated = rps[B]
        .client
        .exchange_refresh_token(r1)
        .unwrap()
        .request_async(&rps[B].http)
        .await
        .expect("B rotates A's refresh token");
    let r2 = rotated.refresh_token().expect("a new refresh token");
    assert_ne!(r1.secret(), r2.secret());
    let refresh = |node: usize, token: String| {
        let http = d.client(&d.pinned(node));
        async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", &token)];
            token_call(&http, &form).await.unwrap()
        }
    };
    let again = refresh(A, r1.secret().clone()).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{again:?}");
    assert_eq!(again.json()["error"], "invalid_grant");
    assert!(
        again.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("already been used"),
        "refused as a reuse: {again:?}"
    );
    let after = refresh(B, r2.secret().clone()).await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST, "{after:?}");
    assert!(
        after.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "the reuse revoked the family: {after:?}"
    );
    d.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_first_federated_sign_ins_of_one_identity_over_two_nodes_make_one_account() {
    let Some(cluster) = shared() else { return };
    let url = cluster.create_database("multinode_federated").unwrap();
    let google = Standin::start(
        StandinConfig::new(Kind::Oidc, "usher-google", "google-secret").with_user(ada()),
    )
    .await
    .unwrap();
    let d = Deployment::start(&url, Some(&google)).await;
    let rp = Arc::new(Rp::discover_with(&d, d.client(&d.route()), "fed", Some(FED_SECRET)).await);

    // Fifty browsers, each alternating between the nodes, brought to the point of
    // returning from Google; half will return to A, half to B.
    let mut ready = Vec::new();
    for i in 0..50 {
        let route = d.route();
        let browser = d.browser(&route);
        let start = rp.start(&[]);
        let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
            .await
            .expect("Google's consent page");
        assert!(consent.body.contains("name=\"decision\""), "{consent:?}");
        let to_usher = decide(&browser, &consent, "g-1001", "authorize").await;
        route.pin(i % 2);
        ready.push((browser, to_usher, start));
    }
    // All return at once.
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(browser, to_usher, start)| {
            let rp = rp.clone();
            tokio::spawn(async move {
                let back = follow_all(&browser, to_usher)
                    .await
                    .map(|page| format!("a page instead of the app: {page:?}"))
                    .expect_err("signed in");
                let tokens = rp
                    .exchange(&query(&back)["code"], start.verifier)
                    .await
                    .expect("the code is redeemed");
                let claims = tokens
                    .id_token()
                    .expect("an ID token")
                    .claims(&rp.client.id_token_verifier(), &start.nonce)
                    .expect("a valid ID token")
                    .clone();
                claims.subject().to_string()
            })
        })
        .collect();
    let mut subjects = Vec::new();
    for task in tasks {
        subjects.push(task.await.expect("a sign-in succeeded"));
    }
    assert_eq!(subjects.len(), 50);
    let store = d.store().await;
    let linked = store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .expect("the identity is linked");
    assert!(
        subjects.iter().all(|s| *s == linked),
        "every sign-in is the one account: {subjects:?}"
    );
    assert_eq!(store.user_count().await.unwrap(), 1, "exactly one account");
    d.assert_no_panics();
}

/// Sign in as Alice on `node` in a browser keeping its cookies in `jar`.
async fn sso_session(d: &Deployment, node: usize, jar: &Arc<reqwest::cookie::Jar>) {
    let browser = d.browser_in(&d.pinned(node), jar);
    let rp = d.rp(&d.pinned(node)).await;
    let start = rp.start(&[]);
    let back = password_login(d, &browser, &start, "alice", PASSWORD).await;
    assert!(query(&back).contains_key("code"), "{back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_it_acknowledged() {
    let Some(cluster) = shared() else { return };
    let url = cluster.create_database("multinode_kill").unwrap();
    seed_alice(&url).await;
    let mut d = Deployment::start(&url, None).await;
    // The code workers share one SSO session; the account workers one SCIM token.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    sso_session(&d, A, &jar).await;
    let bearer = Arc::new(api_token(&d.client(&d.pinned(A))).await);
    let rp = Arc::new(d.rp(&d.pinned(A)).await);
    let load = Arc::new(Load::default());

    // Phase 0: both nodes up; 1: A killed; 2: A back. A transport error is expected
    // only of A, and only around phase 1; any other answer than success is a failure.
    let mut workers = Vec::new();
    for w in 0..2 {
        let route = d.route();
        let (browser, api) = (d.browser_in(&route, &jar).http, d.client(&route));
        let (load, rp) = (load.clone(), rp.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..ROUNDS {
                if load.stopped() {
                    return;
                }
                tokio::time::sleep(PAUSE).await;
                // Authorized on one node, redeemed on either: every pair in turn.
                let (x, y) = ((w + i) % 2, (w + i / 2) % 2);
                let began = load.phase();
                let start = rp.start(&[("prompt", "none")]);
                route.pin(x);
                let code = match authorize(&browser, start.url.as_str()).await {
                    Ok(Ok(q)) if q.contains_key("code") => q["code"].clone(),
                    Ok(Ok(q)) => {
                        load.fail(format!("authorize on {}: {q:?}", NAMES[x]));
                        continue;
                    }
                    Ok(Err(answer)) => {
                        load.fail(format!("authorize on {}: {answer:?}", NAMES[x]));
                        continue;
                    }
                    Err(e) => {
                        if x != A || (began != 1 && load.phase() != 1) {
                            load.fail(format!("authorize on {}: {e}", NAMES[x]));
                        }
                        continue;
                    }
                };
                route.pin(y);
                let verifier = start.verifier.secret().clone();
                match redeem(&api, &code, &verifier).await {
                    Ok(answer) if answer.status == StatusCode::OK => {
                        load.note("code redeemed", y, load.over(began));
                        load.tally.lock().unwrap().codes.push((code, verifier));
                    }
                    Ok(answer) => load.fail(format!("redeem on {}: {answer:?}", NAMES[y])),
                    Err(e) => {
                        if y != A || (began != 1 && load.phase() != 1) {
                            load.fail(format!("redeem on {}: {e}", NAMES[y]));
                        }
                    }
                }
            }
        }));
    }
    for w in 0..2 {
        let route = d.route();
        let api = d.client(&route);
        let (load, bearer) = (load.clone(), bearer.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..ROUNDS {
                if load.stopped() {
                    return;
                }
                tokio::time::sleep(PAUSE).await;
                let x = (w + i) % 2;
                let began = load.phase();
                let username = format!("load-{w}-{i}");
                route.pin(x);
                match scim_create(&api, &bearer, &username).await {
                    Ok(answer) if answer.status == StatusCode::CREATED => {
                        load.note("account created", x, load.over(began));
                        let id = answer.json()["id"].as_str().unwrap().to_string();
                        load.tally.lock().unwrap().accounts.push((id, username));
                    }
                    Ok(answer) => load.fail(format!("create on {}: {answer:?}", NAMES[x])),
                    Err(e) => {
                        if x != A || (began != 1 && load.phase() != 1) {
                            load.fail(format!("create on {}: {e}", NAMES[x]));
                        }
                    }
                }
            }
        }));
    }
    let both = [
        ("code redeemed", A),
        ("code redeemed", B),
        ("account created", A),
        ("account created", B),
    ];
    let limit = Duration::from_secs(20);
    load.wait_for(0, &both, 5, limit).await;
    load.set_phase(1);
    d.kill(A);
    // B keeps serving.
    load.wait_for(
        1,
        &[("code redeemed", B), ("account created", B)],
        10,
        limit,
    )
    .await;
    d.restart(A).await;
    load.set_phase(2);
    load.wait_for(2, &both, 5, limit).await;
    load.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let tally = std::mem::take(&mut *load.tally.lock().unwrap());
    assert!(
        tally.failures.is_empty(),
        "{}\nThe nodes logged:\n{}",
        tally.failures(),
        d.logged_errors()
    );
    let clients = [d.client(&d.pinned(A)), d.client(&d.pinned(B))];
    // Every acknowledged account exists, on both nodes.
    for (id, username) in &tally.accounts {
        for (node, http) in clients.iter().enumerate() {
            let answer = send(
                http.get(format!("{ISSUER}/scim/v2/Users/{id}"))
                    .bearer_auth(bearer.as_str()),
            )
            .await
            .unwrap();
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{username} on {}: {answer:?}",
                NAMES[node]
            );
            assert_eq!(answer.json()["userName"], username.as_str());
        }
    }
    // Every code redeemed is refused as used, on both nodes.
    for (code, verifier) in &tally.codes {
        for (node, http) in clients.iter().enumerate() {
            let answer = redeem(http, code, verifier).await.unwrap();
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
            assert!(
                answer.json()["error_description"]
                    .as_str()
                    .unwrap_or("")
                    .contains("already been used"),
                "a code redeemed before is refused as used on {}: {answer:?}",
                NAMES[node]
            );
        }
    }
    eprintln!(
        "multinode kill: {} accounts and {} codes acknowledged, {:?}",
        tally.accounts.len(),
        tally.codes.len(),
        tally.seen
    );
    d.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_under_load_is_answered_503_and_then_served_again() {
    // The database is stopped: a cluster of this test's own, not the shared one.
    let Some(_) = shared() else { return };
    let cluster = TempCluster::start().expect("a cluster of the test's own");
    let url = cluster.create_database("multinode_restart").unwrap();
    let mut d = Deployment::start(&url, None).await;
    let bearer = Arc::new(api_token(&d.client(&d.pinned(A))).await);
    let rp = Arc::new(d.rp(&d.pinned(A)).await);
    let load = Arc::new(Load::default());

    // Three kinds of request that need the store, each answering in its own style:
    // a page (the start of a sign-in), OAuth JSON (a code redeemed), SCIM JSON.
    const KINDS: [&str; 3] = ["authorize", "token", "scim"];
    let mut workers = Vec::new();
    for w in 0..3 {
        let route = d.route();
        let api = d.client(&route);
        let browser = d.browser(&route).http;
        let (load, rp, bearer) = (load.clone(), rp.clone(), bearer.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..ROUNDS {
                if load.stopped() {
                    return;
                }
                tokio::time::sleep(PAUSE).await;
                let (node, kind) = ((w + i) % 2, KINDS[(w + i / 2) % 3]);
                let began = load.phase();
                route.pin(node);
                let answer = match kind {
                    "authorize" => send(browser.get(rp.start(&[]).url.as_str())).await,
                    "token" => redeem(&api, "no-such-code", "no-such-verifier").await,
                    _ => scim_create(&api, &bearer, &format!("load-{w}-{i}")).await,
                };
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(e) => {
                        load.fail(format!("{kind} on {}: {e}", NAMES[node]));
                        continue;
                    }
                };
                let served = match kind {
                    "authorize" => {
                        answer.status == StatusCode::SEE_OTHER
                            && answer.headers[LOCATION]
                                .to_str()
                                .unwrap()
                                .contains("/login/")
                    }
                    "token" => {
                        answer.status == StatusCode::BAD_REQUEST
                            && answer.json()["error"] == "invalid_grant"
                    }
                    _ => answer.status == StatusCode::CREATED,
                };
                if served {
                    load.note(kind, node, load.over(began));
                } else if answer.is_unavailable() {
                    load.note("unavailable", node, load.over(began));
                } else {
                    load.fail(format!(
                        "{kind} on {} in phase {began}: {answer:?}",
                        NAMES[node]
                    ));
                }
            }
        }));
    }
    let limit = Duration::from_secs(20);
    let served: Vec<(&str, usize)> = KINDS
        .iter()
        .flat_map(|kind| [(*kind, A), (*kind, B)])
        .collect();
    load.wait_for(0, &served, 2, limit).await;
    load.set_phase(1);
    tokio::task::block_in_place(|| cluster.stop_now()).unwrap();
    load.wait_for(1, &[("unavailable", A), ("unavailable", B)], 6, limit)
        .await;
    assert!(
        d.alive(A) && d.alive(B),
        "both nodes outlive their database"
    );
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    load.set_phase(2);
    // Served again, without being restarted.
    load.wait_for(2, &served, 2, limit).await;
    load.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let tally = load.tally.lock().unwrap();
    assert!(
        tally.failures.is_empty(),
        "{}\nThe nodes logged:\n{}",
        tally.failures(),
        d.logged_errors()
    );
    assert!(d.alive(A) && d.alive(B));
    eprintln!("multinode database restart: {:?}", tally.seen);
    d.assert_no_panics();
}

/// The ids of the keys a node's JWKS publishes, in order, for comparing two nodes'.
async fn jwks(d: &Deployment, node: usize) -> Vec<String> {
    let answer = send(d.client(&d.pinned(node)).get(format!("{ISSUER}/jwks")))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let mut keys: Vec<String> = answer.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_on_an_empty_database_publish_the_same_keys() {
    let Some(cluster) = shared() else { return };
    let url = cluster.create_database("multinode_together").unwrap();
    let d = Deployment::start_together(&url).await;
    seed_alice(&url).await;
    let mut problems = Vec::new();
    let (keys_a, keys_b) = (jwks(&d, A).await, jwks(&d, B).await);
    if keys_a != keys_b {
        problems.push(format!(
            "the nodes publish different JWKS: A {keys_a:?}, B {keys_b:?}"
        ));
    }
    let rps = [d.rp(&d.pinned(A)).await, d.rp(&d.pinned(B)).await];
    for (signer, other) in [(A, B), (B, A)] {
        let browser = d.browser(&d.pinned(signer));
        let start = rps[signer].start(&[]);
        let back = password_login(&d, &browser, &start, "alice", PASSWORD).await;
        let tokens = rps[signer]
            .exchange(&query(&back)["code"], start.verifier)
            .await
            .expect("the code is redeemed");
        let id_token = tokens.id_token().expect("an ID token");
        if let Err(e) = id_token.claims(&rps[other].client.id_token_verifier(), &start.nonce) {
            problems.push(format!(
                "an ID token of node {} does not verify against node {}'s JWKS: {e}",
                NAMES[signer], NAMES[other]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    d.assert_no_panics();
}
