//! The integration-test harness: a real Usher on an ephemeral port with a temporary
//! store, a browser (reqwest with a cookie jar, redirects followed by hand so each hop
//! can be checked) and a relying party built on the `openidconnect` crate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use reqwest::header::LOCATION;
use reqwest::StatusCode;
use tokio::net::TcpListener;
use url::Url;
pub use usher::clock::Clock;
use usher::clock::ManualClock;
use usher::server::Running;
use usher::store::{SledStore, Store, User, UserStore};

pub const REDIRECT: &str = "http://127.0.0.1:1/callback";
pub const SECRET: &str = "thrift-test-secret";

/// The default test config: Thrift (confidential, sign-up on, one password step) and a
/// public SPA. `{issuer}` is filled in once the port is known.
pub const BASE_CONFIG: &str = r#"
issuer: "{issuer}"
listen: "127.0.0.1:0"
security:
  max_password_attempts: 3
  lockout_seconds: 600
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    post_logout_redirect_uris: ["http://127.0.0.1:1/bye"]
    sign_up: true
    sign_in:
      steps:
        - [password]
  spa:
    name: Single Page
    client_id: spa
    redirect_uris: ["http://127.0.0.1:1/callback"]
    signing_alg: ES256
    sign_in:
      steps:
        - [password]
"#;

pub struct Usher {
    pub running: Running,
    pub issuer: String,
    pub store: Arc<SledStore>,
    pub dir: tempfile::TempDir,
    /// The server's clock: it stands still at the start of a TOTP time step and moves
    /// only when a test says so.
    pub clock: Arc<ManualClock>,
}

impl Usher {
    /// Start Usher with `config` (with `{issuer}` placeholders).
    pub async fn start(config: &str) -> Usher {
        Self::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// Start Usher with its config written into `dir` (which may hold scripts).
    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> Usher {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let path = dir.path().join("usher.yaml");
        std::fs::write(&path, config.replace("{issuer}", &issuer)).unwrap();
        let loaded = usher::config::load_with_env(&path, &|_| None)
            .unwrap_or_else(|d| panic!("test config invalid:\n{d}"));
        let store = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
        let dyn_store: Arc<dyn Store> = store.clone();
        let real = usher::crypto::unix_now();
        let clock = Arc::new(ManualClock::at(real - real % 30));
        let state = usher::server::state_with(loaded.config, dyn_store, clock.clone())
            .await
            .unwrap();
        let running = usher::server::spawn(state, listener).unwrap();
        Usher {
            running,
            issuer,
            store,
            dir,
            clock,
        }
    }

    pub async fn default() -> Usher {
        Self::start(BASE_CONFIG).await
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("usher.yaml")
    }

    /// Create a local account with a password.
    pub async fn add_user(&self, username: &str, email: &str, password: &str) -> User {
        let user = User {
            role_sources: Default::default(),
            id: format!("u_{username}"),
            username: username.into(),
            email: Some(email.into()),
            email_verified: true,
            name: Some(format!("{username} Example")),
            given_name: Some(username.into()),
            family_name: Some("Example".into()),
            picture: None,
            roles: vec![],
            password_hash: Some(usher::authn::password::hash(password).unwrap()),
            disabled: false,
            created_at: 1,
            updated_at: 1,
        };
        self.store.create_user(&user).await.unwrap();
        user
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
}

/// What a browser and a relying party need to know of a server: its issuer. One
/// in-process [`Usher`], or several `usher serve` nodes behind one issuer (multinode).
pub trait Issuer {
    fn issuer(&self) -> &str;

    /// A page-relative action (`/login/…`) as an absolute URL.
    fn url_of(&self, action: &str) -> String {
        if action.starts_with("http") {
            action.to_string()
        } else {
            format!("{}{}", self.issuer(), action)
        }
    }
}

impl Issuer for Usher {
    fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// A browser: keeps cookies, follows no redirect by itself.
pub struct Browser {
    pub http: reqwest::Client,
}

pub struct Page {
    pub status: StatusCode,
    pub url: String,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snippet: String = self.body.chars().take(1500).collect();
        write!(f, "{} {}\n{snippet}", self.status, self.url)
    }
}

impl Page {
    /// The value of a named hidden/text input.
    pub fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\"");
        let at = self.body.find(&needle)?;
        let start = self.body[..at].rfind('<')?;
        let end = at + self.body[at..].find('>')?;
        let tag = &self.body[start..end];
        let v = tag.find("value=\"")? + 7;
        let rest = &tag[v..];
        Some(html_unescape(&rest[..rest.find('"')?]))
    }

    /// The `action` of the form that contains input `name` (or the first form).
    pub fn form_action(&self, containing: Option<&str>) -> String {
        let pos = containing
            .and_then(|n| self.body.find(&format!("name=\"{n}\"")))
            .unwrap_or(self.body.len());
        let form_start = self.body[..pos]
            .rfind("<form")
            .or_else(|| self.body.find("<form"))
            .expect("page has a form");
        let tag = &self.body[form_start..];
        let a = tag.find("action=\"").expect("form has an action") + 8;
        html_unescape(&tag[a..a + tag[a..].find('"').unwrap()])
    }

    pub fn csrf(&self) -> String {
        self.input("csrf").expect("page carries a csrf token")
    }
}

pub fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: Self::builder().build().unwrap(),
        }
    }

    /// The settings of a browser's client, for a test to add to (where it connects).
    pub fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .cookie_store(true)
            .user_agent("UsherTestBrowser/1.0")
            .redirect(reqwest::redirect::Policy::none())
    }

    async fn page(res: reqwest::Response) -> Page {
        let status = res.status();
        let url = res.url().to_string();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        Page {
            status,
            url,
            body,
            headers,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        Self::page(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        Self::page(self.http.post(url).form(form).send().await.unwrap()).await
    }

    /// Follow redirects within Usher until a page is shown or the browser is sent to
    /// the app's redirect URI (returned as `Err(url)`).
    pub async fn follow(&self, usher: &impl Issuer, mut page: Page) -> Result<Page, Url> {
        for _ in 0..10 {
            if !page.status.is_redirection() {
                return Ok(page);
            }
            let loc = page.headers[LOCATION].to_str().unwrap().to_string();
            let next = Url::parse(&page.url).unwrap().join(&loc).unwrap();
            if !next.as_str().starts_with(usher.issuer()) {
                return Err(next);
            }
            page = self.get(next.as_str()).await;
        }
        panic!("redirect loop");
    }

    /// Fill in the password form of `page` and follow where it leads.
    pub async fn submit_password(
        &self,
        usher: &impl Issuer,
        page: &Page,
        username: &str,
        password: &str,
    ) -> Result<Page, Url> {
        let action = page.form_action(Some("password"));
        let csrf = page.csrf();
        let res = self
            .post(
                &usher.url_of(&action),
                &[
                    ("csrf", &csrf),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "POST answers 303");
        self.follow(usher, res).await
    }
}

/// A relying party using the certified-style `openidconnect` client.
pub struct Rp {
    pub client: openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    pub http: reqwest::Client,
}

pub struct AuthStart {
    pub url: Url,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

impl Rp {
    pub async fn discover(usher: &impl Issuer, client_id: &str, secret: Option<&str>) -> Rp {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self::discover_with(usher, http, client_id, secret).await
    }

    /// [`Rp::discover`] with the RP's own HTTP client (one that reaches chosen nodes).
    pub async fn discover_with(
        usher: &impl Issuer,
        http: reqwest::Client,
        client_id: &str,
        secret: Option<&str>,
    ) -> Rp {
        let meta = CoreProviderMetadata::discover_async(
            IssuerUrl::new(usher.issuer().to_string()).unwrap(),
            &http,
        )
        .await
        .expect("discovery document accepted by openidconnect");
        let client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(client_id.into()),
            secret.map(|s| ClientSecret::new(s.into())),
        )
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
        Rp { client, http }
    }

    pub fn start(&self, extra: &[(&str, &str)]) -> AuthStart {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        for (k, v) in extra {
            req = req.add_extra_param(*k, *v);
        }
        let (url, state, nonce) = req.url();
        AuthStart {
            url,
            state,
            nonce,
            verifier,
        }
    }

    /// Redeem the code of `back` and return the ID token's claims, after the library
    /// has verified its signature, issuer, audience, expiry and nonce.
    pub async fn claims(&self, back: &Url, start: AuthStart) -> serde_json::Value {
        use openidconnect::TokenResponse;
        let tokens = self
            .exchange(&query(back)["code"], start.verifier)
            .await
            .expect("code exchange");
        let token = tokens.id_token().expect("an ID token");
        token
            .claims(&self.client.id_token_verifier(), &start.nonce)
            .expect("a valid ID token");
        decode_payload(&token.to_string())
    }

    pub async fn exchange(
        &self,
        code: &str,
        verifier: PkceCodeVerifier,
    ) -> Result<openidconnect::core::CoreTokenResponse, String> {
        self.client
            .exchange_code(AuthorizationCode::new(code.into()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => r.error().to_string(),
                other => format!("{other:?}"),
            })
    }
}

/// The query parameters of a redirect back to the app.
pub fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// Drive a whole password sign-in for `rp`, returning the callback URL.
pub async fn password_login(
    usher: &impl Issuer,
    browser: &Browser,
    start: &AuthStart,
    user: &str,
    pass: &str,
) -> Url {
    let page = browser
        .follow(usher, browser.get(start.url.as_str()).await)
        .await
        .expect("a sign-in page");
    browser
        .submit_password(usher, &page, user, pass)
        .await
        .expect_err("sign-in returns to the app")
}

/// The payload of a JWT, unverified (the caller verified it already).
pub fn decode_payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// Follow redirects across hosts until a page is shown or the app's redirect URI is
/// reached (returned as Err).
pub async fn follow_all(browser: &Browser, mut page: Page) -> Result<Page, url::Url> {
    for _ in 0..12 {
        if !page.status.is_redirection() {
            return Ok(page);
        }
        let loc = page.headers["location"].to_str().unwrap().to_string();
        let next = url::Url::parse(&page.url).unwrap().join(&loc).unwrap();
        if next.as_str().starts_with(REDIRECT) {
            return Err(next);
        }
        page = browser.get(next.as_str()).await;
    }
    panic!("redirect loop")
}

/// Answer the consent page; returns the redirect to Usher's callback (not followed).
pub async fn decide(browser: &Browser, consent: &Page, user: &str, decision: &str) -> Page {
    let base = url::Url::parse(&consent.url).unwrap();
    let action = base
        .join(&html_unescape(&consent.form_action(Some("request"))))
        .unwrap();
    let request = consent.input("request").unwrap();
    let res = browser
        .post(
            action.as_str(),
            &[
                ("request", request.as_str()),
                ("user", user),
                ("decision", decision),
            ],
        )
        .await;
    assert!(res.status.is_redirection(), "{res:?}");
    res
}

/// The base32 key shown on a TOTP enrolment page, as bytes.
pub fn totp_secret(page: &Page) -> Vec<u8> {
    let body = html_unescape(&page.body);
    let at = body
        .find("id=\"totp-secret\">")
        .expect("the key is shown as text")
        + 17;
    let text: String = body[at..body[at..].find('<').unwrap() + at]
        .split_whitespace()
        .collect();
    totp_rs::Secret::Encoded(text)
        .to_bytes()
        .expect("valid base32")
}

/// Pick `option` on a step's chooser; the answer (a redirect), not followed.
pub async fn pick_raw(usher: &Usher, browser: &Browser, chooser: &Page, option: &str) -> Page {
    let action = usher.url_of(&chooser.form_action(Some("option")));
    browser
        .post(&action, &[("csrf", &chooser.csrf()), ("option", option)])
        .await
}

/// Pick `option` on a step's chooser and follow to the option's page.
pub async fn pick(usher: &Usher, browser: &Browser, chooser: &Page, option: &str) -> Page {
    let res = pick_raw(usher, browser, chooser, option).await;
    browser.follow(usher, res).await.expect("the option's page")
}

/// On a TOTP enrolment page: enter the current code, pass the recovery codes page, and
/// follow to wherever the sign-in goes next. Returns the enrolled secret too.
pub async fn enrol_totp(
    usher: &Usher,
    browser: &Browser,
    enrol: &Page,
) -> (Vec<u8>, Result<Page, Url>) {
    let secret = totp_secret(enrol);
    let code = usher::authn::totp::code_at(&secret, usher.clock.now());
    let action = usher.url_of(&enrol.form_action(Some("code")));
    let res = browser
        .post(&action, &[("csrf", &enrol.csrf()), ("code", &code)])
        .await;
    let codes = browser
        .follow(usher, res)
        .await
        .expect("the recovery codes page");
    assert!(codes.body.contains("Save your recovery codes"), "{codes:?}");
    let res = browser
        .post(
            &usher.url_of(&codes.form_action(None)),
            &[("csrf", &codes.csrf())],
        )
        .await;
    (secret, browser.follow(usher, res).await)
}

/// Ada Lovelace at the Google stand-in.
pub fn ada() -> usher::tools::standin::StandinUser {
    usher::tools::standin::StandinUser::new("g-1001", "ada", "Ada Lovelace", "ada@example.com")
}

/// The Octocat at the GitHub stand-in (numeric id, as GitHub's).
pub fn octocat() -> usher::tools::standin::StandinUser {
    usher::tools::standin::StandinUser::new(
        "583231",
        "octocat",
        "The Octocat",
        "octocat@github.example",
    )
}

/// Stand-ins for Google (with Ada) and GitHub (with the Octocat).
pub async fn standins() -> (
    usher::tools::standin::Standin,
    usher::tools::standin::Standin,
) {
    use usher::tools::standin::{Kind, Standin, StandinConfig};
    let google = Standin::start(
        StandinConfig::new(Kind::Oidc, "usher-google", "google-secret").with_user(ada()),
    )
    .await
    .unwrap();
    let github = Standin::start(
        StandinConfig::new(Kind::Github, "usher-github", "github-secret").with_user(octocat()),
    )
    .await
    .unwrap();
    (google, github)
}

/// A `connections:` section pointing `google` (JIT on) and `github` (pass-through) at
/// the stand-ins, followed by `extra` connection entries.
pub fn connections_yaml(
    google: &usher::tools::standin::Standin,
    github: &usher::tools::standin::Standin,
    extra: &str,
) -> String {
    let g = google.issuer();
    let h = github.base_url.clone();
    format!(
        r#"connections:
  google:
    kind: google
    client_id: usher-google
    client_secret: google-secret
    issuer: "{g}"
  github:
    kind: github
    client_id: usher-github
    client_secret: github-secret
    authorize_url: "{h}/login/oauth/authorize"
    token_url: "{h}/login/oauth/access_token"
    userinfo_url: "{h}/user"
    emails_url: "{h}/user/emails"
    jit: {{ provision: false }}
{extra}"#
    )
}

/// The `.eml` files anywhere under the server's folder (the default outbox is inside
/// the store folder), oldest first.
fn outbox_files(dir: &std::path::Path) -> Vec<(std::time::SystemTime, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(outbox_files(&path));
        } else if path.extension().is_some_and(|e| e == "eml") {
            let modified = entry.metadata().unwrap().modified().unwrap();
            found.push((modified, path));
        }
    }
    found.sort();
    found
}

/// The six-digit code in the outbox's newest message once there are more than `after`
/// messages, waiting a few seconds for it.
pub async fn outbox_code(usher: &Usher, after: usize) -> String {
    for _ in 0..100 {
        let files = outbox_files(usher.dir.path());
        if files.len() > after {
            let text = std::fs::read_to_string(&files[files.len() - 1].1).unwrap();
            if let Some(code) = text
                .lines()
                .map(str::trim)
                .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
            {
                return code.to_string();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no code arrived in the outbox");
}

/// How many messages the outbox holds.
pub fn outbox_count(usher: &Usher) -> usize {
    outbox_files(usher.dir.path()).len()
}
