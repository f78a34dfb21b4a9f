//! The JIT article's scenarios outside the browser, over real HTTP against the
//! stand-ins: asking before creating an account (`prompt_consent`, accepted and
//! declined), `attributes: none`, and GitHub with JIT on.

use crate::common::*;
use serde_json::json;
use usher::store::{IdentityStore, UserStore};
use usher::tools::standin::Standin;

struct World {
    usher: Usher,
    google: Standin,
    _github: Standin,
}

const APP: &str = "  seed:\n    name: Seed\n    client_id: seed\n    client_secret: seed-secret\n    redirect_uris: [\"http://127.0.0.1:1/callback\"]\n    sign_in:\n      steps:\n";

/// Usher with the stand-ins, `extra` connections (`{google}` and `{github}` filled in)
/// and the app `seed` with `steps` (YAML list items).
async fn world(extra: &str, steps: &str) -> World {
    let (google, github) = standins().await;
    let extra = extra
        .replace("{google}", &google.issuer())
        .replace("{github}", &github.base_url);
    let config = format!(
        "issuer: \"{{issuer}}\"\n{}\napps:\n{APP}{steps}",
        connections_yaml(&google, &github, &extra)
    );
    World {
        usher: Usher::start(&config).await,
        google,
        _github: github,
    }
}

/// Through the app's only option to the provider's consent page, and back as `user`.
async fn upstream_sign_in(browser: &Browser, rp: &Rp, user: &str) -> (Page, AuthStart) {
    let start = rp.start(&[]);
    let consent = follow_all(browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let page = follow_all(browser, decide(browser, &consent, user, "authorize").await)
        .await
        .expect("a page of Usher's, not yet the app");
    (page, start)
}

const ASKING: &str = "  asking:\n    kind: oidc\n    display_name: Asking\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{google}\"\n    jit: { scheme: prompt_consent }\n";

#[tokio::test]
async fn prompt_consent_asks_before_creating_the_account_and_decline_creates_nothing() {
    let w = world(ASKING, "        - [asking]\n").await;
    let rp = Rp::discover(&w.usher, "seed", Some("seed-secret")).await;

    // Declined: the app hears access_denied and nothing is stored.
    let browser = Browser::new();
    let (page, _) = upstream_sign_in(&browser, &rp, "g-1001").await;
    assert!(page.body.contains("Create your account"), "{page:?}");
    assert!(page.body.contains("ada@example.com") && page.body.contains("Ada Lovelace"));
    // The page's last form is its way out.
    let cancel = w.usher.url_of(&page.form_action(None));
    assert!(cancel.ends_with("/cancel"), "{cancel}");
    let res = browser.post(&cancel, &[("csrf", &page.csrf())]).await;
    let back = follow_all(&browser, res)
        .await
        .expect_err("back at the app");
    assert_eq!(query(&back)["error"], "access_denied");
    assert_eq!(w.usher.store.user_count().await.unwrap(), 0);
    assert!(w
        .usher
        .store
        .identity("asking", "g-1001")
        .await
        .unwrap()
        .is_none());

    // Accepted: the account is made and the app signs the user in to it.
    let browser = Browser::new();
    let (page, start) = upstream_sign_in(&browser, &rp, "g-1001").await;
    let create = w.usher.url_of(&page.form_action(Some("decision")));
    let res = browser
        .post(&create, &[("csrf", &page.csrf()), ("decision", "accept")])
        .await;
    let back = follow_all(&browser, res).await.expect_err("signed in");
    assert!(query(&back).contains_key("code"), "{back}");
    let claims = rp.claims(&back, start).await;
    let user_id = w
        .usher
        .store
        .identity("asking", "g-1001")
        .await
        .unwrap()
        .expect("the account exists now");
    assert_eq!(claims["sub"], user_id);
    assert_eq!(claims["email"], "ada@example.com");

    // Once it exists, nobody is asked again.
    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let back = follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .expect_err("straight back to the app");
    assert_eq!(rp.claims(&back, start).await["sub"], user_id);
    assert_eq!(w.usher.store.user_count().await.unwrap(), 1);
}

#[tokio::test]
async fn attributes_none_never_touches_the_account_after_creation() {
    let w = world(
        "  frozen:\n    kind: oidc\n    client_id: usher-google\n    client_secret: google-secret\n    issuer: \"{google}\"\n    jit: { attributes: none }\n",
        "        - [frozen]\n",
    )
    .await;
    let rp = Rp::discover(&w.usher, "seed", Some("seed-secret")).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .expect_err("signed in");
    let user_id = w
        .usher
        .store
        .identity("frozen", "g-1001")
        .await
        .unwrap()
        .unwrap();

    // Upstream she is renamed and gains a picture; neither reaches the account (which
    // `preserve_local` would fill in, and `override` would copy).
    let mut changed = ada();
    changed.name = "Augusta Ada King".into();
    changed
        .extra_claims
        .insert("picture".into(), json!("https://pictures.example/ada.png"));
    w.google.set_user(changed);
    let browser = Browser::new();
    let start = rp.start(&[]);
    let consent = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let back = follow_all(
        &browser,
        decide(&browser, &consent, "g-1001", "authorize").await,
    )
    .await
    .expect_err("signed in again");
    let claims = rp.claims(&back, start).await;
    assert_eq!(claims["sub"], user_id);
    let user = w.usher.store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(user.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(user.picture, None);
    assert_eq!(
        claims["name"], "Ada Lovelace",
        "the app sees the account's name"
    );
}

#[tokio::test]
async fn github_with_jit_gives_the_octocat_an_account_and_asks_for_step_two() {
    let w = world(
        "  hub:\n    kind: github\n    client_id: usher-github\n    client_secret: github-secret\n    authorize_url: \"{github}/login/oauth/authorize\"\n    token_url: \"{github}/login/oauth/access_token\"\n    userinfo_url: \"{github}/user\"\n    emails_url: \"{github}/user/emails\"\n    jit: { provision: true }\n",
        "        - [hub]\n        - [totp, email_otp]\n",
    )
    .await;
    let rp = Rp::discover(&w.usher, "seed", Some("seed-secret")).await;
    let browser = Browser::new();
    let (page, _) = upstream_sign_in(&browser, &rp, "583231").await;
    let user_id = w
        .usher
        .store
        .identity("hub", "583231")
        .await
        .unwrap()
        .expect("an account keyed by GitHub's numeric id");
    let user = w.usher.store.user(&user_id).await.unwrap().unwrap();
    assert_eq!(user.email.as_deref(), Some("octocat@github.example"));
    assert_eq!(user.username, "octocat@github.example");
    // Step 2 is shown: the account can hold a second factor.
    assert_eq!(page.status, reqwest::StatusCode::OK, "{page:?}");
    for option in ["totp", "email_otp"] {
        assert!(
            page.body
                .contains(&format!("name=\"option\" value=\"{option}\"")),
            "step 2 offers {option}: {}",
            page.body
        );
    }
}
