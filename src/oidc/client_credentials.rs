//! The `client_credentials` grant (RFC 6749 §4.4) for Usher's own admin APIs, and the
//! check of the access tokens it mints.
//!
//! A service client authenticates as itself and receives a short-lived signed JWT
//! (`typ: at+jwt`, RFC 9068) whose `sub` and `client_id` are its client id, whose `aud`
//! is the admin API, and whose `scope` lists the API scopes the config grants it. No
//! refresh token: the client simply asks again. Checking a token consults the current
//! config, so removing a client or one of its scopes takes effect at once.

use serde_json::{json, Value};

use super::error::{ErrorCode, OAuthError};
use super::keys::Keys;
use super::token::{AccessClaims, TokenError, TokenRequest};
use crate::config::{ApiScope, App, Config, GrantType};
use crate::crypto::random_token;

/// The `aud` of admin API tokens. One audience covers `/scim/v2` and `/admin/v1`;
/// the scope decides what a token may do there.
pub fn api_audience(config: &Config) -> String {
    format!("{}/scim/v2", super::issuer(config))
}

fn refuse(code: ErrorCode, description: &str) -> TokenError {
    TokenError {
        error: OAuthError::new(code, description),
        basic_auth: false,
    }
}

/// Mint an API access token for an authenticated client. Blocking (signing).
pub(super) fn grant(
    config: &Config,
    keys: &Keys,
    now: u64,
    app: &App,
    req: &TokenRequest,
) -> Result<Value, TokenError> {
    if !app.allows(GrantType::ClientCredentials) || app.is_public() {
        return Err(refuse(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant",
        ));
    }
    let scopes: Vec<ApiScope> = match req.params.get("scope").filter(|s| !s.trim().is_empty()) {
        None => app.scopes.clone(),
        Some(asked) => {
            let mut out = Vec::new();
            for word in asked.split(' ').filter(|w| !w.is_empty()) {
                match ApiScope::parse(word).filter(|s| app.scopes.contains(s)) {
                    Some(s) if !out.contains(&s) => out.push(s),
                    Some(_) => {}
                    None => {
                        return Err(refuse(
                            ErrorCode::InvalidScope,
                            &format!("scope `{word}` is not granted to this client"),
                        ))
                    }
                }
            }
            out
        }
    };
    if scopes.is_empty() {
        return Err(refuse(
            ErrorCode::InvalidScope,
            "this client has no API scopes; grant some with `scopes:` in its config",
        ));
    }
    let scope = scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let ttl = config.security.client_credentials_ttl;
    let claims = AccessClaims {
        iss: super::issuer(config),
        sub: app.client_id.clone(),
        aud: api_audience(config),
        client_id: app.client_id.clone(),
        scope: scope.clone(),
        exp: now + ttl,
        iat: now,
        jti: random_token(16),
        gid: String::new(),
    };
    let token = keys
        .sign(super::ACCESS_TOKEN_ALG, "at+jwt", &claims)
        .map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            refuse(
                ErrorCode::ServerError,
                "the server could not complete the request",
            )
        })?;
    Ok(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    }))
}

/// A verified admin API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    pub client_id: String,
    /// Granted by the token and still allowed by the current config.
    pub scopes: Vec<ApiScope>,
}

impl ServiceToken {
    pub fn has(&self, scope: ApiScope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Check an admin API bearer token: signed by us, not expired, meant for the admin API,
/// and held by a client the config still lets use `client_credentials`. `None` means
/// the token is no good (401); a good token may still lack a scope (403).
pub fn verify(config: &Config, keys: &Keys, now: u64, token: &str) -> Option<ServiceToken> {
    let claims: AccessClaims = keys.verify(token, "at+jwt", &super::issuer(config))?;
    if claims.exp <= now || claims.aud != api_audience(config) || claims.sub != claims.client_id {
        return None;
    }
    let app = super::authorize::app_by_client_id(config, &claims.client_id)?;
    if !app.allows(GrantType::ClientCredentials) {
        return None;
    }
    let scopes = claims
        .scope
        .split(' ')
        .filter_map(ApiScope::parse)
        .filter(|s| app.scopes.contains(s))
        .collect();
    Some(ServiceToken {
        client_id: claims.client_id,
        scopes,
    })
}

/// Why an admin API request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one that is not good: 401.
    Unauthenticated,
    /// A good token without the scope: 403.
    Forbidden(ApiScope),
}

impl Denied {
    /// The explanation the client reads.
    pub fn message(&self) -> String {
        match self {
            Denied::Unauthenticated => {
                "a valid bearer token from the client_credentials grant is required".into()
            }
            Denied::Forbidden(s) => format!("the token lacks the `{}` scope", s.as_str()),
        }
    }

    /// The OAuth error of the refusal (RFC 6750 §3.1).
    pub fn error(&self) -> OAuthError {
        let code = match self {
            Denied::Unauthenticated => ErrorCode::InvalidToken,
            Denied::Forbidden(_) => ErrorCode::InsufficientScope,
        };
        OAuthError::new(code, self.message())
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    pub fn challenge(&self) -> String {
        match self {
            Denied::Unauthenticated => "Bearer realm=\"usher\"".to_string(),
            Denied::Forbidden(s) => format!(
                "Bearer realm=\"usher\", error=\"insufficient_scope\", scope=\"{}\"",
                s.as_str()
            ),
        }
    }
}

/// Let an admin API request in if its bearer token is good and carries `scope`.
pub fn admit(
    config: &Config,
    keys: &Keys,
    now: u64,
    bearer: Option<&str>,
    scope: ApiScope,
) -> Result<ServiceToken, Denied> {
    let token = bearer.ok_or(Denied::Unauthenticated)?;
    let verified = verify(config, keys, now, token).ok_or(Denied::Unauthenticated)?;
    if verified.has(scope) {
        Ok(verified)
    } else {
        Err(Denied::Forbidden(scope))
    }
}
