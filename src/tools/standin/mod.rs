//! Local stand-ins for upstream identity providers (an OIDC provider shaped like Google,
//! and GitHub's OAuth app flow and user API), for tests and the offline demo.
//!
//! A stand-in is a real HTTP server on a loopback port, started in-process, speaking the
//! real protocol with real RS256 signatures, so Usher's upstream connectors are exercised
//! exactly as against the real provider. Its consent page is a plain HTML form that a
//! test can parse and post without cookies. [`Faults`] make it misbehave on purpose, to
//! prove that the relying party notices; they and the users can be changed while it runs.

mod consent;
mod github;
mod oidc;
mod pages;
mod params;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::Router;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A user the stand-in can sign in.
#[derive(Debug, Clone, PartialEq)]
pub struct StandinUser {
    /// The OIDC `sub`, or the GitHub numeric id (as decimal text).
    pub id: String,
    /// `preferred_username` (OIDC) or the GitHub `login`.
    pub login: String,
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    /// OIDC: added to the ID token and userinfo (they may override profile claims such
    /// as `email_verified`, never `iss`, `sub`, `aud`, `exp`, `iat` or `nonce`).
    /// GitHub: merged over the `/user` answer, so `{"email": null}` makes the email
    /// private (then `/user/emails` reports it with `visibility: "private"`).
    pub extra_claims: Map<String, Value>,
    /// OIDC: added to the userinfo answer only, over everything else (so a test can
    /// make userinfo disagree with the ID token).
    pub userinfo_claims: Map<String, Value>,
    /// Authentication methods the upstream claims it used (`amr`), e.g. `["pwd","mfa"]`.
    /// Sent in the ID token only when not empty.
    pub amr: Vec<String>,
    /// GitHub: the teams `/user/teams` lists, as (organisation login, team name); the
    /// slug is the name in lower case with spaces as hyphens.
    pub teams: Vec<(String, String)>,
}

impl StandinUser {
    /// A user with a verified email, no extra claims and no `amr`.
    pub fn new(id: &str, login: &str, name: &str, email: &str) -> StandinUser {
        StandinUser {
            id: id.to_string(),
            login: login.to_string(),
            name: name.to_string(),
            email: email.to_string(),
            email_verified: true,
            extra_claims: Map::new(),
            userinfo_claims: Map::new(),
            amr: Vec::new(),
            teams: Vec::new(),
        }
    }
}

/// Which provider the stand-in imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OpenID provider behaving like Google (discovery, JWKS, PKCE required).
    Oidc,
    /// GitHub's OAuth app endpoints and its REST `/user`, `/user/emails` and
    /// `/user/teams`.
    Github,
}

/// What to start.
#[derive(Clone)]
pub struct StandinConfig {
    pub kind: Kind,
    pub users: Vec<StandinUser>,
    /// The one client the stand-in knows. Any absolute http(s) `redirect_uri` is
    /// accepted for it: a stand-in has no client registration.
    pub client_id: String,
    pub client_secret: String,
    pub faults: Faults,
    /// OIDC: the ID token carries only the protocol claims (`sub`, `iss`, …, `amr`);
    /// the profile and email claims come from userinfo alone, as OIDC Core §5.4 allows
    /// and many providers do once an access token is issued.
    pub profile_in_userinfo_only: bool,
    /// OIDC: the issuer is the base URL with a trailing slash (`http://127.0.0.1:PORT/`),
    /// in discovery, ID tokens and the `iss` parameter alike, as many tenants' are.
    pub issuer_with_trailing_slash: bool,
}

impl StandinConfig {
    pub fn new(kind: Kind, client_id: &str, client_secret: &str) -> StandinConfig {
        StandinConfig {
            kind,
            users: Vec::new(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            faults: Faults::default(),
            profile_in_userinfo_only: false,
            issuer_with_trailing_slash: false,
        }
    }

    /// Send profile and email claims from userinfo only (see
    /// [`StandinConfig::profile_in_userinfo_only`]).
    pub fn profile_in_userinfo_only(mut self) -> StandinConfig {
        self.profile_in_userinfo_only = true;
        self
    }

    pub fn with_user(mut self, user: StandinUser) -> StandinConfig {
        self.users.push(user);
        self
    }
}

impl std::fmt::Debug for StandinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandinConfig")
            .field("kind", &self.kind)
            .field("users", &self.users)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("faults", &self.faults)
            .field("profile_in_userinfo_only", &self.profile_in_userinfo_only)
            .finish()
    }
}

/// Deliberate misbehaviour, for negative tests. The ID-token faults apply to tokens
/// issued after they are set; `iss_param` to redirects sent after it is set.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Faults {
    /// The ID token names another issuer.
    pub wrong_issuer_in_id_token: bool,
    /// The ID token is for another client.
    pub wrong_audience: bool,
    /// The ID token carries a nonce other than the one requested.
    pub wrong_nonce: bool,
    /// The ID token expired an hour ago.
    pub expired_id_token: bool,
    /// The ID token's signature is corrupted (one byte flipped).
    pub bad_signature: bool,
    /// The RFC 9207 `iss` sent back on the redirect. `None`: the right issuer for
    /// OIDC, none at all for GitHub (which does not send it).
    pub iss_param: Option<String>,
    /// How the OIDC userinfo endpoint misbehaves, if it does.
    pub userinfo: Option<UserinfoFault>,
    /// The `issuer` the discovery document names instead of the stand-in's own.
    pub discovery_issuer: Option<String>,
}

/// Ways the OIDC userinfo endpoint can misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserinfoFault {
    /// Names another user (`sub` differs from the ID token's).
    WrongSubject,
    /// Answers a JSON object of about 4 MiB.
    Huge,
    /// Answers HTML with status 200.
    NotJson,
    /// Answers a signed JWT (`application/jwt`), as OIDC Core allows when a client
    /// registered for it.
    Jwt,
    /// Answers after 30 seconds.
    Slow,
}

/// How many users the consent page lists at most.
const LISTED_USERS: usize = 50;

/// How long a consent request and a code stay usable.
const PENDING_TTL: u64 = 600;
const CODE_TTL: u64 = 300;
/// Lifetime of an OIDC access token (GitHub's never expire).
const ACCESS_TTL: u64 = 3600;

/// An authorization request waiting for the user's decision on the consent page.
#[derive(Debug, Clone)]
struct Pending {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    code_challenge: Option<String>,
    expires_at: u64,
}

/// An issued, not yet redeemed, authorization code.
#[derive(Debug, Clone)]
struct Grant {
    user_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    scope: String,
    code_challenge: Option<String>,
    expires_at: u64,
}

/// What an access token stands for.
#[derive(Debug, Clone)]
struct AccessGrant {
    user_id: String,
    scope: String,
    /// `None` for GitHub tokens, which do not expire.
    expires_at: Option<u64>,
}

/// A code that has been redeemed, kept until its token would have expired anyway.
#[derive(Debug, Clone)]
struct Redeemed {
    /// `None` while the exchange that redeemed it is still under way.
    access_token: Option<String>,
    expires_at: u64,
}

/// State shared by every request of one stand-in.
struct Shared {
    kind: Kind,
    base_url: String,
    /// The OIDC issuer: the base URL, with a trailing slash when so configured.
    issuer: String,
    client_id: String,
    client_secret: String,
    users: RwLock<Vec<StandinUser>>,
    faults: RwLock<Faults>,
    pending: Mutex<HashMap<String, Pending>>,
    codes: Mutex<HashMap<String, Grant>>,
    /// Redeemed codes and the access token each produced: a second redemption revokes
    /// that token, as the OAuth security BCP asks.
    redeemed: Mutex<HashMap<String, Redeemed>>,
    tokens: Mutex<HashMap<String, AccessGrant>>,
    profile_in_userinfo_only: bool,
    /// The ID-token signing key (OIDC only).
    key: Option<oidc::SigningKey>,
}

/// A lock that survives a panicked holder: the maps stay usable, and a stand-in must
/// keep answering.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    fn faults(&self) -> Faults {
        match self.faults.read() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn user(&self, id: &str) -> Option<StandinUser> {
        let users = match self.users.read() {
            Ok(u) => u,
            Err(poisoned) => poisoned.into_inner(),
        };
        users.iter().find(|u| u.id == id).cloned()
    }

    /// The users the consent page lists: the first [`LISTED_USERS`]. Any user can
    /// still be chosen by id (a load test adds thousands).
    fn listed_users(&self) -> Vec<StandinUser> {
        let users = match self.users.read() {
            Ok(u) => u,
            Err(poisoned) => poisoned.into_inner(),
        };
        users.iter().take(LISTED_USERS).cloned().collect()
    }

    /// The user an `Authorization` header's access token belongs to, with its scope.
    /// `schemes` are the accepted scheme names (GitHub also takes `token`).
    fn bearer_user(
        &self,
        headers: &axum::http::HeaderMap,
        schemes: &[&str],
        now: u64,
    ) -> Option<(StandinUser, String)> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return None;
        }
        let grant = lock(&self.tokens).get(token.trim()).cloned()?;
        if grant.expires_at.is_some_and(|exp| exp <= now) {
            return None;
        }
        Some((self.user(&grant.user_id)?, grant.scope))
    }
}

/// A running stand-in. Dropping it stops the server too; [`Standin::stop`] also waits.
pub struct Standin {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    shared: Arc<Shared>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Standin {
    /// Start on a fresh loopback port.
    pub async fn start(config: StandinConfig) -> std::io::Result<Standin> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Standin::start_on(listener, config).await
    }

    /// Start on a listener the caller bound (to choose the port, e.g. for the demo).
    pub async fn start_on(
        listener: TcpListener,
        config: StandinConfig,
    ) -> std::io::Result<Standin> {
        validate(&config)?;
        let base_url = base_url(listener.local_addr()?);
        let key = match config.kind {
            // RSA key generation takes a while; keep it off the async workers.
            Kind::Oidc => Some(
                tokio::task::spawn_blocking(oidc::SigningKey::generate)
                    .await
                    .map_err(std::io::Error::other)??,
            ),
            Kind::Github => None,
        };
        let shared = Arc::new(Shared {
            kind: config.kind,
            base_url: base_url.clone(),
            issuer: if config.issuer_with_trailing_slash {
                format!("{base_url}/")
            } else {
                base_url.clone()
            },
            client_id: config.client_id,
            client_secret: config.client_secret,
            users: RwLock::new(config.users),
            faults: RwLock::new(config.faults),
            pending: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            redeemed: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            profile_in_userinfo_only: config.profile_in_userinfo_only,
            key,
        });
        let app = router(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender ends the server as surely as a sent signal.
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Standin {
            base_url,
            shared,
            shutdown,
            task,
        })
    }

    /// Replace the faults; requests from now on see the new ones.
    pub fn set_faults(&self, faults: Faults) {
        match self.shared.faults.write() {
            Ok(mut f) => *f = faults,
            Err(poisoned) => *poisoned.into_inner() = faults,
        }
    }

    /// Add a user, or replace the one with the same id (to test attribute re-sync).
    pub fn set_user(&self, user: StandinUser) {
        let mut users = match self.shared.users.write() {
            Ok(u) => u,
            Err(poisoned) => poisoned.into_inner(),
        };
        match users.iter_mut().find(|u| u.id == user.id) {
            Some(existing) => *existing = user,
            None => users.push(user),
        }
    }

    /// The issuer: the base URL (also for GitHub, where the notion does not apply),
    /// with a trailing slash when [`StandinConfig::issuer_with_trailing_slash`] is set.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// Where the browser is sent to sign in.
    pub fn authorize_url(&self) -> String {
        match self.shared.kind {
            Kind::Oidc => format!("{}/authorize", self.base_url),
            Kind::Github => format!("{}/login/oauth/authorize", self.base_url),
        }
    }

    /// Where codes are exchanged for tokens.
    pub fn token_url(&self) -> String {
        match self.shared.kind {
            Kind::Oidc => format!("{}/token", self.base_url),
            Kind::Github => format!("{}/login/oauth/access_token", self.base_url),
        }
    }

    /// Where the signed-in user's profile is read (`/userinfo`, or GitHub's `/user`).
    pub fn userinfo_url(&self) -> String {
        match self.shared.kind {
            Kind::Oidc => format!("{}/userinfo", self.base_url),
            Kind::Github => format!("{}/user", self.base_url),
        }
    }

    /// GitHub's `/user/emails`; `None` for OIDC, whose userinfo carries the email.
    pub fn emails_url(&self) -> Option<String> {
        match self.shared.kind {
            Kind::Oidc => None,
            Kind::Github => Some(format!("{}/user/emails", self.base_url)),
        }
    }

    /// Stop serving and wait (briefly) for open requests to finish.
    pub async fn stop(self) {
        let Standin {
            shutdown, mut task, ..
        } = self;
        let _ = shutdown.send(());
        // Idle keep-alive connections of a client can hold a graceful shutdown open;
        // a stand-in does not need to wait for them.
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// A URL for the bound address; an unspecified address (`0.0.0.0`) is reached over
/// loopback.
fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

fn validate(config: &StandinConfig) -> std::io::Result<()> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
    if config.client_id.is_empty() {
        return Err(invalid("the stand-in needs a client_id".into()));
    }
    for (i, user) in config.users.iter().enumerate() {
        if config.users[..i].iter().any(|u| u.id == user.id) {
            return Err(invalid(format!("two stand-in users have id {:?}", user.id)));
        }
        if config.kind == Kind::Github && user.id.parse::<u64>().is_err() {
            return Err(invalid(format!(
                "GitHub user ids are numbers; {:?} is not",
                user.id
            )));
        }
    }
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    match shared.kind {
        Kind::Oidc => oidc::routes(),
        Kind::Github => github::routes(),
    }
    .with_state(shared)
}
