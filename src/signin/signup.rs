//! Creating an account from the sign-in page: the checks a new email and password must
//! pass, and the account itself. Hashing the password is the shell's (Argon2 belongs on
//! the blocking pool), between [`sign_up_problems`] and [`sign_up`].
//!
//! With `security.verify_sign_up_email` (the default) the account is not created at
//! once: [`hold_sign_up`] keeps the email and the password's hash in the flow and mails
//! a code to the address, and [`verify_sign_up`] creates the account — its address
//! verified — only when that code comes back. Until then nothing is claimed: the
//! address stays free for anyone who proves it first, and no half-made account exists.
//! The code follows the email code's rules (`authn::email_otp`: six digits, five
//! minutes, five wrong tries, three sends per ten minutes) over a record per address,
//! so a stranger cannot use sign-up to flood an address with mail, and at most
//! `email_otp::MAX_TRIES_PER_DAY` wrong codes are checked per address a day, so nobody
//! guesses their way to someone else's address; its hash is bound to the address and to
//! the sign-in, so a code works only where it was asked for.

use super::Ctx;
use crate::authn::email_otp::{self, EmailCheck, EmailIssue};
use crate::authn::{password, steps};
use crate::config::StepOption;
use crate::flow::{Flow, PendingSignUp};
pub use crate::names::plausible_email;
use crate::secret::Secret;
use crate::store::{PasswordHash, StoreError, StoreResult, User};

pub const EMAIL_TAKEN: &str = "An account with this email already exists. Sign in instead.";

/// The outcome of creating an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedUp {
    /// The account exists and step `step` is satisfied by it.
    Created { user_id: String },
    /// Someone holds that email (a parallel sign-up may have won); the flow carries the
    /// message.
    Taken,
}

/// What is wrong with a sign-up form, one message a line; empty means go ahead and hash
/// the password. Remembers the email for the form's next showing.
pub async fn sign_up_problems(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    email: &str,
    new_password: &str,
    confirm: &str,
) -> StoreResult<Vec<String>> {
    // Before the email is remembered or looked up, and before Argon2 could see the
    // password: an oversized value is refused and kept nowhere.
    let capped = crate::limits::check_len("email address", email, crate::limits::EMAIL_MAX)
        .and(crate::limits::check_bytes(
            "password",
            new_password,
            crate::limits::PASSWORD_MAX,
        ))
        .and(crate::limits::check_bytes(
            "password",
            confirm,
            crate::limits::PASSWORD_MAX,
        ));
    if let Err(too_long) = capped {
        flow.last_login = None;
        let problem = format!("The {too_long}.");
        flow.tell(problem.clone());
        return Ok(vec![problem]);
    }
    flow.last_login = Some(email.to_string());
    let mut errors = Vec::new();
    if !plausible_email(email) {
        errors.push("Enter a valid email address.".to_string());
    }
    errors.extend(password::check_policy(
        &ctx.config.security.password_policy,
        new_password,
    ));
    if new_password != confirm {
        errors.push("The two passwords do not match.".into());
    }
    if errors.is_empty() {
        if let Some(holder) = ctx.store.find_user(email).await? {
            // With verification on, an address an account holds unverified is not
            // claimed: whoever proves it gets it (`verify_sign_up`).
            let unclaimed = ctx.config.security.verify_sign_up_email
                && crate::provision::unverified_holder(&holder, email);
            if !unclaimed {
                errors.push(EMAIL_TAKEN.into());
            }
        }
    }
    if !errors.is_empty() {
        flow.tell(errors.join("\n"));
    }
    Ok(errors)
}

/// Create the account for `email` with the password `hash`, and let it satisfy step
/// `step` of the flow. `verified` says the address was proven (a code mailed to it came
/// back). The shell makes it durable before the next page.
pub async fn sign_up(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    (step, app_id): (usize, &str),
    email: &str,
    hash: PasswordHash,
    verified: bool,
) -> StoreResult<SignedUp> {
    let now = ctx.now;
    let user = User {
        role_sources: Default::default(),
        id: crate::crypto::account_id(),
        username: email.to_string(),
        email: Some(email.to_string()),
        email_verified: verified,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: Some(hash),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    match ctx.store.create_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            flow.tell(EMAIL_TAKEN);
            return Ok(SignedUp::Taken);
        }
        Err(e) => return Err(e),
    }
    crate::audit::record(
        ctx.store,
        now,
        crate::audit::kind::USER_SIGNED_UP,
        Some(app_id),
        Some(&user.id),
        Vec::new(),
    )
    .await;
    flow.log(format!("step {step}: signed up as {}", user.id));
    if let Err(e) = flow.step_succeeded(
        step,
        &StepOption::Password,
        steps::subject_of(ctx.store, ctx.config, &user, now).await?,
        vec!["pwd".into()],
        now,
    ) {
        flow.tell(e.description);
    }
    Ok(SignedUp::Created { user_id: user.id })
}

/// A sign-up's verification code to mail.
#[derive(Debug)]
pub struct SignUpCode {
    pub to: String,
    pub code: Secret,
}

/// The outcome of the verification form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// No sign-up waits in this flow (or it waits at another step): back to the form.
    NotPending,
    /// Wrong, expired or used code; the flow carries the message.
    Refused,
    /// The code was right: what became of the account.
    Done(SignedUp),
}

fn sign_up_key(email: &str) -> String {
    format!("signup:{}", email.to_lowercase())
}

fn sign_up_code_hash(email: &str, flow_id: &str, code: &str) -> String {
    email_otp::hash_code(
        &format!("signup\0{}\0{flow_id}", email.to_lowercase()),
        code,
    )
}

const TOO_MANY: &str =
    "Too many codes were sent to this address. Wait a few minutes before asking for another.";

/// Hold a sign-up that passed [`sign_up_problems`] until its address is verified: keep
/// it in the flow and issue a code for the address. `None` (the flow carries why) when
/// the address was sent too many codes lately.
pub async fn hold_sign_up(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    step: usize,
    email: &str,
    hash: PasswordHash,
) -> StoreResult<Option<SignUpCode>> {
    flow.sign_up = Some(PendingSignUp {
        step,
        email: email.to_string(),
        password_hash: hash,
    });
    flow.log(format!(
        "step {step}: sign-up waits for its address to be verified"
    ));
    issue_sign_up_code(ctx, flow).await
}

/// "Send a new code" on the verification page.
pub async fn resend_sign_up_code(ctx: Ctx<'_>, flow: &mut Flow) -> StoreResult<Option<SignUpCode>> {
    let sent = issue_sign_up_code(ctx, flow).await?;
    if sent.is_some() {
        flow.tell("A new code is on its way. Earlier codes no longer work.");
    }
    Ok(sent)
}

async fn issue_sign_up_code(ctx: Ctx<'_>, flow: &mut Flow) -> StoreResult<Option<SignUpCode>> {
    let Some(pending) = flow.sign_up.clone() else {
        return Ok(None);
    };
    let code = email_otp::generate_code();
    let hash = sign_up_code_hash(&pending.email, &flow.id, &code);
    match email_otp::store_code(ctx.store, &sign_up_key(&pending.email), &hash, ctx.now).await? {
        EmailIssue::Issued => Ok(Some(SignUpCode {
            to: pending.email,
            code: Secret::new(code),
        })),
        EmailIssue::TooMany { .. } => {
            flow.tell(TOO_MANY);
            Ok(None)
        }
    }
}

/// The code mailed to a held sign-up's address came back: create the account, its
/// address verified, and let it satisfy the step. An account that holds the address
/// unverified gives it up first (`provision::release_unverified`).
pub async fn verify_sign_up(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    step: usize,
    app_id: &str,
    code: &str,
) -> StoreResult<Verified> {
    let Some(pending) = flow.sign_up.clone().filter(|p| p.step == step) else {
        return Ok(Verified::NotPending);
    };
    if crate::limits::check_bytes("code", code, 32).is_err() {
        flow.tell("That code is not right.");
        return Ok(Verified::Refused);
    }
    let hash = sign_up_code_hash(&pending.email, &flow.id, code);
    let key = sign_up_key(&pending.email);
    if !email_otp::reserve_try(ctx.store, &key, ctx.now).await? {
        flow.tell("Too many wrong codes for this address today. Try again tomorrow.");
        return Ok(Verified::Refused);
    }
    let checked = email_otp::check_hash(ctx.store, &key, &hash, ctx.now).await?;
    email_otp::settle_try(ctx.store, &key, checked, ctx.now).await?;
    match checked {
        EmailCheck::Ok => {}
        EmailCheck::Wrong { tries_left: 0 } => {
            flow.tell("That code is not right, and it no longer works. Send a new code.");
            return Ok(Verified::Refused);
        }
        EmailCheck::Wrong { .. } => {
            flow.tell("That code is not right.");
            return Ok(Verified::Refused);
        }
        EmailCheck::Expired | EmailCheck::Missing => {
            flow.tell("That code has expired or was replaced by a newer one. Send a new code.");
            return Ok(Verified::Refused);
        }
    }
    if let Some(holder) = ctx.store.find_user(&pending.email).await? {
        if crate::provision::unverified_holder(&holder, &pending.email) {
            crate::provision::release_unverified(ctx.store, &holder, &pending.email, ctx.now)
                .await?;
        }
    }
    flow.sign_up = None;
    flow.mailbox_proven = true;
    let done = sign_up(
        ctx,
        flow,
        (step, app_id),
        &pending.email,
        pending.password_hash,
        true,
    )
    .await?;
    if let SignedUp::Created { user_id } = &done {
        crate::audit::record(
            ctx.store,
            ctx.now,
            crate::audit::kind::EMAIL_VERIFIED,
            Some(app_id),
            Some(user_id),
            vec!["the code mailed at sign-up came back".into()],
        )
        .await;
    }
    Ok(Verified::Done(done))
}
