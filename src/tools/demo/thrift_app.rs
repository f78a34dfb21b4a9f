//! Thrift, the sample shop of the demo: a small OpenID Connect relying party of Usher,
//! built on the `openidconnect` crate the way a real app would use it.
//!
//! It has a home page with "Sign in", the callback that checks `state` and `iss`,
//! redeems the code and verifies the ID token (signature, issuer, audience, nonce),
//! a page listing the ID token's claims, and sign-out through Usher's
//! `end_session_endpoint`. Sessions and sign-ins in progress live in memory, keyed by a
//! random id in an HttpOnly cookie. The optional [`Inspector`] lets the demo add what an
//! app never sees — whether Usher keeps an account for the subject — so a newcomer can
//! watch JIT provisioning happen.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use minijinja::Environment;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use super::claims::{claim_rows, display_name, jwt_payload, signed_in_via, str_claim, ClaimRow};
use crate::crypto::{random_token, unix_now};
use crate::secret::ct_eq;

/// The cookie naming the signed-in session. Cookies ignore ports, so on `localhost`
/// Thrift shares a cookie jar with Usher: the names must differ from Usher's.
const SESSION_COOKIE: &str = "thrift_session";
/// The cookie naming the sign-in in progress (its state, nonce and PKCE verifier).
const LOGIN_COOKIE: &str = "thrift_login";
/// A one-shot notice for the next page ("you are signed out").
const FLASH_COOKIE: &str = "thrift_flash";
/// How long a sign-in may take, and how long a session lasts.
const LOGIN_TTL: u64 = 600;
const SESSION_TTL: u64 = 12 * 3600;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What the demo can tell about a signed-in subject that the app itself cannot know,
/// read from Usher's store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BehindTheScenes {
    /// One sentence: does Usher keep an account for this subject, and why.
    pub summary: String,
    pub has_account: bool,
    /// Rows about the account (username, created, linked identities, second factor).
    pub facts: Vec<Fact>,
    /// How many accounts Usher's store holds in all.
    pub accounts_total: usize,
    /// The trace of this subject's latest sign-in, as Usher recorded it.
    pub trace: Vec<String>,
}

/// One labelled value of [`BehindTheScenes`].
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    pub label: String,
    pub value: String,
}

/// Looks a subject (`sub`) up where the app cannot: the demo implements it over Usher's
/// store. Called off the async runtime.
#[async_trait::async_trait]
pub trait Inspector: Send + Sync {
    async fn inspect(&self, sub: &str) -> BehindTheScenes;
}

/// How to start Thrift.
pub struct ThriftConfig {
    /// Usher's issuer URL.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Where browsers reach Thrift, e.g. `http://localhost:3000/`. The redirect URI is
    /// `<base_url>callback` and the post-logout redirect URI is the base URL itself.
    pub base_url: Url,
    /// Hints shown on the home page ("sign in with Google as Ada Lovelace").
    pub notes: Vec<String>,
    /// The identity provider's self-service page, linked from the profile page.
    pub account_url: Option<String>,
    pub inspector: Option<Arc<dyn Inspector>>,
}

/// A sign-in Thrift started and has not finished.
struct Pending {
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    started: u64,
}

/// A signed-in user.
#[derive(Clone)]
struct UserSession {
    claims: Map<String, Value>,
    id_token: CoreIdToken,
    /// Guards the sign-out form.
    csrf: String,
    expires_at: u64,
}

struct ThriftState {
    client: Client,
    http: reqwest::Client,
    issuer: String,
    base_url: Url,
    end_session: Option<EndSessionUrl>,
    notes: Vec<String>,
    account_url: Option<String>,
    inspector: Option<Arc<dyn Inspector>>,
    templates: Environment<'static>,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, UserSession>>,
}

type Shared = Arc<ThriftState>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A running Thrift.
pub struct Thrift {
    pub addr: SocketAddr,
    pub base_url: Url,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Thrift {
    /// Discover Usher, then serve Thrift on `listener` in a background task.
    pub async fn start(listener: TcpListener, config: ThriftConfig) -> anyhow::Result<Thrift> {
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            // The openidconnect crate asks for no redirects: a redirect on the token
            // endpoint could leak the code to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()?;
        let issuer_url = IssuerUrl::new(config.issuer.clone())?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer_url, &http)
            .await
            .map_err(|e| anyhow::anyhow!("cannot discover {}: {e}", config.issuer))?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let redirect = config.base_url.join("callback")?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id),
            Some(ClientSecret::new(config.client_secret)),
        )
        .set_redirect_uri(RedirectUrl::from_url(redirect));
        let state = Arc::new(ThriftState {
            client,
            http,
            issuer: config.issuer,
            base_url: config.base_url.clone(),
            end_session,
            notes: config.notes,
            account_url: config.account_url,
            inspector: config.inspector,
            templates: templates()?,
            pending: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = router(state);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "Thrift stopped with an error");
            }
        });
        Ok(Thrift {
            addr,
            base_url: config.base_url,
            shutdown,
            task,
        })
    }

    /// Stop serving; open keep-alive connections get a few seconds.
    pub async fn stop(self) {
        let Thrift {
            shutdown, mut task, ..
        } = self;
        let _ = shutdown.send(());
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

fn templates() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("home.html", include_str!("templates/home.html")),
        ("me.html", include_str!("templates/me.html")),
    ] {
        env.add_template(name, source)?;
    }
    Ok(env)
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(home_get))
        .route("/signin", get(signin_get))
        .route("/callback", get(callback_get))
        .route("/me", get(me_get))
        .route("/signout", post(signout_post))
        .route("/logo.svg", get(logo_get))
        .route("/assets/thrift.css", get(css_get))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    }
    res
}

async fn logo_get() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/logo.svg"),
    )
        .into_response()
}

async fn css_get() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/thrift.css"),
    )
        .into_response()
}

fn cookie(name: &'static str, value: String, max_age: u64) -> Cookie<'static> {
    let mut c = Cookie::new(name, value);
    c.set_http_only(true);
    // Lax: sent on the top-level redirect back from Usher, not on cross-site posts.
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_max_age(cookie::time::Duration::seconds(
        i64::try_from(max_age).unwrap_or(i64::MAX),
    ));
    c
}

fn removal(name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::from(name);
    c.set_path("/");
    c
}

/// The header's view of who is signed in.
#[derive(Serialize)]
struct Layout {
    title: String,
    user: Option<HeaderUser>,
}

#[derive(Serialize)]
struct HeaderUser {
    name: String,
    csrf: String,
}

/// A notice at the top of a page.
#[derive(Serialize)]
struct Alert {
    /// `error` or `info`.
    kind: &'static str,
    title: String,
    detail: Option<String>,
}

#[derive(Serialize)]
struct HomePage {
    layout: Layout,
    alert: Option<Alert>,
    signed_in: Option<SignedInSummary>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct SignedInSummary {
    name: String,
    via: String,
}

#[derive(Serialize)]
struct MePage {
    layout: Layout,
    name: String,
    email: Option<String>,
    via: String,
    claims: Vec<ClaimRow>,
    id_token: String,
    account_url: Option<String>,
    behind: Option<BehindTheScenes>,
}

impl ThriftState {
    fn render<T: Serialize>(&self, name: &str, ctx: &T) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => axum::response::Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, template = name, "Thrift cannot render a page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Thrift could not render this page.",
                )
                    .into_response()
            }
        }
    }

    fn session(&self, jar: &CookieJar, now: u64) -> Option<(String, UserSession)> {
        let id = jar.get(SESSION_COOKIE)?.value().to_string();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires_at > now);
        sessions.get(&id).cloned().map(|s| (id, s))
    }

    fn layout(&self, title: &str, session: Option<&UserSession>) -> Layout {
        Layout {
            title: title.to_string(),
            user: session.map(|s| HeaderUser {
                name: display_name(&s.claims),
                csrf: s.csrf.clone(),
            }),
        }
    }

    /// The home page, with an optional notice.
    fn home(&self, jar: &CookieJar, alert: Option<Alert>, now: u64) -> Response {
        let session = self.session(jar, now).map(|(_, s)| s);
        let page = HomePage {
            layout: self.layout("Thrift", session.as_ref()),
            alert,
            signed_in: session.as_ref().map(|s| SignedInSummary {
                name: display_name(&s.claims),
                via: signed_in_via(&s.claims),
            }),
            notes: self.notes.clone(),
        };
        self.render("home.html", &page)
    }
}

async fn home_get(State(state): State<Shared>, jar: CookieJar) -> Response {
    let alert = jar.get(FLASH_COOKIE).map(|_| Alert {
        kind: "info",
        title: "You are signed out of Thrift and Usher.".into(),
        detail: None,
    });
    let page = state.home(&jar, alert, unix_now());
    (jar.remove(removal(FLASH_COOKIE)), page).into_response()
}

async fn signin_get(State(state): State<Shared>, jar: CookieJar) -> Response {
    let now = unix_now();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = state
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let id = random_token(32);
    {
        let mut pending = lock(&state.pending);
        pending.retain(|_, p| p.started + LOGIN_TTL > now);
        pending.insert(
            id.clone(),
            Pending {
                state: csrf,
                nonce,
                verifier,
                started: now,
            },
        );
    }
    let jar = jar.add(cookie(LOGIN_COOKIE, id, LOGIN_TTL));
    (jar, Redirect::to(url.as_str())).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn failed(title: &str, detail: impl Into<String>) -> Alert {
    Alert {
        kind: "error",
        title: title.to_string(),
        detail: Some(detail.into()),
    }
}

async fn callback_get(
    State(state): State<Shared>,
    jar: CookieJar,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let now = unix_now();
    let pending = jar
        .get(LOGIN_COOKIE)
        .and_then(|c| lock(&state.pending).remove(c.value()))
        .filter(|p| p.started + LOGIN_TTL > now);
    let jar = jar.remove(removal(LOGIN_COOKIE));
    let result = finish_sign_in(&state, pending, q).await;
    match result {
        Ok(session) => {
            let id = random_token(32);
            lock(&state.sessions).insert(id.clone(), session);
            let jar = jar.add(cookie(SESSION_COOKIE, id, SESSION_TTL));
            (jar, Redirect::to("/me")).into_response()
        }
        Err(alert) => {
            let page = state.home(&jar, Some(alert), now);
            (jar, page).into_response()
        }
    }
}

/// Check the authorization response against the sign-in Thrift started, redeem the
/// code and verify the ID token.
async fn finish_sign_in(
    state: &ThriftState,
    pending: Option<Pending>,
    q: CallbackQuery,
) -> Result<UserSession, Alert> {
    let Some(pending) = pending else {
        return Err(failed(
            "This sign-in has expired.",
            "Thrift has no record of starting it in this browser (or it took more than ten minutes). Sign in again.",
        ));
    };
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| ct_eq(s.as_bytes(), pending.state.secret().as_bytes()));
    if !state_ok {
        return Err(failed(
            "Sign-in refused.",
            "The answer does not belong to the sign-in Thrift started (state mismatch). Sign in again.",
        ));
    }
    // RFC 9207: the response names its issuer, so a mix-up with another one shows.
    if q.iss
        .as_deref()
        .is_some_and(|iss| iss.trim_end_matches('/') != state.issuer.trim_end_matches('/'))
    {
        return Err(failed(
            "Sign-in refused.",
            "The answer came from an unexpected issuer.",
        ));
    }
    if let Some(error) = q.error {
        let detail = match q.error_description {
            Some(d) => format!("{d} ({error})"),
            None => error,
        };
        return Err(failed("Sign-in did not complete.", detail));
    }
    let Some(code) = q.code else {
        return Err(failed(
            "Sign-in did not complete.",
            "The answer carried neither a code nor an error.",
        ));
    };
    let request = state
        .client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| failed("Sign-in failed.", e.to_string()))?;
    let tokens = request
        .set_pkce_verifier(pending.verifier)
        .request_async(&state.http)
        .await
        .map_err(|e| {
            tracing::warn!(error = ?e, "Thrift: code exchange failed");
            let detail = match e {
                openidconnect::RequestTokenError::ServerResponse(r) => r.error().to_string(),
                other => other.to_string(),
            };
            failed("Sign-in failed at the token endpoint.", detail)
        })?;
    let Some(id_token) = tokens.id_token() else {
        return Err(failed(
            "Sign-in failed.",
            "The token response has no ID token.",
        ));
    };
    id_token
        .claims(&state.client.id_token_verifier(), &pending.nonce)
        .map_err(|e| failed("The ID token is not valid.", e.to_string()))?;
    // The signature is verified; read every claim, not just the ones the crate types.
    let claims = jwt_payload(&id_token.to_string())
        .ok_or_else(|| failed("Sign-in failed.", "The ID token cannot be read."))?;
    Ok(UserSession {
        claims,
        id_token: id_token.clone(),
        csrf: random_token(24),
        expires_at: unix_now() + SESSION_TTL,
    })
}

async fn me_get(State(state): State<Shared>, jar: CookieJar) -> Response {
    let Some((_, session)) = state.session(&jar, unix_now()) else {
        return Redirect::to("/").into_response();
    };
    let sub = str_claim(&session.claims, "sub")
        .unwrap_or_default()
        .to_string();
    let behind = match state.inspector.clone() {
        Some(inspector) => Some(inspector.inspect(&sub).await),
        None => None,
    };
    let page = MePage {
        layout: state.layout("Your profile", Some(&session)),
        name: display_name(&session.claims),
        email: str_claim(&session.claims, "email").map(str::to_string),
        via: signed_in_via(&session.claims),
        claims: claim_rows(&session.claims),
        id_token: session.id_token.to_string(),
        account_url: state.account_url.clone(),
        behind,
    };
    state.render("me.html", &page)
}

#[derive(Deserialize)]
struct SignOutForm {
    csrf: Option<String>,
}

async fn signout_post(
    State(state): State<Shared>,
    jar: CookieJar,
    Form(form): Form<SignOutForm>,
) -> Response {
    let Some((id, session)) = state.session(&jar, unix_now()) else {
        return Redirect::to("/").into_response();
    };
    let csrf_ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| ct_eq(c.as_bytes(), session.csrf.as_bytes()));
    if !csrf_ok {
        let alert = failed(
            "Sign-out refused.",
            "The form was stale or came from another site; use the Sign out button again.",
        );
        return state.home(&jar, Some(alert), unix_now());
    }
    lock(&state.sessions).remove(&id);
    let jar =
        jar.remove(removal(SESSION_COOKIE))
            .add(cookie(FLASH_COOKIE, "signed_out".into(), 60));
    let target = match &state.end_session {
        Some(endpoint) => LogoutRequest::from(endpoint.clone())
            .set_id_token_hint(&session.id_token)
            .set_post_logout_redirect_uri(PostLogoutRedirectUrl::from_url(state.base_url.clone()))
            .http_get_url()
            .to_string(),
        None => "/".to_string(),
    };
    (jar, Redirect::to(&target)).into_response()
}
