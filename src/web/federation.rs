//! Federated steps in the hosted sign-in: sending the browser to a connection, the
//! callback that brings it back, and the pages provisioning may need (consent, a
//! username, proof of an existing account's password before linking).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::login::login_url;
use super::pages::{Detail, FederationPage};
use super::posted::Posted;
use super::{cookies, see_other, Shared, WebError};
use crate::account::notify;
use crate::authn::password;
use crate::config::{App, Config, Connection};
use crate::flow::Flow;
use crate::provision::{How, Need, Settled};
use crate::signin::federation::{self, Answer, Answered, Arrived};
use crate::upstream::{Callback, UpstreamError};

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
    federation::sent_upstream(state.core(config, now), flow, step, pending).await?;
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
) -> Result<Response, WebError> {
    let config = state.config();
    let now = state.now();
    let ctx = state.core(&config, now);
    let (flow_id, hash) = federation::take_callback(ctx, answer.state.as_deref())
        .await?
        .ok_or_else(stale)?;
    let browser = cookies::get(&jar, &config, cookies::BROWSER);
    let mut flow = state.load_flow(&flow_id, browser.as_deref(), now).await?;
    let pending =
        federation::callback_pending(ctx, &mut flow, &connection, &hash).ok_or_else(stale)?;
    let conn = config
        .connections
        .get(&connection)
        .cloned()
        .ok_or_else(stale)?;
    let step = pending.step;
    let started = std::time::Instant::now();
    let result = state
        .upstreams
        .finish(
            &conn,
            &callback_url(&config, &connection),
            &pending,
            &answer,
        )
        .await;
    state
        .metrics
        .upstream(&connection, "finish", started.elapsed());
    match &result {
        Err(e) => {
            if !matches!(e, UpstreamError::Denied(_)) {
                tracing::warn!(flow = %flow.id, connection, error = %e, "upstream round trip failed");
            }
            let marker = match e {
                UpstreamError::Denied(_) => "deny",
                UpstreamError::InvalidToken(..) => "invalid_id_token",
                UpstreamError::WrongIssuer { .. } => "wrong_issuer",
                _ => "error",
            };
            record_marker(&mut flow, &connection, marker);
        }
        Ok(identity) => {
            if let Some(rec) = flow.recording.as_mut() {
                // The account as it was, before this sign-in re-syncs it.
                if let Some(uid) = state.store.identity(&connection, &identity.subject).await? {
                    rec.user(state.store.as_ref(), &uid).await?;
                }
                rec.upstream(&connection, identity);
            }
        }
    }
    let arrived =
        federation::arrived(state.core(&config, now), &mut flow, &conn, step, result).await?;
    match arrived {
        Arrived::Denied => {
            state.save_flow(&mut flow).await?;
            Ok(see_other(&login_url(&config, &flow)))
        }
        Arrived::Failed(reason) => {
            state.save_flow(&mut flow).await?;
            Err(failed_page(&conn, &config, &flow, &reason))
        }
        Arrived::Settled { settled, how } => {
            settled_answer(&state, &config, &mut flow, &conn, settled, how, None).await
        }
    }
}

/// Where the browser goes once provisioning decided: on to the flow's next page, or a
/// page that says why the step failed. A created or linked account is made durable
/// before anything can name it; an account found linked already is, and a re-sync of
/// its attributes becomes durable with the code, flushed before the app hears of it.
async fn settled_answer(
    state: &Shared,
    config: &Config,
    flow: &mut Flow,
    conn: &Connection,
    settled: Settled,
    how: How,
    linked_to: Option<String>,
) -> Result<Response, WebError> {
    let result = match (&settled, how) {
        (Settled::Passed { account: false }, _) => "pass_through",
        (Settled::Passed { account: true }, How::Provisioned) => "created",
        (Settled::Passed { account: true }, How::Linked) => "linked",
        (Settled::Passed { account: true }, How::Found) => "existing",
        (Settled::Waiting, _) => "waiting",
        (Settled::Refused(_), _) => "refused",
    };
    state.metrics.provisioned(&conn.id, result);
    if let Some(rec) = flow.recording.as_mut() {
        if let Some(uid) = linked_to {
            rec.user(state.store.as_ref(), &uid).await?;
        }
        if how == How::Provisioned && settled == (Settled::Passed { account: true }) {
            rec.provisioned = true;
        }
    }
    if settled == (Settled::Passed { account: true }) && how != How::Found {
        state.flush().await?;
    }
    if settled == (Settled::Passed { account: true }) && how == How::Linked {
        if let Some(uid) = flow.subject().and_then(|s| s.user_id.clone()) {
            let by = notify::By {
                client: notify::flow_client(&flow.ip),
                mailer: Some(state.mailer()),
            };
            let change = notify::Change::ConnectionLinked(conn.display_name.clone());
            let ctx = state.core(config, state.now());
            notify::changed_by_id(&ctx, &by, &uid, change).await;
        }
    }
    state.save_flow(flow).await?;
    match settled {
        Settled::Refused(reason) => Err(failed_page(conn, config, flow, &reason)),
        _ => Ok(see_other(&login_url(config, flow))),
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
            error: flow.take_notice(),
            cancel_url: Some(format!("{}/cancel", login_url(config, flow))),
        },
    )
}

#[derive(Deserialize)]
pub struct FederationForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login_federation_post(
    State(state): State<Shared>,
    posted: Posted<FederationForm>,
) -> Result<Response, WebError> {
    let Posted {
        form,
        mut flow,
        config,
        now,
        ..
    } = posted;
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
    let ctx = state.core(&config, now);
    let mut linked_to = None;
    let answer = match &pending.need {
        Need::Consent => {
            record_answer(&mut flow, |i| i.consent = Some(true));
            Answer::Consent
        }
        Need::Username => {
            let name = form.username.trim().to_string();
            record_answer(&mut flow, |i| i.choose_username = Some(name.clone()));
            Answer::Username(name)
        }
        Need::LinkProof { user_id } => {
            let Some(proof) = federation::prove_begin(ctx, &mut flow, user_id).await? else {
                state.save_flow(&mut flow).await?;
                return Ok(see_other(&login_url(&config, &flow)));
            };
            let candidate = proof.user.clone();
            let presented = form.password.clone();
            let ok = tokio::task::spawn_blocking(move || {
                password::verify(candidate.as_ref(), &presented)
            })
            .await?;
            match federation::prove_finish(ctx, &mut flow, user_id, proof, ok).await? {
                Some(user) => {
                    record_answer(&mut flow, |i| i.link_password = Some("valid".into()));
                    linked_to = Some(user.id.clone());
                    Answer::Proven(Box::new(user))
                }
                None => {
                    state.save_flow(&mut flow).await?;
                    return Ok(see_other(&login_url(&config, &flow)));
                }
            }
        }
    };
    match federation::answer(ctx, &mut flow, &conn, pending, answer).await? {
        Answered::AskAgain => {
            state.save_flow(&mut flow).await?;
            Ok(see_other(&login_url(&config, &flow)))
        }
        Answered::Settled { settled, how } => {
            settled_answer(&state, &config, &mut flow, &conn, settled, how, linked_to).await
        }
    }
}
