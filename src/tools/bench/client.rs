//! The load tool's browser and relying party.
//!
//! A browser here is one sign-in's cookies over a shared HTTP connection pool: every
//! login starts with an empty jar (a real new visitor, so no SSO session skips a step)
//! without paying for new connections. Redirects are followed by hand, as a browser
//! would, and the hosted pages are read just enough to find their form and CSRF token.
//! The relying party is the `openidconnect` crate, which exchanges the code and
//! validates the ID token (signature against the JWKS, issuer, audience, expiry, nonce).

use std::collections::HashMap;

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use url::Url;

/// What went wrong in one operation, in words for the report.
pub type OpResult<T> = Result<T, String>;

fn err(context: &str, e: impl std::fmt::Display) -> String {
    format!("{context}: {e}")
}

/// One answer, with what the next hop needs.
pub struct Hop {
    pub status: u16,
    pub url: Url,
    pub location: Option<Url>,
    pub body: String,
}

impl Hop {
    /// The value of the first input named `name`.
    pub fn input(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let start = self.body[..at].rfind('<')?;
        let end = at + self.body[at..].find('>')?;
        let tag = &self.body[start..end];
        let v = tag.find("value=\"")? + 7;
        let rest = &tag[v..];
        Some(unescape(&rest[..rest.find('"')?]))
    }

    /// The first form's action, as an absolute URL.
    pub fn form_action(&self) -> Option<Url> {
        let form = self.body.find("<form")?;
        let tag = &self.body[form..];
        let a = tag.find("action=\"")? + 8;
        let action = unescape(&tag[a..a + tag[a..].find('"')?]);
        self.url.join(&action).ok()
    }

    fn describe(&self) -> String {
        let text: String = self.body.chars().take(300).collect();
        format!("{} at {}: {text}", self.status, self.url)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A browser's cookies, by host.
pub type Jar = HashMap<String, Vec<(String, String)>>;

/// One visitor: a cookie jar per host, over the shared connection pool.
pub struct Browser<'a> {
    http: &'a reqwest::Client,
    jar: Jar,
}

fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl<'a> Browser<'a> {
    pub fn new(http: &'a reqwest::Client) -> Self {
        Self::with_jar(http, Jar::new())
    }

    /// A returning visitor: the cookies it kept from earlier visits.
    pub fn with_jar(http: &'a reqwest::Client, jar: Jar) -> Self {
        Browser { http, jar }
    }

    /// The cookies, to come back with later.
    pub fn into_jar(self) -> Jar {
        self.jar
    }

    /// The `Cookie` header this browser sends to `url`'s host.
    pub fn cookies(&self, url: &Url) -> Option<String> {
        let cookies = self.jar.get(&host_key(url))?;
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep_cookies(&mut self, url: &Url, headers: &reqwest::header::HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let gone = value.is_empty()
                || text
                    .split(';')
                    .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            let cookies = self.jar.entry(host_key(url)).or_default();
            cookies.retain(|(k, _)| k != name.trim());
            if !gone {
                cookies.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, url: Url) -> OpResult<Hop> {
        let req = match self.cookies(&url) {
            Some(c) => req.header(COOKIE, c),
            None => req,
        };
        let res = req.send().await.map_err(|e| err(url.as_str(), e))?;
        self.keep_cookies(&url, res.headers());
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url.join(l).ok());
        let body = res.text().await.map_err(|e| err(url.as_str(), e))?;
        Ok(Hop {
            status,
            url,
            location,
            body,
        })
    }

    pub async fn get(&mut self, url: Url) -> OpResult<Hop> {
        let req = self.http.get(url.clone());
        self.send(req, url).await
    }

    pub async fn post(&mut self, url: Url, form: &[(&str, &str)]) -> OpResult<Hop> {
        let req = self.http.post(url.clone()).form(form);
        self.send(req, url).await
    }

    /// Follow redirects until a page is shown (`Ok(page)`) or the browser is sent to
    /// the app's redirect URI (`Err(callback)`), at most `limit` hops.
    pub async fn follow(&mut self, mut hop: Hop, redirect_uri: &str) -> OpResult<Result<Hop, Url>> {
        for _ in 0..12 {
            let Some(next) = hop.location.clone().filter(|_| hop.status / 100 == 3) else {
                return Ok(Ok(hop));
            };
            if next.as_str().starts_with(redirect_uri) {
                return Ok(Err(next));
            }
            hop = self.get(next).await?;
        }
        Err(format!("redirect loop at {}", hop.url))
    }

    /// Follow to a page; a return to the app at this point is a failure.
    pub async fn until_page(&mut self, hop: Hop, redirect_uri: &str, what: &str) -> OpResult<Hop> {
        match self.follow(hop, redirect_uri).await? {
            Ok(page) if page.status == 200 => Ok(page),
            Ok(page) => Err(format!("expected {what}, got {}", page.describe())),
            Err(back) => Err(format!("expected {what}, was sent back to the app: {back}")),
        }
    }

    /// Follow to the app's redirect URI; a page at this point is a failure.
    pub async fn until_app(&mut self, hop: Hop, redirect_uri: &str) -> OpResult<Url> {
        match self.follow(hop, redirect_uri).await? {
            Err(back) => Ok(back),
            Ok(page) => Err(format!(
                "expected the way back to the app, got {}",
                page.describe()
            )),
        }
    }
}

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// An app's side of the protocol.
pub struct Rp {
    client: Client,
    pub redirect_uri: String,
}

/// One authorization request in progress.
pub struct Start {
    pub url: Url,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

/// What a finished sign-in gave the app.
pub struct Tokens {
    pub refresh_token: Option<String>,
    pub nonce: Nonce,
}

impl Rp {
    pub async fn discover(
        http: &reqwest::Client,
        issuer: &str,
        client_id: &str,
        secret: Option<&str>,
        redirect_uri: &str,
    ) -> OpResult<Rp> {
        let issuer_url = IssuerUrl::new(issuer.to_string()).map_err(|e| err("issuer", e))?;
        let meta = CoreProviderMetadata::discover_async(issuer_url, http)
            .await
            .map_err(|e| err("discovery", e))?;
        let redirect =
            RedirectUrl::new(redirect_uri.to_string()).map_err(|e| err("redirect URI", e))?;
        let client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(client_id.to_string()),
            secret.map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(redirect);
        Ok(Rp {
            client,
            redirect_uri: redirect_uri.to_string(),
        })
    }

    /// A fresh authorization request: PKCE S256, state, nonce.
    pub fn start(&self) -> Start {
        self.start_with(false)
    }

    /// The same with `prompt=none`: the app asks for a sign-in only if the browser's
    /// SSO session allows one without showing a page (`login_required` otherwise).
    pub fn start_silent(&self) -> Start {
        self.start_with(true)
    }

    fn start_with(&self, silent: bool) -> Start {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if silent {
            request = request.add_prompt(CoreAuthPrompt::None);
        }
        let (url, state, nonce) = request.url();
        Start {
            url,
            state,
            nonce,
            verifier,
        }
    }

    /// Check the callback, exchange its code, and validate the ID token.
    pub async fn finish(
        &self,
        http: &reqwest::Client,
        start: Start,
        callback: &Url,
    ) -> OpResult<Tokens> {
        let params: HashMap<String, String> = callback.query_pairs().into_owned().collect();
        if let Some(e) = params.get("error") {
            return Err(format!(
                "the sign-in ended with {e}: {:?}",
                params.get("error_description")
            ));
        }
        if params.get("state").map(String::as_str) != Some(start.state.secret().as_str()) {
            return Err("the callback's state does not match".into());
        }
        let code = params.get("code").ok_or("the callback has no code")?;
        let tokens: CoreTokenResponse = self
            .client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| err("token endpoint", e))?
            .set_pkce_verifier(start.verifier)
            .request_async(http)
            .await
            .map_err(|e| err("code exchange", e))?;
        let id_token = tokens.id_token().ok_or("no ID token")?;
        id_token
            .claims(&self.client.id_token_verifier(), &start.nonce)
            .map_err(|e| err("ID token", e))?;
        Ok(Tokens {
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
            nonce: start.nonce,
        })
    }

    /// Rotate a refresh token; returns the new one. The new ID token is parsed, and its
    /// signature checked when `verify` is set.
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &str,
        nonce: &Nonce,
        verify: bool,
    ) -> OpResult<String> {
        let tokens: CoreTokenResponse = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_string()))
            .map_err(|e| err("token endpoint", e))?
            .request_async(http)
            .await
            .map_err(|e| err("refresh", e))?;
        let id_token = tokens.id_token().ok_or("no ID token")?;
        if verify {
            id_token
                .claims(&self.client.id_token_verifier(), nonce)
                .map_err(|e| err("ID token", e))?;
        }
        let next = tokens.refresh_token().ok_or("no rotated refresh token")?;
        if next.secret() == refresh_token {
            return Err("the refresh token did not rotate".into());
        }
        Ok(next.secret().clone())
    }
}

/// `client_credentials`: one access token for a service client.
pub async fn client_credentials(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    secret: &str,
) -> OpResult<()> {
    let res = http
        .post(token_url)
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| err("token endpoint", e))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.map_err(|e| err("token response", e))?;
    if !status.is_success() || body["access_token"].as_str().is_none() {
        return Err(format!("client_credentials refused ({status}): {body}"));
    }
    Ok(())
}
