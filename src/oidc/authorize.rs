//! The authorization request: parsing and validating it before any page is shown.
//!
//! Until the client and its redirect URI are known to be genuine, nothing may be sent to
//! the redirect URI (that would make Usher an open redirector), so those failures are
//! [`AuthorizeError::Page`]; everything after is reported to the client by redirect.
//!
//! Every parameter is bounded (`crate::limits`) before anything keeps it: an oversized
//! `client_id` or `redirect_uri` cannot be verified, so it gets the page; once the
//! redirect URI is verified, any other parameter over its cap, or more parameters than
//! [`PARAMS_MAX`], is `invalid_request` at the redirect URI, and a `state` over its cap
//! is not echoed back. A refused request starts no flow, so it stores nothing.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{ErrorCode, OAuthError};
use crate::config::{App, Config};
use crate::limits::{self, PARAMS_MAX};

/// A validated authorization request, kept in the flow until the code is issued.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthRequest {
    pub app_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    /// S256 challenge (the only method accepted).
    pub code_challenge: Option<String>,
    /// `prompt` values: `none`, `login`, `consent`, `select_account`.
    pub prompt: Vec<String>,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    pub acr_values: Vec<String>,
}

impl AuthRequest {
    pub fn prompt_none(&self) -> bool {
        self.prompt.iter().any(|p| p == "none")
    }

    pub fn prompt_login(&self) -> bool {
        self.prompt.iter().any(|p| p == "login")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeError {
    /// Shown to the user; never a redirect.
    Page(String),
    /// Sent back to the client's (verified) redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// Find the app a `client_id` names.
pub fn app_by_client_id<'c>(config: &'c Config, client_id: &str) -> Option<&'c Arc<App>> {
    config.apps.values().find(|a| a.client_id == client_id)
}

/// Exact match of a redirect URI against the registered ones, character for character
/// with the registered URI as Usher writes it: `/cb/`, `/cb?x=1`, `/CB`, `/x/../cb`,
/// `%63b` and an explicit default port all differ from `/cb`. The one leniency is a
/// bare origin, registered or presented with or without its `/`.
pub fn registered_redirect(registered: &[Url], presented: &str) -> bool {
    registered.iter().any(|r| {
        let written = r.as_str();
        presented == written
            || (r.path() == "/"
                && r.query().is_none()
                && written.strip_suffix('/') == Some(presented))
    })
}

fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The cap on the value of the parameter `name`, in bytes.
fn cap(name: &str) -> usize {
    match name {
        "state" => limits::STATE_MAX,
        "nonce" => limits::NONCE_MAX,
        "login_hint" => limits::LOGIN_HINT_MAX,
        "acr_values" => limits::ACR_VALUES_MAX,
        "scope" => limits::SCOPE_MAX,
        "redirect_uri" => limits::URL_MAX,
        "client_id" => limits::CLIENT_ID_MAX,
        "code_challenge" => limits::CODE_CHALLENGE_MAX,
        _ => limits::PARAM_MAX,
    }
}

/// What is over its cap in `params`, if anything: too many parameters, a name too long,
/// or the first value found over its cap. The message names the parameter, never its
/// value.
pub fn over_caps(params: &HashMap<String, String>) -> Option<String> {
    if params.len() > PARAMS_MAX {
        return Some(format!(
            "the request has {} parameters; at most {PARAMS_MAX} are accepted",
            params.len()
        ));
    }
    params.iter().find_map(|(name, value)| {
        if name.len() > limits::PARAM_NAME_MAX {
            Some(format!(
                "a parameter name is too long (at most {} bytes)",
                limits::PARAM_NAME_MAX
            ))
        } else if value.len() > cap(name) {
            Some(format!("{name} is too long (at most {} bytes)", cap(name)))
        } else {
            None
        }
    })
}

/// Validate the parameters of `/authorize` (query or form, already decoded).
pub fn validate(
    config: &Config,
    params: &HashMap<String, String>,
) -> Result<AuthRequest, AuthorizeError> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    // Checked before the lookup: the page below names the client_id it could not find.
    if get("client_id").is_some_and(|c| c.len() > limits::CLIENT_ID_MAX) {
        return Err(AuthorizeError::Page(
            "The request's client_id is too long to name an application.".into(),
        ));
    }
    let client_id = get("client_id").ok_or_else(|| {
        AuthorizeError::Page("The request names no application (client_id is missing).".into())
    })?;
    let app = app_by_client_id(config, client_id).ok_or_else(|| {
        AuthorizeError::Page(format!(
            "The application `{client_id}` is not registered with this server."
        ))
    })?;
    if !app.allows(crate::config::GrantType::AuthorizationCode) {
        return Err(AuthorizeError::Page(format!(
            "{} is a service client (client_credentials only); it cannot sign users in.",
            app.name
        )));
    }
    let redirect_uri = get("redirect_uri").ok_or_else(|| {
        AuthorizeError::Page(
            "The request has no redirect_uri, so there is nowhere safe to send you back to.".into(),
        )
    })?;
    if redirect_uri.len() > limits::URL_MAX
        || !registered_redirect(&app.redirect_uris, redirect_uri)
    {
        return Err(AuthorizeError::Page(format!(
            "The redirect URI is not registered for {}. Nothing was sent to it.",
            app.name
        )));
    }
    // An oversized state is not sent back: the redirect would carry it.
    let state = get("state")
        .filter(|s| s.len() <= limits::STATE_MAX)
        .map(str::to_string);
    let fail = |code: ErrorCode, d: &str| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_string(),
        state: state.clone(),
        error: OAuthError::new(code, d),
    };
    if let Some(problem) = over_caps(params) {
        return Err(fail(ErrorCode::InvalidRequest, &problem));
    }

    if get("request").is_some() {
        return Err(fail(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if get("request_uri").is_some() {
        return Err(fail(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    match get("response_type") {
        Some("code") => {}
        None => return Err(fail(ErrorCode::InvalidRequest, "response_type is missing")),
        Some(_) => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                "only the authorization code flow (response_type=code) is supported",
            ))
        }
    }
    match get("response_mode") {
        None | Some("query") => {}
        Some(_) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "only response_mode=query is supported",
            ))
        }
    }
    let scopes: Vec<String> = get("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(fail(
            ErrorCode::InvalidScope,
            "the openid scope is required",
        ));
    }

    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge_method without code_challenge",
            ))
        }
        (Some(_), Some("plain")) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "PKCE method plain is not allowed; use S256",
            ))
        }
        (Some(c), Some("S256")) => Some(c),
        // RFC 7636 makes a missing method mean plain, which is refused.
        (Some(_), None) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge_method is required and must be S256",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "unsupported code_challenge_method; use S256",
            ))
        }
    };
    if let Some(c) = code_challenge {
        if !is_pkce_value(c) {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge is malformed",
            ));
        }
    }
    if code_challenge.is_none() && app.is_public() {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "PKCE (code_challenge with S256) is required for public clients",
        ));
    }

    let prompt: Vec<String> = get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for p in &prompt {
        if !matches!(p.as_str(), "none" | "login" | "consent" | "select_account") {
            return Err(fail(
                ErrorCode::InvalidRequest,
                &format!("unknown prompt value `{p}`"),
            ));
        }
    }
    if prompt.len() > 1 && prompt.iter().any(|p| p == "none") {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            fail(
                ErrorCode::InvalidRequest,
                "max_age must be a non-negative integer",
            )
        })?),
    };
    let acr_values = get("acr_values")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();

    Ok(AuthRequest {
        app_id: app.id.clone(),
        client_id: app.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state,
        nonce: get("nonce").map(str::to_string),
        scopes,
        code_challenge: code_challenge.map(str::to_string),
        prompt,
        max_age,
        login_hint: get("login_hint").map(str::to_string),
        acr_values,
    })
}

/// The redirect that carries an authorization response or error back to the client,
/// with `iss` (RFC 9207) so a client talking to several servers can tell them apart.
pub fn response_url(
    redirect_uri: &str,
    issuer: &str,
    state: Option<&str>,
    outcome: Result<&str, &OAuthError>,
) -> Option<Url> {
    let mut url = Url::parse(redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        match outcome {
            Ok(code) => {
                q.append_pair("code", code);
            }
            Err(e) => {
                q.append_pair("error", e.code.as_str());
                q.append_pair("error_description", &e.description);
            }
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly_but_a_bare_origin_takes_its_slash_or_not() {
        let cb = vec![Url::parse("https://shop.example/cb").unwrap()];
        assert!(registered_redirect(&cb, "https://shop.example/cb"));
        for other in [
            "https://shop.example/cb/",
            "https://shop.example:443/cb",
            "https://shop.example/a/../cb",
            "https://SHOP.example/cb",
        ] {
            assert!(!registered_redirect(&cb, other), "{other}");
        }
        let origin = vec![Url::parse("https://shop.example").unwrap()];
        assert!(registered_redirect(&origin, "https://shop.example"));
        assert!(registered_redirect(&origin, "https://shop.example/"));
        assert!(!registered_redirect(&origin, "https://shop.example/x"));
    }

    fn config() -> &'static Config {
        static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        CONFIG.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("usher.yaml");
            std::fs::write(
                &path,
                "issuer: http://localhost:9000\napps:\n  a:\n    name: A\n    client_id: a\n    client_secret: a-secret\n    redirect_uris: [http://localhost:1/cb]\n    sign_in: { steps: [[password]] }\n",
            )
            .unwrap();
            crate::config::load_with_env(&path, &|_| None)
                .unwrap_or_else(|d| panic!("{d}"))
                .config
        })
    }

    fn good() -> HashMap<String, String> {
        [
            ("response_type", "code"),
            ("client_id", "a"),
            ("redirect_uri", "http://localhost:1/cb"),
            ("scope", "openid"),
            ("state", "st"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn every_parameter_one_byte_over_its_cap_is_an_invalid_request() {
        assert!(validate(config(), &good()).is_ok());
        for name in [
            "state",
            "nonce",
            "login_hint",
            "acr_values",
            "scope",
            "code_challenge",
            "prompt",
            "claims",
        ] {
            let mut params = good();
            let len = cap(name) + 1;
            params.insert(name.into(), "a".repeat(len));
            match validate(config(), &params) {
                Err(AuthorizeError::Redirect { state, error, .. }) => {
                    assert_eq!(error.code, ErrorCode::InvalidRequest, "{name}");
                    assert!(error.description.contains(name), "{name}: {error}");
                    let echoed = if name == "state" { None } else { Some("st") };
                    assert_eq!(state.as_deref(), echoed, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // Within the caps: accepted.
        let mut params = good();
        params.insert("state".into(), "s".repeat(limits::STATE_MAX));
        params.insert("login_hint".into(), "h".repeat(limits::LOGIN_HINT_MAX));
        let request = validate(config(), &params).unwrap();
        assert_eq!(request.state.map(|s| s.len()), Some(limits::STATE_MAX));
        // Unverifiable: the page, whatever else is wrong.
        for (name, len) in [("client_id", 257), ("redirect_uri", 2049)] {
            let mut params = good();
            params.insert(name.into(), "a".repeat(len));
            assert!(
                matches!(validate(config(), &params), Err(AuthorizeError::Page(_))),
                "{name}"
            );
        }
        let mut many = good();
        many.extend((0..PARAMS_MAX).map(|i| (format!("x{i}"), String::new())));
        assert!(matches!(
            validate(config(), &many),
            Err(AuthorizeError::Redirect { error, .. }) if error.description.contains("parameters")
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "response_type",
                    "client_id",
                    "redirect_uri",
                    "scope",
                    "state",
                    "nonce",
                    "code_challenge",
                    "code_challenge_method",
                    "prompt",
                    "max_age",
                    "login_hint",
                    "acr_values",
                    "response_mode",
                    "request",
                ])
                .prop_map(str::to_string),
                ".{0,70}",
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "code",
                    "a",
                    "http://localhost:1/cb",
                    "openid",
                    "S256",
                    "none",
                    "login consent",
                    "lI9T0z6eLk2H_VJB9Ep8R_IMoy6HLovf5cqZVO4lNYo",
                ])
                .prop_map(str::to_string),
                ".{0,40}",
                (1usize..6000).prop_map(|n| "x".repeat(n)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the parameters, the answer is a request, a page or a redirect;
            /// what is accepted or echoed back is within its cap.
            #[test]
            fn any_parameters_are_answered_and_kept_within_caps(
                extra in prop::collection::hash_map(name(), value(), 0..40),
                base in any::<bool>(),
            ) {
                let mut params = if base { good() } else { HashMap::new() };
                params.extend(extra);
                match validate(config(), &params) {
                    Ok(r) => {
                        prop_assert!(params.len() <= PARAMS_MAX);
                        prop_assert!(r.state.as_ref().is_none_or(|s| s.len() <= limits::STATE_MAX));
                        prop_assert!(r.nonce.as_ref().is_none_or(|s| s.len() <= limits::NONCE_MAX));
                        prop_assert!(r.login_hint.as_ref().is_none_or(|s| s.len() <= limits::LOGIN_HINT_MAX));
                        prop_assert!(r.scopes.join(" ").len() <= limits::SCOPE_MAX);
                        prop_assert!(r.acr_values.join(" ").len() <= limits::ACR_VALUES_MAX);
                    }
                    Err(AuthorizeError::Redirect { redirect_uri, state, .. }) => {
                        prop_assert_eq!(redirect_uri, "http://localhost:1/cb");
                        prop_assert!(state.is_none_or(|s| s.len() <= limits::STATE_MAX));
                    }
                    Err(AuthorizeError::Page(message)) => {
                        prop_assert!(message.len() < 1024, "{}", message.len());
                    }
                }
            }
        }
    }
}
