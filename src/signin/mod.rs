//! The sign-in core: what happens when a browser works through an app's sign-in steps,
//! with no HTTP in sight. A shell (the HTTP handlers in `web`, the fixture runner of
//! `usher test`) parses its input, calls these functions with a [`Ctx`] (the config,
//! the store and the request's time), and turns the answer into a page, a redirect or a
//! verdict. Both shells run the very same completion, sign-up and step logic, so a
//! fixture that passes proves what the server does.
//!
//! What stays with the shell is what cannot be the same offline: checking a secret
//! against Argon2 (the server does it on the blocking pool, a fixture reads a
//! `valid`/`invalid` marker), the round trip to an upstream provider, sending mail, and
//! making writes durable before a response leaves.

pub mod codes;
mod complete;
pub mod federation;
mod flows;
mod next;
pub mod password;
pub mod reset;
mod signup;
pub mod unlock;

pub use complete::{complete, redirect_error, Completed};
pub use flows::{live_session, load, save, session_view, start, LiveSession, Starter};
pub use next::{decide, prepare, resolve, AtStep, Prepared, Shown};
pub use signup::{
    hold_sign_up, plausible_email, resend_sign_up_code, sign_up, sign_up_problems, verify_sign_up,
    SignUpCode, SignedUp, Verified,
};

pub use crate::context::Ctx;
use crate::flow::Flow;
use crate::store::StoreError;

/// Why a core call could not give an answer at all.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A broken invariant (a completed flow without a subject, a registered redirect
    /// URI that no longer parses); the user sees a generic error.
    #[error("{0}")]
    Internal(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

/// The user chose `option` at the step offering `options`; the next page is that
/// option's. An option the step does not offer is ignored (a stale page).
pub fn pick(flow: &mut Flow, options: &[crate::config::StepOption], option: &str) {
    if options.iter().any(|o| o.name() == option) {
        flow.pick(option);
    }
}

/// The user gave up on step `step` (the cancel button, or declining consent): it fails
/// for good, and the app hears `access_denied` unless the script's `on_fail` offers
/// another way.
pub fn cancel(ctx: Ctx<'_>, flow: &mut Flow, step: usize) {
    let option = flow
        .picked()
        .map(String::from)
        .unwrap_or_else(|| "-".into());
    flow.federation = None;
    flow.upstream = None;
    flow.step_failed(step, &option, "the user cancelled", ctx.now);
}

/// Write a sign-in's outcome and trace into the audit trail. A failure to write is
/// logged, never allowed to turn a refused sign-in into an error. (A successful one's
/// events are written with its code, and fail with it: no code leaves without its
/// trail.)
pub async fn audit(ctx: Ctx<'_>, flow: &Flow, outcome: &str) {
    let event = audit_event(ctx, flow, outcome);
    if let Err(e) = ctx.store.append_event(&event).await {
        tracing::error!(error = %e, "could not write the audit event");
    }
}

/// A sign-in's outcome and trace as an audit event.
fn audit_event(ctx: Ctx<'_>, flow: &Flow, outcome: &str) -> crate::store::AuditEvent {
    let mut detail = flow.trace().to_vec();
    detail.extend(flow.script_log.iter().map(|l| format!("script: {l}")));
    if !flow.ip.is_empty() {
        // The client address as decided once for the request that started the sign-in
        // (a trusted proxy's header, else the peer).
        detail.push(format!("from {}", flow.ip));
    }
    let event = crate::audit::bounded(crate::store::AuditEvent {
        id: crate::audit::event_id(ctx.now),
        at: ctx.now,
        kind: "sign_in".into(),
        app: Some(flow.request.app_id.clone()),
        sub: flow.subject().map(|s| s.sub.clone()),
        outcome: outcome.to_string(),
        detail,
    });
    tracing::debug!(flow = %flow.id, outcome, trace = ?event.detail, "sign-in trace");
    event
}

#[cfg(test)]
mod tests;
