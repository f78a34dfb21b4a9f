//! The client in front of each request: its address, decided once here from the TCP peer
//! and (behind a trusted proxy) the forwarded header, and the per-address throttles
//! checked against it before any handler runs.
//!
//! [`admit`] is one middleware layer: it decides the address, leaves it in the request's
//! extensions as [`ClientAddr`] for everything after it (the flow's `ip` that scripts
//! and audit lines read comes from there, through `ClientInfo`), and refuses a request
//! of a throttled kind that is over its limit — 429 with `Retry-After`, as OAuth or SCIM
//! JSON on the machine endpoints and as a page in the browser. Email sends are
//! throttled where they happen ([`email_allowed`]), since showing a page can send one.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ErrorStyle;
use super::{AppState, Shared, WebError};
use crate::client_addr;
use crate::config::{Config, ServerSettings};
use crate::oidc::{ErrorCode, OAuthError};
use crate::scim::ScimError;
use crate::throttle::{self, Admission, Class};

/// The client address of this request, as decided by [`admit`]. Absent only when the
/// router is driven without a socket (there is no peer to name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The request came from one of `server.trusted_proxies` (its socket's peer): what the
/// proxy put in its headers can be believed, as far as the proxy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromTrustedProxy(pub bool);

/// The client address of a request from `peer` with `headers`, under `server`.
fn decide(server: &ServerSettings, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    if server.trusted_proxies.is_empty() {
        return peer.to_canonical();
    }
    // A value that is not text is garbage from the client or a broken proxy; any such
    // occurrence makes the whole header unreadable, so the peer is used.
    let mut values = Vec::new();
    for v in headers.get_all(server.forwarded_header.name()) {
        match v.to_str() {
            Ok(text) => values.push(text),
            Err(_) => return peer.to_canonical(),
        }
    }
    client_addr::decide(
        peer,
        server.forwarded_header,
        &values,
        &server.trusted_proxies,
    )
}

/// Which throttle a request counts against, by method and route (the path without the
/// issuer's base path); `None` for requests that are not throttled.
fn class_of(method: &Method, path: &str, base: &str) -> Option<Class> {
    let path = path.strip_prefix(base).unwrap_or(path);
    if path.starts_with("/scim/") || path.starts_with("/admin/") {
        return Some(Class::Api);
    }
    if method != Method::POST {
        return None;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        // Each checks a client secret: one throttle for all three.
        ["token" | "revoke" | "introspect"] => Some(Class::Token),
        ["signup", _] => Some(Class::SignUp),
        // A reset request mails a code; a reset or a sign-up's verification guesses one.
        ["login", _, "forgot"] => Some(Class::Email),
        ["login", _, "password" | "totp" | "email_otp" | "recovery_code" | "federation" | "reset"]
        | ["signup", _, "verify"] => Some(Class::SignIn),
        ["myaccount", "password" | "totp"] | ["myaccount", "email", "confirm"] => {
            Some(Class::SignIn)
        }
        ["myaccount", "email"] => Some(Class::Email),
        _ => None,
    }
}

/// Count a request of `class` from `client`; the seconds to wait when it is over the
/// limit.
async fn check(
    state: &AppState,
    config: &Config,
    class: Class,
    client: IpAddr,
    now: u64,
) -> Result<Option<u64>, WebError> {
    let tag = throttle::client_tag(&state.client_key, client);
    match throttle::admit(
        state.store.as_ref(),
        &config.security.throttle,
        class,
        &tag,
        now,
    )
    .await?
    {
        Admission::Allowed => Ok(None),
        Admission::Refused { retry_after } => {
            tracing::info!(class = class.name(), %client, retry_after, "throttled");
            Ok(Some(retry_after))
        }
    }
}

/// The refusal of a throttled request, in its route's words.
fn too_many(class: Class, retry_after: u64, style: ErrorStyle) -> WebError {
    let wait = if retry_after < 120 {
        format!("{retry_after} seconds")
    } else {
        format!("{} minutes", retry_after.div_ceil(60))
    };
    let error = match style {
        ErrorStyle::OAuth => WebError::OAuth {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                format!("too many requests from this address; retry after {retry_after} seconds"),
            ),
            challenge: None,
        },
        ErrorStyle::Scim => WebError::scim(ScimError::new(
            429,
            None,
            format!("too many requests from this address; retry after {retry_after} seconds"),
        )),
        ErrorStyle::Page => {
            let what = match class {
                Class::SignIn => "sign-in attempts",
                Class::SignUp => "sign-ups",
                Class::Email => "emailed codes",
                Class::Token | Class::Api => "requests",
            };
            WebError::page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("There were too many {what} from your network in a short time. Please wait {wait} and try again."),
            )
            .with_hint("Nothing about your account has changed. If you share your network with many people, your administrator can raise this limit.")
        }
    };
    WebError::RetryAfter {
        error: Box::new(error),
        seconds: retry_after,
    }
}

/// Middleware: decide the client address once, and hold back requests over their
/// throttle.
pub async fn admit(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let config = state.config();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(peer) = peer else {
        return next.run(req).await;
    };
    let client = decide(&config.server, peer, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    let proxied = config
        .server
        .trusted_proxies
        .iter()
        .any(|c| c.contains(peer.to_canonical()));
    req.extensions_mut().insert(FromTrustedProxy(proxied));
    let base = config.issuer.path().trim_end_matches('/');
    let Some(class) = class_of(req.method(), req.uri().path(), base) else {
        return next.run(req).await;
    };
    let style = ErrorStyle::of(req.uri().path(), base);
    let request_id = super::request_id::RequestId::of(&req);
    match check(&state, &config, class, client, state.now()).await {
        Ok(None) => next.run(req).await,
        Ok(Some(retry_after)) => {
            state.error_response(too_many(class, retry_after, style), style, &request_id)
        }
        Err(e) => state.error_response(e, style, &request_id),
    }
}

/// Whether the address that started `flow` may be sent another email code now; the
/// refusal page when not. A flow without an address (no socket) is not throttled.
pub(crate) async fn email_allowed(
    state: &AppState,
    config: &Config,
    flow_ip: &str,
    now: u64,
) -> Result<(), WebError> {
    let Ok(client) = flow_ip.parse::<IpAddr>() else {
        return Ok(());
    };
    match check(state, config, Class::Email, client, now).await? {
        None => Ok(()),
        Some(retry_after) => Err(too_many(Class::Email, retry_after, ErrorStyle::Page)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn throttled_routes_are_the_guessing_signing_up_and_machine_ones() {
        let post = Method::POST;
        let get = Method::GET;
        let c = |m: &Method, p: &str| class_of(m, p, "");
        assert_eq!(c(&post, "/login/f1/password"), Some(Class::SignIn));
        assert_eq!(c(&post, "/login/f1/totp"), Some(Class::SignIn));
        assert_eq!(c(&post, "/login/f1/email_otp"), Some(Class::SignIn));
        assert_eq!(c(&post, "/login/f1/recovery_code"), Some(Class::SignIn));
        assert_eq!(c(&post, "/login/f1/federation"), Some(Class::SignIn));
        assert_eq!(c(&post, "/myaccount/password"), Some(Class::SignIn));
        assert_eq!(c(&post, "/signup/f1"), Some(Class::SignUp));
        assert_eq!(c(&post, "/signup/f1/verify"), Some(Class::SignIn));
        assert_eq!(c(&post, "/login/f1/forgot"), Some(Class::Email));
        assert_eq!(c(&post, "/myaccount/email"), Some(Class::Email));
        assert_eq!(c(&post, "/myaccount/email/confirm"), Some(Class::SignIn));
        assert_eq!(c(&post, "/login/f1/reset"), Some(Class::SignIn));
        assert_eq!(c(&get, "/login/f1/forgot"), None);
        assert_eq!(c(&post, "/token"), Some(Class::Token));
        assert_eq!(c(&post, "/revoke"), Some(Class::Token));
        assert_eq!(c(&post, "/introspect"), Some(Class::Token));
        assert_eq!(c(&get, "/scim/v2/Users"), Some(Class::Api));
        assert_eq!(c(&post, "/admin/v1/users/u1/reset-totp"), Some(Class::Api));
        assert_eq!(
            class_of(&post, "/idp/login/f1/password", "/idp"),
            Some(Class::SignIn)
        );
        // Pages, picks and cancels are not guessing.
        assert_eq!(c(&get, "/login/f1"), None);
        assert_eq!(c(&post, "/login/f1/pick"), None);
        assert_eq!(c(&post, "/login/f1/cancel"), None);
        assert_eq!(c(&get, "/signup/f1"), None);
        assert_eq!(c(&get, "/authorize"), None);
        assert_eq!(c(&post, "/login/f1/password/extra"), None);
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let none = ServerSettings::default();
        assert_eq!(decide(&none, peer, &headers), peer);
        let trusted = ServerSettings {
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            ..ServerSettings::default()
        };
        assert_eq!(
            decide(&trusted, peer, &headers),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Bytes that are not text fall back to the peer.
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(decide(&trusted, peer, &headers), peer);
    }
}
