//! The interpreter without HTTP: order of steps, SSO satisfaction, prompt and max_age.

use std::collections::BTreeMap;

use super::*;

fn app(steps: Vec<Vec<StepOption>>) -> App {
    App::with_steps("thrift", steps, None)
}

fn request(prompt: &[&str], max_age: Option<u64>) -> AuthRequest {
    AuthRequest {
        app_id: "thrift".into(),
        client_id: "thrift".into(),
        redirect_uri: "http://localhost/cb".into(),
        state: None,
        nonce: None,
        scopes: vec!["openid".into()],
        code_challenge: None,
        prompt: prompt.iter().map(|s| s.to_string()).collect(),
        max_age,
        login_hint: None,
        acr_values: vec![],
    }
}

fn subject(sub: &str) -> Subject {
    Subject {
        sub: sub.into(),
        user_id: Some(sub.into()),
        idp: "local".into(),
        ..Subject::default()
    }
}

fn session(satisfied: &[&str], auth_time: u64) -> SessionView {
    SessionView {
        subject: subject("u1"),
        auth_time,
        satisfied: satisfied
            .iter()
            .map(|s| (s.to_string(), auth_time))
            .collect::<BTreeMap<_, _>>(),
        expires_at: auth_time + 10_000,
    }
}

fn two_steps() -> App {
    app(vec![
        vec![
            StepOption::Password,
            StepOption::Connection("google".into()),
        ],
        vec![StepOption::Totp, StepOption::EmailOtp],
    ])
}

#[test]
fn steps_run_in_order_and_mfa_is_added_to_amr() {
    let app = two_steps();
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
    assert_eq!(
        next(&mut flow, &app, None, 100),
        Next::Show {
            step: 1,
            options: app.sign_in.steps[0].options.clone()
        }
    );
    flow.step_succeeded(
        1,
        &StepOption::Password,
        subject("u1"),
        vec!["pwd".into()],
        101,
    )
    .unwrap();
    assert!(matches!(
        next(&mut flow, &app, None, 101),
        Next::Show { step: 2, .. }
    ));
    flow.step_succeeded(2, &StepOption::Totp, subject("u1"), vec!["otp".into()], 102)
        .unwrap();
    assert_eq!(next(&mut flow, &app, None, 102), Next::Complete);
    assert_eq!(flow.amr(), vec!["pwd", "otp", "mfa"]);
}

#[test]
fn an_upstream_password_alone_is_not_mfa() {
    let app = two_steps();
    let google = StepOption::Connection("google".into());
    let amr = |upstream: &[&str]| {
        let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
        let mut methods = vec!["fed".to_string()];
        methods.extend(upstream.iter().map(|m| m.to_string()));
        flow.step_succeeded(1, &google, subject("u1"), methods, 101)
            .unwrap();
        flow.amr()
    };
    // Trusted upstream methods: one password is one factor, password and OTP are two.
    assert_eq!(amr(&["pwd"]), vec!["fed", "pwd"]);
    assert_eq!(amr(&["pwd", "otp"]), vec!["fed", "pwd", "otp", "mfa"]);
    // Untrusted (nothing reported): the federated sign-in is the one factor.
    assert_eq!(amr(&[]), vec!["fed"]);
}

#[test]
fn a_second_step_for_another_person_is_refused() {
    let app = two_steps();
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
    flow.step_succeeded(
        1,
        &StepOption::Password,
        subject("u1"),
        vec!["pwd".into()],
        101,
    )
    .unwrap();
    let err = flow
        .step_succeeded(2, &StepOption::Totp, subject("u2"), vec!["otp".into()], 102)
        .unwrap_err();
    assert_eq!(err.code, crate::oidc::ErrorCode::AccessDenied);
    assert!(flow.trace.last().unwrap().contains("different person"));
}

#[test]
fn the_session_satisfies_what_it_holds_and_only_that() {
    let app = two_steps();
    let s = session(&["password"], 100);
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 200, 600);
    assert!(matches!(
        next(&mut flow, &app, Some(&s), 200),
        Next::Show { step: 2, .. }
    ));
    assert!(flow.done[0].from_session);
    assert!(flow.trace[0].contains("satisfied by the SSO session"));
    assert!(!flow.interactive());
    // Replaying again does not record the session's step twice.
    assert!(matches!(
        next(&mut flow, &app, Some(&s), 201),
        Next::Show { step: 2, .. }
    ));
    assert_eq!(flow.done.len(), 1);
}

#[test]
fn prompt_login_and_max_age_ignore_the_session() {
    let app = two_steps();
    let s = session(&["password", "totp"], 100);
    let mut login = Flow::new(
        "f".into(),
        request(&["login"], None),
        &app,
        "b".into(),
        200,
        600,
    );
    assert!(matches!(
        next(&mut login, &app, Some(&s), 200),
        Next::Show { step: 1, .. }
    ));
    let mut old = Flow::new(
        "f".into(),
        request(&[], Some(50)),
        &app,
        "b".into(),
        200,
        600,
    );
    assert!(matches!(
        next(&mut old, &app, Some(&s), 200),
        Next::Show { step: 1, .. }
    ));
    let mut fresh = Flow::new(
        "f".into(),
        request(&[], Some(500)),
        &app,
        "b".into(),
        200,
        600,
    );
    assert_eq!(next(&mut fresh, &app, Some(&s), 200), Next::Complete);
}

#[test]
fn prompt_none_fails_with_login_required_when_a_step_needs_the_user() {
    let app = two_steps();
    let mut flow = Flow::new(
        "f".into(),
        request(&["none"], None),
        &app,
        "b".into(),
        200,
        600,
    );
    match next(&mut flow, &app, None, 200) {
        Next::Fail(e) => assert_eq!(e.code.as_str(), "login_required"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_forced_step_is_asked_again() {
    let mut app = two_steps();
    app.sign_in.steps[1].force = true;
    let s = session(&["password", "totp"], 100);
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 200, 600);
    assert!(matches!(
        next(&mut flow, &app, Some(&s), 200),
        Next::Show { step: 2, .. }
    ));
}

#[test]
fn a_two_step_flow_serializes_small() {
    let app = two_steps();
    let mut flow = Flow::new(
        crate::crypto::time_prefixed_id(100),
        request(&[], None),
        &app,
        "b".repeat(43),
        100,
        600,
    );
    flow.step_succeeded(
        1,
        &StepOption::Password,
        subject("u_abcdefghijklmnopqrstuv"),
        vec!["pwd".into()],
        101,
    )
    .unwrap();
    let bytes = serde_json::to_vec(&flow).unwrap();
    assert!(bytes.len() < 2048, "{} bytes", bytes.len());
}

#[test]
fn a_failed_step_ends_the_login_with_access_denied() {
    let app = two_steps();
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
    flow.step_failed(1, "google", "the user denied access upstream", 101);
    match next(&mut flow, &app, None, 101) {
        Next::Fail(e) => {
            assert_eq!(e.code.as_str(), "access_denied");
            assert!(e.description.contains("denied access upstream"));
        }
        other => panic!("{other:?}"),
    }
}

/// The two steps with the skip-MFA-without-an-account script.
fn two_steps_with_script() -> App {
    let source =
        "let first = execute_step(1);\nif first.user.has_account {\n    execute_step(2);\n}\n";
    let script = crate::config::ScriptSource {
        path: "skip-mfa.rhai".into(),
        source: source.into(),
        compiled: std::sync::Arc::new(crate::policy::compile(source).unwrap()),
    };
    let mut app = two_steps();
    app.sign_in.script = Some(script);
    app
}

fn passed_through(sub: &str) -> Subject {
    Subject {
        sub: sub.into(),
        user_id: None,
        idp: "google".into(),
        ..Subject::default()
    }
}

#[test]
fn the_trace_says_which_steps_were_offered_and_which_were_skipped() {
    let app = two_steps_with_script();
    let google = StepOption::Connection("google".into());
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
    assert!(matches!(
        next(&mut flow, &app, None, 100),
        Next::Show { step: 1, .. }
    ));
    // The page shown again (a reload, a wrong password) is not a second offer.
    next(&mut flow, &app, None, 100);
    flow.step_succeeded(
        1,
        &google,
        passed_through("google|1"),
        vec!["fed".into()],
        101,
    )
    .unwrap();
    assert_eq!(next(&mut flow, &app, None, 101), Next::Complete);
    assert_eq!(
        flow.trace,
        vec![
            "step 1 offered: password, google",
            "step 1: google succeeded for google|1",
            "step 2 skipped: the script finished without executing it",
        ]
    );

    // A local user is offered step 2, takes it, and nothing is skipped.
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
    next(&mut flow, &app, None, 100);
    flow.step_succeeded(1, &StepOption::Password, subject("u1"), vec![], 101)
        .unwrap();
    assert!(matches!(
        next(&mut flow, &app, None, 101),
        Next::Show { step: 2, .. }
    ));
    flow.step_succeeded(2, &StepOption::Totp, subject("u1"), vec![], 102)
        .unwrap();
    assert_eq!(next(&mut flow, &app, None, 102), Next::Complete);
    assert_eq!(
        flow.trace,
        vec![
            "step 1 offered: password, google",
            "step 1: password succeeded for u1",
            "step 2 offered: totp, email_otp",
            "step 2: totp succeeded for u1",
        ]
    );
}

#[test]
fn a_step_with_nothing_usable_is_not_traced_as_offered() {
    // Without the script a pass-through user reaches step 2, whose options all need an
    // account: the caller shows the MFA conflict (with its own line), not a chooser.
    let app = two_steps();
    let google = StepOption::Connection("google".into());
    let mut flow = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
    next(&mut flow, &app, None, 100);
    flow.step_succeeded(
        1,
        &google,
        passed_through("google|1"),
        vec!["fed".into()],
        101,
    )
    .unwrap();
    assert!(matches!(
        next(&mut flow, &app, None, 101),
        Next::Show { step: 2, .. }
    ));
    assert!(
        !flow.trace.iter().any(|l| l.starts_with("step 2 offered")),
        "{:?}",
        flow.trace
    );
}

fn step_up_request(prompt: &[&str]) -> AuthRequest {
    AuthRequest {
        acr_values: vec![step_up::SECOND_FACTOR_ACR.into()],
        ..request(prompt, Some(300))
    }
}

fn with_factors(factors: &[&str]) -> Subject {
    Subject {
        factors: factors.iter().map(|f| f.to_string()).collect(),
        ..subject("u1")
    }
}

#[test]
fn a_step_up_asks_for_the_accounts_own_factor_after_the_apps_steps() {
    let app = app(vec![vec![StepOption::Password]]);
    let mut flow = Flow::new("f".into(), step_up_request(&[]), &app, "b".into(), 100, 600);
    let who = with_factors(&["totp", "recovery_code"]);
    flow.step_succeeded(
        1,
        &StepOption::Password,
        who.clone(),
        vec!["pwd".into()],
        101,
    )
    .unwrap();
    assert_eq!(
        next(&mut flow, &app, None, 101),
        Next::Show {
            step: 2,
            options: vec![StepOption::Totp, StepOption::RecoveryCode]
        }
    );
    flow.step_succeeded(2, &StepOption::Totp, who, vec!["otp".into()], 102)
        .unwrap();
    assert_eq!(next(&mut flow, &app, None, 102), Next::Complete);
    assert_eq!(flow.amr(), ["pwd", "otp", "mfa"]);
}

#[test]
fn a_step_up_is_not_met_by_the_sessions_earlier_pass() {
    // The app's own second step is satisfied by the session's TOTP; the step-up still
    // wants a fresh one.
    let app = app(vec![vec![StepOption::Password], vec![StepOption::Totp]]);
    let mut s = session(&["password", "totp"], 100);
    s.subject = with_factors(&["totp"]);
    let mut flow = Flow::new("f".into(), step_up_request(&[]), &app, "b".into(), 200, 600);
    assert_eq!(
        next(&mut flow, &app, Some(&s), 200),
        Next::Show {
            step: 3,
            options: vec![StepOption::Totp]
        }
    );
    // Under prompt=none it cannot be asked: login_required.
    let mut silent = Flow::new(
        "f".into(),
        step_up_request(&["none"]),
        &app,
        "b".into(),
        200,
        600,
    );
    assert!(matches!(
        next(&mut silent, &app, Some(&s), 200),
        Next::Fail(e) if e.code == crate::oidc::ErrorCode::LoginRequired
    ));
}

#[test]
fn an_account_without_a_second_factor_completes_a_step_up_with_its_sign_in() {
    let app = app(vec![vec![StepOption::Password]]);
    let mut flow = Flow::new("f".into(), step_up_request(&[]), &app, "b".into(), 100, 600);
    flow.step_succeeded(
        1,
        &StepOption::Password,
        subject("u1"),
        vec!["pwd".into()],
        101,
    )
    .unwrap();
    assert_eq!(next(&mut flow, &app, None, 101), Next::Complete);
    // Without the acr value, an account with factors is not asked either.
    let mut plain = Flow::new("f".into(), request(&[], None), &app, "b".into(), 100, 600);
    plain
        .step_succeeded(
            1,
            &StepOption::Password,
            with_factors(&["totp"]),
            vec!["pwd".into()],
            101,
        )
        .unwrap();
    assert_eq!(next(&mut plain, &app, None, 101), Next::Complete);
}
