//! Protocol endpoints: discovery, JWKS, authorize, token, userinfo, logout.

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde_json::json;

use super::{cookies, login, Shared, WebError};
use crate::crypto::{time_prefixed_id, token_hash};
use crate::flow::Flow;
use crate::oidc::authorize::{self, AuthorizeError};
use crate::oidc::token::{self, TokenRequest};
use crate::oidc::{ErrorCode, OAuthError};
use crate::web::pages::{LogoutPage, MessagePage};

pub async fn discovery(State(state): State<Shared>) -> Response {
    Json(crate::oidc::discovery(&state.config())).into_response()
}

pub async fn jwks(State(state): State<Shared>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.keys.jwks()),
    )
        .into_response()
}

/// Who is asking: the peer address and user agent, recorded into the flow for scripts.
pub struct ClientInfo {
    ip: String,
    user_agent: String,
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
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect())
            .unwrap_or_default();
        Ok(ClientInfo { ip, user_agent })
    }
}

pub async fn authorize_get(
    State(state): State<Shared>,
    client: ClientInfo,
    jar: CookieJar,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    authorize(&state, client, jar, params).await
}

pub async fn authorize_post(
    State(state): State<Shared>,
    client: ClientInfo,
    jar: CookieJar,
    Form(params): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    authorize(&state, client, jar, params).await
}

async fn authorize(
    state: &Shared,
    client: ClientInfo,
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
    let mut flow = Flow::new(
        time_prefixed_id(now),
        request,
        &app,
        token_hash(&browser),
        now,
        config.security.flow_ttl,
    );
    flow.ip = client.ip;
    flow.user_agent = client.user_agent;
    if state.recording() {
        flow.recording = Some(Default::default());
    }
    login::advance(state, &config, flow, jar, now).await
}

fn token_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

fn oauth_body(e: &OAuthError) -> serde_json::Value {
    json!({ "error": e.code.as_str(), "error_description": e.description })
}

/// A token request's parameters, each at most once (RFC 6749 section 3.2).
fn single_params(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, OAuthError> {
    let mut params = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if params.contains_key(&name) {
            return Err(OAuthError::invalid_request(format!(
                "the parameter {name} is given more than once"
            )));
        }
        params.insert(name, value);
    }
    Ok(params)
}

pub async fn token(
    State(state): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(pairs)) => single_params(pairs),
        Err(_) => Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )),
    };
    let params = match params {
        Ok(p) => p,
        Err(e) => {
            state.metrics.token(None, e.code.as_str());
            return token_response(StatusCode::BAD_REQUEST, oauth_body(&e));
        }
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token::parse_basic);
    let grant_type = params.get("grant_type").cloned();
    let req = TokenRequest { params, basic };
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let config = st.config();
        token::exchange(&config, st.store.as_ref(), &st.keys, st.now(), &req)
    })
    .await;
    let outcome = match &result {
        Ok(Ok(_)) => "ok",
        Ok(Err(e)) => e.error.code.as_str(),
        Err(_) => "server_error",
    };
    state.metrics.token(grant_type.as_deref(), outcome);
    match result {
        Ok(Ok(body)) => token_response(StatusCode::OK, body),
        Ok(Err(e)) => {
            let status = match e.error.code {
                ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
                ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            let mut res = token_response(status, oauth_body(&e.error));
            if status == StatusCode::UNAUTHORIZED {
                let challenge = if e.basic_auth {
                    "Basic realm=\"usher\""
                } else {
                    "Basic realm=\"usher\", error=\"invalid_client\""
                };
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            res
        }
        Err(join) => {
            tracing::error!(error = %join, "token task failed");
            token_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                oauth_body(&OAuthError::server_error()),
            )
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

async fn userinfo(state: &Shared, token: Option<String>) -> Response {
    let challenge = |error: Option<&str>| {
        let v = match error {
            Some(e) => format!("Bearer realm=\"usher\", error=\"{e}\""),
            None => "Bearer realm=\"usher\"".to_string(),
        };
        let mut res = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&v) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    };
    let Some(token) = token else {
        return challenge(None);
    };
    let config = state.config();
    match token::userinfo(
        &config,
        state.store.as_ref(),
        &state.keys,
        state.now(),
        &token,
    ) {
        Ok(Some(claims)) => {
            let mut res = Json(claims).into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Ok(None) => challenge(Some("invalid_token")),
        Err(e) => {
            tracing::error!(error = %e, "userinfo failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub async fn userinfo_get(State(state): State<Shared>, headers: HeaderMap) -> Response {
    userinfo(&state, bearer(&headers)).await
}

pub async fn userinfo_post(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // The token may come in the header or, form-encoded, in the body (RFC 6750 §2.2);
    // a body is optional, so it is read raw rather than through the Form extractor.
    let token = bearer(&headers).or_else(|| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    userinfo(&state, token).await
}

/// What a logout request asks for, once checked against the config.
struct LogoutTarget {
    redirect: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
    /// The `sub` of a valid `id_token_hint`.
    hinted_sub: Option<String>,
}

fn logout_target(
    state: &Shared,
    params: &HashMap<String, String>,
) -> Result<LogoutTarget, WebError> {
    let config = state.config();
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    #[derive(serde::Deserialize)]
    struct Hint {
        sub: String,
        aud: String,
    }
    let hint: Option<Hint> = get("id_token_hint").and_then(|t| {
        state
            .keys
            .verify_ignoring_expiry(&t, "JWT", &crate::oidc::issuer(&config))
    });
    let client_id = get("client_id").or_else(|| hint.as_ref().map(|h| h.aud.clone()));
    let redirect = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let app = client_id
                .as_deref()
                .and_then(|c| authorize::app_by_client_id(&config, c))
                .ok_or_else(|| {
                    WebError::bad_request("A sign-out return address was given without naming a known application (client_id or id_token_hint).")
                })?;
            if !authorize::registered_redirect(&app.post_logout_redirect_uris, &uri) {
                return Err(WebError::bad_request(format!(
                    "The sign-out return address is not registered for {}.",
                    app.name
                )));
            }
            Some(uri)
        }
    };
    Ok(LogoutTarget {
        redirect,
        state: get("state"),
        client_id,
        hinted_sub: hint.map(|h| h.sub),
    })
}

async fn finish_logout(
    state: &Shared,
    jar: CookieJar,
    target: LogoutTarget,
) -> Result<Response, WebError> {
    let config = state.config();
    if let Some(value) = cookies::get(&jar, &config, cookies::SESSION) {
        state.store.delete_session(&token_hash(&value))?;
        state.flush().await?;
    }
    let jar = cookies::clear_session(jar, &config);
    let res = match target.redirect {
        Some(uri) => {
            let mut url = url::Url::parse(&uri).map_err(|e| WebError::Internal(e.to_string()))?;
            if let Some(s) = &target.state {
                url.query_pairs_mut().append_pair("state", s);
            }
            Redirect::to(url.as_str()).into_response()
        }
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

pub async fn logout_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let config = state.config();
    let target = logout_target(&state, &params)?;
    let session = state.session(
        cookies::get(&jar, &config, cookies::SESSION).as_deref(),
        state.now(),
    )?;
    // A valid hint for the signed-in user (or no session at all) proves the request
    // came from the user's own app: sign out without asking.
    let confirmed = match (&session, &target.hinted_sub) {
        (None, _) => true,
        (Some((_, s)), Some(sub)) => &s.sub == sub,
        (Some(_), None) => false,
    };
    if confirmed {
        return finish_logout(&state, jar, target).await;
    }
    let (jar, browser) = cookies::ensure_browser(jar, &config);
    let page = LogoutPage {
        layout: state.layout(&config, "Sign out", None),
        action: format!("{}/logout", config.issuer.path().trim_end_matches('/')),
        csrf: state.csrf_token(&browser),
        post_logout_redirect_uri: target.redirect,
        state: target.state,
        client_id: target.client_id,
        signed_in: session.is_some(),
    };
    Ok((jar, state.render("logout.html", &page)?).into_response())
}

pub async fn logout_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(params): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let config = state.config();
    let browser = cookies::get(&jar, &config, cookies::BROWSER);
    if !state.csrf_ok(browser.as_deref(), params.get("csrf").map(String::as_str)) {
        return Err(WebError::csrf());
    }
    let target = logout_target(&state, &params)?;
    finish_logout(&state, jar, target).await
}
