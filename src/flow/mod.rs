//! The flow interpreter: given a login's record and the app's steps (and script), what
//! happens next.
//!
//! Pure logic: no HTTP, no store, no clock (callers pass `now`). The web layer and the
//! fixture runner drive the same code. A flow records each step as it is satisfied (by
//! the user now, or by the browser's SSO session) or fails; [`next`] replays the app's
//! policy over that record — the steps in order, or the app's Rhai script from the top —
//! and says what to do: show a step, complete, or fail.

mod run;
pub mod step_up;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{App, StepOption};
use crate::oidc::authorize::AuthRequest;
use crate::oidc::OAuthError;
pub use run::{Halt, Resolved, Run, RunError, SessionView};

/// Who a step identified.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Subject {
    /// `sub` for the tokens.
    pub sub: String,
    /// The local account, when there is one.
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    /// `local`, or the id of the connection that identified them.
    pub idp: String,
    /// Upstream (mapped) claims of a federated subject.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Value>,
    /// Second factors the account has enrolled (`totp`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enrolled: Vec<String>,
    /// The second factors that prove the account's owner (option names, the strongest
    /// kind only; see `authn::steps::factors`): what a step-up asks for, and what must
    /// be passed before a new authenticator is enrolled. Empty: none at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub factors: Vec<String>,
    /// The account's roles: its own, then those its groups give it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The display names of the groups the account is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// What the upstream of a federated step asserted at this sign-in (`claims: {
    /// groups, roles }`), included in `groups` and `roles` above: the SSO session keeps
    /// it, so a later sign-in the session satisfies sees the same names, and an admin's
    /// change to the account's own groups still shows at once.
    #[serde(default, skip_serializing_if = "Asserted::is_empty")]
    pub asserted: Asserted,
    /// The account's other live single sign-on sessions when the step completed, for
    /// scripts (`ctx.user.sessions`); recorded with the step so replays agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<OtherSession>,
    /// What the upstream provider says it did (its `amr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_amr: Vec<String>,
}

/// One of an account's live single sign-on sessions, as a script sees it. Times are
/// seconds since 1970.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct OtherSession {
    /// The apps (client ids) it signed in to.
    pub apps: Vec<String>,
    /// `local`, or the connection that identified the user.
    pub idp: String,
    pub started_at: u64,
    /// When its user last actively authenticated.
    pub auth_time: u64,
    pub expires_at: u64,
}

impl Subject {
    pub fn is_federated(&self) -> bool {
        self.idp != "local"
    }

    pub fn has_account(&self) -> bool {
        self.user_id.is_some()
    }
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
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_session: bool,
}

/// A step that failed for good (attempts exhausted, upstream denied, user cancelled).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepFailure {
    pub step: usize,
    pub option: String,
    pub reason: String,
    pub at: u64,
}

/// Group and role names an upstream asserted at a sign-in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Asserted {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Asserted {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.roles.is_empty()
    }

    /// Add these names to a subject's groups and roles, each once (names compare
    /// case-insensitively, as group names do).
    pub fn add_to(&self, groups: &mut Vec<String>, roles: &mut Vec<String>) {
        for (names, list) in [(&self.groups, groups), (&self.roles, roles)] {
            for name in names {
                if !list.iter().any(|g| g.eq_ignore_ascii_case(name)) {
                    list.push(name.clone());
                }
            }
        }
    }
}

/// One login in progress. Serialized into the store between requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flow {
    pub id: String,
    pub request: AuthRequest,
    /// The client's address and user agent when the flow began (for scripts).
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub user_agent: String,
    /// The request headers the app's `sign_in.request_headers` lets its script see,
    /// lower-case name → value, from the request that started the flow.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Fingerprint of the app's steps and script when the flow started; a reload that
    /// changes them restarts the flow rather than mixing two configurations.
    pub steps_fingerprint: u64,
    /// Hash of the browser cookie the flow is bound to.
    pub browser: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// Made in this request and not written to the store yet ([`Flow::new`] sets it,
    /// saving clears it; a flow read back never has it): finishing such a sign-in has
    /// no stored flow to delete, so a silent SSO sign-in saves the round trip.
    #[serde(skip)]
    pub unsaved: bool,
    /// Steps satisfied so far, in order: written only by [`Flow::step_succeeded`] and
    /// the interpreter (steps the SSO session satisfies).
    done: Vec<StepRecord>,
    /// Steps that failed for good: written only by [`Flow::step_failed`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failed: Vec<StepFailure>,
    /// The option the user picked in the current step, if any.
    picked: Option<String>,
    /// A message for the next page (a failed attempt), shown once.
    notice: Option<String>,
    /// The last login name typed, to prefill the form.
    pub last_login: Option<String>,
    /// Wrong passwords in this login; the step fails for good at the limit.
    #[serde(default)]
    pub password_failures: u32,
    /// Whether this login already mailed an email-OTP code (sent once, on first show).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_sent: bool,
    /// Recovery codes just generated at TOTP enrolment, shown once before the login
    /// goes on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_codes: Vec<String>,
    /// An upstream round trip in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::upstream::Pending>,
    /// Provisioning waiting for the user (consent, a username, proof for linking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<crate::provision::PendingFederation>,
    /// What a recording server keeps of this sign-in, to write it as a fixture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<crate::fixtures::record::Recording>,
    /// A password reset asked for in this sign-in (`signin::reset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<PendingReset>,
    /// A sign-up waiting for its email address to be verified (`signin::sign_up`): the
    /// account is created only once the code mailed to the address comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_up: Option<PendingSignUp>,
    /// A fingerprint of the password hash the user typed a match for in this sign-in
    /// ([`password_fingerprint`]): when the account's password changes (a reset, My
    /// Account), a sign-in still under way with the old one is void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_seen: Option<String>,
    /// The account's email address was proven in this sign-in (the code mailed at
    /// sign-up came back): as good as passing its email-code factor here, so the new
    /// account may set up an authenticator in the same sign-in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mailbox_proven: bool,
    /// Claims the script set in its latest run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Value>,
    /// Why things happened: events, and the latest script run's `log` lines. Append-only
    /// ([`Flow::log`]).
    trace: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script_log: Vec<String>,
}

/// A password reset in progress: a code was (or, for a name without an account, seemed
/// to be) mailed, and the flow waits for it with a new password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct PendingReset {
    /// The account the code was mailed for; `None` when the name typed matched no
    /// enabled account with a password and a verified address. The pages look the same
    /// either way.
    pub user_id: Option<String>,
}

/// A sign-up held until its email address is verified. Nothing is claimed meanwhile: the
/// address stays free for anyone who proves it first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingSignUp {
    /// The step the new account satisfies.
    pub step: usize,
    pub email: String,
    /// The Argon2id hash of the chosen password (its `Debug` is redacted).
    pub password_hash: crate::store::PasswordHash,
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Show step `step` (1-based) offering `options`.
    Show {
        step: usize,
        options: Vec<StepOption>,
    },
    /// The policy is satisfied: issue the code.
    Complete,
    /// The login ends with this error to the app.
    Fail(OAuthError),
    /// The script broke (a limit, a thrown error): this login fails with a page; the
    /// message names the script line.
    ScriptError(String),
}

/// A stable fingerprint of an app's sign-in policy (FNV-1a over the option names, the
/// force flags and the script source).
pub fn steps_fingerprint(app: &App) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (i, step) in app.sign_in.steps.iter().enumerate() {
        eat(format!("{i}:{}:", step.force).as_bytes());
        for o in &step.options {
            eat(o.name().as_bytes());
            eat(b",");
        }
    }
    if let Some(s) = &app.sign_in.script {
        eat(s.source.as_bytes());
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
            ip: String::new(),
            user_agent: String::new(),
            headers: BTreeMap::new(),
            steps_fingerprint: steps_fingerprint(app),
            browser,
            created_at: now,
            expires_at: now + ttl,
            unsaved: true,
            done: Vec::new(),
            failed: Vec::new(),
            picked: None,
            notice: None,
            last_login: None,
            password_failures: 0,
            email_sent: false,
            pending_codes: Vec::new(),
            upstream: None,
            federation: None,
            recording: None,
            reset: None,
            sign_up: None,
            mailbox_proven: false,
            password_seen: None,
            claims: BTreeMap::new(),
            trace: Vec::new(),
            script_log: Vec::new(),
        }
    }

    /// The steps satisfied so far, in order.
    pub fn done(&self) -> &[StepRecord] {
        &self.done
    }

    /// The steps that failed for good.
    pub fn failed(&self) -> &[StepFailure] {
        &self.failed
    }

    /// Record a step the browser's SSO session satisfied (the user did nothing).
    pub fn satisfied_by_session(&mut self, record: StepRecord) {
        self.done.push(StepRecord {
            from_session: true,
            ..record
        });
    }

    /// The option the user picked in the current step.
    pub fn picked(&self) -> Option<&str> {
        self.picked.as_deref()
    }

    /// The user picked `option` in the current step; the next page is its page, without
    /// an earlier message.
    pub fn pick(&mut self, option: &str) {
        self.picked = Some(option.to_string());
        self.notice = None;
    }

    /// Back to the step's chooser.
    pub fn unpick(&mut self) {
        self.picked = None;
        self.notice = None;
    }

    /// Leave a message for the next page (a refused attempt, a lock).
    pub fn tell(&mut self, message: impl Into<String>) {
        self.notice = Some(message.into());
    }

    /// The message for the next page, if any.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Take the message to show it (it is shown once).
    pub fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    /// Add a line to the trace ("why did this user skip MFA?").
    pub fn log(&mut self, line: impl Into<String>) {
        self.trace.push(line.into());
    }

    /// The trace so far.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// The subject identified so far (by the first identifying step).
    pub fn subject(&self) -> Option<&Subject> {
        self.done.first().map(|r| &r.subject)
    }

    /// Whether the user actively did any step in this flow (sets `auth_time`).
    pub fn interactive(&self) -> bool {
        self.done.iter().any(|r| !r.from_session)
    }

    /// The `amr` of the whole login: each method once, plus `mfa` when two or more
    /// distinct factors were used. A federated step whose upstream methods are trusted
    /// counts as those methods, not as one more factor on top of them: an upstream
    /// password alone is one factor.
    pub fn amr(&self) -> Vec<String> {
        let mut amr: Vec<String> = Vec::new();
        let mut factors: Vec<&str> = Vec::new();
        for r in &self.done {
            let explained = r.amr.iter().any(|m| m != "fed" && m != "mfa");
            for m in &r.amr {
                if !amr.contains(m) {
                    amr.push(m.clone());
                }
                let counts = m != "mfa" && !(m == "fed" && explained);
                if counts && !factors.contains(&m.as_str()) {
                    factors.push(m);
                }
            }
        }
        if factors.len() >= 2 && !amr.iter().any(|m| m == "mfa") {
            amr.push("mfa".into());
        }
        amr
    }

    /// Claims fixed at sign-in for the tokens: a pass-through subject's upstream claims,
    /// then whatever the script set (which wins). A pass-through subject's `groups` and
    /// `roles` are the checked, capped lists provisioning kept, not the upstream's raw
    /// claims; tokens release them only through the app's `groups_claim` and
    /// `roles_claim` (`oidc::claims::membership_claims`).
    pub fn token_claims(&self) -> BTreeMap<String, Value> {
        let mut claims = match self.subject() {
            Some(s) if !s.has_account() => {
                let mut claims = s.claims.clone();
                for (name, list) in [("groups", &s.groups), ("roles", &s.roles)] {
                    claims.remove(name);
                    if !list.is_empty() {
                        claims.insert(name.to_string(), Value::from(list.clone()));
                    }
                }
                claims
            }
            _ => BTreeMap::new(),
        };
        claims.extend(self.claims.clone());
        claims
    }

    /// Restart from the beginning (a config reload changed the app's policy).
    pub fn restart(&mut self, app: &App) {
        self.done.clear();
        self.failed.clear();
        self.picked = None;
        self.claims.clear();
        self.script_log.clear();
        self.steps_fingerprint = steps_fingerprint(app);
        self.trace
            .push("the app's sign-in policy changed while signing in; starting again".into());
    }

    /// Record that step `step` succeeded with `option` for `subject`.
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
                    "step {step}: {} identified a different person than the first step; refused",
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

    /// Record that step `step` failed for good. The next [`next`] ends the login with
    /// `access_denied`, unless the script's `on_fail` takes over.
    pub fn step_failed(&mut self, step: usize, option: &str, reason: &str, now: u64) {
        self.trace
            .push(format!("step {step}: {option} failed: {reason}"));
        self.failed.push(StepFailure {
            step,
            option: option.to_string(),
            reason: reason.to_string(),
            at: now,
        });
        self.picked = None;
        self.notice = None;
    }
}

/// Decide what happens next, replaying the app's policy over the flow's record.
/// Steps the SSO session satisfies along the way are recorded into the flow.
pub fn next(flow: &mut Flow, app: &App, session: Option<&SessionView>, now: u64) -> Next {
    let run = Run::new(flow, app, session, now);
    let (run, outcome) = match &app.sign_in.script {
        Some(script) => crate::policy::run(&script.compiled, run, app, flow),
        None => run.in_order(),
    };
    let decided = run.apply(flow, outcome);
    if decided != Next::Complete {
        return decided;
    }
    if let Some(more) = step_up::after_policy(flow, app) {
        return more;
    }
    if app.sign_in.script.is_some() {
        note_skipped(flow, app);
    }
    decided
}

/// Trace each configured step a completed flow never ran, so "why did this user skip
/// MFA?" has its answer next to the script's `log` lines. Only a script can leave a step
/// out; without one every step is resolved in order.
fn note_skipped(flow: &mut Flow, app: &App) {
    for n in 1..=app.sign_in.steps.len() {
        let ran = flow.done.iter().any(|r| r.step == n) || flow.failed.iter().any(|f| f.step == n);
        if !ran {
            run::push_once(
                flow,
                format!("step {n} skipped: the script finished without executing it"),
            );
        }
    }
}

/// The options of a step that a subject can use: one without an account has nowhere to
/// keep a second factor, so account-bound options are left out for them. Empty means
/// the MFA conflict.
pub fn usable_options(options: &[StepOption], subject: Option<&Subject>) -> Vec<StepOption> {
    let has_account = subject.map(Subject::has_account).unwrap_or(true);
    options
        .iter()
        .filter(|o| has_account || !o.needs_account())
        .cloned()
        .collect()
}

/// The `amr` an option contributes.
pub fn option_amr(option: &StepOption) -> Vec<String> {
    match option {
        StepOption::Password => vec!["pwd".into()],
        StepOption::Totp | StepOption::EmailOtp | StepOption::RecoveryCode => vec!["otp".into()],
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

/// A short fingerprint of a stored password hash: enough to notice the password has
/// changed since a sign-in checked it, and nothing an attacker could use (the hash is
/// salted and slow; this is a digest of it).
pub fn password_fingerprint(hash: &crate::store::PasswordHash) -> String {
    crate::crypto::token_hash(&hash.0)
}
