//! Transport limits against real sockets: a client trickling its headers is cut off
//! while others are served, clients beyond `max_connections` wait their turn instead
//! of being refused, a body that never arrives is answered 408, requests beyond
//! `max_in_flight` are answered 503 at once, and shutdown lets a running request
//! finish but not past its grace. Timeouts are configured at a second or two so every
//! test stays short.

use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default test config with a `server:` block.
fn with_server(block: &str) -> String {
    format!("{BASE_CONFIG}server:\n{block}")
}

/// A client that opens a new connection per request, so no kept-alive connection of
/// its own takes a slot of the server's.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn connect(usher: &Usher) -> TcpStream {
    TcpStream::connect(usher.running.addr).await.unwrap()
}

/// Read until the server closes the connection (or 10 s pass); what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_while_others_are_served() {
    let usher = Usher::start(&with_server("  header_read_timeout_seconds: 1\n")).await;
    let slow = connect(&usher).await;
    let (mut reader, mut writer) = slow.into_split();
    let started = Instant::now();
    // One byte every 100 ms: the headers would take over 6 s to finish.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Padding: {}\r\n\r\n",
        usher.running.addr,
        "a".repeat(40)
    );
    let trickle = tokio::spawn(async move {
        for byte in request.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    });
    let closed = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = reader.read_to_end(&mut got).await;
        (started.elapsed(), got)
    });

    // Meanwhile another client is served: the health check and a sign-in page.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = fresh_client();
    let health = http.get(usher.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let page = browser
        .follow(&usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"password\""), "{page:?}");

    let (after, got) = tokio::time::timeout(Duration::from_secs(4), closed)
        .await
        .expect("the server closes the trickling connection")
        .unwrap();
    assert!(
        after < Duration::from_millis(2500),
        "closed after {after:?}"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "the trickled request was never answered as if it had finished"
    );
    trickle.abort();
}

#[tokio::test]
async fn clients_beyond_max_connections_wait_for_a_free_slot_rather_than_fail() {
    let usher = Usher::start(&with_server(
        "  max_connections: 2\n  header_read_timeout_seconds: 2\n",
    ))
    .await;
    let hold_a = connect(&usher).await;
    let _hold_b = connect(&usher).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let http = fresh_client();
    let url = usher.url("/healthz");
    let started = Instant::now();
    let waiting = tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "both slots are taken: the third waits"
    );

    // One idle client leaves; the waiting one is served in its place, well before the
    // header timeout would have freed a slot.
    drop(hold_a);
    let status = tokio::time::timeout(Duration::from_millis(1000), waiting)
        .await
        .expect("served once a slot frees")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(1900));
}

#[tokio::test]
async fn idle_connections_cannot_hold_every_slot_past_the_header_timeout() {
    let usher = Usher::start(&with_server(
        "  max_connections: 2\n  header_read_timeout_seconds: 1\n",
    ))
    .await;
    // Two connections that never send a byte and never leave.
    let _idle: Vec<TcpStream> = vec![connect(&usher).await, connect(&usher).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let status = fresh_client()
        .get(usher.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(3000),
        "served when the idle ones timed out, after {waited:?}"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408_in_the_routes_style() {
    let usher = Usher::start(&with_server("  request_timeout_seconds: 1\n")).await;
    // A browser form: the timeout comes back as a page.
    let mut page = connect(&usher).await;
    page.write_all(
        b"POST /login/abc/password HTTP/1.1\r\nHost: usher\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf=",
    )
    .await
    .unwrap();
    // The token endpoint: the timeout comes back as OAuth JSON.
    let mut token = connect(&usher).await;
    token
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: usher\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let page = read_to_close(&mut page).await;
    let token = read_to_close(&mut token).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(page.starts_with("HTTP/1.1 408"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    assert!(page.contains("did not arrive in time"), "{page}");
    assert!(token.starts_with("HTTP/1.1 408"), "{token}");
    assert!(token.contains("\"error\":\"invalid_request\""), "{token}");
}

#[tokio::test]
async fn requests_beyond_max_in_flight_are_refused_at_once_with_503() {
    let usher = Usher::start(&with_server(
        "  max_in_flight: 1\n  request_timeout_seconds: 2\n",
    ))
    .await;
    // This request holds the only slot while its body does not come.
    let mut stuck = connect(&usher).await;
    stuck
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: usher\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\n",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let http = fresh_client();
    let started = Instant::now();
    let busy = http.get(usher.url("/healthz")).send().await.unwrap();
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "not queued"
    );
    let page = http.get(usher.url("/login/abc")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().await.unwrap().contains("Usher is busy"));

    // Once the stuck request times out, the slot is free again.
    let answer = read_to_close(&mut stuck).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let ok = http.get(usher.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn shutdown_lets_a_running_request_finish_and_then_stops_accepting() {
    let usher = Usher::start(&with_server("  shutdown_grace_seconds: 5\n")).await;
    let addr = usher.running.addr;
    let mut running = connect(&usher).await;
    let body = "grant_type=authorization_code&code=nothing";
    running
        .write_all(
            format!(
                "POST /token HTTP/1.1\r\nHost: usher\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let Usher {
        running: server,
        dir: _dir,
        ..
    } = usher;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "a request is still running");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connection once shutdown began"
    );

    // The request in flight still gets its answer.
    running.write_all(body.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut running).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(answer.contains("invalid_"), "{answer}");
    tokio::time::timeout(Duration::from_secs(2), stopping)
        .await
        .expect("stopped once the last request finished")
        .unwrap();
}

#[tokio::test]
async fn shutdown_cuts_requests_that_outlive_the_grace() {
    let usher = Usher::start(&with_server("  shutdown_grace_seconds: 1\n")).await;
    let mut stuck = connect(&usher).await;
    stuck
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: usher\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\n",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(4), usher.running.stop())
        .await
        .expect("the grace bounds shutdown");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "waited for the grace: {took:?}"
    );
    let answer = read_to_close(&mut stuck).await;
    assert!(answer.is_empty(), "the connection was closed: {answer}");
}

/// A flood of password posts (here: posts whose bodies hold their slot, as Argon2id
/// would) as large as the whole in-flight budget fills only the password forms' half of
/// it: `/token` and the pages are still served, and the posts past that half are
/// refused at once.
#[tokio::test]
async fn a_password_flood_cannot_take_the_slots_token_needs() {
    let usher = Usher::start(&with_server(
        "  max_in_flight: 4\n  request_timeout_seconds: 2\n",
    ))
    .await;
    let mut flood = Vec::new();
    for _ in 0..4 {
        let mut stuck = connect(&usher).await;
        stuck
            .write_all(
                b"POST /login/abc/password HTTP/1.1\r\nHost: usher\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf=",
            )
            .await
            .unwrap();
        flood.push(stuck);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let http = fresh_client();
    let started = Instant::now();
    // The token endpoint answers (an OAuth error, not "busy"), and so do the pages.
    let token = http
        .post(usher.url("/token"))
        .form(&[("grant_type", "authorization_code"), ("code", "nope")])
        .send()
        .await
        .unwrap();
    assert_ne!(token.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(token.text().await.unwrap().contains("\"error\""));
    let health = http.get(usher.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served, not queued"
    );
    // Half the budget (2) held the flood; the other two posts were refused at once.
    let mut refused = 0;
    for mut stuck in flood {
        let answer = read_to_close(&mut stuck).await;
        if answer.starts_with("HTTP/1.1 503") {
            refused += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
    assert_eq!(refused, 2);
}
