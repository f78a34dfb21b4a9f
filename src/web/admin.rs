//! The small admin API beside SCIM, under `/admin/v1`: resetting an account's TOTP
//! (scope `scim`) and reading the audit trail (scope `audit`). Same bearer tokens as
//! SCIM; answers are plain JSON, errors `{ "error", "error_description" }`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{json, Value};

use super::scim::{check, run, Denied};
use super::Shared;
use crate::audit;
use crate::config::ApiScope;

use crate::store::AuditEvent;
use crate::timefmt::{parse_time, rfc3339};

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut res = (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn denied(d: Denied) -> Response {
    let code = match d {
        Denied::Unauthenticated => "invalid_token",
        Denied::Forbidden(_) => "insufficient_scope",
    };
    let mut res = error(d.status(), code, &d.message());
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, d.challenge());
    res
}

/// `POST /admin/v1/users/{id}/reset-totp`: the user enrols again at their next sign-in
/// that asks for TOTP. Answers the SCIM representation of the user.
pub async fn reset_totp_post(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client = match check(&state, &headers, ApiScope::Scim) {
        Ok(c) => c,
        Err(d) => return denied(d),
    };
    match run(&state, client, move |a| a.reset_totp(&id)).await {
        Ok(answer) => {
            let mut res = Json(answer.body.unwrap_or(Value::Null)).into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if e.status == 404 {
                "not_found"
            } else {
                "server_error"
            };
            error(status, code, &e.detail)
        }
    }
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
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(d) = check(&state, &headers, ApiScope::Audit) {
        return denied(d);
    }
    let now = state.now();
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    // The error is the parameter's name; the response is built once, below.
    let time = |k: &'static str| match get(k) {
        None => Ok(None),
        Some(v) => parse_time(v, now).map(Some).ok_or(k),
    };
    let bad_time = |k: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{k} must be Unix seconds, an RFC 3339 time or a duration like 24h"),
        )
    };
    let since = match time("since") {
        Ok(v) => v.unwrap_or(0),
        Err(k) => return bad_time(k),
    };
    let until = match time("until") {
        Ok(v) => v,
        Err(k) => return bad_time(k),
    };
    let limit = match get("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "limit must be a number",
            )
        }
    };
    let query = audit::Query {
        user: get("user").map(str::to_string),
        kind: get("kind").map(str::to_string),
        since,
        until,
        limit,
    };
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || audit::query(store.as_ref(), &query)).await;
    match found {
        Ok(Ok(events)) => {
            let list: Vec<Value> = events.iter().map(event_json).collect();
            let mut res = Json(json!({ "events": list })).into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the audit trail failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the audit trail could not be read",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "audit task failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the audit trail could not be read",
            )
        }
    }
}
