//! The SCIM 2.0 endpoints under `/scim/v2`. The [`Caller`] extractor lets in a
//! `client_credentials` token with the `scim` scope (401 without a good token, 403
//! without the scope); handlers parse the request, run the operation from `scim` on
//! the blocking pool, and write its [`Answer`] out. Errors are `ScimError`s, which
//! `error.rs` turns into SCIM error documents. The discovery documents are public.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::extract::{Caller, Core, ScimScope};
use super::{Shared, WebError};
use crate::oidc::client_credentials::ServiceToken;
use crate::scim::{schemas, Admin, Answer, ScimError, MEDIA_TYPE};

type ScimCaller = Caller<ScimScope>;

/// Write a successful answer out: its status, SCIM body, `ETag` and `Location`.
pub(crate) fn answer(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut res = match &a.body {
        Some(body) => {
            let mut res = (status, body.to_string()).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
            res
        }
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

/// The admin operations of `scim`, acting for `client`.
pub(crate) fn admin<'a>(core: &'a Core, client: &'a ServiceToken) -> Admin<'a> {
    Admin::new(&core.ctx(), &client.client_id)
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
    core: Core,
    caller: ScimCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let listed = admin(&core, &caller.client)
        .list(
            q.get("filter").map(String::as_str),
            q.get("startIndex").map(String::as_str),
            q.get("count").map(String::as_str),
        )
        .await?;
    Ok(answer(listed))
}

pub async fn users_post(core: Core, caller: ScimCaller, body: Bytes) -> Result<Response, WebError> {
    let body = json_body(&body)?;
    let created = admin(&core, &caller.client).create(&body).await?;
    Ok(answer(created))
}

pub async fn user_get(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let found = admin(&core, &caller.client).get(&id).await?;
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| Some(v) == found.etag.as_deref());
    if unchanged {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(answer(found))
}

/// How a write replaces a user: PUT or PATCH.
enum Write {
    Replace,
    Patch,
}

/// A write to one user with a JSON body and an optional `If-Match`: PUT and PATCH.
async fn write_user(
    core: &Core,
    caller: ScimCaller,
    headers: &HeaderMap,
    body: &Bytes,
    id: &str,
    how: Write,
) -> Result<Response, WebError> {
    let body = json_body(body)?;
    let version = if_match(headers);
    let admin = admin(core, &caller.client);
    let written = match how {
        Write::Replace => admin.replace(id, &body, version.as_deref()).await?,
        Write::Patch => admin.patch(id, &body, version.as_deref()).await?,
    };
    Ok(answer(written))
}

pub async fn user_put(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    write_user(&core, caller, &headers, &body, &id, Write::Replace).await
}

pub async fn user_patch(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    write_user(&core, caller, &headers, &body, &id, Write::Patch).await
}

pub async fn user_delete(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let version = if_match(&headers);
    let deleted = admin(&core, &caller.client)
        .delete(&id, version.as_deref())
        .await?;
    Ok(answer(deleted))
}

fn base(state: &Shared) -> String {
    format!("{}/scim/v2", crate::oidc::issuer(&state.config()))
}

pub async fn service_provider_config(State(state): State<Shared>) -> Response {
    answer(Answer::ok(schemas::service_provider_config(&base(&state))))
}

pub async fn resource_types(State(state): State<Shared>) -> Response {
    answer(Answer::ok(schemas::resource_types(&base(&state))))
}

pub async fn resource_type(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    Ok(answer(Answer::ok(schemas::resource_type(
        &base(&state),
        &id,
    )?)))
}

pub async fn schemas_get(State(state): State<Shared>) -> Response {
    answer(Answer::ok(schemas::schemas(&base(&state))))
}

pub async fn schema_get(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    Ok(answer(Answer::ok(schemas::schema(&base(&state), &id)?)))
}
