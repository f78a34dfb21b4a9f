//! My Account's forms: profile, password, authenticator app, recovery codes, unlinking
//! a connection and ending a session. Each checks the CSRF token and the signed-in
//! account, calls `account` on the blocking pool, leaves a one-time message for the
//! page, and answers 303.

use std::collections::BTreeMap;

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};

use super::account::{built_in, home, put_flash, signed_in, Flash, Signed};
use super::pages::Layout;
use super::{cookies, see_other, Shared, WebError};
use crate::account::{self, AccountError};
use crate::config::Config;

/// Where a form goes: on, or back to sign in.
enum Gate {
    In(Signed),
    Out(Response),
}

/// CSRF first (a forged form learns nothing), then the account.
fn gate(
    state: &Shared,
    config: &Config,
    jar: &CookieJar,
    csrf: &str,
    now: u64,
) -> Result<Gate, WebError> {
    built_in(config)?;
    let browser = cookies::get(jar, config, cookies::BROWSER);
    if !state.csrf_ok(browser.as_deref(), Some(csrf)) {
        return Err(WebError::csrf());
    }
    Ok(match signed_in(state, config, jar, now)? {
        Some(s) => Gate::In(s),
        None => Gate::Out(see_other(&home(config))),
    })
}

/// Run a blocking account change; its refusal becomes the page's error message.
async fn run<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
) -> Result<Result<T, String>, WebError> {
    match tokio::task::spawn_blocking(work).await? {
        Ok(v) => Ok(Ok(v)),
        Err(AccountError::Refused(message)) => Ok(Err(message)),
        Err(AccountError::Store(e)) => Err(e.into()),
    }
}

/// 303 back to the page with a message for it.
fn back(
    state: &Shared,
    config: &Config,
    jar: CookieJar,
    user_id: &str,
    outcome: Result<String, String>,
    codes: Vec<String>,
) -> Result<Response, WebError> {
    let (notice, error) = match outcome {
        Ok(n) => (Some(n), None),
        Err(e) => (None, Some(e)),
    };
    let flash = Flash {
        user_id: user_id.to_string(),
        notice,
        error,
        codes,
    };
    let jar = put_flash(state, config, jar, &flash, state.now())?;
    Ok((jar, see_other(&home(config))).into_response())
}

pub async fn account_profile_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let csrf = form.get("csrf").cloned().unwrap_or_default();
    let s = match gate(&state, &config, &jar, &csrf, now)? {
        Gate::In(s) => s,
        Gate::Out(res) => return Ok(res),
    };
    let (store, cfg, user) = (state.store.clone(), config.clone(), s.user.clone());
    let outcome =
        run(move || account::update_profile(store.as_ref(), &cfg, &user, &form, now)).await?;
    let outcome = outcome.map(|changed| {
        if changed.is_empty() {
            "Nothing was changed.".to_string()
        } else {
            "Your profile was saved.".to_string()
        }
    });
    back(&state, &config, jar, &s.user.id, outcome, Vec::new())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
}

pub async fn account_password_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let s = match gate(&state, &config, &jar, &form.csrf, now)? {
        Gate::In(s) => s,
        Gate::Out(res) => return Ok(res),
    };
    let (store, cfg, user, keep) = (
        state.store.clone(),
        config.clone(),
        s.user.clone(),
        s.session_hash.clone(),
    );
    let outcome = run(move || {
        account::change_password(
            store.as_ref(),
            &cfg,
            &user,
            &form.current_password,
            &form.new_password,
            &form.new_password_confirm,
            &keep,
            now,
        )
    })
    .await?;
    let outcome = outcome.map(|ended| match ended {
        0 => "Your password was changed.".to_string(),
        n => format!("Your password was changed, and you were signed out of {n} other session(s)."),
    });
    back(&state, &config, jar, &s.user.id, outcome, Vec::new())
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
    jar: CookieJar,
) -> Result<Response, WebError> {
    let config = state.config();
    built_in(&config)?;
    let now = state.now();
    let Some(s) = signed_in(&state, &config, &jar, now)? else {
        return Ok(see_other(&home(&config)));
    };
    let (store, sealing, uid) = (
        state.store.clone(),
        state.sealing.clone(),
        s.user.id.clone(),
    );
    let secret =
        match run(move || account::totp_secret(store.as_ref(), &sealing, &uid, now)).await? {
            Ok(Some(secret)) => secret,
            // Already set up (or refused): the page says how things stand.
            Ok(None) | Err(_) => return Ok(see_other(&home(&config))),
        };
    let label = s
        .user
        .email
        .clone()
        .unwrap_or_else(|| s.user.username.clone());
    let issuer = config.issuer.host_str().unwrap_or("Usher").to_string();
    let e = tokio::task::spawn_blocking(move || {
        crate::authn::totp::enrolment(&secret, &issuer, &label)
    })
    .await?
    .map_err(|e| WebError::Internal(e.to_string()))?;
    state.render(
        "account_totp.html",
        &TotpSetupPage {
            layout: state.layout(&config, "Set up your authenticator app", None),
            action: format!("{}/totp", home(&config)),
            csrf: state.csrf_token(&s.browser),
            qr_data_url: format!("data:image/png;base64,{}", e.qr_png_base64),
            secret: grouped(&e.secret_base32),
            back_url: home(&config),
        },
    )
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub async fn account_totp_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let s = match gate(&state, &config, &jar, &form.csrf, now)? {
        Gate::In(s) => s,
        Gate::Out(res) => return Ok(res),
    };
    let (store, cfg, sealing, uid) = (
        state.store.clone(),
        config.clone(),
        state.sealing.clone(),
        s.user.id.clone(),
    );
    let outcome =
        run(move || account::confirm_totp(store.as_ref(), &cfg, &sealing, &uid, &form.code, now))
            .await?;
    match outcome {
        Ok(codes) => back(&state, &config, jar, &s.user.id, Ok("Your authenticator app is set up. Save your recovery codes now: they are shown only once.".into()), codes),
        Err(message) => back(&state, &config, jar, &s.user.id, Err(message), Vec::new()),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn account_totp_reset_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let s = match gate(&state, &config, &jar, &form.csrf, now)? {
        Gate::In(s) => s,
        Gate::Out(res) => return Ok(res),
    };
    let (store, uid) = (state.store.clone(), s.user.id.clone());
    let outcome = run(move || account::reset_totp(store.as_ref(), &uid, now)).await?;
    let outcome = outcome.map(|()| "Your authenticator app and recovery codes were removed. Set up a new one whenever you like.".to_string());
    back(&state, &config, jar, &s.user.id, outcome, Vec::new())
}

pub async fn account_recovery_codes_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let s = match gate(&state, &config, &jar, &form.csrf, now)? {
        Gate::In(s) => s,
        Gate::Out(res) => return Ok(res),
    };
    let (store, uid) = (state.store.clone(), s.user.id.clone());
    match run(move || account::regenerate_recovery_codes(store.as_ref(), &uid, now)).await? {
        Ok(codes) => back(
            &state,
            &config,
            jar,
            &s.user.id,
            Ok("Here are your new recovery codes; the old ones no longer work.".into()),
            codes,
        ),
        Err(message) => back(&state, &config, jar, &s.user.id, Err(message), Vec::new()),
    }
}

#[derive(Deserialize)]
pub struct UnlinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    connection: String,
    #[serde(default)]
    subject: String,
}

pub async fn account_unlink_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<UnlinkForm>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let s = match gate(&state, &config, &jar, &form.csrf, now)? {
        Gate::In(s) => s,
        Gate::Out(res) => return Ok(res),
    };
    let (store, user) = (state.store.clone(), s.user.clone());
    let outcome =
        run(move || account::unlink(store.as_ref(), &user, &form.connection, &form.subject, now))
            .await?;
    let outcome = outcome.map(|()| "The connection was unlinked.".to_string());
    back(&state, &config, jar, &s.user.id, outcome, Vec::new())
}

#[derive(Deserialize)]
pub struct SessionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    session: String,
}

pub async fn account_session_end_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<SessionForm>,
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let s = match gate(&state, &config, &jar, &form.csrf, now)? {
        Gate::In(s) => s,
        Gate::Out(res) => return Ok(res),
    };
    let (store, uid) = (state.store.clone(), s.user.id.clone());
    let ended = run(move || account::end_session(store.as_ref(), &uid, &form.session, now)).await?;
    match ended {
        Ok(Some(hash)) if hash == s.session_hash => {
            // This browser's own session: My Account ends with it.
            state.store.revoke_grant(&s.grant_id)?;
            state.flush().await?;
            let jar = cookies::clear_session(jar, &config);
            let jar = cookies::clear(jar, &config, cookies::ACCOUNT);
            Ok((jar, see_other(&format!("{}/signed-out", home(&config)))).into_response())
        }
        Ok(Some(_)) => back(
            &state,
            &config,
            jar,
            &s.user.id,
            Ok("That session was signed out.".into()),
            Vec::new(),
        ),
        Ok(None) => back(
            &state,
            &config,
            jar,
            &s.user.id,
            Err("That session has already ended.".into()),
            Vec::new(),
        ),
        Err(message) => back(&state, &config, jar, &s.user.id, Err(message), Vec::new()),
    }
}
