//! Federated steps in the hosted sign-in: sending the browser to a connection, the
//! callback that brings it back, and the pages provisioning may need (consent, a
//! username, proof of an existing account's password before linking).

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::login::{login_url, posted_flow};
use super::pages::{Detail, FederationPage};
use super::{cookies, see_other, Shared, WebError};
use crate::authn::attempts::{self, Limit};
use crate::authn::password;
use crate::config::{App, Config, Connection};
use crate::crypto::{token_hash, unix_now};
use crate::flow::Flow;
use crate::provision::{self, Need, Provisioned, Settled};
use crate::secret::ct_eq;
use crate::upstream::{Callback, UpstreamError, UpstreamIdentity};

/// The one callback URL of a connection.
pub(crate) fn callback_url(config: &Config, connection: &str) -> String {
    format!("{}/callback/{connection}", config.issuer_id())
}

/// Send the browser to the connection for step `step`.
pub(crate) async fn begin(
    state: &Shared,
    config: &Config,
    flow: &mut Flow,
    connection: &str,
    step: usize,
    now: u64,
) -> Result<Response, WebError> {
    let conn = config
        .connections
        .get(connection)
        .ok_or_else(|| WebError::Internal(format!("step names unknown connection {connection}")))?;
    let started = std::time::Instant::now();
    let begun = state
        .upstreams
        .begin(conn, &callback_url(config, connection), step, now)
        .await;
    state
        .metrics
        .upstream(connection, "begin", started.elapsed());
    let (url, pending, _state) = begun.map_err(|e| {
        tracing::warn!(connection, error = %e, "cannot start the upstream round trip");
        WebError::page(
            StatusCode::BAD_GATEWAY,
            "The sign-in provider is unavailable",
            format!("{} could not be reached.", conn.display_name),
        )
        .with_hint("Try again in a moment, or choose another way to sign in.")
    })?;
    state
        .store
        .put_upstream_state(&pending.state_hash, &flow.id)?;
    flow.upstream = Some(pending);
    flow.trace
        .push(format!("step {step}: sent to {connection}"));
    Ok(see_other(&url))
}

fn failed_page(conn: &Connection, config: &Config, flow: &Flow, reason: &str) -> WebError {
    WebError::Page {
        status: StatusCode::BAD_REQUEST,
        title: "Signing in did not work",
        message: format!("Signing in with {} failed: {reason}.", conn.display_name),
        hint: Some("Continue to go back to the application.".into()),
        back_url: Some(login_url(config, flow)),
    }
}

fn stale() -> WebError {
    WebError::page(
        StatusCode::BAD_REQUEST,
        "This sign-in answer cannot be used",
        "The answer from the sign-in provider was already used, has expired, or does not belong to this browser.",
    )
    .with_hint("Go back to the application and start signing in again.")
}

pub async fn callback_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(connection): Path<String>,
    Query(answer): Query<Callback>,
) -> Response {
    let r = async {
        let config = state.config();
        let now = unix_now();
        let presented = answer.state.clone().filter(|s| !s.is_empty()).ok_or_else(stale)?;
        let hash = token_hash(&presented);
        // Single use: the state is forgotten as it is looked up.
        let flow_id = state.store.take_upstream_state(&hash)?.ok_or_else(stale)?;
        let browser = cookies::get(&jar, &config, cookies::BROWSER);
        let mut flow = state.load_flow(&flow_id, browser.as_deref(), now)?;
        let pending = flow.upstream.take().ok_or_else(stale)?;
        if !ct_eq(pending.state_hash.as_bytes(), hash.as_bytes())
            || pending.connection != connection
            || now > pending.started_at + config.security.flow_ttl
        {
            return Err(stale());
        }
        let conn = config.connections.get(&connection).cloned().ok_or_else(stale)?;
        let step = pending.step;
        let started = std::time::Instant::now();
        let result = state
            .upstreams
            .finish(&conn, &callback_url(&config, &connection), &pending, &answer)
            .await;
        state.metrics.upstream(&connection, "finish", started.elapsed());
        match result {
            Err(UpstreamError::Denied(_)) => {
                record_marker(&mut flow, &connection, "deny");
                flow.step_failed(step, &connection, &format!("the user denied access at {}", conn.display_name), now);
                state.save_flow(&flow)?;
                Ok(see_other(&login_url(&config, &flow)))
            }
            Err(e) => {
                tracing::warn!(flow = %flow.id, connection, error = %e, "upstream round trip failed");
                let marker = match &e {
                    UpstreamError::InvalidToken(..) => "invalid_id_token",
                    UpstreamError::WrongIssuer { .. } => "wrong_issuer",
                    _ => "error",
                };
                record_marker(&mut flow, &connection, marker);
                flow.step_failed(step, &connection, &e.to_string(), now);
                state.save_flow(&flow)?;
                Err(failed_page(&conn, &config, &flow, &e.to_string()))
            }
            Ok(identity) => {
                let linked = state.store.identity(&connection, &identity.subject)?;
                let existed = linked.is_some();
                if let Some(rec) = flow.recording.as_mut() {
                    // The account as it was, before this sign-in re-syncs it.
                    if let Some(uid) = &linked {
                        rec.user(state.store.as_ref(), uid)?;
                    }
                    rec.upstream(&connection, &identity);
                }
                let store = state.store.clone();
                let (c, id) = (conn.clone(), identity.clone());
                let decided = tokio::task::spawn_blocking(move || provision::provision(store.as_ref(), &c, &id, now)).await??;
                let how = if existed { "found the linked account" } else { "provisioned" };
                settle(&state, &config, &mut flow, &conn, step, identity, decided, how, now).await
            }
        }
    }
    .await;
    state.respond(r)
}

/// Apply provisioning's decision to the flow and say where the browser goes next.
#[allow(clippy::too_many_arguments)]
async fn settle(
    state: &Shared,
    config: &Config,
    flow: &mut Flow,
    conn: &Connection,
    step: usize,
    identity: UpstreamIdentity,
    decided: Provisioned,
    how: &str,
    now: u64,
) -> Result<Response, WebError> {
    let creating = how == "provisioned";
    let target = match &decided {
        Provisioned::NeedsLinkProof { user_id } => Some(user_id.clone()),
        _ => None,
    };
    let settled = provision::settle(
        state.store.as_ref(),
        flow,
        conn,
        step,
        identity,
        decided,
        how,
        now,
    )?;
    let with_account = settled == (Settled::Passed { account: true });
    let result = match (&settled, how) {
        (Settled::Passed { account: false }, _) => "pass_through",
        (Settled::Passed { account: true }, "provisioned") => "created",
        (Settled::Passed { account: true }, "linked to") => "linked",
        (Settled::Passed { account: true }, _) => "existing",
        (Settled::Waiting, _) => "waiting",
        (Settled::Refused(_), _) => "refused",
    };
    state.metrics.provisioned(&conn.id, result);
    crate::audit::federated(state.store.as_ref(), flow, how, with_account, now);
    if let Some(rec) = flow.recording.as_mut() {
        if let Some(uid) = target {
            rec.user(state.store.as_ref(), &uid)?;
        }
        if creating && settled == (Settled::Passed { account: true }) {
            rec.provisioned = true;
        }
    }
    match settled {
        Settled::Passed { account } => {
            // A new account or link is on disk before anything can name it. An account
            // found linked already is; a re-sync of its attributes becomes durable
            // with the code, which is flushed before the app hears of the sign-in.
            if account && how != "found the linked account" {
                state.flush().await?;
            }
            state.save_flow(flow)?;
            Ok(see_other(&login_url(config, flow)))
        }
        Settled::Waiting => {
            state.save_flow(flow)?;
            Ok(see_other(&login_url(config, flow)))
        }
        Settled::Refused(reason) => {
            state.save_flow(flow)?;
            Err(failed_page(conn, config, flow, &reason))
        }
    }
}

/// For a recording server: an upstream answer that was not an identity.
fn record_marker(flow: &mut Flow, connection: &str, marker: &str) {
    if let Some(rec) = flow.recording.as_mut() {
        rec.inputs.push(crate::fixtures::format::Input {
            pick: Some(connection.to_string()),
            upstream: Some(crate::fixtures::format::Upstream::Marker(
                marker.to_string(),
            )),
            ..Default::default()
        });
    }
}

/// For a recording server: the answer to provisioning's question joins the input that
/// raised it (the upstream's answer).
fn record_answer(flow: &mut Flow, answer: impl FnOnce(&mut crate::fixtures::format::Input)) {
    if let Some(last) = flow.recording.as_mut().and_then(|r| r.inputs.last_mut()) {
        answer(last);
    }
}

/// Render what provisioning is waiting for.
pub(crate) fn page(
    state: &Shared,
    config: &Config,
    app: &App,
    flow: &mut Flow,
    csrf: String,
) -> Result<Response, WebError> {
    let Some(pending) = flow.federation.clone() else {
        return Err(WebError::Internal("no provisioning is pending".into()));
    };
    let conn = config.connections.get(&pending.identity.connection);
    let connection = conn.map(|c| c.display_name.clone()).unwrap_or_default();
    let id = &pending.identity;
    let mut details = Vec::new();
    for (label, claim) in [
        ("Name", "name"),
        ("Email", "email"),
        ("Username", "preferred_username"),
    ] {
        if let Some(v) = id.claim_str(claim) {
            details.push(Detail {
                label: label.into(),
                value: v,
            });
        }
    }
    let (need, email) = match &pending.need {
        Need::Consent => ("consent", String::new()),
        Need::Username => ("username", String::new()),
        Need::LinkProof { .. } => ("link", id.claim_str("email").unwrap_or_default()),
    };
    state.render(
        "federation.html",
        &FederationPage {
            layout: state.layout(config, &format!("Sign in to {}", app.name), Some(app)),
            action: format!("{}/federation", login_url(config, flow)),
            csrf,
            need,
            connection,
            details: if need == "consent" {
                details
            } else {
                Vec::new()
            },
            username: id.claim_str("preferred_username").unwrap_or_default(),
            email,
            error: flow.notice.take(),
            cancel_url: Some(format!("{}/cancel", login_url(config, flow))),
        },
    )
}

#[derive(Deserialize)]
pub struct FederationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login_federation_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<FederationForm>,
) -> Response {
    let r = async {
        let config = state.config();
        let now = unix_now();
        let mut flow = posted_flow(&state, &config, &jar, &id, &form.csrf, now)?;
        let Some(pending) = flow.federation.clone() else {
            return Ok(see_other(&login_url(&config, &flow)));
        };
        let Some(conn) = config
            .connections
            .get(&pending.identity.connection)
            .cloned()
        else {
            return Err(WebError::flow_lost());
        };
        let store = state.store.clone();
        let identity = pending.identity.clone();
        let decided = match &pending.need {
            Need::Consent => {
                record_answer(&mut flow, |i| i.consent = Some(true));
                let c = conn.clone();
                tokio::task::spawn_blocking(move || {
                    provision::create(store.as_ref(), &c, &identity, None, now)
                })
                .await??
            }
            Need::Username => {
                let chosen = form.username.trim().to_string();
                if chosen.is_empty()
                    || chosen.len() > 64
                    || chosen.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    flow.notice =
                        Some("Choose a username of 1 to 64 characters, without spaces.".into());
                    state.save_flow(&flow)?;
                    return Ok(see_other(&login_url(&config, &flow)));
                }
                let c = conn.clone();
                let name = chosen.clone();
                let decided = tokio::task::spawn_blocking(move || {
                    provision::create(store.as_ref(), &c, &identity, Some(&chosen), now)
                })
                .await??;
                record_answer(&mut flow, |i| i.choose_username = Some(name));
                if matches!(&decided, Provisioned::Refused(r) if r.contains("taken")) {
                    // Never another person's account: just ask again.
                    flow.notice = Some("That username is taken. Choose another.".into());
                    state.save_flow(&flow)?;
                    return Ok(see_other(&login_url(&config, &flow)));
                }
                decided
            }
            Need::LinkProof { user_id } => {
                match prove(&state, &config, &mut flow, user_id, &form.password, now).await? {
                    Some(user) => {
                        record_answer(&mut flow, |i| i.link_password = Some("valid".into()));
                        let store = state.store.clone();
                        tokio::task::spawn_blocking(move || {
                            provision::link(store.as_ref(), &identity, &user)
                        })
                        .await??
                    }
                    None => {
                        state.save_flow(&flow)?;
                        return Ok(see_other(&login_url(&config, &flow)));
                    }
                }
            }
        };
        let how = match pending.need {
            Need::LinkProof { .. } => "linked to",
            _ => "provisioned",
        };
        settle(
            &state,
            &config,
            &mut flow,
            &conn,
            pending.step,
            pending.identity,
            decided,
            how,
            now,
        )
        .await
    }
    .await;
    state.respond(r)
}

/// Check the existing account's password before linking, with the same attempt limits
/// as signing in with it.
async fn prove(
    state: &Shared,
    config: &Config,
    flow: &mut Flow,
    user_id: &str,
    presented: &str,
    now: u64,
) -> Result<Option<crate::store::User>, WebError> {
    let user = state.store.user(user_id)?;
    let key = password::attempts_key(user.as_ref(), user_id);
    if attempts::locked(state.store.as_ref(), &key, now)? {
        flow.notice =
            Some("Too many failed attempts. Wait a few minutes before trying again.".into());
        return Ok(None);
    }
    let candidate = user.clone();
    let presented = presented.to_string();
    let ok = tokio::task::spawn_blocking(move || password::verify(candidate.as_ref(), &presented))
        .await?;
    if ok {
        attempts::forgive(state.store.as_ref(), &key)?;
        flow.trace.push(format!(
            "the owner of account {user_id} proved its password for linking"
        ));
        return Ok(user);
    }
    attempts::fail(state.store.as_ref(), &key, Limit::password(config), now)?;
    flow.notice = Some("That password is not right.".into());
    flow.trace
        .push("linking: wrong password for the existing account".into());
    Ok(None)
}
