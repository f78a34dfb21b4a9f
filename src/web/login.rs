//! The hosted sign-in: driving a flow from one page to the next, the step chooser, the
//! password and sign-up forms, and completing the login with a code for the app.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::pages::{LoginPage, OptionButton, PasswordPage, SignUpPage};
use super::posted::Posted;
use super::{cookies, factors, federation, see_other, Shared, WebError};
use crate::authn::password;
use crate::config::{App, Config, ConnectionKind, StepOption};
use crate::flow::{Flow, Next};
use crate::oidc::authorize::response_url;
use crate::oidc::OAuthError;
use crate::signin::password::Begun;
use crate::signin::{self, AtStep, Completed, LiveSession, Prepared, Shown, SignedUp};

/// Count a sign-in's outcome for `/metrics` (the core wrote its audit event).
pub(crate) fn count_sign_in(state: &Shared, flow: &Flow, outcome: &str) {
    let connection = flow.subject().map_or("none", |s| s.idp.as_str());
    state
        .metrics
        .sign_in(&flow.request.app_id, outcome, connection);
}

/// Send an error back to the app (its redirect URI was verified when the flow began).
pub(crate) fn redirect_error(
    config: &Config,
    redirect_uri: &str,
    state: Option<&str>,
    error: &OAuthError,
) -> Result<Response, WebError> {
    let url = response_url(
        redirect_uri,
        &crate::oidc::issuer(config),
        state,
        Err(error),
    )
    .ok_or_else(|| WebError::Internal("registered redirect URI does not parse".into()))?;
    Ok(see_other(url.as_str()))
}

fn base(config: &Config) -> String {
    config.issuer.path().trim_end_matches('/').to_string()
}

pub(crate) fn login_url(config: &Config, flow: &Flow) -> String {
    format!("{}/login/{}", base(config), flow.id)
}

/// Replay the app's policy over the flow (the core's `decide`). Scripts run on the
/// blocking pool: a replay is microseconds, but a script that hits its operation limit
/// takes milliseconds and must not hold up the async workers.
async fn decide(
    state: &Shared,
    config: &Config,
    flow: Flow,
    app: &std::sync::Arc<App>,
    jar: &CookieJar,
    now: u64,
) -> Result<(Flow, Next, Option<LiveSession>), WebError> {
    let mut flow = flow;
    let cookie = cookies::get(jar, config, cookies::SESSION);
    let session = state.session(cookie.as_deref(), now).await?;
    let view = session.as_ref().and_then(|s| s.view.clone());
    if app.sign_in.script.is_some() {
        let app = app.clone();
        let (flow, next) = tokio::task::spawn_blocking(move || {
            let next = signin::decide(&mut flow, &app, view.as_ref(), now);
            (flow, next)
        })
        .await?;
        Ok((flow, next, session))
    } else {
        let next = signin::decide(&mut flow, app, view.as_ref(), now);
        Ok((flow, next, session))
    }
}

/// Move a flow forward: record what the SSO session satisfies, then show the next step,
/// finish with a code, or fail back to the app. `at_page` is true when the browser is
/// already at the flow's page (render it) rather than arriving from `/authorize`
/// (redirect there, so reloading never re-submits the authorization request).
pub(crate) async fn advance(
    state: &Shared,
    config: &Config,
    mut flow: Flow,
    jar: CookieJar,
    now: u64,
) -> Result<Response, WebError> {
    advance_inner(state, config, &mut flow, jar, now, false).await
}

async fn advance_inner(
    state: &Shared,
    config: &Config,
    flow: &mut Flow,
    jar: CookieJar,
    now: u64,
    at_page: bool,
) -> Result<Response, WebError> {
    let ctx = state.core(config, now);
    let (app, shown, session) = match signin::prepare(ctx, flow).await? {
        Prepared::AppGone => {
            return Err(WebError::page(
                StatusCode::BAD_REQUEST,
                "This application is no longer available",
                "The application you were signing in to has been removed from this server.",
            ))
        }
        Prepared::Waiting(app, shown) => (app, shown, None),
        Prepared::Decide(app) => {
            let (decided, next, session) =
                decide(state, config, flow.clone(), &app, &jar, now).await?;
            *flow = decided;
            let shown = signin::resolve(ctx, flow, next).await?;
            (app, shown, session)
        }
    };
    let browser = cookies::get(&jar, config, cookies::BROWSER).unwrap_or_default();
    match shown {
        Shown::RecoveryCodes | Shown::Provisioning | Shown::Step(_) if !at_page => {
            state.save_flow(flow).await?;
            Ok((jar, see_other(&login_url(config, flow))).into_response())
        }
        Shown::RecoveryCodes => {
            let csrf = state.csrf_token(&browser);
            let page = factors::recovery_codes_page(state, config, &app, flow, csrf)?;
            Ok((jar, page).into_response())
        }
        Shown::Provisioning => {
            let page = federation::page(state, config, &app, flow, state.csrf_token(&browser))?;
            state.save_flow(flow).await?;
            Ok((jar, page).into_response())
        }
        Shown::Step(at) => {
            let page = show_step(state, config, &app, flow, at, &jar).await?;
            state.save_flow(flow).await?;
            Ok((jar, page).into_response())
        }
        Shown::NeedsAccount { error, back, .. } => {
            tracing::warn!(flow = %flow.id, app = %app.id, trace = ?flow.trace(), "sign-in cannot continue: second factor without an account");
            count_sign_in(state, flow, &error.to_string());
            state.record_end(
                flow,
                crate::fixtures::record::Ended::Error(&error),
                Some("mfa_conflict"),
            );
            Err(factors::mfa_conflict_page(config, &app, back))
        }
        Shown::Failed { error, redirect } => {
            tracing::info!(flow = %flow.id, trace = ?flow.trace(), script_log = ?flow.script_log, error = %error, "sign-in failed");
            count_sign_in(state, flow, &error.to_string());
            state.record_end(flow, crate::fixtures::record::Ended::Error(&error), None);
            Ok((jar, see_other(redirect.as_str())).into_response())
        }
        Shown::ScriptFailed { message } => {
            tracing::warn!(flow = %flow.id, app = %app.id, trace = ?flow.trace(), "sign-in script failed: {message}");
            count_sign_in(state, flow, &format!("script_error: {message}"));
            state.record_end(
                flow,
                crate::fixtures::record::Ended::ScriptError(&message),
                Some("script_error"),
            );
            Err(WebError::page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This sign-in could not be completed",
                format!("{}'s sign-in policy stopped with an error, so you could not be signed in.", app.name),
            )
            .with_hint("Try again later. Your administrator can find the cause in the server log under the request ID below."))
        }
        Shown::Complete => complete(state, config, &app, flow, jar, session, now).await,
    }
}

fn option_button(config: &Config, option: &StepOption) -> OptionButton {
    let local = |label: &str| OptionButton {
        id: option.name().to_string(),
        label: label.into(),
        kind: "local",
        provider: "",
    };
    match option {
        StepOption::Password => local("Email and password"),
        StepOption::Totp => local("Authenticator app"),
        StepOption::EmailOtp => local("Code by email"),
        StepOption::RecoveryCode => local("Recovery code"),
        StepOption::Connection(id) => {
            let connection = config.connections.get(id);
            OptionButton {
                id: id.clone(),
                label: connection.map_or_else(|| id.clone(), |c| c.display_name.clone()),
                kind: "federated",
                provider: match connection.map(|c| c.kind) {
                    Some(ConnectionKind::Google) => "google",
                    Some(ConnectionKind::Github) => "github",
                    Some(ConnectionKind::Oauth2) => "oauth2",
                    Some(ConnectionKind::Oidc) | None => "oidc",
                },
            }
        }
    }
}

async fn show_step(
    state: &Shared,
    config: &Config,
    app: &App,
    flow: &mut Flow,
    at: AtStep,
    jar: &CookieJar,
) -> Result<Response, WebError> {
    let AtStep {
        step,
        options,
        chosen,
    } = at;
    let options = options.as_slice();
    let browser = cookies::get(jar, config, cookies::BROWSER).unwrap_or_default();
    let csrf = state.csrf_token(&browser);
    let sign_up_url = (app.sign_up && options.contains(&StepOption::Password))
        .then(|| format!("{}/signup/{}", base(config), flow.id));
    let title = format!("Sign in to {}", app.name);
    match chosen {
        None => state.render(
            "login.html",
            &LoginPage {
                layout: state.layout(config, &title, Some(app)),
                action: format!("{}/pick", login_url(config, flow)),
                csrf,
                step,
                // A step-up step comes after the app's own.
                steps: app.sign_in.steps.len().max(step),
                options: options.iter().map(|o| option_button(config, o)).collect(),
                sign_up_url,
                cancel_url: Some(format!("{}/cancel", login_url(config, flow))),
            },
        ),
        Some(StepOption::Password) => {
            let username = flow
                .last_login
                .clone()
                .or_else(|| flow.request.login_hint.clone())
                .unwrap_or_default();
            state.render(
                "password.html",
                &PasswordPage {
                    layout: state.layout(config, &title, Some(app)),
                    action: format!("{}/password", login_url(config, flow)),
                    csrf,
                    username,
                    error: flow.take_notice(),
                    back_url: (options.len() > 1)
                        .then(|| format!("{}?back=1", login_url(config, flow))),
                    sign_up_url,
                    forgot_url: format!("{}/forgot", login_url(config, flow)),
                    cancel_url: Some(format!("{}/cancel", login_url(config, flow))),
                },
            )
        }
        Some(factor @ (StepOption::Totp | StepOption::EmailOtp | StepOption::RecoveryCode)) => {
            let back_url =
                (options.len() > 1).then(|| format!("{}?back=1", login_url(config, flow)));
            let cancel_url = Some(format!("{}/cancel", login_url(config, flow)));
            let factor = factor.clone();
            let links = factors::StepLinks {
                csrf,
                back_url,
                cancel_url,
            };
            factors::render(state, config, app, flow, &factor, links).await
        }
        Some(StepOption::Connection(id)) => {
            let id = id.clone();
            federation::begin(state, config, flow, &id, step, state.now()).await
        }
    }
}

/// Every step is satisfied: the core updates the SSO session and issues the code; the
/// shell makes it durable, sets the cookie and sends the browser to the app.
async fn complete(
    state: &Shared,
    config: &Config,
    app: &App,
    flow: &mut Flow,
    jar: CookieJar,
    session: Option<LiveSession>,
    now: u64,
) -> Result<Response, WebError> {
    let ctx = state.core(config, now);
    let (redirect, new_session, record) =
        match crate::signin::complete(ctx, app, flow, session.as_ref()).await? {
            Completed::Refused { redirect, error } => {
                state.metrics.sign_in(
                    &flow.request.app_id,
                    error.code.as_str(),
                    flow.subject().map_or("none", |s| s.idp.as_str()),
                );
                return Ok((jar, see_other(redirect.as_str())).into_response());
            }
            Completed::Issued {
                redirect,
                new_session,
                record,
            } => (redirect, new_session, record),
        };
    // The code must survive a crash before the app can try to redeem it.
    state.flush().await?;
    let connection = flow.subject().map_or("none", |s| s.idp.as_str());
    state
        .metrics
        .sign_in(&flow.request.app_id, "success", connection);
    if flow.recording.is_some() {
        let user = match &record.grant.user_id {
            Some(id) => state.store.user(id).await?,
            None => None,
        };
        let claims = crate::oidc::token::id_token_claims(
            config,
            app,
            &record.scopes,
            None,
            &record.grant,
            user.as_ref(),
            now,
        );
        state.record_end(flow, crate::fixtures::record::Ended::Success(&claims), None);
    }
    tracing::debug!(flow = %flow.id, app = %app.id, trace = ?flow.trace(), "sign-in complete");
    let jar = match new_session {
        Some(value) => cookies::set_session(jar, config, value),
        None => jar,
    };
    Ok((jar, see_other(redirect.as_str())).into_response())
}

#[derive(Deserialize)]
pub struct LoginQuery {
    /// `back=1`: return from an option's page to the step's chooser.
    #[serde(default)]
    back: Option<String>,
}

pub async fn login_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let browser = cookies::get(&jar, &config, cookies::BROWSER);
    let mut flow = state.load_flow(&id, browser.as_deref(), now).await?;
    if q.back.is_some() {
        flow.unpick();
    }
    advance_inner(&state, &config, &mut flow, jar, now, true).await
}

/// The step a flow is waiting on: its number, its options, and the app.
pub(crate) type CurrentStep = (usize, Vec<StepOption>, std::sync::Arc<App>);

/// The step the flow is at, and its options (recording what the session satisfies).
pub(crate) async fn current_step(
    state: &Shared,
    config: &Config,
    jar: &CookieJar,
    flow: &mut Flow,
    now: u64,
) -> Result<Option<CurrentStep>, WebError> {
    let Some(app) = config.apps.get(&flow.request.app_id).cloned() else {
        return Ok(None);
    };
    let (decided, next, _) = decide(state, config, flow.clone(), &app, jar, now).await?;
    *flow = decided;
    Ok(match next {
        Next::Show { step, options } => Some((step, options, app)),
        _ => None,
    })
}

#[derive(Deserialize)]
pub struct PickForm {
    #[serde(default)]
    option: String,
}

pub async fn login_pick_post(
    State(state): State<Shared>,
    posted: Posted<PickForm>,
) -> Result<Response, WebError> {
    let Posted {
        form,
        mut flow,
        config,
        now,
        jar,
    } = posted;
    if let Some((_, options, _)) = current_step(&state, &config, &jar, &mut flow, now).await? {
        signin::pick(&mut flow, &options, &form.option);
    }
    state.save_flow(&mut flow).await?;
    Ok(see_other(&login_url(&config, &flow)))
}

/// The cancel button's form carries nothing but its CSRF token.
#[derive(Deserialize)]
pub struct CancelForm {}

/// The user gave up on the current step: it fails for good, and the app hears
/// `access_denied` unless the script's `on_fail` offers another way.
pub async fn login_cancel_post(
    State(state): State<Shared>,
    posted: Posted<CancelForm>,
) -> Result<Response, WebError> {
    let Posted {
        mut flow,
        config,
        now,
        jar,
        ..
    } = posted;
    if let Some((step, _, _)) = current_step(&state, &config, &jar, &mut flow, now).await? {
        if let Some(rec) = flow.recording.as_mut() {
            rec.inputs.push(crate::fixtures::format::Input {
                cancel: true,
                ..Default::default()
            });
        }
        signin::cancel(state.core(&config, now), &mut flow, step);
    }
    state.save_flow(&mut flow).await?;
    Ok(see_other(&login_url(&config, &flow)))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login_password_post(
    State(state): State<Shared>,
    posted: Posted<PasswordForm>,
) -> Result<Response, WebError> {
    let Posted {
        form,
        mut flow,
        config,
        now,
        jar,
    } = posted;
    let Some((step, options, _)) = current_step(&state, &config, &jar, &mut flow, now).await?
    else {
        state.save_flow(&mut flow).await?;
        return Ok(see_other(&login_url(&config, &flow)));
    };
    let ctx = state.core(&config, now);
    let mut accepted = false;
    match signin::password::begin(
        ctx,
        &mut flow,
        step,
        &options,
        &form.username,
        &form.password,
    )
    .await?
    {
        Begun::NotOffered | Begun::Incomplete => {
            state.save_flow(&mut flow).await?;
            return Ok(see_other(&login_url(&config, &flow)));
        }
        Begun::Locked { unlock: None } => {}
        Begun::Locked {
            unlock: Some(offer),
        } => mail_unlock_link(&state, &config, offer).await?,
        Begun::Check(attempt) => {
            let candidate = attempt.user.clone();
            let presented = form.password.clone();
            let ok = tokio::task::spawn_blocking(move || {
                password::verify(candidate.as_ref(), &presented)
            })
            .await?;
            if let (Some(rec), Some(u)) = (flow.recording.as_mut(), &attempt.user) {
                rec.user(state.store.as_ref(), &u.id).await?;
            }
            accepted = ok;
            signin::password::finish(ctx, &mut flow, step, &form.username, attempt, ok).await?;
            if !ok {
                // The failure counts towards the account's lock: keep it across a crash.
                state.flush().await?;
            }
        }
    }
    let login = form.username.trim().to_string();
    if let Some(rec) = flow.recording.as_mut() {
        rec.inputs.push(crate::fixtures::format::Input {
            pick: Some("password".into()),
            username: Some(login.clone()),
            password: Some(crate::fixtures::record::marker(accepted)),
            ..Default::default()
        });
    }
    state.save_flow(&mut flow).await?;
    Ok(see_other(&login_url(&config, &flow)))
}

/// Mail the owner of an account locked for good the link that unlocks it, once the
/// link is durable. A mail that cannot be sent is logged; the page says the same.
async fn mail_unlock_link(
    state: &Shared,
    config: &Config,
    offer: signin::unlock::UnlockMail,
) -> Result<(), WebError> {
    state.flush().await?;
    let link = format!(
        "{}/unlock/{}",
        crate::oidc::issuer(config).trim_end_matches('/'),
        offer.token.expose()
    );
    let mail = crate::mail::unlock_mail(&link);
    let mailer = state.mailer();
    let to = offer.to;
    let sent = tokio::task::spawn_blocking(move || {
        mailer.send(&to, &mail.subject, &mail.text, &mail.html)
    })
    .await?;
    if let Err(e) = sent {
        tracing::error!(error = %e, "could not send the unlock link");
    }
    Ok(())
}

/// `/unlock/{token}`: the link mailed to the owner of an account locked for good.
pub async fn unlock_get(
    State(state): State<Shared>,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let config = state.config();
    let ctx = state.core(&config, state.now());
    let message = match signin::unlock::redeem(ctx, &token).await? {
        Some(_) => {
            state.flush().await?;
            "Your account is unlocked. You can sign in again."
        }
        None => "This unlock link has been used or has expired.",
    };
    state.render(
        "message.html",
        &super::pages::MessagePage {
            layout: state.layout(&config, "Unlock your account", None),
            message: message.into(),
        },
    )
}

fn signup_allowed(app: &App, options: &[StepOption]) -> bool {
    app.sign_up && options.contains(&StepOption::Password)
}

fn signup_unavailable() -> WebError {
    WebError::page(
        StatusCode::NOT_FOUND,
        "Sign-up is not available",
        "This application does not offer creating an account here.",
    )
}

pub async fn signup_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let browser = cookies::get(&jar, &config, cookies::BROWSER);
    let mut flow = state.load_flow(&id, browser.as_deref(), now).await?;
    let Some((_, options, app)) = current_step(&state, &config, &jar, &mut flow, now).await? else {
        return Err(signup_unavailable());
    };
    if !signup_allowed(&app, &options) {
        return Err(signup_unavailable());
    }
    let errors: Vec<String> = flow
        .take_notice()
        .map(|n| n.lines().map(String::from).collect())
        .unwrap_or_default();
    let page = SignUpPage {
        layout: state.layout(
            &config,
            &format!("Create your {} account", app.name),
            Some(&app),
        ),
        action: format!("{}/signup/{}", base(&config), flow.id),
        csrf: state.csrf_token(browser.as_deref().unwrap_or_default()),
        email: flow.last_login.clone().unwrap_or_default(),
        errors,
        rules: password::describe_policy(&config.security.password_policy),
        sign_in_url: login_url(&config, &flow),
    };
    state.save_flow(&mut flow).await?;
    state.render("signup.html", &page)
}

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn signup_post(
    State(state): State<Shared>,
    posted: Posted<SignUpForm>,
) -> Result<Response, WebError> {
    let Posted {
        form,
        mut flow,
        config,
        now,
        jar,
    } = posted;
    let Some((step, options, app)) = current_step(&state, &config, &jar, &mut flow, now).await?
    else {
        return Err(signup_unavailable());
    };
    if !signup_allowed(&app, &options) {
        return Err(signup_unavailable());
    }
    let signup_url = format!("{}/signup/{}", base(&config), flow.id);
    let email = form.email.trim().to_string();
    let ctx = state.core(&config, now);
    if !signin::sign_up_problems(
        ctx,
        &mut flow,
        &email,
        &form.password,
        &form.password_confirm,
    )
    .await?
    .is_empty()
    {
        state.save_flow(&mut flow).await?;
        return Ok(see_other(&signup_url));
    }
    let presented = form.password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&presented))
        .await?
        .map_err(|e| WebError::Internal(e.to_string()))?;
    if config.security.verify_sign_up_email {
        // The account waits for its address to be proven; the code goes to it now.
        super::client::email_allowed(&state, &config, &flow.ip, now).await?;
        let send = signin::hold_sign_up(ctx, &mut flow, step, &email, hash).await?;
        state.save_flow(&mut flow).await?;
        state.flush().await?;
        if let Some(send) = send {
            super::reset::send_verification(&state, send).await?;
        }
        return Ok(see_other(&super::reset::verify_url(&config, &flow)));
    }
    match signin::sign_up(ctx, &mut flow, (step, &app.id), &email, hash, false).await? {
        SignedUp::Created { .. } => state.flush().await?,
        SignedUp::Taken => {
            state.save_flow(&mut flow).await?;
            return Ok(see_other(&signup_url));
        }
    }
    state.save_flow(&mut flow).await?;
    Ok(see_other(&login_url(&config, &flow)))
}
