//! The end of a sign-in: every step is satisfied, so the SSO session is created or
//! extended and the app's authorization code is issued. The server and `usher test`
//! both finish here, so the claims a fixture sees are the claims an app would get.

use std::collections::BTreeMap;

use url::Url;

use super::{audit, audit_event, CoreError, CoreResult, Ctx, LiveSession};
use crate::config::App;
use crate::crypto::{b64url, random_token, sha256, token_hash};
use crate::flow::{self, Flow};
use crate::oidc::authorize::response_url;
use crate::oidc::OAuthError;
use crate::store::{CodeRecord, GrantData, Session};

/// What the shell does with a finished sign-in.
#[derive(Debug)]
pub enum Completed {
    /// The code is stored and the flow is gone. The shell makes the writes durable,
    /// then sends the browser to `redirect`.
    Issued {
        redirect: Url,
        /// A fresh SSO session's cookie value: a new interactive sign-in rotates the
        /// session id (no fixation). `None` keeps the browser's cookie as it is.
        new_session: Option<String>,
        /// What the code stands for, so the shell (or a fixture) can show the claims.
        record: Box<CodeRecord>,
    },
    /// The account was disabled or deleted while signing in: the app hears
    /// `access_denied` at `redirect`, and nothing was issued.
    Refused { redirect: Url, error: OAuthError },
}

/// Send the app an error at its (already verified) redirect URI.
pub fn redirect_error(ctx: Ctx<'_>, flow: &Flow, error: &OAuthError) -> CoreResult<Url> {
    response_url(
        &flow.request.redirect_uri,
        &crate::oidc::issuer(ctx.config),
        flow.request.state.as_deref(),
        Err(error),
    )
    .ok_or_else(|| CoreError::Internal("registered redirect URI does not parse".into()))
}

/// Every step is satisfied: update the SSO session (`session` is the browser's live
/// one, read in this request) and issue the app's code.
pub async fn complete(
    ctx: Ctx<'_>,
    app: &App,
    flow: &mut Flow,
    session: Option<&LiveSession>,
) -> CoreResult<Completed> {
    let subject = flow
        .subject()
        .cloned()
        .ok_or_else(|| CoreError::Internal("completed flow has no subject".into()))?;
    let interactive = flow.interactive();
    if let Some(id) = &subject.user_id {
        // A silent sign-in writes no new session, only the code (which the exchange
        // checks against the account again): the account this request's session read
        // found live will do. An interactive one reads it again before it writes one.
        let seen_live = !interactive
            && session
                .and_then(|s| s.view.as_ref())
                .is_some_and(|v| v.subject.user_id.as_ref() == Some(id));
        let live = seen_live || ctx.store.user(id).await?.is_some_and(|u| !u.disabled);
        if !live {
            flow.log("the account is disabled or was deleted");
            ctx.store.delete_flow(&flow.id).await?;
            let e = OAuthError::access_denied("the account is disabled");
            audit(ctx, flow, &e.to_string()).await;
            return Ok(Completed::Refused {
                redirect: redirect_error(ctx, flow, &e)?,
                error: e,
            });
        }
    }
    let now = ctx.now;
    let same = session
        .filter(|s| s.session.sub == subject.sub)
        .map(|s| (&s.hash, &s.session));
    let mut satisfied: BTreeMap<String, u64> =
        same.map(|(_, s)| s.satisfied.clone()).unwrap_or_default();
    satisfied.extend(flow::satisfied_options(flow));
    let (auth_time, amr) = match same {
        Some((_, s)) if !interactive => (s.auth_time, s.amr.clone()),
        _ => (now, flow.amr()),
    };
    let mut clients = same.map(|(_, s)| s.clients.clone()).unwrap_or_default();
    if !clients.contains(&app.client_id) {
        clients.push(app.client_id.clone());
    }
    let new_session = Session {
        sub: subject.sub.clone(),
        user_id: subject.user_id.clone(),
        auth_time,
        amr: amr.clone(),
        satisfied,
        idp: subject.idp.clone(),
        // A subject without an account lives only in the session: keep its claims.
        claims: if subject.has_account() {
            Default::default()
        } else {
            subject.claims.clone()
        },
        clients,
        created_at: same.map(|(_, s)| s.created_at).unwrap_or(now),
        expires_at: same
            .map(|(_, s)| s.expires_at)
            .unwrap_or(now + ctx.config.security.session_ttl),
        // What the upstream asserted at the sign-in that made the session: for a
        // silent one, the session's own (its subject was rebuilt from it).
        asserted: subject.asserted.clone(),
    };
    // A fresh sign-in gets a fresh session id (no fixation); SSO keeps the one it has.
    let (cookie, session_hash) = match (same, interactive) {
        (Some((hash, _)), false) => (None, hash.clone()),
        _ => {
            let value = random_token(32);
            let hash = token_hash(&value);
            (Some(value), hash)
        }
    };
    let sid = b64url(&sha256(session_hash.as_bytes())[..16]);
    // A silent sign-in keeps the browser's session: it changes nothing when the app is
    // one the session knows (no write at all), else it is updated only if it is still
    // there, so a sign-out on another node since this request read it stays done (the
    // code then names an ended session, and its exchange is refused).
    match same {
        Some((hash, s)) if *hash == session_hash => {
            if *s != new_session
                && !ctx
                    .store
                    .update_session(&session_hash, &new_session)
                    .await?
            {
                flow.log("the session ended while signing in");
            }
        }
        _ => ctx.store.put_session(&session_hash, &new_session).await?,
    }
    if let Some(old) = session.map(|s| &s.hash).filter(|old| **old != session_hash) {
        // The same subject signing in again keeps its apps: their grants move to the
        // new session before the old one ends (else their next refresh would find no
        // session). Another subject's grants end with the old session.
        if same.is_some() {
            ctx.store
                .move_session_grants(old, &session_hash, &sid)
                .await?;
        }
        ctx.store.delete_session(old).await?;
    }

    let code = random_token(32);
    let record = CodeRecord {
        client_id: app.client_id.clone(),
        redirect_uri: flow.request.redirect_uri.clone(),
        code_challenge: flow.request.code_challenge.clone(),
        nonce: flow.request.nonce.clone(),
        scopes: flow.request.scopes.clone(),
        grant: GrantData {
            sub: subject.sub.clone(),
            user_id: subject.user_id.clone(),
            auth_time,
            amr,
            claims: flow.token_claims(),
            sid: Some(sid),
            session: Some(session_hash.clone()),
        },
        expires_at: now + ctx.config.security.code_ttl,
        redeemed_by: None,
    };
    flow.log(format!("signed in as {}", subject.sub));
    // The code and the sign-in's audit trail are written together, first: if they
    // cannot be, the sign-in fails with its flow still there to try again.
    let mut events = vec![audit_event(ctx, flow, "success")];
    events.extend(crate::audit::skipped_mfa_events(app, flow, now));
    ctx.store
        .put_code_with_events(&token_hash(&code), &record, &events)
        .await?;
    if let (Some(id), true) = (&subject.user_id, interactive) {
        // The whole sign-in succeeded: the account's consecutive failures are forgiven.
        // Not before: passing the password again must not buy new guesses at the
        // second factor. Not on SSO alone: nothing was proven just now.
        crate::authn::attempts::forgive_account(ctx.store, id).await?;
    }
    if !flow.unsaved {
        ctx.store.delete_flow(&flow.id).await?;
    }
    let redirect = response_url(
        &flow.request.redirect_uri,
        &crate::oidc::issuer(ctx.config),
        flow.request.state.as_deref(),
        Ok(&code),
    )
    .ok_or_else(|| CoreError::Internal("registered redirect URI does not parse".into()))?;
    Ok(Completed::Issued {
        redirect,
        new_session: cookie,
        record: Box::new(record),
    })
}
