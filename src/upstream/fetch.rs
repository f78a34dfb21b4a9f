//! Reading an upstream's answer with a cap on its size and time: a provider that sends
//! megabytes, or never finishes, fails the one round trip that asked and costs no more
//! than the cap.

use std::time::Duration;

use serde_json::{Map, Value};

/// Why an upstream document could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("{url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} did not answer within {seconds} s")]
    TimedOut { url: String, seconds: u64 },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered more than {max} bytes")]
    TooLarge { url: String, max: usize },
    #[error("{url} answered a signed JWT (application/jwt), not JSON")]
    Jwt { url: String },
    #[error("{url} did not answer a JSON object ({reason})")]
    NotJson { url: String, reason: String },
}

/// GET `url` (with `bearer` as the access token, when given) and read a JSON object of
/// at most `max` bytes within `timeout`.
pub async fn json_object(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    max: usize,
    timeout: Duration,
) -> Result<Map<String, Value>, FetchError> {
    match json(http, url, bearer, max, timeout).await? {
        Value::Object(map) => Ok(map),
        _ => Err(FetchError::NotJson {
            url: url.to_string(),
            reason: "a JSON value that is not an object".into(),
        }),
    }
}

/// GET `url` and read any JSON value of at most `max` bytes within `timeout`.
pub async fn json(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    max: usize,
    timeout: Duration,
) -> Result<Value, FetchError> {
    let read = async {
        let mut req = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let mut res = req.send().await.map_err(|e| FetchError::Unreachable {
            url: url.to_string(),
            reason: without_url(e),
        })?;
        if !res.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: res.status().as_u16(),
            });
        }
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("application/jwt") {
            return Err(FetchError::Jwt {
                url: url.to_string(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            max,
        };
        if res
            .content_length()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| FetchError::Unreachable {
            url: url.to_string(),
            reason: without_url(e),
        })? {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => Ok(value),
            Err(e) => Err(FetchError::NotJson {
                url: url.to_string(),
                reason: format!("{} bytes of {}: {e}", body.len(), shown_type(&content_type)),
            }),
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::TimedOut {
            url: url.to_string(),
            seconds: timeout.as_secs(),
        }),
    }
}

fn shown_type(content_type: &str) -> String {
    match content_type.split(';').next().map(str::trim) {
        Some(t) if !t.is_empty() => t.chars().take(64).collect(),
        _ => "no declared type".into(),
    }
}

/// reqwest's error text names the URL again; the caller's message already does.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;

    /// A server answering each path in its own bad way.
    async fn server() -> String {
        let app = axum::Router::new()
            .route(
                "/ok",
                get(|| async { axum::Json(serde_json::json!({ "sub": "1" })) }),
            )
            .route(
                "/huge",
                get(|| async { ([(CONTENT_TYPE, "application/json")], "[1".repeat(1 << 20)) }),
            )
            .route(
                "/jwt",
                get(|| async { ([(CONTENT_TYPE, "application/jwt")], "eyJ.eyJ.sig") }),
            )
            .route(
                "/html",
                get(|| async { ([(CONTENT_TYPE, "text/html")], "<html></html>") }),
            )
            .route(
                "/slow",
                // Silent for good: the reader's own time limit is what is tested.
                get(|| async {
                    std::future::pending::<()>().await;
                    "{}"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// A raw server that answers every connection with a chunked body of 1 MiB, no
    /// `Content-Length` to warn the reader.
    async fn chunked_server() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
                    for _ in 0..64 {
                        if socket.write_all(chunk.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        format!("http://{addr}/unsized")
    }

    #[tokio::test]
    async fn every_bad_answer_is_refused_within_its_caps() {
        let base = server().await;
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let url = format!("{base}{path}");
            let http = http.clone();
            async move {
                json(
                    &http,
                    &url,
                    Some("t"),
                    64 * 1024,
                    Duration::from_millis(500),
                )
                .await
            }
        };
        assert_eq!(get("/ok").await.unwrap()["sub"], "1");
        assert!(matches!(
            get("/huge").await,
            Err(FetchError::TooLarge { max: 65536, .. })
        ));
        let unsized_url = chunked_server().await;
        let unsized_answer =
            json(&http, &unsized_url, None, 64 * 1024, Duration::from_secs(2)).await;
        assert!(
            matches!(unsized_answer, Err(FetchError::TooLarge { .. })),
            "{unsized_answer:?}"
        );
        assert!(matches!(get("/jwt").await, Err(FetchError::Jwt { .. })));
        assert!(matches!(
            get("/html").await,
            Err(FetchError::NotJson { .. })
        ));
        let started = std::time::Instant::now();
        assert!(matches!(
            get("/slow").await,
            Err(FetchError::TimedOut { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
