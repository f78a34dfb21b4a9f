//! "Forgot your password?": a code mailed to the account's verified address lets the
//! owner choose a new password from the password step of a sign-in.
//!
//! The request answers the same whatever was typed — an account, a name nobody has, an
//! account without a verified address, one that asked too often — so the page tells a
//! stranger nothing about which accounts exist. The code is six digits, stored only as
//! a hash bound to the account *and* to the sign-in that asked for it, lives
//! [`email_otp::CODE_TTL`], works once, burns after [`email_otp::MAX_WRONG`] wrong tries,
//! and at most [`email_otp::MAX_SENDS`] go out per account in
//! [`email_otp::RESEND_WINDOW`] (the per-client limits are the shell's throttles). The
//! rules are the email code's own, over the same versioned record, under a key of its
//! own (`reset:<user id>`), so a reset code never passes a sign-in's second factor and
//! the other way round. Across every code sent, at most
//! [`email_otp::MAX_TRIES_PER_DAY`] wrong codes are checked per account a day, so the
//! six digits cannot be worn down over months.
//!
//! A reset does not sign anybody in: the flow goes back to the password step, and the
//! sign-in asks for the new password and then every step after it — the second factor
//! included. It ends every session (and, through `account::end_sessions`, every grant)
//! of the account, and the shell mails the owner a notice. It lifts no lock: a locked
//! account still waits out its lock, or its owner follows the unlock link.

use super::{CoreResult, Ctx};
use crate::audit::{self, kind};
use crate::authn::email_otp::{self, EmailCheck, EmailIssue};
use crate::authn::password;
use crate::config::StepOption;
use crate::flow::{Flow, PendingReset};
use crate::limits;
use crate::secret::Secret;
use crate::store::StoreError;

/// What the request page says afterwards, whatever was typed.
pub const SENT: &str = "If that is the username or email address of an account with a verified email address, we sent it a code. Enter the code here with your new password.";
/// What a wrong, used, expired or never-sent code gets, alike.
pub const WRONG_CODE: &str =
    "That code is not right, was already used or has expired. Ask for a new one if you need to.";
/// A code is at most this long as typed (six digits and some stray spaces).
const CODE_MAX: usize = 32;

fn record_key(user_id: &str) -> String {
    format!("reset:{user_id}")
}

/// The stored form of a reset code: bound to the account and to the sign-in that asked
/// for it, so a code works only where it was asked for.
fn code_hash(user_id: &str, flow_id: &str, code: &str) -> String {
    email_otp::hash_code(&format!("reset\0{user_id}\0{flow_id}"), code)
}

/// A reset code to mail.
#[derive(Debug)]
pub struct ResetMail {
    pub to: String,
    pub code: Secret,
}

/// What to do after a request.
#[derive(Debug)]
pub enum Requested {
    /// The flow's step offers no password (a stale page): nothing happened.
    NotOffered,
    /// Nothing usable was typed; the flow carries the message.
    Incomplete,
    /// Show the code page. `mail` is the code to send, when there is one; the page is
    /// the same when there is none.
    Asked { mail: Option<ResetMail> },
}

/// Someone typed `login` on the request page of step `step` (offering `options`).
pub async fn request(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    options: &[StepOption],
    login: &str,
) -> CoreResult<Requested> {
    if !options.contains(&StepOption::Password) {
        return Ok(Requested::NotOffered);
    }
    let login = login.trim();
    if let Err(too_long) = limits::check_len("username", login, limits::USERNAME_MAX) {
        flow.tell(format!("The {too_long}."));
        return Ok(Requested::Incomplete);
    }
    if login.is_empty() {
        flow.tell("Enter your username or email address.");
        return Ok(Requested::Incomplete);
    }
    let user = ctx
        .store
        .find_user(login)
        .await?
        // Only a password that exists is reset: an account that signs in through a
        // connection does not gain a password from its mailbox.
        .filter(|u| !u.disabled && u.email_verified && u.password_hash.is_some());
    let Some((user, to)) = user.and_then(|u| u.email.clone().map(|to| (u, to))) else {
        flow.reset = Some(PendingReset { user_id: None });
        flow.last_login = Some(login.to_string());
        flow.tell(SENT);
        flow.log("password reset asked for a name without a verified address");
        requested(
            ctx,
            flow,
            None,
            "no account with a verified address by that name",
        )
        .await;
        return Ok(Requested::Asked { mail: None });
    };
    let code = email_otp::generate_code();
    let hash = code_hash(&user.id, &flow.id, &code);
    let issued = email_otp::store_code(ctx.store, &record_key(&user.id), &hash, ctx.now).await?;
    flow.reset = Some(PendingReset {
        user_id: Some(user.id.clone()),
    });
    flow.last_login = Some(login.to_string());
    flow.tell(SENT);
    Ok(Requested::Asked {
        mail: match issued {
            EmailIssue::Issued => {
                flow.log(format!("password reset code mailed for {}", user.id));
                requested(ctx, flow, Some(&user.id), "code mailed").await;
                Some(ResetMail {
                    to,
                    code: Secret::new(code),
                })
            }
            EmailIssue::TooMany { .. } => {
                flow.log(format!("password reset for {}: too many codes", user.id));
                refused(ctx, flow, Some(&user.id), "too many codes asked for").await;
                None
            }
        },
    })
}

async fn requested(ctx: Ctx<'_>, flow: &Flow, user_id: Option<&str>, what: &str) {
    let mut detail = vec![what.to_string()];
    if !flow.ip.is_empty() {
        detail.push(format!("from {}", flow.ip));
    }
    audit::record(
        ctx.store,
        ctx.now,
        kind::PASSWORD_RESET_REQUESTED,
        Some(&flow.request.app_id),
        user_id,
        detail,
    )
    .await;
}

async fn refused(ctx: Ctx<'_>, flow: &Flow, user_id: Option<&str>, why: &str) {
    let mut detail = vec![why.to_string()];
    if !flow.ip.is_empty() {
        detail.push(format!("from {}", flow.ip));
    }
    audit::refused(
        ctx.store,
        ctx.now,
        kind::PASSWORD_RESET_REFUSED,
        Some(&flow.request.app_id),
        user_id,
        detail,
    )
    .await;
}

/// A new password as the reset form gives it: the mailed code, the password twice.
#[derive(Default, Clone)]
pub struct ResetForm {
    pub code: String,
    pub new: String,
    pub confirm: String,
}

impl std::fmt::Debug for ResetForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetForm(..)")
    }
}

/// The outcome of the reset form.
#[derive(Debug)]
pub enum Reset {
    /// No reset was asked for in this sign-in: show the request page.
    NotAsked,
    /// Refused; the flow carries the message. Nothing changed.
    Refused,
    /// The password is changed and every session of the account ended; the flow is back
    /// at the password step. The shell mails `notice_to` the notice.
    Done { notice_to: Option<String> },
}

/// Check the code and set the new password. The policy is checked first, so a typo in
/// the new password does not use up the code.
pub async fn submit(ctx: Ctx<'_>, flow: &mut Flow, form: &ResetForm) -> CoreResult<Reset> {
    let Some(pending) = flow.reset.clone() else {
        // A code for a reset that was finished (or never asked for) in this sign-in.
        let why = "a code posted where no reset is pending (used, or never asked for)";
        refused(ctx, flow, None, why).await;
        return Ok(Reset::NotAsked);
    };
    let capped = limits::check_bytes("code", &form.code, CODE_MAX)
        .and(limits::check_bytes(
            "password",
            &form.new,
            limits::PASSWORD_MAX,
        ))
        .and(limits::check_bytes(
            "password",
            &form.confirm,
            limits::PASSWORD_MAX,
        ));
    if let Err(too_long) = capped {
        flow.tell(format!("The {too_long}."));
        return Ok(Reset::Refused);
    }
    let mut problems = password::check_policy(&ctx.config.security.password_policy, &form.new);
    if form.new != form.confirm {
        problems.push("The two passwords do not match.".into());
    }
    if !problems.is_empty() {
        flow.tell(problems.join("\n"));
        return Ok(Reset::Refused);
    }
    let Some(user_id) = pending.user_id else {
        flow.tell(WRONG_CODE);
        refused(ctx, flow, None, "a code for a name without an account").await;
        return Ok(Reset::Refused);
    };
    let key = record_key(&user_id);
    if !email_otp::reserve_try(ctx.store, &key, ctx.now).await? {
        // The same words as a wrong code: the cap must not tell an account apart from
        // a name nobody has.
        flow.tell(WRONG_CODE);
        refused(
            ctx,
            flow,
            Some(&user_id),
            "too many wrong codes today; not checked",
        )
        .await;
        return Ok(Reset::Refused);
    }
    let hash = code_hash(&user_id, &flow.id, &form.code);
    let checked = email_otp::check_hash(ctx.store, &key, &hash, ctx.now).await?;
    email_otp::settle_try(ctx.store, &key, checked, ctx.now).await?;
    match checked {
        EmailCheck::Ok => {}
        outcome => {
            flow.tell(WRONG_CODE);
            let why = match outcome {
                EmailCheck::Wrong { tries_left: 0 } => "wrong code; the code is burned",
                EmailCheck::Wrong { .. } => "wrong code",
                EmailCheck::Expired => "expired code",
                _ => "no code pending (used, burned or replaced)",
            };
            refused(ctx, flow, Some(&user_id), why).await;
            return Ok(Reset::Refused);
        }
    }
    let Some(mut user) = ctx.store.user(&user_id).await?.filter(|u| !u.disabled) else {
        flow.tell(WRONG_CODE);
        refused(ctx, flow, Some(&user_id), "the account is gone or disabled").await;
        return Ok(Reset::Refused);
    };
    let hash = password::hash_off_runtime(&form.new)
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    user.password_hash = Some(hash);
    user.updated_at = ctx.now;
    ctx.store.update_user(&user).await?;
    let ended = crate::account::end_sessions(ctx.store, &user.id).await?;
    flow.reset = None;
    flow.last_login = Some(user.username.clone());
    flow.pick(StepOption::Password.name());
    flow.tell("Your password was changed. Sign in with your new password.");
    flow.log(format!("password reset for {}", user.id));
    let mut detail = vec![format!("{ended} session(s) ended")];
    if !flow.ip.is_empty() {
        detail.push(format!("from {}", flow.ip));
    }
    audit::record(
        ctx.store,
        ctx.now,
        kind::PASSWORD_RESET_COMPLETED,
        Some(&flow.request.app_id),
        Some(&user.id),
        detail,
    )
    .await;
    Ok(Reset::Done {
        notice_to: user.email.clone(),
    })
}

/// "Ask for another code": back to the request page.
pub fn restart(flow: &mut Flow) {
    flow.reset = None;
}
