//! One replay of a flow's policy: the record it replays over, the decisions it reaches,
//! and the one operation both the built-in order and scripts use — resolve step `n`.
//!
//! A `Run` owns copies of what it needs so the script engine can hold it while the
//! script runs; [`Run::apply`] writes what the run learned back into the flow.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{option_amr, usable_options, Flow, Next, StepFailure, StepRecord, Subject};
use crate::config::{App, Step, StepOption};
use crate::oidc::{ErrorCode, OAuthError};

/// The SSO session as the interpreter sees it: who, when, and what it satisfied.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub subject: Subject,
    pub auth_time: u64,
    pub expires_at: u64,
    /// Option name → when it was satisfied.
    pub satisfied: BTreeMap<String, u64>,
}

/// Why a run stopped before the policy was satisfied.
#[derive(Debug, Clone, PartialEq)]
pub enum Halt {
    Show {
        step: usize,
        options: Vec<StepOption>,
    },
    Fail(OAuthError),
}

/// How step `n` stands in the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Done(Box<StepRecord>),
    Failed(StepFailure),
}

pub struct Run {
    pub steps: Vec<Step>,
    pub done: Vec<StepRecord>,
    pub failed: Vec<StepFailure>,
    /// The session, only when it may stand in for the user on this request.
    pub session: Option<SessionView>,
    pub prompt_none: bool,
    pub now: u64,
    /// Records the session satisfied during this run.
    pub from_session: Vec<StepRecord>,
    /// Script effects of this run.
    pub claims: BTreeMap<String, Value>,
    pub log: Vec<String>,
}

impl Run {
    pub fn new(flow: &Flow, app: &App, session: Option<&SessionView>, now: u64) -> Run {
        let usable = session.filter(|s| {
            s.expires_at > now
                && !flow.request.prompt_login()
                && flow
                    .request
                    .max_age
                    .map(|max| now.saturating_sub(s.auth_time) <= max)
                    .unwrap_or(true)
        });
        Run {
            steps: app.sign_in.steps.clone(),
            done: flow.done.clone(),
            failed: flow.failed.clone(),
            session: usable.cloned(),
            prompt_none: flow.request.prompt_none(),
            now,
            from_session: Vec::new(),
            claims: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    pub fn subject(&self) -> Option<&Subject> {
        self.done.first().map(|r| &r.subject)
    }

    /// Resolve step `n` (1-based), optionally narrowed to some of its options: its
    /// record if it has one, else the session's satisfaction of it, else a halt that
    /// shows it (or, under `prompt=none`, fails with `login_required`).
    pub fn execute(&mut self, n: usize, narrowed: Option<&[StepOption]>) -> Result<Resolved, Halt> {
        let Some(step) = self.steps.get(n.wrapping_sub(1)).cloned() else {
            return Err(Halt::Fail(OAuthError::new(
                ErrorCode::ServerError,
                format!("the sign-in policy asked for step {n}, which the app does not have"),
            )));
        };
        let options: Vec<StepOption> = match narrowed {
            Some(only) => step
                .options
                .iter()
                .filter(|o| only.contains(o))
                .cloned()
                .collect(),
            None => step.options.clone(),
        };
        if let Some(r) = self.done.iter().find(|r| r.step == n) {
            return Ok(Resolved::Done(Box::new(r.clone())));
        }
        if let Some(f) = self.failed.iter().find(|f| f.step == n) {
            return Ok(Resolved::Failed(f.clone()));
        }
        if let Some(record) = self.satisfied_by_session(n, &step, &options) {
            self.done.push(record.clone());
            self.from_session.push(record.clone());
            return Ok(Resolved::Done(Box::new(record)));
        }
        if self.prompt_none {
            self.log
                .push(format!("step {n} needs the user but prompt=none was asked"));
            return Err(Halt::Fail(OAuthError::new(
                ErrorCode::LoginRequired,
                "the user must sign in",
            )));
        }
        Err(Halt::Show { step: n, options })
    }

    fn satisfied_by_session(
        &self,
        n: usize,
        step: &Step,
        options: &[StepOption],
    ) -> Option<StepRecord> {
        let s = self.session.as_ref()?;
        if step.force {
            return None;
        }
        if let Some(first) = self.subject() {
            if first.sub != s.subject.sub {
                return None;
            }
        }
        let option = options
            .iter()
            .find(|o| s.satisfied.contains_key(o.name()))?;
        Some(StepRecord {
            step: n,
            option: option.name().to_string(),
            subject: s.subject.clone(),
            amr: option_amr(option),
            at: s
                .satisfied
                .get(option.name())
                .copied()
                .unwrap_or(s.auth_time),
            from_session: true,
        })
    }

    /// The built-in policy: every step, in order.
    pub fn in_order(mut self) -> (Run, Result<(), RunError>) {
        for n in 1..=self.steps.len() {
            match self.execute(n, None) {
                Ok(Resolved::Done(_)) => {}
                Ok(Resolved::Failed(f)) => {
                    let e = OAuthError::access_denied(format!("step {n} failed: {}", f.reason));
                    return (self, Err(Halt::Fail(e).into()));
                }
                Err(halt) => return (self, Err(halt.into())),
            }
        }
        (self, Ok(()))
    }

    /// Write what the run learned into the flow and turn its outcome into a [`Next`].
    pub fn apply(self, flow: &mut Flow, outcome: Result<(), RunError>) -> Next {
        for r in &self.from_session {
            flow.trace.push(format!(
                "step {}: satisfied by the SSO session ({})",
                r.step, r.option
            ));
        }
        flow.done.extend(self.from_session);
        flow.claims = self.claims;
        flow.script_log = self.log;
        match outcome {
            Ok(()) if flow.done.is_empty() => {
                flow.trace
                    .push("the policy finished without any step identifying the user".into());
                Next::Fail(OAuthError::access_denied(
                    "the sign-in policy finished without identifying the user",
                ))
            }
            Ok(()) => Next::Complete,
            Err(RunError::Halt(Halt::Show { step, options })) => {
                note_offered(flow, step, &options);
                Next::Show { step, options }
            }
            Err(RunError::Halt(Halt::Fail(e))) => {
                flow.trace.push(format!("the login fails: {e}"));
                Next::Fail(e)
            }
            Err(RunError::Script(message)) => {
                flow.trace.push(format!("script error: {message}"));
                Next::ScriptError(message)
            }
        }
    }
}

/// Trace the step about to be shown with the options the user will see (those the
/// subject can use). Once per flow: showing the same page again after a wrong password
/// adds nothing. With no usable option the MFA conflict's own line says why.
pub(super) fn note_offered(flow: &mut Flow, step: usize, options: &[StepOption]) {
    let usable = usable_options(options, flow.subject());
    if usable.is_empty() {
        return;
    }
    let names: Vec<&str> = usable.iter().map(StepOption::name).collect();
    push_once(flow, format!("step {step} offered: {}", names.join(", ")));
}

/// Add a trace line unless the flow already has it: the policy is replayed on every
/// request, and the trace should tell what happened, not how often it was replayed.
pub(super) fn push_once(flow: &mut Flow, line: String) {
    if !flow.trace.contains(&line) {
        flow.trace.push(line);
    }
}

/// How a run can end early.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    Halt(Halt),
    /// The script broke; the message names its line.
    Script(String),
}

impl From<Halt> for RunError {
    fn from(h: Halt) -> Self {
        RunError::Halt(h)
    }
}
