//! The OpenID Connect stand-in, modelled on Google: discovery, a JWKS with one RSA key
//! made at start, the authorization endpoint with its consent page, the token endpoint
//! (client_secret_basic or client_secret_post, PKCE S256 required) and userinfo.
//!
//! Claims follow the granted scopes as Google's do: `email` and `email_verified` with
//! `email`, `name` and `preferred_username` with `profile`; `amr` and the user's extra
//! claims always. [`Faults`](super::Faults) bend the ID token on purpose.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Map, Value};

use super::consent::{self, Refused};
use super::params::{is_pkce_string, pkce_matches, ClientAuth, Params};
use super::{pages, AccessGrant, Grant, Pending, Shared, StandinUser, UserinfoFault, ACCESS_TTL};
use crate::crypto::{b64url, random_token, sha256, unix_now};

/// The RS256 key that signs ID tokens, made fresh at every start, and parsed once (a
/// load test signs an ID token per sign-in).
pub(super) struct SigningKey {
    kid: String,
    pair: ring::signature::RsaKeyPair,
    jwk: Value,
}

impl SigningKey {
    pub(super) fn generate() -> std::io::Result<SigningKey> {
        let key =
            rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(std::io::Error::other)?;
        let der = key.to_pkcs1_der().map_err(std::io::Error::other)?;
        let kid = format!("standin-{}", random_token(8));
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": b64url(&key.n().to_bytes_be()),
            "e": b64url(&key.e().to_bytes_be()),
        });
        let pair = ring::signature::RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SigningKey { kid, pair, jwk })
    }

    fn sign(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let header = json!({ "typ": "JWT", "alg": "RS256", "kid": self.kid });
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut jws = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(&payload)
        );
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                jws.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "RSA signing failed".to_string())?;
        jws.push('.');
        jws.push_str(&b64url(&sig));
        Ok(jws)
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery_get))
        .route("/jwks", get(jwks_get))
        .route("/authorize", get(authorize_get).post(consent::consent_post))
        .route("/token", axum::routing::post(token_post))
        .route("/userinfo", get(userinfo).post(userinfo))
}

async fn discovery_get(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let base = &shared.base_url;
    let issuer = shared
        .faults()
        .discovery_issuer
        .unwrap_or_else(|| shared.issuer.clone());
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nonce", "at_hash", "amr",
            "email", "email_verified", "name", "preferred_username",
        ],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks_get(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let keys: Vec<Value> = shared.key.iter().map(|k| k.jwk.clone()).collect();
    Json(json!({ "keys": keys }))
}

async fn authorize_get(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let redirect_uri = match consent::client_and_redirect(&shared, &params) {
        Ok(uri) => uri,
        Err(reason) => return pages::error(StatusCode::BAD_REQUEST, &reason),
    };
    let state = params.get("state");
    let refuse = |error: &str, description: &str| {
        consent::error_redirect(&shared, &redirect_uri, state, error, description)
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return refuse(
                "unsupported_response_type",
                "Only response_type=code is supported.",
            )
        }
        None => return refuse("invalid_request", "response_type is required."),
    }
    let scope = params.get("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return refuse("invalid_scope", "The scope must include openid.");
    }
    if state.is_none() {
        return refuse("invalid_request", "state is required.");
    }
    let Some(nonce) = params.get("nonce") else {
        return refuse("invalid_request", "nonce is required.");
    };
    let Some(challenge) = params.get("code_challenge") else {
        return refuse(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256.",
        );
    };
    if params.get("code_challenge_method") != Some("S256") {
        return refuse("invalid_request", "code_challenge_method must be S256.");
    }
    if !is_pkce_string(challenge) {
        return refuse("invalid_request", "code_challenge is malformed.");
    }
    // There is no session to reuse, so a silent request can never succeed.
    if params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|v| v == "none"))
    {
        return refuse("login_required", "The user must sign in interactively.");
    }
    let pending = Pending {
        redirect_uri: redirect_uri.clone(),
        state: state.map(str::to_string),
        nonce: Some(nonce.to_string()),
        scope: scope.to_string(),
        code_challenge: Some(challenge.to_string()),
        expires_at: 0,
    };
    let request_id = consent::hold(&shared, pending, unix_now());
    let users = shared.listed_users();
    pages::Consent {
        heading: format!("{} wants to sign you in", shared.client_id),
        intro: format!(
            "Choose the account to continue to {} with. (Stand-in OpenID provider at {}.)",
            shared.client_id, shared.base_url
        ),
        action: "/authorize",
        request_id: &request_id,
        users: &users,
        scopes: scope.split(' ').filter(|s| !s.is_empty()).collect(),
    }
    .render()
}

/// An RFC 6749 §5.2 error from the token endpoint; `Display` is the error code.
#[derive(Debug, thiserror::Error)]
enum TokenError {
    #[error("invalid_request")]
    InvalidRequest(&'static str),
    #[error("invalid_client")]
    InvalidClient(&'static str),
    #[error("invalid_grant")]
    InvalidGrant(&'static str),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType(&'static str),
    #[error("server_error")]
    ServerError(&'static str),
}

impl TokenError {
    fn description(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidClient(d)
            | TokenError::InvalidGrant(d)
            | TokenError::UnsupportedGrantType(d)
            | TokenError::ServerError(d) => d,
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let status = match self {
            TokenError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            TokenError::ServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = Json(json!({
            "error": self.to_string(),
            "error_description": self.description(),
        }));
        let mut res = (status, no_store(), body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"standin\""),
            );
        }
        res
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

async fn token_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let now = unix_now();
    let params = Params::parse(&body);
    if params.duplicate().is_some() {
        return Err(TokenError::InvalidRequest("A parameter appears twice."));
    }
    match ClientAuth::from_request(&headers, &params) {
        ClientAuth::Malformed => {
            return Err(TokenError::InvalidRequest(
                "Client authentication is malformed or uses more than one method.",
            ))
        }
        auth if !auth.matches(&shared.client_id, &shared.client_secret) => {
            return Err(TokenError::InvalidClient("Client authentication failed."))
        }
        _ => {}
    }
    match params.get("grant_type") {
        Some("authorization_code") => {}
        Some(_) => {
            return Err(TokenError::UnsupportedGrantType(
                "Only authorization_code is supported.",
            ))
        }
        None => return Err(TokenError::InvalidRequest("grant_type is required.")),
    }
    let Some(code) = params.get("code") else {
        return Err(TokenError::InvalidRequest("code is required."));
    };
    let grant = consent::take_code(&shared, code, now).map_err(|r| match r {
        Refused::Unknown => TokenError::InvalidGrant("The code is unknown or expired."),
        Refused::Reused => TokenError::InvalidGrant(
            "The code was already used; the tokens it produced are revoked.",
        ),
    })?;
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(TokenError::InvalidGrant(
            "redirect_uri differs from the authorization request.",
        ));
    }
    let verified = match (&grant.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => pkce_matches(verifier, challenge),
        (None, None) => true,
        _ => false,
    };
    if !verified {
        return Err(TokenError::InvalidGrant(
            "The code_verifier does not match the code_challenge.",
        ));
    }
    let user = shared
        .user(&grant.user_id)
        .ok_or(TokenError::InvalidGrant("The user no longer exists."))?;

    let access_token = format!("ya29.{}", random_token(32));
    let id_token = id_token(&shared, &grant, &user, &access_token, now)?;
    let access = AccessGrant {
        user_id: user.id.clone(),
        scope: grant.scope.clone(),
        expires_at: Some(now + ACCESS_TTL),
    };
    if !consent::activate_token(&shared, code, &access_token, access) {
        return Err(TokenError::InvalidGrant(
            "The code was used twice at once; both requests are refused.",
        ));
    }
    let body = Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL,
        "scope": grant.scope,
        "id_token": id_token,
    }));
    Ok((StatusCode::OK, no_store(), body).into_response())
}

/// The claims about `user` that `scope` allows, plus `amr` and the extra claims.
fn user_claims(user: &StandinUser, scope: &str) -> Map<String, Value> {
    let scopes: Vec<&str> = scope.split(' ').collect();
    let mut claims = Map::new();
    if scopes.contains(&"email") {
        claims.insert("email".into(), json!(user.email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    if scopes.contains(&"profile") {
        claims.insert("name".into(), json!(user.name));
        claims.insert("preferred_username".into(), json!(user.login));
    }
    if !user.amr.is_empty() {
        claims.insert("amr".into(), json!(user.amr));
    }
    for (k, v) in &user.extra_claims {
        claims.insert(k.clone(), v.clone());
    }
    claims
}

/// What an ID token carries when the profile comes from userinfo only: `amr`, nothing
/// about who the user is beyond `sub` (added by the caller).
fn protocol_claims(user: &StandinUser) -> Map<String, Value> {
    let mut claims = Map::new();
    if !user.amr.is_empty() {
        claims.insert("amr".into(), json!(user.amr));
    }
    claims
}

fn id_token(
    shared: &Shared,
    grant: &Grant,
    user: &StandinUser,
    access_token: &str,
    now: u64,
) -> Result<String, TokenError> {
    let faults = shared.faults();
    let Some(key) = &shared.key else {
        tracing::error!("the OIDC stand-in has no signing key");
        return Err(TokenError::ServerError("No signing key."));
    };
    let mut claims = if shared.profile_in_userinfo_only {
        protocol_claims(user)
    } else {
        user_claims(user, &grant.scope)
    };
    let (iat, exp) = if faults.expired_id_token {
        (now.saturating_sub(7200), now.saturating_sub(3600))
    } else {
        (now, now + ACCESS_TTL)
    };
    let iss = if faults.wrong_issuer_in_id_token {
        format!("{}/not-the-issuer", shared.base_url)
    } else {
        shared.issuer.clone()
    };
    let aud = if faults.wrong_audience {
        format!("{}-someone-else", shared.client_id)
    } else {
        shared.client_id.clone()
    };
    let nonce = if faults.wrong_nonce {
        Some(random_token(16))
    } else {
        grant.nonce.clone()
    };
    // OIDC Core §3.1.3.6: the left half of the SHA-256 of the access token.
    let digest = sha256(access_token.as_bytes());
    let at_hash = b64url(&digest[..16]);
    for (k, v) in [
        ("iss", json!(iss)),
        ("sub", json!(user.id)),
        ("aud", json!(aud)),
        ("iat", json!(iat)),
        ("exp", json!(exp)),
        ("at_hash", json!(at_hash)),
    ] {
        claims.insert(k.into(), v);
    }
    match nonce {
        Some(n) => claims.insert("nonce".into(), json!(n)),
        None => claims.remove("nonce"),
    };
    let token = key.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "the OIDC stand-in cannot sign an ID token");
        TokenError::ServerError("Cannot sign the ID token.")
    })?;
    Ok(if faults.bad_signature {
        corrupt_signature(&token)
    } else {
        token
    })
}

/// The same JWS with one byte of its signature flipped: still well-formed, never valid.
fn corrupt_signature(token: &str) -> String {
    let Some((signed, sig)) = token.rsplit_once('.') else {
        return token.to_string();
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
    match bytes.first_mut() {
        Some(b) => *b ^= 0x01,
        None => bytes.push(0),
    }
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((user, scope)) = shared.bearer_user(&headers, &["Bearer"], unix_now()) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Bearer error=\"invalid_token\", error_description=\"The access token is missing, unknown or expired.\"",
            )],
            Json(json!({ "error": "invalid_token" })),
        )
            .into_response();
    };
    let mut claims = user_claims(&user, &scope);
    for (k, v) in &user.userinfo_claims {
        claims.insert(k.clone(), v.clone());
    }
    claims.insert("sub".into(), json!(user.id));
    match shared.faults().userinfo {
        None => Json(Value::Object(claims)).into_response(),
        Some(UserinfoFault::WrongSubject) => {
            claims.insert("sub".into(), json!(format!("{}-someone-else", user.id)));
            Json(Value::Object(claims)).into_response()
        }
        Some(UserinfoFault::Huge) => {
            // Many claims of 64 KiB each: about 4 MiB of valid JSON.
            let filler = "x".repeat(64 * 1024);
            for i in 0..64 {
                claims.insert(format!("filler_{i}"), json!(filler));
            }
            Json(Value::Object(claims)).into_response()
        }
        Some(UserinfoFault::NotJson) => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Welcome back!</body></html>",
        )
            .into_response(),
        Some(UserinfoFault::Jwt) => match shared.key.as_ref().map(|k| k.sign(&claims)) {
            Some(Ok(jwt)) => ([(header::CONTENT_TYPE, "application/jwt")], jwt).into_response(),
            _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Some(UserinfoFault::Slow) => {
            // Never answers: the caller's own time limit is what is tested.
            std::future::pending::<()>().await;
            Json(Value::Object(claims)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupted_signatures_keep_their_shape_but_change() {
        let sig = URL_SAFE_NO_PAD.encode([7u8; 256]);
        let token = format!("h.p.{sig}");
        let bad = corrupt_signature(&token);
        assert!(bad.starts_with("h.p."));
        assert_ne!(bad, token);
        assert_eq!(bad.len(), token.len());
    }

    #[test]
    fn claims_follow_scopes_and_extras_override_profile() {
        let mut user = StandinUser::new("s1", "ada", "Ada", "ada@example.com");
        user.extra_claims
            .insert("email_verified".into(), json!("yes"));
        let only_openid = user_claims(&user, "openid");
        assert!(!only_openid.contains_key("email"));
        assert!(!only_openid.contains_key("name"));
        let all = user_claims(&user, "openid email profile");
        assert_eq!(all["email"], "ada@example.com");
        assert_eq!(all["preferred_username"], "ada");
        assert_eq!(all["email_verified"], "yes");
    }
}
