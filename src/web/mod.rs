//! The axum shell: routes, cookies, CSRF and pages. Handlers parse the request, call
//! the core (`oidc`, `flow`, `authn`) and render the answer; no protocol or policy
//! decision is made here.

mod account;
mod account_forms;
mod admin;
pub mod client;
pub mod cookies;
pub mod csrf;
pub mod error;
mod extract;
mod factors;
mod federation;
mod limits;
mod login;
pub mod metrics;
mod oidc_routes;
pub mod pages;
mod posted;
pub mod ready;
pub mod request_id;
mod reset;
mod scim;

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use serde::Serialize;

use crate::authn::sealing::SealingKey;
use crate::clock::Clock;
use crate::config::{App, Config};
use crate::flow::Flow;
use crate::mail::Mailer;
use crate::oidc::keys::{KeyRing, Keys};
use crate::store::Store;
pub use error::WebError;
use pages::Layout;

/// Everything a request needs. The config and templates are swapped whole on reload;
/// a request takes one snapshot and uses it throughout.
pub struct AppState {
    config: RwLock<Arc<Config>>,
    templates: RwLock<Arc<Environment<'static>>>,
    pub store: Arc<dyn Store>,
    /// The signing keys, reloaded from the store every minute (other nodes may add one).
    pub keys: KeyRing,
    /// Encrypts TOTP secrets at rest.
    pub sealing: Arc<SealingKey>,
    mailer: RwLock<Arc<Mailer>>,
    /// Upstream providers' discovery documents and the HTTP client to reach them.
    pub upstreams: crate::upstream::Upstreams,
    csrf_key: Vec<u8>,
    /// Keys the hash that names a client address in throttle counters.
    client_key: Vec<u8>,
    /// Where finished sign-ins are written as fixtures (`usher serve --record DIR`).
    record_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// Counters and latencies for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where `now` comes from: the machine's clock, or a test's.
    clock: Arc<dyn Clock>,
    /// The last `/readyz` answer, reused for a second.
    readiness: ready::Readiness,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        keys: Keys,
        sealing: SealingKey,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Shared> {
        let mailer = Mailer::from_config(&config.email)?;
        let csrf_key = store
            .secret("csrf", &|| crate::crypto::random_token(32).into_bytes())
            .await?;
        let client_key = store
            .secret("throttle", &|| crate::crypto::random_token(32).into_bytes())
            .await?;
        let templates = pages::environment(config.theme.as_deref());
        let metrics = crate::metrics::Metrics::new()
            .and_then(|m| match store.postgres() {
                Some(_) => m.with_database(),
                None => Ok(m),
            })
            .map_err(|e| anyhow::anyhow!("cannot set up the metrics: {e}"))?;
        Ok(Arc::new(AppState {
            config: RwLock::new(Arc::new(config)),
            templates: RwLock::new(Arc::new(templates)),
            store,
            keys: KeyRing::new(keys),
            sealing: Arc::new(sealing),
            mailer: RwLock::new(Arc::new(mailer)),
            upstreams: crate::upstream::Upstreams::new(),
            csrf_key,
            client_key,
            record_dir: std::sync::OnceLock::new(),
            metrics: Arc::new(metrics),
            clock,
            readiness: ready::Readiness::default(),
        }))
    }

    /// The sign-in core's view of this request: its config snapshot, the store, `now`.
    pub(crate) fn core<'a>(&'a self, config: &'a Config, now: u64) -> crate::signin::Ctx<'a> {
        crate::signin::Ctx {
            config,
            store: self.store.as_ref(),
            now,
        }
    }

    /// The time of this request, in seconds. Read once per request and passed down.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Where mail goes, as currently configured.
    pub fn mailer(&self) -> Arc<Mailer> {
        match self.mailer.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swap in a new, already validated configuration.
    pub fn replace_config(&self, config: Config) {
        match Mailer::from_config(&config.email) {
            Ok(m) => match self.mailer.write() {
                Ok(mut w) => *w = Arc::new(m),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(m),
            },
            Err(e) => {
                tracing::error!(error = %e, "mail settings not applied; keeping the previous ones")
            }
        }
        let templates = Arc::new(pages::environment(config.theme.as_deref()));
        match self.templates.write() {
            Ok(mut t) => *t = templates,
            Err(poisoned) => *poisoned.into_inner() = templates,
        }
        match self.config.write() {
            Ok(mut c) => *c = Arc::new(config),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
        }
    }

    fn templates(&self) -> Arc<Environment<'static>> {
        match self.templates.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Record every finished sign-in as a fixture file in `dir`.
    pub fn record_to(&self, dir: std::path::PathBuf) {
        let _ = self.record_dir.set(dir);
    }

    pub(crate) fn recording(&self) -> bool {
        self.record_dir.get().is_some()
    }

    /// Write a finished, recorded sign-in as a fixture. Failing to write is logged; it
    /// never changes the sign-in's outcome.
    pub(crate) fn record_end(
        &self,
        flow: &Flow,
        ended: crate::fixtures::record::Ended<'_>,
        page: Option<&str>,
    ) {
        let (Some(dir), Some(_)) = (self.record_dir.get(), &flow.recording) else {
            return;
        };
        if flow.done().iter().any(|r| r.from_session) {
            // A fixture has no SSO session to start from, so such a file would not
            // replay as it happened; better no file than one that fails.
            tracing::info!(
                flow = %flow.id,
                "sign-in not recorded: the SSO session satisfied a step, which fixtures cannot replay"
            );
            return;
        }
        match crate::fixtures::record::write(dir, flow, ended, page) {
            Ok(path) => tracing::info!(file = %path.display(), "sign-in recorded"),
            Err(e) => tracing::error!(error = %e, "could not record the sign-in"),
        }
    }

    pub(crate) fn csrf_token(&self, browser: &str) -> String {
        csrf::token(&self.csrf_key, browser)
    }

    pub(crate) fn csrf_ok(&self, browser: Option<&str>, presented: Option<&str>) -> bool {
        csrf::verify(&self.csrf_key, browser, presented)
    }

    /// Render a page template with its typed context.
    pub(crate) fn render<T: Serialize>(&self, name: &str, ctx: &T) -> Result<Response, WebError> {
        let env = self.templates();
        let html = env.get_template(name)?.render(ctx)?;
        Ok(Html(html).into_response())
    }

    pub(crate) fn layout(&self, config: &Config, title: &str, app: Option<&App>) -> Layout {
        Layout {
            title: title.to_string(),
            app_name: app.map(|a| a.name.clone()),
            app_logo: app.and_then(|a| a.logo.clone()),
            base: config.issuer.path().trim_end_matches('/').to_string(),
        }
    }

    /// Load a flow for this browser, refusing one that expired or belongs elsewhere.
    pub(crate) async fn load_flow(
        &self,
        id: &str,
        browser: Option<&str>,
        now: u64,
    ) -> Result<Flow, WebError> {
        let config = self.config();
        crate::signin::load(self.core(&config, now), id, browser)
            .await?
            .ok_or_else(WebError::flow_lost)
    }

    pub(crate) async fn save_flow(&self, flow: &mut Flow) -> Result<(), WebError> {
        let config = self.config();
        Ok(crate::signin::save(self.core(&config, self.now()), flow).await?)
    }

    /// The SSO session named by the cookie, if it is live, with its account.
    pub(crate) async fn session(
        &self,
        cookie: Option<&str>,
        now: u64,
    ) -> Result<Option<crate::signin::LiveSession>, WebError> {
        let config = self.config();
        Ok(crate::signin::live_session(self.core(&config, now), cookie).await?)
    }

    /// Make every write so far durable.
    pub(crate) async fn flush(&self) -> Result<(), WebError> {
        Ok(self.store.flush().await?)
    }
}

/// 303 See Other: the answer to every successful form POST.
pub(crate) fn see_other(url: &str) -> Response {
    Redirect::to(url).into_response()
}

/// Liveness: the process answers. Readiness, which asks the store, is `/readyz`.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::STYLESHEET,
    )
        .into_response()
}

/// Headers every response carries: no framing, no sniffing, no referrer leaks, and a
/// policy that allows only our own stylesheet. Pages are never stored by the browser
/// or a proxy (they carry TOTP secrets, recovery codes and account details), and an
/// https issuer tells browsers to use nothing else; over plain http that header would
/// be a promise Usher cannot keep, so it is left out.
async fn security_headers(State(state): State<Shared>, mut res: Response) -> Response {
    let https = state.config().issuer.scheme() == "https";
    let h = res.headers_mut();
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self' data: https: http:; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    res
}

/// My Account, SCIM 2.0 and the admin API.
/// The issuer's root: a person who types the server's address sees what it is and
/// where to go, rather than a 404.
async fn home_get(State(state): State<Shared>) -> Result<Response, WebError> {
    let config = state.config();
    state.render(
        "home.html",
        &pages::HomePage {
            layout: state.layout(&config, "Usher", None),
            issuer: crate::oidc::issuer(&config),
            my_account: config.my_account.enabled,
        },
    )
}

fn self_service_and_admin_routes() -> Router<Shared> {
    Router::new()
        .route("/myaccount", get(account::account_get))
        .route("/myaccount/callback", get(account::account_callback_get))
        .route(
            "/myaccount/signed-out",
            get(account::account_signed_out_get),
        )
        .route("/myaccount/logout", post(account::account_logout_post))
        .route(
            "/myaccount/profile",
            post(account_forms::account_profile_post),
        )
        .route(
            "/myaccount/password",
            post(account_forms::account_password_post),
        )
        .route("/myaccount/email", post(account_forms::account_email_post))
        .route(
            "/myaccount/email/confirm",
            post(account_forms::account_email_confirm_post),
        )
        .route(
            "/myaccount/totp",
            get(account_forms::account_totp_get).post(account_forms::account_totp_post),
        )
        .route(
            "/myaccount/totp/reset",
            post(account_forms::account_totp_reset_post),
        )
        .route(
            "/myaccount/recovery-codes",
            post(account_forms::account_recovery_codes_post),
        )
        .route(
            "/myaccount/identities/unlink",
            post(account_forms::account_unlink_post),
        )
        .route(
            "/myaccount/sessions/end",
            post(account_forms::account_session_end_post),
        )
        .route(
            "/myaccount/grants/revoke",
            post(account_forms::account_grant_revoke_post),
        )
        .route(
            "/scim/v2/Users",
            get(scim::users_get).post(scim::users_post),
        )
        .route(
            "/scim/v2/Users/{id}",
            get(scim::user_get)
                .put(scim::user_put)
                .patch(scim::user_patch)
                .delete(scim::user_delete),
        )
        .route(
            "/scim/v2/Groups",
            get(scim::groups_get).post(scim::groups_post),
        )
        .route(
            "/scim/v2/Groups/{id}",
            get(scim::group_get)
                .put(scim::group_put)
                .patch(scim::group_patch)
                .delete(scim::group_delete),
        )
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(scim::resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(scim::resource_type))
        .route("/scim/v2/Schemas", get(scim::schemas_get))
        .route("/scim/v2/Schemas/{id}", get(scim::schema_get))
        .route(
            "/admin/v1/users/{id}/reset-totp",
            post(admin::reset_totp_post),
        )
        .route("/admin/v1/users/{id}/unlock", post(admin::unlock_post))
        .route("/admin/v1/users/{id}/sign-out", post(admin::sign_out_post))
        .route("/admin/v1/events", get(admin::events_get))
}

/// The whole server as a router (tests drive it without a socket).
pub fn app(state: Shared) -> Router {
    let base = state
        .config()
        .issuer
        .path()
        .trim_end_matches('/')
        .to_string();
    let routes = Router::new()
        .route("/", get(home_get))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready::readyz))
        .route("/assets/usher.css", get(stylesheet))
        .route(
            "/.well-known/openid-configuration",
            get(oidc_routes::discovery),
        )
        .route("/jwks", get(oidc_routes::jwks))
        .route(
            "/authorize",
            get(oidc_routes::authorize_get).post(oidc_routes::authorize_post),
        )
        .route("/token", post(oidc_routes::token))
        .route("/revoke", post(oidc_routes::revoke_post))
        .route("/introspect", post(oidc_routes::introspect_post))
        .route(
            "/userinfo",
            get(oidc_routes::userinfo_get).post(oidc_routes::userinfo_post),
        )
        .route(
            "/logout",
            get(oidc_routes::logout_get).post(oidc_routes::logout_post),
        )
        .route("/login/{flow}", get(login::login_get))
        .route("/login/{flow}/pick", post(login::login_pick_post))
        .route("/login/{flow}/password", post(login::login_password_post))
        .route("/login/{flow}/cancel", post(login::login_cancel_post))
        .route("/login/{flow}/totp", post(factors::login_totp_post))
        .route(
            "/login/{flow}/email_otp",
            post(factors::login_email_otp_post),
        )
        .route(
            "/login/{flow}/recovery_code",
            post(factors::login_recovery_code_post),
        )
        .route("/login/{flow}/continue", post(factors::login_continue_post))
        .route(
            "/login/{flow}/federation",
            post(federation::login_federation_post),
        )
        .route("/callback/{connection}", get(federation::callback_get))
        .route(
            "/signup/{flow}",
            get(login::signup_get).post(login::signup_post),
        )
        .route(
            "/login/{flow}/forgot",
            get(reset::login_forgot_get).post(reset::login_forgot_post),
        )
        .route(
            "/login/{flow}/reset",
            get(reset::login_reset_get).post(reset::login_reset_post),
        )
        .route(
            "/signup/{flow}/verify",
            get(reset::signup_verify_get).post(reset::signup_verify_post),
        )
        .route("/unlock/{token}", get(login::unlock_get))
        .route("/metrics", get(metrics::metrics_get))
        .merge(self_service_and_admin_routes())
        // Inside `render_errors`, so a request refused for its size or time is
        // answered in its route's style.
        .layer(axum::middleware::from_fn_with_state(
            limits::Limits::new(&state.config().server, &base),
            limits::enforce,
        ))
        // The client address is decided, and throttles checked, before any handler.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client::admit,
        ))
        // Errors are written out first, so the metrics see the status the client gets.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            error::render_errors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            security_headers,
        ))
        // First of all: the request's id and span, which every line it logs carries.
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state.clone());
    if base.is_empty() {
        routes
    } else {
        Router::new().nest(&base, routes)
    }
}
