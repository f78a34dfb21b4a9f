//! Extractors for the preambles handlers would otherwise repeat: the core's view of
//! the request ([`Core`]), an admin API caller whose token carries the endpoint's
//! scope ([`Caller`]), and My Account's signed-in account, alone ([`Account`]) or
//! with a CSRF-checked form ([`AccountForm`]). Each refuses in the words its route
//! speaks: SCIM and OAuth errors for machines, pages and redirects for browsers.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::account::{built_in, home};
use super::{cookies, see_other, AppState, Shared, WebError};
use crate::account::access::{self, Signed};
use crate::account::notify::By;
use crate::authn::sealing::SealingKey;
use crate::config::{ApiScope, Config};
use crate::context::Ctx;
use crate::oidc::client_credentials::{self, Denied, ServiceToken};
use crate::oidc::keys::Keys;
use crate::scim::ScimError;
use crate::store::Store;

/// What the core needs for this request: one config snapshot, the store, the keys,
/// and the request's time, read once.
#[derive(Clone)]
pub(crate) struct Core {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    pub sealing: Arc<SealingKey>,
    pub now: u64,
}

impl Core {
    pub(crate) fn of(state: &AppState) -> Core {
        Core {
            config: state.config(),
            store: state.store.clone(),
            keys: state.keys.current(),
            sealing: state.sealing.clone(),
            now: state.now(),
        }
    }

    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            store: self.store.as_ref(),
            now: self.now,
        }
    }
}

impl FromRequestParts<Shared> for Core {
    type Rejection = Infallible;

    async fn from_request_parts(_: &mut Parts, state: &Shared) -> Result<Self, Infallible> {
        Ok(Core::of(state))
    }
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// What an admin API endpoint asks of its callers, and how it refuses them.
pub(crate) trait Guard {
    const SCOPE: ApiScope;
    fn refuse(denied: Denied) -> WebError;
}

fn challenge(denied: &Denied) -> HeaderValue {
    HeaderValue::from_str(&denied.challenge()).unwrap_or(HeaderValue::from_static("Bearer"))
}

/// SCIM: scope `scim`, refusals as SCIM error documents.
pub(crate) struct ScimScope;

impl Guard for ScimScope {
    const SCOPE: ApiScope = ApiScope::Scim;
    fn refuse(denied: Denied) -> WebError {
        let status = match denied {
            Denied::Unauthenticated => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        WebError::scim(ScimError::new(status.as_u16(), None, denied.message()))
            .with_challenge(challenge(&denied))
    }
}

/// The admin API's user operations: scope `scim`, refusals as OAuth errors.
pub(crate) struct AdminScope;

impl Guard for AdminScope {
    const SCOPE: ApiScope = ApiScope::Scim;
    fn refuse(denied: Denied) -> WebError {
        WebError::oauth(denied.error()).with_challenge(challenge(&denied))
    }
}

/// The audit trail: scope `audit`, refusals as OAuth errors.
pub(crate) struct AuditScope;

impl Guard for AuditScope {
    const SCOPE: ApiScope = ApiScope::Audit;
    fn refuse(denied: Denied) -> WebError {
        WebError::oauth(denied.error()).with_challenge(challenge(&denied))
    }
}

/// An admin API caller whose bearer token is good and carries `G::SCOPE`.
pub(crate) struct Caller<G> {
    pub client: ServiceToken,
    guard: PhantomData<G>,
}

impl<G: Guard> FromRequestParts<Shared> for Caller<G> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, WebError> {
        let token = bearer(&parts.headers);
        let config = state.config();
        client_credentials::admit(
            &config,
            &state.keys.current(),
            state.now(),
            token.as_deref(),
            G::SCOPE,
        )
        .map(|client| Caller {
            client,
            guard: PhantomData,
        })
        .map_err(G::refuse)
    }
}

/// The My Account user of this browser, if signed in; a 404 page when My Account is
/// switched off.
pub(crate) async fn signed_in(core: &Core, jar: &CookieJar) -> Result<Option<Signed>, WebError> {
    built_in(&core.config)?;
    let token = cookies::get(jar, &core.config, cookies::ACCOUNT);
    let session = cookies::get(jar, &core.config, cookies::SESSION);
    Ok(access::signed_in(
        &core.ctx(),
        &core.keys,
        token.as_deref(),
        session.as_deref(),
    )
    .await?)
}

/// The signed-in My Account user; a browser that is not is sent to My Account's
/// start, which signs it in.
pub(crate) struct Account {
    pub signed: Signed,
    /// The browser cookie, which the page's CSRF tokens are bound to.
    pub browser: String,
}

impl FromRequestParts<Shared> for Account {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let core = Core::of(state);
        let jar = CookieJar::from_headers(&parts.headers);
        match signed_in(&core, &jar)
            .await
            .map_err(IntoResponse::into_response)?
        {
            Some(signed) => Ok(Account {
                signed,
                browser: cookies::get(&jar, &core.config, cookies::BROWSER).unwrap_or_default(),
            }),
            None => Err(see_other(&home(&core.config))),
        }
    }
}

#[derive(Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

/// A form whose CSRF token (field `csrf`) matches this browser; the token itself is
/// left out of `T`.
pub(crate) struct CsrfForm<T>(pub T);

/// The form's fields, its CSRF token, and the browser's cookies.
async fn csrf_form<T: DeserializeOwned>(
    req: Request,
    state: &Shared,
) -> Result<(CookieJar, String, T), Response> {
    let jar = CookieJar::from_headers(req.headers());
    let Form(WithCsrf { csrf, form }) = Form::<WithCsrf<T>>::from_request(req, state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((jar, csrf, form))
}

fn check_csrf(
    state: &Shared,
    config: &Config,
    jar: &CookieJar,
    csrf: &str,
) -> Result<(), WebError> {
    let browser = cookies::get(jar, config, cookies::BROWSER);
    if state.csrf_ok(browser.as_deref(), Some(csrf)) {
        Ok(())
    } else {
        Err(WebError::csrf())
    }
}

impl<T: DeserializeOwned + Send> FromRequest<Shared> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Response> {
        let (jar, csrf, form) = csrf_form(req, state).await?;
        check_csrf(state, &state.config(), &jar, &csrf).map_err(IntoResponse::into_response)?;
        Ok(CsrfForm(form))
    }
}

/// A My Account form from the signed-in user. The CSRF token is checked before the
/// account, so a forged form learns nothing about the session; a browser that is not
/// signed in is sent to My Account's start.
pub(crate) struct AccountForm<T> {
    pub signed: Signed,
    pub form: T,
    /// Where the form came from (the client address decided once) and the mailer, for
    /// the notice of a change.
    pub by: By,
}

impl<T: DeserializeOwned + Send> FromRequest<Shared> for AccountForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Response> {
        let client = req
            .extensions()
            .get::<super::client::ClientAddr>()
            .map(|c| c.0);
        let (jar, csrf, form) = csrf_form(req, state).await?;
        let core = Core::of(state);
        built_in(&core.config).map_err(IntoResponse::into_response)?;
        check_csrf(state, &core.config, &jar, &csrf).map_err(IntoResponse::into_response)?;
        match signed_in(&core, &jar)
            .await
            .map_err(IntoResponse::into_response)?
        {
            Some(signed) => Ok(AccountForm {
                signed,
                form,
                by: By {
                    client,
                    mailer: Some(state.mailer()),
                },
            }),
            None => Err(see_other(&home(&core.config))),
        }
    }
}
