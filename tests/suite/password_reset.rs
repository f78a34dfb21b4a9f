//! "Forgot your password?" over real HTTP and a real SMTP conversation: the code by
//! mail, the policy on the new password, the sign-in that still asks for the second
//! factor, sessions ended, a reused code refused, and the same answer for a name
//! nobody has.

use std::time::Duration;

use crate::common::*;
use crate::smtp_sink::SmtpSink;
use reqwest::StatusCode;
use usher::store::{AuditStore, SessionStore, UserStore};

fn config(smtp_port: u16) -> String {
    format!(
        r#"
issuer: "{{issuer}}"
email:
  smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: "Usher <usher@example.com>" }}
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
        - [email_otp]
"#
    )
}

async fn start() -> (Usher, SmtpSink) {
    let sink = SmtpSink::start().await;
    let usher = Usher::start(&config(sink.port())).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    (usher, sink)
}

/// The six-digit code on a line of its own in a mail.
pub fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {mail}"))
        .to_string()
}

async fn next_mail(sink: &SmtpSink) -> String {
    sink.wait_for_message(Duration::from_secs(10))
        .await
        .expect("a mail arrives")
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

/// A new sign-in at Thrift, at its password page.
async fn password_page(usher: &Usher, browser: &Browser, rp: &Rp) -> (Page, AuthStart) {
    let start = rp.start(&[]);
    let page = browser
        .follow(usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    assert!(page.body.contains("name=\"password\""), "{page:?}");
    (page, start)
}

/// From a password page: "Forgot your password?", type `login`, and arrive at the code
/// page. Returns the POST's answer (status and where it sends the browser) and the page.
async fn ask_for_code(
    usher: &Usher,
    browser: &Browser,
    page: &Page,
    login: &str,
) -> (StatusCode, String, Page) {
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
    let status = res.status;
    let location = res.headers["location"].to_str().unwrap().to_string();
    (status, location, browser.follow(usher, res).await.unwrap())
}

async fn post_reset(
    usher: &Usher,
    browser: &Browser,
    page: &Page,
    code: &str,
    password: &str,
    confirm: &str,
) -> (String, Page) {
    let res = browser
        .post(
            &usher.url_of(&page.form_action(Some("code"))),
            &[
                ("csrf", &page.csrf()),
                ("code", code),
                ("password", password),
                ("password_confirm", confirm),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    let location = res.headers["location"].to_str().unwrap().to_string();
    (location, browser.follow(usher, res).await.unwrap())
}

/// Sign in with a password and the emailed code; returns the app's redirect and the
/// start of the sign-in (its PKCE verifier redeems the code).
async fn sign_in_fully(
    usher: &Usher,
    sink: &SmtpSink,
    browser: &Browser,
    rp: &Rp,
    password: &str,
) -> (url::Url, AuthStart) {
    let (page, start) = password_page(usher, browser, rp).await;
    let code_page = browser
        .submit_password(usher, &page, "alice", password)
        .await
        .expect("the second factor is asked");
    assert!(code_page.body.contains("Check your email"), "{code_page:?}");
    let code = code_in(&next_mail(sink).await);
    let res = browser
        .post(
            &usher.url_of(&code_page.form_action(Some("code"))),
            &[("csrf", &code_page.csrf()), ("code", &code)],
        )
        .await;
    let back = browser.follow(usher, res).await.expect_err("signed in");
    (back, start)
}

#[tokio::test]
async fn a_forgotten_password_is_reset_by_a_mailed_code_and_the_second_factor_is_still_asked() {
    let (usher, sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;

    // Another browser of Alice's is signed in, and Thrift holds tokens from it:
    // the reset ends the session and revokes them.
    let elsewhere = Browser::new();
    let (back, start) = sign_in_fully(&usher, &sink, &elsewhere, &rp, "wonderland-rabbit").await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .expect("code exchange");
    let refresh_token = {
        use openidconnect::OAuth2TokenResponse;
        tokens.refresh_token().expect("a refresh token").clone()
    };
    assert_eq!(usher.store.sessions_of("u_alice").await.unwrap().len(), 1);

    let browser = Browser::new();
    let (page, start) = password_page(&usher, &browser, &rp).await;
    let (status, location, reset) = ask_for_code(&usher, &browser, &page, "alice").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.ends_with("/reset"), "{location}");
    assert!(reset.body.contains("Choose a new password"), "{reset:?}");
    let mail = next_mail(&sink).await;
    assert!(mail.contains("To: alice@example.com"), "{mail}");
    assert!(mail.contains("Subject: Your password reset code"), "{mail}");
    let code = code_in(&mail);

    // The new password must meet the policy; a refusal leaves the code usable.
    let (location, weak) = post_reset(&usher, &browser, &reset, &code, "short", "short").await;
    assert!(location.ends_with("/reset"), "{location}");
    assert!(
        weak.body.contains("Use at least 10 characters."),
        "{weak:?}"
    );
    let (location, done) = post_reset(
        &usher,
        &browser,
        &weak,
        &code,
        "a-brand-new-password",
        "a-brand-new-password",
    )
    .await;
    assert!(
        !location.contains("/reset"),
        "back at the sign-in: {location}"
    );
    assert!(done.body.contains("Your password was changed"), "{done:?}");
    let notice = next_mail(&sink).await;
    assert!(
        notice.contains("Subject: Your password was reset"),
        "{notice}"
    );
    assert!(
        notice.contains("127.0.0.1"),
        "names the client address: {notice}"
    );
    assert!(
        usher.store.sessions_of("u_alice").await.unwrap().is_empty(),
        "every session of the account ended"
    );
    let again = browser
        .follow(&usher, browser.get(rp.start(&[]).url.as_str()).await)
        .await
        .unwrap();
    assert!(again.body.contains("name=\"password\""), "not signed in");
    let elsewhere_again = elsewhere
        .follow(&usher, elsewhere.get(rp.start(&[]).url.as_str()).await)
        .await
        .expect("the other browser is asked to sign in again");
    assert!(elsewhere_again.body.contains("name=\"password\""));
    let refused = rp
        .client
        .exchange_refresh_token(&refresh_token)
        .unwrap()
        .request_async(&rp.http)
        .await;
    assert!(
        format!("{refused:?}").contains("invalid_grant"),
        "the reset revoked the account's grants: {refused:?}"
    );

    // The same code again, in the same sign-in: refused, and the password stays.
    let (location, _) = post_reset(
        &usher,
        &browser,
        &reset,
        &code,
        "an-attackers-password",
        "an-attackers-password",
    )
    .await;
    assert!(location.ends_with("/forgot"), "{location}");
    let user = usher.store.user("u_alice").await.unwrap().unwrap();
    assert!(usher::authn::password::verify(
        Some(&user),
        "a-brand-new-password"
    ));
    assert!(!usher::authn::password::verify(
        Some(&user),
        "an-attackers-password"
    ));

    // The old password no longer works; the new one leads to the second factor, not
    // into the app.
    let wrong = browser
        .submit_password(&usher, &done, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(wrong.body.contains("incorrect"), "{wrong:?}");
    let second = browser
        .submit_password(&usher, &wrong, "alice", "a-brand-new-password")
        .await
        .expect("the second factor is still asked");
    assert!(second.body.contains("Check your email"), "{second:?}");
    let code = code_in(&next_mail(&sink).await);
    let res = browser
        .post(
            &usher.url_of(&second.form_action(Some("code"))),
            &[("csrf", &second.csrf()), ("code", &code)],
        )
        .await;
    let back = browser.follow(&usher, res).await.expect_err("signed in");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["sub"], "u_alice");
    let amr = claims["amr"].to_string();
    assert!(amr.contains("pwd") && amr.contains("otp"), "{amr}");

    let kinds: Vec<String> = usher
        .store
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in [
        "password_reset.requested",
        "password_reset.completed",
        "password_reset.refused",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

/// Replace what differs between any two sign-ins (flow ids, CSRF tokens) so two pages
/// can be compared.
fn normalised(page: &Page) -> String {
    let body = html_unescape(&page.body);
    let flow = page.form_action(None);
    let id = flow
        .trim_start_matches("/login/")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    body.replace(&id, "FLOW").replace(&page.csrf(), "CSRF")
}

#[tokio::test]
async fn a_name_without_an_account_is_answered_exactly_like_an_account() {
    let (usher, sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;

    let stranger = Browser::new();
    let (page, _) = password_page(&usher, &stranger, &rp).await;
    let (status, location, nobody) =
        ask_for_code(&usher, &stranger, &page, "nobody@example.com").await;
    assert!(
        sink.wait_for_message(Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing is mailed for a name nobody has"
    );

    let owner = Browser::new();
    let (page, _) = password_page(&usher, &owner, &rp).await;
    let (status_a, location_a, alice) = ask_for_code(&usher, &owner, &page, "alice").await;
    let code = code_in(&next_mail(&sink).await);

    assert_eq!(status, status_a);
    assert_eq!(
        location.rsplit('/').next(),
        location_a.rsplit('/').next(),
        "{location} / {location_a}"
    );
    assert_eq!(nobody.status, alice.status);
    assert_eq!(normalised(&nobody), normalised(&alice));

    // A code typed for the name nobody has is refused in the words a wrong code gets.
    let (_, refused_nobody) = post_reset(
        &usher,
        &stranger,
        &nobody,
        &code,
        "a-brand-new-password",
        "a-brand-new-password",
    )
    .await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (_, refused_alice) = post_reset(
        &usher,
        &owner,
        &alice,
        wrong,
        "a-brand-new-password",
        "a-brand-new-password",
    )
    .await;
    assert_eq!(normalised(&refused_nobody), normalised(&refused_alice));
    assert!(refused_alice.body.contains("That code is not right"));
    let user = usher.store.user("u_alice").await.unwrap().unwrap();
    assert!(usher::authn::password::verify(
        Some(&user),
        "wonderland-rabbit"
    ));
}

#[tokio::test]
async fn reset_codes_are_limited_per_account_whoever_asks() {
    let (usher, sink) = start().await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let mut pages = Vec::new();
    for _ in 0..4 {
        let browser = Browser::new();
        let (page, _) = password_page(&usher, &browser, &rp).await;
        let (status, _, reset) = ask_for_code(&usher, &browser, &page, "alice@example.com").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        pages.push(normalised(&reset));
    }
    for _ in 0..3 {
        next_mail(&sink).await;
    }
    assert!(
        sink.wait_for_message(Duration::from_millis(1500))
            .await
            .is_none(),
        "the fourth code in ten minutes is not sent"
    );
    assert!(
        pages.iter().all(|p| *p == pages[0]),
        "and the page says nothing about it"
    );
}
