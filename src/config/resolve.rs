//! Checking the top-level settings and the connections, and turning them into the model.
//!
//! Each function reports every problem it sees and returns `None` when the part cannot be
//! built, so one load lists everything wrong at once. Apps are checked in `apps.rs`,
//! after the connections, because their steps refer to connection ids.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use url::Url;

use super::locate::{child, Part};
use super::model::{
    decode_key_text, AuditSettings, Connection, ConnectionKind, CredentialsKey, EmailConfig, Jit,
    JitAttributes, JitLink, JitScheme, PasswordPolicy, Security, SmtpConfig, SmtpTls, StepOption,
    StoreConfig,
};
use super::model::{LogFormat, LogSettings, MetricsSettings};
use super::model::{Rate, Throttles, UserinfoMode};
use super::raw::{
    RawAttributes, RawConnection, RawKind, RawLink, RawLogFormat, RawRoot, RawScheme, RawSecurity,
    RawSmtp, RawSmtpTls,
};
use super::raw::{RawRate, RawThrottle, RawUserinfo};
use super::report::Report;
use crate::secret::Secret;

/// Address used when `listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";

/// An app or connection as read from one file.
pub struct Entry<T> {
    pub id: String,
    pub file: usize,
    /// `None` when the entry did not deserialize (already reported). The id still
    /// counts as defined, so steps naming it do not get a second, misleading error.
    pub raw: Option<T>,
}

/// The top-level settings, resolved.
pub struct Top {
    pub issuer: Url,
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub email: EmailConfig,
    pub theme: Option<PathBuf>,
    pub security: Security,
    pub audit: AuditSettings,
    pub metrics: MetricsSettings,
    pub server: super::ServerSettings,
    pub log: LogSettings,
}

/// `base.join(rel)` without the `./` noise, so paths in messages read cleanly.
pub fn resolve_path(base: &Path, rel: &str) -> PathBuf {
    base.join(rel)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Ids become URL segments, cookie values and script strings: keep them plain.
pub fn check_id(report: &mut Report, file: usize, path: &str, what: &str, id: &str) {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        let fixed: String = id
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let suggestion = (!fixed.is_empty() && fixed != id).then_some(fixed);
        report.suggest(
            file,
            path,
            Part::Key,
            format!("{what} id `{id}` may only use lower-case letters, digits, `_` and `-`"),
            suggestion,
        );
    }
}

/// An absolute `http(s)` URL, as upstream endpoints and the issuer must be.
pub fn http_url(report: &mut Report, file: usize, path: &str, text: &str) -> Option<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
        Ok(_) => {
            report.error(
                file,
                path,
                Part::Value,
                format!("{path} must be an http:// or https:// URL, not `{text}`"),
            );
            None
        }
        Err(e) => {
            report.error(
                file,
                path,
                Part::Value,
                format!("{path} is not an absolute URL (`{text}`: {e})"),
            );
            None
        }
    }
}

pub fn top(report: &mut Report, file: usize, raw: &RawRoot) -> Option<Top> {
    let issuer = issuer(report, file, &raw.issuer);
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            // `localhost:9000` is the usual slip; SocketAddr wants an IP.
            let suggestion = listen_text
                .strip_prefix("localhost:")
                .map(|port| format!("127.0.0.1:{port}"));
            report.suggest(
                file,
                "listen",
                Part::Value,
                format!("listen `{listen_text}` is not a socket address like `{DEFAULT_LISTEN}` (an IP address and a port)"),
                suggestion,
            );
            None
        }
    };
    let base = report.base.clone();
    let sled_rel = raw
        .store
        .as_ref()
        .and_then(|s| s.sled.as_ref())
        .and_then(|s| s.path.as_deref())
        .unwrap_or("./data");
    let sled_path = resolve_path(&base, sled_rel);
    let email = email(report, file, raw, &sled_path);
    let theme = match &raw.theme {
        None => Some(None),
        Some(rel) => {
            let path = resolve_path(&base, rel);
            if path.is_dir() {
                Some(Some(path))
            } else {
                report.error(
                    file,
                    "theme",
                    Part::Value,
                    format!("theme folder `{}` does not exist", path.display()),
                );
                None
            }
        }
    };
    let security = security(report, file, &raw.security, &sled_path);
    let retention_days = raw.audit.as_ref().map_or(90, |a| a.retention_days);
    if retention_days == 0 {
        let path = "audit.retention_days";
        report.error(
            file,
            path,
            Part::Value,
            format!("{path} must be greater than 0; events are kept this many days"),
        );
    }
    let metrics = metrics(report, file, raw);
    let server = super::server::resolve(report, file, raw.server.as_ref());
    let store = store(report, file, raw, sled_path, &security);
    Some(Top {
        issuer: issuer?,
        listen: listen?,
        store: store?,
        email: email?,
        theme: theme?,
        security: security?,
        server: server?,
        audit: (retention_days > 0).then_some(AuditSettings { retention_days })?,
        metrics: metrics?,
        log: log(raw),
    })
}

/// `log:`: the format is the only setting, and serde has checked its value.
fn log(raw: &RawRoot) -> LogSettings {
    let format = match raw.log.as_ref().map(|l| l.format) {
        Some(RawLogFormat::Json) => LogFormat::Json,
        Some(RawLogFormat::Text) | None => LogFormat::Text,
    };
    LogSettings { format }
}

/// `store:`: sled in `sled_path` unless `postgres` is given; never both.
fn store(
    report: &mut Report,
    file: usize,
    raw: &RawRoot,
    sled_path: PathBuf,
    security: &Option<Security>,
) -> Option<StoreConfig> {
    let raw_store = raw.store.as_ref();
    let sled = raw_store.and_then(|s| s.sled.as_ref());
    let Some(pg) = raw_store.and_then(|s| s.postgres.as_ref()) else {
        return Some(StoreConfig::Sled {
            path: sled_path,
            allow_open_permissions: sled.is_some_and(|s| s.allow_open_permissions),
        });
    };
    let mut ok = true;
    if sled.is_some() {
        report.error(
            file,
            "store.postgres",
            Part::Key,
            "store has both `sled` and `postgres`; keep the one this deployment uses",
        );
        ok = false;
    }
    let url = pg.url.trim();
    if url.is_empty() {
        report.error(
            file,
            "store.postgres.url",
            Part::Value,
            "store.postgres.url is empty: give a URL like `postgres://usher:…@db.internal/usher`, usually `${DATABASE_URL}`",
        );
        ok = false;
    } else if let Err(e) = crate::store::postgres::parse_url(url) {
        // The message shows the URL with its password hidden.
        report.error(
            file,
            "store.postgres.url",
            Part::Value,
            format!(
                "store.postgres.url `{}` is not a PostgreSQL connection URL: {e}",
                crate::store::postgres::redact(url)
            ),
        );
        ok = false;
    }
    let schema = pg.schema.clone().unwrap_or_else(|| "public".into());
    if !crate::store::postgres::valid_schema_name(&schema) {
        report.error(
            file,
            "store.postgres.schema",
            Part::Value,
            format!("store.postgres.schema `{schema}` must be lower-case letters, digits and `_`, starting with a letter or `_`"),
        );
        ok = false;
    }
    let pool = pg.pool.as_ref();
    let max_connections = pool.and_then(|p| p.max_connections).unwrap_or(16);
    if !(1..=1000).contains(&max_connections) {
        report.error(
            file,
            "store.postgres.pool.max_connections",
            Part::Value,
            "store.postgres.pool.max_connections must be between 1 and 1000",
        );
        ok = false;
    }
    let timeout = pool.and_then(|p| p.acquire_timeout_seconds).unwrap_or(5);
    if !(1..=300).contains(&timeout) {
        report.error(
            file,
            "store.postgres.pool.acquire_timeout_seconds",
            Part::Value,
            "store.postgres.pool.acquire_timeout_seconds must be between 1 and 300",
        );
        ok = false;
    }
    let parsed = crate::store::postgres::parse_url(url).ok();
    let tls = parsed
        .as_ref()
        .is_some_and(|c| c.get_ssl_mode() == tokio_postgres::config::SslMode::Require);
    let ca_file = pg
        .ca_file
        .as_deref()
        .map(|rel| resolve_path(&report.base.clone(), rel));
    if let Some(path) = &ca_file {
        if !tls {
            report.error(
                file,
                "store.postgres.ca_file",
                Part::Key,
                "store.postgres.ca_file is set but the URL does not ask for TLS: add `sslmode=require` to it (`postgres://…/usher?sslmode=require`)",
            );
            ok = false;
        } else if let Err(e) = crate::store::postgres::read_ca_file(path) {
            report.error(file, "store.postgres.ca_file", Part::Value, e);
            ok = false;
        }
    }
    if let Some(remote) = parsed
        .as_ref()
        .filter(|_| !tls)
        .and_then(crate::store::postgres::remote_host)
    {
        report.warn(format!(
            "store.postgres.url reaches the database at {remote} without TLS: passwords and the records of every account cross the network in the clear; add `sslmode=require` to the URL (and store.postgres.ca_file for a private certificate authority)"
        ));
    }
    // Every node must unseal the same TOTP secrets: a key file inside a per-node data
    // folder would differ between nodes, and the database must not hold its own key.
    let defaulted =
        raw.security.credentials_key.is_none() && raw.security.credentials_key_file.is_none();
    if defaulted && security.is_some() {
        report.error(
            file,
            "security.credentials_key",
            Part::Key,
            "with store.postgres every node needs the same credentials key: set security.credentials_key (e.g. `${USHER_CREDENTIALS_KEY}`; `openssl rand -base64 32` makes one) or security.credentials_key_file",
        );
        ok = false;
    }
    ok.then(|| {
        StoreConfig::Postgres(crate::store::postgres::PgSettings {
            url: url.to_string(),
            schema,
            max_connections,
            acquire_timeout: std::time::Duration::from_secs(timeout),
            ca_file,
        })
    })
}

fn metrics(report: &mut Report, file: usize, raw: &RawRoot) -> Option<MetricsSettings> {
    let Some(m) = &raw.metrics else {
        return Some(MetricsSettings::default());
    };
    let bind = match m.bind.as_deref() {
        None => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let suggestion = text
                    .strip_prefix("localhost:")
                    .map(|port| format!("127.0.0.1:{port}"));
                report.suggest(
                    file,
                    "metrics.bind",
                    Part::Value,
                    format!("metrics.bind `{text}` is not a socket address like `127.0.0.1:9464` (an IP address and a port)"),
                    suggestion,
                );
                return None;
            }
        },
    };
    Some(MetricsSettings {
        enabled: m.enabled,
        bind,
    })
}

fn issuer(report: &mut Report, file: usize, text: &str) -> Option<Url> {
    let url = http_url(report, file, "issuer", text)?;
    if url.query().is_some() || url.fragment().is_some() {
        report.error(
            file,
            "issuer",
            Part::Value,
            format!("issuer `{text}` must not have a query or fragment (OpenID Connect Discovery forbids them)"),
        );
        return None;
    }
    let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() == "http" && !local {
        let line = report.pos(file, "issuer", Part::Value).line;
        report.warn(format!(
            "{}:{line}: issuer `{text}` uses plain http on a host that is not localhost; tokens and cookies would travel unencrypted — use https outside development",
            report.shown(file)
        ));
    }
    Some(url)
}

fn email(report: &mut Report, file: usize, raw: &RawRoot, sled: &Path) -> Option<EmailConfig> {
    let base = report.base.clone();
    let Some(email) = &raw.email else {
        return Some(EmailConfig::Outbox(sled.join("outbox")));
    };
    match (&email.outbox, &email.smtp) {
        (Some(_), Some(_)) => {
            report.error(
                file,
                "email",
                Part::Key,
                "email has both `outbox` and `smtp`; keep one",
            );
            None
        }
        (Some(outbox), None) => Some(EmailConfig::Outbox(resolve_path(&base, outbox))),
        (None, None) => Some(EmailConfig::Outbox(sled.join("outbox"))),
        (None, Some(smtp)) => smtp_config(report, file, smtp).map(EmailConfig::Smtp),
    }
}

fn smtp_config(report: &mut Report, file: usize, raw: &RawSmtp) -> Option<SmtpConfig> {
    let mut ok = true;
    if raw.host.trim().is_empty() {
        report.error(
            file,
            "email.smtp.host",
            Part::Value,
            "email.smtp.host is empty",
        );
        ok = false;
    }
    if !raw.from.contains('@') {
        report.error(
            file,
            "email.smtp.from",
            Part::Value,
            format!("email.smtp.from `{}` is not an e-mail address", raw.from),
        );
        ok = false;
    }
    let tls = match raw.tls {
        RawSmtpTls::None => SmtpTls::None,
        RawSmtpTls::StartTls => SmtpTls::StartTls,
        RawSmtpTls::Tls => SmtpTls::Tls,
    };
    let port = raw.port.unwrap_or(match tls {
        SmtpTls::None => 25,
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
    });
    ok.then(|| SmtpConfig {
        host: raw.host.clone(),
        port,
        tls,
        username: raw.username.clone(),
        password: raw.password.clone().map(Secret::new),
        from: raw.from.clone(),
    })
}

fn security(report: &mut Report, file: usize, raw: &RawSecurity, sled: &Path) -> Option<Security> {
    let credentials_key = credentials_key(report, file, raw, sled);
    let throttles = throttles(report, file, &raw.throttle);
    let mut ok = credentials_key.is_some();
    let nonzero = [
        ("code_ttl_seconds", raw.code_ttl_seconds),
        ("access_token_ttl_seconds", raw.access_token_ttl_seconds),
        ("id_token_ttl_seconds", raw.id_token_ttl_seconds),
        ("refresh_token_ttl_seconds", raw.refresh_token_ttl_seconds),
        ("flow_ttl_seconds", raw.flow_ttl_seconds),
        ("session_ttl_seconds", raw.session_ttl_seconds),
        (
            "max_password_attempts",
            u64::from(raw.max_password_attempts),
        ),
        ("lockout_seconds", raw.lockout_seconds),
        ("max_lockout_seconds", raw.max_lockout_seconds),
        (
            "max_consecutive_failures",
            u64::from(raw.max_consecutive_failures),
        ),
        ("max_otp_attempts", u64::from(raw.max_otp_attempts)),
        ("otp_lockout_seconds", raw.otp_lockout_seconds),
        (
            "client_credentials_ttl_seconds",
            raw.client_credentials_ttl_seconds,
        ),
    ];
    for (key, value) in nonzero {
        if value == 0 {
            let path = child("security", key);
            report.error(
                file,
                &path,
                Part::Value,
                format!("{path} must be greater than 0"),
            );
            ok = false;
        }
    }
    let policy = &raw.password_policy;
    if policy.min_length < 8 {
        let path = "security.password_policy.min_length";
        report.error(
            file,
            path,
            Part::Value,
            format!("{path} is {}; it must be at least 8", policy.min_length),
        );
        ok = false;
    }
    if policy.min_length > policy.max_length {
        let path = "security.password_policy.max_length";
        report.error(
            file,
            path,
            Part::Value,
            format!(
                "{path} ({}) is smaller than min_length ({})",
                policy.max_length, policy.min_length
            ),
        );
        ok = false;
    }
    ok.then_some(Security {
        code_ttl: raw.code_ttl_seconds,
        access_token_ttl: raw.access_token_ttl_seconds,
        id_token_ttl: raw.id_token_ttl_seconds,
        refresh_token_ttl: raw.refresh_token_ttl_seconds,
        flow_ttl: raw.flow_ttl_seconds,
        session_ttl: raw.session_ttl_seconds,
        max_password_attempts: raw.max_password_attempts,
        lockout_seconds: raw.lockout_seconds,
        max_lockout_seconds: raw.max_lockout_seconds,
        max_consecutive_failures: raw.max_consecutive_failures,
        max_otp_attempts: raw.max_otp_attempts,
        otp_lockout_seconds: raw.otp_lockout_seconds,
        client_credentials_ttl: raw.client_credentials_ttl_seconds,
        password_policy: PasswordPolicy {
            min_length: policy.min_length,
            max_length: policy.max_length,
            require_digit: policy.require_digit,
            require_symbol: policy.require_symbol,
            require_mixed_case: policy.require_mixed_case,
        },
        throttle: throttles?,
        verify_sign_up_email: raw.verify_sign_up_email,
        credentials_key: credentials_key?,
    })
}

/// `security.throttle`: every limit and window greater than 0 (a throttle is switched
/// off with `enabled: false`, never by a zero that would refuse everything).
fn throttles(report: &mut Report, file: usize, raw: &RawThrottle) -> Option<Throttles> {
    let mut ok = true;
    let mut rate = |name: &str, r: &RawRate| {
        for (key, zero) in [("max", r.max == 0), ("seconds", r.seconds == 0)] {
            if zero {
                let path = format!("security.throttle.{name}.{key}");
                report.error(
                    file,
                    &path,
                    Part::Value,
                    format!("{path} must be greater than 0; switch throttles off with `security.throttle.enabled: false`"),
                );
                ok = false;
            }
        }
        Rate {
            max: r.max,
            seconds: r.seconds,
        }
    };
    let t = Throttles {
        enabled: raw.enabled,
        sign_in: rate("sign_in", &raw.sign_in),
        sign_up: rate("sign_up", &raw.sign_up),
        email: rate("email", &raw.email),
        token: rate("token", &raw.token),
        api: rate("api", &raw.api),
    };
    ok.then_some(t)
}

/// Default name of the credential key file inside the store folder.
const CREDENTIALS_KEY_FILE: &str = "credentials.key";

fn credentials_key(
    report: &mut Report,
    file: usize,
    raw: &RawSecurity,
    sled: &Path,
) -> Option<CredentialsKey> {
    match (&raw.credentials_key_file, &raw.credentials_key) {
        (Some(_), Some(_)) => {
            report.error(
                file,
                "security.credentials_key",
                Part::Key,
                "security has both `credentials_key` and `credentials_key_file`; keep one",
            );
            None
        }
        (None, None) => Some(CredentialsKey::File(sled.join(CREDENTIALS_KEY_FILE))),
        (Some(rel), None) => {
            if rel.trim().is_empty() {
                let path = "security.credentials_key_file";
                report.error(file, path, Part::Value, format!("{path} is empty"));
                return None;
            }
            Some(CredentialsKey::File(resolve_path(&report.base, rel)))
        }
        (None, Some(text)) => match decode_key_text(text) {
            Ok(_) => Some(CredentialsKey::Inline(Secret::new(text.trim()))),
            Err(e) => {
                // The message describes the value but never repeats it: it is a secret.
                let path = "security.credentials_key";
                report.error(
                    file,
                    path,
                    Part::Value,
                    format!("{path} {e}; give base64 of 32 random bytes, e.g. the output of `openssl rand -base64 32`"),
                );
                None
            }
        },
    }
}

/// Checks every connection; returns those that resolved.
pub fn connections(
    report: &mut Report,
    entries: &[Entry<RawConnection>],
) -> BTreeMap<String, Arc<Connection>> {
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = child("connections", &entry.id);
        check_id(report, entry.file, &path, "connection", &entry.id);
        if StepOption::BUILT_IN.contains(&entry.id.as_str()) {
            report.error(
                entry.file,
                &path,
                Part::Key,
                format!(
                    "connection id `{}` clashes with the built-in option `{}`; steps could not tell them apart, so rename the connection",
                    entry.id, entry.id
                ),
            );
        }
        if let Some(raw) = &entry.raw {
            if let Some(conn) = connection(report, entry.file, &path, &entry.id, raw) {
                out.insert(entry.id.clone(), Arc::new(conn));
            }
        }
    }
    out
}

/// The URLs a preset fills in when the file does not.
struct Preset {
    display_name: &'static str,
    issuer: Option<&'static str>,
    authorize_url: Option<&'static str>,
    token_url: Option<&'static str>,
    userinfo_url: Option<&'static str>,
    emails_url: Option<&'static str>,
    scopes: &'static [&'static str],
}

fn preset(kind: RawKind) -> Preset {
    let none = Preset {
        display_name: "",
        issuer: None,
        authorize_url: None,
        token_url: None,
        userinfo_url: None,
        emails_url: None,
        scopes: &[],
    };
    match kind {
        RawKind::Google => Preset {
            display_name: "Google",
            issuer: Some("https://accounts.google.com"),
            scopes: &["openid", "email", "profile"],
            ..none
        },
        RawKind::Github => Preset {
            display_name: "GitHub",
            authorize_url: Some("https://github.com/login/oauth/authorize"),
            token_url: Some("https://github.com/login/oauth/access_token"),
            userinfo_url: Some("https://api.github.com/user"),
            emails_url: Some("https://api.github.com/user/emails"),
            scopes: &["read:user", "user:email"],
            ..none
        },
        RawKind::Oidc => Preset {
            scopes: &["openid", "email", "profile"],
            ..none
        },
        RawKind::Oauth2 => none,
    }
}

fn connection(
    report: &mut Report,
    file: usize,
    path: &str,
    id: &str,
    raw: &RawConnection,
) -> Option<Connection> {
    let before = report.diags.len();
    let preset = preset(raw.kind);
    let kind_name = match raw.kind {
        RawKind::Oidc => "oidc",
        RawKind::Google => "google",
        RawKind::Github => "github",
        RawKind::Oauth2 => "oauth2",
    };
    let required: &[&str] = match raw.kind {
        RawKind::Oidc => &["issuer"],
        RawKind::Oauth2 => &["authorize_url", "token_url", "userinfo_url"],
        RawKind::Google | RawKind::Github => &[],
    };
    let mut url = |key: &str, given: &Option<String>, default: Option<&str>| -> Option<Url> {
        let key_path = child(path, key);
        match given.as_deref().or(default) {
            Some(text) => http_url(report, file, &key_path, text),
            None => {
                if required.contains(&key) {
                    report.error(
                        file,
                        &key_path,
                        Part::Key,
                        format!("connection `{id}` of kind `{kind_name}` needs `{key}`"),
                    );
                }
                None
            }
        }
    };
    let issuer = url("issuer", &raw.issuer, preset.issuer);
    let authorize_url = url("authorize_url", &raw.authorize_url, preset.authorize_url);
    let token_url = url("token_url", &raw.token_url, preset.token_url);
    let userinfo_url = url("userinfo_url", &raw.userinfo_url, preset.userinfo_url);
    let emails_url = url("emails_url", &raw.emails_url, preset.emails_url);
    for (key, value) in [
        ("client_id", &raw.client_id),
        ("client_secret", &raw.client_secret),
    ] {
        if value.trim().is_empty() {
            let key_path = child(path, key);
            report.error(file, &key_path, Part::Value, format!("{key_path} is empty"));
        }
    }
    if report.diags.len() > before {
        return None;
    }
    let display_name = match &raw.display_name {
        Some(name) => name.clone(),
        None if preset.display_name.is_empty() => id.to_string(),
        None => preset.display_name.to_string(),
    };
    let scopes = match &raw.scopes {
        Some(scopes) => scopes.clone(),
        None => preset.scopes.iter().map(|s| s.to_string()).collect(),
    };
    Some(Connection {
        id: id.to_string(),
        kind: match raw.kind {
            RawKind::Oidc => ConnectionKind::Oidc,
            RawKind::Google => ConnectionKind::Google,
            RawKind::Github => ConnectionKind::Github,
            RawKind::Oauth2 => ConnectionKind::Oauth2,
        },
        display_name,
        client_id: raw.client_id.clone(),
        client_secret: Secret::new(raw.client_secret.clone()),
        issuer_text: issuer
            .as_ref()
            .and(raw.issuer.as_deref().or(preset.issuer))
            .map(|t| t.trim().to_string()),
        issuer,
        authorize_url,
        token_url,
        userinfo_url,
        userinfo: match raw.userinfo {
            RawUserinfo::Auto => UserinfoMode::Auto,
            RawUserinfo::Always => UserinfoMode::Always,
            RawUserinfo::Never => UserinfoMode::Never,
        },
        emails_url,
        scopes,
        claims: raw.claims.clone(),
        jit: Jit {
            provision: raw.jit.provision,
            scheme: match raw.jit.scheme {
                RawScheme::Silent => JitScheme::Silent,
                RawScheme::PromptConsent => JitScheme::PromptConsent,
                RawScheme::PromptUsername => JitScheme::PromptUsername,
            },
            attributes: match raw.jit.attributes {
                RawAttributes::Override => JitAttributes::Override,
                RawAttributes::PreserveLocal => JitAttributes::PreserveLocal,
                RawAttributes::None => JitAttributes::None,
            },
            link: match raw.jit.link {
                RawLink::Never => JitLink::Never,
                RawLink::VerifiedEmailWithProof => JitLink::VerifiedEmailWithProof,
            },
        },
        trust_upstream_mfa: raw.trust_upstream_mfa,
    })
}
