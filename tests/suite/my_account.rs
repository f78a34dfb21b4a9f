//! My Account over real HTTP: signing in through Usher's own flow (SSO honoured), a
//! provisioned Google user enrolling TOTP, a pass-through GitHub user refused with the
//! reason, the last way in kept, profile and password changes, sessions, CSRF, and an
//! audit event for each.

use crate::accounts_world::*;
use crate::common::*;
use reqwest::StatusCode;
use usher::store::{AuditStore, CredentialStore, IdentityStore, SessionStore, UserStore};

#[tokio::test]
async fn a_provisioned_google_user_enrols_totp_in_my_account() {
    let w = world().await;
    let browser = Browser::new();
    let page = my_account_via(&w, &browser, "google", "g-1001").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains("<h1>My Account</h1>"), "{page:?}");
    assert!(page.body.contains("ada@example.com"));
    let uid = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .expect("provisioned");
    assert!(
        page.body.contains("Google"),
        "the linked connection is listed"
    );
    assert!(page
        .body
        .contains("Authenticator app: <strong>off</strong>"));

    // Enrol: the QR page, then one code from the app.
    let enrol = browser.get(&w.usher.url("/myaccount/totp")).await;
    assert_eq!(enrol.status, StatusCode::OK, "{enrol:?}");
    let secret = shown_secret(&enrol);
    let again = shown_secret(&browser.get(&w.usher.url("/myaccount/totp")).await);
    assert_eq!(secret, again, "a reload shows the same key");
    let wrong = submit(&w, &browser, &enrol, "code", &[("code", "000000")]).await;
    assert!(wrong.body.contains("That code is not right"), "{wrong:?}");
    assert!(!w.usher.store.totp(&uid).await.unwrap().unwrap().confirmed);
    let code = usher::authn::totp::code_at(&secret, w.usher.clock.now());
    let done = submit(&w, &browser, &enrol, "code", &[("code", &code)]).await;
    assert!(done.body.contains("Your recovery codes"), "{done:?}");
    assert!(done.body.contains("Authenticator app: <strong>on</strong>"));
    assert!(w.usher.store.totp(&uid).await.unwrap().unwrap().confirmed);
    assert_eq!(w.usher.store.recovery_codes_left(&uid).await.unwrap(), 10);
    // The codes are shown once.
    let later = browser.get(&w.usher.url("/myaccount")).await;
    assert!(!later.body.contains("Your recovery codes"));

    // New recovery codes replace the old ones, shown once.
    let codes = |p: &Page| -> Vec<String> {
        p.body
            .split("<li><code>")
            .skip(1)
            .map(|c| c[..c.find('<').unwrap()].to_string())
            .collect()
    };
    let first = codes(&done);
    let res = browser
        .post(
            &w.usher.url("/myaccount/recovery-codes"),
            &[("csrf", &later.csrf())],
        )
        .await;
    let fresh = follow_all(&browser, res).await.unwrap();
    let second = codes(&fresh);
    assert_eq!(second.len(), 10, "{fresh:?}");
    assert!(second.iter().all(|c| !first.contains(c)));
    let reset_form = browser.get(&w.usher.url("/myaccount")).await;
    let res = browser
        .post(
            &w.usher.url("/myaccount/totp/reset"),
            &[("csrf", &reset_form.csrf())],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(w.usher.store.totp(&uid).await.unwrap().is_none());

    let kinds = kinds_for(&w, &uid).await;
    for k in [
        "user.provisioned",
        "sign_in",
        "account.totp_enrolled",
        "account.recovery_codes_regenerated",
        "account.totp_reset",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let sign_in = w
        .usher
        .store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "sign_in")
        .unwrap();
    assert_eq!(
        sign_in.app.as_deref(),
        Some("usher-myaccount"),
        "signed in through the built-in app"
    );
}

#[tokio::test]
async fn an_sso_session_goes_straight_in() {
    let w = world().await;
    let browser = Browser::new();
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let start = rp.start(&[]);
    let chooser = browser
        .follow(&w.usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let res = browser
        .post(
            &w.usher.url_of(&chooser.form_action(Some("option"))),
            &[("csrf", &chooser.csrf()), ("option", "google")],
        )
        .await;
    let consent = follow_all(&browser, res).await.unwrap();
    let res = decide(&browser, &consent, "g-1001", "authorize").await;
    let back = follow_all(&browser, res)
        .await
        .expect_err("signed in to Thrift");
    assert!(query(&back).contains_key("code"));
    // No page between /myaccount and the account: the SSO session satisfies step 1.
    let page = follow_all(&browser, browser.get(&w.usher.url("/myaccount")).await)
        .await
        .unwrap();
    assert!(page.body.contains("<h1>My Account</h1>"), "{page:?}");
    assert!(
        page.body.contains("Thrift"),
        "the session lists the apps it signed in to"
    );
}

#[tokio::test]
async fn a_pass_through_github_user_is_refused_with_the_reason() {
    let w = world().await;
    let browser = Browser::new();
    let page = my_account_via(&w, &browser, "github", "583231").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    assert!(
        page.body.contains("There is no account to manage"),
        "{page:?}"
    );
    let text = html_unescape(&page.body);
    assert!(text.contains("You signed in with GitHub"), "{text}");
    assert!(
        text.contains("does not keep an account for GitHub sign-ins"),
        "{text}"
    );
    // And no way in afterwards either: the page is refused again, not shown.
    let again = follow_all(&browser, browser.get(&w.usher.url("/myaccount")).await)
        .await
        .unwrap();
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert_eq!(
        w.usher.store.user_count().await.unwrap(),
        0,
        "nothing was provisioned"
    );
    let kinds = kinds_for(&w, "github|583231").await;
    assert!(kinds.iter().any(|k| k == "account.refused"), "{kinds:?}");
}

#[tokio::test]
async fn the_only_way_in_cannot_be_unlinked() {
    let w = world().await;
    let browser = Browser::new();
    let page = my_account_via(&w, &browser, "google", "g-1001").await;
    let uid = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !page.body.contains("identities/unlink"),
        "no unlink button is offered"
    );
    assert!(page.body.contains("only way you can sign in"));
    // Forcing the form anyway is refused, with the reason.
    let res = browser
        .post(
            &w.usher.url("/myaccount/identities/unlink"),
            &[
                ("csrf", &page.csrf()),
                ("connection", "google"),
                ("subject", "g-1001"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let after = follow_all(&browser, res).await.unwrap();
    assert!(after.body.contains("cannot be unlinked"), "{after:?}");
    assert_eq!(
        w.usher.store.identity("google", "g-1001").await.unwrap(),
        Some(uid.clone())
    );
    assert!(!kinds_for(&w, &uid)
        .await
        .iter()
        .any(|k| k == "account.identity_unlinked"));
}

#[tokio::test]
async fn a_password_user_unlinks_changes_profile_and_password_and_ends_a_session() {
    let w = world().await;
    w.usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    w.usher
        .store
        .link_identity("google", "g-77", "u_alice")
        .await
        .unwrap();
    // A second browser signed in too, to be signed out from the first.
    let other = Browser::new();
    let page = my_account_password(&w, &other, "alice", "wonderland-rabbit").await;
    assert!(page.body.contains("<h1>My Account</h1>"), "{page:?}");
    let browser = Browser::new();
    let page = my_account_password(&w, &browser, "alice", "wonderland-rabbit").await;
    assert_eq!(w.usher.store.sessions_of("u_alice").await.unwrap().len(), 2);
    assert!(page.body.contains("(this browser)"));

    // Unlinking is allowed: the password remains a way in.
    let page = submit(
        &w,
        &browser,
        &page,
        "subject",
        &[("connection", "google"), ("subject", "g-77")],
    )
    .await;
    assert!(
        page.body.contains("The connection was unlinked"),
        "{page:?}"
    );
    assert!(w
        .usher
        .store
        .identity("google", "g-77")
        .await
        .unwrap()
        .is_none());

    // Profile: editable fields change, the picture (not editable here) does not.
    let page = submit(
        &w,
        &browser,
        &page,
        "given_name",
        &[
            ("name", "Alice Liddell"),
            ("given_name", "Alice"),
            ("family_name", "Liddell"),
            ("picture", "https://evil.example/p.png"),
        ],
    )
    .await;
    assert!(page.body.contains("Your profile was saved"), "{page:?}");
    let user = w.usher.store.user("u_alice").await.unwrap().unwrap();
    assert_eq!(user.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(user.picture, None);

    // Password: the old one is required, the policy applies.
    let page = submit(
        &w,
        &browser,
        &page,
        "current_password",
        &[
            ("current_password", "wrong-one-here"),
            ("new_password", "through-the-glass"),
            ("new_password_confirm", "through-the-glass"),
        ],
    )
    .await;
    assert!(
        page.body.contains("current password is not right"),
        "{page:?}"
    );
    let page = submit(
        &w,
        &browser,
        &page,
        "current_password",
        &[
            ("current_password", "wonderland-rabbit"),
            ("new_password", "short"),
            ("new_password_confirm", "short"),
        ],
    )
    .await;
    assert!(page.body.contains("at least"), "{page:?}");
    let page = submit(
        &w,
        &browser,
        &page,
        "current_password",
        &[
            ("current_password", "wonderland-rabbit"),
            ("new_password", "through-the-glass"),
            ("new_password_confirm", "through-the-glass"),
        ],
    )
    .await;
    assert!(
        page.body
            .contains("Your password was changed, and you were signed out of 1 other session"),
        "{page:?}"
    );
    let stored = w.usher.store.user("u_alice").await.unwrap();
    assert!(usher::authn::password::verify(
        stored.as_ref(),
        "through-the-glass"
    ));
    // The other browser's session ended with the change: it must sign in again.
    let again = follow_all(&other, other.get(&w.usher.url("/myaccount")).await)
        .await
        .unwrap();
    assert!(
        again
            .body
            .contains("Sign in to <strong>My Account</strong>"),
        "{again:?}"
    );

    // Sign in elsewhere again, then sign that session out from here.
    my_account_password(&w, &other, "alice", "through-the-glass").await;
    let page = browser.get(&w.usher.url("/myaccount")).await;
    let handle = page
        .body
        .split("name=\"session\" value=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .find(|h| {
            let at = page.body.find(h.as_str()).unwrap();
            !page.body[..at]
                .rsplit("<li>")
                .next()
                .unwrap()
                .contains("(this browser)")
        })
        .expect("the other session is listed");
    let res = browser
        .post(
            &w.usher.url("/myaccount/sessions/end"),
            &[("csrf", &page.csrf()), ("session", &handle)],
        )
        .await;
    let page = follow_all(&browser, res).await.unwrap();
    assert!(
        page.body.contains("That session was signed out"),
        "{page:?}"
    );
    assert_eq!(w.usher.store.sessions_of("u_alice").await.unwrap().len(), 1);

    // Finally sign out here: My Account ends with the session.
    let res = browser
        .post(&w.usher.url("/myaccount/logout"), &[("csrf", &page.csrf())])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(w
        .usher
        .store
        .sessions_of("u_alice")
        .await
        .unwrap()
        .is_empty());
    let out = follow_all(&browser, browser.get(&w.usher.url("/myaccount")).await)
        .await
        .unwrap();
    assert!(out.body.contains("Sign in to <strong>My Account</strong>"));

    let kinds = kinds_for(&w, "u_alice").await;
    for k in [
        "account.identity_unlinked",
        "account.profile_updated",
        "account.password_changed",
        "account.session_ended",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_a_signed_in_account() {
    let w = world().await;
    w.usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();
    my_account_password(&w, &browser, "alice", "wonderland-rabbit").await;
    let res = browser
        .post(
            &w.usher.url("/myaccount/profile"),
            &[("csrf", "forged"), ("name", "Mallory")],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        w.usher
            .store
            .user("u_alice")
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("alice Example")
    );
    // Without My Account's cookie, a form leads back to sign-in and changes nothing.
    let stranger = Browser::new();
    let page = follow_all(&stranger, stranger.get(&w.usher.url("/myaccount")).await)
        .await
        .unwrap();
    let res = stranger
        .post(
            &w.usher.url("/myaccount/profile"),
            &[("csrf", &page.csrf()), ("name", "Mallory")],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers["location"], "/myaccount");
    assert_ne!(
        w.usher
            .store
            .user("u_alice")
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Mallory")
    );
}

#[tokio::test]
async fn a_disabled_account_loses_my_account() {
    let w = world().await;
    w.usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let browser = Browser::new();
    my_account_password(&w, &browser, "alice", "wonderland-rabbit").await;
    let mut user = w.usher.store.user("u_alice").await.unwrap().unwrap();
    user.disabled = true;
    w.usher.store.update_user(&user).await.unwrap();
    let page = follow_all(&browser, browser.get(&w.usher.url("/myaccount")).await)
        .await
        .unwrap();
    assert!(!page.body.contains("<h1>My Account</h1>"), "{page:?}");
}

/// My Account's own steps can ask for a second factor, steered by a script: a
/// provisioned user enrols TOTP while signing in (`mfa.enrolled`), a pass-through user
/// skips the step (`mfa.skipped`) and is then told there is no account.
#[tokio::test]
async fn my_account_steps_enrol_or_skip_mfa_and_the_trail_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies/mfa-only-with-account.rhai"),
        dir.path().join("mfa.rhai"),
    )
    .unwrap();
    let w = world_with(
        dir,
        "my_account:\n  steps:\n    - [google, github]\n    - [totp]\n  script: mfa.rhai\n",
    )
    .await;
    let browser = Browser::new();
    let enrol = my_account_via(&w, &browser, "google", "g-1001").await;
    assert!(
        enrol.body.contains("Set up your authenticator app"),
        "{enrol:?}"
    );
    let secret = shown_secret(&enrol);
    let code = usher::authn::totp::code_at(&secret, w.usher.clock.now());
    let res = browser
        .post(
            &w.usher.url_of(&enrol.form_action(Some("code"))),
            &[("csrf", &enrol.csrf()), ("code", &code)],
        )
        .await;
    let codes = follow_all(&browser, res).await.unwrap();
    let res = browser
        .post(
            &w.usher.url_of(&codes.form_action(None)),
            &[("csrf", &codes.csrf())],
        )
        .await;
    let page = follow_all(&browser, res).await.unwrap();
    assert!(
        page.body.contains("Authenticator app: <strong>on</strong>"),
        "{page:?}"
    );
    let uid = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .unwrap();
    assert!(kinds_for(&w, &uid)
        .await
        .iter()
        .any(|k| k == "mfa.enrolled"));

    let other = Browser::new();
    let refused = my_account_via(&w, &other, "github", "583231").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    let skipped = w
        .usher
        .store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "mfa.skipped")
        .expect("the skip is recorded");
    assert_eq!(skipped.sub.as_deref(), Some("github|583231"));
    assert_eq!(skipped.outcome, "skipped");
    assert_eq!(skipped.app.as_deref(), Some("usher-myaccount"));
    assert!(
        skipped.detail[0].contains("step 2 (totp) was not asked"),
        "{:?}",
        skipped.detail
    );
}

/// A new email address is mailed a code and replaces the old one only when the code
/// comes back; until then the old address stays. The code is bound to the address it
/// was sent to, and another account's verified address cannot be taken.
#[tokio::test]
async fn a_new_email_address_replaces_the_old_one_only_once_its_code_comes_back() {
    let w = world().await;
    w.usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    w.usher
        .add_user("bob", "bob@example.com", "bob-the-builder")
        .await;
    let browser = Browser::new();
    let page = my_account_password(&w, &browser, "alice", "wonderland-rabbit").await;

    let page = submit(
        &w,
        &browser,
        &page,
        "email",
        &[("email", "bob@example.com")],
    )
    .await;
    assert!(page.body.contains("belongs to another account"), "{page:?}");
    assert_eq!(outbox_count(&w.usher), 0);

    let page = submit(
        &w,
        &browser,
        &page,
        "email",
        &[("email", "alice.new@example.com")],
    )
    .await;
    assert!(
        page.body
            .contains("We sent a code to alice.new@example.com"),
        "{page:?}"
    );
    let code = outbox_code(&w.usher, 0).await;
    let alice = || async { w.usher.store.user("u_alice").await.unwrap().unwrap() };
    assert_eq!(alice().await.email.as_deref(), Some("alice@example.com"));

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let page = submit(
        &w,
        &browser,
        &page,
        "code",
        &[("email", "alice.new@example.com"), ("code", wrong)],
    )
    .await;
    assert!(page.body.contains("That code is not right"), "{page:?}");
    // The right code for another address than the one it was sent to.
    let page = submit(
        &w,
        &browser,
        &page,
        "code",
        &[("email", "mallory@example.com"), ("code", &code)],
    )
    .await;
    assert!(page.body.contains("That code is not right"), "{page:?}");
    assert_eq!(alice().await.email.as_deref(), Some("alice@example.com"));

    let page = submit(
        &w,
        &browser,
        &page,
        "code",
        &[("email", "alice.new@example.com"), ("code", &code)],
    )
    .await;
    assert!(
        page.body
            .contains("Your email address is now alice.new@example.com"),
        "{page:?}"
    );
    let changed = alice().await;
    assert_eq!(changed.email.as_deref(), Some("alice.new@example.com"));
    assert!(changed.email_verified);
    assert_eq!(changed.username, "alice");
    assert!(kinds_for(&w, "u_alice")
        .await
        .contains(&"account.email_changed".to_string()));
}
