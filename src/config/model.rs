//! The validated, resolved configuration every other module reads.
//!
//! These types are produced by the loader (`config::load`) from the raw YAML types in
//! `raw.rs`; they carry no serde attributes of their own because nothing deserializes
//! them directly. Paths are absolute (resolved against the file that named them), URLs
//! are parsed, step options are resolved into [`StepOption`], secrets are [`Secret`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use url::Url;

pub use crate::client_addr::{Cidr, ForwardedHeader};
use crate::secret::Secret;

/// The whole configuration, shared read-only behind an `Arc` and swapped on reload.
#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer URL; every endpoint hangs off it.
    pub issuer: Url,
    /// Address `usher serve` listens on.
    pub listen: SocketAddr,
    /// The store backend and where it keeps its data.
    pub store: StoreConfig,
    /// Where mail goes.
    pub email: EmailConfig,
    /// A folder whose templates override the built-in ones, if any.
    pub theme: Option<PathBuf>,
    /// Lifetimes and limits.
    pub security: Security,
    /// Upstream identity providers, by id.
    pub connections: BTreeMap<String, Arc<Connection>>,
    /// OIDC clients, by id. Includes the built-in My Account app
    /// ([`MY_ACCOUNT_APP`]) unless `my_account.enabled` is off.
    pub apps: BTreeMap<String, Arc<App>>,
    /// The self-service account pages.
    pub my_account: MyAccount,
    /// The audit trail.
    pub audit: AuditSettings,
    /// The Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// How the server meets its clients: transport limits (read at start-up) and the
    /// trusted reverse proxies.
    pub server: super::ServerSettings,
    /// How log lines are written.
    pub log: LogSettings,
    /// Every file the config was read from (watched for changes by `usher serve`).
    pub files: Vec<PathBuf>,
}

/// Id and client id of the built-in app My Account signs in through.
pub const MY_ACCOUNT_APP: &str = "usher-myaccount";

/// `my_account:`, resolved. The steps live on the built-in app in [`Config::apps`].
#[derive(Debug, Clone)]
pub struct MyAccount {
    pub enabled: bool,
    /// Profile attributes users may change themselves.
    pub editable: Vec<ProfileField>,
    /// A credential change needs a sign-in at most this many seconds old that passed
    /// the account's second factor (when it has one); greater than 0.
    pub step_up_seconds: u64,
}

/// A profile attribute My Account can offer for editing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    Name,
    GivenName,
    FamilyName,
    Picture,
}

impl ProfileField {
    pub const ALL: [ProfileField; 4] = [
        ProfileField::Name,
        ProfileField::GivenName,
        ProfileField::FamilyName,
        ProfileField::Picture,
    ];

    /// The claim and form field name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileField::Name => "name",
            ProfileField::GivenName => "given_name",
            ProfileField::FamilyName => "family_name",
            ProfileField::Picture => "picture",
        }
    }
}

/// `metrics:`, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// A separate address to serve it on; `None` serves it on `listen`.
    pub bind: Option<SocketAddr>,
}

impl MetricsSettings {
    /// Whether the main listener answers `/metrics`.
    pub fn on_main_listener(&self) -> bool {
        self.enabled && self.bind.is_none()
    }
}

/// `log:`, resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// The format `usher serve` writes log lines in. Chosen when the process starts
    /// (`USHER_LOG_FORMAT` wins over it); a reload does not switch it.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line per event, span fields in front.
    #[default]
    Text,
    /// For machines: one JSON object per line, span fields (the request id) flattened
    /// into it.
    Json,
}

/// `audit:`, resolved.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Events older than this many days are swept (default 90).
    pub retention_days: u64,
}

impl Config {
    /// The issuer as it appears in `iss` and discovery: the configured URL without a
    /// trailing slash, since clients compare it byte for byte.
    pub fn issuer_id(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_string()
    }
}

/// Which store backend holds Usher's data (`store:` in the YAML, which names exactly
/// one backend). Changing it takes effect on restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded sled database (`store: { sled: { path } }`), for one node.
    Sled {
        /// The database folder, absolute; the mail outbox and the credential key
        /// default to living inside it.
        path: PathBuf,
        /// Warn rather than refuse to start when the folder or the credentials key
        /// file can be read by group or others.
        allow_open_permissions: bool,
    },
    /// A PostgreSQL database (`store: { postgres: { url, schema, pool } }`), shared by
    /// every node of a deployment.
    Postgres(crate::store::postgres::PgSettings),
}

#[derive(Debug, Clone)]
pub enum EmailConfig {
    /// Development default: every message is written as an `.eml` file into this folder.
    Outbox(PathBuf),
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

/// Lifetimes (seconds) and attempt limits. Every field has a default.
#[derive(Debug, Clone)]
pub struct Security {
    /// How long an authorization code stays valid (default 60).
    pub code_ttl: u64,
    /// Access token lifetime (default 3600).
    pub access_token_ttl: u64,
    /// ID token lifetime (default 3600).
    pub id_token_ttl: u64,
    /// Refresh token lifetime (default 30 days).
    pub refresh_token_ttl: u64,
    /// How long an unfinished login lives (default 600).
    pub flow_ttl: u64,
    /// SSO session lifetime (default 12 hours).
    pub session_ttl: u64,
    /// Lifetime of `client_credentials` access tokens (default 600).
    pub client_credentials_ttl: u64,
    /// Consecutive failures of an account, any factor, per block: each block's last
    /// failure locks it (default 5). Also the per-sign-in limit of wrong passwords.
    pub max_password_attempts: u32,
    /// How long the first lock lasts; each further block doubles it (default 900).
    pub lockout_seconds: u64,
    /// The longest a doubled lock gets, and how long the failures of a name without an
    /// account are remembered (default 24 hours).
    pub max_lockout_seconds: u64,
    /// Consecutive failures after which the account stays locked until an administrator
    /// unlocks it (default 100, the ceiling of NIST SP 800-63B §5.2.2).
    pub max_consecutive_failures: u32,
    /// Wrong one-time codes before the account's second factor locks (default 5).
    pub max_otp_attempts: u32,
    /// How long a second-factor lock lasts (default 900).
    pub otp_lockout_seconds: u64,
    /// Rules for new passwords.
    pub password_policy: PasswordPolicy,
    /// Per-client-address throttles.
    pub throttle: Throttles,
    /// Sign-up mails a code to the address and creates the account, its address
    /// verified, only when the code comes back (default true). Off: the account is
    /// created at once with an unverified address, which claims nothing.
    pub verify_sign_up_email: bool,
    /// The key that encrypts TOTP secrets at rest.
    pub credentials_key: CredentialsKey,
}

/// Where the credential encryption key comes from. Only where: the key itself is read
/// (and a missing key file created) by `authn::sealing` when the server starts, so
/// loading a configuration — `usher check` — never writes anything.
#[derive(Debug, Clone)]
pub enum CredentialsKey {
    /// A file of 32 raw bytes (or their base64), created with mode 0600 when missing.
    File(PathBuf),
    /// The key as base64 text, already checked to decode to 32 bytes.
    Inline(Secret),
}

/// Length of the credential encryption key in bytes.
pub const CREDENTIALS_KEY_LEN: usize = 32;

/// Why a base64 key text is not a usable key. Never carries the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("is not base64")]
    NotBase64,
    #[error("decodes to {0} bytes; it must be {CREDENTIALS_KEY_LEN}")]
    WrongLength(usize),
}

/// Decodes a base64 key (standard or URL-safe alphabet, padding optional, surrounding
/// whitespace ignored). Shared by the config check and the key loader so both accept
/// exactly the same spellings.
pub fn decode_key_text(text: &str) -> Result<[u8; CREDENTIALS_KEY_LEN], KeyTextError> {
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;

    // Keys come from `openssl rand -base64 32` (standard, padded) as often as from
    // tools that emit URL-safe text without padding; refusing either would only annoy.
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let text = text.trim();
    let bytes = GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(text))
        .map_err(|_| KeyTextError::NotBase64)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyTextError::WrongLength(len))
}

/// `security.throttle:`, resolved: per client address, per kind of request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttles {
    /// Off only when the config says so.
    pub enabled: bool,
    /// Password and code posts and the linking proof (default 30 per 60 s).
    pub sign_in: Rate,
    /// Sign-up posts (default 10 per 600 s).
    pub sign_up: Rate,
    /// Email code sends (default 10 per 600 s).
    pub email: Rate,
    /// `/token`, `/revoke` and `/introspect` (default 600 per 60 s).
    pub token: Rate,
    /// SCIM and the admin API (default 600 per 60 s).
    pub api: Rate,
}

/// At most `max` requests in any `seconds` (both greater than 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: u32,
    pub seconds: u64,
}

#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    pub require_digit: bool,
    pub require_symbol: bool,
    pub require_mixed_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }
}

/// An OIDC client.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    /// Shown on the sign-in pages.
    pub name: String,
    /// URL of a logo shown on the sign-in pages.
    pub logo: Option<String>,
    pub client_id: String,
    /// `None` makes a public client: PKCE is then required and client auth is `none`.
    pub client_secret: Option<Secret>,
    pub redirect_uris: Vec<Url>,
    pub post_logout_redirect_uris: Vec<Url>,
    /// ID-token signing algorithm (default RS256).
    pub signing_alg: SigningAlg,
    pub sign_in: SignIn,
    /// Whether the sign-up page is offered for this app.
    pub sign_up: bool,
    /// Whether users may enrol TOTP while signing in (default yes).
    pub mfa_enrolment: bool,
    /// OAuth grants the app may use (default `authorization_code`, which brings
    /// `refresh_token` with it).
    pub grants: Vec<GrantType>,
    /// API scopes the app may obtain with `client_credentials`.
    pub scopes: Vec<ApiScope>,
    /// The groups the app may see in the `groups` claim: display names, or prefixes
    /// ending in `*`. Empty: none.
    pub groups_claim: Vec<String>,
    /// Whether the `roles` scope releases the `roles` claim.
    pub roles_claim: bool,
}

impl App {
    /// A public app `id` with these steps and the defaults of every other setting: what
    /// tests, benchmarks and tools build when they need an app without a config file.
    pub fn with_steps(id: &str, steps: Vec<Vec<StepOption>>, script: Option<ScriptSource>) -> App {
        App {
            id: id.to_string(),
            name: id.to_string(),
            logo: None,
            client_id: id.to_string(),
            client_secret: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            signing_alg: SigningAlg::Rs256,
            sign_in: SignIn {
                steps: steps
                    .into_iter()
                    .map(|options| Step {
                        options,
                        force: false,
                    })
                    .collect(),
                script,
                request_headers: Vec::new(),
            },
            sign_up: false,
            mfa_enrolment: true,
            grants: vec![GrantType::AuthorizationCode],
            scopes: Vec::new(),
            groups_claim: Vec::new(),
            roles_claim: false,
        }
    }

    /// Whether the app may see group `name` in its `groups` claim (case-insensitive).
    pub fn sees_group(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.groups_claim.iter().any(|p| {
            let p = p.to_lowercase();
            match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == p,
            }
        })
    }

    pub fn is_public(&self) -> bool {
        self.client_secret.is_none()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grants.contains(&grant)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// Users sign in (and `refresh_token` after it).
    AuthorizationCode,
    /// The app authenticates as itself for the admin APIs.
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

/// A scope of Usher's own APIs, granted to apps by config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiScope {
    /// User administration: SCIM 2.0 and the admin user endpoints.
    Scim,
    /// Reading the audit trail.
    Audit,
}

impl ApiScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Scim => "scim",
            ApiScope::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<ApiScope> {
        match s {
            "scim" => Some(ApiScope::Scim),
            "audit" => Some(ApiScope::Audit),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SignIn {
    /// Ordered steps; never empty.
    pub steps: Vec<Step>,
    /// The adaptive script, if any: its path and its source.
    pub script: Option<ScriptSource>,
    /// Lower-case names of the request headers the script sees (`ctx.request.headers`);
    /// never credentials (`cookie`, `authorization`, `proxy-authorization`).
    pub request_headers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ScriptSource {
    pub path: PathBuf,
    pub source: String,
    /// Compiled at load, so a broken script is a config error, not a failed login.
    pub compiled: Arc<crate::policy::Script>,
}

/// One sign-in step: the user passes it with any one of its options.
#[derive(Debug, Clone)]
pub struct Step {
    pub options: Vec<StepOption>,
    /// Ask again even when the SSO session already satisfied this step.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepOption {
    Password,
    Totp,
    EmailOtp,
    RecoveryCode,
    /// A connection id.
    Connection(String),
}

impl StepOption {
    /// The built-in option names; a connection id may not take one of these.
    pub const BUILT_IN: [&'static str; 4] = ["password", "totp", "email_otp", "recovery_code"];

    pub fn name(&self) -> &str {
        match self {
            StepOption::Password => "password",
            StepOption::Totp => "totp",
            StepOption::EmailOtp => "email_otp",
            StepOption::RecoveryCode => "recovery_code",
            StepOption::Connection(id) => id,
        }
    }

    /// Options that need a local account to hold their credential.
    pub fn needs_account(&self) -> bool {
        matches!(
            self,
            StepOption::Totp | StepOption::EmailOtp | StepOption::RecoveryCode
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    Oidc,
    Google,
    Github,
    Oauth2,
}

/// An upstream identity provider.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub kind: ConnectionKind,
    /// Shown on the button ("Sign in with …").
    pub display_name: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The issuer (OIDC kinds); presets fill it in.
    pub issuer: Option<Url>,
    /// The issuer exactly as configured, trailing slash or not: discovery's `issuer`,
    /// the ID token's `iss` and an authorization response's `iss` must equal it as
    /// strings (OpenID Connect Discovery §4.3, RFC 9207 §2.4). `Url` would add a slash
    /// to a bare host, so the text is kept beside it.
    pub issuer_text: Option<String>,
    pub authorize_url: Option<Url>,
    pub token_url: Option<Url>,
    pub userinfo_url: Option<Url>,
    /// OIDC kinds: when userinfo is read after the code exchange.
    pub userinfo: UserinfoMode,
    /// GitHub's `/user/emails`, or another provider's equivalent.
    pub emails_url: Option<Url>,
    pub scopes: Vec<String>,
    /// Local attribute ← upstream claim.
    pub claims: BTreeMap<String, String>,
    pub jit: Jit,
    /// Upstream `amr` values trusted as a second factor.
    pub trust_upstream_mfa: bool,
}

/// When an OIDC connection reads the provider's userinfo endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserinfoMode {
    /// When the provider has a userinfo endpoint and issued an access token.
    Auto,
    /// Always: a provider without the endpoint or an access token fails the step.
    Always,
    /// Never: the ID token's claims alone.
    Never,
}

#[derive(Debug, Clone)]
pub struct Jit {
    pub provision: bool,
    pub scheme: JitScheme,
    pub attributes: JitAttributes,
    pub link: JitLink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitScheme {
    Silent,
    PromptConsent,
    PromptUsername,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitAttributes {
    Override,
    PreserveLocal,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitLink {
    Never,
    VerifiedEmailWithProof,
}

/// A warning from validation: the config loads, but something is probably wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
}
