//! Step-up: a request whose `acr_values` carries [`SECOND_FACTOR_ACR`] is not complete
//! until the user has passed one of the account's own second factors in this very
//! sign-in — the SSO session's earlier pass does not count. The app's policy runs
//! first, as always; when it is satisfied and no second factor was passed, one more
//! step follows (numbered after the app's last) offering the account's factors. An
//! account with no second factor has nothing to add: `max_age` alone keeps its sign-in
//! recent.
//!
//! My Account asks for this before a credential changes; any app may ask for it too.

use super::{Flow, Next};
use crate::config::{App, StepOption};
use crate::oidc::{ErrorCode, OAuthError};

/// The `acr_values` entry that asks for a fresh pass of the account's second factor.
pub const SECOND_FACTOR_ACR: &str = "urn:usher:second-factor";

/// Whether the request asks for a fresh second factor.
pub fn asked(flow: &Flow) -> bool {
    flow.request
        .acr_values
        .iter()
        .any(|v| v == SECOND_FACTOR_ACR)
}

/// The options of the step-up step for the flow's subject: its second factors.
fn options(flow: &Flow) -> Vec<StepOption> {
    let Some(subject) = flow.subject().filter(|s| s.has_account()) else {
        return Vec::new();
    };
    subject
        .factors
        .iter()
        .filter_map(|f| match f.as_str() {
            "totp" => Some(StepOption::Totp),
            "recovery_code" => Some(StepOption::RecoveryCode),
            "email_otp" => Some(StepOption::EmailOtp),
            _ => None,
        })
        .collect()
}

/// Whether the user passed one of `options` in this sign-in (not through the session).
fn passed(flow: &Flow, options: &[StepOption]) -> bool {
    flow.done()
        .iter()
        .any(|r| !r.from_session && options.iter().any(|o| o.name() == r.option))
}

/// After the app's policy is satisfied: the step-up step still to show, if any.
pub fn after_policy(flow: &mut Flow, app: &App) -> Option<Next> {
    if !asked(flow) {
        return None;
    }
    let options = options(flow);
    if options.is_empty() || passed(flow, &options) {
        return None;
    }
    if flow.request.prompt_none() {
        flow.log("a second factor was asked (acr_values) but prompt=none was asked");
        return Some(Next::Fail(OAuthError::new(
            ErrorCode::LoginRequired,
            "the user must pass a second factor",
        )));
    }
    let step = app.sign_in.steps.len() + 1;
    super::run::push_once(
        flow,
        format!("step {step}: the request asks for a second factor ({SECOND_FACTOR_ACR})"),
    );
    super::run::note_offered(flow, step, &options);
    Some(Next::Show { step, options })
}
