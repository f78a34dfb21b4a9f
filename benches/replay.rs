//! One replay of each sample policy over a recorded two-step flow, the built-in order
//! for comparison, and the cost and size of (de)serializing an in-progress flow.
//!
//! `cargo bench --bench replay`

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use usher::config::{App, ScriptSource, StepOption};
use usher::flow::{next, Flow, Subject};
use usher::oidc::authorize::AuthRequest;

fn app(script: Option<(&str, String)>) -> App {
    let steps = vec![
        vec![
            StepOption::Password,
            StepOption::Connection("google".into()),
            StepOption::Connection("github".into()),
        ],
        vec![StepOption::Totp, StepOption::EmailOtp],
    ];
    let script = script.map(|(name, source)| ScriptSource {
        path: PathBuf::from(name),
        compiled: Arc::new(usher::policy::compile(&source).expect("sample compiles")),
        source,
    });
    App::with_steps("thrift", steps, script)
}

/// A flow whose step 1 is done by a local user with an account, as it stands when the
/// user has just passed step 1 and the policy decides about step 2.
fn recorded(app: &App) -> Flow {
    let request = AuthRequest {
        app_id: "thrift".into(),
        client_id: "thrift".into(),
        redirect_uri: "http://localhost:3000/callback".into(),
        state: Some("af0ifjsldkj".into()),
        nonce: Some("n-0S6_WzA2Mj".into()),
        scopes: vec!["openid".into(), "profile".into(), "email".into()],
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        prompt: vec![],
        max_age: None,
        login_hint: None,
        acr_values: vec![],
    };
    let mut flow = Flow::new(
        usher::crypto::time_prefixed_id(1_700_000_000),
        request,
        app,
        usher::crypto::random_token(32),
        1_700_000_000,
        600,
    );
    flow.ip = "192.0.2.10".into();
    flow.user_agent = "Mozilla/5.0 (X11; Linux x86_64)".into();
    let subject = Subject {
        sub: "u_7QmZ3uS1n0xYbq9L2kV8rA".into(),
        user_id: Some("u_7QmZ3uS1n0xYbq9L2kV8rA".into()),
        username: Some("alice".into()),
        email: Some("alice@example.com".into()),
        idp: "local".into(),
        roles: vec!["admin".into()],
        enrolled: vec!["totp".into()],
        ..Subject::default()
    };
    flow.step_succeeded(
        1,
        &StepOption::Password,
        subject,
        vec!["pwd".into()],
        1_700_000_005,
    )
    .expect("first step");
    flow
}

fn benches(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("policies/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    names.sort();

    let plain = app(None);
    let base = recorded(&plain);
    c.bench_function("replay/no script (steps in order)", |b| {
        b.iter(|| {
            let mut f = base.clone();
            black_box(next(&mut f, &plain, None, 1_700_000_006))
        })
    });
    for path in names {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let source = std::fs::read_to_string(&path).expect("readable sample");
        let a = app(Some((&name, source)));
        let flow = recorded(&a);
        c.bench_function(&format!("replay/{name}"), |b| {
            b.iter(|| {
                let mut f = flow.clone();
                black_box(next(&mut f, &a, None, 1_700_000_006))
            })
        });
    }

    let bytes = serde_json::to_vec(&base).expect("serializes");
    println!(
        "serialized two-step flow (one step done): {} bytes",
        bytes.len()
    );
    c.bench_function("flow/serialize", |b| {
        b.iter(|| black_box(serde_json::to_vec(&base)))
    });
    c.bench_function("flow/deserialize", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Flow>(&bytes)))
    });
}

criterion_group!(replay, benches);
criterion_main!(replay);
