//! What an authenticator's answer does to a sign-in in progress: the shared part of
//! every step, used by the web handlers and by the offline fixture runner alike, so a
//! fixture exercises the same attempt limits, locks, messages and trace lines as a real
//! sign-in. Only the check of the secret itself (Argon2, a TOTP code) stays with the
//! caller, which runs it where it belongs (the blocking pool) or replaces it by a
//! fixture's `valid`/`invalid` marker.

use super::attempts::{self, Attempts, Holder, Limit, Reserved, Rules, Ticket};
use super::recovery;
use crate::config::{Config, StepOption};
use crate::flow::{password_fingerprint, Flow, Subject};
use crate::store::{Account, Store, StoreResult, User};

pub const BAD_CREDENTIALS: &str = "The username or password is incorrect.";
pub const LOCKED: &str = "Too many failed attempts. Wait a few minutes before trying again.";
pub const LOCKED_FOR_GOOD: &str =
    "Too many failed attempts. This account is locked until an administrator unlocks it, or its owner follows the unlock link sent to the account's verified email address.";
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

/// What an account holds, read once: a confirmed authenticator, recovery codes left.
struct Held {
    totp: bool,
    codes: bool,
}

async fn held(store: &dyn Store, user_id: &str) -> StoreResult<Held> {
    Ok(Held {
        totp: store.totp(user_id).await?.is_some_and(|c| c.confirmed),
        codes: store.recovery_codes_left(user_id).await? > 0,
    })
}

/// Second factors an account holds, for the script's `subject.enrolled`.
pub async fn enrolled(store: &dyn Store, user_id: &str) -> StoreResult<Vec<String>> {
    Ok(enrolled_of(&held(store, user_id).await?))
}

fn enrolled_of(held: &Held) -> Vec<String> {
    let mut out = Vec::new();
    if held.totp {
        out.push("totp".to_string());
    }
    if held.codes {
        out.push("recovery_code".to_string());
    }
    out
}

/// Whether any app on this server (My Account included) offers codes by email as a
/// sign-in option: then an account's address is one of its second factors.
pub fn email_codes_in_use(config: &Config) -> bool {
    config.apps.values().any(|a| {
        a.sign_in
            .steps
            .iter()
            .any(|s| s.options.contains(&StepOption::EmailOtp))
    })
}

/// The second factors that prove the owner of an account, as option names: the
/// authenticator app (and its recovery codes) when one is set up; otherwise recovery
/// codes left over, and codes by email when the account has a verified address and
/// this server uses them. Only the strongest kind is named, so a step-up never falls back from an
/// authenticator to the mailbox. Empty: the account has no second factor at all.
pub async fn factors(store: &dyn Store, config: &Config, user: &User) -> StoreResult<Vec<String>> {
    Ok(factors_of(&held(store, &user.id).await?, config, user))
}

fn factors_of(held: &Held, config: &Config, user: &User) -> Vec<String> {
    // An address nobody has shown they own is no proof of the owner.
    let email = user.email.as_deref().filter(|_| user.email_verified);
    let mut out = Vec::new();
    if held.totp {
        out.push(StepOption::Totp.name().to_string());
    }
    if held.codes {
        out.push(StepOption::RecoveryCode.name().to_string());
    }
    if !held.totp && email.is_some_and(|e| !e.is_empty()) && email_codes_in_use(config) {
        out.push(StepOption::EmailOtp.name().to_string());
    }
    out
}

/// [`enrolled`] and [`factors`] together, from one read of each credential (a sign-in
/// needs both; on a network database each read is a round trip).
pub async fn enrolled_and_factors(
    store: &dyn Store,
    config: &Config,
    user: &User,
) -> StoreResult<(Vec<String>, Vec<String>)> {
    let held = held(store, &user.id).await?;
    Ok((enrolled_of(&held), factors_of(&held, config, user)))
}

/// The subject of an account read with its second factors: what it has enrolled and
/// what it can be asked for, with no further read. What scripts read of it
/// ([`script_view`]) is added by the caller that needs it.
pub fn account_subject(config: &Config, account: &Account) -> Subject {
    let held = Held {
        totp: account.totp,
        codes: account.recovery_codes > 0,
    };
    let mut subject = local_subject(&account.user, enrolled_of(&held));
    subject.factors = factors_of(&held, config, &account.user);
    set_memberships(&mut subject, &account.groups);
    subject
}

/// The groups of a subject's account, and the roles they give it besides its own.
fn set_memberships(subject: &mut Subject, groups: &[crate::store::Membership]) {
    subject.roles = crate::store::groups::effective_roles(&subject.roles, groups);
    subject.groups = groups.iter().map(|g| g.display_name.clone()).collect();
}

/// The subject of a local account with what it has enrolled, the second factors it
/// can be asked for, its groups, and what scripts read of it ([`script_view`]), read
/// from the store.
pub async fn subject_of(
    store: &dyn Store,
    config: &Config,
    u: &User,
    now: u64,
) -> StoreResult<Subject> {
    let (enrolled, factors) = enrolled_and_factors(store, config, u).await?;
    let mut subject = local_subject(u, enrolled);
    subject.factors = factors;
    add_memberships(store, &mut subject).await?;
    script_view(store, config, &mut subject, u, now, None).await?;
    Ok(subject)
}

/// Give an account's subject its groups and the roles they carry (one store call).
pub async fn add_memberships(store: &dyn Store, subject: &mut Subject) -> StoreResult<()> {
    let Some(user_id) = subject.user_id.clone() else {
        return Ok(());
    };
    let groups = store
        .memberships(std::slice::from_ref(&user_id))
        .await?
        .remove(&user_id)
        .unwrap_or_default();
    set_memberships(subject, &groups);
    Ok(())
}

/// The most sessions `ctx.user.sessions` lists (the latest sign-ins first).
pub const SCRIPT_SESSIONS_MAX: usize = 20;

/// What a script reads of an account beyond the account and its groups: its live
/// single sign-on sessions. Recorded in the subject when the step completes, so every
/// replay of the script sees the same. Only a script that names `sessions` can read
/// them ([`Script::reads_sessions`](crate::policy::Script::reads_sessions)): without
/// one in the config, the store is spared the read. `except` is the hash of the session
/// standing in for the step, if one does: not one of the user's *other* sessions.
pub async fn script_view(
    store: &dyn Store,
    config: &Config,
    subject: &mut Subject,
    user: &User,
    now: u64,
    except: Option<&str>,
) -> StoreResult<()> {
    let wanted = config.apps.values().any(|a| {
        a.sign_in
            .script
            .as_ref()
            .is_some_and(|s| s.compiled.reads_sessions())
    });
    if wanted {
        subject.sessions = sessions_of(store, &user.id, now, except).await?;
    }
    Ok(())
}

/// The account's live single sign-on sessions, latest sign-in first, at most
/// [`SCRIPT_SESSIONS_MAX`]. The sign-in in progress has none yet (its session is made
/// when it completes), so these are the user's other sessions.
pub async fn sessions_of(
    store: &dyn Store,
    user_id: &str,
    now: u64,
    except: Option<&str>,
) -> StoreResult<Vec<crate::flow::OtherSession>> {
    let mut live: Vec<crate::flow::OtherSession> = store
        .sessions_of(user_id)
        .await?
        .into_iter()
        .filter(|(hash, s)| s.expires_at > now && Some(hash.as_str()) != except)
        .map(|(_, s)| s)
        .map(|s| crate::flow::OtherSession {
            apps: s.clients,
            idp: s.idp,
            started_at: s.created_at,
            auth_time: s.auth_time,
            expires_at: s.expires_at,
        })
        .collect();
    live.sort_by_key(|s| std::cmp::Reverse(s.auth_time));
    live.truncate(SCRIPT_SESSIONS_MAX);
    Ok(live)
}

/// A password attempt about to be checked, its attempt reserved.
pub struct PasswordAttempt {
    pub user: Option<User>,
    ticket: Ticket,
}

/// The page's words for a locked account.
pub fn locked_message(for_good: bool) -> &'static str {
    if for_good {
        LOCKED_FOR_GOOD
    } else {
        LOCKED
    }
}

/// The trace's words for a lock that stops an attempt.
fn refused_line(step: usize, what: &str, for_good: bool) -> String {
    if for_good {
        format!("step {step}: {what} refused, attempts locked until an administrator unlocks the account")
    } else {
        format!("step {step}: {what} refused, attempts locked")
    }
}

/// What a failure's lock adds to its trace line.
fn lock_note(ticket: &Ticket, now: u64) -> String {
    match ticket.locks_until {
        0 => String::new(),
        _ if ticket.capped => {
            "; the account is locked until an administrator unlocks it".to_string()
        }
        until => format!(
            "; the account is locked for {} s",
            until.saturating_sub(now)
        ),
    }
}

/// Before checking a password: the account (if any), with one attempt reserved against
/// its count. `None` means locked: nothing may be checked, and the flow carries the
/// message.
pub async fn password_begin(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    step: usize,
    login: &str,
    now: u64,
) -> StoreResult<Option<PasswordAttempt>> {
    flow.last_login = Some(login.to_string());
    flow.pick("password");
    let user = store.find_user(login).await?;
    let holder = Holder::of(user.as_ref(), login);
    match attempts::reserve(store, &holder, Rules::of(config), now).await? {
        Reserved::Locked { for_good } => {
            flow.tell(locked_message(for_good));
            flow.log(refused_line(step, "password", for_good));
            Ok(None)
        }
        Reserved::Granted(ticket) => Ok(Some(PasswordAttempt { user, ticket })),
    }
}

/// After checking a password (`ok` is true only for an existing account whose password
/// matched): a right one gives its reservation back; a wrong one stays counted against
/// the account (shared by every browser) and against this sign-in, whose step fails for
/// good at `max_password_attempts`.
pub async fn password_end(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    step: usize,
    attempt: PasswordAttempt,
    ok: bool,
    now: u64,
) -> StoreResult<()> {
    let PasswordAttempt { user, ticket } = attempt;
    match user {
        Some(u) if ok => {
            attempts::give_back(store, ticket, now).await?;
            if u.disabled {
                flow.tell("This account is disabled. Contact your administrator.");
                flow.log(format!("step {step}: account {} is disabled", u.id));
            } else {
                let subject = subject_of(store, config, &u, now).await?;
                if let Err(e) = flow.step_succeeded(
                    step,
                    &StepOption::Password,
                    subject,
                    vec!["pwd".into()],
                    now,
                ) {
                    flow.tell(e.description);
                } else {
                    flow.password_seen = u.password_hash.as_ref().map(password_fingerprint);
                }
            }
        }
        _ => {
            let max = config.security.max_password_attempts;
            flow.tell(if ticket.capped {
                LOCKED_FOR_GOOD
            } else if ticket.locks_until > now {
                LOCKED
            } else {
                BAD_CREDENTIALS
            });
            let in_block = (ticket.failures.saturating_sub(1) % max.max(1)) + 1;
            let in_a_row = if ticket.failures > max {
                format!(", {} in a row", ticket.failures)
            } else {
                String::new()
            };
            flow.log(format!(
                "step {step}: wrong password ({in_block} of {max} attempts{in_a_row}{})",
                lock_note(&ticket, now)
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
pub async fn otp_locked(
    store: &dyn Store,
    flow: &mut Flow,
    user_id: &str,
    now: u64,
) -> StoreResult<bool> {
    let locked = attempts::locked(store, &otp_key(user_id), now).await?;
    if locked {
        flow.tell(LOCKED_OTP);
    }
    Ok(locked)
}

/// Reserve one of the account's attempts before a one-time code (email, TOTP, recovery)
/// is checked. `None` when the account is locked (the message is set and nothing may be
/// checked).
pub async fn code_attempt(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    user_id: &str,
    now: u64,
) -> StoreResult<Option<Ticket>> {
    match attempts::reserve(store, &Holder::account(user_id), Rules::of(config), now).await? {
        Reserved::Locked { for_good } => {
            flow.tell(if for_good {
                LOCKED_FOR_GOOD
            } else {
                LOCKED_OTP
            });
            Ok(None)
        }
        Reserved::Granted(ticket) => Ok(Some(ticket)),
    }
}

/// An attempt at a TOTP or recovery code: the account's reservation and the second
/// factor's own throttle.
pub struct OtpAttempt {
    pub factor: Attempts,
    pub ticket: Ticket,
}

/// Take one of the account's attempts, and one of its second factor's, before a code is
/// checked: it counts as a failure at once and `otp_passed` gives it back, so a burst of
/// parallel guesses cannot get past the limit the way check-then-count would let it.
/// `None` when the account or the factor is locked (the message is set and nothing may
/// be checked).
pub async fn otp_attempt(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    user_id: &str,
    now: u64,
) -> StoreResult<Option<OtpAttempt>> {
    if otp_locked(store, flow, user_id, now).await? {
        return Ok(None);
    }
    let Some(ticket) = code_attempt(store, config, flow, user_id, now).await? else {
        return Ok(None);
    };
    let limit = Limit::otp(config);
    let factor = attempts::fail(store, &otp_key(user_id), limit, now).await?;
    if factor.failures > limit.max {
        // Other attempts in flight took the factor's last ones; nothing is checked, so
        // the account's reservation goes back.
        attempts::give_back(store, ticket, now).await?;
        flow.tell(LOCKED_OTP);
        return Ok(None);
    }
    Ok(Some(OtpAttempt { factor, ticket }))
}

/// The page's words for a wrong one-time code, whose failure may have locked the
/// account.
pub fn wrong_code_message(ticket: &Ticket, factor_locked: bool, now: u64) -> &'static str {
    if ticket.capped {
        LOCKED_FOR_GOOD
    } else if factor_locked || ticket.locks_until > now {
        LOCKED_OTP
    } else {
        WRONG_CODE
    }
}

/// A wrong one-time code, already counted by `otp_attempt`: per account, across every
/// browser.
pub async fn otp_wrong(
    store: &dyn Store,
    config: &Config,
    flow: &mut Flow,
    (user_id, attempt): (&str, &OtpAttempt),
    step: usize,
    what: &str,
    now: u64,
) {
    flow.tell(wrong_code_message(
        &attempt.ticket,
        attempt.factor.locked_at(now),
        now,
    ));
    let line = format!(
        "step {step}: wrong {what} ({} of {} attempts{})",
        attempt.factor.failures,
        config.security.max_otp_attempts,
        lock_note(&attempt.ticket, now)
    );
    crate::audit::rejected(store, flow, Some(user_id), &line, now).await;
    flow.log(line);
}

/// A good one-time code: its reservation goes back, the second factor's throttle is
/// forgiven, and the step succeeds with `otp`.
pub async fn otp_passed(
    store: &dyn Store,
    flow: &mut Flow,
    (step, option): (usize, StepOption),
    mut subject: Subject,
    ticket: Ticket,
    now: u64,
) -> StoreResult<()> {
    attempts::give_back(store, ticket, now).await?;
    if let Some(uid) = subject.user_id.clone() {
        attempts::forgive(store, &otp_key(&uid)).await?;
        subject.enrolled = enrolled(store, &uid).await?;
    }
    if let Err(e) = flow.step_succeeded(step, &option, subject, vec!["otp".into()], now) {
        flow.tell(e.description);
    }
    Ok(())
}

/// The first good code finishes TOTP enrolment: mark it confirmed and issue recovery
/// codes, which the next page shows once.
pub async fn confirm_enrolment(
    store: &dyn Store,
    flow: &mut Flow,
    user_id: &str,
) -> StoreResult<()> {
    if let Some(mut c) = store.totp(user_id).await? {
        c.confirmed = true;
        store.put_totp(user_id, &c).await?;
    }
    let (codes, hashes) = recovery::generate(user_id);
    store.put_recovery_codes(user_id, &hashes).await?;
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
