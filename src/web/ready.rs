//! `/readyz`: whether this node can serve requests now, for a load balancer or an
//! orchestrator to route by. `/healthz` is liveness only (the process answers); this
//! asks the store: an embedded one that opened is ready, a database must answer and
//! have this binary's schema.
//!
//! The answer is kept for [`FRESH`] and checks never overlap: however hard `/readyz` is
//! hammered, a node asks its database at most once a second, over one pooled
//! connection, and callers that arrive during a check wait for its answer instead of
//! starting their own. A check is bounded by [`CHECK_TIMEOUT`], so a database that
//! accepts connections but never answers reads as unreachable rather than hanging
//! every probe.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::store::{Store, StoreError};

/// How long an answer is reused.
pub const FRESH: Duration = Duration::from_secs(1);

/// How long one check may take before the store counts as unreachable.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The last answer, and the lock that keeps checks from overlapping.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<Checked>>,
}

#[derive(Clone)]
struct Checked {
    at: Instant,
    /// `Err` holds the short reason `/readyz` gives.
    answer: Result<(), &'static str>,
}

impl Readiness {
    /// Whether the store is ready, asked at most once per [`FRESH`].
    pub async fn check(&self, store: &dyn Store) -> Result<(), &'static str> {
        let mut last = self.last.lock().await;
        if let Some(c) = last.as_ref().filter(|c| c.at.elapsed() < FRESH) {
            return c.answer;
        }
        let answer = match tokio::time::timeout(CHECK_TIMEOUT, store.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ))),
        };
        let was_ready = last.as_ref().map(|c| c.answer.is_ok());
        let answer = match answer {
            Ok(()) => {
                if was_ready == Some(false) {
                    tracing::info!("ready again: the store answers");
                }
                Ok(())
            }
            Err(e) => {
                let reason = reason(&e);
                // Said once per change, not once per probe. The detail is the driver's
                // message: an address at most, never the connection URL or its password.
                if was_ready != Some(false) {
                    tracing::warn!(error = %e, "not ready: {reason}");
                }
                Err(reason)
            }
        };
        *last = Some(Checked {
            at: Instant::now(),
            answer,
        });
        answer
    }
}

/// The short, secret-free reason for a store error.
fn reason(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(detail)
            if detail.starts_with(crate::store::postgres::MIGRATIONS_PENDING) =>
        {
            "schema migrations pending"
        }
        StoreError::Unavailable(_) => "database unreachable",
        _ => "store error",
    }
}

/// `GET /readyz`: 200 `ready`, or 503 `not ready: <reason>`.
pub async fn readyz(State(state): State<Shared>) -> Response {
    let (status, body) = match state.readiness.check(state.store.as_ref()).await {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short_and_carry_no_detail() {
        let pending = StoreError::Unavailable(format!(
            "{}: the database is at version 0, this node needs 1",
            crate::store::postgres::MIGRATIONS_PENDING
        ));
        assert_eq!(reason(&pending), "schema migrations pending");
        let down = StoreError::Unavailable(
            "error connecting to server: postgres://usher:s3cret@db refused".into(),
        );
        assert_eq!(reason(&down), "database unreachable");
        assert_eq!(
            reason(&StoreError::Backend("relation x".into())),
            "store error"
        );
    }
}
