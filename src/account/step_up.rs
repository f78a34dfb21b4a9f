//! Step-up for credential changes: changing the password or the email, setting up or
//! removing the authenticator app, new recovery codes and unlinking a connection need
//! a sign-in at most `my_account.step_up_seconds` old that passed the account's second
//! factor, when it has one (`authn::steps::factors`: the authenticator app or its
//! recovery codes, else codes by email to a verified address where this server uses
//! them).
//!
//! The rule is checked here, against the SSO session My Account's token was issued
//! under; it is met only by signing in again through Usher's own flow, which the shell
//! starts with [`crate::account::access::start_step_up`] (`max_age` and the
//! `acr_values` entry the sign-in core answers with the factor step). Nothing here
//! takes a code: a form never becomes a second way to pass a factor.

use crate::authn::steps;
use crate::context::Ctx;
use crate::store::{Session, StoreResult, User};

/// Whether a credential of `user` may change now, under the session `session_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Recent enough: go ahead.
    Yes,
    /// Sign in again first (with the second factor, when the account has one).
    StepUp,
}

/// The rule itself, on a session already read: `factors` are the account's second
/// factors (option names), `window` the seconds a sign-in stays good for a change.
pub fn judge(session: &Session, factors: &[String], now: u64, window: u64) -> Fresh {
    let since = now.saturating_sub(window);
    let recent = |t: u64| t >= since && t <= now;
    let ok = if factors.is_empty() {
        recent(session.auth_time)
    } else {
        factors
            .iter()
            .any(|f| session.satisfied.get(f).is_some_and(|t| recent(*t)))
    };
    if ok {
        Fresh::Yes
    } else {
        Fresh::StepUp
    }
}

/// Whether `user`'s session `session_hash` may change a credential now. A session that
/// is gone or belongs to someone else never may.
pub async fn check(ctx: &Ctx<'_>, user: &User, session_hash: &str) -> StoreResult<Fresh> {
    let Some(session) = ctx
        .store
        .session(session_hash)
        .await?
        .filter(|s| s.user_id.as_deref() == Some(user.id.as_str()) && s.expires_at > ctx.now)
    else {
        return Ok(Fresh::StepUp);
    };
    let factors = steps::factors(ctx.store, ctx.config, user).await?;
    Ok(judge(
        &session,
        &factors,
        ctx.now,
        ctx.config.my_account.step_up_seconds,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(auth_time: u64, satisfied: &[(&str, u64)]) -> Session {
        Session {
            sub: "u".into(),
            user_id: Some("u".into()),
            auth_time,
            amr: vec![],
            satisfied: satisfied.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            idp: "local".into(),
            claims: Default::default(),
            clients: vec![],
            created_at: auth_time,
            expires_at: auth_time + 10_000,
            asserted: Default::default(),
        }
    }

    #[test]
    fn without_a_second_factor_a_recent_sign_in_is_enough() {
        let s = session(1000, &[("password", 1000)]);
        assert_eq!(judge(&s, &[], 1300, 300), Fresh::Yes);
        assert_eq!(judge(&s, &[], 1301, 300), Fresh::StepUp);
    }

    #[test]
    fn with_a_second_factor_only_a_recent_pass_of_it_counts() {
        let totp = vec!["totp".to_string(), "recovery_code".to_string()];
        // A fresh password with an old authenticator code is not enough.
        let s = session(2000, &[("password", 2000), ("totp", 1000)]);
        assert_eq!(judge(&s, &totp, 2010, 300), Fresh::StepUp);
        // A code by email does not stand in for the authenticator.
        let s = session(2000, &[("password", 2000), ("email_otp", 2000)]);
        assert_eq!(judge(&s, &totp, 2010, 300), Fresh::StepUp);
        let s = session(2000, &[("password", 2000), ("recovery_code", 2000)]);
        assert_eq!(judge(&s, &totp, 2010, 300), Fresh::Yes);
        let s = session(2000, &[("password", 2000), ("totp", 2005)]);
        assert_eq!(judge(&s, &totp, 2010, 300), Fresh::Yes);
        assert_eq!(judge(&s, &totp, 2306, 300), Fresh::StepUp);
    }
}
