//! Signing in to My Account and out of it, without HTTP.
//!
//! My Account is an ordinary confidential app of Usher itself (`usher-myaccount`): it
//! starts an authorization-code flow with `state` and PKCE, redeems the code in-process,
//! and keeps the access token. Every request then checks that token and the SSO
//! session it was issued under, so signing out anywhere ends My Account too. The shell
//! keeps the start value and the token in cookies; this module decides what they mean.

use std::collections::HashMap;
use std::sync::Arc;

use super::forms::After;
use super::{session_handle, AccountError};
use crate::audit::{self, kind};
use crate::config::{App, Config, MY_ACCOUNT_APP};
use crate::context::Ctx;
use crate::crypto::{b64url, random_token, sha256, token_hash};
use crate::flow::step_up::SECOND_FACTOR_ACR;
use crate::oidc::keys::Keys;
use crate::oidc::token::{self, AccessClaims, TokenRequest};
use crate::secret::ct_eq;
use crate::store::{StoreError, StoreResult, User};

/// The built-in app, when My Account is switched on.
pub fn built_in(config: &Config) -> Option<Arc<App>> {
    config
        .apps
        .get(MY_ACCOUNT_APP)
        .filter(|_| config.my_account.enabled)
        .cloned()
}

/// The account of the browser asking, with what My Account's forms need.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user: User,
    /// The SSO session (store key) the token was issued under.
    pub session_hash: String,
    pub grant_id: String,
}

/// The signed-in account, if My Account's token and the SSO session it came from are
/// both still good; `None` sends the browser through sign-in again. `token` and
/// `session_cookie` are the values of the browser's cookies.
pub async fn signed_in(
    ctx: &Ctx<'_>,
    keys: &Keys,
    token: Option<&str>,
    session_cookie: Option<&str>,
) -> StoreResult<Option<Signed>> {
    let (Some(token), Some(cookie)) = (token, session_cookie) else {
        return Ok(None);
    };
    let issuer = crate::oidc::issuer(ctx.config);
    let Some(claims) = keys.verify::<AccessClaims>(token, "at+jwt", &issuer) else {
        return Ok(None);
    };
    if claims.exp <= ctx.now || claims.client_id != MY_ACCOUNT_APP || claims.aud != MY_ACCOUNT_APP {
        return Ok(None);
    }
    let Some(grant) = ctx.store.grant(&claims.gid).await?.filter(|g| !g.revoked) else {
        return Ok(None);
    };
    let Some(user_id) = grant.data.user_id.as_deref() else {
        return Ok(None);
    };
    let Some(user) = ctx.store.user(user_id).await?.filter(|u| !u.disabled) else {
        return Ok(None);
    };
    let session_hash = token_hash(cookie);
    let Some(session) = ctx
        .store
        .session(&session_hash)
        .await?
        .filter(|s| s.expires_at > ctx.now)
    else {
        return Ok(None);
    };
    let same_session = grant
        .data
        .sid
        .as_deref()
        .is_some_and(|sid| ct_eq(sid.as_bytes(), session_handle(&session_hash).as_bytes()));
    if !same_session || session.user_id.as_deref() != Some(user.id.as_str()) {
        return Ok(None);
    }
    Ok(Some(Signed {
        user,
        session_hash,
        grant_id: grant.id,
    }))
}

/// The start of a sign-in to My Account: where to send the browser, and the value the
/// browser must keep until the answer comes back.
#[derive(Debug)]
pub struct Start {
    pub authorize_url: String,
    /// `state.verifier`, kept by the shell (a short-lived cookie) for [`callback`].
    pub keep: String,
}

pub fn start(config: &Config, app: &App) -> Result<Start, AccountError> {
    begin(config, app, None)
}

/// The start of a sign-in that a credential change asked for: the SSO session may stand
/// in only if it is at most `my_account.step_up_seconds` old (`max_age`), and the
/// sign-in must pass the account's second factor afresh
/// ([`crate::flow::step_up::SECOND_FACTOR_ACR`]). `after` is where the browser goes
/// once it is back.
pub fn start_step_up(config: &Config, app: &App, after: After) -> Result<Start, AccountError> {
    begin(config, app, Some(after))
}

fn begin(config: &Config, app: &App, step_up: Option<After>) -> Result<Start, AccountError> {
    let state = random_token(16);
    let verifier = random_token(32);
    let redirect = app
        .redirect_uris
        .first()
        .ok_or_else(|| AccountError::Internal("the My Account app has no redirect URI".into()))?;
    let mut url = url::Url::parse(&format!("{}/authorize", crate::oidc::issuer(config)))
        .map_err(|e| AccountError::Internal(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.client_id)
        .append_pair("redirect_uri", redirect.as_str())
        .append_pair("scope", "openid profile email")
        .append_pair("state", &state)
        .append_pair("code_challenge", &b64url(&sha256(verifier.as_bytes())))
        .append_pair("code_challenge_method", "S256");
    let keep = match step_up {
        None => format!("{state}.{verifier}"),
        Some(after) => {
            url.query_pairs_mut()
                .append_pair("max_age", &config.my_account.step_up_seconds.to_string())
                .append_pair("acr_values", SECOND_FACTOR_ACR);
            format!("{state}.{verifier}.{}", after.as_str())
        }
    };
    Ok(Start {
        authorize_url: url.into(),
        keep,
    })
}

/// The parts of what the browser kept: `state`, the PKCE verifier, and where to go
/// after a step-up (`None`: an ordinary sign-in).
fn kept_parts(kept: &str) -> Option<(&str, &str, Option<After>)> {
    let mut parts = kept.splitn(3, '.');
    let state = parts.next()?;
    let verifier = parts.next()?;
    let after = parts.next().map(After::parse);
    Some((state, verifier, after))
}

/// A redeemed answer: the access token My Account keeps, where the browser goes, and
/// the message left for the page after a step-up.
#[derive(Debug)]
pub struct Redeemed {
    pub access: String,
    pub after: After,
    pub flash: Option<String>,
}

/// The query of the redirect back to My Account.
#[derive(Debug, Default, Clone)]
pub struct Answer {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Why the answer to a My Account sign-in was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Already used, expired, or from another browser: start again.
    #[error("the sign-in answer is stale")]
    Stale,
    /// The sign-in itself ended without success; the reason is the provider's.
    #[error("the sign-in did not complete: {0}")]
    Unfinished(String),
    /// A pass-through subject (no stored account) signed in through `idp`: there is
    /// nothing to manage.
    #[error("signed in through {idp} without an account")]
    NoAccount { idp: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// Redeem the answer to a sign-in started with [`start`] or [`start_step_up`]; `kept`
/// is what the browser kept. Returns the access token My Account keeps, and where to
/// go next. A subject without an account has
/// its fresh grant revoked and is audited as refused. Blocking (signing, flush).
pub async fn callback(
    ctx: &Ctx<'_>,
    keys: &Keys,
    app: &App,
    kept: Option<&str>,
    answer: Answer,
) -> Result<Redeemed, CallbackError> {
    let (expected, verifier, after) = kept.and_then(kept_parts).ok_or(CallbackError::Stale)?;
    let presented = answer.state.unwrap_or_default();
    if !ct_eq(expected.as_bytes(), presented.as_bytes()) {
        return Err(CallbackError::Stale);
    }
    if let Some(error) = answer.error {
        return Err(CallbackError::Unfinished(
            answer.error_description.unwrap_or(error),
        ));
    }
    let code = answer
        .code
        .filter(|c| !c.is_empty())
        .ok_or(CallbackError::Stale)?;
    let redirect = app
        .redirect_uris
        .first()
        .map(|u| u.to_string())
        .unwrap_or_default();
    let secret = app
        .client_secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let params: HashMap<String, String> = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", verifier),
        ("client_id", MY_ACCOUNT_APP),
        ("client_secret", secret.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let request = TokenRequest {
        params,
        basic: None,
    };
    let body = token::exchange(ctx, keys, &request).await.map_err(|e| {
        tracing::info!(error = %e.error, "My Account code exchange refused");
        CallbackError::Stale
    })?;
    let access = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let claims: AccessClaims = keys
        .verify(&access, "at+jwt", &crate::oidc::issuer(ctx.config))
        .ok_or_else(|| CallbackError::Internal("a fresh access token does not verify".into()))?;
    let grant = ctx
        .store
        .grant(&claims.gid)
        .await?
        .ok_or_else(|| CallbackError::Internal("a fresh grant is missing".into()))?;
    if grant.data.user_id.is_none() {
        ctx.store.revoke_grant(&grant.id).await?;
        ctx.store.flush().await?;
        let idp = grant
            .data
            .sub
            .split('|')
            .next()
            .unwrap_or_default()
            .to_string();
        audit::record(
            ctx.store,
            ctx.now,
            kind::ACCOUNT_REFUSED,
            Some(MY_ACCOUNT_APP),
            Some(&grant.data.sub),
            vec![format!(
                "signed in through `{idp}` without an account (pass-through)"
            )],
        )
        .await;
        return Err(CallbackError::NoAccount { idp });
    }
    // Back from a step-up to the page: the change the user asked for is theirs to make
    // again now (the form's fields are not kept).
    let flash = match (after, grant.data.user_id.as_deref()) {
        (Some(After::Home), Some(user_id)) => {
            let flash = super::forms::Flash {
                user_id: user_id.to_string(),
                notice: Some(format!(
                    "You signed in again. Make your change now: for the next {} minutes, changes to your sign-in need no further check.",
                    ctx.config.my_account.step_up_seconds.div_ceil(60)
                )),
                ..Default::default()
            };
            Some(super::forms::put_flash(ctx, &flash).await?)
        }
        _ => None,
    };
    Ok(Redeemed {
        access,
        after: after.unwrap_or(After::Home),
        flash,
    })
}

/// Sign out of My Account and of the SSO session: the grant of My Account's token is
/// revoked (when it is still good) and the session named by the cookie ends with the
/// grants issued under it, as at the logout endpoint (`offline_access` ones stay).
/// Blocking (flush).
pub async fn sign_out(
    ctx: &Ctx<'_>,
    keys: &Keys,
    token: Option<&str>,
    session_cookie: Option<&str>,
) -> StoreResult<()> {
    if let Some(signed) = signed_in(ctx, keys, token, session_cookie).await? {
        ctx.store.revoke_grant(&signed.grant_id).await?;
    }
    if let Some(value) = session_cookie {
        let hash = token_hash(value);
        ctx.store.delete_session(&hash).await?;
        ctx.store.revoke_session_grants(&hash, true).await?;
    }
    ctx.store.flush().await
}
