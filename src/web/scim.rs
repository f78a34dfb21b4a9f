//! The SCIM 2.0 endpoints under `/scim/v2`, and the bearer-token check shared with the
//! admin API: a `client_credentials` token (401 without a good one) carrying the scope
//! the endpoint needs (403 without it). Handlers parse the request and run the
//! operation from `scim` on the blocking pool; the discovery documents are public.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Shared;
use crate::config::ApiScope;

use crate::oidc::client_credentials::{self, ServiceToken};
use crate::scim::{schemas, Admin, Answer, ScimError, MEDIA_TYPE};

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Why an API request was not let in.
pub(crate) enum Denied {
    /// No token, or one that is not good: 401.
    Unauthenticated,
    /// A good token without the scope: 403.
    Forbidden(ApiScope),
}

impl Denied {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Denied::Unauthenticated => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Denied::Unauthenticated => {
                "a valid bearer token from the client_credentials grant is required".into()
            }
            Denied::Forbidden(s) => format!("the token lacks the `{}` scope", s.as_str()),
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    pub(crate) fn challenge(&self) -> HeaderValue {
        let text = match self {
            Denied::Unauthenticated => "Bearer realm=\"usher\"".to_string(),
            Denied::Forbidden(s) => format!(
                "Bearer realm=\"usher\", error=\"insufficient_scope\", scope=\"{}\"",
                s.as_str()
            ),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Bearer"))
    }
}

/// Check the bearer token of an admin API request for `scope`.
pub(crate) fn check(
    state: &Shared,
    headers: &HeaderMap,
    scope: ApiScope,
) -> Result<ServiceToken, Denied> {
    let token = bearer(headers).ok_or(Denied::Unauthenticated)?;
    let config = state.config();
    let verified = client_credentials::verify(&config, &state.keys, state.now(), &token)
        .ok_or(Denied::Unauthenticated)?;
    if verified.has(scope) {
        Ok(verified)
    } else {
        Err(Denied::Forbidden(scope))
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    res
}

fn scim_error(e: &ScimError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    scim_json(status, &e.body())
}

fn denied(d: Denied) -> Response {
    let mut res = scim_error(&ScimError::new(d.status().as_u16(), None, d.message()));
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, d.challenge());
    res
}

pub(crate) fn answer(result: Result<Answer, ScimError>) -> Response {
    let a = match result {
        Ok(a) => a,
        Err(e) => return scim_error(&e),
    };
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut res = match &a.body {
        Some(body) => scim_json(status, body),
        None => status.into_response(),
    };
    let h = res.headers_mut();
    if let Some(v) = a
        .etag
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = a
        .location
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Run an admin operation for `client` on the blocking pool.
pub(crate) async fn run(
    state: &Shared,
    client: ServiceToken,
    op: impl FnOnce(&Admin) -> Result<Answer, ScimError> + Send + 'static,
) -> Result<Answer, ScimError> {
    let st = state.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let config = st.config();
        let admin = Admin {
            store: st.store.as_ref(),
            config: &config,
            client_id: &client.client_id,
            now: st.now(),
        };
        op(&admin)
    })
    .await;
    joined.unwrap_or_else(|e| {
        tracing::error!(error = %e, "SCIM task failed");
        Err(ScimError::new(
            500,
            None,
            "the server could not complete the request",
        ))
    })
}

fn json_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub async fn users_get(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let client = match check(&state, &headers, ApiScope::Scim) {
        Ok(c) => c,
        Err(d) => return denied(d),
    };
    answer(
        run(&state, client, move |a| {
            a.list(
                q.get("filter").map(String::as_str),
                q.get("startIndex").map(String::as_str),
                q.get("count").map(String::as_str),
            )
        })
        .await,
    )
}

pub async fn users_post(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let client = match check(&state, &headers, ApiScope::Scim) {
        Ok(c) => c,
        Err(d) => return denied(d),
    };
    let body = match json_body(&body) {
        Ok(b) => b,
        Err(e) => return scim_error(&e),
    };
    answer(run(&state, client, move |a| a.create(&body)).await)
}

pub async fn user_get(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client = match check(&state, &headers, ApiScope::Scim) {
        Ok(c) => c,
        Err(d) => return denied(d),
    };
    let result = run(&state, client, move |a| a.get(&id)).await;
    let unchanged = match (&result, headers.get(header::IF_NONE_MATCH)) {
        (Ok(a), Some(v)) => v
            .to_str()
            .ok()
            .is_some_and(|v| Some(v) == a.etag.as_deref()),
        _ => false,
    };
    if unchanged {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    answer(result)
}

/// A write to one user with a JSON body and an optional `If-Match`: PUT and PATCH.
async fn write_user(
    state: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
    op: impl FnOnce(&Admin, &Value, Option<&str>) -> Result<Answer, ScimError> + Send + 'static,
) -> Response {
    let client = match check(state, headers, ApiScope::Scim) {
        Ok(c) => c,
        Err(d) => return denied(d),
    };
    let body = match json_body(body) {
        Ok(b) => b,
        Err(e) => return scim_error(&e),
    };
    let version = if_match(headers);
    answer(run(state, client, move |a| op(a, &body, version.as_deref())).await)
}

pub async fn user_put(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    write_user(&state, &headers, &body, move |a, body, version| {
        a.replace(&id, body, version)
    })
    .await
}

pub async fn user_patch(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    write_user(&state, &headers, &body, move |a, body, version| {
        a.patch(&id, body, version)
    })
    .await
}

pub async fn user_delete(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client = match check(&state, &headers, ApiScope::Scim) {
        Ok(c) => c,
        Err(d) => return denied(d),
    };
    let version = if_match(&headers);
    answer(run(&state, client, move |a| a.delete(&id, version.as_deref())).await)
}

fn base(state: &Shared) -> String {
    format!("{}/scim/v2", crate::oidc::issuer(&state.config()))
}

pub async fn service_provider_config(State(state): State<Shared>) -> Response {
    answer(Ok(Answer::ok(schemas::service_provider_config(&base(
        &state,
    )))))
}

pub async fn resource_types(State(state): State<Shared>) -> Response {
    answer(Ok(Answer::ok(schemas::resource_types(&base(&state)))))
}

pub async fn resource_type(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    answer(schemas::resource_type(&base(&state), &id).map(Answer::ok))
}

pub async fn schemas_get(State(state): State<Shared>) -> Response {
    answer(Ok(Answer::ok(schemas::schemas(&base(&state)))))
}

pub async fn schema_get(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    answer(schemas::schema(&base(&state), &id).map(Answer::ok))
}
