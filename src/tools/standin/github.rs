//! The GitHub stand-in: the OAuth app endpoints under `/login/oauth/` and the REST
//! calls a sign-in needs, `/user`, `/user/emails` and `/user/teams` (paged with
//! `per_page` and `page` and a `Link` header, as GitHub pages), in GitHub's own shapes.
//!
//! GitHub departs from RFC 6749 in ways a connector must cope with, and the stand-in
//! reproduces them: the token endpoint answers form-encoded unless asked for JSON,
//! reports errors with HTTP 200, returns `scope` comma-separated and `token_type` in
//! lower case; tokens never expire; the API refuses requests without a `User-Agent`.
//! PKCE is optional, as on GitHub, but a challenge that was sent is checked.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use url::Url;

use super::consent::{self, Refused};
use super::params::{is_pkce_string, pkce_matches, ClientAuth, Params};
use super::{pages, AccessGrant, Pending, Shared, StandinUser};
use crate::crypto::unix_now;

const DOCS: &str = "https://docs.github.com/apps/managing-oauth-apps";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/login/oauth/authorize",
            get(authorize_get).post(consent::consent_post),
        )
        .route("/login/oauth/access_token", post(access_token_post))
        .route("/user", get(user_get))
        .route("/user/emails", get(user_emails_get))
        .route("/user/teams", get(user_teams_get))
}

/// Requested scopes: GitHub takes them space- or comma-separated.
fn scopes(raw: &str) -> Vec<&str> {
    raw.split([' ', ','])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
}

async fn authorize_get(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let redirect_uri = match consent::client_and_redirect(&shared, &params) {
        Ok(uri) => uri,
        Err(reason) => return pages::error(StatusCode::BAD_REQUEST, &reason),
    };
    let state = params.get("state");
    let challenge = params.get("code_challenge");
    if let Some(challenge) = challenge {
        if params.get("code_challenge_method") != Some("S256") || !is_pkce_string(challenge) {
            return consent::error_redirect(
                &shared,
                &redirect_uri,
                state,
                "invalid_request",
                "code_challenge must be an S256 challenge with code_challenge_method=S256.",
            );
        }
    }
    let scope = scopes(params.get("scope").unwrap_or_default()).join(",");
    let pending = Pending {
        redirect_uri: redirect_uri.clone(),
        state: state.map(str::to_string),
        nonce: None,
        scope: scope.clone(),
        code_challenge: challenge.map(str::to_string),
        expires_at: 0,
    };
    let request_id = consent::hold(&shared, pending, unix_now());
    let users = shared.listed_users();
    pages::Consent {
        heading: format!("Authorize {}", shared.client_id),
        intro: format!(
            "{} wants to access your account. (Stand-in for GitHub at {}.)",
            shared.client_id, shared.base_url
        ),
        action: "/login/oauth/authorize",
        request_id: &request_id,
        users: &users,
        scopes: scopes(&scope),
    }
    .render()
}

/// A token-endpoint error as GitHub reports it: HTTP 200 with `error` and friends.
struct TokenError {
    error: &'static str,
    description: &'static str,
    anchor: &'static str,
}

const BAD_CREDENTIALS: TokenError = TokenError {
    error: "incorrect_client_credentials",
    description: "The client_id and/or client_secret passed are incorrect.",
    anchor: "troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials",
};
const BAD_CODE: TokenError = TokenError {
    error: "bad_verification_code",
    description: "The code passed is incorrect or expired.",
    anchor: "troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
};
const BAD_VERIFIER: TokenError = TokenError {
    error: "bad_verification_code",
    description:
        "The code_verifier does not match the code_challenge of the authorization request.",
    anchor: "troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
};
const REDIRECT_MISMATCH: TokenError = TokenError {
    error: "redirect_uri_mismatch",
    description: "The redirect_uri MUST match the registered callback URL for this application.",
    anchor: "troubleshooting-authorization-request-errors/#redirect-uri-mismatch2",
};

/// Answer `pairs` as JSON when the client asked for it, form-encoded otherwise.
fn token_answer(wants_json: bool, pairs: &[(&str, &str)]) -> Response {
    let headers = [(header::CACHE_CONTROL, "no-store")];
    if wants_json {
        let body: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        (StatusCode::OK, headers, Json(Value::Object(body))).into_response()
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        (
            StatusCode::OK,
            headers,
            [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
            body,
        )
            .into_response()
    }
}

async fn access_token_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let wants_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    match exchange(&shared, &headers, query.as_deref(), &body) {
        Ok((token, scope)) => token_answer(
            wants_json,
            &[
                ("access_token", &token),
                ("token_type", "bearer"),
                ("scope", &scope),
            ],
        ),
        Err(e) => {
            let uri = format!("{DOCS}/{}", e.anchor);
            token_answer(
                wants_json,
                &[
                    ("error", e.error),
                    ("error_description", e.description),
                    ("error_uri", &uri),
                ],
            )
        }
    }
}

/// Redeem a code; returns the new token and its (comma-separated) scope.
fn exchange(
    shared: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<(String, String), TokenError> {
    let now = unix_now();
    // GitHub reads the parameters from the body or, as many clients send them, the
    // query string.
    let mut raw = body.to_vec();
    if let Some(q) = query {
        raw.push(b'&');
        raw.extend_from_slice(q.as_bytes());
    }
    let params = Params::parse(&raw);
    if !ClientAuth::from_request(headers, &params).matches(&shared.client_id, &shared.client_secret)
    {
        return Err(BAD_CREDENTIALS);
    }
    let code = params.get("code").ok_or(BAD_CODE)?;
    let grant = consent::take_code(shared, code, now).map_err(|r| match r {
        Refused::Unknown | Refused::Reused => BAD_CODE,
    })?;
    // GitHub lets the client leave redirect_uri out here; one that is sent must match.
    if params
        .get("redirect_uri")
        .is_some_and(|uri| uri != grant.redirect_uri)
    {
        return Err(REDIRECT_MISMATCH);
    }
    let verified = match (&grant.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => pkce_matches(verifier, challenge),
        (None, None) => true,
        _ => false,
    };
    if !verified {
        return Err(BAD_VERIFIER);
    }
    let token: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(36)
        .map(char::from)
        .collect();
    let token = format!("gho_{token}");
    let access = AccessGrant {
        user_id: grant.user_id,
        scope: grant.scope.clone(),
        expires_at: None,
    };
    if !consent::activate_token(shared, code, &token, access) {
        return Err(BAD_CODE);
    }
    Ok((token, grant.scope))
}

/// GitHub's REST error body.
fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

/// Why the API refuses a request.
enum ApiRefusal {
    NoUserAgent,
    BadCredentials,
}

impl IntoResponse for ApiRefusal {
    fn into_response(self) -> Response {
        match self {
            ApiRefusal::NoUserAgent => (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Request forbidden by administrative rules. \
                 Please make sure your request has a User-Agent header.\n",
            )
                .into_response(),
            ApiRefusal::BadCredentials => api_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        }
    }
}

/// The signed-in user and the token's scopes.
fn api_user(shared: &Shared, headers: &HeaderMap) -> Result<(StandinUser, String), ApiRefusal> {
    if !headers.contains_key(header::USER_AGENT) {
        return Err(ApiRefusal::NoUserAgent);
    }
    shared
        .bearer_user(headers, &["Bearer", "token"], unix_now())
        .ok_or(ApiRefusal::BadCredentials)
}

/// The `/user` object: GitHub's fields, then the user's extra claims over them.
fn user_json(shared: &Shared, user: &StandinUser) -> Value {
    // Ids are checked to be numeric when the stand-in starts; a user set later with a
    // non-numeric id is shown as given rather than refused.
    let id = user
        .id
        .parse::<u64>()
        .map(|n| json!(n))
        .unwrap_or_else(|_| json!(user.id));
    let mut profile = Url::parse(&shared.base_url).ok();
    if let Some(url) = profile.as_mut() {
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.clear().push(&user.login);
        }
    }
    let mut avatar = Url::parse(&shared.base_url).ok();
    if let Some(url) = avatar.as_mut() {
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.clear().extend(["avatars", "u", &user.id]);
        }
    }
    let mut body = json!({
        "login": user.login,
        "id": id,
        "node_id": format!("U_standin{}", user.id),
        "avatar_url": avatar.map(String::from),
        "html_url": profile.map(String::from),
        "type": "User",
        "site_admin": false,
        "name": user.name,
        "email": if user.email.is_empty() { Value::Null } else { json!(user.email) },
    });
    if let Value::Object(map) = &mut body {
        for (k, v) in &user.extra_claims {
            map.insert(k.clone(), v.clone());
        }
    }
    body
}

async fn user_get(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match api_user(&shared, &headers) {
        Ok((user, _)) => Json(user_json(&shared, &user)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn user_emails_get(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let (user, scope) = match api_user(&shared, &headers) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    // GitHub hides this endpoint from tokens without an email scope.
    if !scopes(&scope)
        .iter()
        .any(|s| matches!(*s, "user" | "user:email"))
    {
        return api_error(StatusCode::NOT_FOUND, "Not Found");
    }
    if user.email.is_empty() {
        return Json(json!([])).into_response();
    }
    let public = !user_json(&shared, &user)["email"].is_null();
    Json(json!([{
        "email": user.email,
        "primary": true,
        "verified": user.email_verified,
        "visibility": if public { "public" } else { "private" },
    }]))
    .into_response()
}

/// `page` and `per_page` of a listing.
#[derive(Debug, serde::Deserialize)]
struct Paging {
    page: Option<String>,
    per_page: Option<String>,
}

/// GitHub's default and largest page of a listing.
const PER_PAGE: usize = 30;
const PER_PAGE_MAX: usize = 100;

/// An organisation as GitHub lists it inside a team.
fn org_json(shared: &Shared, n: usize, login: &str) -> Value {
    let api = shared.base_url.trim_end_matches('/');
    json!({
        "login": login,
        "id": 1000 + n,
        "node_id": format!("O_standin{n}"),
        "url": format!("{api}/orgs/{login}"),
        "repos_url": format!("{api}/orgs/{login}/repos"),
        "events_url": format!("{api}/orgs/{login}/events"),
        "hooks_url": format!("{api}/orgs/{login}/hooks"),
        "issues_url": format!("{api}/orgs/{login}/issues"),
        "members_url": format!("{api}/orgs/{login}/members{{/member}}"),
        "public_members_url": format!("{api}/orgs/{login}/public_members{{/member}}"),
        "avatar_url": format!("{api}/avatars/o/{n}"),
        "description": null,
    })
}

/// `GET /user/teams`: the teams of the signed-in user, for a token with `read:org` (or
/// `repo`, `user`), a page at a time.
async fn user_teams_get(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(paging): Query<Paging>,
) -> Response {
    let (user, scope) = match api_user(&shared, &headers) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    if !scopes(&scope)
        .iter()
        .any(|s| matches!(*s, "read:org" | "repo" | "user"))
    {
        return api_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
    }
    let number = |v: &Option<String>, default: usize| match v.as_deref() {
        None => Some(default),
        Some(v) => v.parse::<usize>().ok(),
    };
    let (Some(page), Some(per_page)) =
        (number(&paging.page, 1), number(&paging.per_page, PER_PAGE))
    else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let (page, per_page) = (page.max(1), per_page.clamp(1, PER_PAGE_MAX));
    let api = shared.base_url.trim_end_matches('/');
    let teams: Vec<Value> = (user.teams.iter().enumerate())
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(n, (org, name))| {
            let slug = name.to_lowercase().replace(' ', "-");
            json!({
                "id": 5000 + n,
                "node_id": format!("T_standin{n}"),
                "url": format!("{api}/teams/{}", 5000 + n),
                "html_url": format!("{api}/orgs/{org}/teams/{slug}"),
                "name": name,
                "slug": slug,
                "description": null,
                "privacy": "closed",
                "notification_setting": "notifications_enabled",
                "permission": "pull",
                "members_url": format!("{api}/teams/{}/members{{/member}}", 5000 + n),
                "repositories_url": format!("{api}/teams/{}/repos", 5000 + n),
                "parent": null,
                "members_count": 1,
                "repos_count": 0,
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
                "organization": org_json(&shared, n, org),
            })
        })
        .collect();
    let last = user.teams.len().div_ceil(per_page).max(1);
    let mut links = Vec::new();
    if page < last {
        links.push(format!(
            "<{api}/user/teams?per_page={per_page}&page={}>; rel=\"next\"",
            page + 1
        ));
        links.push(format!(
            "<{api}/user/teams?per_page={per_page}&page={last}>; rel=\"last\""
        ));
    }
    let mut res = Json(Value::Array(teams)).into_response();
    if let Ok(link) = links.join(", ").parse() {
        if !links.is_empty() {
            res.headers_mut().insert(header::LINK, link);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_split_on_spaces_and_commas() {
        assert_eq!(scopes("read:user user:email"), ["read:user", "user:email"]);
        assert_eq!(scopes("read:user,user:email"), ["read:user", "user:email"]);
        assert!(scopes("").is_empty());
    }
}
