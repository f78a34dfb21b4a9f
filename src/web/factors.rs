//! Second factors in the hosted sign-in: TOTP (with enrolment during sign-in), email
//! OTP, recovery codes, and the page for a subject who has no account to hold one.
//!
//! The checks themselves live in `authn`; this module renders the pages, reads the
//! forms, and records the step's outcome in the flow.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::login::login_url;
use super::pages::{EmailOtpPage, RecoveryCodePage, RecoveryCodesPage, TotpEnrol, TotpPage};
use super::posted::Posted;
use super::{see_other, Shared, WebError};
use crate::account::notify;
use crate::authn::{email_otp, totp};
use crate::config::{App, Config, StepOption};

use crate::flow::{Flow, Subject};
use crate::signin::codes::{self, Checked, CodeStep, EmailSend, TotpPrompt};

/// The MFA conflict's page: every option of the step needs an account and the subject
/// has none. The user is told so, with a way back to the app (which hears
/// `access_denied`); the trace names the two fixes for the admin.
pub(crate) fn mfa_conflict_page(config: &Config, app: &App, back: url::Url) -> WebError {
    WebError::Page {
        status: StatusCode::FORBIDDEN,
        title: "This sign-in cannot be completed",
        message: format!(
            "{} asks for a second sign-in step that needs an account with {}, and you signed in without one.",
            app.name,
            crate::oidc::issuer(config)
        ),
        hint: Some("Go back to the application. Its administrator can let accounts be created when you sign in, or skip this step for you.".into()),
        back_url: Some(back.to_string()),
    }
}

fn subject_account(flow: &Flow) -> Option<(Subject, String)> {
    let s = flow.subject()?.clone();
    let uid = s.user_id.clone()?;
    Some((s, uid))
}

fn group(secret_b32: &str) -> String {
    secret_b32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What every step page carries besides its own content: the form's CSRF token, the
/// way back to the step's chooser (when it offers several options) and the cancel link.
pub(crate) struct StepLinks {
    pub csrf: String,
    pub back_url: Option<String>,
    pub cancel_url: Option<String>,
}

/// Render the page of an account-bound option (`totp`, `email_otp`, `recovery_code`).
pub(crate) async fn render(
    state: &Shared,
    config: &Config,
    app: &App,
    flow: &mut Flow,
    option: &StepOption,
    links: StepLinks,
) -> Result<Response, WebError> {
    let StepLinks {
        csrf,
        back_url,
        cancel_url,
    } = links;
    let Some((subject, uid)) = subject_account(flow) else {
        return Err(WebError::Internal(
            "second factor shown without an account".into(),
        ));
    };
    let layout = state.layout(config, &format!("Sign in to {}", app.name), Some(app));
    let error = flow.take_notice();
    match option {
        StepOption::Totp => {
            let ctx = state.core(config, state.now());
            let enrol = match codes::totp_prompt(ctx, &state.sealing, app, flow, &uid).await? {
                TotpPrompt::Enter => None,
                TotpPrompt::PassFirst => {
                    return Err(WebError::Page {
                        status: StatusCode::FORBIDDEN,
                        title: "Verify with your second factor first",
                        message: codes::PASS_FIRST.into(),
                        hint: Some(match back_url {
                            Some(_) => "Go back and choose the way you usually verify.".into(),
                            None => format!(
                                "Set up your authenticator app at {}/myaccount, then sign in again.",
                                crate::oidc::issuer(config).trim_end_matches('/')
                            ),
                        }),
                        back_url,
                    });
                }
                TotpPrompt::SignInFirst => {
                    return Err(WebError::Page {
                        status: StatusCode::FORBIDDEN,
                        title: "Sign in again first",
                        message: codes::SIGN_IN_FIRST.into(),
                        hint: Some(format!(
                            "Sign out and sign in again with your password, or set it up at {}/myaccount.",
                            crate::oidc::issuer(config).trim_end_matches('/')
                        )),
                        back_url,
                    });
                }
                TotpPrompt::NotOffered => {
                    return Err(WebError::page(
                        StatusCode::FORBIDDEN,
                        "No authenticator app is set up",
                        "This account has no authenticator app, and this application does not let you set one up while signing in.",
                    )
                    .with_hint("Choose another way to verify, or ask your administrator."));
                }
                TotpPrompt::Enrol { secret } => {
                    // The secret the user is about to scan must survive a crash.
                    state.flush().await?;
                    Some(enrolment(app, &subject, secret).await?)
                }
            };
            state.render(
                "totp.html",
                &TotpPage {
                    layout,
                    action: format!("{}/totp", login_url(config, flow)),
                    csrf,
                    enrol,
                    error,
                    back_url,
                    cancel_url,
                },
            )
        }
        StepOption::EmailOtp => {
            let ctx = state.core(config, state.now());
            if !flow.email_sent {
                // Before a code is issued: a throttled address gets no code at all,
                // and counts the same whether or not the account has an address.
                super::client::email_allowed(state, config, &flow.ip, ctx.now).await?;
            }
            if let Some(send) = codes::email_page(ctx, flow, &uid).await? {
                mail_code(state, app, send).await?;
            }
            state.render(
                "email_code.html",
                &EmailOtpPage {
                    layout,
                    action: format!("{}/email_otp", login_url(config, flow)),
                    csrf,
                    info: format!(
                        "If your account has an email address, we sent a {}-digit code to it. It works for {} minutes.",
                        email_otp::DIGITS,
                        email_otp::CODE_TTL_MINUTES
                    ),
                    error,
                    back_url,
                    cancel_url,
                },
            )
        }
        StepOption::RecoveryCode => state.render(
            "recovery_code.html",
            &RecoveryCodePage {
                layout,
                action: format!("{}/recovery_code", login_url(config, flow)),
                csrf,
                error,
                back_url,
                cancel_url,
            },
        ),
        other => Err(WebError::Internal(format!(
            "`{}` is not a second factor",
            other.name()
        ))),
    }
}

/// The enrolment page's QR code and key for `secret` (the QR image is drawn on the
/// blocking pool).
async fn enrolment(app: &App, subject: &Subject, secret: Vec<u8>) -> Result<TotpEnrol, WebError> {
    let account = subject
        .email
        .clone()
        .or_else(|| subject.username.clone())
        .unwrap_or_else(|| subject.sub.clone());
    let issuer = app.name.clone();
    let e = tokio::task::spawn_blocking(move || totp::enrolment(&secret, &issuer, &account))
        .await?
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(TotpEnrol {
        qr_data_url: format!("data:image/png;base64,{}", e.qr_png_base64),
        secret: group(&e.secret_base32),
        otpauth_uri: e.otpauth_uri,
    })
}

/// Mail a code the core issued, once it is durable. Nothing to mail for an account
/// without an address or past the resend limit; a page asking to wait when the address
/// that started the sign-in (`flow.ip`) is over its email throttle.
async fn mail_code(state: &Shared, app: &App, send: EmailSend) -> Result<(), WebError> {
    let EmailSend::Send { to, code } = send else {
        return Ok(());
    };
    state.flush().await?;
    let mail = crate::mail::render_email_otp(&app.name, code.expose(), email_otp::CODE_TTL_MINUTES)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let mailer = state.mailer();
    let sent = tokio::task::spawn_blocking(move || {
        mailer.send(&to, &mail.subject, &mail.text, &mail.html)
    })
    .await?;
    if let Err(e) = sent {
        tracing::error!(error = %e, "could not send the email code");
        return Err(WebError::page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The email could not be sent",
            "Usher could not send the code right now.",
        )
        .with_hint("Try again in a moment, or choose another way to verify."));
    }
    Ok(())
}

/// For a recording server: the code input, as a `valid`/`invalid` marker.
fn record_code(flow: &mut Flow, option: &str, passed: bool) {
    if let Some(rec) = flow.recording.as_mut() {
        rec.inputs.push(crate::fixtures::format::Input {
            pick: Some(option.to_string()),
            code: Some(crate::fixtures::format::CodeMarker::accepted(passed)),
            ..Default::default()
        });
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    resend: Option<String>,
}

/// The step a code form answers, with its account. `Err` holds the answer when the
/// form does not fit the flow's current step (the flow is saved and the browser sent
/// back to it).
async fn code_step<T>(
    state: &Shared,
    posted: &mut Posted<T>,
    option: &StepOption,
) -> Result<Result<CodeStep, Response>, WebError> {
    let at = match posted.current_step(state).await? {
        Some((step, options, _)) => CodeStep::at(&mut posted.flow, step, &options, option),
        None => None,
    };
    match at {
        Some(at) => Ok(Ok(at)),
        None => {
            state.save_flow(&mut posted.flow).await?;
            Ok(Err(see_other(&login_url(&posted.config, &posted.flow))))
        }
    }
}

/// After a code form: record it for a recording server, make a used code durable, and
/// send the browser back to the flow's page.
async fn code_answered(
    state: &Shared,
    config: &Config,
    mut flow: Flow,
    option: &str,
    checked: Checked,
) -> Result<Response, WebError> {
    if checked == Checked::Passed {
        state.flush().await?;
    }
    record_code(&mut flow, option, checked == Checked::Passed);
    state.save_flow(&mut flow).await?;
    Ok(see_other(&login_url(config, &flow)))
}

/// A code form that only checks its code (TOTP, recovery codes): find the step it
/// answers, let the core check the code, and send the browser on.
async fn answer_code(
    state: &Shared,
    mut posted: Posted<CodeForm>,
    option: StepOption,
) -> Result<Response, WebError> {
    let at = match code_step(state, &mut posted, &option).await? {
        Ok(at) => at,
        Err(elsewhere) => return Ok(elsewhere),
    };
    let Posted {
        form,
        mut flow,
        config,
        now,
        ..
    } = posted;
    let ctx = state.core(&config, now);
    let uid = at.user_id.clone();
    let checked = match option {
        StepOption::Totp => {
            codes::submit_totp(ctx, &state.sealing, &mut flow, at, &form.code).await?
        }
        _ => codes::submit_recovery_code(ctx, &mut flow, at, &form.code).await?,
    };
    // A code that confirmed a new authenticator issued recovery codes to show once.
    if option == StepOption::Totp && checked == Checked::Passed && !flow.pending_codes.is_empty() {
        let by = notify::By {
            client: notify::flow_client(&flow.ip),
            mailer: Some(state.mailer()),
        };
        notify::changed_by_id(&ctx, &by, &uid, notify::Change::TotpEnrolled).await;
    }
    code_answered(state, &config, flow, option.name(), checked).await
}

pub async fn login_totp_post(
    State(state): State<Shared>,
    posted: Posted<CodeForm>,
) -> Result<Response, WebError> {
    answer_code(&state, posted, StepOption::Totp).await
}

pub async fn login_email_otp_post(
    State(state): State<Shared>,
    mut posted: Posted<CodeForm>,
) -> Result<Response, WebError> {
    let at = match code_step(&state, &mut posted, &StepOption::EmailOtp).await? {
        Ok(at) => at,
        Err(elsewhere) => return Ok(elsewhere),
    };
    let Posted {
        form,
        mut flow,
        config,
        now,
        ..
    } = posted;
    let ctx = state.core(&config, now);
    if form.resend.is_some() {
        super::client::email_allowed(&state, &config, &flow.ip, now).await?;
        let send = codes::resend_email_code(ctx, &mut flow, &at.user_id).await?;
        if let Some(app) = config.apps.get(&flow.request.app_id) {
            mail_code(&state, app, send).await?;
        }
        state.save_flow(&mut flow).await?;
        return Ok(see_other(&login_url(&config, &flow)));
    }
    let checked = codes::submit_email_code(ctx, &mut flow, at, &form.code).await?;
    code_answered(&state, &config, flow, "email_otp", checked).await
}

pub async fn login_recovery_code_post(
    State(state): State<Shared>,
    posted: Posted<CodeForm>,
) -> Result<Response, WebError> {
    answer_code(&state, posted, StepOption::RecoveryCode).await
}

/// The page that shows freshly issued recovery codes, once.
pub(crate) fn recovery_codes_page(
    state: &Shared,
    config: &Config,
    app: &App,
    flow: &Flow,
    csrf: String,
) -> Result<Response, WebError> {
    state.render(
        "recovery_codes.html",
        &RecoveryCodesPage {
            layout: state.layout(config, &format!("Sign in to {}", app.name), Some(app)),
            action: format!("{}/continue", login_url(config, flow)),
            csrf,
            codes: flow.pending_codes.clone(),
        },
    )
}

/// The recovery codes page's form carries nothing but its CSRF token.
#[derive(Deserialize)]
pub struct ContinueForm {}

pub async fn login_continue_post(
    State(state): State<Shared>,
    posted: Posted<ContinueForm>,
) -> Result<Response, WebError> {
    let Posted {
        mut flow, config, ..
    } = posted;
    flow.pending_codes.clear();
    state.save_flow(&mut flow).await?;
    Ok(see_other(&login_url(&config, &flow)))
}
