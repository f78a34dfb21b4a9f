//! Checking apps and their sign-in steps, and the cross-app and cross-step rules.
//!
//! This is where the configuration's meaning is checked rather than its shape: step
//! options must name a built-in authenticator or a connection, the first step must be
//! able to identify someone, client ids must be unique, and — as a warning — an app must
//! not lead users of a pass-through connection into a step they can never pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use url::Url;

use super::error::Diagnostic;
use super::locate::{child, item, Part};
use super::model::{
    ApiScope, App, Connection, GrantType, MyAccount, ProfileField, ScriptSource, SignIn,
    SigningAlg, Step, StepOption, MY_ACCOUNT_APP,
};
use super::raw::{
    RawAlg, RawApiScope, RawApp, RawGrant, RawMyAccount, RawProfileField, RawStep, StepShape,
};
use super::report::{nearest, Report};
use super::resolve::{check_id, resolve_path, Entry};
use crate::secret::Secret;

/// Checks every app against the known connection ids (`known` includes connections that
/// failed to load, so a step naming one is not reported a second time).
pub fn apps(
    report: &mut Report,
    entries: &[Entry<RawApp>],
    known: &BTreeSet<String>,
    connections: &BTreeMap<String, Arc<Connection>>,
) -> BTreeMap<String, Arc<App>> {
    let mut out = BTreeMap::new();
    // client_id → (app id, file) of the first app using it.
    let mut client_ids: HashMap<String, (String, usize)> = HashMap::new();
    for entry in entries {
        let path = child("apps", &entry.id);
        check_id(report, entry.file, &path, "app", &entry.id);
        if entry.id == MY_ACCOUNT_APP {
            report.error(
                entry.file,
                &path,
                Part::Key,
                format!("app id `{MY_ACCOUNT_APP}` is reserved for the built-in My Account app; configure it under `my_account:` or rename this app"),
            );
        }
        let Some(raw) = &entry.raw else { continue };
        let cid_path = child(&path, "client_id");
        if raw.client_id == MY_ACCOUNT_APP {
            report.error(
                entry.file,
                &cid_path,
                Part::Value,
                format!("client_id `{MY_ACCOUNT_APP}` is reserved for the built-in My Account app"),
            );
        }
        match client_ids.get(&raw.client_id) {
            Some((other, other_file)) => {
                let other_place = report.place(
                    *other_file,
                    &child(&child("apps", other), "client_id"),
                    Part::Value,
                );
                report.error(
                    entry.file,
                    &cid_path,
                    Part::Value,
                    format!(
                        "client_id `{}` of app `{}` is already used by app `{other}` ({other_place}); each app needs its own",
                        raw.client_id, entry.id
                    ),
                );
            }
            None => {
                client_ids.insert(raw.client_id.clone(), (entry.id.clone(), entry.file));
            }
        }
        if let Some(app) = app(report, entry, raw, known) {
            warn_mfa_without_account(report, &app, connections);
            out.insert(entry.id.clone(), Arc::new(app));
        }
    }
    out
}

fn app(
    report: &mut Report,
    entry: &Entry<RawApp>,
    raw: &RawApp,
    known: &BTreeSet<String>,
) -> Option<App> {
    let before = report.diags.len();
    let file = entry.file;
    let path = child("apps", &entry.id);
    for (key, value) in [("name", &raw.name), ("client_id", &raw.client_id)] {
        if value.trim().is_empty() {
            let p = child(&path, key);
            report.error(file, &p, Part::Value, format!("{p} is empty"));
        }
    }
    if raw.client_secret.as_deref() == Some("") {
        let p = child(&path, "client_secret");
        report.error(
            file,
            &p,
            Part::Value,
            format!("{p} is empty; remove the key to make a public client (PKCE is then required)"),
        );
    }
    let grants = grants(report, file, &path, raw);
    let claim_path = child(&path, "groups_claim");
    for (i, pattern) in raw.groups_claim.iter().enumerate() {
        let p = item(&claim_path, i);
        let star = pattern.find('*');
        let problem = if pattern.trim().is_empty() {
            Some("is empty; name a group, or a prefix ending in `*`".to_string())
        } else if pattern.chars().count() > crate::limits::GROUP_NAME_MAX {
            Some(format!(
                "is longer than a group name may be ({} characters)",
                crate::limits::GROUP_NAME_MAX
            ))
        } else if star.is_some_and(|at| at + 1 != pattern.len()) {
            Some(format!(
                "`{pattern}` has a `*` before its end; only a trailing `*` (a prefix) is understood"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            report.error(file, &p, Part::Value, format!("{p} {problem}"));
        }
    }
    let interactive = grants.contains(&GrantType::AuthorizationCode);
    let redirects_path = child(&path, "redirect_uris");
    if raw.redirect_uris.is_empty() && interactive {
        report.error(
            file,
            &redirects_path,
            Part::Value,
            format!("app `{}` has no redirect_uris; add the URL your app receives the code at, e.g. `[http://localhost:3000/callback]`", entry.id),
        );
    }
    let redirect_uris = uris(report, file, &redirects_path, &raw.redirect_uris);
    let post_logout_redirect_uris = uris(
        report,
        file,
        &child(&path, "post_logout_redirect_uris"),
        &raw.post_logout_redirect_uris,
    );
    let sign_in_path = child(&path, "sign_in");
    let (steps, script, request_headers) = match &raw.sign_in {
        Some(sign_in) => (
            steps(report, file, &sign_in_path, &sign_in.steps, known),
            match &sign_in.script {
                None => None,
                Some(rel) => script(report, file, &child(&sign_in_path, "script"), rel),
            },
            request_headers(
                report,
                file,
                &child(&sign_in_path, "request_headers"),
                &sign_in.request_headers,
            ),
        ),
        None => {
            if interactive {
                report.error(
                    file,
                    &sign_in_path,
                    Part::Key,
                    format!("missing required key `sign_in` in {path}; an app with the `authorization_code` grant signs users in and needs `sign_in.steps`"),
                );
            }
            (Vec::new(), None, Vec::new())
        }
    };
    let mut scopes: Vec<ApiScope> = raw
        .scopes
        .iter()
        .map(|s| match s {
            RawApiScope::Scim => ApiScope::Scim,
            RawApiScope::Audit => ApiScope::Audit,
        })
        .collect();
    scopes.sort();
    scopes.dedup();
    if report.diags.len() > before {
        return None;
    }
    Some(App {
        id: entry.id.clone(),
        name: raw.name.clone(),
        logo: raw.logo.clone(),
        client_id: raw.client_id.clone(),
        client_secret: raw.client_secret.clone().map(Secret::new),
        redirect_uris,
        post_logout_redirect_uris,
        signing_alg: match raw.signing_alg {
            None | Some(RawAlg::Rs256) => SigningAlg::Rs256,
            Some(RawAlg::Es256) => SigningAlg::Es256,
            Some(RawAlg::EdDsa) => SigningAlg::EdDsa,
        },
        sign_in: SignIn {
            steps,
            script,
            request_headers,
        },
        sign_up: raw.sign_up,
        mfa_enrolment: raw.mfa_enrolment,
        grants,
        scopes,
        groups_claim: raw.groups_claim.clone(),
        roles_claim: raw.roles_claim,
    })
}

/// Headers that carry credentials: a script never sees them.
const SECRET_HEADERS: &[&str] = &["cookie", "authorization", "proxy-authorization"];

/// Parts of a header name that say it carries a credential (`cookie2`, `x-api-key`,
/// `x-forwarded-access-token`, `cf-access-jwt-assertion`, …): refused like
/// [`SECRET_HEADERS`].
const SECRET_NAME_PARTS: &[&str] = &[
    "cookie",
    "auth",
    "token",
    "secret",
    "key",
    "jwt",
    "assertion",
    "password",
    "session",
    "credential",
    "oidc",
];

fn carries_credentials(lower: &str) -> bool {
    SECRET_HEADERS.contains(&lower) || SECRET_NAME_PARTS.iter().any(|p| lower.contains(p))
}

/// `sign_in.request_headers`: header names, lower-cased, each a valid HTTP field name,
/// none that carries credentials, at most [`crate::limits::SCRIPT_HEADERS_MAX`].
fn request_headers(report: &mut Report, file: usize, path: &str, names: &[String]) -> Vec<String> {
    let max = crate::limits::SCRIPT_HEADERS_MAX;
    if names.len() > max {
        report.error(
            file,
            path,
            Part::Value,
            format!("{path} lists {} headers; at most {max}", names.len()),
        );
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let item = format!("{path}[{i}]");
        let lower = name.trim().to_ascii_lowercase();
        let token = !lower.is_empty()
            && lower.len() <= 64
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            report.error(
                file,
                &item,
                Part::Value,
                format!(
                    "`{name}` is not an HTTP header name (letters, digits and `-`, at most 64)"
                ),
            );
        } else if carries_credentials(&lower) {
            report.error(
                file,
                &item,
                Part::Value,
                format!("scripts never see `{lower}`: it carries credentials"),
            );
        } else if !out.contains(&lower) {
            out.push(lower);
        }
    }
    out
}

/// The app's grants, and the rules tying them to its other keys: `client_credentials`
/// needs a secret (a public client cannot authenticate as itself), and API `scopes`
/// are only ever granted through `client_credentials`.
fn grants(report: &mut Report, file: usize, path: &str, raw: &RawApp) -> Vec<GrantType> {
    let grants_path = child(path, "grants");
    let mut grants: Vec<GrantType> = match &raw.grants {
        None => vec![GrantType::AuthorizationCode],
        Some(list) => list
            .iter()
            .map(|g| match g {
                RawGrant::AuthorizationCode => GrantType::AuthorizationCode,
                RawGrant::ClientCredentials => GrantType::ClientCredentials,
            })
            .collect(),
    };
    grants.dedup();
    if grants.is_empty() {
        report.error(
            file,
            &grants_path,
            Part::Value,
            format!("{grants_path} is empty; give `[authorization_code]`, `[client_credentials]` or both"),
        );
    }
    let machine = grants.contains(&GrantType::ClientCredentials);
    if machine && raw.client_secret.is_none() {
        report.error(
            file,
            &grants_path,
            Part::Value,
            format!("{grants_path} has `client_credentials`, which needs a `client_secret`: a public client cannot authenticate as itself"),
        );
    }
    if !raw.scopes.is_empty() && !machine && !grants.is_empty() {
        let scopes_path = child(path, "scopes");
        report.error(
            file,
            &scopes_path,
            Part::Value,
            format!("{scopes_path} are granted only through the `client_credentials` grant; add it to `grants`, e.g. `grants: [client_credentials]`"),
        );
    }
    grants
}

/// `my_account:`: its settings, and the built-in app users sign in to it through. The
/// app is a confidential client whose secret is drawn afresh at every load: only this
/// process redeems its codes (in-process, at `/myaccount/callback`), so nobody else
/// needs to know it.
pub fn my_account(
    report: &mut Report,
    file: usize,
    raw: Option<&RawMyAccount>,
    issuer: Option<&Url>,
    known: &BTreeSet<String>,
    connections: &BTreeMap<String, Arc<Connection>>,
) -> (MyAccount, Option<App>) {
    let editable = match raw.and_then(|r| r.editable.as_ref()) {
        None => ProfileField::ALL.to_vec(),
        Some(list) => {
            let mut out: Vec<ProfileField> = Vec::new();
            for f in list {
                let field = match f {
                    RawProfileField::Name => ProfileField::Name,
                    RawProfileField::GivenName => ProfileField::GivenName,
                    RawProfileField::FamilyName => ProfileField::FamilyName,
                    RawProfileField::Picture => ProfileField::Picture,
                };
                if !out.contains(&field) {
                    out.push(field);
                }
            }
            out
        }
    };
    let enabled = raw.is_none_or(|r| r.enabled);
    let step_up_seconds = raw.map_or(300, |r| r.step_up_seconds);
    if step_up_seconds == 0 {
        report.error(
            file,
            "my_account.step_up_seconds",
            Part::Value,
            "my_account.step_up_seconds must be greater than 0",
        );
    }
    let settings = MyAccount {
        enabled,
        editable,
        step_up_seconds,
    };
    if !enabled {
        return (settings, None);
    }
    let before = report.diags.len();
    let steps = match raw.and_then(|r| r.steps.as_ref()) {
        Some(given) => steps(report, file, "my_account", given, known),
        None => {
            let mut options = vec![StepOption::Password];
            options.extend(connections.keys().cloned().map(StepOption::Connection));
            vec![Step {
                options,
                force: false,
            }]
        }
    };
    let script = match raw.and_then(|r| r.script.as_deref()) {
        None => None,
        Some(rel) => script(report, file, "my_account.script", rel),
    };
    let Some(issuer) = issuer else {
        return (settings, None);
    };
    let callback = format!(
        "{}/myaccount/callback",
        issuer.as_str().trim_end_matches('/')
    );
    let redirect = Url::parse(&callback).ok();
    if report.diags.len() > before {
        return (settings, None);
    }
    let app = App {
        id: MY_ACCOUNT_APP.to_string(),
        name: "My Account".to_string(),
        logo: None,
        client_id: MY_ACCOUNT_APP.to_string(),
        client_secret: Some(Secret::new(crate::crypto::random_token(32))),
        redirect_uris: redirect.into_iter().collect(),
        post_logout_redirect_uris: Vec::new(),
        signing_alg: SigningAlg::Rs256,
        sign_in: SignIn {
            steps,
            script,
            request_headers: Vec::new(),
        },
        sign_up: false,
        mfa_enrolment: true,
        grants: vec![GrantType::AuthorizationCode],
        scopes: Vec::new(),
        groups_claim: Vec::new(),
        roles_claim: false,
    };
    warn_mfa_without_account(report, &app, connections);
    (settings, Some(app))
}

/// Redirect targets are compared exactly and a fragment would never reach the server,
/// so each must be an absolute URL without one. Any scheme is allowed: native apps use
/// their own (`com.example.app:/callback`).
fn uris(report: &mut Report, file: usize, path: &str, texts: &[String]) -> Vec<Url> {
    let mut out = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let p = item(path, i);
        match Url::parse(text) {
            Ok(url) if url.fragment().is_some() => report.error(
                file,
                &p,
                Part::Value,
                format!("redirect URI `{text}` in {p} must not contain a fragment (`#...`)"),
            ),
            Ok(url) => out.push(url),
            Err(e) => report.error(
                file,
                &p,
                Part::Value,
                format!("redirect URI `{text}` in {p} is not an absolute URL ({e}); write it in full, e.g. `http://localhost:3000/callback`"),
            ),
        }
    }
    out
}

fn steps(
    report: &mut Report,
    file: usize,
    sign_in_path: &str,
    raw: &[RawStep],
    known: &BTreeSet<String>,
) -> Vec<Step> {
    let steps_path = child(sign_in_path, "steps");
    if raw.is_empty() {
        report.error(
            file,
            &steps_path,
            Part::Value,
            format!("{steps_path} is empty; add at least one step, e.g. `- [password]`"),
        );
        return Vec::new();
    }
    let mut candidates: Vec<&str> = StepOption::BUILT_IN.to_vec();
    candidates.extend(known.iter().map(String::as_str));
    let mut out = Vec::new();
    for (i, step) in raw.iter().enumerate() {
        let step_path = item(&steps_path, i);
        let options_path = match step.shape {
            StepShape::List => step_path.clone(),
            StepShape::Map => child(&step_path, "options"),
        };
        if step.options.is_empty() {
            report.error(
                file,
                &step_path,
                Part::Value,
                format!("{step_path} has no options; a step needs at least one way to pass it"),
            );
            continue;
        }
        let mut options: Vec<StepOption> = Vec::new();
        for (j, name) in step.options.iter().enumerate() {
            let p = item(&options_path, j);
            let option = match name.as_str() {
                "password" => StepOption::Password,
                "totp" => StepOption::Totp,
                "email_otp" => StepOption::EmailOtp,
                "recovery_code" => StepOption::RecoveryCode,
                id if known.contains(id) => StepOption::Connection(id.to_string()),
                other => {
                    report.suggest(
                        file,
                        &p,
                        Part::Value,
                        format!("unknown option `{other}` in {step_path}; options are the built-ins (password, totp, email_otp, recovery_code) and connection ids"),
                        nearest(other, candidates.iter().copied()),
                    );
                    continue;
                }
            };
            if options.contains(&option) {
                report.error(
                    file,
                    &p,
                    Part::Value,
                    format!("option `{name}` is listed twice in {step_path}"),
                );
                continue;
            }
            options.push(option);
        }
        if i == 0 && !options.is_empty() && options.iter().all(StepOption::needs_account) {
            report.error(
                file,
                &step_path,
                Part::Value,
                format!(
                    "step 1 ({}) only offers options that need a known account, but nothing has identified the user yet; start with `password` or a connection",
                    names(&options)
                ),
            );
        }
        out.push(Step {
            options,
            force: step.force,
        });
    }
    out
}

fn names(options: &[StepOption]) -> String {
    options
        .iter()
        .map(StepOption::name)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Reads the script source; a path is relative to the file that names it, so a folder
/// of configs can be moved as a whole.
fn script(report: &mut Report, file: usize, path: &str, rel: &str) -> Option<ScriptSource> {
    let dir = report
        .files
        .get(file)
        .and_then(|f| f.path.parent())
        .map_or_else(|| report.base.clone(), Path::to_path_buf);
    let full = resolve_path(&dir, rel);
    match std::fs::read_to_string(&full) {
        Ok(source) => {
            let file_path = full.canonicalize().unwrap_or(full);
            match crate::policy::compile(&source) {
                Ok(compiled) => Some(ScriptSource {
                    path: file_path,
                    source,
                    compiled: Arc::new(compiled),
                }),
                Err(e) => {
                    // The problem is in the script, so the diagnostic points into it.
                    report.diags.push(Diagnostic {
                        file: file_path,
                        line: e.line,
                        column: e.column,
                        path: path.to_string(),
                        message: format!("script error: {}", e.message),
                        suggestion: e.suggestion,
                    });
                    None
                }
            }
        }
        Err(e) => {
            report.error(
                file,
                path,
                Part::Value,
                format!(
                    "cannot read script `{rel}` (looked for {}): {e}",
                    full.display()
                ),
            );
            None
        }
    }
}

/// Without a script, steps run in order. A user who passes a step with a pass-through
/// connection (`jit.provision: false`) has no local account, so a later step that only
/// offers account-bound factors can never be passed: the login dead-ends. Said here,
/// at load time, rather than by a confused user at login time.
fn warn_mfa_without_account(
    report: &mut Report,
    app: &App,
    connections: &BTreeMap<String, Arc<Connection>>,
) {
    if app.sign_in.script.is_some() {
        return;
    }
    let mut warned = BTreeSet::new();
    for (i, step) in app.sign_in.steps.iter().enumerate() {
        for option in &step.options {
            let StepOption::Connection(id) = option else {
                continue;
            };
            let pass_through = connections.get(id).is_some_and(|c| !c.jit.provision);
            if !pass_through || warned.contains(id) {
                continue;
            }
            let later = app.sign_in.steps[i + 1..]
                .iter()
                .position(|s| s.options.iter().all(StepOption::needs_account));
            if let Some(offset) = later {
                let n = i + offset + 2;
                warned.insert(id.clone());
                report.warn(format!(
                    "app `{}`: users who sign in with `{id}` get no local account (jit.provision: false), yet step {n} ({}) needs one and there is no script to skip it; either enable `jit.provision` on connection `{id}`, or add a sign_in.script that skips step {n} for users without an account",
                    app.id,
                    names(&app.sign_in.steps[i + offset + 1].options),
                ));
            }
        }
    }
}
