//! The audit trail: what happened to accounts and who did it, beyond the sign-ins the
//! web layer records — provisioning, linking, second-factor enrolment and skips, My
//! Account changes and admin (SCIM) writes — plus the query the admin API answers and
//! the retention sweep.
//!
//! Events reuse [`AuditEvent`]'s fields: `app` names who acted (an app id, the built-in
//! `usher-myaccount`, or the admin client's id), `sub` the account acted on, `kind` the
//! dotted event name below, and `detail` what changed. Writing an event never fails the
//! action it describes: a store error is logged and the action stands.
//!
//! Every event passes [`bounded`] before it is written, here and in the sign-in core's
//! trace: the trail is kept for months, so no field of it may grow with what a request
//! carried. Lines are cut, not refused, since the event must still be written.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{App, StepOption};
use crate::crypto::time_prefixed_id;
use crate::flow::Flow;
use crate::limits::{clip, AUDIT_LINES_MAX, AUDIT_LINE_MAX};
use crate::store::{AuditEvent, AuditStore, StoreResult};

/// Event kinds. A query for `admin` matches every `admin.*` kind.
pub mod kind {
    pub const SIGN_IN: &str = "sign_in";
    pub const USER_PROVISIONED: &str = "user.provisioned";
    pub const USER_SIGNED_UP: &str = "user.signed_up";
    pub const IDENTITY_LINKED: &str = "identity.linked";
    pub const MFA_ENROLLED: &str = "mfa.enrolled";
    pub const MFA_SKIPPED: &str = "mfa.skipped";
    /// A wrong password or one-time code inside a sign-in that may still go on.
    pub const CREDENTIAL_REJECTED: &str = "credential.rejected";
    pub const ACCOUNT_REFUSED: &str = "account.refused";
    pub const ACCOUNT_PROFILE: &str = "account.profile_updated";
    pub const ACCOUNT_PASSWORD: &str = "account.password_changed";
    pub const ACCOUNT_TOTP_ENROLLED: &str = "account.totp_enrolled";
    pub const ACCOUNT_TOTP_RESET: &str = "account.totp_reset";
    pub const ACCOUNT_RECOVERY_CODES: &str = "account.recovery_codes_regenerated";
    pub const ACCOUNT_UNLINKED: &str = "account.identity_unlinked";
    pub const ACCOUNT_SESSION_ENDED: &str = "account.session_ended";
    /// The user revoked one app's grant from the sessions list.
    pub const ACCOUNT_GRANT_REVOKED: &str = "account.grant_revoked";
    /// A new email address, proven with a code mailed to it, replaced the old one.
    pub const ACCOUNT_EMAIL: &str = "account.email_changed";
    pub const ADMIN_USER_CREATED: &str = "admin.user_created";
    pub const ADMIN_USER_UPDATED: &str = "admin.user_updated";
    pub const ADMIN_USER_DISABLED: &str = "admin.user_disabled";
    pub const ADMIN_USER_ENABLED: &str = "admin.user_enabled";
    pub const ADMIN_USER_DELETED: &str = "admin.user_deleted";
    pub const ADMIN_TOTP_RESET: &str = "admin.totp_reset";
    pub const ADMIN_USER_UNLOCKED: &str = "admin.user_unlocked";
    /// SCIM `/Groups` writes: the detail names what changed and how many members
    /// joined or left, never the values.
    pub const ADMIN_GROUP_CREATED: &str = "admin.group_created";
    pub const ADMIN_GROUP_UPDATED: &str = "admin.group_updated";
    pub const ADMIN_GROUP_DELETED: &str = "admin.group_deleted";
    /// An administrator ended every session and revoked every grant of the account.
    pub const ADMIN_USER_SIGNED_OUT: &str = "admin.user_signed_out";
    /// An app revoked one of its tokens at `/revoke` (RFC 7009).
    pub const TOKEN_REVOKED: &str = "token.revoked";
    /// The owner of an account locked for good followed the link mailed to its
    /// verified address.
    pub const ACCOUNT_UNLOCKED_BY_EMAIL: &str = "account.unlocked_by_email";
    /// "Forgot your password?": a code was asked for (mailed, or not for a name
    /// without an account with a verified address — the detail says which).
    pub const PASSWORD_RESET_REQUESTED: &str = "password_reset.requested";
    /// A new password was set with a mailed code; every session of the account ended.
    pub const PASSWORD_RESET_COMPLETED: &str = "password_reset.completed";
    /// A reset refused: a wrong, used or expired code, or too many codes asked for.
    pub const PASSWORD_RESET_REFUSED: &str = "password_reset.refused";
    /// A sign-up's email address was proven with the mailed code.
    pub const EMAIL_VERIFIED: &str = "user.email_verified";
    /// An account with an unverified address gave the address up to someone who proved
    /// it (a federated identity whose provider verified it, or a verified sign-up).
    pub const EMAIL_RELEASED: &str = "user.email_released";
}

/// The id of a new event: its time, then a per-process sequence number, then random
/// bytes. Ids sort by time like every time-prefixed id (so the retention sweep is a
/// key range), and events of the same second keep the order they happened in.
pub fn event_id(now: u64) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let id = time_prefixed_id(now);
    format!("{}{seq:012x}{}", &id[..16], &id[16..])
}

/// The event within the caps: each detail line and `kind`, `app`, `sub` and `outcome`
/// cut to [`AUDIT_LINE_MAX`] characters, and at most [`AUDIT_LINES_MAX`] lines, the
/// last of them saying how many more there were.
pub fn bounded(mut event: AuditEvent) -> AuditEvent {
    let cut = |s: &mut String| {
        if s.len() > AUDIT_LINE_MAX {
            *s = clip(s, AUDIT_LINE_MAX);
        }
    };
    cut(&mut event.kind);
    cut(&mut event.outcome);
    event.app.iter_mut().for_each(cut);
    event.sub.iter_mut().for_each(cut);
    if event.detail.len() > AUDIT_LINES_MAX {
        let more = event.detail.len() - (AUDIT_LINES_MAX - 1);
        event.detail.truncate(AUDIT_LINES_MAX - 1);
        event
            .detail
            .push(format!("… and {more} more line(s) not kept"));
    }
    event.detail.iter_mut().for_each(cut);
    event
}

/// Write one event. Store failures are logged, never returned.
pub async fn record(
    store: &dyn AuditStore,
    now: u64,
    kind: &str,
    actor: Option<&str>,
    sub: Option<&str>,
    detail: Vec<String>,
) {
    write(store, now, kind, "success", (actor, sub), detail).await;
}

/// Something asked for and refused (outcome `failure`), outside a sign-in's own trail.
pub async fn refused(
    store: &dyn AuditStore,
    now: u64,
    kind: &str,
    actor: Option<&str>,
    sub: Option<&str>,
    detail: Vec<String>,
) {
    write(store, now, kind, "failure", (actor, sub), detail).await;
}

/// A credential refused inside a sign-in (a wrong password or code), recorded when it
/// happens: a sign-in given up after wrong passwords still leaves its attempts in the
/// trail, not only sign-ins that ended.
pub async fn rejected(
    store: &dyn AuditStore,
    flow: &Flow,
    user_id: Option<&str>,
    what: &str,
    now: u64,
) {
    let mut detail = vec![what.to_string()];
    if !flow.ip.is_empty() {
        detail.push(format!("from {}", flow.ip));
    }
    write(
        store,
        now,
        kind::CREDENTIAL_REJECTED,
        "failure",
        (Some(&flow.request.app_id), user_id),
        detail,
    )
    .await;
}

/// An event within the caps.
fn event(
    now: u64,
    kind: &str,
    outcome: &str,
    (actor, sub): (Option<&str>, Option<&str>),
    detail: Vec<String>,
) -> AuditEvent {
    bounded(AuditEvent {
        id: event_id(now),
        at: now,
        kind: kind.to_string(),
        app: actor.map(str::to_string),
        sub: sub.map(str::to_string),
        outcome: outcome.to_string(),
        detail,
    })
}

async fn write(
    store: &dyn AuditStore,
    now: u64,
    kind: &str,
    outcome: &str,
    (actor, sub): (Option<&str>, Option<&str>),
    detail: Vec<String>,
) {
    let event = event(now, kind, outcome, (actor, sub), detail);
    if let Err(e) = store.append_event(&event).await {
        tracing::error!(error = %e, kind, "could not write the audit event");
    }
}

/// After a federated step settled: a JIT-created account (`how` is `provisioned`) or a
/// newly linked identity (`linked to`) is recorded against the app signed in to. The
/// step's trace line (connection, upstream subject, account) is the detail.
pub async fn federated(
    store: &dyn AuditStore,
    flow: &Flow,
    how: &str,
    with_account: bool,
    now: u64,
) {
    let kind = match how {
        "provisioned" => kind::USER_PROVISIONED,
        "linked to" => kind::IDENTITY_LINKED,
        _ => return,
    };
    let Some(uid) = flow
        .subject()
        .and_then(|s| s.user_id.clone())
        .filter(|_| with_account)
    else {
        return;
    };
    let detail = flow.trace().last().cloned().into_iter().collect();
    record(
        store,
        now,
        kind,
        Some(&flow.request.app_id),
        Some(&uid),
        detail,
    )
    .await;
}

/// The `mfa.skipped` events of a successful sign-in, written with its code: one for
/// every step that offers only second factors and was not taken (a script decided
/// so), with the script's log, so "why did this user skip MFA?" has an answer in the
/// trail as well as in the trace.
pub fn skipped_mfa_events(app: &App, flow: &Flow, now: u64) -> Vec<AuditEvent> {
    let Some(subject) = flow.subject() else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for (i, step) in app.sign_in.steps.iter().enumerate() {
        let n = i + 1;
        let mfa = !step.options.is_empty() && step.options.iter().all(StepOption::needs_account);
        if !mfa || flow.done().iter().any(|d| d.step == n) {
            continue;
        }
        let names: Vec<&str> = step.options.iter().map(StepOption::name).collect();
        let mut detail = vec![format!(
            "step {n} ({}) was not asked; the user signed in through `{}`{}",
            names.join(" | "),
            subject.idp,
            if subject.has_account() {
                ""
            } else {
                " without an account"
            }
        )];
        detail.extend(flow.script_log.iter().map(|l| format!("script: {l}")));
        let who = (Some(app.id.as_str()), Some(subject.sub.as_str()));
        events.push(event(now, kind::MFA_SKIPPED, "skipped", who, detail));
    }
    events
}

/// Most events the admin API returns at once.
pub const MAX_LIMIT: usize = 1000;

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The account (`sub`) the events are about.
    pub user: Option<String>,
    /// An exact kind, or a prefix before a dot (`admin` for `admin.*`).
    pub kind: Option<String>,
    /// From this time on (inclusive).
    pub since: u64,
    /// Up to this time (inclusive).
    pub until: Option<u64>,
    /// At most this many: the latest ones, if more match.
    pub limit: usize,
}

impl Query {
    /// A query from named parameters (`user`, `kind`, `since`, `until`, `limit`), as
    /// the admin API and the CLI give them. Times are Unix seconds, RFC 3339, or a
    /// duration back from `now` (`24h`); at most 100 events unless `limit` says. The
    /// error names what is wrong, for the caller.
    pub fn from_params<'p>(
        param: impl Fn(&str) -> Option<&'p str>,
        now: u64,
    ) -> Result<Query, String> {
        let get = |k: &str| param(k).map(str::trim).filter(|v| !v.is_empty());
        let time = |k: &str| match get(k) {
            None => Ok(None),
            Some(v) => crate::timefmt::parse_time(v, now).map(Some).ok_or_else(|| {
                format!("{k} must be Unix seconds, an RFC 3339 time or a duration like 24h")
            }),
        };
        let since = time("since")?.unwrap_or(0);
        let until = time("until")?;
        let limit = match get("limit").map(str::parse::<usize>) {
            None => 100,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err("limit must be a number".into()),
        };
        Ok(Query {
            user: get("user").map(str::to_string),
            kind: get("kind").map(str::to_string),
            since,
            until,
            limit,
        })
    }

    fn matches(&self, e: &AuditEvent) -> bool {
        let user_ok = self
            .user
            .as_deref()
            .is_none_or(|u| e.sub.as_deref() == Some(u));
        let kind_ok = self.kind.as_deref().is_none_or(|k| {
            e.kind == k
                || e.kind
                    .strip_prefix(k)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        user_ok && kind_ok
    }
}

/// The latest `q.limit` events matching `q`, oldest first.
pub async fn query(store: &dyn AuditStore, q: &Query) -> StoreResult<Vec<AuditEvent>> {
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let mut kept: VecDeque<AuditEvent> = VecDeque::with_capacity(limit);
    store
        .scan_events(q.since, &mut |e| {
            if q.until.is_some_and(|u| e.at > u) {
                return false;
            }
            if q.matches(&e) {
                if kept.len() == limit {
                    kept.pop_front();
                }
                kept.push_back(e);
            }
            true
        })
        .await?;
    Ok(kept.into())
}

/// Remove events older than the retention period; returns how many.
pub async fn sweep(store: &dyn AuditStore, now: u64, retention_days: u64) -> StoreResult<usize> {
    let cutoff = now.saturating_sub(retention_days.saturating_mul(86_400));
    store.sweep_events(cutoff).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn query_parameters_read_times_three_ways_and_name_what_is_wrong() {
        let params = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
        };
        let now = 1_000_000;
        let q = Query::from_params(
            params(&[("since", "24h"), ("until", "999"), ("kind", " admin ")]),
            now,
        )
        .unwrap();
        assert_eq!((q.since, q.until, q.limit), (now - 86_400, Some(999), 100));
        assert_eq!(q.kind.as_deref(), Some("admin"));
        assert_eq!(q.user, None);
        let e = Query::from_params(params(&[("until", "yesterday")]), now).unwrap_err();
        assert!(e.starts_with("until must be"), "{e}");
        let e = Query::from_params(params(&[("limit", "ten")]), now).unwrap_err();
        assert_eq!(e, "limit must be a number");
    }

    #[tokio::test]
    async fn query_filters_by_user_kind_and_time_and_keeps_the_latest() {
        let store = SledStore::temporary().unwrap();
        record(
            &store,
            100,
            kind::ADMIN_USER_CREATED,
            Some("ops"),
            Some("u_a"),
            vec![],
        )
        .await;
        record(
            &store,
            200,
            kind::ADMIN_USER_DISABLED,
            Some("ops"),
            Some("u_a"),
            vec![],
        )
        .await;
        record(
            &store,
            300,
            kind::ACCOUNT_PASSWORD,
            Some("usher-myaccount"),
            Some("u_b"),
            vec![],
        )
        .await;
        record(
            &store,
            400,
            kind::ADMIN_USER_DELETED,
            Some("ops"),
            Some("u_a"),
            vec![],
        )
        .await;
        let all = |q: Query| {
            let store = &store;
            async move { query(store, &Query { limit: 10, ..q }).await.unwrap() }
        };
        let kinds = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(all(Query::default()).await.len(), 4);
        assert_eq!(
            kinds(
                all(Query {
                    user: Some("u_a".into()),
                    ..Query::default()
                })
                .await
            ),
            [
                "admin.user_created",
                "admin.user_disabled",
                "admin.user_deleted"
            ]
        );
        assert_eq!(
            all(Query {
                kind: Some("admin".into()),
                ..Query::default()
            })
            .await
            .len(),
            3
        );
        assert_eq!(
            all(Query {
                kind: Some("adm".into()),
                ..Query::default()
            })
            .await
            .len(),
            0
        );
        assert_eq!(
            kinds(
                all(Query {
                    since: 150,
                    until: Some(300),
                    ..Query::default()
                })
                .await
            ),
            ["admin.user_disabled", "account.password_changed"]
        );
        let latest = query(
            &store,
            &Query {
                limit: 1,
                ..Query::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(kinds(latest), ["admin.user_deleted"]);
    }

    #[test]
    fn events_of_one_second_keep_their_order() {
        let ids: Vec<String> = (0..50).map(|_| event_id(7)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(crate::crypto::id_time(&ids[0]), Some(7));
    }

    #[tokio::test]
    async fn the_sweep_removes_only_what_retention_lets_go() {
        let store = SledStore::temporary().unwrap();
        let day = 86_400;
        record(
            &store,
            10 * day,
            kind::MFA_ENROLLED,
            None,
            Some("u_a"),
            vec![],
        )
        .await;
        record(
            &store,
            50 * day,
            kind::MFA_ENROLLED,
            None,
            Some("u_a"),
            vec![],
        )
        .await;
        assert_eq!(sweep(&store, 100 * day, 60).await.unwrap(), 1);
        let left = query(
            &store,
            &Query {
                limit: 10,
                ..Query::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].at, 50 * day);
    }

    #[tokio::test]
    async fn events_are_cut_to_the_caps_before_they_are_written() {
        let store = SledStore::temporary().unwrap();
        let huge = "x".repeat(1024 * 1024);
        let mut detail: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
        detail[0] = huge.clone();
        record(
            &store,
            5,
            kind::CREDENTIAL_REJECTED,
            Some(&huge),
            Some(&huge),
            detail,
        )
        .await;
        let e = &store.events(0, 10).await.unwrap()[0];
        assert_eq!(e.detail.len(), AUDIT_LINES_MAX);
        assert!(e.detail.iter().all(|l| l.chars().count() <= AUDIT_LINE_MAX));
        assert!(e.detail[0].ends_with('…'));
        assert_eq!(e.detail[1], "line 1");
        assert_eq!(
            e.detail[AUDIT_LINES_MAX - 1],
            format!(
                "… and {} more line(s) not kept",
                1000 - (AUDIT_LINES_MAX - 1)
            )
        );
        assert_eq!(e.sub.as_ref().unwrap().chars().count(), AUDIT_LINE_MAX);
        assert_eq!(e.app.as_ref().unwrap().chars().count(), AUDIT_LINE_MAX);
        // Within the caps, nothing changes.
        let small = AuditEvent {
            id: "1".into(),
            at: 1,
            kind: "k".into(),
            app: None,
            sub: Some("u_a".into()),
            outcome: "success".into(),
            detail: vec!["a".into(); AUDIT_LINES_MAX],
        };
        assert_eq!(bounded(small.clone()), small);
    }
}
