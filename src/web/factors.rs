//! Second factors in the hosted sign-in: TOTP (with enrolment during sign-in), email
//! OTP, recovery codes, and the page for a subject who has no account to hold one.
//!
//! The checks themselves live in `authn`; this module renders the pages, reads the
//! forms, and records the step's outcome in the flow.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::login::{current_step, login_url, posted_flow};
use super::pages::{EmailOtpPage, RecoveryCodePage, RecoveryCodesPage, TotpEnrol, TotpPage};
use super::{see_other, Shared, WebError};
use crate::authn::email_otp::EmailCheck;
use crate::authn::{email_otp, recovery, steps, totp};
use crate::config::{App, Config, StepOption};
use crate::crypto::unix_now;
pub(crate) use crate::flow::usable_options;
use crate::flow::{Flow, Subject};
use crate::store::TotpCredential;

/// The MFA conflict: every option of this step needs an account and the subject has
/// none. The user gets a page that says so, the app gets `access_denied`, and the trace
/// names the two fixes for the admin.
pub(crate) fn mfa_conflict(
    state: &Shared,
    config: &Config,
    app: &App,
    flow: &mut Flow,
    step: usize,
) -> Result<Response, WebError> {
    let error = steps::mfa_conflict(flow, step);
    tracing::warn!(flow = %flow.id, app = %app.id, trace = ?flow.trace, "sign-in cannot continue: second factor without an account");
    super::login::audit_sign_in(
        state,
        flow,
        "access_denied: second factor without an account",
        crate::crypto::unix_now(),
    );
    state.record_end(
        flow,
        crate::fixtures::record::Ended::Error(&error),
        Some("mfa_conflict"),
    );
    state.store.delete_flow(&flow.id)?;
    let back = crate::oidc::authorize::response_url(
        &flow.request.redirect_uri,
        &crate::oidc::issuer(config),
        flow.request.state.as_deref(),
        Err(&error),
    )
    .map(|u| u.to_string());
    Err(WebError::Page {
        status: StatusCode::FORBIDDEN,
        title: "This sign-in cannot be completed",
        message: format!(
            "{} asks for a second sign-in step that needs an account with {}, and you signed in without one.",
            app.name,
            crate::oidc::issuer(config)
        ),
        hint: Some("Go back to the application. Its administrator can let accounts be created when you sign in, or skip this step for you.".into()),
        back_url: back,
    })
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

/// Render the page of an account-bound option (`totp`, `email_otp`, `recovery_code`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn render(
    state: &Shared,
    config: &Config,
    app: &App,
    flow: &mut Flow,
    option: &StepOption,
    csrf: String,
    back_url: Option<String>,
    cancel_url: Option<String>,
) -> Result<Response, WebError> {
    let Some((subject, uid)) = subject_account(flow) else {
        return Err(WebError::Internal(
            "second factor shown without an account".into(),
        ));
    };
    let layout = state.layout(config, &format!("Sign in to {}", app.name), Some(app));
    let error = flow.notice.take();
    match option {
        StepOption::Totp => {
            let credential = state.store.totp(&uid)?;
            let enrol = match credential {
                Some(c) if c.confirmed => None,
                existing => {
                    if !app.mfa_enrolment {
                        return Err(WebError::page(
                            StatusCode::FORBIDDEN,
                            "No authenticator app is set up",
                            "This account has no authenticator app, and this application does not let you set one up while signing in.",
                        )
                        .with_hint("Choose another way to verify, or ask your administrator."));
                    }
                    Some(enrolment(state, app, &subject, &uid, existing).await?)
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
            if !flow.email_sent {
                flow.email_sent = true;
                send_email_code(state, app, &uid, unix_now()).await?;
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

/// The enrolment page's QR code and key: the pending (unconfirmed) secret if there is
/// one, so a reload shows the same key, else a new one sealed into the store.
async fn enrolment(
    state: &Shared,
    app: &App,
    subject: &Subject,
    uid: &str,
    existing: Option<TotpCredential>,
) -> Result<TotpEnrol, WebError> {
    let had_one = existing.is_some();
    let secret = match existing.and_then(|c| state.sealing.open(&c.sealed_secret, uid.as_bytes())) {
        Some(s) => s,
        None => {
            let secret = totp::generate_secret();
            let ours = TotpCredential {
                sealed_secret: state
                    .sealing
                    .seal(&secret, uid.as_bytes())
                    .map_err(|e| WebError::Internal(e.to_string()))?,
                created_at: unix_now(),
                last_step: 0,
                confirmed: false,
            };
            let stored = if had_one {
                // A pending secret this server cannot open (its key changed): replace it.
                state.store.put_totp(uid, &ours)?;
                ours.clone()
            } else {
                // Another page of this account's may have stored a secret meanwhile:
                // show that one, so the code the user's app computes is the one
                // Usher checks.
                state.store.create_totp(uid, &ours)?
            };
            state.flush().await?;
            if stored.sealed_secret == ours.sealed_secret {
                secret
            } else {
                state
                    .sealing
                    .open(&stored.sealed_secret, uid.as_bytes())
                    .ok_or_else(|| {
                        WebError::Internal("a stored TOTP secret does not open".into())
                    })?
            }
        }
    };
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

/// Issue and mail a code (subject to the resend limit). An account without an email
/// address gets nothing, and the page says the same either way.
async fn send_email_code(state: &Shared, app: &App, uid: &str, now: u64) -> Result<bool, WebError> {
    let Some(email) = state.store.user(uid)?.and_then(|u| u.email) else {
        return Ok(true);
    };
    let code = match email_otp::issue(state.store.as_ref(), uid, now)? {
        email_otp::Issued::Send(code) => code,
        email_otp::Issued::TooMany { .. } => return Ok(false),
    };
    state.flush().await?;
    let mail = crate::mail::render_email_otp(&app.name, code.expose(), email_otp::CODE_TTL_MINUTES)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let mailer = state.mailer();
    let sent = tokio::task::spawn_blocking(move || {
        mailer.send(&email, &mail.subject, &mail.text, &mail.html)
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
    Ok(true)
}

/// For a recording server: the code input, as a `valid`/`invalid` marker.
fn record_code(flow: &mut Flow, option: &str, done_before: usize) {
    let passed = flow.done.len() > done_before;
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
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    resend: Option<String>,
}

/// A code form's flow at the step it answers.
struct CodeStep {
    flow: Flow,
    step: usize,
    subject: Subject,
    uid: String,
    /// Steps done before this answer, for the recorder.
    before: usize,
}

/// Common start of every code form: CSRF, the flow, the step and its account. `Err`
/// holds the answer when the form does not fit the flow's current step (the flow is
/// saved and the browser sent back to it).
async fn code_step(
    state: &Shared,
    config: &Config,
    jar: &CookieJar,
    id: &str,
    csrf: &str,
    option: &StepOption,
    now: u64,
) -> Result<Result<CodeStep, Response>, WebError> {
    let mut flow = posted_flow(state, config, jar, id, csrf, now)?;
    let step = current_step(state, config, jar, &mut flow, now).await?;
    match (step, subject_account(&flow)) {
        (Some((step, options, _)), Some((subject, uid))) if options.contains(option) => {
            flow.picked = Some(option.name().to_string());
            let before = flow.done.len();
            Ok(Ok(CodeStep {
                flow,
                step,
                subject,
                uid,
                before,
            }))
        }
        _ => {
            state.save_flow(&flow)?;
            Ok(Err(see_other(&login_url(config, &flow))))
        }
    }
}

pub async fn login_totp_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<CodeForm>,
) -> Response {
    let r = async {
        let config = state.config();
        let now = unix_now();
        let CodeStep {
            mut flow,
            step,
            subject,
            uid,
            before,
        } = match code_step(
            &state,
            &config,
            &jar,
            &id,
            &form.csrf,
            &StepOption::Totp,
            now,
        )
        .await?
        {
            Ok(ready) => ready,
            Err(elsewhere) => return Ok(elsewhere),
        };
        let store = state.store.as_ref();
        match state.store.totp(&uid)? {
            // While locked nothing is checked; `otp_locked` and `otp_attempt` set the
            // message.
            None if steps::otp_locked(store, &mut flow, &uid, now)? => {}
            None => flow.notice = Some("Set up your authenticator app first.".into()),
            Some(credential) => {
                if let Some(attempt) = steps::otp_attempt(store, &config, &mut flow, &uid, now)? {
                    let secret = state
                        .sealing
                        .open(&credential.sealed_secret, uid.as_bytes())
                        .ok_or_else(|| {
                            WebError::Internal("a stored TOTP secret does not open".into())
                        })?;
                    let accepted = match totp::verify(&secret, &form.code, now) {
                        // Compare-and-swap on the account's last step: a code is good once.
                        Some(time_step) => state.store.accept_totp_step(&uid, time_step)?,
                        None => false,
                    };
                    if accepted {
                        if !credential.confirmed {
                            steps::confirm_enrolment(store, &mut flow, &uid)?;
                            crate::audit::record(
                                store,
                                now,
                                crate::audit::kind::MFA_ENROLLED,
                                Some(&flow.request.app_id),
                                Some(&uid),
                                vec!["authenticator app enrolled while signing in".into()],
                            );
                        }
                        state.flush().await?;
                        steps::otp_passed(store, &mut flow, step, StepOption::Totp, subject, now)?;
                    } else {
                        steps::otp_wrong(
                            store,
                            &config,
                            &mut flow,
                            (&uid, &attempt),
                            step,
                            "authenticator code",
                            now,
                        );
                    }
                }
            }
        }
        record_code(&mut flow, "totp", before);
        state.save_flow(&flow)?;
        Ok(see_other(&login_url(&config, &flow)))
    }
    .await;
    state.respond(r)
}

pub async fn login_email_otp_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<CodeForm>,
) -> Response {
    let r = async {
        let config = state.config();
        let now = unix_now();
        let CodeStep { mut flow, step, subject, uid, before } =
            match code_step(&state, &config, &jar, &id, &form.csrf, &StepOption::EmailOtp, now).await? {
                Ok(ready) => ready,
                Err(elsewhere) => return Ok(elsewhere),
            };
        let app = config.apps.get(&flow.request.app_id).cloned();
        if form.resend.is_some() {
            let sent = match &app {
                Some(app) => send_email_code(&state, app, &uid, now).await?,
                None => false,
            };
            flow.email_sent = true;
            flow.notice = Some(if sent {
                "If your account has an email address, a new code is on its way. Earlier codes no longer work.".into()
            } else {
                "Too many codes were sent. Wait a few minutes before asking for another.".into()
            });
        } else {
            match email_otp::check(state.store.as_ref(), &uid, &form.code, now)? {
                EmailCheck::Ok => {
                    state.flush().await?;
                    steps::otp_passed(state.store.as_ref(), &mut flow, step, StepOption::EmailOtp, subject, now)?;
                }
                EmailCheck::Wrong { .. } => {
                    flow.notice = Some(steps::WRONG_CODE.into());
                    let line = format!("step {step}: wrong email code");
                    crate::audit::rejected(state.store.as_ref(), &flow, Some(&uid), &line, now);
                    flow.trace.push(line);
                }
                EmailCheck::Expired | EmailCheck::Missing => {
                    flow.notice = Some("That code has expired or was replaced by a newer one. Send a new code.".into());
                    flow.trace.push(format!("step {step}: expired or superseded email code"));
                }
            }
        }
        if form.resend.is_none() {
            record_code(&mut flow, "email_otp", before);
        }
        state.save_flow(&flow)?;
        Ok(see_other(&login_url(&config, &flow)))
    }
    .await;
    state.respond(r)
}

pub async fn login_recovery_code_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<CodeForm>,
) -> Response {
    let r = async {
        let config = state.config();
        let now = unix_now();
        let CodeStep {
            mut flow,
            step,
            subject,
            uid,
            before,
        } = match code_step(
            &state,
            &config,
            &jar,
            &id,
            &form.csrf,
            &StepOption::RecoveryCode,
            now,
        )
        .await?
        {
            Ok(ready) => ready,
            Err(elsewhere) => return Ok(elsewhere),
        };
        // Recovery codes share the second factor's attempt counter with TOTP.
        let store = state.store.as_ref();
        let attempt = steps::otp_attempt(store, &config, &mut flow, &uid, now)?;
        if let Some(attempt) = attempt {
            if store.consume_recovery_code(&uid, &recovery::hash(&uid, &form.code))? {
                state.flush().await?;
                flow.trace
                    .push(format!("step {step}: a recovery code was used"));
                steps::otp_passed(
                    store,
                    &mut flow,
                    step,
                    StepOption::RecoveryCode,
                    subject,
                    now,
                )?;
            } else {
                steps::otp_wrong(
                    store,
                    &config,
                    &mut flow,
                    (&uid, &attempt),
                    step,
                    "recovery code",
                    now,
                );
            }
        }
        record_code(&mut flow, "recovery_code", before);
        state.save_flow(&flow)?;
        Ok(see_other(&login_url(&config, &flow)))
    }
    .await;
    state.respond(r)
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

#[derive(Deserialize)]
pub struct ContinueForm {
    #[serde(default)]
    csrf: String,
}

pub async fn login_continue_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<ContinueForm>,
) -> Response {
    let r = async {
        let config = state.config();
        let now = unix_now();
        let mut flow = posted_flow(&state, &config, &jar, &id, &form.csrf, now)?;
        flow.pending_codes.clear();
        state.save_flow(&flow)?;
        Ok(see_other(&login_url(&config, &flow)))
    }
    .await;
    state.respond(r)
}
