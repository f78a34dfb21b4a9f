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
use crate::scim::project::Projection;
use crate::scim::{
    schemas, Admin, Answer, ScimError, GROUP_SCHEMA, MEDIA_TYPE, USER_SCHEMA, USHER_GROUP_SCHEMA,
    USHER_USER_SCHEMA,
};

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

type Params = Query<HashMap<String, String>>;

/// The resource kinds, for `attributes` and `excludedAttributes`.
#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

fn param<'q>(q: &'q HashMap<String, String>, name: &str) -> Option<&'q str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The answer reduced to the attributes the request asked for (every resource of a
/// list), then written out.
fn shaped(mut a: Answer, q: &HashMap<String, String>, kind: Kind) -> Result<Response, WebError> {
    let (core, ext) = match kind {
        Kind::User => (USER_SCHEMA, USHER_USER_SCHEMA),
        Kind::Group => (GROUP_SCHEMA, USHER_GROUP_SCHEMA),
    };
    let projection = Projection::parse(
        param(q, "attributes"),
        param(q, "excludedAttributes"),
        core,
        &[ext],
    )?;
    if let (Some(p), Some(body)) = (projection, a.body.as_mut()) {
        match body.get_mut("Resources").and_then(Value::as_array_mut) {
            Some(items) => items.iter_mut().for_each(|r| p.apply(r)),
            None => p.apply(body),
        }
    }
    Ok(answer(a))
}

/// `If-None-Match` naming the current version: 304.
fn unchanged(headers: &HeaderMap, found: &Answer) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| Some(v) == found.etag.as_deref())
}

pub async fn users_get(
    core: Core,
    caller: ScimCaller,
    Query(q): Params,
) -> Result<Response, WebError> {
    let listed = admin(&core, &caller.client)
        .list(
            param(&q, "filter"),
            param(&q, "startIndex"),
            param(&q, "count"),
        )
        .await?;
    shaped(listed, &q, Kind::User)
}

pub async fn users_post(
    core: Core,
    caller: ScimCaller,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, WebError> {
    let body = json_body(&body)?;
    let created = admin(&core, &caller.client).create(&body).await?;
    shaped(created, &q, Kind::User)
}

pub async fn user_get(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(q): Params,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let found = admin(&core, &caller.client).get(&id).await?;
    if unchanged(&headers, &found) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    shaped(found, &q, Kind::User)
}

/// How a write replaces a resource: PUT or PATCH.
enum Write {
    Replace,
    Patch,
}

/// A write to one resource with a JSON body and an optional `If-Match`: PUT and PATCH
/// of users and groups.
async fn write_one(
    core: &Core,
    caller: ScimCaller,
    (headers, q): (&HeaderMap, &HashMap<String, String>),
    body: &Bytes,
    (id, kind): (&str, Kind),
    how: Write,
) -> Result<Response, WebError> {
    let body = json_body(body)?;
    let version = if_match(headers);
    let admin = admin(core, &caller.client);
    let v = version.as_deref();
    let written = match (kind, how) {
        (Kind::User, Write::Replace) => admin.replace(id, &body, v).await?,
        (Kind::User, Write::Patch) => admin.patch(id, &body, v).await?,
        (Kind::Group, Write::Replace) => admin.replace_group(id, &body, v).await?,
        (Kind::Group, Write::Patch) => admin.patch_group(id, &body, v).await?,
    };
    shaped(written, q, kind)
}

pub async fn user_put(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(q): Params,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let target = (id.as_str(), Kind::User);
    write_one(&core, caller, (&headers, &q), &body, target, Write::Replace).await
}

pub async fn user_patch(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(q): Params,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let target = (id.as_str(), Kind::User);
    write_one(&core, caller, (&headers, &q), &body, target, Write::Patch).await
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

pub async fn groups_get(
    core: Core,
    caller: ScimCaller,
    Query(q): Params,
) -> Result<Response, WebError> {
    let listed = admin(&core, &caller.client)
        .list_groups(
            param(&q, "filter"),
            param(&q, "startIndex"),
            param(&q, "count"),
        )
        .await?;
    shaped(listed, &q, Kind::Group)
}

pub async fn groups_post(
    core: Core,
    caller: ScimCaller,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, WebError> {
    let body = json_body(&body)?;
    let created = admin(&core, &caller.client).create_group(&body).await?;
    shaped(created, &q, Kind::Group)
}

pub async fn group_get(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(q): Params,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let found = admin(&core, &caller.client).get_group(&id).await?;
    if unchanged(&headers, &found) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    shaped(found, &q, Kind::Group)
}

pub async fn group_put(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(q): Params,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let target = (id.as_str(), Kind::Group);
    write_one(&core, caller, (&headers, &q), &body, target, Write::Replace).await
}

pub async fn group_patch(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Query(q): Params,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let target = (id.as_str(), Kind::Group);
    write_one(&core, caller, (&headers, &q), &body, target, Write::Patch).await
}

pub async fn group_delete(
    core: Core,
    caller: ScimCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let version = if_match(&headers);
    let deleted = admin(&core, &caller.client)
        .delete_group(&id, version.as_deref())
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
