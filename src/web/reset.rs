//! The pages of "Forgot your password?" (`/login/{flow}/forgot`, `/login/{flow}/reset`)
//! and of a sign-up's email verification (`/signup/{flow}/verify`): parse, call the core
//! (`signin::reset`, `signin::verify_sign_up`), mail what it hands back, render.
//!
//! Reset mail leaves in the background, after the answer: an SMTP exchange takes time
//! only when there is someone to mail, and the request page must take as long for a
//! name nobody has as for an account.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::login::{current_step, login_url};
use super::pages::{ForgotPage, ResetPage, VerifyEmailPage};
use super::posted::Posted;
use super::{client, cookies, see_other, Shared, WebError};
use crate::authn::{email_otp, password};
use crate::config::{Config, StepOption};
use crate::flow::Flow;
use crate::mail::RenderedMail;
use crate::signin::reset::{self, Requested, Reset, ResetForm};
use crate::signin::{self, SignedUp, Verified};

fn base(config: &Config) -> String {
    config.issuer.path().trim_end_matches('/').to_string()
}

fn forgot_url(config: &Config, flow: &Flow) -> String {
    format!("{}/forgot", login_url(config, flow))
}

fn reset_url(config: &Config, flow: &Flow) -> String {
    format!("{}/reset", login_url(config, flow))
}

pub(crate) fn verify_url(config: &Config, flow: &Flow) -> String {
    format!("{}/signup/{}/verify", base(config), flow.id)
}

/// Send a message without waiting for it: a failure is logged.
pub(crate) fn mail_in_background(
    state: &Shared,
    to: String,
    mail: RenderedMail,
    what: &'static str,
) {
    let mailer = state.mailer();
    // The request's span goes along: a failure is logged under its request id.
    let span = tracing::Span::current();
    drop(tokio::task::spawn_blocking(move || {
        let _request = span.enter();
        if let Err(e) = mailer.send(&to, &mail.subject, &mail.text, &mail.html) {
            tracing::error!(error = %e, "could not send the {what}");
        }
    }));
}

/// Send a message and wait for it: a failure is logged, and the page goes on.
pub(crate) async fn mail_now(
    state: &Shared,
    to: String,
    mail: RenderedMail,
    what: &'static str,
) -> Result<(), WebError> {
    let mailer = state.mailer();
    let sent = tokio::task::spawn_blocking(move || {
        mailer.send(&to, &mail.subject, &mail.text, &mail.html)
    })
    .await?;
    if let Err(e) = sent {
        tracing::error!(error = %e, "could not send the {what}");
    }
    Ok(())
}

fn no_password_step() -> WebError {
    WebError::page(
        StatusCode::NOT_FOUND,
        "No password to reset here",
        "This step of the sign-in does not use a password.",
    )
}

/// The flow of a page request, and whether its current step offers a password.
async fn load(
    state: &Shared,
    config: &Config,
    jar: &CookieJar,
    id: &str,
    now: u64,
) -> Result<Flow, WebError> {
    let browser = cookies::get(jar, config, cookies::BROWSER);
    let mut flow = state.load_flow(id, browser.as_deref(), now).await?;
    match current_step(state, config, jar, &mut flow, now).await? {
        Some((_, options, _)) if options.contains(&StepOption::Password) => Ok(flow),
        _ => Err(no_password_step()),
    }
}

#[derive(Deserialize)]
pub struct ForgotQuery {
    /// `again=1`: ask for another code.
    #[serde(default)]
    again: Option<String>,
}

pub async fn login_forgot_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
    Query(q): Query<ForgotQuery>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let mut flow = load(&state, &config, &jar, &id, now).await?;
    if q.again.is_some() {
        reset::restart(&mut flow);
    }
    let browser = cookies::get(&jar, &config, cookies::BROWSER).unwrap_or_default();
    let app = config.apps.get(&flow.request.app_id).cloned();
    let page = ForgotPage {
        layout: state.layout(&config, "Reset your password", app.as_deref()),
        action: forgot_url(&config, &flow),
        csrf: state.csrf_token(&browser),
        username: flow
            .last_login
            .clone()
            .or_else(|| flow.request.login_hint.clone())
            .unwrap_or_default(),
        error: flow.take_notice(),
        back_url: login_url(&config, &flow),
    };
    state.save_flow(&mut flow).await?;
    state.render("forgot.html", &page)
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    username: String,
}

pub async fn login_forgot_post(
    State(state): State<Shared>,
    mut posted: Posted<ForgotForm>,
) -> Result<Response, WebError> {
    let Some((_, options, _)) = posted.current_step(&state).await? else {
        return Err(no_password_step());
    };
    let Posted {
        form,
        mut flow,
        config,
        now,
        ..
    } = posted;
    let ctx = state.core(&config, now);
    let next = match reset::request(ctx, &mut flow, &options, &form.username).await? {
        Requested::NotOffered => return Err(no_password_step()),
        Requested::Incomplete => forgot_url(&config, &flow),
        Requested::Asked { mail } => {
            // Durable for everyone alike, so the answer takes as long with or without
            // an account; the mail itself leaves after the answer.
            state.save_flow(&mut flow).await?;
            state.flush().await?;
            if let Some(mail) = mail {
                let message =
                    crate::mail::reset_code_mail(mail.code.expose(), email_otp::CODE_TTL_MINUTES);
                mail_in_background(&state, mail.to, message, "password reset code");
            }
            return Ok(see_other(&reset_url(&config, &flow)));
        }
    };
    state.save_flow(&mut flow).await?;
    Ok(see_other(&next))
}

pub async fn login_reset_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let mut flow = load(&state, &config, &jar, &id, now).await?;
    if flow.reset.is_none() {
        state.save_flow(&mut flow).await?;
        return Ok(see_other(&forgot_url(&config, &flow)));
    }
    let notice = flow.take_notice();
    let (info, errors) = match notice {
        Some(n) if n == reset::SENT => (n, Vec::new()),
        Some(n) => (
            reset::SENT.to_string(),
            n.lines().map(String::from).collect(),
        ),
        None => (reset::SENT.to_string(), Vec::new()),
    };
    let browser = cookies::get(&jar, &config, cookies::BROWSER).unwrap_or_default();
    let app = config.apps.get(&flow.request.app_id).cloned();
    let page = ResetPage {
        layout: state.layout(&config, "Choose a new password", app.as_deref()),
        action: reset_url(&config, &flow),
        csrf: state.csrf_token(&browser),
        info,
        errors,
        rules: password::describe_policy(&config.security.password_policy),
        again_url: format!("{}?again=1", forgot_url(&config, &flow)),
        back_url: login_url(&config, &flow),
    };
    state.save_flow(&mut flow).await?;
    state.render("reset.html", &page)
}

#[derive(Deserialize)]
pub struct ResetPostForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn login_reset_post(
    State(state): State<Shared>,
    mut posted: Posted<ResetPostForm>,
) -> Result<Response, WebError> {
    match posted.current_step(&state).await? {
        Some((_, options, _)) if options.contains(&StepOption::Password) => {}
        _ => return Err(no_password_step()),
    }
    let Posted {
        form,
        mut flow,
        config,
        now,
        ..
    } = posted;
    let ctx = state.core(&config, now);
    let form = ResetForm {
        code: form.code,
        new: form.password,
        confirm: form.password_confirm,
    };
    let next = match reset::submit(ctx, &mut flow, &form).await? {
        Reset::NotAsked => forgot_url(&config, &flow),
        Reset::Refused => {
            // A wrong code counts against the pending one: keep the count across a
            // crash.
            state.flush().await?;
            reset_url(&config, &flow)
        }
        Reset::Done { notice_to } => {
            state.flush().await?;
            if let Some(to) = notice_to {
                let from = if flow.ip.is_empty() {
                    "an unknown address".to_string()
                } else {
                    flow.ip.clone()
                };
                let when = crate::timefmt::rfc3339(now);
                let notice = crate::mail::password_reset_notice(&when, &from);
                mail_in_background(&state, to, notice, "password reset notice");
            }
            login_url(&config, &flow)
        }
    };
    state.save_flow(&mut flow).await?;
    Ok(see_other(&next))
}

/// `/signup/{flow}/verify`: the code mailed to a new account's address.
pub async fn signup_verify_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let browser = cookies::get(&jar, &config, cookies::BROWSER);
    let mut flow = state.load_flow(&id, browser.as_deref(), now).await?;
    let signup_url = format!("{}/signup/{}", base(&config), flow.id);
    let Some(pending) = flow.sign_up.clone() else {
        return Ok(see_other(&signup_url));
    };
    let app = config.apps.get(&flow.request.app_id).cloned();
    let page = VerifyEmailPage {
        layout: state.layout(&config, "Confirm your email address", app.as_deref()),
        action: verify_url(&config, &flow),
        csrf: state.csrf_token(browser.as_deref().unwrap_or_default()),
        email: pending.email,
        error: flow.take_notice(),
        sign_up_url: signup_url,
    };
    state.save_flow(&mut flow).await?;
    state.render("verify_email.html", &page)
}

#[derive(Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    resend: Option<String>,
}

pub async fn signup_verify_post(
    State(state): State<Shared>,
    mut posted: Posted<VerifyForm>,
) -> Result<Response, WebError> {
    let current = posted.current_step(&state).await?;
    let Posted {
        form,
        mut flow,
        config,
        now,
        ..
    } = posted;
    let signup_url = format!("{}/signup/{}", base(&config), flow.id);
    let Some((step, options, app)) = current else {
        return Ok(see_other(&signup_url));
    };
    if !(app.sign_up && options.contains(&StepOption::Password)) {
        return Ok(see_other(&signup_url));
    }
    let ctx = state.core(&config, now);
    if form.resend.is_some() {
        client::email_allowed(&state, &config, &flow.ip, now).await?;
        if let Some(send) = signin::resend_sign_up_code(ctx, &mut flow).await? {
            state.save_flow(&mut flow).await?;
            state.flush().await?;
            send_verification(&state, send).await?;
        }
        state.save_flow(&mut flow).await?;
        return Ok(see_other(&verify_url(&config, &flow)));
    }
    let next = match signin::verify_sign_up(ctx, &mut flow, step, &app.id, &form.code).await? {
        Verified::NotPending => signup_url,
        Verified::Refused => {
            state.flush().await?;
            verify_url(&config, &flow)
        }
        Verified::Done(SignedUp::Created { .. }) => {
            state.flush().await?;
            login_url(&config, &flow)
        }
        Verified::Done(SignedUp::Taken) => signup_url,
    };
    state.save_flow(&mut flow).await?;
    Ok(see_other(&next))
}

/// Mail a sign-up's verification code (and wait: the page that follows says it was
/// sent).
pub(crate) async fn send_verification(
    state: &Shared,
    send: signin::SignUpCode,
) -> Result<(), WebError> {
    let mail = crate::mail::verify_email_mail(send.code.expose(), email_otp::CODE_TTL_MINUTES);
    mail_now(state, send.to, mail, "email verification code").await
}
