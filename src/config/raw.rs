//! The YAML as written: serde types that mirror the files key for key.
//!
//! Every struct denies unknown fields, so a misspelt key is an error with a suggestion
//! rather than a silently ignored setting. Values stay close to the text (URLs and ids are
//! plain strings) because checking them here would give serde's terse messages; the
//! loader validates them afterwards with the key path and position in hand. Defaults
//! live here, next to the keys they belong to, so `docs/config.md` has one place to
//! be checked against.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use super::raw_client::{RawForwardedHeader, RawRate, RawThrottle};

/// `usher.yaml`, or a single-file configuration.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoot {
    /// The public base URL of this Usher; every endpoint hangs off it.
    pub issuer: String,
    /// Socket address `usher serve` listens on (default `127.0.0.1:9000`).
    #[serde(default)]
    pub listen: Option<String>,
    /// The embedded store (default `{ sled: { path: ./data } }`).
    #[serde(default)]
    pub store: Option<RawStore>,
    /// Where mail goes (default an outbox folder inside the store folder).
    #[serde(default)]
    pub email: Option<RawEmail>,
    /// A folder of templates overriding the built-in pages.
    #[serde(default)]
    pub theme: Option<String>,
    /// Lifetimes and limits.
    #[serde(default)]
    pub security: RawSecurity,
    /// Upstream identity providers by id. The loader takes these out of the document
    /// and reads them one by one, so one broken connection does not hide the others.
    #[serde(default)]
    pub connections: BTreeMap<String, RawConnection>,
    /// OIDC clients by id; read one by one like `connections`.
    #[serde(default)]
    pub apps: BTreeMap<String, RawApp>,
    /// The self-service account pages at `/myaccount` and the built-in app they sign
    /// in through (default: on, one step of password and every connection).
    #[serde(default)]
    pub my_account: Option<RawMyAccount>,
    /// The audit trail.
    #[serde(default)]
    pub audit: Option<RawAudit>,
    /// The Prometheus `/metrics` endpoint (default: off).
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// How the server meets its clients: transport limits (timeouts, connection and
    /// request counts, body sizes; all on by default) and the trusted reverse proxies
    /// (see `server.rs`).
    #[serde(default)]
    pub server: Option<super::server::RawServer>,
    /// How log lines are written (default: text; see `logging.rs`).
    #[serde(default)]
    pub log: Option<RawLog>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json`: one JSON object a line. `USHER_LOG_FORMAT` wins
    /// over it; read once, when the server starts.
    #[serde(default)]
    pub format: RawLogFormat,
}

/// `log.format`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawLogFormat {
    #[default]
    Text,
    Json,
}

/// `metrics:`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `/metrics` in the Prometheus text format (default false).
    #[serde(default, deserialize_with = "lenient")]
    pub enabled: bool,
    /// Serve it on this socket address only (e.g. `127.0.0.1:9464`) instead of on
    /// `listen` next to the sign-in pages.
    #[serde(default)]
    pub bind: Option<String>,
}

/// `my_account:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMyAccount {
    /// Serve My Account at all (default true).
    #[serde(default = "d_true", deserialize_with = "lenient")]
    pub enabled: bool,
    /// Sign-in steps of the built-in `usher-myaccount` app, like an app's
    /// `sign_in.steps` (default: one step offering password and every connection).
    #[serde(default)]
    pub steps: Option<Vec<RawStep>>,
    /// An adaptive script for those steps, relative to the file naming it.
    #[serde(default)]
    pub script: Option<String>,
    /// Profile attributes users may change themselves (default all four).
    #[serde(default)]
    pub editable: Option<Vec<RawProfileField>>,
    /// How recent a sign-in (that passed the account's second factor, when it has one)
    /// must be to change a credential (default 300).
    #[serde(default = "d_step_up", deserialize_with = "lenient")]
    pub step_up_seconds: u64,
}

fn d_step_up() -> u64 {
    300
}

/// `my_account.editable[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawProfileField {
    Name,
    GivenName,
    FamilyName,
    Picture,
}

/// `audit:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Days an audit event is kept before the sweeper removes it (default 90).
    #[serde(default = "d_retention", deserialize_with = "lenient")]
    pub retention_days: u64,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            retention_days: d_retention(),
        }
    }
}

fn d_retention() -> u64 {
    90
}

/// `store:` — at most one of `sled` (the default) or `postgres`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// The sled embedded database, for one node.
    #[serde(default)]
    pub sled: Option<RawSled>,
    /// A PostgreSQL database shared by every node.
    #[serde(default)]
    pub postgres: Option<RawPostgres>,
}

/// `store.postgres:`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// `postgres://user:password@host:port/database` (usually `${DATABASE_URL}`).
    #[serde(default)]
    pub url: String,
    /// The schema Usher's tables live in (default `public`).
    #[serde(default)]
    pub schema: Option<String>,
    /// The connection pool of each node.
    #[serde(default)]
    pub pool: Option<RawPool>,
    /// A PEM file of the certificate authorities that sign the database's certificate
    /// (with `sslmode=require` in the URL), relative to the config file.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// `store.postgres.pool:`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Connections a node keeps open at most (default 16).
    #[serde(default, deserialize_with = "lenient_opt")]
    pub max_connections: Option<usize>,
    /// How long a request waits for a connection before it is answered 503 (default 5).
    #[serde(default, deserialize_with = "lenient_opt")]
    pub acquire_timeout_seconds: Option<u64>,
}

/// `store.sled:`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSled {
    /// Folder of the database, relative to the config folder (default `./data`).
    #[serde(default)]
    pub path: Option<String>,
    /// Start even when the folder or the credentials key file can be read by other
    /// users, with a warning instead of a refusal (default false).
    #[serde(default, deserialize_with = "lenient")]
    pub allow_open_permissions: bool,
}

/// `email:` — exactly one of `outbox` or `smtp`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// Write each message as an `.eml` file into this folder (development).
    #[serde(default)]
    pub outbox: Option<String>,
    /// Send through an SMTP server.
    #[serde(default)]
    pub smtp: Option<RawSmtp>,
}

/// `email.smtp:`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Server host name.
    pub host: String,
    /// Server port (default 25, 587 or 465 for `tls: none`, `starttls`, `tls`).
    #[serde(default, deserialize_with = "lenient_opt")]
    pub port: Option<u16>,
    /// Transport security (default `starttls`).
    #[serde(default)]
    pub tls: RawSmtpTls,
    /// Login name, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Login password; use `${VAR}` rather than writing it down.
    #[serde(default)]
    pub password: Option<String>,
    /// The `From:` address of every message.
    pub from: String,
}

/// `email.smtp.tls`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
pub enum RawSmtpTls {
    #[serde(rename = "none")]
    None,
    #[default]
    #[serde(rename = "starttls")]
    StartTls,
    #[serde(rename = "tls")]
    Tls,
}

/// `security:`. Times are in seconds.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    /// Authorization code lifetime.
    #[serde(default = "d_code", deserialize_with = "lenient")]
    pub code_ttl_seconds: u64,
    /// Access token lifetime.
    #[serde(default = "d_hour", deserialize_with = "lenient")]
    pub access_token_ttl_seconds: u64,
    /// ID token lifetime.
    #[serde(default = "d_hour", deserialize_with = "lenient")]
    pub id_token_ttl_seconds: u64,
    /// Refresh token lifetime.
    #[serde(default = "d_refresh", deserialize_with = "lenient")]
    pub refresh_token_ttl_seconds: u64,
    /// How long an unfinished sign-in lives.
    #[serde(default = "d_flow", deserialize_with = "lenient")]
    pub flow_ttl_seconds: u64,
    /// Single sign-on session lifetime.
    #[serde(default = "d_session", deserialize_with = "lenient")]
    pub session_ttl_seconds: u64,
    /// Consecutive failures (any factor) per block: each block's last failure locks the
    /// account.
    #[serde(default = "d_attempts", deserialize_with = "lenient")]
    pub max_password_attempts: u32,
    /// How long the first lock lasts; each further block doubles it.
    #[serde(default = "d_lockout", deserialize_with = "lenient")]
    pub lockout_seconds: u64,
    /// The longest a doubled lock gets; also how long the failures of a name without an
    /// account are remembered.
    #[serde(default = "d_max_lockout", deserialize_with = "lenient")]
    pub max_lockout_seconds: u64,
    /// Consecutive failures after which the account stays locked until an administrator
    /// unlocks it.
    #[serde(default = "d_max_consecutive", deserialize_with = "lenient")]
    pub max_consecutive_failures: u32,
    /// Wrong one-time codes (TOTP, recovery) before the account's second factor is locked.
    #[serde(default = "d_attempts", deserialize_with = "lenient")]
    pub max_otp_attempts: u32,
    /// How long a second-factor lock lasts, and the window its failures are counted in.
    #[serde(default = "d_lockout", deserialize_with = "lenient")]
    pub otp_lockout_seconds: u64,
    /// Lifetime of access tokens from the `client_credentials` grant (admin APIs).
    #[serde(default = "d_service_token", deserialize_with = "lenient")]
    pub client_credentials_ttl_seconds: u64,
    /// Rules for new passwords.
    #[serde(default)]
    pub password_policy: RawPasswordPolicy,
    /// Per-client-address throttles, by kind of request (default: on).
    #[serde(default)]
    pub throttle: RawThrottle,
    /// Sign-up mails a code to the address and creates the account only when it comes
    /// back (default: on).
    #[serde(default = "d_true")]
    pub verify_sign_up_email: bool,
    /// File holding the key that encrypts TOTP secrets at rest, relative to the config
    /// folder (default `credentials.key` in the store folder, created on first start).
    #[serde(default)]
    pub credentials_key_file: Option<String>,
    /// The same key given inline, base64 of 32 bytes; use `${VAR}`. Excludes
    /// `credentials_key_file`.
    #[serde(default)]
    pub credentials_key: Option<String>,
}

/// `security.password_policy:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPasswordPolicy {
    /// Shortest accepted password, in characters (at least 8).
    #[serde(default = "d_min_len", deserialize_with = "lenient")]
    pub min_length: usize,
    /// Longest accepted password; bounds the hashing work an attacker can ask for.
    #[serde(default = "d_max_len", deserialize_with = "lenient")]
    pub max_length: usize,
    /// Require at least one digit.
    #[serde(default, deserialize_with = "lenient")]
    pub require_digit: bool,
    /// Require at least one character that is neither letter nor digit.
    #[serde(default, deserialize_with = "lenient")]
    pub require_symbol: bool,
    /// Require both upper- and lower-case letters.
    #[serde(default, deserialize_with = "lenient")]
    pub require_mixed_case: bool,
}

fn d_code() -> u64 {
    60
}
fn d_hour() -> u64 {
    3600
}
fn d_refresh() -> u64 {
    30 * 24 * 3600
}
fn d_flow() -> u64 {
    600
}
fn d_service_token() -> u64 {
    600
}
fn d_session() -> u64 {
    12 * 3600
}
fn d_attempts() -> u32 {
    5
}
fn d_lockout() -> u64 {
    900
}
fn d_max_lockout() -> u64 {
    24 * 3600
}
fn d_max_consecutive() -> u32 {
    100
}
fn d_min_len() -> usize {
    10
}
fn d_max_len() -> usize {
    256
}
fn d_true() -> bool {
    true
}

impl Default for RawSecurity {
    fn default() -> Self {
        RawSecurity {
            code_ttl_seconds: d_code(),
            access_token_ttl_seconds: d_hour(),
            id_token_ttl_seconds: d_hour(),
            refresh_token_ttl_seconds: d_refresh(),
            flow_ttl_seconds: d_flow(),
            session_ttl_seconds: d_session(),
            max_password_attempts: d_attempts(),
            lockout_seconds: d_lockout(),
            max_lockout_seconds: d_max_lockout(),
            max_consecutive_failures: d_max_consecutive(),
            max_otp_attempts: d_attempts(),
            otp_lockout_seconds: d_lockout(),
            client_credentials_ttl_seconds: d_service_token(),
            password_policy: RawPasswordPolicy::default(),
            throttle: RawThrottle::default(),
            verify_sign_up_email: true,
            credentials_key_file: None,
            credentials_key: None,
        }
    }
}

impl Default for RawPasswordPolicy {
    fn default() -> Self {
        RawPasswordPolicy {
            min_length: d_min_len(),
            max_length: d_max_len(),
            require_digit: false,
            require_symbol: false,
            require_mixed_case: false,
        }
    }
}

/// One entry of `connections:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    /// Which protocol, or which preset of it.
    pub kind: RawKind,
    /// Button label (default "Google", "GitHub", or the connection id).
    #[serde(default)]
    pub display_name: Option<String>,
    /// The client id registered at the upstream provider.
    pub client_id: String,
    /// The client secret registered at the upstream provider.
    pub client_secret: String,
    /// OIDC issuer; discovery is read from it. Required for `oidc`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// OAuth2 authorization endpoint.
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// OAuth2 token endpoint.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Endpoint returning the user's profile (OIDC kinds: overrides discovery's).
    #[serde(default)]
    pub userinfo_url: Option<String>,
    /// OIDC kinds: when to read the userinfo endpoint after the code exchange.
    #[serde(default)]
    pub userinfo: RawUserinfo,
    /// Endpoint listing the user's e-mail addresses (GitHub's `/user/emails`).
    #[serde(default)]
    pub emails_url: Option<String>,
    /// Scopes to request upstream.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Local attribute name → upstream claim name.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Just-in-time provisioning of local accounts.
    #[serde(default)]
    pub jit: RawJit,
    /// Accept the upstream's `amr` as a second factor.
    #[serde(default, deserialize_with = "lenient")]
    pub trust_upstream_mfa: bool,
}

/// `connections.<id>.kind`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawKind {
    Oidc,
    Google,
    Github,
    Oauth2,
}

/// `connections.<id>.jit:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJit {
    /// Create a local account at the first federated sign-in.
    #[serde(default = "d_true", deserialize_with = "lenient")]
    pub provision: bool,
    /// How the account is created.
    #[serde(default)]
    pub scheme: RawScheme,
    /// What happens to local attributes on later sign-ins.
    #[serde(default)]
    pub attributes: RawAttributes,
    /// Whether a federated identity may join an existing local account.
    #[serde(default)]
    pub link: RawLink,
}

impl Default for RawJit {
    fn default() -> Self {
        RawJit {
            provision: true,
            scheme: RawScheme::default(),
            attributes: RawAttributes::default(),
            link: RawLink::default(),
        }
    }
}

/// `connections.<id>.userinfo`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawUserinfo {
    /// When the provider has a userinfo endpoint and an access token was issued.
    #[default]
    Auto,
    /// Always; a provider without the endpoint or without an access token fails the step.
    Always,
    /// Never: the ID token alone.
    Never,
}

/// `jit.scheme`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawScheme {
    #[default]
    Silent,
    PromptConsent,
    PromptUsername,
}

/// `jit.attributes`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawAttributes {
    #[default]
    Override,
    PreserveLocal,
    None,
}

/// `jit.link`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawLink {
    #[default]
    Never,
    VerifiedEmailWithProof,
}

/// One entry of `apps:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// Shown on the sign-in pages.
    pub name: String,
    /// URL of a logo for the sign-in pages.
    #[serde(default)]
    pub logo: Option<String>,
    /// The OAuth `client_id` the app sends.
    pub client_id: String,
    /// Omit for a public client (PKCE is then required).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Where codes may be sent; matched exactly.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where the browser may go after logout; matched exactly.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// ID-token signing algorithm (default `RS256`).
    #[serde(default)]
    pub signing_alg: Option<RawAlg>,
    /// Offer the sign-up page for this app.
    #[serde(default, deserialize_with = "lenient")]
    pub sign_up: bool,
    /// Let users without a second factor enrol one (TOTP) while signing in.
    #[serde(default = "d_true", deserialize_with = "lenient")]
    pub mfa_enrolment: bool,
    /// OAuth grants the app may use (default `[authorization_code]`).
    #[serde(default)]
    pub grants: Option<Vec<RawGrant>>,
    /// API scopes the app may ask for with `client_credentials`.
    #[serde(default)]
    pub scopes: Vec<RawApiScope>,
    /// Groups this app may see in the `groups` claim (asked for with the `groups`
    /// scope): display names, or prefixes ending in `*` (`"*"` for all). None by
    /// default: an app learns of no group it is not meant to.
    #[serde(default)]
    pub groups_claim: Vec<String>,
    /// Whether the `roles` scope releases the account's roles (its own and its
    /// groups') in the `roles` claim (default no).
    #[serde(default, deserialize_with = "lenient")]
    pub roles_claim: bool,
    /// How users sign in; required with the `authorization_code` grant.
    #[serde(default)]
    pub sign_in: Option<RawSignIn>,
}

/// `apps.<id>.grants[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawGrant {
    AuthorizationCode,
    ClientCredentials,
}

/// `apps.<id>.scopes[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawApiScope {
    Scim,
    Audit,
}

/// `apps.<id>.signing_alg`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub enum RawAlg {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

/// `apps.<id>.sign_in:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignIn {
    /// Ordered steps; each is passed with any one of its options.
    pub steps: Vec<RawStep>,
    /// A `.rhai` adaptive script, relative to the file naming it.
    #[serde(default)]
    pub script: Option<String>,
    /// Request headers the script may read as `ctx.request.headers` (never `cookie` or
    /// `authorization`).
    #[serde(default)]
    pub request_headers: Vec<String>,
}

/// Which of the two spellings a step used; the key path of its options depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepShape {
    /// `[password, google]` — options at `steps[i][j]`.
    List,
    /// `{ options: [...], force: true }` — options at `steps[i].options[j]`.
    Map,
}

/// One step, in either spelling.
#[derive(Debug, Serialize)]
pub struct RawStep {
    /// Option names: built-ins or connection ids.
    pub options: Vec<String>,
    /// Ask again even when the single sign-on session already passed this step.
    pub force: bool,
    #[serde(skip)]
    pub shape: StepShape,
}

/// The long spelling of a step.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepMap {
    options: Vec<String>,
    #[serde(default, deserialize_with = "lenient")]
    force: bool,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;

        impl<'de> Visitor<'de> for StepVisitor {
            type Value = RawStep;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of options like `[password, google]` or a map like `{ options: [totp], force: true }`")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawStep, A::Error> {
                let mut options = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    options.push(name);
                }
                Ok(RawStep {
                    options,
                    force: false,
                    shape: StepShape::List,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawStep, A::Error> {
                let long = RawStepMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawStep {
                    options: long.options,
                    force: long.force,
                    shape: StepShape::Map,
                })
            }
        }

        deserializer.deserialize_any(StepVisitor)
    }
}

/// Accepts a number or boolean either as itself or as a string. `${VAR}` interpolation
/// always yields a string, and `port: ${SMTP_PORT:-587}` should still work.
pub(super) fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    deserializer.deserialize_any(LenientVisitor(PhantomData))
}

fn lenient_opt<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    lenient(deserializer).map(Some)
}

struct LenientVisitor<T>(PhantomData<T>);

impl<T> LenientVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn parse<E: de::Error>(text: &str) -> Result<T, E> {
        T::from_str(text.trim()).map_err(|e| E::custom(format_args!("invalid value `{text}`: {e}")))
    }
}

impl<'de, T> Visitor<'de> for LenientVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or true/false")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Self::parse(v)
    }
}

/// Every key and every enum value the raw types accept, found by serializing an example
/// in which every optional section is present. `tests/suite/config_errors.rs` checks that
/// `docs/config.md` names each of them, so the reference cannot silently fall behind.
pub fn vocabulary() -> Vec<String> {
    let mut root = RawRoot {
        issuer: String::new(),
        listen: None,
        store: Some(RawStore {
            sled: Some(RawSled::default()),
            postgres: Some(RawPostgres {
                pool: Some(RawPool::default()),
                ..RawPostgres::default()
            }),
        }),
        email: Some(RawEmail {
            outbox: None,
            smtp: Some(RawSmtp::default()),
        }),
        theme: None,
        security: RawSecurity::default(),
        connections: BTreeMap::new(),
        apps: BTreeMap::new(),
        my_account: Some(RawMyAccount {
            enabled: true,
            steps: Some(Vec::new()),
            script: Some(String::new()),
            editable: Some(Vec::new()),
            step_up_seconds: d_step_up(),
        }),
        audit: Some(RawAudit::default()),
        metrics: Some(RawMetrics {
            enabled: false,
            bind: Some(String::new()),
        }),
        server: Some(super::server::RawServer::default()),
        log: Some(RawLog::default()),
    };
    root.connections.insert(
        String::new(),
        RawConnection {
            kind: RawKind::Oidc,
            display_name: None,
            client_id: String::new(),
            client_secret: String::new(),
            issuer: None,
            authorize_url: None,
            token_url: None,
            userinfo_url: None,
            userinfo: RawUserinfo::Auto,
            emails_url: None,
            scopes: None,
            claims: BTreeMap::new(),
            jit: RawJit::default(),
            trust_upstream_mfa: false,
        },
    );
    root.apps.insert(
        String::new(),
        RawApp {
            name: String::new(),
            logo: None,
            client_id: String::new(),
            client_secret: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            signing_alg: None,
            sign_up: false,
            mfa_enrolment: true,
            grants: Some(Vec::new()),
            scopes: Vec::new(),
            groups_claim: Vec::new(),
            roles_claim: false,
            sign_in: Some(RawSignIn {
                steps: vec![RawStep {
                    options: Vec::new(),
                    force: false,
                    shape: StepShape::Map,
                }],
                script: None,
                request_headers: Vec::new(),
            }),
        },
    );
    let mut words = Vec::new();
    if let Ok(value) = serde_yaml::to_value(&root) {
        collect_keys(&value, &mut words);
    }
    let values = [
        to_words(&[RawSmtpTls::None, RawSmtpTls::StartTls, RawSmtpTls::Tls]),
        to_words(&[RawLogFormat::Text, RawLogFormat::Json]),
        to_words(&[
            RawKind::Oidc,
            RawKind::Google,
            RawKind::Github,
            RawKind::Oauth2,
        ]),
        to_words(&[RawUserinfo::Auto, RawUserinfo::Always, RawUserinfo::Never]),
        to_words(&[
            RawScheme::Silent,
            RawScheme::PromptConsent,
            RawScheme::PromptUsername,
        ]),
        to_words(&[
            RawAttributes::Override,
            RawAttributes::PreserveLocal,
            RawAttributes::None,
        ]),
        to_words(&[RawLink::Never, RawLink::VerifiedEmailWithProof]),
        to_words(&[RawAlg::Rs256, RawAlg::Es256, RawAlg::EdDsa]),
        to_words(&[RawGrant::AuthorizationCode, RawGrant::ClientCredentials]),
        to_words(&[RawApiScope::Scim, RawApiScope::Audit]),
        to_words(&[
            RawForwardedHeader::XForwardedFor,
            RawForwardedHeader::Forwarded,
        ]),
        to_words(&[
            RawProfileField::Name,
            RawProfileField::GivenName,
            RawProfileField::FamilyName,
            RawProfileField::Picture,
        ]),
    ];
    words.extend(values.into_iter().flatten());
    words.sort();
    words.dedup();
    words
}

fn collect_keys(value: &serde_yaml::Value, out: &mut Vec<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                // The empty ids of the example's app and connection are not keys.
                if let Some(k) = k.as_str().filter(|k| !k.is_empty()) {
                    out.push(k.to_string());
                }
                collect_keys(v, out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

fn to_words<T: Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| serde_yaml::to_value(v).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}
