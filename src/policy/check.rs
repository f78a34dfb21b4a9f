//! Load-time checks: every function a script calls exists, so a typo such as
//! `excute_step(2)` is a config error with its line, not a failed login in production;
//! and the script imports no module, since there is nothing to import from.

use std::collections::HashSet;
use std::sync::OnceLock;

use rhai::{ASTNode, Engine, Expr, Stmt, AST};

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
