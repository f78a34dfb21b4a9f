//! One-time codes at a sign-in step: TOTP (with enrolment while signing in), codes by
//! email and recovery codes. The core opens the sealed secret, checks the code, counts
//! the attempt against the account and records the step's result; the shell renders the
//! page, mails the code the core issued, and makes an accepted code durable before the
//! next page (a used code must stay used after a crash).
//!
//! A fixture types real codes too: it seeds a real TOTP secret and reads the email code
//! the core issued, so `usher test` walks the same checks as a browser.

use super::{CoreError, CoreResult, Ctx};
use crate::authn::email_otp::EmailCheck;
use crate::authn::sealing::SealingKey;
use crate::authn::{email_otp, recovery, steps, totp};
use crate::config::{App, StepOption};
use crate::flow::{Flow, Subject};
use crate::secret::Secret;
use crate::store::TotpCredential;

/// An account-bound step the flow is waiting on, and whose account it is.
#[derive(Debug, Clone)]
pub struct CodeStep {
    pub step: usize,
    pub subject: Subject,
    pub user_id: String,
}

impl CodeStep {
    /// The step a code form answers: `option` must be one of the step's options and the
    /// flow's subject must have an account. Picks the option.
    pub fn at(
        flow: &mut Flow,
        step: usize,
        options: &[StepOption],
        option: &StepOption,
    ) -> Option<CodeStep> {
        let subject = flow.subject()?.clone();
        let user_id = subject.user_id.clone()?;
        if !options.contains(option) {
            return None;
        }
        flow.pick(option.name());
        Some(CodeStep {
            step,
            subject,
            user_id,
        })
    }
}

/// What the TOTP page asks for.
#[derive(Debug)]
pub enum TotpPrompt {
    /// The account has an authenticator: ask for a code.
    Enter,
    /// No confirmed authenticator yet: show this secret to enrol (the same one on every
    /// showing until a code confirms it).
    Enrol { secret: Vec<u8> },
    /// No authenticator, and the app does not let one be set up while signing in.
    NotOffered,
    /// No authenticator, but the account has another second factor: a new one is set
    /// up only after that one is passed (else a stolen password would enrol the thief's
    /// authenticator).
    PassFirst,
    /// No second factor at all, but nothing was proven in this sign-in (an SSO session
    /// passed every step so far): a credential is set up only after the user signs in
    /// for real, here or in My Account.
    SignInFirst,
}

/// What the user is told when enrolment waits for a real sign-in.
pub const SIGN_IN_FIRST: &str = "Setting up an authenticator app needs a sign-in with your password now; a saved session is not enough.";

/// What the user is told when enrolment waits for the account's existing factor.
pub const PASS_FIRST: &str = "This account already has a second factor. Verify with it first; you can then set up an authenticator app in My Account.";

/// Whether a new authenticator may be enrolled in this sign-in: only for an account
/// with no second factor at all, or once the user has passed one of its factors in
/// this sign-in (an earlier session's pass does not count). A sign-up whose address
/// code came back in this sign-in has passed the email factor that address is. Either
/// way something was proven in this sign-in; a session alone enrols nothing.
pub async fn enrolment_allowed(ctx: Ctx<'_>, flow: &Flow, user_id: &str) -> CoreResult<bool> {
    Ok(enrolment_refused(ctx, flow, user_id).await?.is_none())
}

/// Why a new authenticator may not be enrolled in this sign-in, if it may not.
async fn enrolment_refused(
    ctx: Ctx<'_>,
    flow: &Flow,
    user_id: &str,
) -> CoreResult<Option<TotpPrompt>> {
    let Some(user) = ctx.store.user(user_id).await? else {
        return Ok(Some(TotpPrompt::PassFirst));
    };
    let factors = steps::factors(ctx.store, ctx.config, &user).await?;
    let email = StepOption::EmailOtp.name();
    let passed = (flow.mailbox_proven && factors.iter().any(|f| f == email))
        || flow
            .done()
            .iter()
            .any(|r| !r.from_session && factors.contains(&r.option));
    // Someone must have proven something in this sign-in: an SSO session alone (perhaps
    // hours old, perhaps a borrowed browser) does not set up a credential, as My
    // Account's step-up would not let it either.
    let active_here = flow.interactive() || flow.mailbox_proven;
    Ok(match (factors.is_empty(), passed, active_here) {
        (true, _, true) | (false, true, _) => None,
        (true, _, false) => Some(TotpPrompt::SignInFirst),
        (false, false, _) => Some(TotpPrompt::PassFirst),
    })
}

/// Prepare the TOTP page of an account: the pending (unconfirmed) secret if there is
/// one, else a new one sealed into the store. The shell flushes after an `Enrol` so the
/// secret the user scans survives a crash.
pub async fn totp_prompt(
    ctx: Ctx<'_>,
    sealing: &SealingKey,
    app: &App,
    flow: &Flow,
    user_id: &str,
) -> CoreResult<TotpPrompt> {
    let existing = match ctx.store.totp(user_id).await? {
        Some(c) if c.confirmed => return Ok(TotpPrompt::Enter),
        other => other,
    };
    if !app.mfa_enrolment {
        return Ok(TotpPrompt::NotOffered);
    }
    if let Some(refused) = enrolment_refused(ctx, flow, user_id).await? {
        tracing::info!(flow = %flow.id, why = ?refused, "authenticator enrolment refused");
        return Ok(refused);
    }
    let had_one = existing.is_some();
    if let Some(secret) = existing.and_then(|c| sealing.open(&c.sealed_secret, user_id.as_bytes()))
    {
        return Ok(TotpPrompt::Enrol { secret });
    }
    let secret = totp::generate_secret();
    let ours = TotpCredential {
        sealed_secret: sealing
            .seal(&secret, user_id.as_bytes())
            .map_err(|e| CoreError::Internal(e.to_string()))?,
        created_at: ctx.now,
        last_step: 0,
        confirmed: false,
    };
    let stored = if had_one {
        // A pending secret this server cannot open (its key changed): replace it.
        ctx.store.put_totp(user_id, &ours).await?;
        ours.clone()
    } else {
        // Another page of this account's may have stored a secret meanwhile: show that
        // one, so the code the user's app computes is the one Usher checks.
        ctx.store.create_totp(user_id, &ours).await?
    };
    if stored.sealed_secret == ours.sealed_secret {
        return Ok(TotpPrompt::Enrol { secret });
    }
    let theirs = sealing
        .open(&stored.sealed_secret, user_id.as_bytes())
        .ok_or_else(|| CoreError::Internal("a stored TOTP secret does not open".into()))?;
    Ok(TotpPrompt::Enrol { secret: theirs })
}

/// The outcome of a code form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The step succeeded; a code was used up. The shell flushes before the next page.
    Passed,
    /// Refused (wrong, used, locked, expired); the flow carries the message.
    Refused,
}

/// Check a TOTP code. A good code's time step is used up atomically (of parallel
/// requests with one code exactly one passes); the first good code confirms an
/// enrolment and issues recovery codes, which the next page shows once.
pub async fn submit_totp(
    ctx: Ctx<'_>,
    sealing: &SealingKey,
    flow: &mut Flow,
    at: CodeStep,
    code: &str,
) -> CoreResult<Checked> {
    let (store, now, uid) = (ctx.store, ctx.now, at.user_id.as_str());
    let Some(credential) = store.totp(uid).await? else {
        // While locked nothing is checked; `otp_locked` sets the message.
        if !steps::otp_locked(store, flow, uid, now).await? {
            flow.tell("Set up your authenticator app first.");
        }
        return Ok(Checked::Refused);
    };
    let refused = match credential.confirmed {
        true => None,
        false => enrolment_refused(ctx, flow, uid).await?,
    };
    if let Some(refused) = refused {
        // A pending secret (from another page, or My Account) is not confirmed here.
        flow.tell(match refused {
            TotpPrompt::SignInFirst => SIGN_IN_FIRST,
            _ => PASS_FIRST,
        });
        flow.log(format!(
            "step {}: authenticator enrolment refused: the account's existing second factor was not passed",
            at.step
        ));
        return Ok(Checked::Refused);
    }
    let Some(attempt) = steps::otp_attempt(store, ctx.config, flow, uid, now).await? else {
        return Ok(Checked::Refused);
    };
    let secret = sealing
        .open(&credential.sealed_secret, uid.as_bytes())
        .ok_or_else(|| CoreError::Internal("a stored TOTP secret does not open".into()))?;
    let accepted = match totp::verify(&secret, code, now) {
        // Compare-and-swap on the account's last step: a code is good once.
        Some(time_step) => store.accept_totp_step(uid, time_step).await?,
        None => false,
    };
    if !accepted {
        steps::otp_wrong(
            store,
            ctx.config,
            flow,
            (uid, &attempt),
            at.step,
            "authenticator code",
            now,
        )
        .await;
        return Ok(Checked::Refused);
    }
    if !credential.confirmed {
        steps::confirm_enrolment(store, flow, uid).await?;
        crate::audit::record(
            store,
            now,
            crate::audit::kind::MFA_ENROLLED,
            Some(&flow.request.app_id),
            Some(uid),
            vec!["authenticator app enrolled while signing in".into()],
        )
        .await;
    }
    steps::otp_passed(
        store,
        flow,
        (at.step, StepOption::Totp),
        at.subject,
        attempt.ticket,
        now,
    )
    .await?;
    Ok(Checked::Passed)
}

/// A code to mail, or why none is sent.
#[derive(Debug)]
pub enum EmailSend {
    /// Mail `code` to `to` (after making it durable).
    Send { to: String, code: Secret },
    /// The account has no address: nothing is sent, and the page says the same as when
    /// something is, so it tells nobody whether the account has one.
    NoAddress,
    /// The resend limit is reached.
    TooMany,
}

/// Issue a new code for the account (it replaces any earlier one), within the resend
/// limit.
pub async fn issue_email_code(ctx: Ctx<'_>, user_id: &str) -> CoreResult<EmailSend> {
    let Some(to) = ctx.store.user(user_id).await?.and_then(|u| u.email) else {
        return Ok(EmailSend::NoAddress);
    };
    Ok(match email_otp::issue(ctx.store, user_id, ctx.now).await? {
        email_otp::Issued::Send(code) => EmailSend::Send { to, code },
        email_otp::Issued::TooMany { .. } => EmailSend::TooMany,
    })
}

/// The email page's first showing in a sign-in mails a code; later showings do not.
pub async fn email_page(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    user_id: &str,
) -> CoreResult<Option<EmailSend>> {
    if flow.email_sent {
        return Ok(None);
    }
    flow.email_sent = true;
    issue_email_code(ctx, user_id).await.map(Some)
}

/// "Send a new code": issue one and tell the user what happened.
pub async fn resend_email_code(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    user_id: &str,
) -> CoreResult<EmailSend> {
    let sent = issue_email_code(ctx, user_id).await?;
    flow.email_sent = true;
    flow.tell(match sent {
        EmailSend::TooMany => {
            "Too many codes were sent. Wait a few minutes before asking for another."
        }
        _ => "If your account has an email address, a new code is on its way. Earlier codes no longer work.",
    });
    Ok(sent)
}

/// Check a code from the email, one of the account's attempts reserved first. A match
/// uses it up (once, under parallel requests) and gives the attempt back; a miss counts
/// against the account and against the pending code, which burns at its limit.
pub async fn submit_email_code(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    at: CodeStep,
    code: &str,
) -> CoreResult<Checked> {
    let (store, now, uid) = (ctx.store, ctx.now, at.user_id.as_str());
    let Some(ticket) = steps::code_attempt(store, ctx.config, flow, uid, now).await? else {
        flow.log(format!(
            "step {}: email code refused, attempts locked",
            at.step
        ));
        return Ok(Checked::Refused);
    };
    match email_otp::check(store, uid, code, now).await? {
        EmailCheck::Ok => {
            let step = (at.step, StepOption::EmailOtp);
            steps::otp_passed(store, flow, step, at.subject, ticket, now).await?;
            Ok(Checked::Passed)
        }
        EmailCheck::Wrong { .. } => {
            flow.tell(steps::wrong_code_message(&ticket, false, now));
            let line = format!(
                "step {}: wrong email code ({} in a row)",
                at.step, ticket.failures
            );
            crate::audit::rejected(store, flow, Some(uid), &line, now).await;
            flow.log(line);
            Ok(Checked::Refused)
        }
        EmailCheck::Expired | EmailCheck::Missing => {
            // Nothing was compared: the attempt goes back.
            crate::authn::attempts::give_back(store, ticket, now).await?;
            flow.tell("That code has expired or was replaced by a newer one. Send a new code.");
            flow.log(format!(
                "step {}: expired or superseded email code",
                at.step
            ));
            Ok(Checked::Refused)
        }
    }
}

/// Check a recovery code. It shares the second factor's attempt counter with TOTP, and
/// each code works once.
pub async fn submit_recovery_code(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    at: CodeStep,
    code: &str,
) -> CoreResult<Checked> {
    let (store, now, uid) = (ctx.store, ctx.now, at.user_id.as_str());
    let Some(attempt) = steps::otp_attempt(store, ctx.config, flow, uid, now).await? else {
        return Ok(Checked::Refused);
    };
    if store
        .consume_recovery_code(uid, &recovery::hash(uid, code))
        .await?
    {
        flow.log(format!("step {}: a recovery code was used", at.step));
        steps::otp_passed(
            store,
            flow,
            (at.step, StepOption::RecoveryCode),
            at.subject,
            attempt.ticket,
            now,
        )
        .await?;
        return Ok(Checked::Passed);
    }
    steps::otp_wrong(
        store,
        ctx.config,
        flow,
        (uid, &attempt),
        at.step,
        "recovery code",
        now,
    )
    .await;
    Ok(Checked::Refused)
}
