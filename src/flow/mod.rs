//! The flow interpreter: given a login's record and the app's steps, what happens next.
//!
//! Pure logic: no HTTP, no store, no clock (callers pass `now`). The web layer and the
//! fixture runner drive the same code. A flow records each step as it is satisfied
//! (by the user now, or by the browser's SSO session); [`next`] walks the app's steps in
//! order and stops at the first one not yet satisfied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{App, StepOption};
use crate::oidc::authorize::AuthRequest;
use crate::oidc::OAuthError;
use crate::store::Session;

/// Who the login is about, once a step has identified them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subject {
    /// `sub` for the tokens.
    pub sub: String,
    /// The local account, when there is one.
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    /// `local` or a connection id.
    pub idp: String,
}

/// A satisfied step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// 1-based step number.
    pub step: usize,
    /// The option that satisfied it (`password`, `google`, …).
    pub option: String,
    pub subject: Subject,
    /// Methods used (`pwd`, `otp`, …).
    pub amr: Vec<String>,
    pub at: u64,
    /// True when the SSO session satisfied it and the user did nothing.
    pub from_session: bool,
}

/// One login in progress. Serialized into the store between requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flow {
    pub id: String,
    pub request: AuthRequest,
    /// Fingerprint of the app's steps when the flow started; a reload that changes them
    /// restarts the flow rather than mixing two configurations.
    pub steps_fingerprint: u64,
    /// Hash of the browser cookie the flow is bound to.
    pub browser: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub done: Vec<StepRecord>,
    /// The option the user picked in the current step, if any.
    pub picked: Option<String>,
    /// A message for the next page (a failed attempt), shown once.
    pub notice: Option<String>,
    /// The last login name typed, to prefill the form.
    pub last_login: Option<String>,
    /// Why things happened, for the audit record and fixture failures.
    pub trace: Vec<String>,
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Show step `step` (1-based) offering `options`.
    Show {
        step: usize,
        options: Vec<StepOption>,
    },
    /// Every step is satisfied: issue the code.
    Complete,
    /// The login ends with this error to the app.
    Fail(OAuthError),
}

/// A stable fingerprint of an app's steps (FNV-1a over the option names).
pub fn steps_fingerprint(app: &App) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, step) in app.sign_in.steps.iter().enumerate() {
        for byte in format!("{i}:{}:", step.force).bytes().chain(
            step.options
                .iter()
                .flat_map(|o| o.name().bytes().chain([b','])),
        ) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Flow {
    pub fn new(
        id: String,
        request: AuthRequest,
        app: &App,
        browser: String,
        now: u64,
        ttl: u64,
    ) -> Flow {
        Flow {
            id,
            request,
            steps_fingerprint: steps_fingerprint(app),
            browser,
            created_at: now,
            expires_at: now + ttl,
            done: Vec::new(),
            picked: None,
            notice: None,
            last_login: None,
            trace: Vec::new(),
        }
    }

    /// The subject identified so far (by the first identifying step).
    pub fn subject(&self) -> Option<&Subject> {
        self.done.first().map(|r| &r.subject)
    }

    /// Whether the user actively did any step in this flow (sets `auth_time`).
    pub fn interactive(&self) -> bool {
        self.done.iter().any(|r| !r.from_session)
    }

    /// The `amr` of the whole login: each method once, plus `mfa` for two or more.
    pub fn amr(&self) -> Vec<String> {
        let mut amr: Vec<String> = Vec::new();
        for r in &self.done {
            for m in &r.amr {
                if !amr.contains(m) {
                    amr.push(m.clone());
                }
            }
        }
        if self.done.len() >= 2 && !amr.iter().any(|m| m == "mfa") {
            amr.push("mfa".into());
        }
        amr
    }

    /// Restart from step 1 (a config reload changed the app's steps).
    pub fn restart(&mut self, app: &App) {
        self.done.clear();
        self.picked = None;
        self.steps_fingerprint = steps_fingerprint(app);
        self.trace
            .push("the app's steps changed while signing in; starting again".into());
    }

    /// Record that the current step succeeded with `option` for `subject`.
    /// A later step must be about the same person as the first.
    pub fn step_succeeded(
        &mut self,
        step: usize,
        option: &StepOption,
        subject: Subject,
        amr: Vec<String>,
        now: u64,
    ) -> Result<(), OAuthError> {
        if let Some(first) = self.subject() {
            if first.sub != subject.sub {
                self.trace.push(format!(
                    "step {step}: {} identified a different person than step 1; refused",
                    option.name()
                ));
                return Err(OAuthError::access_denied(
                    "a later step identified a different user",
                ));
            }
        }
        self.trace.push(format!(
            "step {step}: {} succeeded for {}",
            option.name(),
            subject.sub
        ));
        self.done.push(StepRecord {
            step,
            option: option.name().to_string(),
            subject,
            amr,
            at: now,
            from_session: false,
        });
        self.picked = None;
        self.notice = None;
        Ok(())
    }
}

/// Whether the SSO session may stand in for the user on this request at all.
fn session_usable(flow: &Flow, session: Option<&Session>, now: u64) -> bool {
    let Some(s) = session else { return false };
    if s.expires_at <= now || flow.request.prompt_login() {
        return false;
    }
    match flow.request.max_age {
        Some(max) => now.saturating_sub(s.auth_time) <= max,
        None => true,
    }
}

/// Decide what happens next. May record steps the session satisfies.
pub fn next(flow: &mut Flow, app: &App, session: Option<&Session>, now: u64) -> Next {
    let use_session = session_usable(flow, session, now);
    for (i, step) in app.sign_in.steps.iter().enumerate() {
        let n = i + 1;
        if flow.done.iter().any(|r| r.step == n) {
            continue;
        }
        if use_session && !step.force {
            if let Some(s) = session {
                let satisfied = step
                    .options
                    .iter()
                    .find(|o| s.satisfied.contains_key(o.name()));
                if let Some(option) = satisfied {
                    let subject = Subject {
                        sub: s.sub.clone(),
                        user_id: s.user_id.clone(),
                        username: None,
                        email: None,
                        idp: "session".into(),
                    };
                    let same = flow.subject().map(|f| f.sub == s.sub).unwrap_or(true);
                    if same {
                        flow.trace.push(format!(
                            "step {n}: satisfied by the SSO session ({})",
                            option.name()
                        ));
                        flow.done.push(StepRecord {
                            step: n,
                            option: option.name().to_string(),
                            subject,
                            amr: session_amr(option),
                            at: now,
                            from_session: true,
                        });
                        continue;
                    }
                }
            }
        }
        if flow.request.prompt_none() {
            flow.trace
                .push(format!("step {n} needs the user but prompt=none was asked"));
            return Next::Fail(OAuthError::new(
                crate::oidc::ErrorCode::LoginRequired,
                "the user must sign in",
            ));
        }
        return Next::Show {
            step: n,
            options: step.options.clone(),
        };
    }
    Next::Complete
}

/// The `amr` an option contributes.
pub fn session_amr(option: &StepOption) -> Vec<String> {
    match option {
        StepOption::Password => vec!["pwd".into()],
        StepOption::Totp | StepOption::EmailOtp => vec!["otp".into()],
        StepOption::RecoveryCode => vec!["otp".into()],
        StepOption::Connection(_) => vec!["fed".into()],
    }
}

/// Options the user satisfied in this flow (not those the session already held), with
/// when, for merging into the SSO session.
pub fn satisfied_options(flow: &Flow) -> BTreeMap<String, u64> {
    flow.done
        .iter()
        .filter(|r| !r.from_session)
        .map(|r| (r.option.clone(), r.at))
        .collect()
}

#[cfg(test)]
mod tests;
