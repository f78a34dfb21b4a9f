//! Step-up for credential changes and the notices of them, over real HTTP: My Account
//! sends a session that is too old, or that never passed the account's second factor,
//! back through Usher's own sign-in (`max_age`, `acr_values`), which asks for that
//! factor; only then does the change go through. Each change is mailed to the account,
//! naming what changed and the client address.

use std::time::Duration;

use crate::common::*;
use crate::smtp_sink::SmtpSink;
use reqwest::StatusCode;
use usher::store::{CredentialStore, UserStore};

/// Thrift with `steps`, mail to the sink, and two accounts with one password: alice
/// (with an address) and tom (without one).
async fn start(steps: &str) -> (Usher, SmtpSink) {
    let sink = SmtpSink::start().await;
    let config = format!(
        r#"
issuer: "{{issuer}}"
email:
  smtp: {{ host: 127.0.0.1, port: {}, tls: none, from: "Usher <usher@example.com>" }}
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps: {steps}
"#,
        sink.port()
    );
    let usher = Usher::start(&config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let mut tom = usher
        .add_user("tom", "tom@example.com", "wonderland-rabbit")
        .await;
    tom.email = None;
    usher.store.update_user(&tom).await.unwrap();
    (usher, sink)
}

/// Codes by email are a sign-in option, so an address is a second factor.
const WITH_EMAIL_CODES: &str = "[[password], [totp, email_otp, recovery_code]]";

/// Sign in to My Account with a password; the page it ends on.
async fn my_account(usher: &Usher, browser: &Browser, user: &str) -> Page {
    let form = browser
        .follow(usher, browser.get(&usher.url("/myaccount")).await)
        .await
        .unwrap();
    let page = browser
        .submit_password(usher, &form, user, "wonderland-rabbit")
        .await
        .unwrap();
    assert!(page.body.contains("<h1>My Account</h1>"), "{page:?}");
    page
}

/// Post a My Account form with only its CSRF token; the answer, not followed.
async fn post(usher: &Usher, browser: &Browser, path: &str, page: &Page) -> Page {
    browser
        .post(&usher.url(path), &[("csrf", &page.csrf())])
        .await
}

/// A redirect that restarts My Account's sign-in as a step-up.
fn assert_step_up(res: &Page) {
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    let to = res.headers["location"].to_str().unwrap();
    assert!(to.contains("/authorize?"), "{to}");
    assert!(
        to.contains("acr_values=urn%3Ausher%3Asecond-factor"),
        "{to}"
    );
    assert!(to.contains("max_age=300"), "{to}");
}

/// A form's answer that goes back to the page: the change was made.
fn assert_back_home(res: &Page) {
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    let to = res.headers["location"].to_str().unwrap();
    assert!(to.ends_with("/myaccount"), "{to}");
}

/// Post a code to the page's code form and follow.
async fn code(usher: &Usher, browser: &Browser, page: &Page, code: &str) -> Page {
    let res = browser
        .post(
            &usher.url_of(&page.form_action(Some("code"))),
            &[("csrf", &page.csrf()), ("code", code)],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    browser.follow(usher, res).await.unwrap()
}

/// The mail's text with quoted-printable soft line breaks undone.
fn unfolded(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

fn code_in_mail(mail: &str) -> String {
    unfolded(mail)
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("a 6-digit code in the mail")
        .to_string()
}

/// The next mail, which must be the notice of `what` naming the client address.
async fn notice(sink: &SmtpSink, what: &str) -> String {
    let mail = sink
        .wait_for_message(Duration::from_secs(10))
        .await
        .expect("a notice");
    let text = unfolded(&mail);
    assert!(text.contains(&format!("Subject: {what}")), "{text}");
    assert!(text.contains("from the address 127.0.0.1"), "{text}");
    assert!(text.contains("If it was not you"), "{text}");
    text
}

#[tokio::test]
async fn with_only_a_password_factors_change_only_after_the_second_factor_is_passed() {
    let (usher, sink) = start(WITH_EMAIL_CODES).await;
    let browser = Browser::new();
    my_account(&usher, &browser, "alice").await;

    // Setting up an authenticator: alice's second factor is her email, so her
    // password alone does not show a key; Usher's sign-in asks for an email code.
    let res = browser.get(&usher.url("/myaccount/totp")).await;
    assert_step_up(&res);
    assert!(usher.store.totp("u_alice").await.unwrap().is_none());
    let email_page = browser.follow(&usher, res).await.unwrap();
    assert!(
        email_page.body.contains("Check your email"),
        "{email_page:?}"
    );
    assert!(
        !email_page.body.contains("name=\"password\""),
        "the session stands in for the password"
    );
    let mail = sink
        .wait_for_message(Duration::from_secs(10))
        .await
        .unwrap();
    let enrol = code(&usher, &browser, &email_page, &code_in_mail(&mail)).await;
    assert!(enrol.url.ends_with("/myaccount/totp"), "{enrol:?}");
    let secret = totp_secret(&enrol);
    let now_code = usher::authn::totp::code_at(&secret, usher.clock.now());
    let done = code(&usher, &browser, &enrol, &now_code).await;
    assert!(done.body.contains("Your recovery codes"), "{done:?}");
    assert!(
        usher
            .store
            .totp("u_alice")
            .await
            .unwrap()
            .unwrap()
            .confirmed
    );
    notice(&sink, "An authenticator app was set up").await;

    // Now the authenticator guards itself: the email code passed a moment ago does not
    // count, so new recovery codes and removing it need the authenticator.
    let home = browser.get(&usher.url("/myaccount")).await;
    let reset = post(&usher, &browser, "/myaccount/totp/reset", &home).await;
    assert_step_up(&reset);
    // (Each start replaces the one before: the browser follows the latest.)
    let res = post(&usher, &browser, "/myaccount/recovery-codes", &home).await;
    assert_step_up(&res);
    assert!(
        usher
            .store
            .totp("u_alice")
            .await
            .unwrap()
            .unwrap()
            .confirmed
    );
    let chooser = browser.follow(&usher, res).await.unwrap();
    assert!(chooser.body.contains("Authenticator app"), "{chooser:?}");
    assert!(chooser.body.contains("Recovery code"), "{chooser:?}");
    assert!(
        !chooser.body.contains("Code by email"),
        "no falling back to the mailbox"
    );
    usher.clock.advance(30);
    let totp_page = pick(&usher, &browser, &chooser, "totp").await;
    let now_code = usher::authn::totp::code_at(&secret, usher.clock.now());
    let back = code(&usher, &browser, &totp_page, &now_code).await;
    assert!(back.body.contains("<h1>My Account</h1>"), "{back:?}");
    assert!(back.body.contains("You signed in again"), "{back:?}");

    // Signed in again with the authenticator: the same forms go through.
    let res = post(&usher, &browser, "/myaccount/recovery-codes", &back).await;
    assert_back_home(&res);
    let fresh = browser.follow(&usher, res).await.unwrap();
    assert_eq!(fresh.body.matches("<li><code>").count(), 10, "{fresh:?}");
    notice(&sink, "New recovery codes were made").await;
    let res = post(&usher, &browser, "/myaccount/totp/reset", &fresh).await;
    assert_back_home(&res);
    assert!(usher.store.totp("u_alice").await.unwrap().is_none());
    let text = notice(&sink, "Your authenticator app was removed").await;
    assert!(text.contains("alice"), "{text}");
    assert!(text.contains("To: alice@example.com"), "{text}");
}

#[tokio::test]
async fn a_sign_in_older_than_the_step_up_window_signs_in_again_before_the_password_changes() {
    let (usher, _sink) = start(WITH_EMAIL_CODES).await;
    let browser = Browser::new();
    // Tom has no second factor: a recent password is all a change needs.
    let page = my_account(&usher, &browser, "tom").await;
    usher.clock.advance(301);
    let form = [
        ("csrf", page.csrf()),
        ("current_password", "wonderland-rabbit".to_string()),
        ("new_password", "a-new-long-password-9".to_string()),
        ("new_password_confirm", "a-new-long-password-9".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = browser
        .post(&usher.url("/myaccount/password"), &pairs)
        .await;
    assert_step_up(&res);
    let again = browser.follow(&usher, res).await.unwrap();
    assert!(
        again.body.contains("name=\"password\""),
        "the password is asked again: {again:?}"
    );
    let home = browser
        .submit_password(&usher, &again, "tom", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(home.body.contains("<h1>My Account</h1>"), "{home:?}");
    assert!(home.body.contains("You signed in again"), "{home:?}");
    let mut form = form;
    form[0].1 = home.csrf();
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = browser
        .post(&usher.url("/myaccount/password"), &pairs)
        .await;
    let done = browser.follow(&usher, res).await.unwrap();
    assert!(done.body.contains("Your password was changed"), "{done:?}");
}

#[tokio::test]
async fn a_password_change_is_mailed_to_the_account_with_the_client_address() {
    let (usher, sink) = start("[[password]]").await;
    let browser = Browser::new();
    let page = my_account(&usher, &browser, "alice").await;
    let form = [
        ("csrf", page.csrf()),
        ("current_password", "wonderland-rabbit".to_string()),
        ("new_password", "a-new-long-password-9".to_string()),
        ("new_password_confirm", "a-new-long-password-9".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = browser
        .post(&usher.url("/myaccount/password"), &pairs)
        .await;
    let done = browser.follow(&usher, res).await.unwrap();
    assert!(done.body.contains("Your password was changed"), "{done:?}");
    let text = notice(&sink, "Your password was changed").await;
    assert!(text.contains("To: alice@example.com"), "{text}");
    // The time of the change, as the server's clock has it.
    let when = usher::timefmt::rfc3339(usher.clock.now());
    assert!(text.contains(&when), "{when} in {text}");
}

#[tokio::test]
async fn an_authenticator_set_up_while_signing_in_is_mailed_too() {
    // No app offers codes by email, so alice's address is no second factor: she may set
    // up an authenticator while signing in, and is told so by mail.
    let (usher, sink) = start("[[password], [totp]]").await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let enrol = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(
        enrol.body.contains("Set up your authenticator app"),
        "{enrol:?}"
    );
    let (_, next) = enrol_totp(&usher, &browser, &enrol).await;
    assert!(next.is_err(), "signed in to Thrift");
    notice(&sink, "An authenticator app was set up").await;
}
