//! A request id for every request: the first middleware gives the request a `tracing`
//! span with a `request_id` field, so every log line the request causes carries it, and
//! the answer carries it in `X-Request-Id`. An error page or error body shows the same
//! id (`AppState::error_response`), so what a user quotes is what the log holds.
//!
//! A reverse proxy's `X-Request-Id` is kept when it is short and plain (at most
//! [`MAX_LEN`] characters of letters, digits, `.`, `_` and `-`): the id then follows
//! the request across the proxy's logs too. Anything else is replaced by a fresh id,
//! so a client cannot put markup, line breaks or a novel into the logs through it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header the id arrives and leaves in.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest inbound id kept.
pub const MAX_LEN: usize = 64;

/// The id of the request being served, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id of `req`, or a fresh one when no middleware gave it one (a router
    /// driven without the middleware).
    pub fn of(req: &Request) -> String {
        req.extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(fresh)
    }
}

fn fresh() -> String {
    crate::crypto::random_token(9)
}

/// Whether an inbound id may be kept as it is.
pub fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Middleware: name the request, serve it inside its span, and return the id.
pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(fresh);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = next.run(req).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, value);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(acceptable("abc-123_X.y"));
        assert!(acceptable(&"a".repeat(MAX_LEN)));
        assert!(!acceptable(&"a".repeat(MAX_LEN + 1)));
        assert!(!acceptable(""));
        assert!(!acceptable("a b"));
        assert!(!acceptable("a\nb"));
        assert!(!acceptable("<script>"));
        assert!(!acceptable("ünï"));
    }

    #[test]
    fn fresh_ids_are_acceptable_themselves() {
        assert!(acceptable(&fresh()));
    }
}
