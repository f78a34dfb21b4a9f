//! What My Account's page shows and what each of its forms answers, without HTTP.
//!
//! A form's change is made by the rules in `account`; its outcome becomes a one-time
//! message (and recovery codes, shown once) kept server-side for the next page, like an
//! in-progress sign-in, and named by the id the shell puts in a cookie. A refusal is a
//! message too, never an error page: the user stays on the page and reads why.
//! Everything here is blocking (store, flush, Argon2); the shell runs it on the
//! blocking pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::access::Signed;
use super::email::ChangeCode;
use super::notify::{self, By, Change};
use super::step_up::{self, Fresh};
use super::{AccountError, Overview, PasswordChange};
use crate::authn::sealing::SealingKey;
use crate::authn::totp::{self, Enrolment};
use crate::context::Ctx;
use crate::crypto::time_prefixed_id;
use crate::store::{StoreError, StoreResult};

/// A one-time message (and recovery codes) for the next My Account page.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// Only this account's page shows it.
    pub user_id: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub codes: Vec<String>,
    /// A new email address a code was mailed to: the page asks for the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_email: Option<String>,
}

/// Keep a message for the next page (as long as a sign-in may take); returns the id
/// that names it.
pub async fn put_flash(ctx: &Ctx<'_>, flash: &Flash) -> StoreResult<String> {
    let id = time_prefixed_id(ctx.now);
    let bytes = serde_json::to_vec(flash).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let expires_at = ctx.now.saturating_add(ctx.config.security.flow_ttl);
    ctx.store.put_flash(&id, &bytes, expires_at).await?;
    Ok(id)
}

/// Take (and so remove) the message named `id`, if it is for `user_id`; else none.
pub async fn take_flash(ctx: &Ctx<'_>, id: Option<&str>, user_id: &str) -> StoreResult<Flash> {
    let Some(id) = id else {
        return Ok(Flash::default());
    };
    // Taken once: a second page (or a stolen cookie) finds nothing.
    let stored = ctx.store.take_flash(id, ctx.now).await?;
    Ok(stored
        .and_then(|b| serde_json::from_slice::<Flash>(&b).ok())
        .filter(|f| f.user_id == user_id)
        .unwrap_or_default())
}

/// The page: the account overview and the message left for it.
pub async fn page(
    ctx: &Ctx<'_>,
    signed: Signed,
    flash_id: Option<&str>,
) -> StoreResult<(Overview, Flash)> {
    let flash = take_flash(ctx, flash_id, &signed.user.id).await?;
    let overview = super::overview(ctx, signed.user, &signed.session_hash).await?;
    Ok((overview, flash))
}

/// Where a form sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Back to the page, which shows the message kept under this id.
    Back { flash: String },
    /// The browser's own session ended, and My Account with it.
    SignedOut,
    /// The change needs a more recent sign-in (with the account's second factor): sign
    /// in again through Usher's own flow, then come back to `after`.
    StepUp { after: After },
}

/// Where the browser goes after signing in again for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The page, where the form is submitted again.
    Home,
    /// Setting up the authenticator app.
    TotpSetup,
}

impl After {
    /// The value the shell keeps while the browser signs in (bounded: one of these).
    pub fn as_str(self) -> &'static str {
        match self {
            After::Home => "home",
            After::TotpSetup => "totp",
        }
    }

    pub fn parse(value: &str) -> After {
        match value {
            "totp" => After::TotpSetup,
            _ => After::Home,
        }
    }
}

/// `None` when `signed` may change a credential now; else the step-up to go through.
async fn needs_step_up(
    ctx: &Ctx<'_>,
    signed: &Signed,
    after: After,
) -> Result<Option<Reply>, AccountError> {
    Ok(
        match step_up::check(ctx, &signed.user, &signed.session_hash).await? {
            Fresh::Yes => None,
            Fresh::StepUp => Some(Reply::StepUp { after }),
        },
    )
}

/// Keep the outcome of a change as the page's message. A refusal is the message; a
/// fault is the caller's error.
async fn back(
    ctx: &Ctx<'_>,
    user_id: &str,
    outcome: Result<String, AccountError>,
    codes: Vec<String>,
) -> Result<Reply, AccountError> {
    back_with(ctx, user_id, outcome, codes, None).await
}

/// The same, with the page asking for the code mailed to `pending` (when there is one).
async fn back_pending(
    ctx: &Ctx<'_>,
    user_id: &str,
    outcome: Result<String, AccountError>,
    pending: Option<String>,
) -> Result<Reply, AccountError> {
    back_with(ctx, user_id, outcome, Vec::new(), pending).await
}

async fn back_with(
    ctx: &Ctx<'_>,
    user_id: &str,
    outcome: Result<String, AccountError>,
    codes: Vec<String>,
    pending_email: Option<String>,
) -> Result<Reply, AccountError> {
    let (notice, error) = match outcome {
        Ok(notice) => (Some(notice), None),
        Err(AccountError::Refused(message)) => (None, Some(message)),
        Err(fault) => return Err(fault),
    };
    let flash = Flash {
        user_id: user_id.to_string(),
        notice,
        error,
        codes,
        pending_email,
    };
    Ok(Reply::Back {
        flash: put_flash(ctx, &flash).await?,
    })
}

/// The email form: a code goes to the new address (the shell mails it), and the page
/// then asks for it. The address changes only in [`confirm_email`].
pub async fn email(
    ctx: &Ctx<'_>,
    signed: &Signed,
    address: &str,
) -> Result<(Reply, Option<ChangeCode>), AccountError> {
    if let Some(step_up) = needs_step_up(ctx, signed, After::Home).await? {
        return Ok((step_up, None));
    }
    match super::email::request_change(ctx, &signed.user, address).await {
        Ok(send) => {
            let notice = format!(
                "We sent a code to {}. Enter it below to make it your email address; until then your address stays as it is.",
                send.to
            );
            let pending = Some(send.to.clone());
            let reply = back_pending(ctx, &signed.user.id, Ok(notice), pending).await?;
            Ok((reply, Some(send)))
        }
        Err(e) => Ok((
            back_pending(ctx, &signed.user.id, Err(e), None).await?,
            None,
        )),
    }
}

/// The code mailed to the new address. A wrong code leaves the page asking for it.
pub async fn confirm_email(
    ctx: &Ctx<'_>,
    by: &By,
    signed: &Signed,
    address: &str,
    code: &str,
) -> Result<Reply, AccountError> {
    match super::email::confirm_change(ctx, &signed.user, address, code).await {
        Ok(new) => {
            // The notice goes to the address the account had: its owner hears of it.
            notify::changed(ctx.config, by, &signed.user, Change::Email, ctx.now).await;
            let notice = format!("Your email address is now {new}.");
            back_pending(ctx, &signed.user.id, Ok(notice), None).await
        }
        Err(e) => {
            let pending = Some(address.trim().to_string());
            back_pending(ctx, &signed.user.id, Err(e), pending).await
        }
    }
}

/// The profile form: the editable fields by name.
pub async fn profile(
    ctx: &Ctx<'_>,
    signed: &Signed,
    form: &BTreeMap<String, String>,
) -> Result<Reply, AccountError> {
    let outcome = super::update_profile(ctx, &signed.user, form)
        .await
        .map(|changed| {
            if changed.is_empty() {
                "Nothing was changed.".to_string()
            } else {
                "Your profile was saved.".to_string()
            }
        });
    back(ctx, &signed.user.id, outcome, Vec::new()).await
}

/// The password form; this browser's session stays signed in, the others end.
pub async fn password(
    ctx: &Ctx<'_>,
    by: &By,
    signed: &Signed,
    change: &PasswordChange,
) -> Result<Reply, AccountError> {
    if let Some(step_up) = needs_step_up(ctx, signed, After::Home).await? {
        return Ok(step_up);
    }
    let outcome = super::change_password(ctx, &signed.user, change, &signed.session_hash).await;
    if outcome.is_ok() {
        notify::changed(ctx.config, by, &signed.user, Change::Password, ctx.now).await;
    }
    let outcome = outcome.map(|ended| match ended {
        0 => "Your password was changed.".to_string(),
        n => format!("Your password was changed, and you were signed out of {n} other session(s)."),
    });
    back(ctx, &signed.user.id, outcome, Vec::new()).await
}

/// What the authenticator setup page shows.
#[derive(Debug)]
pub enum Setup {
    /// The authenticator being set up, ready to scan.
    Scan(Enrolment),
    /// One is already set up (the page says how things stand).
    AlreadySet,
    /// Setting one up needs a more recent sign-in first.
    StepUp(Reply),
}

/// The authenticator app being set up, ready to scan — after a recent enough sign-in
/// (with the account's existing second factor), like any change of a factor.
pub async fn totp_setup(
    ctx: &Ctx<'_>,
    sealing: &SealingKey,
    signed: &Signed,
) -> Result<Setup, AccountError> {
    if ctx
        .store
        .totp(&signed.user.id)
        .await?
        .is_some_and(|c| c.confirmed)
    {
        return Ok(Setup::AlreadySet);
    }
    if let Some(step_up) = needs_step_up(ctx, signed, After::TotpSetup).await? {
        return Ok(Setup::StepUp(step_up));
    }
    let Some(secret) = super::totp_secret(ctx, sealing, &signed.user.id).await? else {
        return Ok(Setup::AlreadySet);
    };
    let user = &signed.user;
    let label = user.email.as_deref().unwrap_or(&user.username);
    let issuer = ctx.config.issuer.host_str().unwrap_or("Usher").to_string();
    let label = label.to_string();
    // Drawing the QR code takes a few milliseconds.
    crate::offload::cpu(move || totp::enrolment(&secret, &issuer, &label))
        .await
        .map_err(|e| AccountError::Internal(e.to_string()))?
        .map(Setup::Scan)
        .map_err(|e| AccountError::Internal(e.to_string()))
}

/// The first code from the authenticator being set up; success shows the recovery
/// codes, once.
pub async fn confirm_totp(
    ctx: &Ctx<'_>,
    by: &By,
    sealing: &SealingKey,
    signed: &Signed,
    code: &str,
) -> Result<Reply, AccountError> {
    if let Some(step_up) = needs_step_up(ctx, signed, After::TotpSetup).await? {
        return Ok(step_up);
    }
    match super::confirm_totp(ctx, sealing, &signed.user.id, code).await {
        Ok(codes) => {
            notify::changed(ctx.config, by, &signed.user, Change::TotpEnrolled, ctx.now).await;
            back(
            ctx,
            &signed.user.id,
            Ok("Your authenticator app is set up. Save your recovery codes now: they are shown only once.".into()),
            codes,
        ).await
        }
        Err(e) => back(ctx, &signed.user.id, Err(e), Vec::new()).await,
    }
}

pub async fn reset_totp(ctx: &Ctx<'_>, by: &By, signed: &Signed) -> Result<Reply, AccountError> {
    if let Some(step_up) = needs_step_up(ctx, signed, After::Home).await? {
        return Ok(step_up);
    }
    let outcome = super::reset_totp(ctx, &signed.user.id).await;
    if outcome.is_ok() {
        notify::changed(ctx.config, by, &signed.user, Change::TotpRemoved, ctx.now).await;
    }
    let outcome = outcome.map(|()| {
        "Your authenticator app and recovery codes were removed. Set up a new one whenever you like."
            .to_string()
    });
    back(ctx, &signed.user.id, outcome, Vec::new()).await
}

pub async fn recovery_codes(
    ctx: &Ctx<'_>,
    by: &By,
    signed: &Signed,
) -> Result<Reply, AccountError> {
    if let Some(step_up) = needs_step_up(ctx, signed, After::Home).await? {
        return Ok(step_up);
    }
    match super::regenerate_recovery_codes(ctx, &signed.user.id).await {
        Ok(codes) => {
            notify::changed(ctx.config, by, &signed.user, Change::RecoveryCodes, ctx.now).await;
            back(
                ctx,
                &signed.user.id,
                Ok("Here are your new recovery codes; the old ones no longer work.".into()),
                codes,
            )
            .await
        }
        Err(e) => back(ctx, &signed.user.id, Err(e), Vec::new()).await,
    }
}

pub async fn unlink(
    ctx: &Ctx<'_>,
    by: &By,
    signed: &Signed,
    connection: &str,
    subject: &str,
) -> Result<Reply, AccountError> {
    if let Some(step_up) = needs_step_up(ctx, signed, After::Home).await? {
        return Ok(step_up);
    }
    let outcome = super::unlink(ctx, &signed.user, connection, subject).await;
    if outcome.is_ok() {
        let name = ctx
            .config
            .connections
            .get(connection)
            .map_or_else(|| connection.to_string(), |c| c.display_name.clone());
        let change = Change::ConnectionUnlinked(name);
        notify::changed(ctx.config, by, &signed.user, change, ctx.now).await;
    }
    let outcome = outcome.map(|()| "The connection was unlinked.".to_string());
    back(ctx, &signed.user.id, outcome, Vec::new()).await
}

/// End one of the account's sessions by its handle. Ending this browser's own session
/// signs it out of My Account too: its grant is revoked.
pub async fn end_session(
    ctx: &Ctx<'_>,
    signed: &Signed,
    handle: &str,
) -> Result<Reply, AccountError> {
    let outcome = match super::end_session(ctx, &signed.user.id, handle).await {
        Ok(Some(hash)) if hash == signed.session_hash => {
            ctx.store.revoke_grant(&signed.grant_id).await?;
            ctx.store.flush().await?;
            return Ok(Reply::SignedOut);
        }
        Ok(Some(_)) => Ok("That session was signed out.".to_string()),
        Ok(None) => Err(AccountError::Refused(
            "That session has already ended.".into(),
        )),
        Err(e) => Err(e),
    };
    back(ctx, &signed.user.id, outcome, Vec::new()).await
}

/// Revoke one app's grant from the sessions list; `app_name` names the app for the
/// message.
pub async fn revoke_grant(
    ctx: &Ctx<'_>,
    signed: &Signed,
    grant_id: &str,
    app_name: &(dyn Fn(&str) -> String + Send + Sync),
) -> Result<Reply, AccountError> {
    let outcome = match super::revoke_grant(ctx, &signed.user.id, grant_id).await {
        Ok(Some(client_id)) => Ok(format!(
            "{} can no longer use your account until you sign in to it again.",
            app_name(&client_id)
        )),
        Ok(None) => Err(AccountError::Refused(
            "That app's access has already ended.".into(),
        )),
        Err(e) => Err(e),
    };
    back(ctx, &signed.user.id, outcome, Vec::new()).await
}
