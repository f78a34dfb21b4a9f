//! `${VAR}` and `${VAR:-default}` in string values.
//!
//! Interpolation runs on the parsed YAML value, not on the file text: a secret holding
//! `: ` or `#` or a newline then stays one string, and cannot change the shape of the
//! document. `$${` writes a literal `${`. Keys are never interpolated; ids must be
//! readable in the file.

use serde_yaml::Value;

use super::locate::{child, item};

/// Why one `${...}` could not be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `${NAME}` with `NAME` unset and no default.
    Missing(String),
    /// `${` with no closing `}`.
    Unterminated,
    /// `${...}` whose name is not `[A-Za-z_][A-Za-z0-9_]*`.
    BadName(String),
}

impl Problem {
    /// A sentence for the diagnostic, given the key path it happened at.
    pub fn describe(&self, path: &str) -> String {
        match self {
            Problem::Missing(name) => format!(
                "environment variable `{name}` is not set (used in {path}); set it, or give a default with `${{{name}:-value}}`"
            ),
            Problem::Unterminated => {
                format!("unterminated `${{` in {path}; close it with `}}`, or write `$${{` for a literal `${{`")
            }
            Problem::BadName(name) => format!(
                "`${{{name}}}` in {path} is not a valid variable name (letters, digits and `_`, not starting with a digit)"
            ),
        }
    }
}

/// Replaces every reference in `text`. Returns the result and every problem met; on a
/// problem the reference is left as written so later checks see something sensible.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<Problem>) {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                problems.push(Problem::Unterminated);
                out.push_str(after);
                rest = "";
                break;
            };
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !valid_name(name) {
                problems.push(Problem::BadName(inner.to_string()));
                out.push_str(&after[..end + 3]);
            } else {
                // As in the shell, `:-` also covers a variable that is set but empty:
                // an empty secret is never what was meant.
                match (
                    env(name).filter(|v| !v.is_empty() || default.is_none()),
                    default,
                ) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => {
                        problems.push(Problem::Missing(name.to_string()));
                        out.push_str(&after[..end + 3]);
                    }
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    (out, problems)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Interpolates every string scalar under `value` (at key path `path`) in place, and
/// returns the problems with the path of the string each was found in.
pub fn interpolate_value(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, Problem)> {
    let mut found = Vec::new();
    walk(value, path, env, &mut found);
    found
}

fn walk(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Vec<(String, Problem)>,
) {
    match value {
        Value::String(text) if text.contains('$') => {
            let (replaced, problems) = interpolate(text, env);
            *text = replaced;
            found.extend(problems.into_iter().map(|p| (path.to_string(), p)));
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, &item(path, i), env, found);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                walk(v, &child(path, &key_text(k)), env, found);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, found),
        _ => {}
    }
}

/// A mapping key as the locator spells it in paths.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_string(),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr:et #1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        assert_eq!(
            interpolate("${SECRET}", &env),
            ("s3cr:et #1".into(), vec![])
        );
        assert_eq!(
            interpolate("a-${NOPE:-dev}-b", &env),
            ("a-dev-b".into(), vec![])
        );
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).0, "fallback");
        assert_eq!(interpolate("${NOPE:-}", &env).0, "");
        assert_eq!(interpolate("${EMPTY}", &env).0, "");
    }

    #[test]
    fn escapes_and_lone_dollars_pass_through() {
        assert_eq!(
            interpolate("$${SECRET} costs $5", &env).0,
            "${SECRET} costs $5"
        );
    }

    #[test]
    fn reports_missing_unterminated_and_bad_names() {
        let (_, p) = interpolate("${A_B}x${1X}y${OPEN", &env);
        assert_eq!(
            p,
            vec![
                Problem::Missing("A_B".into()),
                Problem::BadName("1X".into()),
                Problem::Unterminated
            ]
        );
    }

    #[test]
    fn walks_nested_values_with_paths() {
        let mut v: Value =
            serde_yaml::from_str("a:\n  b: [x, '${MISSING}']\n  c: ${SECRET}\n").unwrap();
        let problems = interpolate_value(&mut v, "", &env);
        assert_eq!(
            problems,
            vec![("a.b[1]".into(), Problem::Missing("MISSING".into()))]
        );
        assert_eq!(v["a"]["c"].as_str(), Some("s3cr:et #1"));
    }
}
