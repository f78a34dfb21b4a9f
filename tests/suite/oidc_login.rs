//! A real relying party (the `openidconnect` crate) signs in through Usher's HTML forms:
//! discovery, authorization code + PKCE, token exchange with ID-token validation,
//! userinfo, refresh rotation and logout.

use crate::common::*;
use openidconnect::core::CoreUserInfoClaims;
use openidconnect::{OAuth2TokenResponse, RefreshToken, TokenResponse};
use reqwest::StatusCode;

#[tokio::test]
async fn password_login_end_to_end_with_a_certified_style_client() {
    let usher = Usher::default().await;
    let alice = usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let browser = Browser::new();

    let start = rp.start(&[]);
    let first = browser.get(start.url.as_str()).await;
    assert_eq!(
        first.status,
        StatusCode::SEE_OTHER,
        "authorize hands over to the sign-in page"
    );
    let page = browser.follow(&usher, first).await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Thrift"), "the page names the app");
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));

    let back = browser
        .submit_password(&usher, &page, "alice", "wonderland-rabbit")
        .await
        .expect_err("back at the app");
    assert!(back.as_str().starts_with(REDIRECT));
    let q = query(&back);
    assert_eq!(
        q["state"],
        *start.state.secret(),
        "state comes back unchanged"
    );
    assert_eq!(q["iss"], usher.issuer, "RFC 9207 iss in the response");

    let tokens = rp
        .exchange(&q["code"], start.verifier)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&rp.client.id_token_verifier(), &start.nonce)
        .expect("signature, issuer, audience, expiry and nonce all verify");
    assert_eq!(claims.subject().as_str(), alice.id);
    assert_eq!(claims.email().unwrap().as_str(), "alice@example.com");
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(claims.preferred_username().unwrap().as_str(), "alice");
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(amr, vec!["pwd"]);
    assert!(claims.auth_time().is_some());
    // The ID token is RS256 by default and the access token ES256, each with a kid the
    // JWKS publishes.
    let header = |jwt: &str| -> serde_json::Value {
        let b64 = jwt.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b64)
                .unwrap(),
        )
        .unwrap()
    };
    let jwks: serde_json::Value = reqwest::get(usher.url("/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let published = |h: &serde_json::Value, kty: &str| {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == h["kid"] && k["kty"] == kty)
    };
    let id_header = header(&id_token.to_string());
    assert_eq!(id_header["alg"], "RS256", "{id_header}");
    assert!(published(&id_header, "RSA"), "{jwks}");
    let at_header = header(tokens.access_token().secret());
    assert_eq!(at_header["alg"], "ES256", "{at_header}");
    assert_eq!(at_header["typ"], "at+jwt");
    assert!(published(&at_header, "EC"), "{jwks}");

    let info: CoreUserInfoClaims = rp
        .client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&rp.http)
        .await
        .expect("userinfo answers the access token");
    assert_eq!(info.subject().as_str(), alice.id);
    assert_eq!(info.email().unwrap().as_str(), "alice@example.com");

    // Refresh rotates: the new token works once, the old one is refused, and using the
    // old one again revokes the whole family.
    let r1 = tokens.refresh_token().expect("a refresh token").clone();
    let refreshed = rp
        .client
        .exchange_refresh_token(&r1)
        .unwrap()
        .request_async(&rp.http)
        .await
        .expect("refresh works");
    let r2 = refreshed
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(r1.secret(), r2.secret());
    let reuse = rp
        .client
        .exchange_refresh_token(&r1)
        .unwrap()
        .request_async(&rp.http)
        .await;
    assert!(format!("{reuse:?}").contains("invalid_grant"), "{reuse:?}");
    let after = rp
        .client
        .exchange_refresh_token(&RefreshToken::new(r2.secret().clone()))
        .unwrap()
        .request_async(&rp.http)
        .await;
    assert!(
        format!("{after:?}").contains("invalid_grant"),
        "family revoked after reuse: {after:?}"
    );

    // Logout with the ID token as hint returns to the registered address with state.
    let mut logout = url::Url::parse(&usher.url("/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", &id_token.to_string())
        .append_pair("post_logout_redirect_uri", "http://127.0.0.1:1/bye")
        .append_pair("state", "s-123");
    let out = browser.get(logout.as_str()).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        out.headers["location"],
        "http://127.0.0.1:1/bye?state=s-123"
    );

    // Signed out: the next authorization asks for the password again.
    let again = rp.start(&[]);
    let page = browser
        .follow(&usher, browser.get(again.url.as_str()).await)
        .await
        .unwrap();
    assert!(
        page.body.contains("name=\"password\""),
        "signed out means asked again"
    );
}

#[tokio::test]
async fn public_client_with_es256_and_client_secret_post() {
    let usher = Usher::default().await;
    usher
        .add_user("bob", "bob@example.com", "builder-of-things")
        .await;
    let rp = Rp::discover(&usher, "spa", None).await;
    let browser = Browser::new();
    let start = rp.start(&[]);
    let back = password_login(
        &usher,
        &browser,
        &start,
        "bob@example.com",
        "builder-of-things",
    )
    .await;
    let tokens = rp
        .exchange(&query(&back)["code"], start.verifier)
        .await
        .unwrap();
    let id = tokens.id_token().unwrap();
    id.claims(&rp.client.id_token_verifier(), &start.nonce)
        .expect("ES256 ID token verifies");
    let header = id.to_string();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            header.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].as_str().unwrap().starts_with("es256-"));

    // A confidential client may authenticate with client_secret_post as well.
    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let start = rp.start(&[]);
    let back = browser
        .follow(&usher, browser.get(start.url.as_str()).await)
        .await
        .expect_err("SSO");
    let res = reqwest::Client::new()
        .post(usher.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &query(&back)["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", "thrift"),
            ("client_secret", SECRET),
            ("code_verifier", start.verifier.secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["id_token"].is_string());

    // Userinfo by POST with the bearer token in the header.
    let info = reqwest::Client::new()
        .post(usher.url("/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    let info: serde_json::Value = info.json().await.unwrap();
    assert_eq!(info["email"], "bob@example.com");
}

#[tokio::test]
async fn discovery_and_jwks_publish_every_key() {
    let usher = Usher::default().await;
    let d: serde_json::Value = reqwest::get(usher.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], usher.issuer);
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    let jwks: serde_json::Value = reqwest::get(usher.url("/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(algs.contains(&alg), "{alg} published");
    }
    let health = reqwest::get(usher.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_issuers_root_names_the_server_and_links_onwards() {
    let usher = Usher::default().await;
    let page = Browser::new().get(&usher.url("/")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let body = html_unescape(&page.body);
    assert!(body.contains(&usher.issuer), "names the server: {body}");
    assert!(body.contains("href=\"/myaccount\""), "{body}");
    assert!(body.contains("href=\"/.well-known/openid-configuration\""));
    // Without My Account, no link to it.
    let usher = Usher::start(&format!("{BASE_CONFIG}my_account:\n  enabled: false\n")).await;
    let page = Browser::new().get(&usher.url("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!html_unescape(&page.body).contains("/myaccount"));
}
