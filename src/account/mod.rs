//! My Account, without HTTP: what a signed-in user may see and change about their own
//! account — profile attributes the config marks editable, linked connections (never
//! the last way in), the password (old one required, policy enforced), the
//! authenticator app and recovery codes, and their SSO sessions.
//!
//! Every change is audited with the built-in app as actor. Functions that hash or
//! verify passwords or flush are blocking; the web layer calls them on the blocking
//! pool.

pub mod access;
pub mod email;
pub mod forms;
pub mod notify;
pub mod step_up;

use std::collections::BTreeMap;

use crate::audit::{self, kind};
use crate::authn::attempts::{self, Holder, Limit, Reserved, Rules};
use crate::authn::sealing::SealingKey;
use crate::authn::steps::{self, otp_key};
use crate::authn::{password, recovery, totp};
use crate::config::{ProfileField, MY_ACCOUNT_APP};
use crate::context::Ctx;
use crate::crypto::{b64url, sha256};
use crate::store::{Grant, Session, Store, StoreError, StoreResult, TotpCredential, User};

/// Why a change was refused, in words for the page; or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fault on our side that is not the store's (a misconfigured built-in app, an
    /// authenticator QR code that cannot be drawn).
    #[error("{0}")]
    Internal(String),
}

/// A new password as the form gives it: the current one, and the new one twice.
#[derive(Default, Clone)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
    pub confirm: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChange(..)")
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, AccountError> {
    Err(AccountError::Refused(message.into()))
}

async fn record(store: &dyn Store, now: u64, kind: &str, user_id: &str, detail: Vec<String>) {
    audit::record(
        store,
        now,
        kind,
        Some(MY_ACCOUNT_APP),
        Some(user_id),
        detail,
    )
    .await;
}

/// The public handle of a session: the `sid` its tokens carry. The store key (the hash
/// of the cookie) never leaves the server.
pub fn session_handle(session_hash: &str) -> String {
    b64url(&sha256(session_hash.as_bytes())[..16])
}

/// What [`sign_out_everywhere`] ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignedOut {
    /// SSO sessions ended.
    pub sessions: usize,
    /// Grants (token families) revoked: their refresh tokens are refused and their
    /// access tokens fail at userinfo and introspection.
    pub grants: usize,
}

impl std::fmt::Display for SignedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} session(s) ended, {} grant(s) revoked",
            self.sessions, self.grants
        )
    }
}

/// What a sign-out everywhere leaves alone: the SSO session (store key) of the browser
/// that asked, and the My Account grant issued under it, so a password change keeps
/// its author signed in to My Account. Every other app's grant goes, that browser's
/// included.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep<'a> {
    pub session: Option<&'a str>,
}

/// End every SSO session of an account and revoke every grant it holds, offline ones
/// included: the one function behind every "this account's credentials changed or it
/// was shut off" path (password change and reset, factor reset by an administrator,
/// disabling, deleting, an administrator's "sign out everywhere"). Sessions go first,
/// so a code issued in one of them can no longer be exchanged (`oidc::token` checks
/// the session) while the grants are revoked. Not audited here: the caller records
/// why, with the counts.
pub async fn sign_out_everywhere(
    store: &dyn Store,
    user_id: &str,
    keep: Keep<'_>,
) -> StoreResult<SignedOut> {
    let mut out = SignedOut::default();
    // A half-set-up authenticator's key may have been seen by whoever is being signed
    // out: the owner's next set-up starts from a new one.
    if store.totp(user_id).await?.is_some_and(|c| !c.confirmed) {
        store.delete_totp(user_id).await?;
    }
    out.sessions = store.end_sessions_of(user_id, keep.session).await?;
    out.grants = match keep.session {
        None => store.revoke_grants_of(user_id).await?,
        // My Account's own grant in the session it keeps lives on.
        Some(kept) => {
            store
                .revoke_grants_of_except(user_id, MY_ACCOUNT_APP, kept)
                .await?
        }
    };
    Ok(out)
}

/// End every SSO session of an account and revoke all its grants (disabled, deleted,
/// new password, reset factor); returns how many sessions there were. The grants'
/// count is logged; a caller that audits it uses [`sign_out_everywhere`].
pub async fn end_sessions(store: &dyn Store, user_id: &str) -> StoreResult<usize> {
    let out = sign_out_everywhere(store, user_id, Keep::default()).await?;
    tracing::info!(user = %user_id, ended = %out, "signed out everywhere");
    Ok(out.sessions)
}

/// A session as My Account lists it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub handle: String,
    /// The session of the browser asking.
    pub current: bool,
    pub session: Session,
    /// The apps' live grants issued in this session, oldest first (My Account's own
    /// are not listed: they are the page itself).
    pub grants: Vec<Grant>,
}

/// Everything the My Account page shows.
#[derive(Debug, Clone)]
pub struct Overview {
    pub user: User,
    pub identities: Vec<(String, String)>,
    /// A confirmed authenticator app.
    pub totp: bool,
    pub recovery_codes_left: usize,
    /// Live sessions, newest first.
    pub sessions: Vec<SessionInfo>,
    /// Live `offline_access` grants whose session has ended: they keep working until
    /// revoked, so they are listed on their own.
    pub offline: Vec<Grant>,
}

impl Overview {
    /// Whether an identity may be unlinked: not when it is the account's only way in
    /// (no password and no other identity).
    pub fn can_unlink(&self) -> bool {
        self.user.password_hash.is_some() || self.identities.len() > 1
    }
}

pub async fn overview(ctx: &Ctx<'_>, user: User, current_hash: &str) -> StoreResult<Overview> {
    let (store, now) = (ctx.store, ctx.now);
    let mut grants: Vec<Grant> = store
        .grants_of(&user.id)
        .await?
        .into_iter()
        .filter(|g| !g.revoked && g.expires_at > now && g.client_id != MY_ACCOUNT_APP)
        .collect();
    let mut sessions: Vec<SessionInfo> = store
        .sessions_of(&user.id)
        .await?
        .into_iter()
        .filter(|(_, s)| s.expires_at > now)
        .map(|(hash, session)| {
            let (mine, rest) = grants
                .drain(..)
                .partition(|g| g.data.session.as_deref() == Some(hash.as_str()));
            grants = rest;
            SessionInfo {
                handle: session_handle(&hash),
                current: hash == current_hash,
                session,
                grants: mine,
            }
        })
        .collect();
    sessions.sort_by_key(|s| std::cmp::Reverse(s.session.auth_time));
    // What is left lost its session: only offline grants still work.
    grants.retain(|g| g.offline);
    Ok(Overview {
        identities: store.identities_of(&user.id).await?,
        totp: store.totp(&user.id).await?.is_some_and(|c| c.confirmed),
        recovery_codes_left: store.recovery_codes_left(&user.id).await?,
        sessions,
        offline: grants,
        user,
    })
}

/// The longest grant id a form may name.
const GRANT_ID_MAX: usize = 64;

/// Revoke one app's grant of the account (an app in a session, or one with offline
/// access): its refresh tokens are refused and its access tokens fail at userinfo and
/// introspection. Returns the app's client id; `Ok(None)` if the grant is not the
/// account's, is My Account's own, or has already ended. Blocking (flush).
pub async fn revoke_grant(
    ctx: &Ctx<'_>,
    user_id: &str,
    grant_id: &str,
) -> Result<Option<String>, AccountError> {
    let (store, now) = (ctx.store, ctx.now);
    // Grant ids are time-prefixed random ids of a few dozen characters; anything
    // longer names no grant and is not looked up.
    if grant_id.len() > GRANT_ID_MAX {
        return Ok(None);
    }
    let Some(grant) = store.grant(grant_id).await?.filter(|g| {
        g.data.user_id.as_deref() == Some(user_id)
            && g.client_id != MY_ACCOUNT_APP
            && !g.revoked
            && g.expires_at > now
    }) else {
        return Ok(None);
    };
    store.revoke_grant(&grant.id).await?;
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_GRANT_REVOKED,
        user_id,
        vec![format!(
            "{} ({}), granted at {}",
            grant.client_id,
            if grant.offline {
                "offline access"
            } else {
                "in a session"
            },
            crate::timefmt::rfc3339(grant.created_at)
        )],
    )
    .await;
    Ok(Some(grant.client_id))
}

/// Change the editable profile attributes from a form (`name`, `given_name`, …). A
/// field the config does not mark editable is ignored even if posted. Returns the names
/// of what changed.
pub async fn update_profile(
    ctx: &Ctx<'_>,
    user: &User,
    form: &BTreeMap<String, String>,
) -> Result<Vec<String>, AccountError> {
    let (store, config, now) = (ctx.store, ctx.config, ctx.now);
    let mut updated = user.clone();
    let mut changed = Vec::new();
    for field in &config.my_account.editable {
        let Some(posted) = form.get(field.as_str()) else {
            continue;
        };
        let value = posted.trim();
        let cap = match field {
            ProfileField::Picture => {
                crate::limits::check_bytes(label(*field), value, crate::limits::URL_MAX)
            }
            _ => crate::limits::check_len(label(*field), value, crate::limits::NAME_MAX),
        };
        if cap.is_err() || value.chars().any(char::is_control) {
            return refuse(format!(
                "{} is too long or has odd characters.",
                label(*field)
            ));
        }
        if *field == ProfileField::Picture && !value.is_empty() {
            let ok = url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
            if !ok {
                return refuse("The picture must be a web address starting with https://.");
            }
        }
        let new = (!value.is_empty()).then(|| value.to_string());
        let slot = match field {
            ProfileField::Name => &mut updated.name,
            ProfileField::GivenName => &mut updated.given_name,
            ProfileField::FamilyName => &mut updated.family_name,
            ProfileField::Picture => &mut updated.picture,
        };
        if *slot != new {
            *slot = new;
            changed.push(field.as_str().to_string());
        }
    }
    if changed.is_empty() {
        return Ok(changed);
    }
    updated.updated_at = now;
    store.update_user(&updated).await?;
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_PROFILE,
        &user.id,
        vec![format!("changed: {}", changed.join(", "))],
    )
    .await;
    Ok(changed)
}

/// The label of a profile field on the page.
pub fn label(field: ProfileField) -> &'static str {
    match field {
        ProfileField::Name => "Full name",
        ProfileField::GivenName => "Given name",
        ProfileField::FamilyName => "Family name",
        ProfileField::Picture => "Picture URL",
    }
}

/// Unlink a connection from the account, unless it is the only way in.
pub async fn unlink(
    ctx: &Ctx<'_>,
    user: &User,
    connection: &str,
    subject: &str,
) -> Result<(), AccountError> {
    let (store, now) = (ctx.store, ctx.now);
    let identities = store.identities_of(&user.id).await?;
    if !identities
        .iter()
        .any(|(c, s)| c == connection && s == subject)
    {
        return refuse("That connection is not linked to your account.");
    }
    if user.password_hash.is_none() && identities.len() <= 1 {
        return refuse("This is the only way you can sign in, so it cannot be unlinked. Link another connection first.");
    }
    if !store.unlink_identity(connection, subject, &user.id).await? {
        return refuse("That connection is not linked to your account.");
    }
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_UNLINKED,
        &user.id,
        vec![format!("connection {connection}, subject {subject}")],
    )
    .await;
    Ok(())
}

/// Change the password: the old one must be right (counted against the same lock as
/// signing in), the new one must meet the policy. Other sessions of the account end and
/// every grant of the account is revoked, so no app keeps refreshing on the old
/// password. Blocking (Argon2). `keep_session` is the store key of the session asking,
/// which stays signed in to My Account ([`Keep`]). Returns how many other sessions
/// ended.
pub async fn change_password(
    ctx: &Ctx<'_>,
    user: &User,
    change: &PasswordChange,
    keep_session: &str,
) -> Result<usize, AccountError> {
    let (store, config, now) = (ctx.store, ctx.config, ctx.now);
    let (old, new, confirm) = (&change.current, &change.new, &change.confirm);
    if user.password_hash.is_none() {
        return refuse("Your account signs in through a connection and has no password to change.");
    }
    // Before Argon2 sees any of them: its work must not grow with what is typed.
    if [old, new, confirm]
        .iter()
        .any(|p| p.len() > crate::limits::PASSWORD_MAX)
    {
        return refuse(format!(
            "A password is at most {} bytes long.",
            crate::limits::PASSWORD_MAX
        ));
    }
    // Reserve, then check: parallel posts get no more guesses than a sign-in would.
    let holder = Holder::account(&user.id);
    let ticket = match attempts::reserve(store, &holder, Rules::of(config), now).await? {
        Reserved::Granted(ticket) => ticket,
        Reserved::Locked { for_good: false } => {
            return refuse("Too many wrong passwords. Wait a few minutes before trying again.")
        }
        Reserved::Locked { for_good: true } => return refuse(steps::LOCKED_FOR_GOOD),
    };
    if !password::verify_off_runtime(Some(user), old).await {
        // The reservation stays: a failure against the account like any other.
        return refuse("Your current password is not right.");
    }
    attempts::give_back(store, ticket, now).await?;
    let mut problems = password::check_policy(&config.security.password_policy, new);
    if new != confirm {
        problems.push("The two new passwords do not match.".into());
    }
    if !problems.is_empty() {
        return refuse(problems.join(" "));
    }
    let hash = password::hash_off_runtime(new)
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut updated = user.clone();
    updated.password_hash = Some(hash);
    updated.updated_at = now;
    store.update_user(&updated).await?;
    let ended = sign_out_everywhere(
        store,
        &user.id,
        Keep {
            session: Some(keep_session),
        },
    )
    .await?;
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_PASSWORD,
        &user.id,
        vec![format!("other sessions and apps signed out: {ended}")],
    )
    .await;
    Ok(ended.sessions)
}

/// The secret of the authenticator being set up: the pending one if there is one (a
/// reload shows the same key), else a new one sealed into the store. `None` when an
/// authenticator is already confirmed. Blocking (flush).
pub async fn totp_secret(
    ctx: &Ctx<'_>,
    sealing: &SealingKey,
    user_id: &str,
) -> Result<Option<Vec<u8>>, AccountError> {
    let (store, now) = (ctx.store, ctx.now);
    let existing = store.totp(user_id).await?;
    if existing.as_ref().is_some_and(|c| c.confirmed) {
        return Ok(None);
    }
    if let Some(secret) = existing.and_then(|c| sealing.open(&c.sealed_secret, user_id.as_bytes()))
    {
        return Ok(Some(secret));
    }
    let secret = totp::generate_secret();
    let sealed = sealing
        .seal(&secret, user_id.as_bytes())
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    store
        .put_totp(
            user_id,
            &TotpCredential {
                sealed_secret: sealed,
                created_at: now,
                last_step: 0,
                confirmed: false,
            },
        )
        .await?;
    store.flush().await?;
    Ok(Some(secret))
}

/// Finish setting up the authenticator with one code from it; returns the new recovery
/// codes (shown once). Wrong codes count against the account's second-factor lock.
pub async fn confirm_totp(
    ctx: &Ctx<'_>,
    sealing: &SealingKey,
    user_id: &str,
    code: &str,
) -> Result<Vec<String>, AccountError> {
    let (store, config, now) = (ctx.store, ctx.config, ctx.now);
    let key = otp_key(user_id);
    let Some(mut credential) = store.totp(user_id).await?.filter(|c| !c.confirmed) else {
        return refuse("Start setting up your authenticator app again.");
    };
    // Reserve, then check, on the second factor's throttle. A code of a new
    // authenticator being set up guards no account, so it does not feed the account's
    // count: a signed-in user fumbling the setup cannot lock themselves out.
    let limit = Limit::otp(config);
    if attempts::locked(store, &key, now).await?
        || attempts::fail(store, &key, limit, now).await?.failures > limit.max
    {
        return refuse("Too many wrong codes. Wait a few minutes before trying again.");
    }
    let Some(secret) = sealing.open(&credential.sealed_secret, user_id.as_bytes()) else {
        return Err(StoreError::Corrupt("a stored TOTP secret does not open".into()).into());
    };
    let accepted = match totp::verify(&secret, code, now) {
        Some(step) => store.accept_totp_step(user_id, step).await?,
        None => false,
    };
    if !accepted {
        return refuse(
            "That code is not right. Check the time on your phone and try the newest code.",
        );
    }
    attempts::forgive(store, &key).await?;
    if let Some(latest) = store.totp(user_id).await? {
        credential = latest;
    }
    credential.confirmed = true;
    store.put_totp(user_id, &credential).await?;
    let (codes, hashes) = recovery::generate(user_id);
    store.put_recovery_codes(user_id, &hashes).await?;
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_TOTP_ENROLLED,
        user_id,
        vec!["authenticator app set up; recovery codes issued".into()],
    )
    .await;
    Ok(codes)
}

/// Remove the authenticator app and recovery codes (to move to a new phone). Blocking.
pub async fn reset_totp(ctx: &Ctx<'_>, user_id: &str) -> Result<(), AccountError> {
    crate::authn::reset_totp(ctx.store, user_id).await?;
    record(
        ctx.store,
        ctx.now,
        kind::ACCOUNT_TOTP_RESET,
        user_id,
        Vec::new(),
    )
    .await;
    Ok(())
}

/// Replace the recovery codes with ten new ones (shown once). Only with an
/// authenticator app: the codes stand in for it. Blocking.
pub async fn regenerate_recovery_codes(
    ctx: &Ctx<'_>,
    user_id: &str,
) -> Result<Vec<String>, AccountError> {
    let (store, now) = (ctx.store, ctx.now);
    if !store.totp(user_id).await?.is_some_and(|c| c.confirmed) {
        return refuse("Set up an authenticator app first; recovery codes stand in for it.");
    }
    let (codes, hashes) = recovery::generate(user_id);
    store.put_recovery_codes(user_id, &hashes).await?;
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_RECOVERY_CODES,
        user_id,
        Vec::new(),
    )
    .await;
    Ok(codes)
}

/// End one of the account's sessions by its handle; `Ok(None)` if it is not theirs.
/// Returns the store key of the ended session. Blocking.
pub async fn end_session(
    ctx: &Ctx<'_>,
    user_id: &str,
    handle: &str,
) -> Result<Option<String>, AccountError> {
    let (store, now) = (ctx.store, ctx.now);
    let found = store
        .sessions_of(user_id)
        .await?
        .into_iter()
        .find(|(hash, _)| crate::secret::ct_eq(session_handle(hash).as_bytes(), handle.as_bytes()));
    let Some((hash, session)) = found else {
        return Ok(None);
    };
    store.delete_session(&hash).await?;
    // Like signing out there: the apps' grants of the session go, offline ones stay
    // (they are listed on their own and revoked one by one).
    let revoked = store.revoke_session_grants(&hash, true).await?;
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_SESSION_ENDED,
        user_id,
        vec![
            format!(
                "session signed in at {} through {}",
                crate::timefmt::rfc3339(session.auth_time),
                session.idp
            ),
            format!("{revoked} grant(s) revoked"),
        ],
    )
    .await;
    Ok(Some(hash))
}

#[cfg(test)]
mod tests;
