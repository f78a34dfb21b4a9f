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
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(FetchError::NotJson {
                url: url.to_string(),
                reason: "a JSON value that is not an object".into(),
            }),
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
