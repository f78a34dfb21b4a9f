//! The token endpoint: client authentication, the `authorization_code` and
//! `refresh_token` grants, and minting ID and access tokens. The `client_credentials`
//! grant for the admin APIs lives in `client_credentials.rs`.
//!
//! Signing and the store's flush are blocking work; the web layer runs [`exchange`] on
//! the blocking pool.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::claims::{scoped_claims, RESERVED};
use super::error::{ErrorCode, OAuthError};
use super::keys::Keys;
use crate::config::{App, Config, GrantType, SigningAlg};
use crate::context::Ctx;
use crate::crypto::{b64url, random_token, sha256, time_prefixed_id, token_hash};
use crate::limits;
use crate::secret::ct_eq;
use crate::store::{Grant, Redeem, RefreshRecord, Rotate, StoreError, User};

/// A token request, already split from its HTTP envelope.
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub params: HashMap<String, String>,
    /// The decoded `Authorization: Basic` pair, when sent.
    pub basic: Option<(String, String)>,
}

/// The cap on the value of token parameter `name`, in bytes.
fn cap(name: &str) -> usize {
    match name {
        // RFC 7636 §4.1: 43 to 128 characters.
        "code_verifier" => limits::CODE_CHALLENGE_MAX,
        "redirect_uri" => limits::URL_MAX,
        "scope" => limits::SCOPE_MAX,
        "client_id" => limits::CLIENT_ID_MAX,
        _ => limits::PARAM_MAX,
    }
}

impl TokenRequest {
    /// A request from its form parameters, each allowed at most once (RFC 6749 §3.2)
    /// and within its cap (`crate::limits`), and the `Authorization` header, if any.
    pub fn parse(
        pairs: Vec<(String, String)>,
        authorization: Option<&str>,
    ) -> Result<TokenRequest, OAuthError> {
        if pairs.len() > limits::PARAMS_MAX {
            return Err(OAuthError::invalid_request(format!(
                "the request has {} parameters; at most {} are accepted",
                pairs.len(),
                limits::PARAMS_MAX
            )));
        }
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if name.len() > limits::PARAM_NAME_MAX {
                return Err(OAuthError::invalid_request(format!(
                    "a parameter name is too long (at most {} bytes)",
                    limits::PARAM_NAME_MAX
                )));
            }
            if value.len() > cap(&name) {
                return Err(OAuthError::invalid_request(format!(
                    "{name} is too long (at most {} bytes)",
                    cap(&name)
                )));
            }
            if params.contains_key(&name) {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {name} is given more than once"
                )));
            }
            params.insert(name, value);
        }
        // An oversized Basic pair is refused like an oversized form parameter.
        let basic = authorization.and_then(parse_basic);
        if let Some((id, secret)) = &basic {
            if id.len() > limits::CLIENT_ID_MAX || secret.len() > limits::PARAM_MAX {
                return Err(OAuthError::invalid_request(
                    "the Authorization header's client credentials are too long",
                ));
            }
        }
        Ok(TokenRequest { params, basic })
    }

    /// The `grant_type` asked for, as sent.
    pub fn grant_type(&self) -> Option<&str> {
        self.params.get("grant_type").map(String::as_str)
    }
}

/// A failed token request; `basic_auth` says the client authenticated with HTTP Basic,
/// which decides the `WWW-Authenticate` challenge of a 401 (RFC 6749 §5.2).
#[derive(Debug)]
pub struct TokenError {
    pub error: OAuthError,
    pub basic_auth: bool,
}

impl TokenError {
    /// The `WWW-Authenticate` challenge of a refused client: a client that used Basic
    /// is asked again plainly; one that did not is told why.
    pub fn challenge(&self) -> Option<&'static str> {
        if self.error.code != ErrorCode::InvalidClient {
            None
        } else if self.basic_auth {
            Some("Basic realm=\"usher\"")
        } else {
            Some("Basic realm=\"usher\", error=\"invalid_client\"")
        }
    }

    /// When the store could not be reached: the internal detail, which the web layer
    /// logs under a request id while the client is told to retry (503, `Retry-After`).
    pub fn unavailable(&self) -> Option<&str> {
        (self.error.code == ErrorCode::TemporarilyUnavailable).then_some(&self.error.description)
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        let error = match e {
            StoreError::Unavailable(detail) => {
                OAuthError::new(ErrorCode::TemporarilyUnavailable, detail)
            }
            e => {
                tracing::error!(error = %e, "store failure on the token endpoint");
                OAuthError::server_error()
            }
        };
        TokenError {
            error,
            basic_auth: false,
        }
    }
}

/// Decode an `Authorization: Basic` header value into `(client_id, client_secret)`,
/// undoing the form-encoding RFC 6749 §2.3.1 applies to both parts.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// Claims of an access token (a JWT with `typ: at+jwt`, RFC 9068).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    /// The grant (token family); revoking it invalidates this token at userinfo.
    /// Empty for `client_credentials` tokens, which belong to no user grant.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gid: String,
}

/// The client of a token, revocation or introspection request: HTTP Basic, or
/// `client_id` (and `client_secret`) in the form; a public client names itself only.
pub(super) fn authenticate<'c>(
    config: &'c Config,
    req: &TokenRequest,
) -> Result<&'c App, TokenError> {
    let form_secret = req.params.get("client_secret").filter(|s| !s.is_empty());
    let deny = |d: &str, basic| TokenError {
        error: OAuthError::invalid_client(d),
        basic_auth: basic,
    };
    let (client_id, secret, basic) = match &req.basic {
        Some((id, secret)) => {
            if form_secret.is_some() {
                return Err(TokenError {
                    error: OAuthError::invalid_request(
                        "use one client authentication method, not two",
                    ),
                    basic_auth: false,
                });
            }
            (id.as_str(), Some(secret.as_str()), true)
        }
        None => match req.params.get("client_id") {
            Some(id) => (id.as_str(), form_secret.map(String::as_str), false),
            None => return Err(deny("client authentication is missing", false)),
        },
    };
    let app = super::authorize::app_by_client_id(config, client_id)
        .ok_or_else(|| deny("unknown client or bad credentials", basic))?;
    match (&app.client_secret, secret) {
        (Some(expected), Some(given)) if expected.matches(given) => Ok(app),
        (Some(_), _) => Err(deny("unknown client or bad credentials", basic)),
        (None, None) | (None, Some("")) => Ok(app),
        (None, Some(_)) => Err(deny("this is a public client; it has no secret", basic)),
    }
}

fn grant_error(d: &str) -> TokenError {
    TokenError {
        error: OAuthError::invalid_grant(d),
        basic_auth: false,
    }
}

/// Handle one token request. Blocking (signing, flush).
pub async fn exchange(ctx: &Ctx<'_>, keys: &Keys, req: &TokenRequest) -> Result<Value, TokenError> {
    let app = authenticate(ctx.config, req)?;
    let param = |k: &str| {
        req.params
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let user_grant = |grant: &str| {
        if app.allows(GrantType::AuthorizationCode) {
            Ok(())
        } else {
            Err(TokenError {
                error: OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    format!("this client may not use the {grant} grant"),
                ),
                basic_auth: false,
            })
        }
    };
    match param("grant_type") {
        Some("authorization_code") => {
            user_grant("authorization_code")?;
            authorization_code(ctx, keys, app, req).await
        }
        Some("refresh_token") => {
            user_grant("refresh_token")?;
            refresh(ctx, keys, app, req).await
        }
        Some("client_credentials") => {
            super::client_credentials::grant(ctx.config, keys, ctx.now, app, req)
        }
        Some(_) => Err(TokenError {
            error: OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "supported grants: authorization_code, refresh_token, client_credentials",
            ),
            basic_auth: false,
        }),
        None => Err(TokenError {
            error: OAuthError::invalid_request("grant_type is missing"),
            basic_auth: false,
        }),
    }
}

async fn authorization_code(
    ctx: &Ctx<'_>,
    keys: &Keys,
    app: &App,
    req: &TokenRequest,
) -> Result<Value, TokenError> {
    let (config, store, now) = (ctx.config, ctx.store, ctx.now);
    let code = req
        .params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TokenError {
            error: OAuthError::invalid_request("code is missing"),
            basic_auth: false,
        })?;
    let grant_id = time_prefixed_id(now);
    // One call redeems the code and reads what the exchange checks next.
    let redemption = store
        .redeem_code_at(&token_hash(code), &grant_id, now)
        .await?;
    let record = match redemption.redeem {
        Redeem::Fresh(r) => r,
        Redeem::Unknown => return Err(grant_error("the code is invalid")),
        Redeem::Reused(r) => {
            // A second use means the code leaked: revoke what the first use issued.
            if let Some(first) = &r.redeemed_by {
                // The first exchange may not have written its grant yet: bar it, so
                // it cannot issue tokens afterwards.
                store
                    .bar_grant(&Grant {
                        id: first.clone(),
                        client_id: r.client_id.clone(),
                        scopes: r.scopes.clone(),
                        nonce: r.nonce.clone(),
                        data: r.grant.clone(),
                        revoked: true,
                        offline: is_offline(&r.scopes),
                        created_at: now,
                        expires_at: now + config.security.refresh_token_ttl,
                    })
                    .await?;
                store.flush().await?;
                tracing::warn!(client = %r.client_id, grant = %first, "authorization code reused; grant revoked");
            }
            return Err(grant_error("the code has already been used"));
        }
    };
    let standing = Standing {
        user: redemption.user,
        session_live: redemption.session_live,
    };
    let result = redeemed(ctx, keys, app, req, (record, standing), grant_id).await;
    if result.is_err() {
        // The code is used up whatever went wrong; that is durable before the answer.
        // (A success is made durable by `issue`, with everything it wrote: one fsync.)
        store.flush().await?;
    }
    result
}

/// What a redeemed code's exchange found, read with the redemption: the grant's
/// account as it is now, and whether its sign-in session still lives.
struct Standing {
    user: Option<User>,
    session_live: bool,
}

/// The rest of a code exchange, once the code is marked redeemed.
async fn redeemed(
    ctx: &Ctx<'_>,
    keys: &Keys,
    app: &App,
    req: &TokenRequest,
    (record, standing): (crate::store::CodeRecord, Standing),
    grant_id: String,
) -> Result<Value, TokenError> {
    let (config, store, now) = (ctx.config, ctx.store, ctx.now);
    if now > record.expires_at {
        return Err(grant_error("the code has expired"));
    }
    if record.client_id != app.client_id {
        return Err(grant_error("the code was issued to another client"));
    }
    if req.params.get("redirect_uri").map(String::as_str) != Some(record.redirect_uri.as_str()) {
        return Err(grant_error(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = req.params.get("code_verifier").filter(|v| !v.is_empty());
    match (&record.code_challenge, verifier) {
        (Some(challenge), Some(v)) => {
            let computed = b64url(&sha256(v.as_bytes()));
            if !ct_eq(computed.as_bytes(), challenge.as_bytes()) {
                return Err(grant_error(
                    "code_verifier does not match the code_challenge",
                ));
            }
        }
        (Some(_), None) => return Err(grant_error("code_verifier is required")),
        (None, Some(_)) => {
            return Err(grant_error(
                "code_verifier given but the request had no code_challenge",
            ))
        }
        (None, None) => {}
    }
    let user = live(record.grant.user_id.as_deref(), standing.user)?;
    // The session the code was issued in must still be there: signing out, a new
    // password or a disabled account between sign-in and exchange ends it, and with it
    // every code it issued (an offline grant included, which would otherwise outlive
    // the revocation that just missed it).
    if !standing.session_live {
        return Err(grant_error("the sign-in session has ended"));
    }
    let grant = Grant {
        id: grant_id,
        client_id: app.client_id.clone(),
        scopes: record.scopes.clone(),
        nonce: record.nonce.clone(),
        data: record.grant.clone(),
        revoked: false,
        offline: is_offline(&record.scopes),
        created_at: now,
        expires_at: now + config.security.refresh_token_ttl,
    };
    // The grant and its first refresh token are written together.
    let refresh = random_token(32);
    let first = RefreshRecord {
        grant_id: grant.id.clone(),
        expires_at: grant.expires_at,
        used: false,
    };
    if !store
        .create_grant_with_refresh(&grant, &token_hash(&refresh), &first)
        .await?
    {
        return Err(grant_error("the code has already been used"));
    }
    issue(ctx, keys, app, &grant, user.as_ref(), &refresh).await
}

/// The scope that lets a grant outlive its SSO session.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Whether these scopes make an `offline` grant.
pub fn is_offline(scopes: &[String]) -> bool {
    scopes.iter().any(|s| s == OFFLINE_ACCESS)
}

/// Whether the SSO session a grant (or code) was issued under is still there and
/// unexpired. A grant from before grants named their session has nothing to check.
pub(super) async fn session_lives(
    ctx: &Ctx<'_>,
    data: &crate::store::GrantData,
) -> Result<bool, StoreError> {
    match &data.session {
        None => Ok(true),
        Some(hash) => Ok(ctx
            .store
            .session(hash)
            .await?
            .is_some_and(|s| s.expires_at > ctx.now)),
    }
}

/// The grant's account (`user_id`) as `found` in the store: refused when it was
/// disabled or deleted since.
fn live(user_id: Option<&str>, found: Option<User>) -> Result<Option<User>, TokenError> {
    match (user_id, found) {
        (None, _) => Ok(None),
        (Some(id), Some(u)) if u.id == id && !u.disabled => Ok(Some(u)),
        _ => Err(grant_error("the account is disabled or no longer exists")),
    }
}

async fn refresh(
    ctx: &Ctx<'_>,
    keys: &Keys,
    app: &App,
    req: &TokenRequest,
) -> Result<Value, TokenError> {
    let (store, now) = (ctx.store, ctx.now);
    let presented = req
        .params
        .get("refresh_token")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TokenError {
            error: OAuthError::invalid_request("refresh_token is missing"),
            basic_auth: false,
        })?;
    let new_token = random_token(32);
    // Rotate first: a presented refresh token is spent whatever comes next, so two
    // parallel uses cannot both succeed. One presented by another client has leaked,
    // and its family is revoked. The same call reads the grant, its session and its
    // account.
    let rotation = store
        .rotate_refresh_at(&token_hash(presented), &token_hash(&new_token), now)
        .await?;
    let old = match rotation.rotate {
        Rotate::Rotated(old) => old,
        Rotate::Unknown => return Err(grant_error("the refresh token is invalid")),
        Rotate::Reused(old) => {
            store.revoke_grant(&old.grant_id).await?;
            store.flush().await?;
            tracing::warn!(grant = %old.grant_id, "refresh token reused; family revoked");
            return Err(grant_error("the refresh token has already been used"));
        }
    };
    let grant = rotation
        .grant
        .ok_or_else(|| grant_error("the refresh token is invalid"))?;
    if grant.revoked {
        return Err(grant_error("the grant was revoked"));
    }
    if grant.client_id != app.client_id {
        store.revoke_grant(&grant.id).await?;
        store.flush().await?;
        return Err(grant_error(
            "the refresh token was issued to another client",
        ));
    }
    if now > old.expires_at || now > grant.expires_at {
        return Err(grant_error("the refresh token has expired"));
    }
    // Tokens die with the session that issued them, unless offline access was granted.
    if !grant.offline && !rotation.session_live {
        store.revoke_grant(&grant.id).await?;
        store.flush().await?;
        return Err(grant_error("the sign-in session has ended"));
    }
    let mut grant = grant;
    if let Some(scope) = req.params.get("scope").filter(|s| !s.is_empty()) {
        let asked: Vec<String> = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if asked.iter().any(|s| !grant.scopes.contains(s)) {
            return Err(TokenError {
                error: OAuthError::new(
                    ErrorCode::InvalidScope,
                    "a refresh cannot widen the granted scopes",
                ),
                basic_auth: false,
            });
        }
        grant.scopes = asked;
    }
    let user = match live(grant.data.user_id.as_deref(), rotation.user) {
        Ok(u) => u,
        Err(e) => {
            store.revoke_grant(&grant.id).await?;
            store.flush().await?;
            return Err(e);
        }
    };
    issue(ctx, keys, app, &grant, user.as_ref(), &new_token).await
}

/// Mint the tokens of a grant, whose refresh token (the first of a code exchange, or
/// the one a refresh rotated in) is stored already, and make everything durable.
async fn issue(
    ctx: &Ctx<'_>,
    keys: &Keys,
    app: &App,
    grant: &Grant,
    user: Option<&User>,
    refresh_token: &str,
) -> Result<Value, TokenError> {
    let (config, store, now) = (ctx.config, ctx.store, ctx.now);
    let iss = super::issuer(config);
    let sign_failed = |e: super::keys::KeyError| {
        tracing::error!(error = %e, "signing failed");
        TokenError {
            error: OAuthError::server_error(),
            basic_auth: false,
        }
    };
    let access_claims = AccessClaims {
        iss: iss.clone(),
        sub: grant.data.sub.clone(),
        aud: app.client_id.clone(),
        client_id: app.client_id.clone(),
        scope: grant.scopes.join(" "),
        exp: now + config.security.access_token_ttl,
        iat: now,
        jti: random_token(16),
        gid: grant.id.clone(),
    };
    let access_token = keys
        .sign(super::ACCESS_TOKEN_ALG, "at+jwt", &access_claims)
        .map_err(sign_failed)?;

    let mut id = id_token_claims(
        config,
        app,
        &grant.scopes,
        grant.nonce.as_deref(),
        &grant.data,
        user,
        now,
    );
    for (k, v) in
        super::claims::membership_claims(store, app, &grant.scopes, user, &grant.data.claims)
            .await?
    {
        id.insert(k, v);
    }
    if matches!(app.signing_alg, SigningAlg::Rs256 | SigningAlg::Es256) {
        let digest = sha256(access_token.as_bytes());
        id.insert("at_hash".into(), json!(b64url(&digest[..16])));
    }
    let id_token = keys
        .sign(app.signing_alg, "JWT", &Value::Object(id))
        .map_err(sign_failed)?;

    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": config.security.access_token_ttl,
        "id_token": id_token,
        "scope": grant.scopes.join(" "),
        "refresh_token": refresh_token,
    });
    store.flush().await?;
    Ok(body)
}

/// The claims of an ID token (without `at_hash`, which needs the access token). The
/// fixture runner checks exactly these.
pub fn id_token_claims(
    config: &Config,
    app: &App,
    scopes: &[String],
    nonce: Option<&str>,
    data: &crate::store::GrantData,
    user: Option<&User>,
    now: u64,
) -> serde_json::Map<String, Value> {
    let mut id = serde_json::Map::new();
    for (k, v) in scoped_claims(scopes, user, data) {
        if !RESERVED.contains(&k.as_str()) {
            id.insert(k, v);
        }
    }
    id.insert("iss".into(), json!(super::issuer(config)));
    id.insert("sub".into(), json!(data.sub));
    id.insert("aud".into(), json!(app.client_id));
    id.insert("azp".into(), json!(app.client_id));
    id.insert("iat".into(), json!(now));
    id.insert("exp".into(), json!(now + config.security.id_token_ttl));
    id.insert("auth_time".into(), json!(data.auth_time));
    id.insert("amr".into(), json!(data.amr));
    if let Some(nonce) = nonce {
        id.insert("nonce".into(), json!(nonce));
    }
    if let Some(sid) = &data.sid {
        id.insert("sid".into(), json!(sid));
    }
    id
}

/// Userinfo for a bearer access token; `None` means `invalid_token`.
pub async fn userinfo(
    ctx: &Ctx<'_>,
    keys: &Keys,
    token: &str,
) -> Result<Option<Value>, StoreError> {
    let (config, store, now) = (ctx.config, ctx.store, ctx.now);
    let Some(claims) = keys.verify::<AccessClaims>(token, "at+jwt", &super::issuer(config)) else {
        return Ok(None);
    };
    if claims.exp <= now {
        return Ok(None);
    }
    let Some(grant) = store.grant(&claims.gid).await? else {
        return Ok(None);
    };
    if grant.data.sub != claims.sub || !super::revocation::live_grant(ctx, &grant).await? {
        return Ok(None);
    }
    let scopes: Vec<String> = claims.scope.split(' ').map(String::from).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Ok(None);
    }
    let user = match grant.data.user_id.as_deref() {
        Some(id) => match store.user(id).await? {
            Some(u) if !u.disabled => Some(u),
            _ => return Ok(None),
        },
        None => None,
    };
    let mut out = scoped_claims(&scopes, user.as_ref(), &grant.data);
    if let Some(app) = super::authorize::app_by_client_id(config, &grant.client_id) {
        out.extend(
            super::claims::membership_claims(
                store,
                app,
                &scopes,
                user.as_ref(),
                &grant.data.claims,
            )
            .await?,
        );
    }
    for r in RESERVED {
        out.remove(*r);
    }
    out.insert("sub".into(), json!(grant.data.sub));
    Ok(Some(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_parameter_given_twice_is_an_invalid_request() {
        let e = TokenRequest::parse(pairs(&[("code", "a"), ("code", "b")]), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("code"), "{e}");
        let basic = format!("Basic {}", STANDARD.encode("my%20app:s%3Ecret"));
        let req =
            TokenRequest::parse(pairs(&[("grant_type", "refresh_token")]), Some(&basic)).unwrap();
        assert_eq!(req.grant_type(), Some("refresh_token"));
        assert_eq!(req.basic, Some(("my app".into(), "s>cret".into())));
    }

    #[test]
    fn only_a_refused_client_is_challenged_and_basic_users_without_an_error() {
        let refused = |basic_auth| TokenError {
            error: OAuthError::invalid_client("bad credentials"),
            basic_auth,
        };
        assert_eq!(refused(true).challenge(), Some("Basic realm=\"usher\""));
        assert_eq!(
            refused(false).challenge(),
            Some("Basic realm=\"usher\", error=\"invalid_client\"")
        );
        let grant = TokenError {
            error: OAuthError::invalid_grant("expired"),
            basic_auth: true,
        };
        assert_eq!(grant.challenge(), None);
    }

    #[test]
    fn parameters_over_their_caps_or_too_many_are_invalid_requests() {
        for (name, len) in [
            ("code", limits::PARAM_MAX + 1),
            ("code_verifier", 129),
            ("redirect_uri", limits::URL_MAX + 1),
            ("refresh_token", limits::PARAM_MAX + 1),
        ] {
            let e = TokenRequest::parse(pairs(&[(name, &"a".repeat(len))]), None).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(e.description.contains(name), "{e}");
        }
        assert!(TokenRequest::parse(pairs(&[("code_verifier", &"a".repeat(128))]), None).is_ok());
        let many: Vec<(String, String)> = (0..=limits::PARAMS_MAX)
            .map(|i| (format!("p{i}"), String::new()))
            .collect();
        assert!(TokenRequest::parse(many, None).is_err());
        let long_id = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:s", "i".repeat(300)))
        );
        assert!(TokenRequest::parse(vec![], Some(&long_id)).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn header() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,60}",
                ".{0,40}".prop_map(|s| format!("Basic {}", STANDARD.encode(s))),
                "[A-Za-z0-9+/=%: ]{0,40}".prop_map(|s| format!("Basic {s}")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any form and header is a request within the caps or an invalid_request.
            #[test]
            fn any_form_is_parsed_or_refused(
                form in prop::collection::vec(
                    (
                        prop_oneof![
                            Just("code".to_string()),
                            Just("code_verifier".to_string()),
                            Just("grant_type".to_string()),
                            ".{0,80}",
                        ],
                        prop_oneof![".{0,30}", (0usize..5000).prop_map(|n| "v".repeat(n))],
                    ),
                    0..40,
                ),
                authorization in proptest::option::of(header()),
            ) {
                match TokenRequest::parse(form, authorization.as_deref()) {
                    Ok(req) => {
                        prop_assert!(req.params.len() <= limits::PARAMS_MAX);
                        for (k, v) in &req.params {
                            prop_assert!(v.len() <= cap(k));
                        }
                    }
                    Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidRequest),
                }
            }

            /// RFC 6749 §2.3.1: each part form-encoded, then Base64; any header at all
            /// decodes or is ignored.
            #[test]
            fn basic_credentials_read_back_what_the_client_encoded(
                id in ".{0,30}",
                secret in ".{0,30}",
                noise in header(),
            ) {
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let h = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(&id), enc(&secret))));
                prop_assert_eq!(parse_basic(&h), Some((id, secret)));
                let _ = parse_basic(&noise);
            }
        }
    }
}
