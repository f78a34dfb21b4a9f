//! What both stand-ins share between the authorization request and the token request:
//! the pending request behind the consent page, the consent form's POST, codes (single
//! use, bound to client, redirect URI, PKCE and nonce) and redirects back to the client.
//!
//! The pending request lives on the server under a random id carried by the form's one
//! hidden field, so the page works for a cookie-less test client and the id doubles as
//! the form's anti-forgery token: it is unguessable and usable once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use url::Url;

use super::params::Params;
use super::{
    lock, pages, AccessGrant, Grant, Kind, Pending, Redeemed, Shared, ACCESS_TTL, CODE_TTL,
    PENDING_TTL,
};
use crate::crypto::{random_token, unix_now};

/// GitHub's documented page for this error; clients may show or log it.
const GITHUB_ACCESS_DENIED_URI: &str = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied";

/// Check the two things that must hold before any error may be sent back by redirect
/// (RFC 6749 §4.1.2.1): the client is known and the redirect URI is usable. Returns the
/// redirect URI, or the reason to show the user on an error page instead.
pub(super) fn client_and_redirect(shared: &Shared, params: &Params) -> Result<String, String> {
    if let Some(name) = params.duplicate() {
        return Err(format!("The parameter {name} appears more than once."));
    }
    match params.get("client_id") {
        Some(id) if id == shared.client_id => {}
        Some(id) => return Err(format!("This stand-in does not know the client {id:?}.")),
        None => return Err("The request has no client_id.".into()),
    }
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return Err("The request has no redirect_uri.".into());
    };
    match Url::parse(redirect_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.fragment().is_none() => {
            Ok(redirect_uri.to_string())
        }
        _ => Err("The redirect_uri is not an absolute http(s) URL without a fragment.".into()),
    }
}

/// The `iss` to put on a redirect: the fault override, else the issuer for OIDC and
/// nothing for GitHub.
fn iss_param(shared: &Shared) -> Option<String> {
    shared.faults().iss_param.or_else(|| match shared.kind {
        Kind::Oidc => Some(shared.issuer.clone()),
        Kind::Github => None,
    })
}

/// A 303 to `redirect_uri` with `pairs` added to its query (plus `iss`, when sent).
pub(super) fn redirect(shared: &Shared, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return pages::error(StatusCode::BAD_REQUEST, "The redirect_uri is not a URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(iss) = iss_param(shared) {
            query.append_pair("iss", &iss);
        }
    }
    Redirect::to(url.as_str()).into_response()
}

/// An OAuth error sent back to the client by redirect, with the request's `state`.
pub(super) fn error_redirect(
    shared: &Shared,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    redirect(shared, redirect_uri, &pairs)
}

/// Keep a request until the user decides; returns the id the form carries.
pub(super) fn hold(shared: &Shared, mut pending: Pending, now: u64) -> String {
    pending.expires_at = now + PENDING_TTL;
    let id = random_token(32);
    let mut map = lock(&shared.pending);
    map.retain(|_, p| p.expires_at > now);
    map.insert(id.clone(), pending);
    id
}

/// `POST` of the consent form: `request` (the pending id), `user` (a user id) and
/// `decision` (`authorize` or `deny`).
pub(super) async fn consent_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let now = unix_now();
    let form = Params::parse(&body);
    let decision = form.get("decision");
    if !matches!(decision, Some("authorize" | "deny")) {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "The form must say decision=authorize or decision=deny.",
        );
    }
    let user = match (decision, form.get("user")) {
        (Some("authorize"), Some(id)) => match shared.user(id) {
            Some(user) => Some(user),
            None => return pages::error(StatusCode::BAD_REQUEST, "No such user on this stand-in."),
        },
        (Some("authorize"), None) => {
            return pages::error(StatusCode::BAD_REQUEST, "Choose a user to sign in as.")
        }
        _ => None,
    };
    // Taken out only now, so a form with a missing field can be corrected and resent.
    let pending = form
        .get("request")
        .and_then(|id| lock(&shared.pending).remove(id))
        .filter(|p| p.expires_at > now);
    let Some(pending) = pending else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "This sign-in request is unknown, used or expired. Start again from the application.",
        );
    };
    let state = pending.state.as_deref();
    let Some(user) = user else {
        return deny(&shared, &pending.redirect_uri, state);
    };
    let code = issue_code(
        &shared,
        Grant {
            user_id: user.id,
            redirect_uri: pending.redirect_uri.clone(),
            nonce: pending.nonce.clone(),
            scope: pending.scope.clone(),
            code_challenge: pending.code_challenge.clone(),
            expires_at: now + CODE_TTL,
        },
        now,
    );
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    redirect(&shared, &pending.redirect_uri, &pairs)
}

/// The user pressed Deny: each provider's own shape of `access_denied`.
fn deny(shared: &Shared, redirect_uri: &str, state: Option<&str>) -> Response {
    match shared.kind {
        Kind::Oidc => error_redirect(
            shared,
            redirect_uri,
            state,
            "access_denied",
            "The user declined to sign in.",
        ),
        Kind::Github => {
            let mut pairs = vec![
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                ("error_uri", GITHUB_ACCESS_DENIED_URI),
            ];
            if let Some(state) = state {
                pairs.push(("state", state));
            }
            redirect(shared, redirect_uri, &pairs)
        }
    }
}

fn issue_code(shared: &Shared, grant: Grant, now: u64) -> String {
    let code = match shared.kind {
        Kind::Oidc => format!("4/{}", random_token(32)),
        // GitHub's codes are 20 hexadecimal characters.
        Kind::Github => {
            let mut bytes = [0u8; 10];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            hex::encode(bytes)
        }
    };
    let mut codes = lock(&shared.codes);
    codes.retain(|_, g| g.expires_at > now);
    codes.insert(code.clone(), grant);
    code
}

/// Why a code cannot be redeemed.
pub(super) enum Refused {
    /// Never issued, or expired.
    Unknown,
    /// Already redeemed; whatever it produced has now been revoked.
    Reused,
}

/// Take a code out for redemption. Codes are single-use: the first caller gets the
/// grant (whether or not the rest of its request checks out), a later one gets
/// [`Refused::Reused`] and revokes whatever the first one obtained.
pub(super) fn take_code(shared: &Shared, code: &str, now: u64) -> Result<Grant, Refused> {
    // Lock order: codes, then redeemed, then tokens.
    let mut codes = lock(&shared.codes);
    let mut redeemed = lock(&shared.redeemed);
    if let Some(grant) = codes.remove(code) {
        redeemed.retain(|_, r| r.expires_at > now);
        redeemed.insert(
            code.to_string(),
            Redeemed {
                access_token: None,
                expires_at: now + ACCESS_TTL,
            },
        );
        return if grant.expires_at > now {
            Ok(grant)
        } else {
            Err(Refused::Unknown)
        };
    }
    match redeemed.remove(code) {
        Some(first) => {
            if let Some(token) = first.access_token {
                lock(&shared.tokens).remove(&token);
            }
            Err(Refused::Reused)
        }
        None => Err(Refused::Unknown),
    }
}

/// Activate the access token a redeemed code produced, remembering it for revocation
/// on reuse. False when a reuse has revoked the code in the meantime.
pub(super) fn activate_token(
    shared: &Shared,
    code: &str,
    access_token: &str,
    grant: AccessGrant,
) -> bool {
    let mut redeemed = lock(&shared.redeemed);
    let Some(entry) = redeemed.get_mut(code) else {
        return false;
    };
    entry.access_token = Some(access_token.to_string());
    lock(&shared.tokens).insert(access_token.to_string(), grant);
    true
}
