//! Second factors over real HTTP: TOTP enrolment during sign-in and later use, single
//! use of codes (also under parallel requests), lockout shared across browsers, email
//! OTP through a real SMTP conversation, recovery codes, and the SSO/step-up behaviour
//! of two-step apps.

use std::time::Duration;

use crate::common::*;
use crate::smtp_sink::SmtpSink;
use reqwest::StatusCode;
use usher::store::{CredentialStore, UserStore};

fn config(smtp_port: u16) -> String {
    format!(
        r#"
issuer: "{{issuer}}"
email:
  smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: "Usher <usher@example.com>" }}
security:
  max_otp_attempts: 3
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
        - [totp, email_otp, recovery_code]
  shop:
    name: Shop
    client_id: shop
    client_secret: shop-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
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

/// Usher with alice, whose address makes codes by email her second factor, and tom,
/// who has no address and so no second factor until he sets up an authenticator.
async fn start() -> (Usher, SmtpSink) {
    let sink = SmtpSink::start().await;
    let usher = Usher::start(&config(sink.port())).await;
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

/// Post a code to the page's form and follow.
async fn submit_code(
    usher: &Usher,
    browser: &Browser,
    page: &Page,
    code: &str,
) -> Result<Page, url::Url> {
    let action = usher.url_of(&page.form_action(Some("code")));
    let res = browser
        .post(&action, &[("csrf", &page.csrf()), ("code", code)])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    browser.follow(usher, res).await
}

/// Tom's password, then arrive at step 2 with `option` picked.
async fn to_step_two(usher: &Usher, browser: &Browser, rp: &Rp, option: &str) -> (Page, AuthStart) {
    to_step_two_as(usher, browser, rp, "tom", option).await
}

/// `user`'s password, then arrive at step 2 with `option` picked.
async fn to_step_two_as(
    usher: &Usher,
    browser: &Browser,
    rp: &Rp,
    user: &str,
    option: &str,
) -> (Page, AuthStart) {
    let start = rp.start(&[]);
    let page = browser
        .follow(usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let chooser = browser
        .submit_password(usher, &page, user, "wonderland-rabbit")
        .await
        .unwrap();
    assert!(chooser.body.contains("Step 2 of 2"), "{chooser:?}");
    (pick(usher, browser, &chooser, option).await, start)
}

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code() {
    let (usher, _sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let (page, start) = to_step_two(&usher, &browser, &rp, "totp").await;
    assert!(page.body.contains("Set up your authenticator app"));
    assert!(
        html_unescape(&page.body).contains("src=\"data:image/png;base64,"),
        "a QR code"
    );
    let secret = totp_secret(&page);
    assert!(secret.len() >= 20, "at least 160 bits");
    // A reload shows the same key (the pending secret is kept).
    let again = browser.get(&page.url).await;
    assert_eq!(totp_secret(&again), secret);
    // At rest the secret is sealed, not stored in the clear.
    let stored = usher.store.totp("u_tom").await.unwrap().unwrap();
    assert!(!stored
        .sealed_secret
        .windows(secret.len())
        .any(|w| w == secret.as_slice()));

    let wrong = submit_code(&usher, &browser, &page, "000000")
        .await
        .unwrap();
    assert!(wrong.body.contains("That code is not right"));
    let now = usher.clock.now();
    let codes = submit_code(
        &usher,
        &browser,
        &wrong,
        &usher::authn::totp::code_at(&secret, now),
    )
    .await
    .unwrap();
    assert!(codes.body.contains("Save your recovery codes"));
    let recovery: Vec<String> = html_unescape(&codes.body)
        .split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    let res = browser
        .post(
            &usher.url_of(&codes.form_action(None)),
            &[("csrf", &codes.csrf())],
        )
        .await;
    let back = browser.follow(&usher, res).await.expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));

    // Second sign-in in a fresh browser: a code, no enrolment, and the same code twice
    // is refused (its time step was used).
    let browser2 = Browser::new();
    let (page, start) = to_step_two(&usher, &browser2, &rp, "totp").await;
    assert!(page.body.contains("Enter your authenticator code"));
    let used = usher::authn::totp::code_at(&secret, now);
    let refused = submit_code(&usher, &browser2, &page, &used).await.unwrap();
    assert!(
        refused.body.contains("That code is not right"),
        "a used time step is refused"
    );
    let old = usher::authn::totp::code_at(&secret, now - 60);
    let refused = submit_code(&usher, &browser2, &refused, &old)
        .await
        .unwrap();
    assert!(
        refused.body.contains("That code is not right"),
        "two steps ago is refused"
    );
    // The next time step: a fresh code.
    usher.clock.advance(30);
    let next = usher::authn::totp::code_at(&secret, usher.clock.now());
    let back = submit_code(&usher, &browser2, &refused, &next)
        .await
        .expect_err("signed in");
    assert!(rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .is_ok());

    // A recovery code works once.
    let browser3 = Browser::new();
    let (page, _) = to_step_two(&usher, &browser3, &rp, "recovery_code").await;
    let back = submit_code(&usher, &browser3, &page, &recovery[0].to_uppercase())
        .await
        .expect_err("signed in");
    assert!(query(&back).contains_key("code"));
    let browser4 = Browser::new();
    let (page, _) = to_step_two(&usher, &browser4, &rp, "recovery_code").await;
    let refused = submit_code(&usher, &browser4, &page, &recovery[0])
        .await
        .unwrap();
    assert!(refused.body.contains("That code is not right"));
}

/// Enrol tom's TOTP directly and return the secret.
async fn enrol(usher: &Usher, rp: &Rp) -> Vec<u8> {
    let browser = Browser::new();
    let (page, _) = to_step_two(usher, &browser, rp, "totp").await;
    let secret = totp_secret(&page);
    let codes = submit_code(
        usher,
        &browser,
        &page,
        &usher::authn::totp::code_at(&secret, usher.clock.now()),
    )
    .await
    .unwrap();
    assert!(codes.body.contains("recovery codes"));
    // Let the enrolment's time step pass so the next code is fresh.
    usher.clock.advance(30);
    secret
}

/// `n` browsers, each signed in with a password and at the TOTP page of step 2.
async fn browsers_at_totp(usher: &Usher, rp: &Rp, n: usize) -> Vec<(Browser, Page)> {
    let mut pages = Vec::new();
    for _ in 0..n {
        let browser = Browser::new();
        let (page, _) = to_step_two(usher, &browser, rp, "totp").await;
        pages.push((browser, page));
    }
    pages
}

#[tokio::test]
async fn parallel_requests_with_one_code_give_one_success() {
    let (usher, _sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let secret = enrol(&usher, &rp).await;
    let pages = browsers_at_totp(&usher, &rp, 4).await;
    let code = usher::authn::totp::code_at(&secret, usher.clock.now());
    let mut tasks = Vec::new();
    for (browser, page) in pages {
        let action = usher.url_of(&page.form_action(Some("code")));
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            let res = browser
                .post(&action, &[("csrf", &page.csrf()), ("code", &code)])
                .await;
            let loc = res.headers["location"].to_str().unwrap().to_string();
            let issuer = action.split("/login/").next().unwrap().to_string();
            let next = browser.get(&format!("{issuer}{loc}")).await;
            next.status == StatusCode::SEE_OTHER
                && next.headers["location"].to_str().unwrap().contains("code=")
        }));
    }
    let mut successes = 0;
    for t in tasks {
        if t.await.unwrap() {
            successes += 1;
        }
    }
    assert_eq!(successes, 1, "one code, one sign-in");
}

#[tokio::test]
async fn wrong_codes_lock_the_factor_across_browsers() {
    let (usher, _sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let secret = enrol(&usher, &rp).await;
    let b1 = Browser::new();
    let (mut page, _) = to_step_two(&usher, &b1, &rp, "totp").await;
    for _ in 0..2 {
        page = submit_code(&usher, &b1, &page, "111111").await.unwrap();
        assert!(page.body.contains("That code is not right"));
    }
    let b2 = Browser::new();
    let (page2, _) = to_step_two(&usher, &b2, &rp, "totp").await;
    let locked = submit_code(&usher, &b2, &page2, "222222").await.unwrap();
    assert!(
        locked.body.contains("Too many wrong codes"),
        "the third failure, from another browser, locks"
    );
    let good = usher::authn::totp::code_at(&secret, usher.clock.now());
    let still = submit_code(&usher, &b1, &page, &good).await.unwrap();
    assert!(
        still.body.contains("Too many wrong codes"),
        "even the right code waits out the lock"
    );
}

#[tokio::test]
async fn parallel_guesses_get_no_more_tries_than_the_limit() {
    let (usher, _sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let secret = enrol(&usher, &rp).await;
    let pages = browsers_at_totp(&usher, &rp, 8).await;
    let mut tasks = Vec::new();
    for (i, (browser, page)) in pages.into_iter().enumerate() {
        let action = usher.url_of(&page.form_action(Some("code")));
        let issuer = usher.issuer.clone();
        tasks.push(tokio::spawn(async move {
            let guess = format!("{:06}", 100_000 + i);
            let res = browser
                .post(&action, &[("csrf", &page.csrf()), ("code", &guess)])
                .await;
            let loc = res.headers["location"].to_str().unwrap().to_string();
            browser.get(&format!("{issuer}{loc}")).await.body
        }));
    }
    let (mut wrong, mut locked) = (0, 0);
    for t in tasks {
        let body = t.await.unwrap();
        if body.contains("That code is not right") {
            wrong += 1;
        } else if body.contains("Too many wrong codes") {
            locked += 1;
        }
    }
    // The limit is 3: two guesses are told "wrong", the third locks, the rest find it
    // locked, however the eight requests interleave.
    assert_eq!((wrong, locked), (2, 6));
    let b = Browser::new();
    let (page, _) = to_step_two(&usher, &b, &rp, "totp").await;
    let good = usher::authn::totp::code_at(&secret, usher.clock.now());
    let after = submit_code(&usher, &b, &page, &good).await.unwrap();
    assert!(after.body.contains("Too many wrong codes"));
}

fn code_in_mail(mail: &str) -> String {
    let words: Vec<&str> = mail.split(|c: char| !c.is_ascii_digit()).collect();
    words
        .into_iter()
        .find(|w| w.len() == 6)
        .expect("a 6-digit code in the mail")
        .to_string()
}

#[tokio::test]
async fn email_otp_over_smtp_with_expiry_and_supersession() {
    let (usher, sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let (page, start) = to_step_two_as(&usher, &browser, &rp, "alice", "email_otp").await;
    assert!(page.body.contains("Check your email"));
    let mail = sink
        .wait_for_message(Duration::from_secs(10))
        .await
        .expect("a mail over SMTP");
    assert!(mail.contains("alice@example.com"));
    let first = code_in_mail(&mail);

    // Ask for a new one: the first is superseded.
    let res = browser
        .post(
            &usher.url_of(&page.form_action(Some("code"))),
            &[("csrf", &page.csrf()), ("resend", "1")],
        )
        .await;
    let page = browser.follow(&usher, res).await.unwrap();
    let second = code_in_mail(
        &sink
            .wait_for_message(Duration::from_secs(10))
            .await
            .expect("a second mail"),
    );
    if first != second {
        let refused = submit_code(&usher, &browser, &page, &first).await.unwrap();
        assert!(
            refused.body.contains("expired or was replaced") || refused.body.contains("not right"),
            "{refused:?}"
        );
    }

    // Expire the current code in the store: refused as expired.
    let mut record = usher
        .store
        .email_code("u_alice")
        .await
        .unwrap()
        .unwrap()
        .value;
    let saved = record.clone();
    record.expires_at = usher.clock.now() - 1;
    usher
        .store
        .put_email_code("u_alice", &record)
        .await
        .unwrap();
    let refused = submit_code(&usher, &browser, &page, &second).await.unwrap();
    assert!(
        refused.body.contains("expired or was replaced"),
        "{refused:?}"
    );

    // Restore it and sign in with it.
    usher.store.put_email_code("u_alice", &saved).await.unwrap();
    let back = submit_code(&usher, &browser, &refused, &second)
        .await
        .expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
}

#[tokio::test]
async fn sso_skips_satisfied_steps_for_the_next_app() {
    let (usher, _sink) = start().await;
    let thrift = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let secret = enrol(&usher, &thrift).await;
    let browser = Browser::new();
    // Sign in to Shop (password only).
    let shop = Rp::discover(&usher, "shop", Some("shop-secret")).await;
    password_login(
        &usher,
        &browser,
        &shop.start(&[]),
        "tom",
        "wonderland-rabbit",
    )
    .await;
    // Shop again: silent.
    let silent = browser
        .follow(&usher, browser.get(shop.start(&[]).url.as_str()).await)
        .await;
    assert!(query(&silent.expect_err("no page at all")).contains_key("code"));
    // Bank needs step 2 too: only the TOTP page is shown, the password is not asked.
    let bank = Rp::discover(&usher, "bank", Some("bank-secret")).await;
    let start = bank.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    assert!(
        page.body.contains("Enter your authenticator code"),
        "{page:?}"
    );
    assert!(!page.body.contains("name=\"password\""));
    let code = usher::authn::totp::code_at(&secret, usher.clock.now());
    let back = submit_code(&usher, &browser, &page, &code)
        .await
        .expect_err("signed in");
    let claims = bank.claims(&back, start).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    // And after that, Bank is silent too.
    let silent = browser
        .follow(&usher, browser.get(bank.start(&[]).url.as_str()).await)
        .await;
    assert!(query(&silent.expect_err("silent")).contains_key("code"));
}

#[tokio::test]
async fn a_reset_totp_is_enrolled_again() {
    let (usher, _sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let first = enrol(&usher, &rp).await;
    let store: &dyn usher::store::Store = usher.store.as_ref();
    usher::authn::reset_totp(store, "u_tom").await.unwrap();
    assert!(usher.store.totp("u_tom").await.unwrap().is_none());
    assert_eq!(usher.store.recovery_codes_left("u_tom").await.unwrap(), 0);
    let browser = Browser::new();
    let (page, _) = to_step_two(&usher, &browser, &rp, "totp").await;
    assert!(
        page.body.contains("Set up your authenticator app"),
        "enrolment again after a reset"
    );
    assert_ne!(totp_secret(&page), first, "a new key");
}

/// Ask for a new email code from the code page.
async fn resend(usher: &Usher, browser: &Browser, page: &Page) -> (StatusCode, Page) {
    let res = browser
        .post(
            &usher.url_of(&page.form_action(Some("code"))),
            &[("csrf", &page.csrf()), ("resend", "1")],
        )
        .await;
    (res.status, res)
}

/// The per-address email throttle stops a third code from one address within its
/// window, before any code is issued (the account's own resend record does not move),
/// whichever account it is for; once the window has passed, codes flow again.
#[tokio::test]
async fn one_address_gets_no_more_email_codes_than_the_throttle_allows() {
    let sink = SmtpSink::start().await;
    let config = config(sink.port()).replace(
        "security:\n  max_otp_attempts: 3\n",
        "security:\n  max_otp_attempts: 3\n  throttle:\n    email: { max: 2, seconds: 120 }\n",
    );
    let usher = Usher::start(&config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let (page, _) = to_step_two_as(&usher, &browser, &rp, "alice", "email_otp").await;
    assert!(page.body.contains("Check your email"), "{page:?}");
    sink.wait_for_message(Duration::from_secs(10))
        .await
        .expect("the first code");
    let (status, res) = resend(&usher, &browser, &page).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = browser.follow(&usher, res).await.unwrap();
    sink.wait_for_message(Duration::from_secs(10))
        .await
        .expect("the second code");
    let sent_before = usher
        .store
        .email_code("u_alice")
        .await
        .unwrap()
        .unwrap()
        .value
        .sent_at
        .len();

    // The third from this address: a page that says to wait, and nothing issued.
    let (status, refused) = resend(&usher, &browser, &page).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sink.wait_for_message(Duration::from_millis(1500))
            .await
            .is_none(),
        "no third mail"
    );
    let sent_after = usher
        .store
        .email_code("u_alice")
        .await
        .unwrap()
        .unwrap()
        .value
        .sent_at
        .len();
    assert_eq!(sent_after, sent_before, "no code was issued");

    // When the answer said to come back, the same page sends again.
    usher.clock.advance(retry_after);
    let (status, _) = resend(&usher, &browser, &page).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    sink.wait_for_message(Duration::from_secs(10))
        .await
        .expect("a code once the window has passed");
}

#[tokio::test]
async fn an_email_code_account_cannot_enrol_an_authenticator_with_its_password_alone() {
    let (usher, _sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    // Alice's second factor is her email: with only her password, picking the
    // authenticator app shows no key to scan.
    let (page, _) = to_step_two_as(&usher, &browser, &rp, "alice", "totp").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    assert!(
        page.body.contains("Verify with your second factor first"),
        "{page:?}"
    );
    assert!(!page.body.contains("totp-secret"), "no key is shown");
    assert!(usher.store.totp("u_alice").await.unwrap().is_none());
    // The same at Bank, which offers no codes by email: the account still has them.
    let bank = Rp::discover(&usher, "bank", Some("bank-secret")).await;
    let b2 = Browser::new();
    let start = bank.start(&[]);
    let page = b2
        .follow(&usher, b2.get(start.url.as_str()).await)
        .await
        .unwrap();
    let refused = b2
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert!(
        html_unescape(&refused.body).contains("/myaccount"),
        "{refused:?}"
    );
    assert!(usher.store.totp("u_alice").await.unwrap().is_none());
    let tom_browser = Browser::new();
    let (tom_page, _) = to_step_two(&usher, &tom_browser, &rp, "totp").await;
    assert!(tom_page.body.contains("Set up your authenticator app"));
    // Tom, with no second factor at all, may still set one up while signing in.
    let (_, next) = enrol_totp(&usher, &tom_browser, &tom_page).await;
    assert!(next.is_err(), "signed in to Thrift");
    assert!(usher.store.totp("u_tom").await.unwrap().unwrap().confirmed);
}
