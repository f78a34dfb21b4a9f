//! My Account's web shell: signing in to it, the page, and signing out of it. The
//! forms that change things are in `account_forms.rs`; what things mean and what
//! happens is decided in `account` (`account::access` for signing in and out).
//!
//! Signing in runs the ordinary authorization-code flow against Usher itself, as the
//! built-in confidential app `usher-myaccount`: `/myaccount` sends the browser to
//! `/authorize` (with `state` and PKCE kept in a short-lived cookie), the app's steps
//! and script run like any other app's — so the SSO session lets a signed-in user
//! straight through — and `/myaccount/callback` has the core redeem the code. The
//! access token it gets is kept in an HttpOnly cookie, and the core checks it and the
//! SSO session it came from on every request, so signing out anywhere ends My Account
//! too. This file keeps the cookies and turns the core's answers into pages.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};

use super::extract::{signed_in, Core, CsrfForm};
use super::pages::{Layout, MessagePage};
use super::{cookies, see_other, Shared, WebError};
use crate::account::access::{self, CallbackError};
use crate::account::forms::{self, Flash};
use crate::account::{self, Overview};
use crate::config::{App, Config, ProfileField};

pub(crate) fn base(config: &Config) -> String {
    config.issuer.path().trim_end_matches('/').to_string()
}

pub(crate) fn home(config: &Config) -> String {
    format!("{}/myaccount", base(config))
}

/// The built-in app, or a 404 page when My Account is switched off.
pub(crate) fn built_in(config: &Config) -> Result<std::sync::Arc<App>, WebError> {
    access::built_in(config).ok_or_else(|| {
        WebError::page(
            StatusCode::NOT_FOUND,
            "My Account is not available",
            "This server does not offer account self-service.",
        )
    })
}

/// Send the browser through Usher's own sign-in for the built-in app; for a step-up,
/// one that must be recent and pass the account's second factor.
fn start(
    config: &Config,
    app: &App,
    jar: CookieJar,
    step_up: Option<forms::After>,
) -> Result<Response, WebError> {
    let start = match step_up {
        None => access::start(config, app)?,
        Some(after) => access::start_step_up(config, app, after)?,
    };
    let jar = cookies::set(
        jar,
        config,
        cookies::ACCOUNT_START,
        start.keep,
        config.security.flow_ttl,
    );
    Ok((jar, see_other(&start.authorize_url)).into_response())
}

/// Where a My Account form's answer sends the browser: back to the page with its
/// message, to the signed-out page with My Account's cookies gone, or through sign-in
/// again when the change needs a more recent one.
pub(crate) fn reply(
    config: &Config,
    jar: CookieJar,
    reply: forms::Reply,
) -> Result<Response, WebError> {
    Ok(match reply {
        forms::Reply::Back { flash } => {
            let jar = cookies::set(
                jar,
                config,
                cookies::ACCOUNT_FLASH,
                flash,
                config.security.flow_ttl,
            );
            (jar, see_other(&home(config))).into_response()
        }
        forms::Reply::SignedOut => signed_out(config, jar),
        forms::Reply::StepUp { after } => {
            let app = built_in(config)?;
            return start(config, &app, jar, Some(after));
        }
    })
}

fn signed_out(config: &Config, jar: CookieJar) -> Response {
    let jar = cookies::clear_session(jar, config);
    let jar = cookies::clear(jar, config, cookies::ACCOUNT);
    (jar, see_other(&format!("{}/signed-out", home(config)))).into_response()
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

/// An app's grant, with what its revoke button posts.
#[derive(Serialize)]
struct GrantView {
    id: String,
    app: String,
    granted_at: String,
    offline: bool,
}

#[derive(Serialize)]
struct SessionView {
    handle: String,
    current: bool,
    signed_in_at: String,
    expires_at: String,
    method: String,
    apps: String,
    grants: Vec<GrantView>,
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
    /// A new address waiting for the code mailed to it.
    pending_email: Option<String>,
    fields: Vec<FieldView>,
    any_editable: bool,
    has_password: bool,
    password_rules: Vec<String>,
    identities: Vec<IdentityView>,
    can_unlink: bool,
    totp: bool,
    recovery_codes_left: usize,
    sessions: Vec<SessionView>,
    /// Offline grants whose session has ended.
    offline: Vec<GrantView>,
}

/// An app's name by its client id (the id itself for an app no longer configured).
pub(super) fn app_name(config: &Config, client_id: &str) -> String {
    config
        .apps
        .values()
        .find(|a| a.client_id == client_id)
        .map_or_else(|| client_id.to_string(), |a| a.name.clone())
}

fn grant_view(config: &Config, g: &crate::store::Grant) -> GrantView {
    GrantView {
        id: g.id.clone(),
        app: app_name(config, &g.client_id),
        granted_at: crate::timefmt::rfc3339(g.created_at),
        offline: g.offline,
    }
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
    AccountPage {
        layout: state.layout(config, "My Account", None),
        csrf,
        notice: flash.notice,
        error: flash.error,
        codes: flash.codes,
        username: u.username.clone(),
        email: u.email.clone(),
        email_verified: u.email_verified,
        pending_email: flash.pending_email,
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
                    .map(|c| app_name(config, c))
                    .collect::<Vec<_>>()
                    .join(", "),
                grants: s.grants.iter().map(|g| grant_view(config, g)).collect(),
            })
            .collect(),
        offline: o.offline.iter().map(|g| grant_view(config, g)).collect(),
    }
}

pub async fn account_get(
    State(state): State<Shared>,
    core: Core,
    jar: CookieJar,
) -> Result<Response, WebError> {
    let config = core.config.clone();
    let app = built_in(&config)?;
    let Some(signed) = signed_in(&core, &jar).await? else {
        return start(&config, &app, jar, None);
    };
    let flash_id = cookies::get(&jar, &config, cookies::ACCOUNT_FLASH);
    let jar = match flash_id {
        Some(_) => cookies::clear(jar, &config, cookies::ACCOUNT_FLASH),
        None => jar,
    };
    let (overview, flash) = forms::page(&core.ctx(), signed, flash_id.as_deref()).await?;
    let browser = cookies::get(&jar, &config, cookies::BROWSER).unwrap_or_default();
    let csrf = state.csrf_token(&browser);
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
    core: Core,
    jar: CookieJar,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    let config = core.config.clone();
    let app = built_in(&config)?;
    let kept = cookies::get(&jar, &config, cookies::ACCOUNT_START);
    let jar = cookies::clear(jar, &config, cookies::ACCOUNT_START);
    let answer = access::Answer {
        code: q.code,
        state: q.state,
        error: q.error,
        error_description: q.error_description,
    };
    let redeemed = access::callback(&core.ctx(), &core.keys, &app, kept.as_deref(), answer).await;
    let redeemed = match redeemed {
        Ok(redeemed) => redeemed,
        Err(CallbackError::Stale) => return Err(stale()),
        Err(CallbackError::Unfinished(why)) => {
            return Err(WebError::page(
                StatusCode::FORBIDDEN,
                "Signing in to My Account did not complete",
                format!("The sign-in ended without success: {why}."),
            )
            .with_hint("Open My Account again to try once more."))
        }
        Err(CallbackError::NoAccount { idp }) => return Err(refused(&config, &idp)),
        Err(CallbackError::Store(e)) => return Err(e.into()),
        Err(CallbackError::Internal(detail)) => return Err(WebError::Internal(detail)),
    };
    let jar = cookies::set(
        jar,
        &config,
        cookies::ACCOUNT,
        redeemed.access,
        config.security.access_token_ttl,
    );
    let jar = match redeemed.flash {
        Some(flash) => cookies::set(
            jar,
            &config,
            cookies::ACCOUNT_FLASH,
            flash,
            config.security.flow_ttl,
        ),
        None => jar,
    };
    let to = match redeemed.after {
        forms::After::Home => home(&config),
        forms::After::TotpSetup => format!("{}/totp", home(&config)),
    };
    Ok((jar, see_other(&to)).into_response())
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

/// Sign out: the SSO session ends (and with it My Account), and the browser is told so.
pub async fn account_logout_post(
    core: Core,
    jar: CookieJar,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let token = cookies::get(&jar, &core.config, cookies::ACCOUNT);
    let session = cookies::get(&jar, &core.config, cookies::SESSION);
    access::sign_out(
        &core.ctx(),
        &core.keys,
        token.as_deref(),
        session.as_deref(),
    )
    .await?;
    Ok(signed_out(&core.config, jar))
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
