//! Running Usher as a fleet: `/readyz` follows the store (a PostgreSQL server stopped
//! and started under a running node), the pool and statement metrics of a database
//! store, request ids on answers, error pages and log lines, and JSON logs from the
//! real binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::StatusCode;
use tokio::net::TcpListener;
use usher::store::postgres::{cluster, PgSettings, PgStore};
use usher::store::Store;

/// Any 32 bytes, base64: a PostgreSQL store needs a credentials key every node shares.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = http().get(url).send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

fn request_id(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .expect("every answer carries X-Request-Id")
        .to_str()
        .unwrap()
        .to_string()
}

/// The id an error page shows.
fn page_request_id(body: &str) -> String {
    let start = body
        .find("Request ID: <code>")
        .expect("the page shows a request id")
        + 18;
    body[start..start + body[start..].find('<').unwrap()].to_string()
}

#[tokio::test]
async fn readyz_on_sled_and_request_ids_on_answers_and_error_pages() {
    let usher = Usher::start(&format!("{BASE_CONFIG}metrics: {{ enabled: true }}\n")).await;
    let (status, headers, body) = get(&usher.url("/readyz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));
    assert_eq!(headers["cache-control"], "no-store");
    let (status, _, body) = get(&usher.url("/healthz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    // An error page shows the id its answer carries (and its log lines: see the JSON
    // test below).
    let (status, headers, body) = get(&usher.url("/login/no-such-flow")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let id = request_id(&headers);
    assert_eq!(page_request_id(&body), id);

    // A proxy's short, plain id is kept; anything else is replaced.
    let sent = |id: String| {
        let url = usher.url("/login/no-such-flow");
        async move {
            let res = http()
                .get(url)
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            let header = request_id(res.headers());
            (header, page_request_id(&res.text().await.unwrap()))
        }
    };
    let (header, shown) = sent("lb-7f3a.2_x".into()).await;
    assert_eq!(
        (header.as_str(), shown.as_str()),
        ("lb-7f3a.2_x", "lb-7f3a.2_x")
    );
    for bad in ["a".repeat(65), "<b>hi</b>".into(), "a b".into()] {
        let (header, shown) = sent(bad.clone()).await;
        assert_ne!(header, bad);
        assert_eq!(header, shown);
        assert!(
            header.len() <= 64 && !header.contains(['<', ' ']),
            "{header}"
        );
    }

    // An embedded store has no pool: no database series, rather than zeros.
    let (_, _, metrics) = get(&usher.url("/metrics")).await;
    assert!(metrics.contains("usher_flows_active"), "{metrics}");
    assert!(!metrics.contains("usher_db_"), "{metrics}");

    // The separate metrics listener answers the probes too.
    use tower::ServiceExt;
    let router = usher::web::metrics::router(usher.running.state.clone());
    let req = axum::http::Request::get("/readyz")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Poll `/readyz` until it answers `want`; the last answer.
async fn readyz_until(url: &str, want: StatusCode, within: Duration) -> (StatusCode, String) {
    let deadline = Instant::now() + within;
    loop {
        let (status, _, body) = get(url).await;
        if status == want || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_follows_a_database_that_stops_and_starts_again() {
    let Some(cluster) = tokio::task::spawn_blocking(cluster::own).await.unwrap() else {
        return;
    };
    let mut settings = PgSettings::new(cluster.url("postgres"));
    settings.max_connections = 4;
    settings.acquire_timeout = Duration::from_secs(2);
    let pg = PgStore::open(&settings).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(pg.clone());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    let config = BASE_CONFIG.replace("{issuer}", &issuer).replace(
        "security:\n",
        &format!("security:\n  credentials_key: {KEY}\n"),
    );
    let config = format!(
        "{config}store:\n  postgres:\n    url: \"{}\"\n    pool: {{ max_connections: 4 }}\nmetrics: {{ enabled: true }}\n",
        settings.url
    );
    std::fs::write(&path, config).unwrap();
    let loaded = usher::config::load_with_env(&path, &|_| None).unwrap_or_else(|d| panic!("{d}"));
    let state = usher::server::state_with_store(loaded.config, store)
        .await
        .unwrap();
    let running = usher::server::spawn(state, listener).unwrap();
    let url = |p: &str| format!("{issuer}{p}");

    let (status, _, body) = get(&url("/readyz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));

    // Hammered, the check still asks the database about once a second: the answer is
    // reused, and callers during a check wait for it instead of asking again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = pg.counts().statements;
    let probes: Vec<_> = (0..50)
        .map(|_| {
            let probe = url("/readyz");
            tokio::spawn(async move { get(&probe).await })
        })
        .collect();
    for p in probes {
        assert_eq!(p.await.unwrap().0, StatusCode::OK);
    }
    let asked = pg.counts().statements - before;
    assert!(asked <= 2, "50 probes ran {asked} statements");

    // The pool and statement figures are in the scrape.
    let (_, _, metrics) = get(&url("/metrics")).await;
    assert_eq!(metric(&metrics, "usher_db_pool_max_connections"), Some(4.0));
    assert!(metric(&metrics, "usher_db_pool_open_connections").unwrap() >= 1.0);
    assert!(metric(&metrics, "usher_db_pool_idle_connections").is_some());
    assert_eq!(
        metric(&metrics, "usher_db_pool_waiting_requests"),
        Some(0.0)
    );
    let statements = metric(&metrics, "usher_db_statements_total").unwrap();
    assert!(statements >= 1.0, "{metrics}");
    assert!(metric(&metrics, "usher_db_round_trips_total").unwrap() >= statements);
    assert_eq!(
        metric(&metrics, "usher_db_unavailable_responses_total"),
        Some(0.0)
    );

    // The database goes away: not ready, with a short reason and no URL…
    tokio::task::block_in_place(|| cluster.stop_now()).unwrap();
    let (status, body) = readyz_until(
        &url("/readyz"),
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable"
        )
    );

    // …a page is a 503 to retry, showing the id its answer carries…
    let (status, headers, body) = get(&url("/login/no-such-flow")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(page_request_id(&body), request_id(&headers));
    assert!(body.contains("briefly unavailable"), "{body}");

    // …and so is the token endpoint, in OAuth JSON naming the same id.
    let res = http()
        .post(url("/token"))
        .basic_auth("thrift", Some(SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let id = request_id(res.headers());
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"], "temporarily_unavailable");
    assert!(
        json["error_description"].as_str().unwrap().contains(&id),
        "{json}"
    );
    let (_, _, metrics) = get(&url("/metrics")).await;
    assert_eq!(
        metric(&metrics, "usher_db_unavailable_responses_total"),
        Some(2.0),
        "{metrics}"
    );

    // The database comes back: ready again, without restarting Usher.
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    let (status, body) =
        readyz_until(&url("/readyz"), StatusCode::OK, Duration::from_secs(20)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));
    let (status, _, _) = get(&url("/login/no-such-flow")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    running.stop().await;
}

/// `usher serve` of a config in a temporary folder, its standard output and error
/// collected line by line.
struct Served {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(log_yaml: &str, env_format: Option<&str>) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "issuer: \"http://127.0.0.1:1\"\nlisten: \"127.0.0.1:0\"\n{log_yaml}apps:\n  thrift:\n    name: Thrift\n    client_id: thrift\n    client_secret: {SECRET}\n    redirect_uris: [\"{REDIRECT}\"]\n    sign_in:\n      steps: [[password]]\n"
        );
        std::fs::write(dir.path().join("usher.yaml"), config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_usher"));
        command
            .args(["serve", "--config"])
            .arg(dir.path().join("usher.yaml"))
            .env("USHER_LOG", "info")
            .env_remove("USHER_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(format) = env_format {
            command.env("USHER_LOG_FORMAT", format);
        }
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Served {
            child,
            lines,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait for a line that satisfies `find`.
    async fn wait_for<T>(&self, find: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(found) = self.lines().iter().find_map(|l| find(l)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no such line:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, and wait for the process to exit.
    async fn stop(mut self) -> Vec<String> {
        // SAFETY: kill sends a signal to our own child, by its id.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "usher serve did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The readers drain the pipes once the process has closed them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.lines()
    }
}

/// With JSON logs, every line is a JSON object, and the lines of a request that failed
/// carry the id its error page and `X-Request-Id` show.
async fn json_lines_carry_the_request_id(served: Served) {
    let addr = served
        .wait_for(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "Usher is serving").then(|| v["addr"].as_str().unwrap().to_string())
        })
        .await;
    let (status, headers, body) = get(&format!("http://{addr}/login/no-such-flow")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let id = request_id(&headers);
    assert_eq!(page_request_id(&body), id);
    served
        .wait_for(|l| l.contains("request refused").then_some(()))
        .await;
    let lines = served.stop().await;

    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for v in &parsed {
        assert!(v.is_object() && v["timestamp"].is_string() && v["level"].is_string());
    }
    let of_request: Vec<&serde_json::Value> = parsed
        .iter()
        .filter(|v| v["request_id"] == id.as_str())
        .collect();
    assert!(
        of_request.iter().any(|v| v["message"] == "request refused"),
        "{lines:#?}"
    );
    // Every line about a request names one.
    for v in &parsed {
        if v["message"] == "request refused" {
            assert_eq!(v["request_id"], id.as_str(), "{v}");
        }
    }
    assert!(parsed.iter().any(|v| v["message"] == "shutting down"));
}

#[tokio::test]
async fn json_logs_from_the_config() {
    json_lines_carry_the_request_id(Served::start("log: { format: json }\n", None)).await;
}

#[tokio::test]
async fn json_logs_from_the_environment_win_over_the_config() {
    json_lines_carry_the_request_id(Served::start("log: { format: text }\n", Some("json"))).await;
}

#[tokio::test]
async fn text_logs_carry_the_request_id_too_and_a_bad_format_variable_stops_serve() {
    let served = Served::start("", None);
    let addr = served
        .wait_for(|l| {
            let rest = l.strip_prefix("Usher is serving ")?;
            Some(rest[rest.find(" on http://")? + 11..].to_string())
        })
        .await;
    let (_, headers, _) = get(&format!("http://{addr}/login/no-such-flow")).await;
    let id = request_id(&headers);
    let line = served
        .wait_for(|l| l.contains("request refused").then(|| l.to_string()))
        .await;
    assert!(line.contains(&format!("request_id={id}")), "{line}");
    served.stop().await;

    let out = Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(["serve", "--config", "/nonexistent"])
        .env("USHER_LOG_FORMAT", "jsno")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("USHER_LOG_FORMAT"), "{stderr}");
}
