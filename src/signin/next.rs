//! What a sign-in shows next. Before the app's policy is replayed, a sign-in may be
//! waiting on something of its own (recovery codes to show once, provisioning's
//! question); otherwise the interpreter decides ([`decide`], which the shell runs on the
//! blocking pool when a script is involved) and [`resolve`] turns its decision into what
//! the browser sees: a step with the options the subject can use, the MFA conflict, a
//! failure for the app, a broken script, or completion.

use std::sync::Arc;

use url::Url;

use super::{audit, redirect_error, CoreResult, Ctx};
use crate::authn::steps;
use crate::config::{App, StepOption};
use crate::flow::{self, Flow, Next, SessionView};
use crate::oidc::OAuthError;

/// What the browser sees next.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// Recovery codes just issued, shown once before anything else.
    RecoveryCodes,
    /// Provisioning waits for the user's answer (consent, a username, a password proof).
    Provisioning,
    /// A step to show.
    Step(AtStep),
    /// Every option of step `step` keeps a credential on an account and the subject has
    /// none (the MFA conflict). The trace names the two fixes; the app hears `error` at
    /// `back`; the flow is gone.
    NeedsAccount {
        step: usize,
        error: OAuthError,
        back: Url,
    },
    /// The sign-in ended with `error`, which the app hears at `redirect`; the flow is
    /// gone.
    Failed { error: OAuthError, redirect: Url },
    /// The app's script broke (the message names its line); the flow is gone.
    ScriptFailed { message: String },
    /// Every step is satisfied: [`super::complete`] issues the code.
    Complete,
}

/// Step `step` (1-based) with the options the subject can use; `chosen` is the option
/// whose page to show (the one picked, or the only one), `None` for the chooser.
#[derive(Debug, Clone, PartialEq)]
pub struct AtStep {
    pub step: usize,
    pub options: Vec<StepOption>,
    pub chosen: Option<StepOption>,
}

/// Where a flow stands before its policy is replayed.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// The app was removed from the config while signing in; the flow is gone.
    AppGone,
    /// The flow waits on something of its own: show it.
    Waiting(Arc<App>, Shown),
    /// Replay the app's policy ([`decide`]).
    Decide(Arc<App>),
}

/// Where the flow stands: its app, and whether it waits on something before its policy
/// is replayed.
pub async fn prepare(ctx: Ctx<'_>, flow: &Flow) -> CoreResult<Prepared> {
    let Some(app) = ctx.config.apps.get(&flow.request.app_id).cloned() else {
        ctx.store.delete_flow(&flow.id).await?;
        return Ok(Prepared::AppGone);
    };
    Ok(if !flow.pending_codes.is_empty() {
        Prepared::Waiting(app, Shown::RecoveryCodes)
    } else if flow.federation.is_some() {
        Prepared::Waiting(app, Shown::Provisioning)
    } else {
        Prepared::Decide(app)
    })
}

/// Replay the app's policy over the flow, recording what the browser's live SSO session
/// satisfies (`session`, from [`super::session_view`]). A config reload that changed the
/// app's steps restarts the flow first. Microseconds for a replay; a script that hits
/// its operation limit takes milliseconds, which is why the server runs this on the
/// blocking pool when the app has a script (it needs no store, only the flow).
pub fn decide(flow: &mut Flow, app: &App, session: Option<&SessionView>, now: u64) -> Next {
    if flow.steps_fingerprint != flow::steps_fingerprint(app) {
        flow.restart(app);
    }
    flow::next(flow, app, session, now)
}

/// Turn the interpreter's decision into what the browser sees. An ending (a failure, a
/// broken script, the MFA conflict) is audited and the flow deleted here.
pub async fn resolve(ctx: Ctx<'_>, flow: &mut Flow, next: Next) -> CoreResult<Shown> {
    Ok(match next {
        Next::Show { step, options } => {
            let usable = flow::usable_options(&options, flow.subject());
            if usable.is_empty() {
                let error = steps::mfa_conflict(flow, step);
                audit(ctx, flow, "access_denied: second factor without an account").await;
                ctx.store.delete_flow(&flow.id).await?;
                let back = redirect_error(ctx, flow, &error)?;
                return Ok(Shown::NeedsAccount { step, error, back });
            }
            let chosen = match (flow.picked(), usable.as_slice()) {
                (Some(p), _) => usable.iter().find(|o| o.name() == p).cloned(),
                (None, [only]) => Some(only.clone()),
                _ => None,
            };
            Shown::Step(AtStep {
                step,
                options: usable,
                chosen,
            })
        }
        Next::Fail(error) => {
            audit(ctx, flow, &error.to_string()).await;
            ctx.store.delete_flow(&flow.id).await?;
            let redirect = redirect_error(ctx, flow, &error)?;
            Shown::Failed { error, redirect }
        }
        Next::ScriptError(message) => {
            audit(ctx, flow, &format!("script_error: {message}")).await;
            ctx.store.delete_flow(&flow.id).await?;
            Shown::ScriptFailed { message }
        }
        Next::Complete => Shown::Complete,
    })
}
