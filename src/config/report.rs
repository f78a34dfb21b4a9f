//! Collecting diagnostics and warnings while a configuration loads.
//!
//! Every check, from YAML syntax to cross-file duplicates, reports through [`Report`] with
//! a file index, a key path and which part of the node it is about; the report turns
//! that into a [`Diagnostic`] with a line and column from the file's [`LocateMap`].
//! serde's errors are reworded here too, because "unknown field `nmae`, expected one of
//! ..." and "expected struct RawApp" speak of Rust types, not of the user's file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::Diagnostic;
use super::locate::{child, parent, LocateMap, Part, Pos};
use super::model::Warning;

/// One file that was read.
pub struct SourceFile {
    pub path: PathBuf,
    /// The path as messages show it: relative to the config folder when inside it.
    pub shown: String,
    pub locs: LocateMap,
}

#[derive(Default)]
pub struct Report {
    pub base: PathBuf,
    pub files: Vec<SourceFile>,
    pub diags: Vec<Diagnostic>,
    pub warnings: Vec<Warning>,
    /// Values whose `${VAR}` could not be replaced. They still hold the reference as
    /// written, so any later complaint about them ("not a URL") would only repeat the
    /// real problem; such complaints are dropped.
    tainted: HashSet<(usize, String)>,
}

impl Report {
    pub fn new(base: &Path) -> Report {
        Report {
            base: base.to_path_buf(),
            ..Report::default()
        }
    }

    /// Registers a file and returns its index for later diagnostics.
    pub fn add_file(&mut self, path: &Path, locs: LocateMap) -> usize {
        let shown = path
            .strip_prefix(&self.base)
            .unwrap_or(path)
            .display()
            .to_string();
        self.files.push(SourceFile {
            path: path.to_path_buf(),
            shown,
            locs,
        });
        self.files.len() - 1
    }

    pub fn shown(&self, file: usize) -> &str {
        self.files.get(file).map_or("", |f| f.shown.as_str())
    }

    /// The position of `path` in `file`, or 0:0 when the file has no such place.
    pub fn pos(&self, file: usize, path: &str, part: Part) -> Pos {
        self.files
            .get(file)
            .and_then(|f| f.locs.find(path, part))
            .unwrap_or(Pos { line: 0, column: 0 })
    }

    /// `apps/thrift.yaml:4` — for naming a second place in a message.
    pub fn place(&self, file: usize, path: &str, part: Part) -> String {
        let pos = self.pos(file, path, part);
        if pos.line == 0 {
            self.shown(file).to_string()
        } else {
            format!("{}:{}", self.shown(file), pos.line)
        }
    }

    pub fn error(&mut self, file: usize, path: &str, part: Part, message: impl Into<String>) {
        self.suggest(file, path, part, message, None);
    }

    pub fn suggest(
        &mut self,
        file: usize,
        path: &str,
        part: Part,
        message: impl Into<String>,
        suggestion: Option<String>,
    ) {
        let pos = self.pos(file, path, part);
        self.error_at(file, path, pos, message, suggestion);
    }

    /// Marks the value at `path` as holding an unreplaced `${VAR}` (already reported).
    pub fn taint(&mut self, file: usize, path: &str) {
        self.tainted.insert((file, path.to_string()));
    }

    pub fn error_at(
        &mut self,
        file: usize,
        path: &str,
        pos: Pos,
        message: impl Into<String>,
        suggestion: Option<String>,
    ) {
        if self.tainted.contains(&(file, path.to_string())) {
            return;
        }
        let file_path = self
            .files
            .get(file)
            .map_or_else(|| self.base.clone(), |f| f.path.clone());
        self.diags.push(Diagnostic {
            file: file_path,
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
            suggestion,
        });
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(Warning {
            message: message.into(),
        });
    }

    /// Reports a failed typed deserialization of the value at `prefix` in `file`.
    pub fn serde_error(
        &mut self,
        file: usize,
        prefix: &str,
        err: serde_path_to_error::Error<serde_yaml::Error>,
    ) {
        let mut path = prefix.to_string();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path = format!("{path}[{index}]"),
                serde_path_to_error::Segment::Map { key } => path = child(&path, key),
                serde_path_to_error::Segment::Enum { variant } => path = child(&path, variant),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let inner = err.inner().to_string();
        let (part, path, message, suggestion) = reword(&path, &inner);
        self.suggest(file, &path, part, message, suggestion);
    }
}

/// Turns serde's wording into the user's: returns where to point, the path of the
/// offending node, the message and a suggestion.
fn reword(path: &str, inner: &str) -> (Part, String, String, Option<String>) {
    let quoted = backticked(inner);
    let at = |p: &str| {
        if p.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in {p}")
        }
    };
    if inner.starts_with("unknown field") {
        // serde_path_to_error has already stepped into the unknown key.
        let name = quoted.first().cloned().unwrap_or_default();
        let owner = parent(path).unwrap_or("");
        let expected: Vec<&str> = quoted.iter().skip(1).map(String::as_str).collect();
        let suggestion = nearest(&name, expected.iter().copied());
        let mut message = format!("unknown key `{name}` {}", at(owner));
        if suggestion.is_none() && !expected.is_empty() {
            message.push_str(&format!("; valid keys are {}", list(&expected)));
        }
        return (Part::Key, path.to_string(), message, suggestion);
    }
    if inner.starts_with("unknown variant") {
        let name = quoted.first().cloned().unwrap_or_default();
        let expected: Vec<&str> = quoted.iter().skip(1).map(String::as_str).collect();
        let suggestion = nearest(&name, expected.iter().copied());
        let message = format!(
            "unknown value `{name}` for {path}; expected one of {}",
            list(&expected)
        );
        return (Part::Value, path.to_string(), message, suggestion);
    }
    if inner.starts_with("missing field") {
        let name = quoted.first().cloned().unwrap_or_default();
        let message = format!("missing required key `{name}` {}", at(path));
        return (Part::Key, child(path, &name), message, None);
    }
    if let Some(rest) = inner.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let mut message = format!(
                "wrong type for {}: expected {}, found {}",
                shown_path(path),
                plain_type(expected),
                plain_type(found)
            );
            // `client_id: 12345` reads as a number to YAML; the fix is not obvious.
            let scalar = ["integer", "floating point", "boolean"];
            if expected == "a string" && scalar.iter().any(|s| found.starts_with(s)) {
                message.push_str("; put it in quotes to make it a string");
            }
            return (Part::Value, path.to_string(), message, None);
        }
    }
    (
        Part::Value,
        path.to_string(),
        format!("{}: {inner}", shown_path(path)),
        None,
    )
}

fn shown_path(path: &str) -> &str {
    if path.is_empty() {
        "the document"
    } else {
        path
    }
}

/// serde names Rust shapes; YAML users think in lists, maps and strings.
fn plain_type(text: &str) -> String {
    let text = text.trim();
    if text.starts_with("struct ") {
        return "a map of keys".to_string();
    }
    if text.starts_with("enum ") {
        return "one of the allowed names".to_string();
    }
    match text {
        "a sequence" | "sequence" => "a list".to_string(),
        "a map" | "map" => "a map".to_string(),
        "unit value" => "nothing (an empty value)".to_string(),
        "a string" => "a string".to_string(),
        other => other.replace("a sequence", "a list"),
    }
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate closest to `word`, if any is close enough to be a likely typo.
/// Jaro-Winkler favours a shared beginning, which is how keys are usually misspelt;
/// comparing in lower case catches `rs256` for `RS256`.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = word.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(&lower, &candidate.to_lowercase());
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_catches_typos_and_ignores_strangers() {
        let keys = [
            "issuer",
            "listen",
            "store",
            "email",
            "theme",
            "security",
            "connections",
            "apps",
        ];
        assert_eq!(nearest("isuer", keys).as_deref(), Some("issuer"));
        assert_eq!(nearest("lisen", keys).as_deref(), Some("listen"));
        assert_eq!(nearest("connection", keys).as_deref(), Some("connections"));
        assert_eq!(nearest("frobnicate", keys), None);
        assert_eq!(
            nearest("rs256", ["RS256", "ES256", "EdDSA"]).as_deref(),
            Some("RS256")
        );
        assert_eq!(
            nearest("RS265", ["RS256", "ES256", "EdDSA"]).as_deref(),
            Some("RS256")
        );
        let options = [
            "password",
            "totp",
            "email_otp",
            "recovery_code",
            "google",
            "github",
        ];
        assert_eq!(nearest("gooogle", options).as_deref(), Some("google"));
        assert_eq!(nearest("passwd", options).as_deref(), Some("password"));
        assert_eq!(nearest("sms", options), None);
    }

    #[test]
    fn rewords_serde_messages() {
        let (part, path, msg, sug) = reword(
            "apps.thrift.nmae",
            "unknown field `nmae`, expected one of `name`, `logo`",
        );
        assert_eq!(part, Part::Key);
        assert_eq!(path, "apps.thrift.nmae");
        assert_eq!(msg, "unknown key `nmae` in apps.thrift");
        assert_eq!(sug.as_deref(), Some("name"));

        let (_, path, msg, _) = reword("apps.thrift", "missing field `client_id`");
        assert_eq!(path, "apps.thrift.client_id");
        assert_eq!(msg, "missing required key `client_id` in apps.thrift");

        let (_, _, msg, _) = reword(
            "apps.thrift.redirect_uris",
            "invalid type: string \"x\", expected a sequence",
        );
        assert_eq!(
            msg,
            "wrong type for apps.thrift.redirect_uris: expected a list, found string \"x\""
        );
    }
}
