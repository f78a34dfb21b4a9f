//! Scripts replayed over recorded flows, without HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::config::{ScriptSource, StepOption};
use crate::flow::{next, Next, Subject};
use crate::oidc::authorize::AuthRequest;

/// The Thrift steps: password, Google or GitHub; then TOTP or email OTP.
fn thrift_steps() -> Vec<Vec<StepOption>> {
    vec![
        vec![
            StepOption::Password,
            StepOption::Connection("google".into()),
            StepOption::Connection("github".into()),
        ],
        vec![StepOption::Totp, StepOption::EmailOtp],
    ]
}

fn app_with(script: &str) -> App {
    let compiled = compile(script).unwrap_or_else(|e| panic!("{e:?}"));
    let source = ScriptSource {
        path: PathBuf::from("test.rhai"),
        source: script.into(),
        compiled: Arc::new(compiled),
    };
    App::with_steps("thrift", thrift_steps(), Some(source))
}

fn flow_for(app: &App, acr: &[&str]) -> Flow {
    let request = AuthRequest {
        app_id: "thrift".into(),
        client_id: "thrift".into(),
        redirect_uri: "http://localhost/cb".into(),
        state: None,
        nonce: None,
        scopes: vec!["openid".into()],
        code_challenge: None,
        prompt: vec![],
        max_age: None,
        login_hint: None,
        acr_values: acr.iter().map(|s| s.to_string()).collect(),
    };
    let mut f = Flow::new("f".into(), request, app, "b".into(), 1000, 600);
    f.ip = "10.1.2.3".into();
    f
}

fn local() -> Subject {
    Subject {
        sub: "u1".into(),
        user_id: Some("u1".into()),
        idp: "local".into(),
        ..Subject::default()
    }
}

fn github_passthrough() -> Subject {
    Subject {
        sub: "github|583231".into(),
        user_id: None,
        idp: "github".into(),
        ..Subject::default()
    }
}

const STRAIGHT: &str = r#"
let first = execute_step(1);
if first.user.has_account {
    execute_step(2);
}
"#;

const CALLBACKS: &str = r#"
fn on_login_request(ctx) {
    execute_step(1, #{
        on_success: |ctx| {
            if ctx.steps[1].idp == "local" { execute_step(2); }
        }
    });
}
"#;

/// Drive a script through: step 1 by `who`, then step 2 if asked. Returns the steps
/// that were shown.
fn drive(script: &str, who: Subject) -> Vec<usize> {
    let app = app_with(script);
    let mut flow = flow_for(&app, &[]);
    let mut shown = Vec::new();
    for _ in 0..5 {
        match next(&mut flow, &app, None, 1001) {
            Next::Show { step, .. } => {
                shown.push(step);
                let option = if step == 1 {
                    StepOption::Password
                } else {
                    StepOption::Totp
                };
                flow.step_succeeded(step, &option, who.clone(), vec![], 1002)
                    .unwrap();
            }
            Next::Complete => return shown,
            other => panic!("{other:?}"),
        }
    }
    panic!("did not finish")
}

#[test]
fn straight_line_and_callback_styles_decide_alike() {
    for script in [STRAIGHT, CALLBACKS] {
        assert_eq!(drive(script, local()), vec![1, 2], "local user passes MFA");
        assert_eq!(
            drive(script, github_passthrough()),
            vec![1],
            "pass-through user skips MFA"
        );
    }
}

#[test]
fn closure_captured_variables_survive_round_trips() {
    let script = r#"
        let greeting = "hello from before step 1";
        let remember = |x| greeting + " / " + x;
        let first = execute_step(1);
        set_claim("memo", remember.call(first.option));
    "#;
    let app = app_with(script);
    let mut flow = flow_for(&app, &[]);
    assert!(matches!(
        next(&mut flow, &app, None, 1001),
        Next::Show { step: 1, .. }
    ));
    // A new HTTP round trip: nothing of the first run is kept but the record.
    let mut flow: Flow = serde_json::from_slice(&serde_json::to_vec(&flow).unwrap()).unwrap();
    flow.step_succeeded(1, &StepOption::Password, local(), vec![], 1002)
        .unwrap();
    assert_eq!(next(&mut flow, &app, None, 1003), Next::Complete);
    assert_eq!(flow.claims["memo"], "hello from before step 1 / password");
}

#[test]
fn try_catch_cannot_swallow_the_halt() {
    let script = r#"
        try {
            execute_step(1);
        } catch (e) {
            log("caught it");
            set_claim("escaped", true);
        }
    "#;
    let app = app_with(script);
    let mut flow = flow_for(&app, &[]);
    assert!(matches!(
        next(&mut flow, &app, None, 1001),
        Next::Show { step: 1, .. }
    ));
    assert!(flow.claims.is_empty());
}

#[test]
fn an_infinite_loop_fails_its_login_naming_the_line() {
    let app = app_with("let x = 0;\nloop {\n  x += 1;\n}\n");
    let mut flow = flow_for(&app, &[]);
    match next(&mut flow, &app, None, 1001) {
        Next::ScriptError(m) => {
            assert!(m.contains("ran too long"), "{m}");
            assert!(m.starts_with("line "), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(flow.trace().last().unwrap().contains("script error"));
}

/// Run a script that should break; return the message, after checking the trace
/// carries the same words.
fn script_error(script: &str) -> String {
    let app = app_with(script);
    let mut flow = flow_for(&app, &[]);
    match next(&mut flow, &app, None, 1001) {
        Next::ScriptError(m) => {
            assert_eq!(flow.trace().last(), Some(&format!("script error: {m}")));
            m
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn calls_nested_too_deep_fail_the_login_naming_the_line() {
    let script = "fn depth(n) {\n    if n == 0 { 0 } else { 1 + depth(n - 1) }\n}\nlet shallow = depth(10);\nlet deep = depth(40);\nexecute_step(1);\n";
    assert_eq!(
        script_error(script),
        format!("line 5: calls nested deeper than {MAX_CALL_LEVELS} levels")
    );
}

#[test]
fn a_string_past_the_limit_fails_the_login_naming_the_line() {
    // Doubling from one byte passes 16 KiB on the 15th round.
    let script = "let name = \"x\";\nfor i in 0..20 {\n    name += name;\n}\nexecute_step(1);\n";
    assert_eq!(
        script_error(script),
        format!("line 3: a string grew past the limit of {MAX_STRING_BYTES} bytes")
    );
}

#[test]
fn an_array_past_the_limit_fails_the_login_naming_the_line() {
    let script = "let seen = [];\nfor i in 0..2000 {\n    seen.push(i);\n}\nexecute_step(1);\n";
    assert_eq!(
        script_error(script),
        format!("line 3: an array grew past the limit of {MAX_ARRAY_LEN} items")
    );
}

#[test]
fn a_map_past_the_limit_fails_the_login_naming_the_line() {
    let script = "let groups = #{};\nfor i in 0..300 {\n    let one = #{};\n    one[`g${i}`] = i;\n    groups.mixin(one);\n}\nexecute_step(1);\n";
    assert_eq!(
        script_error(script),
        format!("line 5: a map grew past the limit of {MAX_MAP_LEN} entries")
    );
}

#[test]
fn within_the_limits_the_same_shapes_run() {
    // The limit tests above fail for the limit, not for the shape of their scripts.
    let script = "let name = \"x\";\nfor i in 0..10 { name += name; }\nlet seen = [];\nfor i in 0..500 { seen.push(i); }\nlet groups = #{};\nfor i in 0..100 { let one = #{}; one[`g${i}`] = i; groups.mixin(one); }\nset_claim(\"sizes\", [name.len(), seen.len(), groups.len()]);\nexecute_step(1);\n";
    let app = app_with(script);
    let mut flow = flow_for(&app, &[]);
    assert!(matches!(
        next(&mut flow, &app, None, 1001),
        Next::Show { step: 1, .. }
    ));
    assert_eq!(flow.claims["sizes"], serde_json::json!([1024, 500, 100]));
}

#[test]
fn import_is_refused_at_load_and_nothing_could_resolve_it() {
    let e = compile("let first = execute_step(1);\nimport \"helpers\" as h;\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e:?}");
    assert_eq!(
        e.message,
        "scripts cannot import modules; keep helper functions in the script itself"
    );
    let e = compile("fn helper() {\n    import \"helpers\";\n}\n").unwrap_err();
    assert_eq!(e.line, 2, "inside a function too: {e:?}");
    // Past the load-time check, the engine itself has no module resolver.
    let ast = engine().compile("import \"helpers\";").unwrap();
    let err = engine().run_ast(&ast).unwrap_err();
    assert!(
        matches!(*err, EvalAltResult::ErrorModuleNotFound(ref name, _) if name == "helpers"),
        "{err:?}"
    );
}

#[test]
fn a_thrown_error_names_its_line() {
    let app = app_with("let a = 1;\nthrow \"no way\";\n");
    let mut flow = flow_for(&app, &[]);
    assert_eq!(
        next(&mut flow, &app, None, 1001),
        Next::ScriptError("line 2: the script threw: no way".into())
    );
}

#[test]
fn fail_reaches_the_app_as_an_oauth_error() {
    let app = app_with(
        r#"if ip_in_range(ctx.request.ip, "10.0.0.0/8") { fail("internal addresses may not sign in"); } execute_step(1);"#,
    );
    let mut flow = flow_for(&app, &[]);
    match next(&mut flow, &app, None, 1001) {
        Next::Fail(e) => {
            assert_eq!(e.code.as_str(), "access_denied");
            assert_eq!(e.description, "internal addresses may not sign in");
        }
        other => panic!("{other:?}"),
    }
    let app = app_with(r#"fail(#{ error: "interaction_required", description: "nope" });"#);
    let mut flow = flow_for(&app, &[]);
    assert!(
        matches!(next(&mut flow, &app, None, 1001), Next::Fail(e) if e.code.as_str() == "interaction_required")
    );
}

#[test]
fn step_up_on_acr_values() {
    let script = r#"
        execute_step(1);
        if ctx.request.acr_values.contains("mfa") { execute_step(2); }
    "#;
    let app = app_with(script);
    let mut flow = flow_for(&app, &["mfa"]);
    flow.step_succeeded(1, &StepOption::Password, local(), vec![], 1002)
        .unwrap();
    assert!(matches!(
        next(&mut flow, &app, None, 1003),
        Next::Show { step: 2, .. }
    ));
    let mut flow = flow_for(&app, &[]);
    flow.step_succeeded(1, &StepOption::Password, local(), vec![], 1002)
        .unwrap();
    assert_eq!(next(&mut flow, &app, None, 1003), Next::Complete);
}

#[test]
fn options_narrow_a_step_and_on_fail_takes_over() {
    let script = r#"
        execute_step(1, #{ options: ["password"], on_fail: |ctx| { log("password failed"); fail("no luck"); } });
    "#;
    let app = app_with(script);
    let mut flow = flow_for(&app, &[]);
    assert_eq!(
        next(&mut flow, &app, None, 1001),
        Next::Show {
            step: 1,
            options: vec![StepOption::Password]
        }
    );
    flow.step_failed(1, "password", "too many attempts", 1002);
    assert!(
        matches!(next(&mut flow, &app, None, 1003), Next::Fail(e) if e.description == "no luck")
    );
    assert_eq!(
        flow.script_log,
        vec![
            "step 1 failed; on_fail decides",
            "password failed",
            "fail(): access_denied: no luck"
        ]
    );
}

#[test]
fn compile_errors_carry_line_column_and_suggestion() {
    let e = compile("let x = 1;\nlet y = ;\n").unwrap_err();
    assert_eq!(e.line, 2);
    let e = compile("let first = excute_step(1);\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 13));
    assert_eq!(e.message, "unknown function `excute_step`");
    assert_eq!(e.suggestion.as_deref(), Some("execute_step"));
    let e = compile("execute_step(1);\nexcute_step(2);\n").unwrap_err();
    assert_eq!(
        (e.line, e.column),
        (2, 1),
        "a call as a statement is checked too"
    );
    let e = compile("execute_step(1);\nif user.has_account { }\n").unwrap_err();
    assert_eq!(e.line, 2, "undefined variables are compile errors: {e:?}");
    assert!(compile(&"// padding\n".repeat(7000)).is_err(), "size limit");
    // Methods, closures and script functions are all known.
    compile("fn helper(x) { x + 1 }\nlet f = |y| helper(y);\nlet s = \"ab\".to_upper();\nf.call(1); f(2);").unwrap();
}

#[test]
fn scripts_cannot_reach_the_clock_or_eval() {
    assert!(compile("let t = timestamp();").is_err());
    assert!(compile("eval(\"1\");").is_err());
}

#[test]
fn ip_ranges() {
    assert!(api::ip_in_range("10.1.2.3", "10.0.0.0/8"));
    assert!(!api::ip_in_range("11.1.2.3", "10.0.0.0/8"));
    assert!(api::ip_in_range("2001:db8::1", "2001:db8::/32"));
    assert!(!api::ip_in_range("garbage", "10.0.0.0/8"));
    assert!(api::ip_in_range("192.168.1.1", "192.168.1.1"));
}

#[test]
fn every_sample_policy_compiles_and_decides() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rhai") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let app = app_with(&source);
        // Every sample starts by showing step 1 (or refusing the network outright).
        let mut flow = flow_for(&app, &[]);
        flow.ip = "192.0.2.10".into();
        let first = next(&mut flow, &app, None, 1001);
        assert!(
            matches!(first, Next::Show { step: 1, .. }),
            "{}: {first:?}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 6, "the six documented samples are there");
}

#[test]
fn deny_ip_range_sample_refuses_the_listed_network() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/deny-ip-range.rhai"),
    )
    .unwrap();
    let app = app_with(&source);
    let mut flow = flow_for(&app, &[]);
    flow.ip = "203.0.113.7".into();
    assert!(
        matches!(next(&mut flow, &app, None, 1001), Next::Fail(e) if e.description.contains("not allowed from this network"))
    );
}

#[test]
fn roles_sample_asks_admins_only() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/mfa-for-roles.rhai"),
    )
    .unwrap();
    let mut admin = local();
    admin.roles = vec!["admin".into()];
    assert_eq!(drive(&source, admin), vec![1, 2]);
    assert_eq!(drive(&source, local()), vec![1]);
}

#[test]
fn admins_sample_asks_members_of_admins_only() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/mfa-for-admins.rhai"),
    )
    .unwrap();
    let mut admin = local();
    admin.groups = vec!["staff".into(), "Admins".into()];
    assert_eq!(drive(&source, admin), vec![1, 2]);
    let mut staff = local();
    staff.groups = vec!["staff".into()];
    staff.roles = vec!["admins".into()];
    assert_eq!(drive(&source, staff), vec![1], "a role is not a group");
    assert_eq!(drive(&source, local()), vec![1]);
}

#[test]
fn trust_upstream_mfa_sample() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/trust-upstream-mfa.rhai"),
    )
    .unwrap();
    let mut google = Subject {
        sub: "u9".into(),
        user_id: Some("u9".into()),
        idp: "google".into(),
        upstream_amr: vec!["pwd".into(), "mfa".into()],
        ..Subject::default()
    };
    assert_eq!(drive(&source, google.clone()), vec![1]);
    google.upstream_amr = vec!["pwd".into()];
    assert_eq!(drive(&source, google), vec![1, 2]);
    assert_eq!(drive(&source, local()), vec![1, 2]);
}

#[test]
fn a_misspelt_option_key_in_a_literal_map_is_refused_at_load_with_the_right_name() {
    // The JavaScript spelling every ported policy uses: ignored, it would skip step 2.
    let ported = "fn on_login_request(ctx) {\n    execute_step(1, #{\n        onSuccess: |ctx| { execute_step(2); }\n    });\n}\n";
    let e = compile(ported).unwrap_err();
    assert_eq!((e.line, e.column), (3, 9), "{e:?}");
    assert_eq!(
        e.message,
        "execute_step(1): unknown option `onSuccess`; did you mean `on_success`?"
    );
    let e = compile("execute_step(1, #{ on_fial: |ctx| {} });\n").unwrap_err();
    assert!(e.message.contains("did you mean `on_fail`?"), "{e:?}");
    // The right names compile, in either style.
    compile(CALLBACKS).unwrap();
    compile("execute_step(1, #{ options: [\"password\"], on_fail: |ctx| {} });").unwrap();
}

#[test]
fn a_misspelt_option_key_in_a_map_built_at_run_time_fails_the_sign_in_naming_its_line() {
    let m = script_error(
        "let opts = #{};\nopts.onSuccess = |ctx| { execute_step(2); };\nexecute_step(1, opts);\n",
    );
    assert_eq!(
        m,
        "line 3: execute_step(1): unknown option `onSuccess`; did you mean `on_success`?"
    );
    let m = script_error("let opts = #{ on_success: \"step 2\" };\nexecute_step(1, opts);\n");
    assert!(
        m.starts_with("line 2: execute_step(1): `on_success` must be a function"),
        "{m}"
    );
}

#[test]
fn unknown_members_of_ctx_are_refused_at_load() {
    let e = compile("execute_step(1);\nif ctx.usr != () { execute_step(2); }\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(e.message, "`ctx` has no member `usr`");
    assert_eq!(e.suggestion.as_deref(), Some("user"));
    let e = compile("if ctx.request.header[\"x-device\"] == \"kiosk\" { fail(); }\n").unwrap_err();
    assert_eq!(e.message, "`ctx.request` has no member `header`");
    assert_eq!(e.suggestion.as_deref(), Some("headers"));
    let e = compile("fn on_login_request(ctx) {\n    execute_step(1, #{ on_success: |ctx| {\n        if ctx.user.hasAccount { execute_step(2); }\n    } });\n}\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(e.suggestion.as_deref(), Some("has_account"));
    // What exists passes, through indexes and `?.` alike.
    compile("let ip = ctx.request.ip;\nlet h = ctx.request.headers[\"x-device\"];\nlet idp = ctx.steps[1]?.idp;\nlet n = ctx.user?.sessions;\n").unwrap();
}

#[test]
fn unknown_members_of_a_step_or_subject_fail_the_sign_in_naming_line_and_name() {
    let app = app_with(
        "let first = execute_step(1);\nif first.usr.has_account {\n    execute_step(2);\n}\n",
    );
    let mut flow = flow_for(&app, &[]);
    assert!(matches!(
        next(&mut flow, &app, None, 1001),
        Next::Show { step: 1, .. }
    ));
    flow.step_succeeded(1, &StepOption::Password, local(), vec![], 1002)
        .unwrap();
    match next(&mut flow, &app, None, 1003) {
        Next::ScriptError(m) => assert!(
            m.starts_with("line 2: ") && m.contains("has no member `usr`; did you mean `user`?"),
            "{m}"
        ),
        other => panic!("must not complete without step 2: {other:?}"),
    }
    let app = app_with(
        "let first = execute_step(1);\nif first.user.isFederated {\n    log(\"federated\");\n}\n",
    );
    let mut flow = flow_for(&app, &[]);
    next(&mut flow, &app, None, 1001);
    flow.step_succeeded(1, &StepOption::Password, local(), vec![], 1002)
        .unwrap();
    match next(&mut flow, &app, None, 1003) {
        Next::ScriptError(m) => assert!(
            m.starts_with("line 2: ") && m.contains("did you mean `is_federated`?"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_still_read_like_maps() {
    // Comparisons with (), `in`, printing, claims as a plain map and a failed step's
    // missing members all behave as before.
    let script = r#"
let first = execute_step(1, #{ on_fail: |ctx| {} });
if ctx.steps[2] != () { fail("no step 2 yet"); }
if !("has_account" in first.user) { fail("in"); }
if first.user.claims.nothing != () { fail("claims are a map"); }
if first.reason != () { fail("a success has no reason"); }
log(`${first.user.groups.len()} groups, ${first.user.sessions.len()} other sessions`);
set_claim("who", first.user);
"#;
    let app = app_with(script);
    let mut flow = flow_for(&app, &[]);
    next(&mut flow, &app, None, 1001);
    flow.step_succeeded(1, &StepOption::Password, local(), vec![], 1002)
        .unwrap();
    assert_eq!(next(&mut flow, &app, None, 1003), Next::Complete);
    assert_eq!(flow.script_log, vec!["0 groups, 0 other sessions"]);
    assert_eq!(flow.claims["who"]["id"], "u1");
}

#[test]
fn only_scripts_that_name_sessions_make_sign_ins_read_them() {
    assert!(!compile(STRAIGHT).unwrap().reads_sessions());
    assert!(!compile(CALLBACKS).unwrap().reads_sessions());
    assert!(!compile("let g = ctx.user?.groups;")
        .unwrap()
        .reads_sessions());
    assert!(compile("let n = ctx.user?.sessions;")
        .unwrap()
        .reads_sessions());
    assert!(compile(
        "let first = execute_step(1);\nif first.user[\"sessions\"].len() > 2 { execute_step(2); }"
    )
    .unwrap()
    .reads_sessions());
}
