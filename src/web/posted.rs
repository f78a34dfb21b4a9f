//! The preamble of every form posted to a sign-in in progress (`/login/{flow}/…`,
//! `/signup/{flow}`): read the form, check its CSRF token against the browser cookie,
//! and load the flow for that browser. A handler that takes a [`Posted`] starts where
//! its own work starts; a refused form never reaches it.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRequest, FromRequestParts, Path, Request};
use axum_extra::extract::cookie::CookieJar;
use serde::de::DeserializeOwned;

use super::login::{current_step, CurrentStep};
use super::{cookies, Shared, WebError};
use crate::config::Config;
use crate::flow::Flow;

/// A form posted to a sign-in in progress, with the flow it belongs to.
pub(crate) struct Posted<T> {
    pub form: T,
    pub flow: Flow,
    /// The config snapshot this request uses throughout.
    pub config: Arc<Config>,
    /// The request's time, read once.
    pub now: u64,
    pub jar: CookieJar,
}

impl<T> Posted<T> {
    /// The step the flow waits on, and its options (recording what the SSO session
    /// satisfies).
    pub async fn current_step(&mut self, state: &Shared) -> Result<Option<CurrentStep>, WebError> {
        current_step(state, &self.config, &self.jar, &mut self.flow, self.now).await
    }
}

impl<T: DeserializeOwned + Send> FromRequest<Shared> for Posted<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, WebError> {
        let (mut parts, body) = req.into_parts();
        let Path(id) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| WebError::flow_lost())?;
        let jar = CookieJar::from_headers(&parts.headers);
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|_| WebError::bad_request("The form could not be read."))?;
        let csrf = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        let config = state.config();
        let now = state.now();
        let browser = cookies::get(&jar, &config, cookies::BROWSER);
        if !state.csrf_ok(browser.as_deref(), csrf.as_deref()) {
            return Err(WebError::csrf());
        }
        let Form(form) =
            Form::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), state)
                .await
                .map_err(|_| WebError::bad_request("The form could not be read."))?;
        let flow = state.load_flow(&id, browser.as_deref(), now).await?;
        Ok(Posted {
            form,
            flow,
            config,
            now,
            jar,
        })
    }
}
