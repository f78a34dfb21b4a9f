//! The one place errors become HTTP. A handler returns `Result<Response, WebError>`;
//! the error says what went wrong, and the route it happened on decides how the client
//! hears it: browsers get an HTML page with a request id, the OAuth endpoints an RFC 6749
//! JSON body, SCIM an RFC 7644 error document. The log gets the internals under the
//! same request id.
//!
//! Pages need the templates of the running config, which a bare `IntoResponse` cannot
//! reach, so [`WebError::into_response`] parks the error in the response's extensions
//! and the [`render_errors`] middleware (which holds the state) turns it into the page
//! or JSON body the route calls for.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};

use super::pages::ErrorPage;
use super::request_id::RequestId;
use super::Shared;
use crate::account::AccountError;
use crate::oidc::{ErrorCode, OAuthError};
use crate::scim::{ScimError, MEDIA_TYPE};
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub enum WebError {
    /// Something the user can understand and maybe fix.
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
        hint: Option<String>,
        back_url: Option<String>,
    },
    /// A fault on our side; the client sees a generic answer.
    Internal(String),
    /// The store cannot be reached right now (a database restarting): 503, to be
    /// retried; the client sees a generic answer and a request id.
    Unavailable(String),
    /// A protocol error of the OAuth endpoints (`/token`, `/userinfo`, the admin API).
    OAuth {
        status: StatusCode,
        error: OAuthError,
        /// The `WWW-Authenticate` challenge of a 401 or 403.
        challenge: Option<HeaderValue>,
    },
    /// Refused for now (a throttle): the inner answer, with `Retry-After` seconds.
    RetryAfter { error: Box<WebError>, seconds: u64 },
    /// A SCIM error document.
    Scim {
        error: ScimError,
        challenge: Option<HeaderValue>,
    },
}

impl WebError {
    pub fn page(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        WebError::Page {
            status,
            title,
            message: message.into(),
            hint: None,
            back_url: None,
        }
    }

    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let WebError::Page { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::page(
            StatusCode::BAD_REQUEST,
            "Something is wrong with this request",
            message,
        )
    }

    /// The flow is gone, expired, or belongs to another browser.
    pub fn flow_lost() -> Self {
        Self::page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            "This sign-in link is no longer valid.",
        )
        .with_hint("Go back to the application and start signing in again.")
    }

    pub fn csrf() -> Self {
        Self::page(
            StatusCode::FORBIDDEN,
            "The form could not be accepted",
            "The form was missing its security token or it did not match this browser.",
        )
        .with_hint("Reload the page and try again. If you use several tabs, use the newest one.")
    }

    /// An OAuth error with the status RFC 6749 §5.2 (RFC 6750 §3.1 for bearer tokens)
    /// gives it.
    pub fn oauth(error: OAuthError) -> Self {
        let status = match error.code {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        WebError::OAuth {
            status,
            error,
            challenge: None,
        }
    }

    pub fn scim(error: ScimError) -> Self {
        WebError::Scim {
            error,
            challenge: None,
        }
    }

    /// Add a `WWW-Authenticate` challenge (OAuth and SCIM answers).
    pub fn with_challenge(mut self, value: HeaderValue) -> Self {
        match &mut self {
            WebError::OAuth { challenge, .. } | WebError::Scim { challenge, .. } => {
                *challenge = Some(value)
            }
            _ => {}
        }
        self
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => WebError::RetryAfter {
                error: Box::new(WebError::Unavailable(detail)),
                seconds: UNAVAILABLE_RETRY_SECONDS,
            },
            e => WebError::Internal(e.to_string()),
        }
    }
}

/// What a 503 for an unreachable store asks clients to wait before retrying.
const UNAVAILABLE_RETRY_SECONDS: u64 = 2;

impl From<minijinja::Error> for WebError {
    fn from(e: minijinja::Error) -> Self {
        WebError::Internal(format!("template: {e:#}"))
    }
}

impl From<tokio::task::JoinError> for WebError {
    fn from(e: tokio::task::JoinError) -> Self {
        WebError::Internal(format!("background task: {e}"))
    }
}

impl From<crate::signin::CoreError> for WebError {
    fn from(e: crate::signin::CoreError) -> Self {
        match e {
            crate::signin::CoreError::Store(e) => e.into(),
            e => WebError::Internal(e.to_string()),
        }
    }
}

impl From<AccountError> for WebError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Refused(message) => WebError::bad_request(message),
            AccountError::Store(e) => e.into(),
            AccountError::Internal(detail) => WebError::Internal(detail),
        }
    }
}

impl From<ScimError> for WebError {
    fn from(e: ScimError) -> Self {
        match e.unavailable() {
            Some(detail) => StoreError::Unavailable(detail.to_string()).into(),
            None => WebError::scim(e),
        }
    }
}

/// An error waiting for [`render_errors`] to be written out.
#[derive(Clone)]
struct Unrendered(WebError);

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut res = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        res.extensions_mut().insert(Unrendered(self));
        res
    }
}

/// The answer a route gives for an error: an HTML page, OAuth JSON or SCIM JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorStyle {
    Page,
    OAuth,
    Scim,
}

impl ErrorStyle {
    /// Machines call the token, revocation, introspection, userinfo, metrics and admin
    /// endpoints and SCIM; people see the rest in a browser.
    pub(crate) fn of(path: &str, base: &str) -> ErrorStyle {
        let path = path.strip_prefix(base).unwrap_or(path);
        if path.starts_with("/scim/") {
            ErrorStyle::Scim
        } else if path == "/token"
            || path == "/revoke"
            || path == "/introspect"
            || path == "/userinfo"
            || path.starts_with("/admin/")
            || path == "/metrics"
        {
            ErrorStyle::OAuth
        } else {
            ErrorStyle::Page
        }
    }
}

/// Middleware: write out the error a handler returned, in its route's style.
pub async fn render_errors(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let style = {
        let config = state.config();
        ErrorStyle::of(req.uri().path(), config.issuer.path().trim_end_matches('/'))
    };
    let request_id = RequestId::of(&req);
    let path = req.uri().path().to_string();
    let mut res = next.run(req).await;
    match res.extensions_mut().remove::<Unrendered>() {
        Some(Unrendered(error)) => state.error_response(error, style, &request_id),
        None if style == ErrorStyle::Scim && is_bare_error(&res) => scim_for_bare(res, &path),
        None => res,
    }
}

/// An error answered without a body of its route's kind: the router's own 404 and
/// 405, an extractor's rejection.
fn is_bare_error(res: &Response) -> bool {
    let status = res.status();
    (status.is_client_error() || status.is_server_error())
        && res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|t| t.as_bytes() != MEDIA_TYPE.as_bytes())
}

/// A SCIM error body in place of a bare error under `/scim/v2`, so a provisioning
/// client reads every refusal the same way (RFC 7644 §3.12). `Allow` is kept.
fn scim_for_bare(res: Response, path: &str) -> Response {
    let status = res.status();
    let detail = match status {
        StatusCode::NOT_FOUND => format!(
            "there is no SCIM endpoint at {path}: the resources are /Users and /Groups, and discovery is /ServiceProviderConfig, /ResourceTypes and /Schemas"
        ),
        StatusCode::METHOD_NOT_ALLOWED => format!("{path} does not take this method"),
        other => other
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_string(),
    };
    let allow = res.headers().get(header::ALLOW).cloned();
    let mut out = scim_json(&ScimError::new(status.as_u16(), None, detail), None);
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

fn oauth_json(status: StatusCode, error: &OAuthError, challenge: Option<HeaderValue>) -> Response {
    let body =
        serde_json::json!({ "error": error.code.as_str(), "error_description": error.description });
    let mut res = (status, Json(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(c) = challenge {
        h.insert(header::WWW_AUTHENTICATE, c);
    }
    res
}

fn scim_json(error: &ScimError, challenge: Option<HeaderValue>) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, error.body().to_string()).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = challenge {
        h.insert(header::WWW_AUTHENTICATE, c);
    }
    res
}

impl super::AppState {
    /// Turn an error into the response its route's clients read. `request_id` is the
    /// request's own (`request_id::assign`), so the id a page shows is the one its log
    /// lines carry (the request span adds it to them; the events here need not).
    pub(crate) fn error_response(
        &self,
        err: WebError,
        style: ErrorStyle,
        request_id: &str,
    ) -> Response {
        let (status, title, message, hint, back_url) = match err {
            WebError::RetryAfter { error, seconds } => {
                let mut res = self.error_response(*error, style, request_id);
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                return res;
            }
            WebError::OAuth {
                status,
                error,
                challenge,
            } => {
                tracing::info!(%status, %error, "request refused");
                return oauth_json(status, &error, challenge);
            }
            WebError::Scim { error, challenge } => {
                tracing::info!(status = error.status, detail = %error.detail, "request refused");
                return scim_json(&error, challenge);
            }
            WebError::Page {
                status,
                title,
                message,
                hint,
                back_url,
            } => {
                tracing::info!(%status, reason = %message, "request refused");
                (status, title, message, hint, back_url)
            }
            WebError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Usher could not complete this request.".to_string(),
                    Some("Try again in a moment. If it keeps happening, quote the request ID to your administrator.".to_string()),
                    None,
                )
            }
            WebError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                self.metrics.store_unavailable();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Usher is briefly unavailable",
                    "Usher cannot reach its database right now.".to_string(),
                    Some("Try again in a few seconds. If it keeps happening, quote the request ID to your administrator.".to_string()),
                    None,
                )
            }
        };
        match style {
            ErrorStyle::OAuth => {
                let error = if status == StatusCode::SERVICE_UNAVAILABLE {
                    OAuthError::new(
                        ErrorCode::TemporarilyUnavailable,
                        format!("the server is briefly unavailable (request id {request_id})"),
                    )
                } else if status.is_server_error() {
                    OAuthError::server_error()
                } else {
                    OAuthError::invalid_request(message)
                };
                return oauth_json(status, &error, None);
            }
            ErrorStyle::Scim => {
                let detail = if status.is_server_error() {
                    format!("the server could not complete the request (request id {request_id})")
                } else {
                    message
                };
                return scim_json(&ScimError::new(status.as_u16(), None, detail), None);
            }
            ErrorStyle::Page => {}
        }
        let config = self.config();
        let page = ErrorPage {
            layout: self.layout(&config, title, None),
            message,
            hint,
            request_id: request_id.to_string(),
            back_url,
        };
        let body = match self.render("error.html", &page) {
            Ok(r) => r,
            // The error page itself failed to render (a broken theme): plain text.
            Err(_) => format!("{title}\n\nRequest ID: {request_id}\n").into_response(),
        };
        (status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_read_json_errors_and_people_read_pages() {
        assert_eq!(ErrorStyle::of("/token", ""), ErrorStyle::OAuth);
        assert_eq!(ErrorStyle::of("/revoke", ""), ErrorStyle::OAuth);
        assert_eq!(ErrorStyle::of("/introspect", ""), ErrorStyle::OAuth);
        assert_eq!(ErrorStyle::of("/idp/token", "/idp"), ErrorStyle::OAuth);
        assert_eq!(ErrorStyle::of("/admin/v1/events", ""), ErrorStyle::OAuth);
        assert_eq!(ErrorStyle::of("/scim/v2/Users", ""), ErrorStyle::Scim);
        assert_eq!(ErrorStyle::of("/login/abc", ""), ErrorStyle::Page);
        assert_eq!(ErrorStyle::of("/myaccount", ""), ErrorStyle::Page);
    }

    #[test]
    fn an_unreachable_store_asks_for_a_retry_on_the_token_endpoint_and_scim_too() {
        let down = || StoreError::Unavailable("connection refused".into());
        let is_retry = |e: WebError| matches!(e, WebError::RetryAfter { error, .. } if matches!(*error, WebError::Unavailable(_)));
        assert!(is_retry(WebError::from(ScimError::from(down()))));
        let token = crate::oidc::token::TokenError::from(down());
        assert_eq!(token.unavailable(), Some("connection refused"));
        let broken = crate::oidc::token::TokenError::from(StoreError::Backend("bad".into()));
        assert_eq!(broken.unavailable(), None);
        assert!(!is_retry(WebError::from(ScimError::from(
            StoreError::Backend("bad".into())
        ))));
    }

    #[test]
    fn oauth_errors_carry_the_status_their_rfc_gives() {
        let status = |code| match WebError::oauth(OAuthError::new(code, "x")) {
            WebError::OAuth { status, .. } => status,
            other => panic!("not an OAuth error: {other:?}"),
        };
        assert_eq!(status(ErrorCode::InvalidGrant), StatusCode::BAD_REQUEST);
        assert_eq!(status(ErrorCode::InvalidClient), StatusCode::UNAUTHORIZED);
        assert_eq!(status(ErrorCode::InvalidToken), StatusCode::UNAUTHORIZED);
        assert_eq!(status(ErrorCode::InsufficientScope), StatusCode::FORBIDDEN);
        assert_eq!(status(ErrorCode::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status(ErrorCode::ServerError),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_challenge_goes_out_with_the_json_and_nothing_is_cached() {
        let res = oauth_json(
            StatusCode::FORBIDDEN,
            &OAuthError::new(ErrorCode::InsufficientScope, "needs audit"),
            Some(HeaderValue::from_static("Bearer realm=\"usher\"")),
        );
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"usher\""
        );
    }
}
