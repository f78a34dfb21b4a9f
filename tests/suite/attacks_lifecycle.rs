//! Attacks on the credential lifecycle (revocation, step-up, password reset) that once
//! worked: each test is the attack, and states what Usher does instead.

use std::time::Duration;

use crate::common::*;
use crate::smtp_sink::SmtpSink;
use reqwest::StatusCode;
use usher::store::CredentialStore;

/// One app whose second step is the authenticator app (enrolled while signing in); no
/// app uses codes by email, so an account without an authenticator has no second factor.
fn bank_config(smtp_port: u16) -> String {
    format!(
        r#"
issuer: "{{issuer}}"
email:
  smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: "Usher <usher@example.com>" }}
apps:
  bank:
    name: Bank
    client_id: bank
    client_secret: bank-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
        - [totp]
"#
    )
}

fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {mail}"))
        .to_string()
}

/// The href of the link whose text is `text`.
fn link(page: &Page, text: &str) -> String {
    let body = html_unescape(&page.body);
    let at = body
        .find(&format!(">{text}</a>"))
        .unwrap_or_else(|| panic!("no link {text}: {page:?}"));
    let href = body[..at].rfind("href=\"").unwrap() + 6;
    body[href..href + body[href..].find('"').unwrap()].to_string()
}

/// A new sign-in at `rp`, at its password page.
async fn password_page(usher: &Usher, browser: &Browser, rp: &Rp) -> Page {
    let start = rp.start(&[]);
    let page = browser
        .follow(usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    assert!(page.body.contains("name=\"password\""), "{page:?}");
    page
}

/// "Forgot your password?" for `login` from a password page, the mailed code, and a
/// new password: the reset is done.
async fn reset_password(
    usher: &Usher,
    sink: &SmtpSink,
    browser: &Browser,
    page: &Page,
    login: &str,
    new: &str,
) {
    let forgot = browser
        .get(&usher.url_of(&link(page, "Forgot your password?")))
        .await;
    assert_eq!(forgot.status, StatusCode::OK, "{forgot:?}");
    let res = browser
        .post(
            &usher.url_of(&forgot.form_action(Some("username"))),
            &[("csrf", &forgot.csrf()), ("username", login)],
        )
        .await;
    let reset = browser.follow(usher, res).await.unwrap();
    let mail = sink
        .wait_for_message(Duration::from_secs(10))
        .await
        .expect("the reset code arrives");
    let code = code_in(&mail);
    let res = browser
        .post(
            &usher.url_of(&reset.form_action(Some("code"))),
            &[
                ("csrf", &reset.csrf()),
                ("code", &code),
                ("password", new),
                ("password_confirm", new),
            ],
        )
        .await;
    let done = browser.follow(usher, res).await.unwrap();
    assert!(done.body.contains("Your password was changed"), "{done:?}");
}

/// BREAK: a password reset does not end a sign-in that is already under way with the
/// old password. Someone who knows Alice's (leaked) password passes the password step
/// and waits at the authenticator enrolment page; Alice resets her password; the
/// attacker then enrols *their* authenticator on Alice's account and is signed in
/// (a fresh SSO session and an authorization code) — a takeover that outlives the
/// reset meant to end it.
///
/// Expected: a reset (like a password change) invalidates every sign-in in progress
/// that passed the old password; the enrolment is refused, no authenticator is set up
/// and no code is issued.
#[tokio::test]
async fn a_password_reset_ends_sign_ins_in_progress_that_passed_the_old_password() {
    let sink = SmtpSink::start().await;
    let usher = Usher::start(&bank_config(sink.port())).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "bank", Some("bank-secret")).await;

    // The attacker, with the old password, reaches the enrolment page.
    let attacker = Browser::new();
    let page = password_page(&usher, &attacker, &rp).await;
    let mut enrol = attacker
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .expect("step 2");
    if enrol.body.contains("name=\"option\"") {
        enrol = pick(&usher, &attacker, &enrol, "totp").await;
    }
    assert!(
        enrol.body.contains("Set up your authenticator app"),
        "{enrol:?}"
    );

    // Alice resets her password in her own browser.
    let alice = Browser::new();
    let page = password_page(&usher, &alice, &rp).await;
    reset_password(
        &usher,
        &sink,
        &alice,
        &page,
        "alice",
        "a-brand-new-password",
    )
    .await;

    // The attacker finishes the enrolment with their own authenticator.
    let secret = totp_secret(&enrol);
    let code = usher::authn::totp::code_at(&secret, usher.clock.now());
    let res = attacker
        .post(
            &usher.url_of(&enrol.form_action(Some("code"))),
            &[("csrf", &enrol.csrf()), ("code", &code)],
        )
        .await;
    let mut outcome = attacker.follow(&usher, res).await;
    if let Ok(codes) = &outcome {
        if codes.body.contains("Save your recovery codes") {
            let res = attacker
                .post(
                    &usher.url_of(&codes.form_action(None)),
                    &[("csrf", &codes.csrf())],
                )
                .await;
            outcome = attacker.follow(&usher, res).await;
        }
    }
    if let Err(back) = &outcome {
        assert!(
            !query(back).contains_key("code"),
            "the attacker was signed in after the reset: {back}"
        );
    }
    let enrolled = usher
        .store
        .totp("u_alice")
        .await
        .unwrap()
        .is_some_and(|c| c.confirmed);
    assert!(
        !enrolled,
        "the attacker's authenticator was enrolled on Alice's account after her reset"
    );
}

/// Was a break (low): `/userinfo` serves an access token whose grant has ended with its SSO
/// session, while `/introspect` calls the same token inactive and a refresh of the
/// grant is `invalid_grant`. With sessions shorter than access tokens (here 60 s
/// against the default hour), an app's access token keeps reading the profile at
/// `/userinfo` after the session it came from has expired.
///
/// Expected: `/userinfo` applies the grant's liveness checks that `/introspect` and the
/// refresh grant apply (session alive unless `offline_access`), and answers 401
/// (src/oidc/token.rs `userinfo`: call `session_lives` as `revocation::live_grant` does).
#[tokio::test]
async fn userinfo_refuses_an_access_token_whose_session_expired() {
    use crate::revocation::{as_client, post, sign_in, userinfo_status};
    let config = BASE_CONFIG.replace("security:\n", "security:\n  session_ttl_seconds: 60\n");
    let usher = Usher::start(&config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();
    let alice = sign_in(&usher, &browser, "thrift", Some(SECRET), "openid email").await;
    assert_eq!(userinfo_status(&usher, &alice.access).await, StatusCode::OK);

    usher.clock.advance(120);
    let form = as_client("thrift", Some(SECRET), &[("token", &alice.access)]);
    let (_, body) = post(&usher, "/introspect", &form).await;
    assert_eq!(
        body,
        serde_json::json!({ "active": false }),
        "introspection: the session ended"
    );
    assert_eq!(
        userinfo_status(&usher, &alice.access).await,
        StatusCode::UNAUTHORIZED,
        "userinfo must refuse what introspection calls inactive"
    );
}

/// BREAK: an SSO session older than the step-up window enrols a new authenticator at an
/// app's sign-in without the password being typed again, and that enrolment then
/// counts as a fresh pass of the account's second factor, so My Account's step-up is
/// met. Whoever holds Alice's old session (her unlocked browser, a stolen cookie) sets
/// up their own authenticator, then changes credentials (here: new recovery codes; the
/// password form alike) — the very changes step-up exists to guard. My Account's own
/// authenticator setup demands a recent sign-in for the same account.
///
/// Expected: enrolling an authenticator at sign-in needs the credential typed in this
/// sign-in (not a step the SSO session satisfied), or at least a sign-in within
/// `my_account.step_up_seconds`, as My Account's setup does
/// (src/signin/codes.rs `enrolment_allowed`).
#[tokio::test]
async fn an_old_sso_session_cannot_enrol_an_authenticator_and_pass_step_up() {
    let sink = SmtpSink::start().await;
    let usher = Usher::start(&bank_config(sink.port())).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();
    // Alice signs in to My Account, and walks away.
    let form = browser
        .follow(&usher, browser.get(&usher.url("/myaccount")).await)
        .await
        .unwrap();
    let home = browser
        .submit_password(&usher, &form, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(home.body.contains("<h1>My Account</h1>"), "{home:?}");
    usher.clock.advance(1800);
    // My Account now wants her to sign in again before an authenticator is set up.
    let res = browser.get(&usher.url("/myaccount/totp")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    assert!(
        res.headers["location"]
            .to_str()
            .unwrap()
            .contains("max_age="),
        "{res:?}"
    );

    // Someone at her browser opens the bank instead: the session passes the password
    // step, and the second step offers to enrol an authenticator.
    let rp = Rp::discover(&usher, "bank", Some("bank-secret")).await;
    let start = rp.start(&[]);
    let mut page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .expect("a page of the sign-in");
    if page.body.contains("name=\"option\"") {
        page = pick(&usher, &browser, &page, "totp").await;
    }
    if !page.body.contains("Set up your authenticator app") {
        // Asked for the password again (or refused): held.
        assert!(usher.store.totp("u_alice").await.unwrap().is_none());
        return;
    }
    let (_secret, back) = enrol_totp(&usher, &browser, &page).await;
    let enrolled = usher
        .store
        .totp("u_alice")
        .await
        .unwrap()
        .is_some_and(|c| c.confirmed);
    // What it buys: My Account's step-up is met without the password.
    let home = browser
        .follow(&usher, browser.get(&usher.url("/myaccount")).await)
        .await
        .unwrap();
    let res = browser
        .post(
            &usher.url("/myaccount/recovery-codes"),
            &[("csrf", &home.csrf())],
        )
        .await;
    let location = res.headers["location"].to_str().unwrap_or("").to_string();
    assert!(
        !enrolled,
        "an SSO session half an hour old enrolled a new authenticator without the password \
         (signed in: {}); My Account's step-up then answered {} {location}",
        back.is_err(),
        res.status
    );
}

/// Was a break (low, privacy): change notices go to the account's address even when it is
/// unverified — an address nobody proved, perhaps a stranger's (a typo at provisioning,
/// sign-up with verification off). The stranger learns that the account changed a
/// credential, its username and the client address it was done from. Elsewhere an
/// unverified address "claims nothing" (docs/account.md): no reset code, no second
/// factor.
///
/// Expected: notices are mailed only to a verified address
/// (src/account/notify.rs `changed`: filter on `user.email_verified`).
#[tokio::test]
async fn change_notices_are_not_mailed_to_an_unverified_address() {
    use usher::store::UserStore;
    let sink = SmtpSink::start().await;
    let usher = Usher::start(&bank_config(sink.port())).await;
    let mut alice = usher
        .add_user("alice", "stranger@example.com", "wonderland-rabbit")
        .await;
    alice.email_verified = false;
    usher.store.update_user(&alice).await.unwrap();
    let rp = Rp::discover(&usher, "bank", Some("bank-secret")).await;
    let browser = Browser::new();
    let page = password_page(&usher, &browser, &rp).await;
    let mut enrol = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .expect("step 2");
    if enrol.body.contains("name=\"option\"") {
        enrol = pick(&usher, &browser, &enrol, "totp").await;
    }
    let (_, back) = enrol_totp(&usher, &browser, &enrol).await;
    back.expect_err("signed in");
    let mail = sink.wait_for_message(Duration::from_secs(2)).await;
    assert!(
        mail.is_none(),
        "a notice went to the unverified address: {}",
        mail.unwrap_or_default()
    );
}

/// BREAK: the authenticator key shown at an enrolment page is kept per account and
/// shown again to the next sign-in — even after a password reset. Someone who knows
/// Alice's password opens the enrolment page and notes the key; Alice, suspecting
/// nothing or after resetting her password to shut them out, later signs in and is shown
/// that same key, and enrols it: the intruder now holds her authenticator's seed.
///
/// Expected: a pending key is bound to the sign-in that showed it (a new sign-in gets a
/// new key), and at the very least a password reset discards it
/// (src/signin/codes.rs `totp_prompt` reuses `existing` unconfirmed secrets).
#[tokio::test]
async fn an_enrolment_key_seen_before_a_reset_is_not_shown_to_the_owner_after_it() {
    let sink = SmtpSink::start().await;
    let usher = Usher::start(&bank_config(sink.port())).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "bank", Some("bank-secret")).await;

    async fn enrol_page(usher: &Usher, browser: &Browser, rp: &Rp, password: &str) -> Page {
        let page = password_page(usher, browser, rp).await;
        let mut enrol = browser
            .submit_password(usher, &page, "alice", password)
            .await
            .expect("step 2");
        if enrol.body.contains("name=\"option\"") {
            enrol = pick(usher, browser, &enrol, "totp").await;
        }
        assert!(
            enrol.body.contains("Set up your authenticator app"),
            "{enrol:?}"
        );
        enrol
    }

    // The intruder, with the leaked password, only looks.
    let intruder = Browser::new();
    let seen = totp_secret(&enrol_page(&usher, &intruder, &rp, "wonderland-rabbit").await);

    // Alice resets her password, then signs in and sets up her authenticator.
    let alice = Browser::new();
    let page = password_page(&usher, &alice, &rp).await;
    reset_password(
        &usher,
        &sink,
        &alice,
        &page,
        "alice",
        "a-brand-new-password",
    )
    .await;
    let shown = totp_secret(&enrol_page(&usher, &alice, &rp, "a-brand-new-password").await);
    assert_ne!(
        shown, seen,
        "Alice is offered the authenticator key the intruder saw before her reset"
    );
}
