//! A sign-in in progress, kept in the store between requests: started from a validated
//! authorization request, bound to the browser that started it, loaded back only by
//! that browser and only until it expires. The shell holds nothing but the flow's id
//! (in the URL) and the browser cookie.

use super::{CoreError, CoreResult, Ctx};
use crate::authn::steps;
use crate::config::{App, Config};
use crate::crypto::{time_prefixed_id, token_hash};
use crate::flow::{password_fingerprint, Flow, SessionView, Subject};
use crate::oidc::authorize::AuthRequest;
use crate::secret::ct_eq;
use crate::store::{Account, Session, StoreResult};

/// Who started a sign-in: the client's address and user agent (for scripts), and the
/// browser cookie the flow is bound to.
#[derive(Debug, Clone, Default)]
pub struct Starter {
    pub ip: String,
    pub user_agent: String,
    pub browser: String,
    /// The request headers the app lets its script see (`sign_in.request_headers`),
    /// lower-case name → value.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Start a sign-in for a validated authorization request. `record` keeps what a
/// recording server writes as a fixture when the sign-in ends.
pub fn start(
    ctx: Ctx<'_>,
    request: AuthRequest,
    app: &App,
    starter: Starter,
    record: bool,
) -> Flow {
    let mut flow = Flow::new(
        time_prefixed_id(ctx.now),
        request,
        app,
        token_hash(&starter.browser),
        ctx.now,
        ctx.config.security.flow_ttl,
    );
    flow.ip = starter.ip;
    flow.user_agent = starter.user_agent;
    flow.headers = starter.headers;
    if record {
        flow.recording = Some(Default::default());
    }
    flow
}

/// The flow `id` for the browser with cookie `browser`: `None` when it is gone, has
/// expired, or belongs to another browser (all the same to the user).
pub async fn load(ctx: Ctx<'_>, id: &str, browser: Option<&str>) -> StoreResult<Option<Flow>> {
    let Some(bytes) = ctx.store.flow(id).await? else {
        return Ok(None);
    };
    let Ok(flow) = serde_json::from_slice::<Flow>(&bytes) else {
        return Ok(None);
    };
    let bound = browser.is_some_and(|b| ct_eq(token_hash(b).as_bytes(), flow.browser.as_bytes()));
    if !bound || flow.expires_at <= ctx.now {
        return Ok(None);
    }
    if !password_still_current(ctx, &flow).await? {
        // The password this sign-in passed has been changed (a reset, My Account)
        // since: whoever typed the old one goes no further.
        ctx.store.delete_flow(&flow.id).await?;
        return Ok(None);
    }
    Ok(Some(flow))
}

/// Whether the password the flow passed is still the account's.
async fn password_still_current(ctx: Ctx<'_>, flow: &Flow) -> StoreResult<bool> {
    let (Some(seen), Some(user_id)) = (
        &flow.password_seen,
        flow.subject().and_then(|s| s.user_id.as_deref()),
    ) else {
        return Ok(true);
    };
    let current = ctx.store.user(user_id).await?.and_then(|u| u.password_hash);
    Ok(current.is_some_and(|h| ct_eq(password_fingerprint(&h).as_bytes(), seen.as_bytes())))
}

/// Keep the flow for the next request.
pub async fn save(ctx: Ctx<'_>, flow: &mut Flow) -> CoreResult<()> {
    let bytes = serde_json::to_vec(flow).map_err(|e| CoreError::Internal(e.to_string()))?;
    ctx.store.put_flow(&flow.id, &bytes).await?;
    flow.unsaved = false;
    Ok(())
}

/// The browser's live SSO session, read with its account in one store call.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The store key: the hash of the cookie value.
    pub hash: String,
    pub session: Session,
    /// The session as a policy sees it; `None` when its account was disabled or
    /// deleted (it stands in for nobody). A `Some` with an account means this request
    /// found that account live.
    pub view: Option<SessionView>,
}

/// The live SSO session named by the browser's cookie: `None` when there is no cookie,
/// no such session, or it has expired.
pub async fn live_session(ctx: Ctx<'_>, cookie: Option<&str>) -> StoreResult<Option<LiveSession>> {
    let Some(value) = cookie else { return Ok(None) };
    let hash = token_hash(value);
    let Some((session, account)) = ctx.store.session_with_account(&hash).await? else {
        return Ok(None);
    };
    if session.expires_at <= ctx.now {
        return Ok(None);
    }
    let mut view = session_view(ctx.config, &session, account.as_ref());
    if let (Some(v), Some(a)) = (view.as_mut(), account.as_ref()) {
        if v.subject.user_id.is_some() {
            // What a script reads of the account; this browser's own session is not
            // one of the user's other sessions.
            steps::script_view(
                ctx.store,
                ctx.config,
                &mut v.subject,
                &a.user,
                ctx.now,
                Some(&hash),
            )
            .await?;
        }
    }
    Ok(Some(LiveSession {
        hash,
        session,
        view,
    }))
}

/// The SSO session as the interpreter sees it, its subject rebuilt from the account
/// read with it (`account`). `None` when the session names an account that is
/// disabled or gone.
pub fn session_view(
    config: &Config,
    session: &Session,
    account: Option<&Account>,
) -> Option<SessionView> {
    let mut subject = match (&session.user_id, account) {
        (Some(id), Some(a)) if a.user.id == *id && !a.user.disabled => {
            let mut s = steps::account_subject(config, a);
            s.idp = session.idp.clone();
            s
        }
        (Some(_), _) => return None,
        (None, _) => Subject {
            sub: session.sub.clone(),
            idp: session.idp.clone(),
            claims: session.claims.clone(),
            ..Subject::default()
        },
    };
    // The upstream's names as at the sign-in that made the session, beside the
    // account's own groups as they are now.
    subject.asserted = session.asserted.clone();
    session
        .asserted
        .add_to(&mut subject.groups, &mut subject.roles);
    Some(SessionView {
        subject,
        auth_time: session.auth_time,
        expires_at: session.expires_at,
        satisfied: session.satisfied.clone(),
    })
}
