//! Two-step sign-ins steered by scripts over real HTTP: skipping step 2, both script
//! styles deciding alike, a closure's captured value surviving the round trips, and a
//! `try`/`catch` that cannot swallow the pause at `execute_step`.

use crate::common::*;
use reqwest::StatusCode;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

async fn start() -> Usher {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "straight.rhai",
        "let first = execute_step(1);\nif first.user.username != \"bob\" {\n    execute_step(2);\n}\n",
    );
    write(
        dir.path(),
        "callbacks.rhai",
        "fn on_login_request(ctx) {\n    execute_step(1, #{\n        on_success: |ctx| {\n            if ctx.steps[1].subject.username != \"bob\" { execute_step(2); }\n        }\n    });\n}\n",
    );
    write(
        dir.path(),
        "closure.rhai",
        "let before = \"captured at \" + ctx.app.id;\nlet tag = |x| before + \" then \" + x;\nlet first = execute_step(1);\nlet second = execute_step(2);\nset_claim(\"memo\", tag.call(second.option));\n",
    );
    write(
        dir.path(),
        "trycatch.rhai",
        "execute_step(1);\ntry {\n    execute_step(2);\n} catch (e) {\n    set_claim(\"escaped\", true);\n}\n",
    );
    let app = |id: &str, script: &str| {
        format!(
            "  {id}:\n    name: {id}\n    client_id: {id}\n    client_secret: s3cret-{id}\n    redirect_uris: [\"http://127.0.0.1:1/callback\"]\n    sign_in:\n      steps:\n        - [password]\n        - [totp]\n      script: {script}\n"
        )
    };
    let config = format!(
        "issuer: \"{{issuer}}\"\napps:\n{}{}{}{}",
        app("straight", "straight.rhai"),
        app("callbacks", "callbacks.rhai"),
        app("closure", "closure.rhai"),
        app("trycatch", "trycatch.rhai"),
    );
    let usher = Usher::start_in(dir, &config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    usher
        .add_user("bob", "bob@example.com", "builder-of-things")
        .await;
    usher
}

/// Sign in with a password; return where that leads (a page, or back at the app).
async fn after_password(
    usher: &Usher,
    app: &str,
    user: &str,
    pass: &str,
) -> (Browser, Result<Page, url::Url>, AuthStart, Rp) {
    let rp = Rp::discover(usher, app, Some(&format!("s3cret-{app}"))).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let page = browser
        .follow(usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let next = browser.submit_password(usher, &page, user, pass).await;
    (browser, next, start, rp)
}

#[tokio::test]
async fn both_styles_skip_or_ask_step_two_alike() {
    let usher = start().await;
    for app in ["straight", "callbacks"] {
        let (_, alice, _, _) = after_password(&usher, app, "alice", "wonderland-rabbit").await;
        let page = alice.unwrap_or_else(|u| panic!("{app}: alice should see step 2, went to {u}"));
        assert!(
            page.body.contains("Set up your authenticator app"),
            "{app}: {page:?}"
        );
        let (_, bob, start, rp) = after_password(&usher, app, "bob", "builder-of-things").await;
        let back = bob.expect_err("bob skips step 2");
        let claims = rp.claims(&back, start).await;
        assert_eq!(
            claims["amr"],
            serde_json::json!(["pwd"]),
            "{app}: one factor, no mfa"
        );
    }
    use usher::store::AuditStore;
    let events = usher.store.events(0, 100).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.outcome == "success").count(),
        2,
        "bob's two sign-ins"
    );
}

async fn finish_totp(usher: &Usher, browser: &Browser, page: Page) -> url::Url {
    enrol_totp(usher, browser, &page)
        .await
        .1
        .expect_err("back at the app")
}

#[tokio::test]
async fn a_captured_variable_survives_the_round_trips() {
    let usher = start().await;
    let (browser, page, start, rp) =
        after_password(&usher, "closure", "alice", "wonderland-rabbit").await;
    let back = finish_totp(&usher, &browser, page.unwrap()).await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    use openidconnect::TokenResponse;
    let claims = decode_payload(&tokens.id_token().unwrap().to_string());
    assert_eq!(claims["memo"], "captured at closure then totp");
}

#[tokio::test]
async fn try_catch_does_not_swallow_the_pause() {
    let usher = start().await;
    let (browser, page, start, rp) =
        after_password(&usher, "trycatch", "alice", "wonderland-rabbit").await;
    let page = page.expect("step 2 is shown despite the catch");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Set up your authenticator app"));
    let back = finish_totp(&usher, &browser, page).await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    use openidconnect::TokenResponse;
    let claims = decode_payload(&tokens.id_token().unwrap().to_string());
    assert!(
        claims.get("escaped").is_none(),
        "the catch block never ran: {claims}"
    );
}
