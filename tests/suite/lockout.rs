//! Attempt limits over real HTTP: a burst of parallel wrong passwords for one account
//! gets exactly the limit's worth of checks (counted in the audit trail, not in page
//! text), and the admin API lifts a lock.

use std::sync::Arc;

use crate::common::*;
use reqwest::StatusCode;
use usher::store::AuditStore;

const CONFIG: &str = r#"
issuer: "{issuer}"
security:
  max_password_attempts: 5
  lockout_seconds: 900
  # Fifty posts from one address: the per-address throttle would stop most of them
  # first. This test is about the per-account lock, so the throttle is out of its way.
  throttle:
    sign_in: { max: 1000, seconds: 60 }
apps:
  thrift:
    name: Thrift
    client_id: thrift
    client_secret: thrift-test-secret
    redirect_uris: ["http://127.0.0.1:1/callback"]
    sign_in:
      steps:
        - [password]
"#;

/// How many passwords of `user_id` were checked and found wrong.
async fn rejected_for(usher: &Usher, user_id: &str) -> usize {
    usher
        .store
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "credential.rejected" && e.sub.as_deref() == Some(user_id))
        .count()
}

#[tokio::test]
async fn fifty_parallel_wrong_passwords_check_only_the_limit() {
    let usher = Usher::start(CONFIG).await;
    let alice = usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    // Fifty browsers at the password page, then every post at the same moment.
    let mut at_page = Vec::new();
    for _ in 0..50 {
        let browser = Browser::new();
        let start = rp.start(&[]);
        let page = browser
            .follow(&usher, browser.get(start.url.as_str()).await)
            .await
            .unwrap();
        at_page.push((browser, page));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(at_page.len()));
    let mut tasks = Vec::new();
    for (browser, page) in at_page {
        let action = usher.url_of(&page.form_action(Some("password")));
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let form = [
                ("csrf", page.csrf()),
                ("username", "alice".to_string()),
                ("password", "not-the-password".to_string()),
            ];
            barrier.wait().await;
            let res = browser.http.post(&action).form(&form).send().await.unwrap();
            res.status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::SEE_OTHER);
    }
    assert_eq!(
        rejected_for(&usher, &alice.id).await,
        5,
        "max_password_attempts passwords are checked, however many arrive at once"
    );
    // The account is locked: even the right password is not checked.
    let browser = Browser::new();
    let start = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let locked = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .unwrap();
    assert!(
        locked.body.contains("Too many failed attempts"),
        "{locked:?}"
    );
    assert_eq!(rejected_for(&usher, &alice.id).await, 5);
}

#[tokio::test]
async fn the_admin_api_unlocks_an_account_locked_for_good() {
    use crate::accounts_world::*;
    use usher::authn::attempts::{self, Holder, Reserved, Rules};
    let w = world().await;
    let carol = w
        .usher
        .add_user("carol", "carol@example.com", "carol-password-1")
        .await;
    // A hundred consecutive failures, every lock waited out: locked for good.
    let rules = Rules {
        block: 5,
        first_lock: 900,
        longest_lock: 86_400,
        cap: 100,
    };
    let (holder, mut now, mut failed) = (Holder::account(&carol.id), w.usher.clock.now(), 0);
    while failed < 100 {
        match attempts::reserve(w.usher.store.as_ref(), &holder, rules, now)
            .await
            .unwrap()
        {
            Reserved::Granted(_) => failed += 1,
            Reserved::Locked { .. } => now += 86_400,
        }
    }
    let rp = Rp::discover(&w.usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();
    let refused = thrift_password(&w, &browser, &rp.start(&[]), "carol", "carol-password-1")
        .await
        .unwrap();
    assert!(
        refused
            .body
            .contains("locked until an administrator unlocks it"),
        "{refused:?}"
    );

    let token = bearer(&w, "ops", OPS_SECRET).await;
    let http = reqwest::Client::new();
    let res = http
        .post(w.usher.url("/admin/v1/users/nobody/unlock"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = http
        .post(w.usher.url(&format!("/admin/v1/users/{}/unlock", carol.id)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["userName"], "carol");
    assert!(kinds_for(&w, &carol.id)
        .await
        .contains(&"admin.user_unlocked".to_string()));

    let back = thrift_password(
        &w,
        &Browser::new(),
        &rp.start(&[]),
        "carol",
        "carol-password-1",
    )
    .await
    .expect_err("signed in");
    assert!(query(&back).contains_key("code"), "{back}");
}

/// At the hard cap the owner is mailed a single-use link, once, and following it
/// unlocks the account without an administrator.
#[tokio::test]
async fn the_owners_verified_email_unlocks_an_account_locked_for_good() {
    let sink = crate::smtp_sink::SmtpSink::start().await;
    let config = CONFIG.replace(
        "security:\n  max_password_attempts: 5\n",
        &format!(
            "email:\n  smtp: {{ host: 127.0.0.1, port: {}, tls: none, from: \"Usher <usher@example.com>\" }}\nsecurity:\n  max_password_attempts: 3\n  max_consecutive_failures: 3\n",
            sink.port()
        ),
    );
    let usher = Usher::start(&config).await;
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let sign_in = |password: &'static str| {
        let (usher, rp) = (&usher, &rp);
        async move {
            let browser = Browser::new();
            let page = browser
                .follow(usher, browser.get(rp.start(&[]).url.as_str()).await)
                .await
                .unwrap();
            browser
                .submit_password(usher, &page, "alice", password)
                .await
        }
    };
    for _ in 0..3 {
        let wrong = sign_in("not-the-password").await.unwrap();
        assert!(wrong.body.contains("incorrect") || wrong.body.contains("Too many"));
    }
    // Locked for good: even the right password is refused, and a link is mailed.
    let refused = sign_in("wonderland-rabbit").await.unwrap();
    assert!(refused.body.contains("unlock link"), "{refused:?}");
    let mail = sink
        .wait_for_message(std::time::Duration::from_secs(10))
        .await
        .expect("the unlock link");
    assert!(mail.contains("alice@example.com"));
    let start = mail.find("/unlock/").expect("a link in the mail");
    let token: String = mail[start + "/unlock/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    // Another refused attempt the same day mails nothing more.
    sign_in("wonderland-rabbit").await.unwrap();
    assert!(sink
        .wait_for_message(std::time::Duration::from_millis(1500))
        .await
        .is_none());

    let http = reqwest::Client::new();
    let page = http
        .get(usher.url(&format!("/unlock/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Your account is unlocked"));
    let again = http
        .get(usher.url(&format!("/unlock/{token}")))
        .send()
        .await
        .unwrap();
    assert!(again.text().await.unwrap().contains("used or has expired"));
    assert!(
        sign_in("wonderland-rabbit").await.is_err(),
        "signed in: back at the app"
    );
    assert!(usher
        .store
        .events(0, 1000)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "account.unlocked_by_email"));
}
