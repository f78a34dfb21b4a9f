//! The script API: `ctx`, `execute_step`, `fail`, `set_claim`, `log`, `ip_in_range`.
//!
//! Every function here works on the replay installed in this thread by
//! [`install`]. Halting (`execute_step` of a step not yet done, `fail`) records the halt
//! and ends the script with `ErrorTerminated`, which Rhai's `try`/`catch` cannot catch.

use std::cell::RefCell;
use std::net::IpAddr;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, Position};
use serde_json::Value;

use super::record::{self, Kind, Record};
use crate::config::{App, StepOption};
use crate::flow::{Flow, Halt, OtherSession, Resolved, Run, StepFailure, StepRecord, Subject};
use crate::oidc::claims::RESERVED;
use crate::oidc::{ErrorCode, OAuthError};

/// The replay running on this thread, plus the fixed parts of `ctx`.
struct Current {
    run: Run,
    halt: Option<Halt>,
    app: Map,
    request: Record,
    now: i64,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Marks an error raised by Usher's API (a misused `execute_step`, an unknown member)
/// rather than thrown by the script, so the message does not say "the script threw".
pub const API_ERROR_TAG: i32 = 0x5573;

/// An error of the script API, with its message as the admin should read it.
pub fn api_error(message: impl Into<String>) -> Box<EvalAltResult> {
    let mut value = Dynamic::from(message.into());
    value.set_tag(API_ERROR_TAG);
    Box::new(EvalAltResult::ErrorRuntime(value, Position::NONE))
}

fn strs(items: &[String]) -> Array {
    items.iter().map(|s| Dynamic::from(s.clone())).collect()
}

fn opt_str(s: &Option<String>) -> Dynamic {
    s.as_ref()
        .map_or(Dynamic::UNIT, |v| Dynamic::from(v.clone()))
}

/// JSON → Rhai, for upstream claims.
pub fn json_to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from(i),
            None => Dynamic::from(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from(a.iter().map(json_to_dynamic).collect::<Array>()),
        Value::Object(o) => {
            let m: Map = o
                .iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect();
            Dynamic::from(m)
        }
    }
}

/// Rhai → JSON, for `set_claim`.
fn dynamic_to_json(d: &Dynamic) -> Value {
    if d.is_unit() {
        Value::Null
    } else if let Ok(b) = d.as_bool() {
        Value::Bool(b)
    } else if let Ok(i) = d.as_int() {
        Value::from(i)
    } else if let Ok(f) = d.as_float() {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    } else if let Some(a) = d.read_lock::<Array>() {
        Value::Array(a.iter().map(dynamic_to_json).collect())
    } else if let Some(m) = d.read_lock::<Map>() {
        map_to_json(&m)
    } else if let Some(r) = d.read_lock::<Record>() {
        map_to_json(r.fields())
    } else {
        Value::String(d.to_string())
    }
}

fn map_to_json(m: &Map) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.to_string(), dynamic_to_json(v)))
            .collect(),
    )
}

fn subject_map(s: &Subject) -> Dynamic {
    let mut m = Map::new();
    m.insert("id".into(), Dynamic::from(s.sub.clone()));
    m.insert("user_id".into(), opt_str(&s.user_id));
    m.insert("username".into(), opt_str(&s.username));
    m.insert("email".into(), opt_str(&s.email));
    m.insert("idp".into(), Dynamic::from(s.idp.clone()));
    m.insert("is_federated".into(), Dynamic::from(s.is_federated()));
    m.insert("has_account".into(), Dynamic::from(s.has_account()));
    m.insert("enrolled".into(), Dynamic::from(strs(&s.enrolled)));
    m.insert("roles".into(), Dynamic::from(strs(&s.roles)));
    m.insert("groups".into(), Dynamic::from(strs(&s.groups)));
    let sessions: Array = s.sessions.iter().map(session_map).collect();
    m.insert("sessions".into(), Dynamic::from(sessions));
    m.insert("upstream_amr".into(), Dynamic::from(strs(&s.upstream_amr)));
    let claims: Map = s
        .claims
        .iter()
        .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
        .collect();
    m.insert("claims".into(), Dynamic::from(claims));
    Dynamic::from(Record::new(Kind::Subject, m))
}

fn session_map(s: &OtherSession) -> Dynamic {
    let time = |t: u64| Dynamic::from(i64::try_from(t).unwrap_or(i64::MAX));
    let mut m = Map::new();
    m.insert("apps".into(), Dynamic::from(strs(&s.apps)));
    m.insert("idp".into(), Dynamic::from(s.idp.clone()));
    m.insert("started_at".into(), time(s.started_at));
    m.insert("auth_time".into(), time(s.auth_time));
    m.insert("expires_at".into(), time(s.expires_at));
    Dynamic::from(m)
}

fn step_map(r: &StepRecord) -> Dynamic {
    let mut m = Map::new();
    let subject = subject_map(&r.subject);
    m.insert("step".into(), Dynamic::from(r.step as i64));
    m.insert("option".into(), Dynamic::from(r.option.clone()));
    m.insert("idp".into(), Dynamic::from(r.subject.idp.clone()));
    m.insert("amr".into(), Dynamic::from(strs(&r.amr)));
    m.insert("from_session".into(), Dynamic::from(r.from_session));
    m.insert("failed".into(), Dynamic::from(false));
    m.insert("user".into(), subject.clone());
    m.insert("subject".into(), subject);
    Dynamic::from(Record::new(Kind::Step, m))
}

fn failure_map(f: &StepFailure) -> Dynamic {
    let mut m = Map::new();
    m.insert("step".into(), Dynamic::from(f.step as i64));
    m.insert("option".into(), Dynamic::from(f.option.clone()));
    m.insert("failed".into(), Dynamic::from(true));
    m.insert("reason".into(), Dynamic::from(f.reason.clone()));
    Dynamic::from(Record::new(Kind::Step, m))
}

fn build_ctx(cur: &Current) -> Dynamic {
    let mut m = Map::new();
    m.insert("app".into(), Dynamic::from(cur.app.clone()));
    m.insert("request".into(), Dynamic::from(cur.request.clone()));
    m.insert("now".into(), Dynamic::from(cur.now));
    m.insert(
        "user".into(),
        cur.run.subject().map_or(Dynamic::UNIT, subject_map),
    );
    // `ctx.steps[n]` for n = 1..: index 0 is unused so numbers match the config.
    let mut steps: Array = vec![Dynamic::UNIT; cur.run.steps.len() + 1];
    for r in &cur.run.done {
        if let Some(slot) = steps.get_mut(r.step) {
            *slot = step_map(r);
        }
    }
    for f in &cur.run.failed {
        if let Some(slot) = steps.get_mut(f.step) {
            *slot = failure_map(f);
        }
    }
    m.insert("steps".into(), Dynamic::from(steps));
    Dynamic::from(Record::new(Kind::Ctx, m))
}

/// Put a replay in place for the script about to run.
pub fn install(run: Run, app: &App, flow: &Flow) {
    let mut app_map = Map::new();
    app_map.insert("id".into(), Dynamic::from(app.id.clone()));
    app_map.insert("name".into(), Dynamic::from(app.name.clone()));
    let r = &flow.request;
    let mut request = Map::new();
    request.insert("ip".into(), Dynamic::from(flow.ip.clone()));
    request.insert("user_agent".into(), Dynamic::from(flow.user_agent.clone()));
    request.insert("scopes".into(), Dynamic::from(strs(&r.scopes)));
    request.insert("acr_values".into(), Dynamic::from(strs(&r.acr_values)));
    request.insert("prompt".into(), Dynamic::from(strs(&r.prompt)));
    request.insert("login_hint".into(), opt_str(&r.login_hint));
    request.insert("client_id".into(), Dynamic::from(r.client_id.clone()));
    let headers: Map = flow
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect();
    request.insert("headers".into(), Dynamic::from(headers));
    let request = Record::new(Kind::Request, request);
    let now = i64::try_from(flow.created_at).unwrap_or(i64::MAX);
    CURRENT.with(|c| {
        *c.borrow_mut() = Some(Current {
            run,
            halt: None,
            app: app_map,
            request,
            now,
        })
    });
}

/// Take the replay back after the script ran.
pub fn uninstall() -> (Option<Run>, Option<Halt>) {
    CURRENT.with(|c| match c.borrow_mut().take() {
        Some(cur) => (Some(cur.run), cur.halt),
        None => (None, None),
    })
}

/// `ctx` as it stands now.
pub fn current_ctx() -> Dynamic {
    CURRENT.with(|c| c.borrow().as_ref().map_or(Dynamic::UNIT, build_ctx))
}

fn with_current<T>(f: impl FnOnce(&mut Current) -> T) -> RhaiResult<T> {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(cur) => Ok(f(cur)),
        None => Err(api_error(
            "the script API is only available during a sign-in",
        )),
    })
}

/// Record a halt (the first one wins) and stop the script where it stands.
fn halt(h: Halt) -> Box<EvalAltResult> {
    let _ = with_current(|cur| {
        if cur.halt.is_none() {
            cur.halt = Some(h);
        }
    });
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::UNIT,
        Position::NONE,
    ))
}

fn halted() -> bool {
    with_current(|cur| cur.halt.is_some()).unwrap_or(true)
}

fn call_back(ncc: &NativeCallContext, f: &FnPtr, arg: Dynamic) -> RhaiResult<()> {
    f.call_within_context::<Dynamic>(ncc, (arg,)).map(|_| ())
}

fn execute_step(ncc: NativeCallContext, n: i64, opts: Map) -> RhaiResult<Dynamic> {
    // After a halt nothing more may happen, even if a `catch` resumed the script.
    if halted() {
        return Err(halt(Halt::Fail(OAuthError::server_error())));
    }
    let Ok(step) = usize::try_from(n) else {
        return Err(api_error(format!(
            "execute_step({n}): steps are numbered from 1"
        )));
    };
    if let Some(e) = check_step_options(n, &opts) {
        return Err(api_error(e));
    }
    let narrowed: Option<Vec<StepOption>> = match opts.get("options") {
        None => None,
        Some(list) => {
            let list = list.read_lock::<Array>().ok_or_else(|| {
                api_error("execute_step: `options` must be an array of option names")
            })?;
            let configured = with_current(|cur| {
                cur.run
                    .steps
                    .get(step.wrapping_sub(1))
                    .map(|s| s.options.clone())
            })?
            .ok_or_else(|| api_error(format!("execute_step({n}): the app has no step {n}")))?;
            let mut out = Vec::new();
            for item in list.iter() {
                let name = item.to_string();
                match configured.iter().find(|o| o.name() == name) {
                    Some(o) => out.push(o.clone()),
                    None => {
                        return Err(api_error(format!(
                            "execute_step({n}): step {n} has no option `{name}`"
                        )))
                    }
                }
            }
            Some(out)
        }
    };
    let on_success = opts
        .get("on_success")
        .and_then(|d| d.clone().try_cast::<FnPtr>());
    let on_fail = opts
        .get("on_fail")
        .and_then(|d| d.clone().try_cast::<FnPtr>());
    // A typo in a key, or a callback that is not a function, would otherwise be ignored
    // and the step it guards silently skipped.
    let resolved = with_current(|cur| cur.run.execute(step, narrowed.as_deref()))?;
    match resolved {
        Ok(Resolved::Done(record)) => {
            let result = step_map(&record);
            if let Some(f) = on_success {
                call_back(&ncc, &f, current_ctx())?;
            }
            Ok(result)
        }
        Ok(Resolved::Failed(failure)) => match on_fail {
            Some(f) => {
                let _ = with_current(|cur| {
                    cur.run
                        .log
                        .push(format!("step {step} failed; on_fail decides"))
                });
                call_back(&ncc, &f, current_ctx())?;
                Ok(failure_map(&failure))
            }
            None => Err(halt(Halt::Fail(OAuthError::access_denied(format!(
                "step {step} failed: {}",
                failure.reason
            ))))),
        },
        Err(h) => Err(halt(h)),
    }
}

/// The keys an `execute_step` options map may have.
pub const STEP_OPTION_KEYS: &[&str] = &["options", "on_success", "on_fail"];

/// What is wrong with an `execute_step` options map, if anything: an unknown key (with
/// the nearest valid one), or a callback that is not a function.
fn check_step_options(n: i64, opts: &Map) -> Option<String> {
    for (key, value) in opts {
        let key = key.as_str();
        if !STEP_OPTION_KEYS.contains(&key) {
            return Some(unknown_step_option(&format!("execute_step({n})"), key));
        }
        if key != "options" && !value.is_fnptr() {
            return Some(format!(
                "execute_step({n}): `{key}` must be a function such as `|ctx| {{ … }}`, not {}",
                value.type_name()
            ));
        }
    }
    None
}

/// "execute_step(2): unknown option `onSuccess`; did you mean `on_success`?"
pub fn unknown_step_option(call: &str, key: &str) -> String {
    let mut text = format!("{call}: unknown option `{key}`");
    match record::nearest(key, STEP_OPTION_KEYS) {
        Some(near) => text.push_str(&format!("; did you mean `{near}`?")),
        None => text.push_str("; the options are `options`, `on_success` and `on_fail`"),
    }
    text
}

/// The error codes a script may end a login with.
const SCRIPT_ERRORS: &[ErrorCode] = &[
    ErrorCode::AccessDenied,
    ErrorCode::LoginRequired,
    ErrorCode::InteractionRequired,
    ErrorCode::InvalidRequest,
    ErrorCode::TemporarilyUnavailable,
];

fn fail_with(map: Map) -> RhaiResult<()> {
    let error = map
        .get("error")
        .map(|d| d.to_string())
        .unwrap_or_else(|| "access_denied".into());
    let code = SCRIPT_ERRORS
        .iter()
        .find(|c| c.as_str() == error)
        .copied()
        .ok_or_else(|| {
            api_error(format!(
                "fail(): `{error}` is not an error a script may return; use one of {}",
                SCRIPT_ERRORS
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let description = map
        .get("description")
        .map(|d| d.to_string())
        .unwrap_or_else(|| "the sign-in policy refused this login".into());
    let _ = with_current(|cur| cur.run.log.push(format!("fail(): {error}: {description}")));
    Err(halt(Halt::Fail(OAuthError::new(code, description))))
}

fn set_claim(name: &str, value: Dynamic) -> RhaiResult<()> {
    if RESERVED.contains(&name) {
        return Err(api_error(format!(
            "set_claim(): `{name}` is set by Usher and cannot be changed"
        )));
    }
    let json = dynamic_to_json(&value);
    with_current(|cur| {
        cur.run.claims.insert(name.to_string(), json);
    })
}

fn log(msg: &str) -> RhaiResult<()> {
    with_current(|cur| {
        // Keep the trace small even if a loop logs: the first 50 lines are plenty.
        if cur.run.log.len() < 50 {
            cur.run.log.push(msg.to_string());
        }
    })
}

/// Whether `ip` falls in `cidr` (`10.0.0.0/8`, `2001:db8::/32`). Malformed input is
/// simply not in range.
pub fn ip_in_range(ip: &str, cidr: &str) -> bool {
    let Ok(ip) = ip.trim().parse::<IpAddr>() else {
        return false;
    };
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.trim().parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let bits = bits.unwrap_or(32);
            if bits > 32 {
                return false;
            }
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (u32::from(a) & mask) == (u32::from(b) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let bits = bits.unwrap_or(128);
            if bits > 128 {
                return false;
            }
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (u128::from(a) & mask) == (u128::from(b) & mask)
        }
        _ => false,
    }
}

/// Whether `list` (a subject's `roles` or `groups`) holds any of `wanted`, compared
/// case-insensitively. A subject without an account (a unit) holds none.
fn holds_any(subject: &Dynamic, list: &str, wanted: &Array) -> bool {
    let fields = match subject.read_lock::<Record>() {
        Some(r) => r.fields().clone(),
        None => match subject.read_lock::<Map>() {
            Some(m) => m.clone(),
            None => return false,
        },
    };
    let Some(held) = fields
        .get(list)
        .and_then(|v| v.read_lock::<Array>().map(|a| a.clone()))
    else {
        return false;
    };
    held.iter().any(|h| {
        let h = h.to_string();
        wanted
            .iter()
            .any(|w| w.to_string().eq_ignore_ascii_case(&h))
    })
}

/// `ctx.user.has_any_role(["admin", "finance"])`.
pub fn has_any_role(subject: Dynamic, wanted: Array) -> bool {
    holds_any(&subject, "roles", &wanted)
}

/// `ctx.user.in_any_group(["admins"])`.
pub fn in_any_group(subject: Dynamic, wanted: Array) -> bool {
    holds_any(&subject, "groups", &wanted)
}

/// The names the API adds, for the unknown-function check.
pub const API_FUNCTIONS: &[&str] = &[
    "execute_step",
    "fail",
    "set_claim",
    "log",
    "ip_in_range",
    "has_any_role",
    "in_any_group",
];

pub fn register(e: &mut Engine) {
    record::register(e);
    e.register_fn("execute_step", |ncc: NativeCallContext, n: i64| {
        execute_step(ncc, n, Map::new())
    });
    e.register_fn("execute_step", execute_step);
    e.register_fn("fail", |reason: &str| -> RhaiResult<()> {
        let mut m = Map::new();
        m.insert("description".into(), Dynamic::from(reason.to_string()));
        fail_with(m)
    });
    e.register_fn("fail", fail_with);
    e.register_fn("fail", || fail_with(Map::new()));
    e.register_fn("set_claim", set_claim);
    e.register_fn("log", log);
    e.register_fn("ip_in_range", ip_in_range);
    e.register_fn("has_any_role", has_any_role);
    e.register_fn("in_any_group", in_any_group);
    // `print` and `debug` go to the trace too, never to the server's stdout.
    e.on_print(|s| {
        let _ = log(s);
    });
    e.on_debug(|s, _, _| {
        let _ = log(s);
    });
}
