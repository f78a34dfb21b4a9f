//! Protocol endpoints: discovery, JWKS, authorize, token, revocation, introspection,
//! userinfo, logout.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;

use super::extract::{bearer, Core, CsrfForm};
use super::{cookies, login, Shared, WebError};
use crate::oidc::authorize::{self, AuthorizeError};
use crate::oidc::logout;
use crate::oidc::revocation;
use crate::oidc::token::{self, TokenError, TokenRequest};
use crate::oidc::{ErrorCode, OAuthError};
use crate::signin;
use crate::web::pages::{LogoutPage, MessagePage};

pub async fn discovery(State(state): State<Shared>) -> Response {
    Json(crate::oidc::discovery(&state.config())).into_response()
}

pub async fn jwks(State(state): State<Shared>) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            format!(
                "public, max-age={}",
                crate::oidc::keys::JWKS_MAX_AGE_SECONDS
            ),
        )],
        Json(state.keys.current().jwks()),
    )
        .into_response()
}

/// Who is asking: the client address (as `client::admit` decided it, behind a trusted
/// proxy the address the proxy vouches for) and user agent, recorded into the flow for
/// scripts and audit lines.
pub struct ClientInfo {
    ip: String,
    user_agent: String,
    /// The request came through a trusted proxy ([`super::client::FromTrustedProxy`]).
    proxied: bool,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // Without a socket (a router driven in-process) there is no peer: empty.
        let ip = parts
            .extensions
            .get::<super::client::ClientAddr>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect())
            .unwrap_or_default();
        let proxied = parts
            .extensions
            .get::<super::client::FromTrustedProxy>()
            .is_some_and(|p| p.0);
        Ok(ClientInfo {
            ip,
            user_agent,
            proxied,
        })
    }
}

pub async fn authorize_get(
    State(state): State<Shared>,
    client: ClientInfo,
    headers: HeaderMap,
    jar: CookieJar,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    authorize(&state, client, &headers, jar, params).await
}

pub async fn authorize_post(
    State(state): State<Shared>,
    client: ClientInfo,
    headers: HeaderMap,
    jar: CookieJar,
    Form(params): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    authorize(&state, client, &headers, jar, params).await
}

/// The headers of `names` (lower-case) that the request carries, for the app's script.
/// Several fields of one name are joined with `, ` (RFC 9110 §5.3); a value that is not
/// visible ASCII or exceeds [`SCRIPT_HEADER_VALUE_MAX`](crate::limits::SCRIPT_HEADER_VALUE_MAX)
/// is left out rather than cut.
fn script_headers(names: &[String], headers: &HeaderMap) -> BTreeMap<String, String> {
    let max = crate::limits::SCRIPT_HEADER_VALUE_MAX;
    let mut out = BTreeMap::new();
    for name in names {
        let mut joined = String::new();
        let mut usable = true;
        for value in headers.get_all(name.as_str()) {
            match value.to_str() {
                Ok(v) if joined.len() + v.len() + 2 <= max + 2 => {
                    if !joined.is_empty() {
                        joined.push_str(", ");
                    }
                    joined.push_str(v);
                }
                _ => usable = false,
            }
        }
        if usable && !joined.is_empty() && joined.len() <= max {
            out.insert(name.clone(), joined);
        }
    }
    out
}

async fn authorize(
    state: &Shared,
    client: ClientInfo,
    headers: &HeaderMap,
    jar: CookieJar,
    params: HashMap<String, String>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let request = match authorize::validate(&config, &params) {
        Ok(r) => r,
        Err(AuthorizeError::Page(message)) => {
            return Err(WebError::bad_request(message).with_hint(
                "The application that sent you here is misconfigured. Nothing was sent back to it.",
            ))
        }
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state: st,
            error,
        }) => return login::redirect_error(&config, &redirect_uri, st.as_deref(), &error),
    };
    let app = config
        .apps
        .get(&request.app_id)
        .ok_or_else(|| WebError::Internal("validated app vanished".into()))?
        .clone();
    let (jar, browser) = cookies::ensure_browser(jar, &config);
    // A header a client can set itself is no ground for a decision about that client:
    // scripts see headers only of requests a trusted proxy passed on, whose values the
    // proxy sets (it must replace, not append to, what the client sent).
    let script_headers = match client.proxied {
        true => script_headers(&app.sign_in.request_headers, headers),
        false => BTreeMap::new(),
    };
    let starter = signin::Starter {
        ip: client.ip,
        user_agent: client.user_agent,
        browser,
        headers: script_headers,
    };
    let flow = signin::start(
        state.core(&config, now),
        request,
        &app,
        starter,
        state.recording(),
    );
    login::advance(state, &config, flow, jar, now).await
}

/// A successful token answer: never cached (RFC 6749 §5.1).
fn token_response(body: serde_json::Value) -> Response {
    let mut res = Json(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// A form-encoded request to the token, revocation or introspection endpoint.
fn client_request(
    headers: &HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<TokenRequest, OAuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match form {
        Ok(Form(pairs)) => TokenRequest::parse(pairs, authorization),
        Err(_) => Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )),
    }
}

/// A refused client request, with the `WWW-Authenticate` challenge it calls for.
fn client_error(e: TokenError) -> WebError {
    if let Some(detail) = e.unavailable() {
        return crate::store::StoreError::Unavailable(detail.to_string()).into();
    }
    let challenge = e.challenge();
    let error = WebError::oauth(e.error);
    match challenge {
        Some(c) => error.with_challenge(HeaderValue::from_static(c)),
        None => error,
    }
}

pub async fn token(
    State(state): State<Shared>,
    core: Core,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    let request = client_request(&headers, form).map_err(|e| {
        state.metrics.token(None, e.code.as_str());
        WebError::oauth(e)
    })?;
    let grant_type = request.grant_type().map(str::to_string);
    let result = token::exchange(&core.ctx(), &core.keys, &request).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.error.code.as_str(),
    };
    state.metrics.token(grant_type.as_deref(), outcome);
    result.map(token_response).map_err(client_error)
}

/// `POST /revoke` (RFC 7009): an empty 200 whether or not there was anything to revoke.
pub async fn revoke_post(
    core: Core,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    let request = client_request(&headers, form).map_err(WebError::oauth)?;
    revocation::revoke(&core.ctx(), &core.keys, &request)
        .await
        .map_err(client_error)?;
    Ok(token_response(serde_json::json!({})))
}

/// `POST /introspect` (RFC 7662).
pub async fn introspect_post(
    core: Core,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    let request = client_request(&headers, form).map_err(WebError::oauth)?;
    revocation::introspect(&core.ctx(), &core.keys, &request)
        .await
        .map(token_response)
        .map_err(client_error)
}

/// 401 for a bearer token that is missing (no error code, RFC 6750 §3.1) or no good.
fn unauthorized(error: Option<&str>) -> WebError {
    let (challenge, description) = match error {
        Some(e) => (
            format!("Bearer realm=\"usher\", error=\"{e}\""),
            "the access token is invalid, expired or revoked",
        ),
        None => (
            "Bearer realm=\"usher\"".to_string(),
            "a bearer access token is required",
        ),
    };
    let error = WebError::oauth(OAuthError::new(ErrorCode::InvalidToken, description));
    match HeaderValue::from_str(&challenge) {
        Ok(v) => error.with_challenge(v),
        Err(_) => error,
    }
}

async fn userinfo(core: Core, token: Option<String>) -> Result<Response, WebError> {
    let token = token.ok_or_else(|| unauthorized(None))?;
    let claims = token::userinfo(&core.ctx(), &core.keys, &token)
        .await?
        .ok_or_else(|| unauthorized(Some("invalid_token")))?;
    let mut res = Json(claims).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

pub async fn userinfo_get(core: Core, headers: HeaderMap) -> Result<Response, WebError> {
    userinfo(core, bearer(&headers)).await
}

pub async fn userinfo_post(
    core: Core,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    // The token may come in the header or, form-encoded, in the body (RFC 6750 §2.2);
    // a body is optional, so it is read raw rather than through the Form extractor.
    let token = bearer(&headers).or_else(|| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    userinfo(core, token).await
}

/// Sign out and show where to go next: the app's registered return address, or the
/// signed-out page.
async fn finish_logout(
    state: &Shared,
    core: Core,
    jar: CookieJar,
    target: logout::Target,
) -> Result<Response, WebError> {
    let config = core.config.clone();
    let session = cookies::get(&jar, &config, cookies::SESSION);
    logout::end_session(&core.ctx(), session.as_deref()).await?;
    let jar = cookies::clear_session(jar, &config);
    let res = match target.return_url() {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => state.render(
            "message.html",
            &MessagePage {
                layout: state.layout(&config, "You are signed out", None),
                message: "You have signed out of Usher. You can close this window.".into(),
            },
        )?,
    };
    Ok((jar, res).into_response())
}

fn logout_target(
    core: &Core,
    params: &HashMap<String, String>,
) -> Result<logout::Target, WebError> {
    logout::target(&core.ctx(), &core.keys, params).map_err(WebError::bad_request)
}

pub async fn logout_get(
    State(state): State<Shared>,
    core: Core,
    jar: CookieJar,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let target = logout_target(&core, &params)?;
    let session = cookies::get(&jar, &core.config, cookies::SESSION);
    match logout::decide(&core.ctx(), &target, session.as_deref()).await? {
        logout::Decision::SignOut => finish_logout(&state, core, jar, target).await,
        logout::Decision::Confirm => {
            let config = &core.config;
            let (jar, browser) = cookies::ensure_browser(jar, config);
            let page = LogoutPage {
                layout: state.layout(config, "Sign out", None),
                action: format!("{}/logout", config.issuer.path().trim_end_matches('/')),
                csrf: state.csrf_token(&browser),
                post_logout_redirect_uri: target.redirect,
                state: target.state,
                client_id: target.client_id,
                // Only a live session is asked about.
                signed_in: true,
            };
            Ok((jar, state.render("logout.html", &page)?).into_response())
        }
    }
}

pub async fn logout_post(
    State(state): State<Shared>,
    core: Core,
    jar: CookieJar,
    CsrfForm(params): CsrfForm<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let target = logout_target(&core, &params)?;
    finish_logout(&state, core, jar, target).await
}
