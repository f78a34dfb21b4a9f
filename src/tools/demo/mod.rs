//! `usher demo`: the JIT article, live on one machine with no internet. One process runs
//! Usher on the `examples/thrift` config, Thrift (the sample shop, [`thrift_app`]) and
//! local stand-ins for Google and GitHub ([`super::standin`]) with ready users.
//!
//! The example config reads its URLs, ports and data folder from `${VAR:-default}`
//! references; the demo answers them itself (through `config::load_with_env`, so the
//! process environment is left alone), pointing the connections at the stand-ins. Two
//! switches change the loaded config to show the MFA conflict and its fixes: without
//! the script (`--no-script`) a GitHub user has no account to hold a second factor;
//! with JIT on for GitHub (`--github-jit`) it has one again.
//!
//! [`start`] takes ports (0 picks a free one) and returns the bound addresses, so tests
//! start the whole demo in-process; [`run`] is the CLI around it.

mod claims;
pub mod thrift_app;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use url::Url;

use crate::config::{ApiScope, App, Config, EmailConfig, GrantType};
use crate::crypto::{random_token, unix_now};
use crate::secret::Secret;
use crate::server::Running;
use crate::store::{Store, User};
use crate::tools::standin::{Kind, Standin, StandinConfig, StandinUser};
use crate::web::Shared;
pub use thrift_app::{BehindTheScenes, Fact, Inspector, Thrift, ThriftConfig};

/// The app of the example config that the sample shop plays.
pub const APP: &str = "thrift";
/// A service client the demo adds, so `usher users list` and `usher events` work
/// against it (they talk to the running server's SCIM and admin APIs).
pub const ADMIN_CLIENT: &str = "demo-admin";
/// The local account the demo creates when it is missing.
pub const LOCAL_USERNAME: &str = "alice";
pub const LOCAL_EMAIL: &str = "alice@example.com";
pub const LOCAL_PASSWORD: &str = "wonderland-42";
/// A ready user of a stand-in: what the stand-in signs in, and what the banner and
/// Thrift's home page name.
#[derive(Debug, Clone, Copy)]
pub struct ReadyUser {
    /// The OIDC `sub` (Google's all-digits shape) or GitHub's numeric id.
    pub id: &'static str,
    /// `preferred_username`, or the GitHub login.
    pub login: &'static str,
    pub name: &'static str,
    pub email: &'static str,
}

impl ReadyUser {
    pub fn standin(&self) -> StandinUser {
        StandinUser::new(self.id, self.login, self.name, self.email)
    }
}

/// The Google stand-in's users, listed on its consent page in this order (the first
/// is preselected).
pub const GOOGLE_USERS: [ReadyUser; 2] = [
    ReadyUser {
        id: "104857261093347712345",
        login: "ada",
        name: "Ada Lovelace",
        email: "ada.lovelace@example.com",
    },
    ReadyUser {
        id: "117302994581206634028",
        login: "alan",
        name: "Alan Turing",
        email: "alan.turing@example.com",
    },
];

/// The GitHub stand-in's users, keyed by GitHub's numeric id as Usher keys them.
pub const GITHUB_USERS: [ReadyUser; 2] = [
    ReadyUser {
        id: "583231",
        login: "octocat",
        name: "The Octocat",
        email: "octocat@example.com",
    },
    ReadyUser {
        id: "2918581",
        login: "monalisa",
        name: "Mona Lisa",
        email: "monalisa@example.com",
    },
];

/// The first (preselected) user of each stand-in.
pub const GOOGLE_USER_ID: &str = GOOGLE_USERS[0].id;
pub const GITHUB_USER_ID: &str = GITHUB_USERS[0].id;

fn standin_config(kind: Kind, secret: &str, users: &[ReadyUser]) -> StandinConfig {
    users
        .iter()
        .fold(StandinConfig::new(kind, "Thrift", secret), |c, u| {
            c.with_user(u.standin())
        })
}

/// What to start, and where.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The config folder (`examples/thrift`).
    pub config: PathBuf,
    /// Where the store, keys and outbox go; `None`: a temporary folder removed at stop.
    pub data: Option<PathBuf>,
    /// Ports on 127.0.0.1; 0 picks a free one.
    pub usher_port: u16,
    pub thrift_port: u16,
    pub google_port: u16,
    pub github_port: u16,
    /// Run Thrift's adaptive script (`false` shows the MFA conflict).
    pub script: bool,
    /// Turn JIT provisioning on for GitHub (the other fix of the conflict).
    pub github_jit: bool,
}

impl DemoOptions {
    /// The defaults of `usher demo`: Usher on 9000 and Thrift on 3000 (the URLs the
    /// example config registers), stand-ins on free ports.
    pub fn new(config: impl Into<PathBuf>) -> DemoOptions {
        DemoOptions {
            config: config.into(),
            data: None,
            usher_port: 9000,
            thrift_port: 3000,
            google_port: 0,
            github_port: 0,
            script: true,
            github_jit: false,
        }
    }

    /// Every port free, for tests.
    pub fn ephemeral(config: impl Into<PathBuf>) -> DemoOptions {
        DemoOptions {
            usher_port: 0,
            thrift_port: 0,
            ..DemoOptions::new(config)
        }
    }
}

/// The running demo.
pub struct Demo {
    pub usher: Running,
    pub thrift: Thrift,
    pub google: Standin,
    pub github: Standin,
    /// Usher's issuer, e.g. `http://localhost:9000`.
    pub usher_url: String,
    /// Thrift's home page, e.g. `http://localhost:3000/`.
    pub thrift_url: Url,
    pub data_dir: PathBuf,
    /// Where email codes are written (`None` when the config sends real mail).
    pub outbox: Option<PathBuf>,
    /// The secret of the [`ADMIN_CLIENT`] service client.
    pub admin_secret: String,
    /// The data folder is removed at stop.
    temporary: bool,
    options: DemoOptions,
}

/// Start the stand-ins, Usher and Thrift.
pub async fn start(options: DemoOptions) -> anyhow::Result<Demo> {
    let (data_dir, temporary) = match &options.data {
        Some(dir) => {
            // The demo owns the folder it is given: made private, since Usher refuses
            // a data folder others can read.
            crate::data_folder::make_private(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            (std::path::absolute(dir)?, false)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("usher-demo-{}", random_token(6)));
            crate::data_folder::create_private(&dir)?;
            (dir, true)
        }
    };
    let started = start_in(&options, &data_dir, temporary).await;
    if started.is_err() && temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    started
}

async fn bind(port: u16, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on 127.0.0.1:{port} for {what}: {e}; choose another port with {flag} (0 picks a free one)"
            )
        })
}

async fn start_in(options: &DemoOptions, data_dir: &Path, temporary: bool) -> anyhow::Result<Demo> {
    // Bind everything first: the URLs of each part go into the others' settings.
    let usher_listener = bind(options.usher_port, "Usher", "--port").await?;
    let thrift_listener = bind(options.thrift_port, "Thrift", "--app-port").await?;
    let google_listener = bind(options.google_port, "the Google stand-in", "--google-port").await?;
    let github_listener = bind(options.github_port, "the GitHub stand-in", "--github-port").await?;
    let usher_addr = usher_listener.local_addr()?;
    let usher_url = format!("http://localhost:{}", usher_addr.port());
    let thrift_base = format!("http://localhost:{}", thrift_listener.local_addr()?.port());
    let thrift_url = Url::parse(&format!("{thrift_base}/"))?;

    // The stand-ins know one client each: Usher, registered under the shop's name, as
    // an admin would name the OAuth app at Google or GitHub.
    let google_secret = random_token(24);
    let github_secret = random_token(24);
    let google = Standin::start_on(
        google_listener,
        standin_config(Kind::Oidc, &google_secret, &GOOGLE_USERS),
    )
    .await?;
    let github = Standin::start_on(
        github_listener,
        standin_config(Kind::Github, &github_secret, &GITHUB_USERS),
    )
    .await?;

    let thrift_secret = random_token(24);
    let vars: HashMap<&str, String> = HashMap::from([
        ("USHER_ISSUER", usher_url.clone()),
        ("USHER_LISTEN", usher_addr.to_string()),
        ("USHER_DATA", data_dir.display().to_string()),
        ("THRIFT_URL", thrift_base),
        ("THRIFT_CLIENT_SECRET", thrift_secret.clone()),
        ("GOOGLE_ISSUER", google.issuer()),
        ("GOOGLE_CLIENT_ID", "Thrift".into()),
        ("GOOGLE_CLIENT_SECRET", google_secret),
        ("GITHUB_URL", github.base_url.clone()),
        ("GITHUB_API_URL", github.base_url.clone()),
        ("GITHUB_CLIENT_ID", "Thrift".into()),
        ("GITHUB_CLIENT_SECRET", github_secret),
    ]);
    let env = |name: &str| vars.get(name).cloned().or_else(|| std::env::var(name).ok());
    let loaded = crate::config::load_with_env(&options.config, &env).map_err(|d| {
        anyhow::anyhow!(
            "the demo config {} does not load:\n{d}",
            options.config.display()
        )
    })?;
    let mut config = loaded.config;
    let admin_secret = random_token(24);
    let client_id = adjust(&mut config, options, &thrift_url, &admin_secret)?;
    let outbox = match &config.email {
        EmailConfig::Outbox(dir) => Some(dir.clone()),
        EmailConfig::Smtp(_) => None,
    };

    let state = crate::server::open_state(config).await?;
    seed_local_user(state.store.as_ref()).await?;
    let inspector: Arc<dyn Inspector> = Arc::new(StoreInspector {
        state: state.clone(),
    });
    let usher = crate::server::spawn(state, usher_listener)?;
    let thrift = Thrift::start(
        thrift_listener,
        ThriftConfig {
            issuer: usher_url.clone(),
            client_id,
            client_secret: thrift_secret,
            base_url: thrift_url.clone(),
            notes: notes(options),
            account_url: Some(format!("{usher_url}/myaccount")),
            inspector: Some(inspector),
        },
    )
    .await?;
    Ok(Demo {
        usher,
        thrift,
        google,
        github,
        usher_url,
        thrift_url,
        data_dir: data_dir.to_path_buf(),
        outbox,
        admin_secret,
        temporary,
        options: options.clone(),
    })
}

/// The demo's changes to the loaded config: Thrift's logo, the two switches, and a
/// service client for the admin CLI. Returns Thrift's client id.
fn adjust(
    config: &mut Config,
    options: &DemoOptions,
    thrift_url: &Url,
    admin_secret: &str,
) -> anyhow::Result<String> {
    let Some(app) = config.apps.get(APP).cloned() else {
        anyhow::bail!("the demo needs an app `{APP}` in the config");
    };
    if !config.apps.contains_key(ADMIN_CLIENT) {
        let admin = admin_client(&app, admin_secret);
        config.apps.insert(ADMIN_CLIENT.into(), Arc::new(admin));
    }
    let mut app = (*app).clone();
    app.logo = Some(thrift_url.join("logo.svg")?.to_string());
    if !options.script {
        app.sign_in.script = None;
    }
    let client_id = app.client_id.clone();
    config.apps.insert(APP.to_string(), Arc::new(app));
    if options.github_jit {
        let Some(github) = config.connections.get("github") else {
            anyhow::bail!("--github-jit needs a connection `github` in the config");
        };
        let mut github = (**github).clone();
        github.jit.provision = true;
        config.connections.insert("github".into(), Arc::new(github));
    }
    Ok(client_id)
}

/// A service client (the `client_credentials` grant with the `scim` and `audit`
/// scopes, nothing else), made from Thrift's app so that every other setting is valid.
fn admin_client(thrift: &App, secret: &str) -> App {
    let mut admin = thrift.clone();
    admin.id = ADMIN_CLIENT.into();
    admin.name = "Demo administration".into();
    admin.client_id = ADMIN_CLIENT.into();
    admin.client_secret = Some(Secret::new(secret));
    admin.redirect_uris = Vec::new();
    admin.post_logout_redirect_uris = Vec::new();
    admin.logo = None;
    admin.sign_up = false;
    admin.sign_in.script = None;
    admin.grants = vec![GrantType::ClientCredentials];
    admin.scopes = vec![ApiScope::Scim, ApiScope::Audit];
    admin
}

/// Create the demo's password user unless it exists (a kept `--data` folder has it).
async fn seed_local_user(store: &dyn Store) -> anyhow::Result<()> {
    if store.find_user(LOCAL_USERNAME).await?.is_some() {
        return Ok(());
    }
    let now = unix_now();
    let user = User {
        role_sources: Default::default(),
        id: crate::crypto::account_id(),
        username: LOCAL_USERNAME.into(),
        email: Some(LOCAL_EMAIL.into()),
        email_verified: true,
        name: Some("Alice Liddell".into()),
        given_name: Some("Alice".into()),
        family_name: Some("Liddell".into()),
        picture: None,
        roles: vec![],
        password_hash: Some(crate::authn::password::hash(LOCAL_PASSWORD)?),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    store.create_user(&user).await?;
    store.flush().await?;
    Ok(())
}

/// The hints on Thrift's home page.
/// "a or b" ("a, b or c" …).
fn either<const N: usize>(names: [&str; N]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn notes(options: &DemoOptions) -> Vec<String> {
    let mut notes = vec![
        format!("Password: {LOCAL_USERNAME} / {LOCAL_PASSWORD}, or create your own account on the sign-in page."),
        format!(
            "Google: pick {} on the stand-in's page. JIT is on, so a first sign-in creates the account.",
            either(GOOGLE_USERS.map(|u| u.name))
        ),
    ];
    let github = either(GITHUB_USERS.map(|u| u.login));
    if options.github_jit {
        notes.push(format!("GitHub: pick {github}. JIT is on for GitHub in this run (--github-jit), so an account is created."));
    } else {
        notes.push(format!(
            "GitHub: pick {github}. GitHub is pass-through: no account is created."
        ));
    }
    notes.push(
        "Second step: an authenticator app, or a code by email (written to the demo's outbox folder)."
            .into(),
    );
    if !options.script {
        notes.push(
            "The script is off (--no-script): watch a GitHub sign-in hit the MFA conflict.".into(),
        );
    }
    notes
}

impl Demo {
    /// What the demo prints at start: where to go, who to be, what is configured.
    pub fn banner(&self) -> String {
        let mut out = String::new();
        let o = &self.options;
        let _ = writeln!(out, "\nThe Thrift demo is running: Usher, the Thrift shop, and stand-ins for Google and GitHub. No internet needed.\n");
        let _ = writeln!(out, "  Open Thrift:         {}", self.thrift_url);
        let _ = writeln!(out, "  Usher (the IdP):     {}", self.usher_url);
        let _ = writeln!(out, "  Google stand-in:     {}", self.google.base_url);
        let _ = writeln!(out, "  GitHub stand-in:     {}", self.github.base_url);
        let _ = writeln!(
            out,
            "\nDemo users (pick the Google and GitHub ones on the stand-in's consent page)"
        );
        let _ = writeln!(out, "  Password:  username {LOCAL_USERNAME} (or {LOCAL_EMAIL}), password {LOCAL_PASSWORD}; or create an account");
        for u in &GOOGLE_USERS {
            let _ = writeln!(out, "  Google:    {} <{}>", u.name, u.email);
        }
        for u in &GITHUB_USERS {
            let _ = writeln!(out, "  GitHub:    {} ({}, id {})", u.login, u.name, u.id);
        }
        let _ = writeln!(out, "\nSign-in of Thrift (examples/thrift)");
        let _ = writeln!(out, "  Step 1:    password | google | github");
        let _ = writeln!(out, "  Step 2:    totp | email_otp");
        let _ = writeln!(
            out,
            "  Google:    JIT on (the first sign-in creates an account)"
        );
        if o.github_jit {
            let _ = writeln!(out, "  GitHub:    JIT on in this run (--github-jit)");
        } else {
            let _ = writeln!(out, "  GitHub:    JIT off (pass-through: no account)");
        }
        if o.script {
            let _ = writeln!(out, "  Script:    policies/mfa-only-with-account.rhai (step 2 only for users with an account)");
        } else {
            let _ = writeln!(out, "  Script:    off (--no-script): GitHub users reach step 2 with no account, the MFA conflict");
        }
        let _ = writeln!(out);
        match &self.outbox {
            Some(dir) => {
                let _ = writeln!(out, "Email codes land in:  {}", dir.display());
            }
            None => {
                let _ = writeln!(out, "Email codes are sent over SMTP, as the config says.");
            }
        }
        let _ = writeln!(
            out,
            "Accounts in Usher:    USHER_SERVER={} USHER_CLIENT_ID={ADMIN_CLIENT} USHER_CLIENT_SECRET={} cargo run --release -- users list",
            self.usher_url, self.admin_secret
        );
        if self.temporary {
            let _ = writeln!(
                out,
                "Data folder:          {} (temporary; keep it with --data DIR)",
                self.data_dir.display()
            );
        } else {
            let _ = writeln!(out, "Data folder:          {}", self.data_dir.display());
        }
        let _ = writeln!(out, "\nPress Ctrl-C to stop.");
        out
    }

    /// Stop everything; a temporary data folder is removed.
    pub async fn stop(self) {
        let Demo {
            usher,
            thrift,
            google,
            github,
            data_dir,
            temporary,
            ..
        } = self;
        thrift.stop().await;
        let store = usher.state.store.clone();
        // Browsers keep idle connections open; do not let them hold the demo up.
        let _ = tokio::time::timeout(Duration::from_secs(5), usher.stop()).await;
        google.stop().await;
        github.stop().await;
        let _ = store.flush().await;
        if temporary {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    }
}

/// `usher demo`: start, print the banner, report new mail, stop on Ctrl-C or SIGTERM.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let demo = start(options).await?;
    println!("{}", demo.banner());
    let watcher = demo
        .outbox
        .clone()
        .map(|dir| tokio::spawn(watch_outbox(dir)));
    crate::server::shutdown_signal().await;
    println!("Stopping the demo.");
    if let Some(w) = watcher {
        w.abort();
    }
    demo.stop().await;
    Ok(())
}

/// Say in the terminal when a message lands in the outbox, with its code when it has
/// one, so the newcomer need not open the file.
async fn watch_outbox(dir: PathBuf) {
    let mut seen: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut new: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml") && !seen.contains(p))
            .collect();
        new.sort();
        for path in new {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let to = header(&text, "To").unwrap_or_else(|| "someone".into());
            match six_digit_code(&text) {
                Some(code) => println!("Mail for {to}: code {code}  ({})", path.display()),
                None => println!("Mail for {to}: {}", path.display()),
            }
            seen.insert(path);
        }
    }
}

fn header(message: &str, name: &str) -> Option<String> {
    message.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The first line of the message that is a six-digit code on its own.
fn six_digit_code(message: &str) -> Option<String> {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

/// Reads Usher's store for Thrift's "behind the scenes" panel.
struct StoreInspector {
    state: Shared,
}

#[async_trait::async_trait]
impl Inspector for StoreInspector {
    async fn inspect(&self, sub: &str) -> BehindTheScenes {
        let store = self.state.store.as_ref();
        let config = self.state.config();
        let accounts_total = store.user_count().await.unwrap_or(0);
        let trace = latest_trace(store, sub).await;
        let fact = |label: &str, value: String| Fact {
            label: label.into(),
            value,
        };
        let display = |connection: &str| {
            config
                .connections
                .get(connection)
                .map_or_else(|| connection.to_string(), |c| c.display_name.clone())
        };
        match store.user(sub).await {
            Ok(Some(user)) => {
                let identities = store.identities_of(&user.id).await.unwrap_or_default();
                let summary = match identities.first() {
                    Some((connection, _)) => format!(
                        "{} has jit.provision on: Usher created this account the moment your first {} sign-in succeeded, so the same login could go on to step 2.",
                        display(connection),
                        display(connection)
                    ),
                    None => "A local account, with a password kept by Usher.".to_string(),
                };
                let mut facts = vec![
                    fact("Account id", user.id.clone()),
                    fact("Username", user.username.clone()),
                ];
                if let Some(email) = &user.email {
                    facts.push(fact("Email", email.clone()));
                }
                facts.push(fact("Created", crate::timefmt::rfc3339(user.created_at)));
                for (connection, subject) in &identities {
                    facts.push(fact(
                        "Linked identity",
                        format!("{} user {subject}", display(connection)),
                    ));
                }
                facts.push(fact(
                    "Password",
                    if user.password_hash.is_some() {
                        "set".into()
                    } else {
                        "none".into()
                    },
                ));
                let totp = matches!(store.totp(&user.id).await, Ok(Some(t)) if t.confirmed);
                facts.push(fact(
                    "Authenticator app",
                    if totp {
                        "enrolled".into()
                    } else {
                        "not enrolled".into()
                    },
                ));
                BehindTheScenes {
                    summary,
                    has_account: true,
                    facts,
                    accounts_total,
                    trace,
                }
            }
            _ => {
                let (connection, upstream) = sub.split_once('|').unwrap_or(("", sub));
                let name = display(connection);
                BehindTheScenes {
                    summary: format!(
                        "{name} is a pass-through connection (jit.provision: false): Usher created no account and handed {name}'s claims straight to Thrift. With no account there is nowhere to keep a second factor, so the script skipped step 2."
                    ),
                    has_account: false,
                    facts: vec![
                        fact("Connection", connection.to_string()),
                        fact("Upstream id", upstream.to_string()),
                    ],
                    accounts_total,
                    trace,
                }
            }
        }
    }
}

/// The trace and outcome of `sub`'s latest sign-in in the last hour.
async fn latest_trace(store: &dyn Store, sub: &str) -> Vec<String> {
    let since = unix_now().saturating_sub(3600);
    let events = store.events(since, 10_000).await.unwrap_or_default();
    events
        .into_iter()
        .rev()
        .find(|e| e.kind == "sign_in" && e.sub.as_deref() == Some(sub))
        .map(|e| {
            let mut lines = e.detail;
            lines.push(format!("outcome: {}", e.outcome));
            lines
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_code_and_recipient_of_an_outbox_message() {
        let eml = "From: usher@localhost\r\nTo: alice@example.com\r\nSubject: Your code\r\n\r\nYour sign-in code for Thrift:\r\n\r\n    482913\r\n\r\nEnter it.\r\n";
        assert_eq!(header(eml, "to").as_deref(), Some("alice@example.com"));
        assert_eq!(six_digit_code(eml).as_deref(), Some("482913"));
        assert_eq!(six_digit_code("no code here\n1234567\n"), None);
    }

    #[test]
    fn names_are_joined_with_or() {
        assert_eq!(either(["ada"]), "ada");
        assert_eq!(either(["ada", "alan"]), "ada or alan");
        assert_eq!(either(["a", "b", "c"]), "a, b or c");
    }

    #[test]
    fn notes_follow_the_switches() {
        let mut options = DemoOptions::new("examples/thrift");
        assert!(!notes(&options).iter().any(|n| n.contains("--no-script")));
        options.script = false;
        options.github_jit = true;
        let all = notes(&options).join("\n");
        assert!(
            all.contains("--no-script") && all.contains("--github-jit"),
            "{all}"
        );
    }
}
