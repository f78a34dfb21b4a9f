//! My Account's web shell: signing in to it, the page, and signing out of it. The
//! forms that change things are in `account_forms.rs`; the rules are in `account`.
//!
//! Signing in runs the ordinary authorization-code flow against Usher itself, as the
//! built-in confidential app `usher-myaccount`: `/myaccount` sends the browser to
//! `/authorize` (with `state` and PKCE kept in a short-lived cookie), the app's steps
//! and script run like any other app's — so the SSO session lets a signed-in user
//! straight through — and `/myaccount/callback` redeems the code in-process. The access
//! token it gets is kept in an HttpOnly cookie and checked on every request: signature,
//! expiry, its grant not revoked, the account still enabled, and the SSO session it was
//! issued under still alive — so signing out anywhere ends My Account too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};

use super::pages::{Layout, MessagePage};
use super::{cookies, see_other, Shared, WebError};
use crate::account::{self, Overview};
use crate::audit::{self, kind};
use crate::config::{App, Config, ProfileField, MY_ACCOUNT_APP};
use crate::crypto::{b64url, random_token, sha256, time_prefixed_id, token_hash};
use crate::oidc::token::{self, AccessClaims, TokenRequest};
use crate::secret::ct_eq;
use crate::store::User;

pub(crate) fn base(config: &Config) -> String {
    config.issuer.path().trim_end_matches('/').to_string()
}

pub(crate) fn home(config: &Config) -> String {
    format!("{}/myaccount", base(config))
}

/// The built-in app, or a 404 page when My Account is switched off.
pub(crate) fn built_in(config: &Config) -> Result<Arc<App>, WebError> {
    config
        .apps
        .get(MY_ACCOUNT_APP)
        .filter(|_| config.my_account.enabled)
        .cloned()
        .ok_or_else(|| {
            WebError::page(
                StatusCode::NOT_FOUND,
                "My Account is not available",
                "This server does not offer account self-service.",
            )
        })
}

/// The account of the browser asking, with what My Account's forms need.
pub(crate) struct Signed {
    pub user: User,
    /// The SSO session (store key) the token was issued under.
    pub session_hash: String,
    pub grant_id: String,
    pub browser: String,
}

/// The signed-in account, if My Account's token and the SSO session it came from are
/// both still good; `None` sends the browser through sign-in again.
pub(crate) fn signed_in(
    state: &Shared,
    config: &Config,
    jar: &CookieJar,
    now: u64,
) -> Result<Option<Signed>, WebError> {
    let Some(token) = cookies::get(jar, config, cookies::ACCOUNT) else {
        return Ok(None);
    };
    let Some(claims) =
        state
            .keys
            .verify::<AccessClaims>(&token, "at+jwt", &crate::oidc::issuer(config))
    else {
        return Ok(None);
    };
    if claims.exp <= now || claims.client_id != MY_ACCOUNT_APP || claims.aud != MY_ACCOUNT_APP {
        return Ok(None);
    }
    let Some(grant) = state.store.grant(&claims.gid)?.filter(|g| !g.revoked) else {
        return Ok(None);
    };
    let Some(user_id) = grant.data.user_id.clone() else {
        return Ok(None);
    };
    let Some(user) = state.store.user(&user_id)?.filter(|u| !u.disabled) else {
        return Ok(None);
    };
    let cookie = cookies::get(jar, config, cookies::SESSION);
    let Some((session_hash, session)) = state.session(cookie.as_deref(), now)? else {
        return Ok(None);
    };
    let same_session = grant.data.sid.as_deref().is_some_and(|sid| {
        ct_eq(
            sid.as_bytes(),
            account::session_handle(&session_hash).as_bytes(),
        )
    });
    if !same_session || session.user_id.as_deref() != Some(user.id.as_str()) {
        return Ok(None);
    }
    let browser = cookies::get(jar, config, cookies::BROWSER).unwrap_or_default();
    Ok(Some(Signed {
        user,
        session_hash,
        grant_id: grant.id,
        browser,
    }))
}

/// Send the browser through Usher's own sign-in for the built-in app.
fn start(config: &Config, app: &App, jar: CookieJar) -> Result<Response, WebError> {
    let state = random_token(16);
    let verifier = random_token(32);
    let redirect = app
        .redirect_uris
        .first()
        .ok_or_else(|| WebError::Internal("the My Account app has no redirect URI".into()))?;
    let mut url = url::Url::parse(&format!("{}/authorize", crate::oidc::issuer(config)))
        .map_err(|e| WebError::Internal(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.client_id)
        .append_pair("redirect_uri", redirect.as_str())
        .append_pair("scope", "openid profile email")
        .append_pair("state", &state)
        .append_pair("code_challenge", &b64url(&sha256(verifier.as_bytes())))
        .append_pair("code_challenge_method", "S256");
    let jar = cookies::set(
        jar,
        config,
        cookies::ACCOUNT_START,
        format!("{state}.{verifier}"),
        config.security.flow_ttl,
    );
    Ok((jar, see_other(url.as_str())).into_response())
}

/// A one-time message (and recovery codes) for the next My Account page, kept
/// server-side (`FlashStore`) and named by a cookie.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Flash {
    pub user_id: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub codes: Vec<String>,
}

pub(crate) fn put_flash(
    state: &Shared,
    config: &Config,
    jar: CookieJar,
    flash: &Flash,
    now: u64,
) -> Result<CookieJar, WebError> {
    let id = time_prefixed_id(now);
    let bytes = serde_json::to_vec(flash).map_err(|e| WebError::Internal(e.to_string()))?;
    state
        .store
        .put_flash(&id, &bytes, now.saturating_add(config.security.flow_ttl))?;
    Ok(cookies::set(
        jar,
        config,
        cookies::ACCOUNT_FLASH,
        id,
        config.security.flow_ttl,
    ))
}

fn take_flash(
    state: &Shared,
    config: &Config,
    jar: CookieJar,
    user_id: &str,
    now: u64,
) -> Result<(CookieJar, Flash), WebError> {
    let Some(id) = cookies::get(&jar, config, cookies::ACCOUNT_FLASH) else {
        return Ok((jar, Flash::default()));
    };
    let jar = cookies::clear(jar, config, cookies::ACCOUNT_FLASH);
    let stored = state.store.take_flash(&id, now)?;
    let flash = stored
        .and_then(|b| serde_json::from_slice::<Flash>(&b).ok())
        .filter(|f| f.user_id == user_id)
        .unwrap_or_default();
    Ok((jar, flash))
}

#[derive(Serialize)]
struct FieldView {
    id: &'static str,
    label: &'static str,
    value: String,
    editable: bool,
}

#[derive(Serialize)]
struct IdentityView {
    connection: String,
    label: String,
    subject: String,
}

#[derive(Serialize)]
struct SessionView {
    handle: String,
    current: bool,
    signed_in_at: String,
    expires_at: String,
    method: String,
    apps: String,
}

/// `account.html`.
#[derive(Serialize)]
struct AccountPage {
    layout: Layout,
    csrf: String,
    notice: Option<String>,
    error: Option<String>,
    codes: Vec<String>,
    username: String,
    email: Option<String>,
    email_verified: bool,
    fields: Vec<FieldView>,
    any_editable: bool,
    has_password: bool,
    password_rules: Vec<String>,
    identities: Vec<IdentityView>,
    can_unlink: bool,
    totp: bool,
    recovery_codes_left: usize,
    sessions: Vec<SessionView>,
}

fn connection_label(config: &Config, id: &str) -> String {
    if id == "local" {
        return "password".into();
    }
    config
        .connections
        .get(id)
        .map_or_else(|| id.to_string(), |c| c.display_name.clone())
}

fn page(state: &Shared, config: &Config, o: Overview, csrf: String, flash: Flash) -> AccountPage {
    let u = &o.user;
    let fields = ProfileField::ALL
        .iter()
        .map(|f| FieldView {
            id: f.as_str(),
            label: account::label(*f),
            value: match f {
                ProfileField::Name => u.name.clone(),
                ProfileField::GivenName => u.given_name.clone(),
                ProfileField::FamilyName => u.family_name.clone(),
                ProfileField::Picture => u.picture.clone(),
            }
            .unwrap_or_default(),
            editable: config.my_account.editable.contains(f),
        })
        .collect::<Vec<_>>();
    let app_name = |client_id: &String| {
        config
            .apps
            .values()
            .find(|a| &a.client_id == client_id)
            .map_or_else(|| client_id.clone(), |a| a.name.clone())
    };
    AccountPage {
        layout: state.layout(config, "My Account", None),
        csrf,
        notice: flash.notice,
        error: flash.error,
        codes: flash.codes,
        username: u.username.clone(),
        email: u.email.clone(),
        email_verified: u.email_verified,
        any_editable: fields.iter().any(|f| f.editable),
        fields,
        has_password: u.password_hash.is_some(),
        password_rules: crate::authn::password::describe_policy(&config.security.password_policy),
        can_unlink: o.can_unlink(),
        identities: o
            .identities
            .iter()
            .map(|(c, s)| IdentityView {
                connection: c.clone(),
                label: connection_label(config, c),
                subject: s.clone(),
            })
            .collect(),
        totp: o.totp,
        recovery_codes_left: o.recovery_codes_left,
        sessions: o
            .sessions
            .iter()
            .map(|s| SessionView {
                handle: s.handle.clone(),
                current: s.current,
                signed_in_at: crate::timefmt::rfc3339(s.session.auth_time),
                expires_at: crate::timefmt::rfc3339(s.session.expires_at),
                method: connection_label(config, &s.session.idp),
                apps: s
                    .session
                    .clients
                    .iter()
                    .map(app_name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect(),
    }
}

pub async fn account_get(
    State(state): State<Shared>,
    jar: CookieJar,
) -> Result<Response, WebError> {
    let config = state.config();
    let app = built_in(&config)?;
    let now = state.now();
    let Some(signed) = signed_in(&state, &config, &jar, now)? else {
        return start(&config, &app, jar);
    };
    let (jar, flash) = take_flash(&state, &config, jar, &signed.user.id, now)?;
    let store = state.store.clone();
    let hash = signed.session_hash.clone();
    let user = signed.user;
    let overview =
        tokio::task::spawn_blocking(move || account::overview(store.as_ref(), user, &hash, now))
            .await??;
    let csrf = state.csrf_token(&signed.browser);
    let body = state.render(
        "account.html",
        &page(&state, &config, overview, csrf, flash),
    )?;
    Ok((jar, body).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn stale() -> WebError {
    WebError::page(
        StatusCode::BAD_REQUEST,
        "This sign-in answer cannot be used",
        "The answer to your sign-in was already used, has expired, or belongs to another browser.",
    )
    .with_hint("Open My Account again to sign in.")
}

/// A subject without an account signed in: there is nothing to manage.
fn refused(config: &Config, idp: &str) -> WebError {
    let via = connection_label(config, idp);
    WebError::page(
        StatusCode::FORBIDDEN,
        "There is no account to manage",
        format!(
            "You signed in with {via}, and this server does not keep an account for {via} sign-ins: \
             your identity is passed on to applications without being stored (the connection has \
             just-in-time provisioning switched off). My Account manages a stored account — its \
             profile, password, authenticator app and sessions — so there is nothing here for you."
        ),
    )
    .with_hint(format!(
        "If you also have an account here, sign out at {}/logout and sign in with its password or linked connection. Otherwise, ask your administrator.",
        crate::oidc::issuer(config)
    ))
}

pub async fn account_callback_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    let config = state.config();
    let app = built_in(&config)?;
    let now = state.now();
    let started = cookies::get(&jar, &config, cookies::ACCOUNT_START).ok_or_else(stale)?;
    let jar = cookies::clear(jar, &config, cookies::ACCOUNT_START);
    let (expected, verifier) = started.split_once('.').ok_or_else(stale)?;
    let presented = q.state.unwrap_or_default();
    if !ct_eq(expected.as_bytes(), presented.as_bytes()) {
        return Err(stale());
    }
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or(error);
        return Err(WebError::page(
            StatusCode::FORBIDDEN,
            "Signing in to My Account did not complete",
            format!("The sign-in ended without success: {why}."),
        )
        .with_hint("Open My Account again to try once more."));
    }
    let code = q.code.filter(|c| !c.is_empty()).ok_or_else(stale)?;
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
    let st = state.clone();
    let cfg = config.clone();
    let answer = tokio::task::spawn_blocking(move || {
        token::exchange(
            &cfg,
            st.store.as_ref(),
            &st.keys,
            now,
            &TokenRequest {
                params,
                basic: None,
            },
        )
    })
    .await?;
    let body = answer.map_err(|e| {
        tracing::info!(error = %e.error, "My Account code exchange refused");
        stale()
    })?;
    let access = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let claims: AccessClaims = state
        .keys
        .verify(&access, "at+jwt", &crate::oidc::issuer(&config))
        .ok_or_else(|| WebError::Internal("a fresh access token does not verify".into()))?;
    let grant = state
        .store
        .grant(&claims.gid)?
        .ok_or_else(|| WebError::Internal("a fresh grant is missing".into()))?;
    if grant.data.user_id.is_none() {
        state.store.revoke_grant(&grant.id)?;
        state.flush().await?;
        let idp = grant
            .data
            .sub
            .split('|')
            .next()
            .unwrap_or_default()
            .to_string();
        audit::record(
            state.store.as_ref(),
            now,
            kind::ACCOUNT_REFUSED,
            Some(MY_ACCOUNT_APP),
            Some(&grant.data.sub),
            vec![format!(
                "signed in through `{idp}` without an account (pass-through)"
            )],
        );
        return Err(refused(&config, &idp));
    }
    let jar = cookies::set(
        jar,
        &config,
        cookies::ACCOUNT,
        access,
        config.security.access_token_ttl,
    );
    Ok((jar, see_other(&home(&config))).into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Sign out: the SSO session ends (and with it My Account), and the browser is told so.
pub async fn account_logout_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    let config = state.config();
    let browser = cookies::get(&jar, &config, cookies::BROWSER);
    if !state.csrf_ok(browser.as_deref(), Some(&form.csrf)) {
        return Err(WebError::csrf());
    }
    if let Some(signed) = signed_in(&state, &config, &jar, state.now())? {
        state.store.revoke_grant(&signed.grant_id)?;
    }
    if let Some(value) = cookies::get(&jar, &config, cookies::SESSION) {
        state.store.delete_session(&token_hash(&value))?;
    }
    state.flush().await?;
    let jar = cookies::clear_session(jar, &config);
    let jar = cookies::clear(jar, &config, cookies::ACCOUNT);
    Ok((jar, see_other(&format!("{}/signed-out", home(&config)))).into_response())
}

pub async fn account_signed_out_get(State(state): State<Shared>) -> Result<Response, WebError> {
    let config = state.config();
    state.render(
        "message.html",
        &MessagePage {
            layout: state.layout(&config, "You are signed out", None),
            message: "You have signed out. Open My Account again to sign in.".into(),
        },
    )
}
