//! The password step: find the account, reserve an attempt against its lock, and record
//! what the check found. Between [`begin`] and [`finish`] the shell checks the password
//! (Argon2 on the blocking pool in the server; the fixture's `valid`/`invalid` marker or
//! declared password offline).

use super::{unlock, CoreResult, Ctx};
use crate::authn::attempts;
use crate::authn::steps::{self, PasswordAttempt};
use crate::config::StepOption;
use crate::flow::Flow;

/// What to do with a password form.
pub enum Begun {
    /// The flow's step does not offer a password (a stale form): nothing to check.
    NotOffered,
    /// A field was left empty or is over its cap (`crate::limits`); the flow carries
    /// the message, and nothing of an oversized value is kept.
    Incomplete,
    /// The account's attempts are locked: nothing is checked. The flow carries the
    /// message. A lock that only an administrator or the owner's email lifts offers the
    /// owner an unlock link, to mail (at most once a day).
    Locked { unlock: Option<unlock::UnlockMail> },
    /// Check the password against `attempt.user` and call [`finish`].
    Check(Box<PasswordAttempt>),
}

/// Start a password attempt at step `step` (offering `options`) for the name typed.
pub async fn begin(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    step: usize,
    options: &[StepOption],
    login: &str,
    presented: &str,
) -> CoreResult<Begun> {
    if !options.contains(&StepOption::Password) {
        return Ok(Begun::NotOffered);
    }
    let login = login.trim();
    // Before the account lookup, the attempt counter and the audit trail, which would
    // all keep the name, and before Argon2, whose work would grow with the password.
    let capped = crate::limits::check_len("username", login, crate::limits::USERNAME_MAX).and(
        crate::limits::check_bytes("password", presented, crate::limits::PASSWORD_MAX),
    );
    if let Err(too_long) = capped {
        flow.last_login = None;
        flow.pick("password");
        flow.tell(format!("The {too_long}."));
        return Ok(Begun::Incomplete);
    }
    if login.is_empty() || presented.is_empty() {
        flow.last_login = Some(login.to_string());
        flow.pick("password");
        flow.tell("Enter your username and password.");
        return Ok(Begun::Incomplete);
    }
    Ok(
        match steps::password_begin(ctx.store, ctx.config, flow, step, login, ctx.now).await? {
            Some(attempt) => Begun::Check(Box::new(attempt)),
            None => Begun::Locked {
                unlock: locked_for_good(ctx, login).await?,
            },
        },
    )
}

/// The unlock link to offer when the account behind `login` is locked for good.
async fn locked_for_good(ctx: Ctx<'_>, login: &str) -> CoreResult<Option<unlock::UnlockMail>> {
    let Some(user) = ctx.store.find_user(login).await? else {
        return Ok(None);
    };
    let standing = attempts::standing(ctx.store, &user.id, ctx.now).await?;
    let cap = attempts::Rules::of(ctx.config).cap;
    if standing.locked_until != u64::MAX && standing.failures < cap {
        return Ok(None);
    }
    Ok(unlock::offer(ctx, &user).await?)
}

/// Record the check's verdict (`ok` only for an existing account whose password
/// matched). A wrong password is audited and counts against the account; the shell
/// makes that durable, so a crash cannot hand back a counted attempt.
pub async fn finish(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    step: usize,
    login: &str,
    attempt: Box<PasswordAttempt>,
    ok: bool,
) -> CoreResult<()> {
    let user_id = attempt.user.as_ref().map(|u| u.id.clone());
    steps::password_end(ctx.store, ctx.config, flow, step, *attempt, ok, ctx.now).await?;
    if !ok {
        let what = format!("step {step}: wrong password for `{}`", login.trim());
        crate::audit::rejected(ctx.store, flow, user_id.as_deref(), &what, ctx.now).await;
    }
    Ok(())
}
