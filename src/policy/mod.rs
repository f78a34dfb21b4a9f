//! Adaptive scripts: the Rhai engine, its sandbox, compiling scripts at config load,
//! and running one replay of a script over a flow's record.
//!
//! The engine is built once and shared. It has the standard packages minus the clock
//! (`no_time`), no module loading, no `eval`, and limits on operations, call depth,
//! expression depth, strings, arrays and maps, so a script can neither see the outside
//! world nor run away with a worker. While a script runs, the replay it belongs to sits
//! in a thread-local that the API functions (`execute_step`, `fail`, …) read and write.

mod api;
mod check;
mod record;

use std::sync::OnceLock;

use rhai::packages::Package;
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope, AST};

use crate::config::App;
use crate::flow::{Flow, Run, RunError};

/// Largest script accepted, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// Operations one replay may perform (an infinite loop stops here).
pub const MAX_OPERATIONS: u64 = 100_000;
/// Nesting of function calls.
pub const MAX_CALL_LEVELS: usize = 32;
/// Nesting of expressions (global, inside functions).
pub const MAX_EXPR_DEPTH: (usize, usize) = (64, 32);
pub const MAX_STRING_BYTES: usize = 16 * 1024;
pub const MAX_ARRAY_LEN: usize = 1_000;
pub const MAX_MAP_LEN: usize = 256;

/// A compiled script, ready to replay.
pub struct Script {
    ast: AST,
    /// Whether it defines `on_login_request(ctx)` (Asgardeo style).
    has_entry_fn: bool,
    /// Whether it names `sessions`, which a sign-in reads from the store only for
    /// scripts that use them.
    reads_sessions: bool,
}

impl Script {
    /// Whether the script names a subject's `sessions` (as a member or a string): only
    /// then does a sign-in read them from the store.
    pub fn reads_sessions(&self) -> bool {
        self.reads_sessions
    }
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("has_entry_fn", &self.has_entry_fn)
            .finish_non_exhaustive()
    }
}

/// Why a script did not compile; line and column are 1-based (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub suggestion: Option<String>,
}

fn position(pos: Position) -> (usize, usize) {
    (pos.line().unwrap_or(0), pos.position().unwrap_or(0))
}

pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut e = Engine::new_raw();
        e.register_global_module(rhai::packages::StandardPackage::new().as_shared_module());
        e.set_max_operations(MAX_OPERATIONS);
        e.set_max_call_levels(MAX_CALL_LEVELS);
        e.set_max_expr_depths(MAX_EXPR_DEPTH.0, MAX_EXPR_DEPTH.1);
        e.set_max_string_size(MAX_STRING_BYTES);
        e.set_max_array_size(MAX_ARRAY_LEN);
        e.set_max_map_size(MAX_MAP_LEN);
        e.set_max_functions(64);
        e.set_max_variables(256);
        e.set_strict_variables(true);
        e.disable_symbol("eval");
        api::register(&mut e);
        e
    })
}

/// The scope every script starts with: `ctx` and nothing else.
fn base_scope(ctx: Dynamic) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant("ctx", ctx);
    scope
}

/// Compile a script at config load: syntax, size, `import`, and calls to functions that
/// do not exist are all reported here, with their line and column.
pub fn compile(source: &str) -> Result<Script, CompileError> {
    if source.len() > MAX_SCRIPT_BYTES {
        return Err(CompileError {
            line: 0,
            column: 0,
            message: format!(
                "the script is {} bytes; the limit is {MAX_SCRIPT_BYTES}",
                source.len()
            ),
            suggestion: None,
        });
    }
    let engine = engine();
    let scope = base_scope(Dynamic::UNIT);
    let ast = engine.compile_with_scope(&scope, source).map_err(|e| {
        let (line, column) = position(e.1);
        CompileError {
            line,
            column,
            message: e.0.to_string(),
            suggestion: None,
        }
    })?;
    check::no_imports(&ast)?;
    check::known_functions(engine, &ast)?;
    check::literal_names(&ast, source)?;
    let has_entry_fn = ast
        .iter_functions()
        .any(|f| f.name == "on_login_request" && f.params.len() == 1);
    let reads_sessions = check::names_any(&ast, &["sessions"]);
    Ok(Script {
        ast,
        has_entry_fn,
        reads_sessions,
    })
}

/// Replay `script` over `run`. Returns the run (with what the session satisfied, the
/// claims set and the lines logged) and how it ended.
pub fn run(script: &Script, run: Run, app: &App, flow: &Flow) -> (Run, Result<(), RunError>) {
    api::install(run, app, flow);
    let ctx = api::current_ctx();
    let engine = engine();
    let mut scope = base_scope(ctx.clone());
    let result: Result<(), Box<EvalAltResult>> = if script.has_entry_fn {
        engine
            .call_fn_with_options::<Dynamic>(
                CallFnOptions::new().eval_ast(true),
                &mut scope,
                &script.ast,
                "on_login_request",
                (ctx,),
            )
            .map(|_| ())
    } else {
        engine.run_ast_with_scope(&mut scope, &script.ast)
    };
    let (run, halt) = api::uninstall();
    // A halt wins over whatever the script did after it (even a `catch` that tried to
    // swallow it): the step it asked for is what the user sees next.
    let outcome = match (halt, result) {
        (Some(h), _) => Err(RunError::Halt(h)),
        (None, Ok(())) => Ok(()),
        (None, Err(e)) => Err(RunError::Script(describe(&e))),
    };
    match run {
        Some(run) => (run, outcome),
        // The thread-local was emptied by someone else: cannot happen on one thread,
        // but never panic on a request path.
        None => (
            Run::new(flow, app, None, 0),
            Err(RunError::Script("the script's state was lost".into())),
        ),
    }
}

/// A script error in words for the admin: the innermost error and its line.
pub fn describe(err: &EvalAltResult) -> String {
    let mut e = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = e {
        e = inner;
    }
    let line = e
        .position()
        .line()
        .or_else(|| err.position().line())
        .map(|l| format!("line {l}: "))
        .unwrap_or_default();
    let what = match e {
        EvalAltResult::ErrorTooManyOperations(_) => {
            format!("the script ran too long (more than {MAX_OPERATIONS} operations)")
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            format!("calls nested deeper than {MAX_CALL_LEVELS} levels")
        }
        // Rhai counts what a value holds, nested values included, against each limit.
        EvalAltResult::ErrorDataTooLarge(what, _) => match what.as_str() {
            "Length of string" => {
                format!("a string grew past the limit of {MAX_STRING_BYTES} bytes")
            }
            "Size of array/BLOB" => {
                format!("an array grew past the limit of {MAX_ARRAY_LEN} items")
            }
            "Size of object map" => format!("a map grew past the limit of {MAX_MAP_LEN} entries"),
            _ => format!("{what} grew past its limit"),
        },
        EvalAltResult::ErrorRuntime(value, _) if value.tag() == api::API_ERROR_TAG => {
            value.to_string()
        }
        EvalAltResult::ErrorRuntime(value, _) => format!("the script threw: {value}"),
        other => {
            let mut text = other.to_string();
            if let Some(at) = text.rfind(" (line ") {
                text.truncate(at);
            }
            text
        }
    };
    format!("{line}{what}")
}

#[cfg(test)]
mod tests;
