//! Load-time checks: every function a script calls exists, so a typo such as
//! `excute_step(2)` is a config error with its line, not a failed login in production;
//! and the script imports no module, since there is nothing to import from.

use std::collections::HashSet;
use std::sync::OnceLock;

use rhai::{ASTNode, Engine, Expr, Position, Stmt, AST};

use super::record::{nearest, Kind};
use super::{position, CompileError};

/// Names the engine resolves itself rather than as registered functions.
const KEYWORDS: &[&str] = &[
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
    "type_of",
    "print",
    "debug",
];

fn registered(engine: &Engine) -> &'static HashSet<String> {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: HashSet<String> = engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|sig| {
                // Signatures look like `name(a: i64, b: i64) -> bool`, sometimes with a
                // leading `get$`/`set$` for properties.
                let head = sig.split('(').next()?.trim();
                let name = head.rsplit(' ').next()?;
                Some(
                    name.trim_start_matches("get$")
                        .trim_start_matches("set$")
                        .to_string(),
                )
            })
            .collect();
        names.extend(KEYWORDS.iter().map(|s| s.to_string()));
        names.extend(super::api::API_FUNCTIONS.iter().map(|s| s.to_string()));
        names
    })
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Refuse `import`: the engine has no module resolver, so an import could only fail at
/// every sign-in; better to say so when the config loads.
pub fn no_imports(ast: &AST) -> Result<(), CompileError> {
    let mut bad: Option<CompileError> = None;
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(_, pos))) = path.last() {
            let (line, column) = position(*pos);
            bad = Some(CompileError {
                line,
                column,
                message:
                    "scripts cannot import modules; keep helper functions in the script itself"
                        .into(),
                suggestion: None,
            });
            return false;
        }
        true
    });
    bad.map_or(Ok(()), Err)
}

/// Fail on the first call to a function that is neither built in, part of the Usher
/// API, defined by the script, nor a variable holding a function pointer.
pub fn known_functions(engine: &Engine, ast: &AST) -> Result<(), CompileError> {
    let known = registered(engine);
    let mut local: HashSet<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
    // Variables and parameters may hold closures that are then called by name.
    for f in ast.iter_functions() {
        local.extend(f.params.iter().map(|p| p.to_string()));
    }
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Var(x, ..))) = path.last() {
            local.insert(x.0.name.to_string());
        }
        true
    });
    let mut bad: Option<CompileError> = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, pos))) => Some((x, *pos)),
            Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => Some((x, *pos)),
            // A call on its own as a statement.
            Some(ASTNode::Stmt(Stmt::FnCall(x, pos))) => Some((x, *pos)),
            _ => None,
        };
        if let Some((x, pos)) = call {
            let name = x.name.as_str();
            if is_identifier(name) && !known.contains(name) && !local.contains(name) {
                let (line, column) = position(pos);
                let candidates = known.iter().chain(local.iter());
                let suggestion = candidates
                    .map(|c| (strsim::jaro_winkler(name, c), c))
                    .filter(|(score, _)| *score > 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, c)| c.clone());
                bad = Some(CompileError {
                    line,
                    column,
                    message: format!("unknown function `{name}`"),
                    suggestion,
                });
                return false;
            }
        }
        true
    });
    match bad {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Check what can be checked before any sign-in: the keys of every literal options map
/// given to `execute_step` (`#{ onSuccess: … }` would otherwise be ignored and its
/// step skipped), and the members read from `ctx` by name (`ctx.usr`,
/// `ctx.request.headrs`, `ctx.user.has_acount`). Maps built at run time, and members of
/// values held in other variables, are checked when the script runs.
pub fn literal_names(ast: &AST, source: &str) -> Result<(), CompileError> {
    let mut bad: Option<CompileError> = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let found = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, _))) | Some(ASTNode::Stmt(Stmt::FnCall(x, _)))
                if x.name.as_str() == "execute_step" && x.args.len() == 2 =>
            {
                step_options(&x.args[0], &x.args[1], source)
            }
            Some(ASTNode::Expr(Expr::Dot(x, _, _))) => ctx_members(&x.lhs, &x.rhs),
            _ => None,
        };
        if found.is_some() {
            bad = found;
            return false;
        }
        true
    });
    bad.map_or(Ok(()), Err)
}

fn at(pos: Position, message: String, suggestion: Option<&str>) -> CompileError {
    let (line, column) = position(pos);
    CompileError {
        line,
        column,
        message,
        suggestion: suggestion.map(str::to_string),
    }
}

fn step_options(step: &Expr, options: &Expr, source: &str) -> Option<CompileError> {
    let call = match step {
        Expr::IntegerConstant(n, _) => format!("execute_step({n})"),
        _ => "execute_step".to_string(),
    };
    let unknown = |name: &str| !super::api::STEP_OPTION_KEYS.contains(&name);
    let error = |name: &str, pos: (usize, usize)| CompileError {
        line: pos.0,
        column: pos.1,
        message: super::api::unknown_step_option(&call, name),
        suggestion: None,
    };
    match options {
        Expr::Map(map, _) => map
            .0
            .iter()
            .find(|(key, _)| unknown(key.name.as_str()))
            .map(|(key, _)| error(key.name.as_str(), position(key.pos))),
        // A map whose values are all constants (callbacks that capture nothing are) is
        // folded into one value, and its keys lose their positions: find the key in the
        // text after the map's start.
        Expr::DynamicConstant(value, pos) => {
            let map = value.read_lock::<rhai::Map>()?;
            let name = map.keys().map(|k| k.as_str()).find(|k| unknown(k))?;
            Some(error(name, key_position(source, position(*pos), name)))
        }
        _ => None,
    }
}

/// Where `name:` first appears at or after `from` (1-based line and column) in
/// `source`; `from` itself when it cannot be found.
fn key_position(source: &str, from: (usize, usize), name: &str) -> (usize, usize) {
    let mut offset = 0;
    for (i, line) in source.split_inclusive('\n').enumerate() {
        if i + 1 == from.0 {
            offset += line
                .char_indices()
                .nth(from.1.saturating_sub(1))
                .map_or(0, |(at, _)| at);
            break;
        }
        offset += line.len();
    }
    let rest = source.get(offset..).unwrap_or_default();
    let found = rest.match_indices(name).find(|(at, _)| {
        let before = rest[..*at].chars().next_back();
        let after = rest[at + name.len()..].trim_start();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.starts_with(':')
    });
    let Some((at, _)) = found else {
        return from;
    };
    let upto = &source[..offset + at];
    let line = upto.matches('\n').count() + 1;
    let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The property at the head of a chain (`a` of `a.b[1].c`), and the rest.
fn head(expr: &Expr) -> Option<(&str, Position, Option<&Expr>)> {
    match expr {
        Expr::Property(x, pos) => Some((x.2.as_str(), *pos, None)),
        Expr::Dot(x, _, _) => {
            let (name, pos, _) = head(&x.lhs)?;
            Some((name, pos, Some(&x.rhs)))
        }
        // `steps[1]`: the index ends what can be followed by name.
        Expr::Index(x, _, _) => head(&x.lhs).map(|(name, pos, _)| (name, pos, None)),
        _ => None,
    }
}

fn ctx_members(lhs: &Expr, rhs: &Expr) -> Option<CompileError> {
    match lhs {
        Expr::Variable(x, _, _) if x.1.as_str() == "ctx" => {}
        _ => return None,
    }
    let (name, pos, rest) = head(rhs)?;
    let unknown = |kind: Kind, what: &str, name: &str, pos: Position| {
        let near = nearest(name, kind.members());
        Some(at(pos, format!("{what} has no member `{name}`"), near))
    };
    if !Kind::Ctx.members().contains(&name) {
        return unknown(Kind::Ctx, "`ctx`", name, pos);
    }
    let kind = match name {
        "request" => Kind::Request,
        "user" => Kind::Subject,
        _ => return None,
    };
    let (inner, pos, _) = head(rest?)?;
    if kind.members().contains(&inner) {
        None
    } else {
        unknown(kind, &format!("`ctx.{name}`"), inner, pos)
    }
}

/// Whether the script names any of `names` as a member (`u.sessions`) or a string
/// (`u["sessions"]`).
pub fn names_any(ast: &AST, names: &[&str]) -> bool {
    let mut found = false;
    ast.walk(&mut |path: &[ASTNode]| {
        found = match path.last() {
            Some(ASTNode::Expr(Expr::Property(x, _))) => names.contains(&x.2.as_str()),
            Some(ASTNode::Expr(Expr::StringConstant(s, _))) => names.contains(&s.as_str()),
            _ => false,
        };
        !found
    });
    found
}
