//! The small admin API beside SCIM, under `/admin/v1`: resetting an account's TOTP,
//! unlocking it and signing it out everywhere (scope `scim`) and reading the audit trail (scope `audit`). Same bearer tokens as
//! SCIM; answers are plain JSON, errors OAuth's `{ "error", "error_description" }`,
//! written out by `error.rs`.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{json, Value};

use super::extract::{AdminScope, AuditScope, Caller, Core};
use super::scim::admin;
use super::WebError;
use crate::audit;
use crate::oidc::{ErrorCode, OAuthError};
use crate::scim::ScimError;
use crate::store::AuditEvent;
use crate::timefmt::rfc3339;

fn json_no_store(body: Value) -> Response {
    let mut res = Json(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The admin API speaks OAuth's error shape: a missing account is `not_found`, and
/// anything else went wrong on our side.
fn oauth_error(e: ScimError) -> WebError {
    let code = if e.status == 404 {
        ErrorCode::NotFound
    } else {
        ErrorCode::ServerError
    };
    WebError::oauth(OAuthError::new(code, e.detail))
}

/// `POST /admin/v1/users/{id}/reset-totp`: the user enrols again at their next sign-in
/// that asks for TOTP. Answers the SCIM representation of the user.
pub async fn reset_totp_post(
    core: Core,
    caller: Caller<AdminScope>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let answer = admin(&core, &caller.client)
        .reset_totp(&id)
        .await
        .map_err(oauth_error)?;
    Ok(json_no_store(answer.body.unwrap_or(Value::Null)))
}

/// `POST /admin/v1/users/{id}/unlock`: lift the account's attempt lock, also the one
/// `security.max_consecutive_failures` leaves until an administrator acts, and forgive
/// its failures. Answers the SCIM representation of the user.
pub async fn unlock_post(
    core: Core,
    caller: Caller<AdminScope>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let answer = admin(&core, &caller.client)
        .unlock(&id)
        .await
        .map_err(oauth_error)?;
    Ok(json_no_store(answer.body.unwrap_or(Value::Null)))
}

/// `POST /admin/v1/users/{id}/sign-out`: end every SSO session of the account and
/// revoke every grant it holds, offline ones included. Answers the SCIM representation
/// of the user.
pub async fn sign_out_post(
    core: Core,
    caller: Caller<AdminScope>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let answer = admin(&core, &caller.client)
        .sign_out(&id)
        .await
        .map_err(oauth_error)?;
    Ok(json_no_store(answer.body.unwrap_or(Value::Null)))
}

fn event_json(e: &AuditEvent) -> Value {
    json!({
        "id": e.id,
        "at": e.at,
        "time": rfc3339(e.at),
        "kind": e.kind,
        "app": e.app,
        "sub": e.sub,
        "outcome": e.outcome,
        "detail": e.detail,
    })
}

/// `GET /admin/v1/events?user=&kind=&since=&until=&limit=`: the latest matching
/// events, oldest first. Times are Unix seconds, RFC 3339, or a duration back from now
/// (`24h`); `kind=admin` matches every `admin.*` kind.
pub async fn events_get(
    core: Core,
    _: Caller<AuditScope>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let query = audit::Query::from_params(|k| q.get(k).map(String::as_str), core.now)
        .map_err(|e| WebError::oauth(OAuthError::invalid_request(e)))?;
    let events = audit::query(core.store.as_ref(), &query)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the audit trail failed");
            WebError::oauth(OAuthError::new(
                ErrorCode::ServerError,
                "the audit trail could not be read",
            ))
        })?;
    let list: Vec<Value> = events.iter().map(event_json).collect();
    Ok(json_no_store(json!({ "events": list })))
}
