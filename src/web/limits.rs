//! Per-request limits: how many requests run at once, how long one may take, and how
//! large its body may be. A request over a limit is answered, never dropped: the
//! refusal is a [`WebError`], so `render_errors` writes it in the route's style (a page
//! for browsers, OAuth JSON for `/token`, a SCIM error document for SCIM).
//!
//! The body is read here, under the request deadline and the size limit, before any
//! handler sees it: a client trickling a body slowly gets 408, one sending too much
//! gets 413 as soon as its `Content-Length` (or the bytes so far) passes the limit, and
//! handlers read an in-memory body. Forms are small, so browser routes and the OAuth
//! endpoints get `server.max_form_bytes`; the SCIM and admin JSON APIs get the larger
//! `server.max_json_bytes`. Connection-level limits live in `crate::transport`.
//!
//! The forms that check a password with Argon2id (sign-in, sign-up, the linking proof,
//! My Account's password change) draw on a budget of their own, half of
//! `server.max_in_flight`: a flood of password posts, each holding its slot for the
//! tens of milliseconds Argon2id takes, is refused with 503 once that half is full and
//! never takes the slots `/token`, SSO sign-ins and the pages need.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::WebError;
use crate::config::ServerSettings;

/// The limits of one router, fixed when it is built (they change on restart).
pub(crate) struct Limits {
    in_flight: Arc<Semaphore>,
    /// The budget of the password-checking forms, apart from everything else's.
    password_checks: Arc<Semaphore>,
    request_timeout: Duration,
    max_form_bytes: usize,
    max_json_bytes: usize,
    /// The issuer's path, stripped before routes are matched to a body limit.
    base: String,
}

impl Limits {
    pub(crate) fn new(settings: &ServerSettings, base: &str) -> Arc<Limits> {
        Arc::new(Limits {
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            password_checks: Arc::new(Semaphore::new((settings.max_in_flight / 2).max(1))),
            request_timeout: settings.request_timeout,
            max_form_bytes: settings.max_form_bytes,
            max_json_bytes: settings.max_json_bytes,
            base: base.to_string(),
        })
    }

    /// The budget a request draws on: the password-checking forms have their own.
    fn budget(&self, method: &axum::http::Method, path: &str) -> &Arc<Semaphore> {
        let path = path.strip_prefix(&self.base).unwrap_or(path);
        if method == axum::http::Method::POST && checks_a_password(path) {
            &self.password_checks
        } else {
            &self.in_flight
        }
    }

    /// The JSON APIs take documents; everything else takes a form or nothing.
    fn body_limit(&self, path: &str) -> usize {
        let path = path.strip_prefix(&self.base).unwrap_or(path);
        if path.starts_with("/scim/") || path.starts_with("/admin/") {
            self.max_json_bytes
        } else {
            self.max_form_bytes
        }
    }
}

/// Middleware: admit the request if a slot is free, read its body within the limit
/// and the deadline, and answer 503 if the handler outlives the deadline.
pub(crate) async fn enforce(
    State(limits): State<Arc<Limits>>,
    req: Request,
    next: Next,
) -> Response {
    // Refusing at once beats queueing: a queued request would wait out its client's
    // patience and then do the work anyway.
    let budget = limits.budget(req.method(), req.uri().path());
    let Ok(_slot) = budget.clone().try_acquire_owned() else {
        return busy().into_response();
    };
    let deadline = Instant::now() + limits.request_timeout;
    let limit = limits.body_limit(req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit).into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => return body_timeout().into_response(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limit).into_response()
        }
        Ok(Err(_)) => {
            return WebError::bad_request("The request body could not be read.").into_response()
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(
                seconds = limits.request_timeout.as_secs(),
                "a request outlived server.request_timeout_seconds"
            );
            handler_timeout().into_response()
        }
    }
}

/// Routes whose POST may run Argon2id.
fn checks_a_password(path: &str) -> bool {
    let sign_in = path
        .strip_prefix("/login/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, form)| form == "password" || form == "federation");
    sign_in || path.starts_with("/signup/") || path == "/myaccount/password"
}

fn busy() -> WebError {
    WebError::page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Usher is busy",
        "Too many requests are being handled right now.",
    )
    .with_hint("Try again in a few seconds.")
}

fn too_large(limit: usize) -> WebError {
    WebError::page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "This request is too large",
        format!("The request body is larger than the {limit} bytes this address accepts."),
    )
}

fn body_timeout() -> WebError {
    WebError::page(
        StatusCode::REQUEST_TIMEOUT,
        "This request took too long",
        "The request body did not arrive in time.",
    )
    .with_hint("Check your connection and send the form again.")
}

fn handler_timeout() -> WebError {
    WebError::page(
        StatusCode::SERVICE_UNAVAILABLE,
        "This request took too long",
        "Usher could not answer this request in time.",
    )
    .with_hint("Try again in a moment.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_apis_get_the_larger_limit_under_the_issuer_path() {
        let settings = ServerSettings::default();
        let limits = Limits::new(&settings, "/idp");
        assert_eq!(
            limits.body_limit("/idp/scim/v2/Users"),
            settings.max_json_bytes
        );
        assert_eq!(
            limits.body_limit("/idp/admin/v1/users/x/reset-totp"),
            settings.max_json_bytes
        );
        assert_eq!(
            limits.body_limit("/idp/login/abc/password"),
            settings.max_form_bytes
        );
        assert_eq!(limits.body_limit("/idp/token"), settings.max_form_bytes);
    }

    #[test]
    fn only_the_password_checking_forms_draw_on_their_own_budget() {
        for path in [
            "/login/f1/password",
            "/login/f1/federation",
            "/signup/f1",
            "/myaccount/password",
        ] {
            assert!(checks_a_password(path), "{path}");
        }
        for path in [
            "/token",
            "/login/f1/totp",
            "/login/f1",
            "/myaccount/profile",
            "/authorize",
        ] {
            assert!(!checks_a_password(path), "{path}");
        }
    }
}
