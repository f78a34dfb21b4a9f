//! OIDC connections (`oidc`, `google`): discovery, the authorization URL, and the code
//! exchange with ID-token validation, all through the `openidconnect` crate.

use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;

use super::{fetch, map_claims, Pending, UpstreamError, UpstreamIdentity};
use crate::config::{Connection, UserinfoMode};
use crate::limits::{DISCOVERY_MAX, USERINFO_MAX};

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

/// How long a discovery document or a userinfo answer may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The issuer as configured, which discovery must name exactly.
fn configured_issuer(conn: &Connection) -> Result<&str, UpstreamError> {
    conn.issuer_text
        .as_deref()
        .ok_or_else(|| UpstreamError::Config(format!("connection {} has no issuer", conn.id)))
}

/// Read the provider's discovery document and keys. The document must name the
/// configured issuer exactly (OpenID Connect Discovery §4.3): `https://tenant.example/`
/// and `https://tenant.example` are different issuers, and the ID token's `iss` is later
/// held to the same string.
pub async fn discover(
    http: &reqwest::Client,
    conn: &Connection,
) -> Result<Metadata, UpstreamError> {
    let issuer = configured_issuer(conn)?;
    let unreachable = |what: &str, e: String| {
        UpstreamError::Unreachable(conn.display_name.clone(), format!("{what}: {e}"))
    };
    // §4: a trailing slash is removed before the well-known path is appended.
    let well_known = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc = fetch::json_object(http, &well_known, None, DISCOVERY_MAX, FETCH_TIMEOUT)
        .await
        .map_err(|e| unreachable("discovery", e.to_string()))?;
    let discovered = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if discovered != issuer {
        return Err(UpstreamError::IssuerMismatch {
            connection: conn.id.clone(),
            configured: issuer.to_string(),
            discovered: crate::limits::clip(discovered, 256),
        });
    }
    let iss_parameter = doc
        .get("authorization_response_iss_parameter_supported")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let provider: CoreProviderMetadata = serde_json::from_value(Value::Object(doc))
        .map_err(|e| unreachable("discovery", e.to_string()))?;
    let jwks = CoreJsonWebKeySet::fetch_async(provider.jwks_uri(), http)
        .await
        .map_err(|e| unreachable("keys", e.to_string()))?;
    Ok(Metadata {
        provider: provider.set_jwks(jwks),
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
    if let Some(url) = userinfo_endpoint(meta, conn)? {
        let access = tokens.access_token().secret();
        let info = userinfo(http, conn, &url, access, &subject).await?;
        raw = merge_under(info, raw);
    }
    // Keep what describes the user; the protocol's own claims mean nothing offline.
    for k in PROTOCOL_CLAIMS {
        raw.remove(*k);
    }
    let claims = map_claims(conn, &raw, DEFAULTS);
    Ok(UpstreamIdentity {
        connection: conn.id.clone(),
        subject,
        claims,
        amr,
        raw,
    })
}

/// Claims about the token rather than the user: dropped from what is kept and mapped.
const PROTOCOL_CLAIMS: &[&str] = &[
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
];

/// Where to read userinfo, if the connection's `userinfo` setting says to: the
/// configured `userinfo_url`, else discovery's `userinfo_endpoint`.
fn userinfo_endpoint(meta: &Metadata, conn: &Connection) -> Result<Option<String>, UpstreamError> {
    let endpoint = conn
        .userinfo_url
        .as_ref()
        .map(|u| u.to_string())
        .or_else(|| {
            meta.provider
                .userinfo_endpoint()
                .map(|u| u.url().to_string())
        });
    match (conn.userinfo, endpoint) {
        (UserinfoMode::Never, _) => Ok(None),
        (UserinfoMode::Auto, found) => Ok(found),
        (UserinfoMode::Always, Some(url)) => Ok(Some(url)),
        (UserinfoMode::Always, None) => Err(UpstreamError::Userinfo(
            conn.display_name.clone(),
            "the provider has no userinfo endpoint (`userinfo: always` needs one; set `userinfo_url` or `userinfo: auto`)".into(),
        )),
    }
}

/// Read userinfo with the access token (OIDC Core §5.3): a JSON object of bounded size
/// whose `sub` is the ID token's (§5.3.2: otherwise the answer must not be used — it
/// may describe someone else).
async fn userinfo(
    http: &reqwest::Client,
    conn: &Connection,
    url: &str,
    access_token: &str,
    subject: &str,
) -> Result<serde_json::Map<String, Value>, UpstreamError> {
    let refuse = |why: String| UpstreamError::Userinfo(conn.display_name.clone(), why);
    let info = fetch::json_object(http, url, Some(access_token), USERINFO_MAX, FETCH_TIMEOUT)
        .await
        .map_err(|e| refuse(e.to_string()))?;
    match info.get("sub").and_then(Value::as_str) {
        Some(sub) if sub == subject => Ok(info),
        Some(_) => Err(refuse(
            "its `sub` is not the ID token's, so it describes someone else".into(),
        )),
        None => Err(refuse("the answer has no `sub`".into())),
    }
}

/// `under`'s claims with `over`'s on top: the ID token, signed and checked, wins every
/// conflict with userinfo.
fn merge_under(
    mut under: serde_json::Map<String, Value>,
    over: serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    // An address and whether it is verified are one fact, taken from one source: the
    // ID token's when it names an address, whatever userinfo says. Mixed, userinfo's
    // `email_verified` of its own address would vouch for the ID token's, which
    // nobody verified — and a verified address links accounts.
    if over.contains_key("email") {
        under.remove("email_verified");
    }
    for (k, v) in over {
        under.insert(k, v);
    }
    under
}

fn payload(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod merge_tests {
    use super::merge_under;
    use serde_json::json;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn userinfo_never_vouches_for_the_id_tokens_address() {
        let info =
            map(json!({"sub": "1", "email": "me@a.example", "email_verified": true, "name": "Me"}));
        let token = map(json!({"sub": "1", "email": "victim@b.example"}));
        let merged = merge_under(info, token);
        assert_eq!(merged["email"], "victim@b.example");
        assert_eq!(merged.get("email_verified"), None, "{merged:?}");
        assert_eq!(merged["name"], "Me", "other userinfo claims still fill in");
    }

    #[test]
    fn an_address_from_userinfo_alone_keeps_its_verification() {
        let info = map(json!({"sub": "1", "email": "me@a.example", "email_verified": true}));
        let token = map(json!({"sub": "1"}));
        let merged = merge_under(info, token);
        assert_eq!(merged["email"], "me@a.example");
        assert_eq!(merged["email_verified"], true);
        // The ID token's own pair wins whole.
        let info = map(json!({"sub": "1", "email": "me@a.example", "email_verified": true}));
        let token = map(json!({"sub": "1", "email": "me@a.example", "email_verified": false}));
        assert_eq!(merge_under(info, token)["email_verified"], false);
    }
}
