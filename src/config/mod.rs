//! Loading the YAML configuration into one validated [`Config`].
//!
//! A configuration is either one YAML file or a folder holding `usher.yaml` plus
//! optional `apps/*.yaml` and `connections/*.yaml`, each of the latter a map of id →
//! entry. Each file goes through the same pipeline: positions of every key are recorded
//! (`locate`), the text is parsed into a YAML value, `${VAR}` references in string
//! values are replaced (`interpolate`), the value is deserialized into the strict raw
//! types (`raw`), and the result is checked and resolved into the model (`resolve`,
//! `apps`). Problems are collected, not returned one at a time, and each names its file,
//! line, column and key path; a configuration with any problem is refused whole.

pub mod error;
pub mod model;

mod apps;
mod interpolate;
mod locate;
mod raw;
mod raw_client;
mod report;
mod resolve;
mod server;

#[cfg(test)]
mod props;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

pub use error::{Diagnostic, Diagnostics};
pub use model::*;
pub use server::ServerSettings;

use locate::{child, Part, Pos};
use raw::{RawApp, RawConnection, RawRoot};
use report::Report;
use resolve::Entry;

/// A configuration that loaded, and what looked suspicious in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
}

/// Loads the configuration at `path`, reading `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// Loads the configuration at `path` with `env` answering `${VAR}` lookups.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Diagnostics> {
    let layout = discover(path)?;
    let mut report = Report::new(&layout.base);
    let mut doc = Document::default();

    read_root(&mut report, &layout.root, env, &mut doc);
    for file in &layout.apps {
        if let Some((idx, value)) = parse_file(&mut report, file, "apps", env) {
            read_entries(&mut report, idx, "apps", value, &mut doc.apps);
        }
    }
    for file in &layout.connections {
        if let Some((idx, value)) = parse_file(&mut report, file, "connections", env) {
            read_entries(&mut report, idx, "connections", value, &mut doc.connections);
        }
    }

    let top = doc
        .root
        .as_ref()
        .and_then(|(file, raw)| resolve::top(&mut report, *file, raw));
    let connections = resolve::connections(&mut report, &doc.connections);
    let known: BTreeSet<String> = doc.connections.iter().map(|e| e.id.clone()).collect();
    let mut apps = apps::apps(&mut report, &doc.apps, &known, &connections);
    let (my_account, built_in) = match &doc.root {
        Some((file, raw)) => apps::my_account(
            &mut report,
            *file,
            raw.my_account.as_ref(),
            top.as_ref().map(|t| &t.issuer),
            &known,
            &connections,
        ),
        None => (
            MyAccount {
                enabled: false,
                editable: Vec::new(),
                step_up_seconds: 300,
            },
            None,
        ),
    };
    if let Some(app) = built_in {
        apps.insert(app.id.clone(), std::sync::Arc::new(app));
    }

    let mut files: Vec<PathBuf> = report.files.iter().map(|f| f.path.clone()).collect();
    files.extend(
        apps.values()
            .filter_map(|a| a.sign_in.script.as_ref())
            .map(|s| s.path.clone()),
    );
    let mut seen = BTreeSet::new();
    files.retain(|f| seen.insert(f.clone()));

    if !report.diags.is_empty() {
        return Err(sorted(report));
    }
    let Some(top) = top else {
        // Every path that leaves `top` empty reports why; this only guards that promise.
        return Err(Diagnostics(vec![plain(
            &layout.root,
            "the configuration could not be read",
        )]));
    };
    Ok(Loaded {
        config: Config {
            issuer: top.issuer,
            listen: top.listen,
            store: top.store,
            email: top.email,
            theme: top.theme,
            security: top.security,
            connections,
            apps,
            my_account,
            audit: top.audit,
            metrics: top.metrics,
            server: top.server,
            log: top.log,
            files,
        },
        warnings: report.warnings,
    })
}

/// Diagnostics in file order, then by position, so the output reads top to bottom.
fn sorted(report: Report) -> Diagnostics {
    let order = |d: &Diagnostic| {
        report
            .files
            .iter()
            .position(|f| f.path == d.file)
            .unwrap_or(usize::MAX)
    };
    let mut diags = report.diags.clone();
    diags.sort_by_key(|d| (order(d), d.line, d.column));
    Diagnostics(diags)
}

fn plain(file: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        path: String::new(),
        message: message.into(),
        suggestion: None,
    }
}

/// The files that make up one configuration.
struct Layout {
    /// The folder relative paths in `usher.yaml` are resolved against.
    base: PathBuf,
    root: PathBuf,
    apps: Vec<PathBuf>,
    connections: Vec<PathBuf>,
}

fn discover(path: &Path) -> Result<Layout, Diagnostics> {
    let fail = |message: String| Diagnostics(vec![plain(path, message)]);
    // Absolute paths make the resolved model independent of the working directory.
    let path = path.canonicalize().map_err(|e| {
        fail(format!(
            "cannot open configuration `{}`: {e}",
            path.display()
        ))
    })?;
    if path.is_file() {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok(Layout {
            base,
            root: path,
            apps: Vec::new(),
            connections: Vec::new(),
        });
    }
    let root = path.join("usher.yaml");
    if !root.is_file() {
        return Err(fail(format!(
            "the folder `{}` has no usher.yaml; a folder configuration needs one, beside optional apps/ and connections/",
            path.display()
        )));
    }
    Ok(Layout {
        apps: yaml_files(&path.join("apps")).map_err(fail)?,
        connections: yaml_files(&path.join("connections")).map_err(fail)?,
        base: path,
        root,
    })
}

/// The `.yaml`/`.yml` files of `dir`, sorted by name so every load reads them in the
/// same order and "defined twice" always blames the same file.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

#[derive(Default)]
struct Document {
    root: Option<(usize, RawRoot)>,
    apps: Vec<Entry<RawApp>>,
    connections: Vec<Entry<RawConnection>>,
}

/// Locates, parses and interpolates one file whose root sits at key path `prefix`.
fn parse_file(
    report: &mut Report,
    path: &Path,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(usize, Value)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let idx = report.add_file(path, Default::default());
            let pos = Pos { line: 0, column: 0 };
            report.error_at(idx, "", pos, format!("cannot read file: {e}"), None);
            return None;
        }
    };
    let (locs, duplicates) = match locate::locate(&text, prefix) {
        Ok(found) => found,
        Err(syntax) => {
            let idx = report.add_file(path, Default::default());
            let message = format!("YAML syntax error: {}", syntax.message);
            report.error_at(idx, "", syntax.pos, message, None);
            return None;
        }
    };
    let idx = report.add_file(path, locs);
    if !duplicates.is_empty() {
        for dup in duplicates {
            let (owner, key) = match dup.path.rsplit_once('.') {
                Some((owner, key)) => (owner.to_string(), key.to_string()),
                None => ("the top level".to_string(), dup.path.clone()),
            };
            let message = format!(
                "duplicate key `{key}` in {owner} (first at line {})",
                dup.first.line
            );
            report.error_at(idx, &dup.path, dup.second, message, None);
        }
        return None;
    }
    let mut value: Value = match serde_yaml::from_str(&text) {
        Ok(value) => value,
        Err(e) => {
            // The locator accepted the text, so this is rare (several documents, a
            // recursion limit); keep serde_yaml's position but not its repeated suffix.
            let pos = e.location().map_or(Pos { line: 0, column: 0 }, |l| Pos {
                line: l.line(),
                column: l.column(),
            });
            let full = e.to_string();
            let message = full.split(" at line ").next().unwrap_or(&full).to_string();
            report.error_at(idx, "", pos, format!("YAML error: {message}"), None);
            return None;
        }
    };
    for (at, problem) in interpolate::interpolate_value(&mut value, prefix, env) {
        let message = problem.describe(&at);
        report.error(idx, &at, Part::Value, message);
        report.taint(idx, &at);
    }
    Some((idx, value))
}

fn read_root(
    report: &mut Report,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    doc: &mut Document,
) {
    let Some((idx, value)) = parse_file(report, path, "", env) else {
        return;
    };
    let mut map = match value {
        Value::Mapping(map) => map,
        Value::Null => {
            report.error(
                idx,
                "",
                Part::Value,
                "the file is empty; `issuer` is required",
            );
            return;
        }
        _ => {
            report.error(
                idx,
                "",
                Part::Value,
                "the file must be a map of keys like `issuer:` and `apps:`",
            );
            return;
        }
    };
    // Apps and connections are read entry by entry, so a mistake in one does not hide
    // mistakes in the others (serde stops at its first error).
    for (section, target) in [("apps", true), ("connections", false)] {
        if let Some(v) = map.remove(section) {
            if target {
                read_entries(report, idx, section, v, &mut doc.apps);
            } else {
                read_entries(report, idx, section, v, &mut doc.connections);
            }
        }
    }
    if let Some(raw) = typed::<RawRoot>(report, idx, "", Value::Mapping(map)) {
        doc.root = Some((idx, raw));
    }
}

/// Reads a map of id → entry (an `apps:` section or a file under `apps/`).
fn read_entries<T: DeserializeOwned>(
    report: &mut Report,
    file: usize,
    section: &str,
    value: Value,
    out: &mut Vec<Entry<T>>,
) {
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => Mapping::new(),
        _ => {
            report.error(
                file,
                section,
                Part::Value,
                format!("{section} must be a map of id → settings"),
            );
            return;
        }
    };
    for (key, entry) in map {
        let id = interpolate::key_text(&key);
        let path = child(section, &id);
        if let Some(first) = out.iter().find(|e| e.id == id) {
            let (first_file, this_file) = (first.file, file);
            let first_place = report.place(first_file, &path, Part::Key);
            let this_place = report.place(this_file, &path, Part::Key);
            let what = if section == "apps" {
                "app"
            } else {
                "connection"
            };
            report.error(
                file,
                &path,
                Part::Key,
                format!("{what} `{id}` is defined twice: in {first_place} and in {this_place}"),
            );
            continue;
        }
        let raw = typed::<T>(report, file, &path, entry);
        out.push(Entry { id, file, raw });
    }
}

fn typed<T: DeserializeOwned>(
    report: &mut Report,
    file: usize,
    prefix: &str,
    value: Value,
) -> Option<T> {
    match serde_path_to_error::deserialize(value) {
        Ok(raw) => Some(raw),
        Err(e) => {
            report.serde_error(file, prefix, e);
            None
        }
    }
}

/// Loads one YAML document of another kind (a fixture file) through the same pipeline
/// as the configuration, so its problems get the same diagnostics: file, line, column,
/// key path and the nearest valid key.
pub fn load_document<T: DeserializeOwned>(path: &Path) -> Result<T, Diagnostics> {
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut report = Report::new(base);
    let env = |name: &str| std::env::var(name).ok();
    let Some((idx, value)) = parse_file(&mut report, path, "", &env) else {
        return Err(sorted(report));
    };
    let out = typed::<T>(&mut report, idx, "", value);
    if !report.diags.is_empty() {
        return Err(sorted(report));
    }
    out.ok_or_else(|| Diagnostics(vec![plain(path, "the file could not be read")]))
}

/// Every key and enum value the configuration accepts; `docs/config.md` is checked
/// against this list by the test suite.
#[doc(hidden)]
pub fn vocabulary() -> Vec<String> {
    raw::vocabulary()
}

/// A short human summary, as `usher check` prints it.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "issuer:  {}", config.issuer_id());
    let _ = writeln!(out, "listen:  {}", config.listen);
    let _ = writeln!(out, "apps ({}):", config.apps.len());
    for app in config.apps.values() {
        let kind = if app.is_public() {
            "public"
        } else {
            "confidential"
        };
        let n = app.redirect_uris.len();
        let _ = writeln!(
            out,
            "  {} ({}) — {kind} client, {n} redirect URI{}, {}",
            app.id,
            app.name,
            if n == 1 { "" } else { "s" },
            app.signing_alg.as_str()
        );
        let steps: Vec<String> = app
            .sign_in
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let names: Vec<&str> = s.options.iter().map(StepOption::name).collect();
                let force = if s.force { " (forced)" } else { "" };
                format!("{}: {}{force}", i + 1, names.join(" | "))
            })
            .collect();
        if !app.allows(GrantType::AuthorizationCode) {
            let grants: Vec<&str> = app.grants.iter().map(|g| g.as_str()).collect();
            let scopes: Vec<&str> = app.scopes.iter().map(|s| s.as_str()).collect();
            let _ = writeln!(
                out,
                "    grants: {}  scopes: {}",
                grants.join(", "),
                scopes.join(" ")
            );
            continue;
        }
        let _ = writeln!(out, "    steps:  {}", steps.join("  "));
        let script = match &app.sign_in.script {
            Some(s) => s.path.display().to_string(),
            None => "none".to_string(),
        };
        let _ = writeln!(out, "    script: {script}");
    }
    let _ = writeln!(out, "connections ({}):", config.connections.len());
    for conn in config.connections.values() {
        let kind = match conn.kind {
            ConnectionKind::Oidc => "oidc",
            ConnectionKind::Google => "google",
            ConnectionKind::Github => "github",
            ConnectionKind::Oauth2 => "oauth2",
        };
        let jit = if conn.jit.provision {
            "on"
        } else {
            "off (pass-through)"
        };
        let _ = writeln!(out, "  {} ({kind}) — JIT provision {jit}", conn.id);
    }
    out
}
