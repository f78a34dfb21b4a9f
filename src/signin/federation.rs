//! Federated steps: the round trip to a connection and what provisioning makes of the
//! identity it brings back. The shell does the HTTP (discovery, the code exchange, the
//! ID token's checks live in `upstream`); the core binds the round trip to its flow,
//! single use, and applies provisioning's rules: find, create, link with proof, or pass
//! through, asking the user when the connection says so.

use super::{CoreResult, Ctx};
use crate::authn::attempts::{self, Holder, Reserved, Rules, Ticket};
use crate::authn::steps::locked_message;
use crate::config::Connection;
use crate::crypto::token_hash;
use crate::flow::Flow;
use crate::provision::{self, Arrival, How, Need, PendingFederation, Provisioned, Settled};
use crate::secret::ct_eq;
use crate::store::{StoreResult, User};
use crate::upstream::{Pending, UpstreamError, UpstreamIdentity};

/// The browser is on its way to the connection for step `step`: remember which flow the
/// round trip's `state` belongs to.
pub async fn sent_upstream(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    step: usize,
    pending: Pending,
) -> StoreResult<()> {
    ctx.store
        .put_upstream_state(&pending.state_hash, &flow.id)
        .await?;
    flow.log(format!("step {step}: sent to {}", pending.connection));
    flow.upstream = Some(pending);
    Ok(())
}

/// The flow a callback's `state` names, and the state's hash. The state is forgotten as
/// it is looked up, so of two callbacks with one state only one goes on.
pub async fn take_callback(
    ctx: Ctx<'_>,
    state: Option<&str>,
) -> StoreResult<Option<(String, String)>> {
    let Some(state) = state.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let hash = token_hash(state);
    Ok(ctx
        .store
        .take_upstream_state(&hash)
        .await?
        .map(|flow_id| (flow_id, hash)))
}

/// The round trip a callback finishes, if the flow is waiting for this one: same state,
/// same connection, not expired. Taken out of the flow either way.
pub fn callback_pending(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    connection: &str,
    hash: &str,
) -> Option<Pending> {
    let pending = flow.upstream.take()?;
    let fits = ct_eq(pending.state_hash.as_bytes(), hash.as_bytes())
        && pending.connection == connection
        && ctx.now <= pending.started_at + ctx.config.security.flow_ttl;
    fits.then_some(pending)
}

/// What became of a federated step.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrived {
    /// The user said no at the provider; the step failed and the flow goes on (its
    /// script may offer another way).
    Denied,
    /// The round trip failed (an invalid ID token, a provider error); the step failed
    /// and the user is told `reason`.
    Failed(String),
    /// Provisioning decided. A subject with an account must be durable before the next
    /// page when `how` created or linked it.
    Settled { settled: Settled, how: How },
}

/// The connection answered the round trip of step `step`.
pub async fn arrived(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    conn: &Connection,
    step: usize,
    answer: Result<UpstreamIdentity, UpstreamError>,
) -> CoreResult<Arrived> {
    let identity = match answer {
        Err(UpstreamError::Denied(_)) => {
            let reason = format!("the user denied access at {}", conn.display_name);
            flow.step_failed(step, &conn.id, &reason, ctx.now);
            return Ok(Arrived::Denied);
        }
        Err(e) => {
            let reason = e.to_string();
            flow.step_failed(step, &conn.id, &reason, ctx.now);
            return Ok(Arrived::Failed(reason));
        }
        Ok(identity) => identity,
    };
    let existed = ctx
        .store
        .identity(&conn.id, &identity.subject)
        .await?
        .is_some();
    let decided = provision::provision(ctx.store, conn, &identity, ctx.now).await?;
    let how = if existed {
        How::Found
    } else {
        How::Provisioned
    };
    settle(ctx, flow, conn, step, identity, decided, how).await
}

async fn settle(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    conn: &Connection,
    step: usize,
    identity: UpstreamIdentity,
    decided: Provisioned,
    how: How,
) -> CoreResult<Arrived> {
    let arrival = Arrival {
        conn,
        step,
        identity,
        how,
    };
    let settled = provision::settle(ctx.store, ctx.config, flow, arrival, decided, ctx.now).await?;
    let with_account = settled == (Settled::Passed { account: true });
    crate::audit::federated(ctx.store, flow, how.as_str(), with_account, ctx.now).await;
    Ok(Arrived::Settled { settled, how })
}

/// The user's answer to what provisioning waits for.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Yes to creating the account.
    Consent,
    /// The username to create the account with.
    Username(String),
    /// The existing account's owner proved its password (see [`prove_begin`]).
    Proven(Box<User>),
}

/// What came of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    /// The answer does not do (a bad or taken username); ask again, the flow carries
    /// the message.
    AskAgain,
    Settled {
        settled: Settled,
        how: How,
    },
}

/// Apply the user's answer to the provisioning that waits for it.
pub async fn answer(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    conn: &Connection,
    pending: PendingFederation,
    answer: Answer,
) -> CoreResult<Answered> {
    let (decided, how) = match answer {
        Answer::Consent => (
            provision::create(ctx.store, conn, &pending.identity, None, ctx.now).await?,
            How::Provisioned,
        ),
        Answer::Username(chosen) => {
            let chosen = chosen.trim();
            if !crate::names::valid_username(chosen) {
                flow.tell("Choose a username of 1 to 64 characters, without spaces.");
                return Ok(Answered::AskAgain);
            }
            let decided =
                provision::create(ctx.store, conn, &pending.identity, Some(chosen), ctx.now)
                    .await?;
            if matches!(&decided, Provisioned::Refused(r) if r.contains("taken")) {
                // Never another person's account: just ask again.
                flow.tell("That username is taken. Choose another.");
                return Ok(Answered::AskAgain);
            }
            (decided, How::Provisioned)
        }
        Answer::Proven(user) => (
            provision::link(ctx.store, conn, &pending.identity, &user, ctx.now).await?,
            How::Linked,
        ),
    };
    match settle(
        ctx,
        flow,
        conn,
        pending.step,
        pending.identity,
        decided,
        how,
    )
    .await?
    {
        Arrived::Settled { settled, how } => Ok(Answered::Settled { settled, how }),
        // `settle` only ever settles.
        _ => Ok(Answered::AskAgain),
    }
}

/// A password proof about to be checked before linking, its attempt reserved.
pub struct Proof {
    pub user: Option<User>,
    ticket: Ticket,
}

/// Before checking the existing account's password for linking: one attempt reserved
/// against the account's count, as signing in with it would. `None` when locked
/// (nothing may be checked; the flow carries the message).
pub async fn prove_begin(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    user_id: &str,
) -> StoreResult<Option<Proof>> {
    let user = ctx.store.user(user_id).await?;
    let holder = Holder::of(user.as_ref(), user_id);
    match attempts::reserve(ctx.store, &holder, Rules::of(ctx.config), ctx.now).await? {
        Reserved::Locked { for_good } => {
            flow.tell(locked_message(for_good));
            flow.log("linking: password refused, attempts locked");
            Ok(None)
        }
        Reserved::Granted(ticket) => Ok(Some(Proof { user, ticket })),
    }
}

/// After checking: the proven account (its attempt given back), or `None` with the
/// failure left counted against the account and audited.
pub async fn prove_finish(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    user_id: &str,
    proof: Proof,
    ok: bool,
) -> StoreResult<Option<User>> {
    let Proof { user, ticket } = proof;
    if ok {
        attempts::give_back(ctx.store, ticket, ctx.now).await?;
        flow.log(format!(
            "the owner of account {user_id} proved its password for linking"
        ));
        return Ok(user);
    }
    flow.tell(if ticket.capped || ticket.locks_until > ctx.now {
        locked_message(ticket.capped)
    } else {
        "That password is not right."
    });
    let line = format!(
        "linking: wrong password for the existing account ({} in a row)",
        ticket.failures
    );
    let known = user.as_ref().map(|u| u.id.as_str());
    crate::audit::rejected(ctx.store, flow, known, &line, ctx.now).await;
    flow.log(line);
    Ok(None)
}

/// Whether provisioning is waiting for the user's answer (and for what).
pub fn waiting(flow: &Flow) -> Option<&Need> {
    flow.federation.as_ref().map(|p| &p.need)
}
