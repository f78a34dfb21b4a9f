//! OIDC connections (`oidc`, `google`): discovery, the authorization URL, and the code
//! exchange with ID-token validation, all through the `openidconnect` crate.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;

use super::{map_claims, Pending, UpstreamError, UpstreamIdentity};
use crate::config::Connection;

/// A provider's discovery document (with its keys), plus whether it promises `iss` in
/// authorization responses.
#[derive(Clone)]
pub struct Metadata {
    provider: CoreProviderMetadata,
    iss_parameter: bool,
}

impl Metadata {
    pub fn issuer(&self) -> &str {
        self.provider.issuer().as_str()
    }

    pub fn iss_parameter(&self) -> bool {
        self.iss_parameter
    }
}

/// Local attribute ← OIDC standard claim.
pub(super) const DEFAULTS: &[(&str, &str)] = &[
    ("email", "email"),
    ("email_verified", "email_verified"),
    ("name", "name"),
    ("given_name", "given_name"),
    ("family_name", "family_name"),
    ("picture", "picture"),
    ("preferred_username", "preferred_username"),
];

pub async fn discover(
    http: &reqwest::Client,
    conn: &Connection,
) -> Result<Metadata, UpstreamError> {
    let issuer = conn
        .issuer
        .as_ref()
        .ok_or_else(|| UpstreamError::Config(format!("connection {} has no issuer", conn.id)))?;
    let issuer_url = IssuerUrl::new(issuer.as_str().trim_end_matches('/').to_string())
        .map_err(|e| UpstreamError::Config(e.to_string()))?;
    let provider = CoreProviderMetadata::discover_async(issuer_url, http)
        .await
        .map_err(|e| {
            UpstreamError::Unreachable(conn.display_name.clone(), format!("discovery: {e}"))
        })?;
    // The typed metadata drops extension fields; read this one flag ourselves.
    let well_known = format!(
        "{}/.well-known/openid-configuration",
        issuer.as_str().trim_end_matches('/')
    );
    let iss_parameter = match http.get(&well_known).send().await {
        Ok(res) => res
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| {
                v.get("authorization_response_iss_parameter_supported")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(false),
        Err(_) => false,
    };
    Ok(Metadata {
        provider,
        iss_parameter,
    })
}

fn client(
    meta: &Metadata,
    conn: &Connection,
    callback: &str,
) -> Result<
    openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    UpstreamError,
> {
    let config = |e: openidconnect::url::ParseError| UpstreamError::Config(e.to_string());
    let mut client = CoreClient::from_provider_metadata(
        meta.provider.clone(),
        ClientId::new(conn.client_id.clone()),
        Some(ClientSecret::new(conn.client_secret.expose().to_string())),
    )
    .set_redirect_uri(RedirectUrl::new(callback.to_string()).map_err(config)?);
    // Every URL of a preset may be overridden in the config.
    if let Some(url) = &conn.authorize_url {
        client = client.set_auth_uri(AuthUrl::new(url.to_string()).map_err(config)?);
    }
    Ok(client)
}

pub fn authorize_url(
    meta: &Metadata,
    conn: &Connection,
    callback: &str,
    state: &str,
    nonce: &str,
    verifier: &str,
) -> Result<String, UpstreamError> {
    let client = client(meta, conn, callback)?;
    let state = state.to_string();
    let nonce = nonce.to_string();
    let mut req = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state.clone()),
            move || Nonce::new(nonce.clone()),
        )
        .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
            &PkceCodeVerifier::new(verifier.to_string()),
        ));
    for s in conn.scopes.iter().filter(|s| *s != "openid") {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, _, _) = req.url();
    Ok(url.to_string())
}

pub async fn exchange(
    http: &reqwest::Client,
    meta: &Metadata,
    conn: &Connection,
    callback: &str,
    pending: &Pending,
    code: &str,
) -> Result<UpstreamIdentity, UpstreamError> {
    let name = || conn.display_name.clone();
    let mut client = client(meta, conn, callback)?;
    let request = match &conn.token_url {
        Some(url) => {
            let token_url =
                TokenUrl::new(url.to_string()).map_err(|e| UpstreamError::Config(e.to_string()))?;
            client
                .clone()
                .set_token_uri(token_url)
                .exchange_code(AuthorizationCode::new(code.to_string()))
                .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
                .request_async(http)
                .await
        }
        None => {
            client = client.clone();
            client
                .exchange_code(AuthorizationCode::new(code.to_string()))
                .map_err(|e| UpstreamError::Config(e.to_string()))?
                .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
                .request_async(http)
                .await
        }
    };
    let tokens = request.map_err(|e| match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            UpstreamError::Provider(name(), r.error().to_string())
        }
        other => UpstreamError::Unreachable(name(), other.to_string()),
    })?;
    let id_token = tokens.id_token().ok_or_else(|| {
        UpstreamError::InvalidToken(name(), "the token response has no ID token".into())
    })?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(pending.nonce.clone()))
        .map_err(|e| UpstreamError::InvalidToken(name(), e.to_string()))?;
    let subject = claims.subject().to_string();
    let amr: Vec<String> = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default();
    // The library has verified the token; read its whole payload for claim mapping,
    // including claims the typed view does not carry.
    let mut raw = payload(&id_token.to_string()).unwrap_or_default();
    let claims = map_claims(conn, &raw, DEFAULTS);
    // Keep what describes the user; the protocol's own claims mean nothing offline.
    for k in [
        "iss",
        "aud",
        "exp",
        "iat",
        "nbf",
        "nonce",
        "at_hash",
        "c_hash",
        "azp",
        "auth_time",
        "jti",
        "sid",
    ] {
        raw.remove(k);
    }
    Ok(UpstreamIdentity {
        connection: conn.id.clone(),
        subject,
        claims,
        amr,
        raw,
    })
}

fn payload(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
