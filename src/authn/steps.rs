//! What an authenticator's answer does to a sign-in in progress: the shared part of
//! every step, used by the web handlers and by the offline fixture runner alike, so a
//! fixture exercises the same attempt limits, locks, messages and trace lines as a real
//! sign-in. Only the check of the secret itself (Argon2, a TOTP code) stays with the
//! caller, which runs it where it belongs (the blocking pool) or replaces it by a
//! fixture's `valid`/`invalid` marker.

use super::attempts::{self, Attempts, Limit};
use super::{password, recovery};
use crate::config::{Config, StepOption};
use crate::flow::{Flow, Subject};
use crate::store::{Store, StoreResult, User};

pub const BAD_CREDENTIALS: &str = "The username or password is incorrect.";
pub const LOCKED: &str = "Too many failed attempts. Wait a few minutes before trying again.";
pub const LOCKED_OTP: &str =
    "Too many wrong codes. Your second factor is locked for a while; try again later or use another way.";
pub const WRONG_CODE: &str = "That code is not right. Check it and try again.";

/// The subject of a local account.
pub fn local_subject(u: &User, enrolled: Vec<String>) -> Subject {
    Subject {
        sub: u.id.clone(),
        user_id: Some(u.id.clone()),
        username: Some(u.username.clone()),
        email: u.email.clone(),
        idp: "local".into(),
        roles: u.roles.clone(),
        enrolled,
        ..Subject::default()
    }
}

/// Second factors an account holds, for the script's `subject.enrolled`.
pub fn enrolled(store: &dyn Store, user_id: &str) -> StoreResult<Vec<String>> {
    let mut out = Vec::new();
    if store.totp(user_id)?.is_some_and(|c| c.confirmed) {
        out.push("totp".to_string());
    }
    if store.recovery_codes_left(user_id)? > 0 {
        out.push("recovery_code".to_string());
    }
    Ok(out)
}

/// A password attempt about to be checked.
pub struct PasswordAttempt {
    pub user: Option<User>,
    key: String,
}

/// Before checking a password: the account (if any) and whether its attempts are
/// locked. `None` means locked; the flow already carries the message.
pub fn password_begin(
    store: &dyn Store,
    flow: &mut Flow,
    step: usize,
    login: &str,
    now: u64,
) -> StoreResult<Option<PasswordAttempt>> {
    flow.last_login = Some(login.to_string());
    flow.pick("password");
    let user = store.find_user(login)?;
    let key = password::attempts_key(user.as_ref(), login);
    if attempts::locked(store, &key, now)? {
        flow.tell(LOCKED);
        flow.log(format!("step {step}: password refused, attempts locked"));
        return Ok(None);
    }
    Ok(Some(PasswordAttempt { user, key }))
}

/// After checking a password (`ok` is true only for an existing account whose password
/// matched): record success, or count the failure against the account (shared by every
/// browser) and against this sign-in, whose step fails for good at the limit.
pub fn password_end(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    step: usize,
    attempt: PasswordAttempt,
    ok: bool,
    now: u64,
) -> StoreResult<()> {
    match attempt.user {
        Some(u) if ok => {
            attempts::forgive(store, &attempt.key)?;
            if u.disabled {
                flow.tell("This account is disabled. Contact your administrator.");
                flow.log(format!("step {step}: account {} is disabled", u.id));
            } else {
                let subject = local_subject(&u, enrolled(store, &u.id)?);
                if let Err(e) = flow.step_succeeded(
                    step,
                    &StepOption::Password,
                    subject,
                    vec!["pwd".into()],
                    now,
                ) {
                    flow.tell(e.description);
                }
            }
        }
        _ => {
            let limit = Limit::password(config);
            let max = limit.max;
            let a = attempts::fail(store, &attempt.key, limit, now)?;
            flow.tell(if a.locked_at(now) {
                LOCKED
            } else {
                BAD_CREDENTIALS
            });
            flow.log(format!(
                "step {step}: wrong password ({} of {max} attempts)",
                a.failures
            ));
            flow.password_failures += 1;
            if flow.password_failures >= max {
                flow.step_failed(step, "password", "too many failed password attempts", now);
            }
        }
    }
    Ok(())
}

/// The attempt counter key of an account's second factor (TOTP and recovery codes).
pub fn otp_key(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// Whether the account's second factor is locked; sets the message if so.
pub fn otp_locked(
    store: &dyn Store,
    flow: &mut Flow,
    user_id: &str,
    now: u64,
) -> StoreResult<bool> {
    let locked = attempts::locked(store, &otp_key(user_id), now)?;
    if locked {
        flow.tell(LOCKED_OTP);
    }
    Ok(locked)
}

/// Take one of the account's attempts before a code is checked: it counts as a failure
/// at once and `otp_passed` forgives it, so a burst of parallel guesses cannot get past
/// the limit the way check-then-count would let it. `None` when the factor is locked
/// (the message is set and nothing may be checked).
pub fn otp_attempt(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    user_id: &str,
    now: u64,
) -> StoreResult<Option<Attempts>> {
    if otp_locked(store, flow, user_id, now)? {
        return Ok(None);
    }
    let limit = Limit::otp(config);
    let a = attempts::fail(store, &otp_key(user_id), limit, now)?;
    if a.failures > limit.max {
        // Other attempts in flight took the last ones.
        flow.tell(LOCKED_OTP);
        return Ok(None);
    }
    Ok(Some(a))
}

/// A wrong one-time code, already counted by `otp_attempt`: per account, across every
/// browser.
pub fn otp_wrong(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    (user_id, attempt): (&str, &Attempts),
    step: usize,
    what: &str,
    now: u64,
) {
    flow.tell(if attempt.locked_at(now) {
        LOCKED_OTP
    } else {
        WRONG_CODE
    });
    let line = format!(
        "step {step}: wrong {what} ({} of {} attempts)",
        attempt.failures, config.security.max_otp_attempts
    );
    crate::audit::rejected(store, flow, Some(user_id), &line, now);
    flow.log(line);
}

/// A good one-time code: the step succeeds with `otp`.
pub fn otp_passed(
    store: &dyn Store,
    flow: &mut Flow,
    step: usize,
    option: StepOption,
    mut subject: Subject,
    now: u64,
) -> StoreResult<()> {
    if let Some(uid) = subject.user_id.clone() {
        attempts::forgive(store, &otp_key(&uid))?;
        subject.enrolled = enrolled(store, &uid)?;
    }
    if let Err(e) = flow.step_succeeded(step, &option, subject, vec!["otp".into()], now) {
        flow.tell(e.description);
    }
    Ok(())
}

/// The first good code finishes TOTP enrolment: mark it confirmed and issue recovery
/// codes, which the next page shows once.
pub fn confirm_enrolment(store: &dyn Store, flow: &mut Flow, user_id: &str) -> StoreResult<()> {
    if let Some(mut c) = store.totp(user_id)? {
        c.confirmed = true;
        store.put_totp(user_id, &c)?;
    }
    let (codes, hashes) = recovery::generate(user_id);
    store.put_recovery_codes(user_id, &hashes)?;
    flow.pending_codes = codes;
    flow.log("authenticator app enrolled; recovery codes issued");
    Ok(())
}

/// The MFA conflict: every option of this step needs an account and the subject has
/// none. Records the trace line that names the two fixes; returns the error for the app.
pub fn mfa_conflict(flow: &mut Flow, step: usize) -> crate::oidc::OAuthError {
    let idp = flow.subject().map(|s| s.idp.clone()).unwrap_or_default();
    flow.log(format!(
        "step {step} needs an account (its options all keep a credential on one) but the user \
         signed in through `{idp}` without one; fix: enable jit.provision on connection `{idp}`, \
         or skip step {step} for users without an account in the app's script"
    ));
    crate::oidc::OAuthError::access_denied(format!(
        "step {step} requires a local account, and this user has none"
    ))
}
