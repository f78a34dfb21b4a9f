//! My Account's forms: profile, password, authenticator app, recovery codes, unlinking
//! a connection and ending a session. The [`AccountForm`] extractor checks the CSRF
//! token and the signed-in account; each handler runs its form's rule from
//! `account::forms` on the blocking pool and sends the browser where the answer says.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::account::{home, reply, NoFields};
use super::extract::{Account, AccountForm, Core};
use super::pages::Layout;
use super::{see_other, Shared, WebError};
use crate::account::{forms, PasswordChange};
use axum_extra::extract::cookie::CookieJar;

pub async fn account_profile_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, .. }: AccountForm<BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    let answer = forms::profile(&core.ctx(), &signed, &form).await?;
    reply(&core.config, jar, answer)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
}

pub async fn account_password_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, by }: AccountForm<PasswordForm>,
) -> Result<Response, WebError> {
    let change = PasswordChange {
        current: form.current_password,
        new: form.new_password,
        confirm: form.new_password_confirm,
    };
    let answer = forms::password(&core.ctx(), &by, &signed, &change).await?;
    reply(&core.config, jar, answer)
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
}

/// A new email address: a code goes to it (and the browser waits for the mail, so the
/// page that follows can say it was sent).
pub async fn account_email_post(
    State(state): State<Shared>,
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, .. }: AccountForm<EmailForm>,
) -> Result<Response, WebError> {
    let (answer, send) = forms::email(&core.ctx(), &signed, &form.email).await?;
    if let Some(send) = send {
        let mail = crate::mail::verify_email_mail(
            send.code.expose(),
            crate::authn::email_otp::CODE_TTL_MINUTES,
        );
        super::reset::mail_now(&state, send.to, mail, "email change code").await?;
    }
    reply(&core.config, jar, answer)
}

#[derive(Deserialize)]
pub struct EmailConfirmForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
}

pub async fn account_email_confirm_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, by }: AccountForm<EmailConfirmForm>,
) -> Result<Response, WebError> {
    let answer = forms::confirm_email(&core.ctx(), &by, &signed, &form.email, &form.code).await?;
    reply(&core.config, jar, answer)
}

/// `account_totp.html`: setting up an authenticator app.
#[derive(Serialize)]
struct TotpSetupPage {
    layout: Layout,
    action: String,
    csrf: String,
    qr_data_url: String,
    secret: String,
    back_url: String,
}

fn grouped(secret_b32: &str) -> String {
    secret_b32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn account_totp_get(
    State(state): State<Shared>,
    core: Core,
    jar: CookieJar,
    Account { signed, browser }: Account,
) -> Result<Response, WebError> {
    let config = core.config.clone();
    let e = match forms::totp_setup(&core.ctx(), &core.sealing, &signed).await? {
        forms::Setup::Scan(e) => e,
        // Already set up: the page says how things stand.
        forms::Setup::AlreadySet => return Ok(see_other(&home(&config))),
        forms::Setup::StepUp(step_up) => return reply(&config, jar, step_up),
    };
    state.render(
        "account_totp.html",
        &TotpSetupPage {
            layout: state.layout(&config, "Set up your authenticator app", None),
            action: format!("{}/totp", home(&config)),
            csrf: state.csrf_token(&browser),
            qr_data_url: format!("data:image/png;base64,{}", e.qr_png_base64),
            secret: grouped(&e.secret_base32),
            back_url: home(&config),
        },
    )
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

pub async fn account_totp_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, by }: AccountForm<CodeForm>,
) -> Result<Response, WebError> {
    let answer = forms::confirm_totp(&core.ctx(), &by, &core.sealing, &signed, &form.code).await?;
    reply(&core.config, jar, answer)
}

pub async fn account_totp_reset_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, by, .. }: AccountForm<NoFields>,
) -> Result<Response, WebError> {
    let answer = forms::reset_totp(&core.ctx(), &by, &signed).await?;
    reply(&core.config, jar, answer)
}

pub async fn account_recovery_codes_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, by, .. }: AccountForm<NoFields>,
) -> Result<Response, WebError> {
    let answer = forms::recovery_codes(&core.ctx(), &by, &signed).await?;
    reply(&core.config, jar, answer)
}

#[derive(Deserialize)]
pub struct UnlinkForm {
    #[serde(default)]
    connection: String,
    #[serde(default)]
    subject: String,
}

pub async fn account_unlink_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, by }: AccountForm<UnlinkForm>,
) -> Result<Response, WebError> {
    let answer = forms::unlink(&core.ctx(), &by, &signed, &form.connection, &form.subject).await?;
    reply(&core.config, jar, answer)
}

#[derive(Deserialize)]
pub struct SessionForm {
    #[serde(default)]
    session: String,
}

pub async fn account_session_end_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, .. }: AccountForm<SessionForm>,
) -> Result<Response, WebError> {
    let answer = forms::end_session(&core.ctx(), &signed, &form.session).await?;
    reply(&core.config, jar, answer)
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    grant: String,
}

pub async fn account_grant_revoke_post(
    core: Core,
    jar: CookieJar,
    AccountForm { signed, form, .. }: AccountForm<GrantForm>,
) -> Result<Response, WebError> {
    let config = core.config.clone();
    let app_name = |client_id: &str| super::account::app_name(&config, client_id);
    let answer = forms::revoke_grant(&core.ctx(), &signed, &form.grant, &app_name).await?;
    reply(&core.config, jar, answer)
}
