//! Token revocation (RFC 7009, `/revoke`) and introspection (RFC 7662, `/introspect`),
//! without HTTP. Both authenticate the client as the token endpoint does, and both see
//! only the caller's own tokens: a token of another client is not revoked (the answer
//! is the same 200, so a client cannot probe for tokens) and introspects as inactive.
//!
//! A refresh token is found by its hash in the store, an access token by its signature;
//! either leads to its grant. Revoking a refresh token revokes its whole family (the
//! grant), and so does revoking an access token: Usher's access tokens name their
//! grant, and userinfo and introspection refuse a revoked grant's tokens at once.

use serde_json::{json, Value};

use super::error::{ErrorCode, OAuthError};
use super::keys::Keys;
use super::token::{self, AccessClaims, TokenError, TokenRequest};
use crate::audit::{self, kind};
use crate::config::App;
use crate::context::Ctx;
use crate::crypto::token_hash;
use crate::store::{Grant, StoreError};

/// What `token_type_hint` says the token is (RFC 7009 §2.1, RFC 7662 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    AccessToken,
    RefreshToken,
}

fn refuse(code: ErrorCode, description: &str) -> TokenError {
    TokenError {
        error: OAuthError::new(code, description),
        basic_auth: false,
    }
}

/// The token and its hint. A hint naming a kind of token Usher does not issue is
/// `unsupported_token_type`: the client asked about something this server cannot
/// revoke or describe.
fn token_and_hint(req: &TokenRequest) -> Result<(&str, Option<Hint>), TokenError> {
    let token = req
        .params
        .get("token")
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| refuse(ErrorCode::InvalidRequest, "token is missing"))?;
    let hint = match req.params.get("token_type_hint").map(String::as_str) {
        None | Some("") => None,
        Some("access_token") => Some(Hint::AccessToken),
        Some("refresh_token") => Some(Hint::RefreshToken),
        Some(_) => {
            return Err(refuse(
                ErrorCode::UnsupportedTokenType,
                "supported token types: access_token, refresh_token",
            ))
        }
    };
    Ok((token, hint))
}

/// A token of the calling client, as found.
enum Found {
    Refresh {
        record: crate::store::RefreshRecord,
        grant: Grant,
    },
    /// An access token with a good signature; `grant` is `None` for a
    /// `client_credentials` token, which belongs to no grant.
    Access {
        claims: AccessClaims,
        grant: Option<Grant>,
    },
}

/// Find `token` among the caller's tokens, trying the hinted kind first (a wrong hint
/// only costs the other lookup). `None` for an unknown token or another client's.
/// `expired_ok` accepts an expired access token (revoking one still ends its grant).
async fn find(
    ctx: &Ctx<'_>,
    keys: &Keys,
    app: &App,
    token: &str,
    hint: Option<Hint>,
    expired_ok: bool,
) -> Result<Option<Found>, StoreError> {
    let order = match hint {
        Some(Hint::AccessToken) => [Hint::AccessToken, Hint::RefreshToken],
        _ => [Hint::RefreshToken, Hint::AccessToken],
    };
    for kind in order {
        let found = match kind {
            Hint::RefreshToken => refresh_token(ctx, token).await?,
            Hint::AccessToken => access_token(ctx, keys, token, expired_ok).await?,
        };
        if let Some(found) = found {
            let client = match &found {
                Found::Refresh { grant, .. } => grant.client_id.as_str(),
                Found::Access { claims, .. } => claims.client_id.as_str(),
            };
            // Another client's token is neither revoked nor described.
            return Ok((client == app.client_id).then_some(found));
        }
    }
    Ok(None)
}

async fn refresh_token(ctx: &Ctx<'_>, token: &str) -> Result<Option<Found>, StoreError> {
    let Some(record) = ctx.store.refresh_token(&token_hash(token)).await? else {
        return Ok(None);
    };
    Ok(ctx
        .store
        .grant(&record.grant_id)
        .await?
        .map(|grant| Found::Refresh { record, grant }))
}

async fn access_token(
    ctx: &Ctx<'_>,
    keys: &Keys,
    token: &str,
    expired_ok: bool,
) -> Result<Option<Found>, StoreError> {
    let issuer = super::issuer(ctx.config);
    let claims: Option<AccessClaims> = if expired_ok {
        keys.verify_ignoring_expiry(token, "at+jwt", &issuer)
    } else {
        keys.verify(token, "at+jwt", &issuer)
    };
    let Some(claims) = claims else {
        return Ok(None);
    };
    let grant = match claims.gid.as_str() {
        "" => None,
        gid => match ctx.store.grant(gid).await? {
            Some(g) => Some(g),
            // Its grant was swept: nothing left to revoke or describe.
            None => return Ok(None),
        },
    };
    Ok(Some(Found::Access { claims, grant }))
}

/// `POST /revoke`: revoke the grant of the caller's refresh or access token. Unknown,
/// already revoked, expired and other clients' tokens are answered alike, with
/// success (RFC 7009 §2.2). Blocking (flush).
pub async fn revoke(ctx: &Ctx<'_>, keys: &Keys, req: &TokenRequest) -> Result<(), TokenError> {
    let app = token::authenticate(ctx.config, req)?;
    let (token, hint) = token_and_hint(req)?;
    let grant = match find(ctx, keys, app, token, hint, true).await? {
        Some(Found::Refresh { grant, .. }) => Some((grant, "refresh token")),
        Some(Found::Access {
            grant: Some(grant), ..
        }) => Some((grant, "access token")),
        // A client_credentials token is short-lived and belongs to no grant.
        Some(Found::Access { grant: None, .. }) | None => None,
    };
    let Some((grant, what)) = grant.filter(|(g, _)| !g.revoked) else {
        return Ok(());
    };
    ctx.store.revoke_grant(&grant.id).await?;
    ctx.store.flush().await?;
    audit::record(
        ctx.store,
        ctx.now,
        kind::TOKEN_REVOKED,
        Some(&app.client_id),
        grant.data.user_id.as_deref().or(Some(&grant.data.sub)),
        vec![format!("{what} of grant {}", grant.id)],
    )
    .await;
    Ok(())
}

/// `POST /introspect`: whether the caller's token is active, and what it is about
/// (RFC 7662 §2.2). Only a confidential client may ask; anything not active — unknown,
/// expired, revoked, used, another client's, of a disabled account, of an ended
/// session — is `{"active": false}` and nothing else.
pub async fn introspect(
    ctx: &Ctx<'_>,
    keys: &Keys,
    req: &TokenRequest,
) -> Result<Value, TokenError> {
    let app = token::authenticate(ctx.config, req)?;
    if app.client_secret.is_none() {
        return Err(TokenError {
            error: OAuthError::invalid_client("only a confidential client may introspect tokens"),
            basic_auth: req.basic.is_some(),
        });
    }
    let (token, hint) = token_and_hint(req)?;
    let inactive = json!({ "active": false });
    let Some(found) = find(ctx, keys, app, token, hint, false).await? else {
        return Ok(inactive);
    };
    let iss = super::issuer(ctx.config);
    let answer = match found {
        Found::Refresh { record, grant } => {
            let live =
                !record.used && ctx.now <= record.expires_at && live_grant(ctx, &grant).await?;
            if !live {
                return Ok(inactive);
            }
            json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": grant.scopes.join(" "),
                "client_id": grant.client_id,
                "sub": grant.data.sub,
                "iss": iss,
                "exp": record.expires_at,
                "iat": grant.created_at,
            })
        }
        Found::Access { claims, grant } => {
            if claims.exp <= ctx.now {
                return Ok(inactive);
            }
            if let Some(grant) = &grant {
                if grant.data.sub != claims.sub || !live_grant(ctx, grant).await? {
                    return Ok(inactive);
                }
            }
            json!({
                "active": true,
                "token_type": "Bearer",
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
            })
        }
    };
    Ok(answer)
}

/// Whether a grant still issues good tokens: not revoked, its account (if any) still
/// there and enabled, and, unless offline, its SSO session still live — the refresh
/// grant's own checks, so introspection and userinfo never accept what a refresh
/// refuses.
pub(crate) async fn live_grant(ctx: &Ctx<'_>, grant: &Grant) -> Result<bool, StoreError> {
    if grant.revoked || ctx.now > grant.expires_at {
        return Ok(false);
    }
    if let Some(id) = &grant.data.user_id {
        if ctx.store.user(id).await?.is_none_or(|u| u.disabled) {
            return Ok(false);
        }
    }
    Ok(grant.offline || token::session_lives(ctx, &grant.data).await?)
}
