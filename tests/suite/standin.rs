//! The upstream stand-ins, driven over real HTTP the way Usher's connectors will drive
//! them: the OIDC one with the `openidconnect` crate as the relying party (discovery,
//! PKCE, ID-token verification), the GitHub one with plain reqwest. The consent page is
//! parsed and posted by a cookie-less client, as a test that cannot click would.

use std::collections::HashMap;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use reqwest::header::{ACCEPT, LOCATION, USER_AGENT};
use reqwest::StatusCode;
use serde_json::{json, Value};
use url::Url;
use usher::tools::standin::{Faults, Kind, Standin, StandinConfig, StandinUser};

const CLIENT: &str = "usher-test";
const SECRET: &str = "s3cret+with/odd:chars";
const CALLBACK: &str = "http://127.0.0.1:1/callback";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn alice() -> StandinUser {
    let mut user = StandinUser::new("1001", "alice", "Alice Liddell", "alice@example.com");
    user.amr = vec!["pwd".into(), "mfa".into()];
    user.extra_claims.insert("hd".into(), json!("example.com"));
    user
}

fn bob() -> StandinUser {
    let mut user = StandinUser::new("1002", "bob", "<b>Bob & \"Co\"</b>", "bob@example.com");
    user.email_verified = false;
    user
}

async fn start(kind: Kind) -> Standin {
    let config = StandinConfig::new(kind, CLIENT, SECRET)
        .with_user(alice())
        .with_user(bob());
    Standin::start(config).await.unwrap()
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The consent page as a test reads it: the form's action, its hidden `request` and
/// the `value`s of the `user` radio buttons.
struct ConsentPage {
    action: String,
    request: String,
    users: Vec<String>,
    body: String,
}

/// The value of `attr` in the tag that starts at `tag`.
fn attr(tag: &str, attr: &str) -> Option<String> {
    let tag = &tag[..tag.find('>')?];
    let at = tag.find(&format!(" {attr}=\""))? + attr.len() + 3;
    Some(html_unescape(&tag[at..at + tag[at..].find('"')?]))
}

fn parse_consent(body: &str) -> ConsentPage {
    let form = &body[body.find("<form").expect("a form")..];
    let action = attr(form, "action").expect("form action");
    let mut request = None;
    let mut users = Vec::new();
    for (i, _) in form.match_indices("<input") {
        let tag = &form[i..];
        match attr(tag, "name").as_deref() {
            Some("request") => request = attr(tag, "value"),
            Some("user") => users.push(attr(tag, "value").unwrap()),
            _ => {}
        }
    }
    ConsentPage {
        action,
        request: request.expect("hidden request field"),
        users,
        body: body.to_string(),
    }
}

async fn consent_page(http: &reqwest::Client, url: &str) -> ConsentPage {
    let res = http.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "consent page shown");
    parse_consent(&res.text().await.unwrap())
}

/// Post the consent form as `user` with `decision`.
async fn post_decision(
    http: &reqwest::Client,
    standin: &Standin,
    page: &ConsentPage,
    user: &str,
    decision: &str,
) -> reqwest::Response {
    let form = [
        ("request", page.request.as_str()),
        ("user", user),
        ("decision", decision),
    ];
    let url = format!("{}{}", standin.base_url, page.action);
    http.post(url).form(&form).send().await.unwrap()
}

/// Answer the consent page; returns where the client is sent.
async fn decide(
    http: &reqwest::Client,
    standin: &Standin,
    page: &ConsentPage,
    user: &str,
    decision: &str,
) -> Url {
    let res = post_decision(http, standin, page, user, decision).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "303 after a POST");
    location(&res)
}

fn location(res: &reqwest::Response) -> Url {
    Url::parse(res.headers()[LOCATION].to_str().unwrap()).unwrap()
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

async fn relying_party(standin: &Standin, http: &reqwest::Client) -> Client {
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(standin.issuer()).unwrap(), http)
            .await
            .expect("discovery and JWKS accepted by openidconnect");
    CoreClient::from_provider_metadata(
        meta,
        ClientId::new(CLIENT.into()),
        Some(ClientSecret::new(SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap())
}

struct Login {
    callback: Url,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

/// Run the browser part of an OIDC sign-in as `user` up to the callback.
async fn oidc_login(rp: &Client, http: &reqwest::Client, standin: &Standin, user: &str) -> Login {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let page = consent_page(http, url.as_str()).await;
    let callback = decide(http, standin, &page, user, "authorize").await;
    Login {
        callback,
        state,
        nonce,
        verifier,
    }
}

async fn exchange(
    rp: &Client,
    http: &reqwest::Client,
    code: &str,
    verifier: PkceCodeVerifier,
) -> Result<openidconnect::core::CoreTokenResponse, String> {
    rp.exchange_code(AuthorizationCode::new(code.into()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => r.error().to_string(),
            other => format!("{other:?}"),
        })
}

fn payload(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A whole sign-in as `user`; the ID token's claims once the library has verified it.
async fn sign_in_and_verify(
    rp: &Client,
    http: &reqwest::Client,
    standin: &Standin,
    user: &str,
) -> Result<Value, openidconnect::ClaimsVerificationError> {
    let login = oidc_login(rp, http, standin, user).await;
    let code = query(&login.callback)["code"].clone();
    let tokens = exchange(rp, http, &code, login.verifier).await.unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    id_token.claims(&rp.id_token_verifier(), &login.nonce)?;
    Ok(payload(&id_token.to_string()))
}

#[tokio::test]
async fn oidc_sign_in_verifies_with_openidconnect() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let discovery: Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            standin.base_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );

    let rp = relying_party(&standin, &http).await;
    let login = oidc_login(&rp, &http, &standin, "1001").await;
    assert!(login.callback.as_str().starts_with(CALLBACK));
    let q = query(&login.callback);
    assert_eq!(q["state"], *login.state.secret());
    assert_eq!(q["iss"], standin.issuer(), "RFC 9207 iss on the redirect");

    let tokens = exchange(&rp, &http, &q["code"], login.verifier)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = rp.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &login.nonce)
        .expect("signature, issuer, audience, nonce and expiry verify");
    assert_eq!(claims.subject().as_str(), "1001");
    assert_eq!(claims.email().unwrap().as_str(), "alice@example.com");
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(claims.preferred_username().unwrap().as_str(), "alice");
    assert_eq!(
        claims.name().unwrap().get(None).unwrap().as_str(),
        "Alice Liddell"
    );
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert_eq!(amr, ["pwd", "mfa"]);
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    assert_eq!(payload(&id_token.to_string())["hd"], "example.com");

    let info: openidconnect::core::CoreUserInfoClaims = rp
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo for the same subject");
    assert_eq!(info.email().unwrap().as_str(), "alice@example.com");
    let raw: Value = http
        .get(format!("{}/userinfo", standin.base_url))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["hd"], "example.com");
    assert_eq!(raw["preferred_username"], "alice");

    let no_token = http
        .get(format!("{}/userinfo", standin.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    standin.stop().await;
}

#[tokio::test]
async fn consent_page_lists_users_escaped_and_posts_back_to_itself() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let page = consent_page(&http, url.as_str()).await;
    assert_eq!(page.action, "/authorize");
    assert_eq!(page.users, ["1001", "1002"]);
    assert!(page.body.contains("usher-test wants to sign you in"));
    assert!(page
        .body
        .contains("&lt;b&gt;Bob &amp; &quot;Co&quot;&lt;/b&gt;"));
    assert!(!page.body.contains("<b>Bob"), "user values are escaped");
    assert!(page.body.contains("name=\"decision\" value=\"authorize\""));
    assert!(page.body.contains("name=\"decision\" value=\"deny\""));

    // A request id is good for one decision only.
    decide(&http, &standin, &page, "1001", "authorize").await;
    let again = post_decision(&http, &standin, &page, "1001", "authorize").await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn each_id_token_fault_fails_verification() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    use openidconnect::ClaimsVerificationError as E;
    let no = Faults::default;
    // Each fault must be caught, and caught for its own reason.
    type Expect = fn(&E) -> bool;
    let fault = |set: fn(&mut Faults)| {
        let mut faults = no();
        set(&mut faults);
        faults
    };
    let cases: [(Faults, Expect); 5] = [
        (fault(|f| f.wrong_issuer_in_id_token = true), |e| {
            matches!(e, E::InvalidIssuer(_))
        }),
        (fault(|f| f.wrong_audience = true), |e| {
            matches!(e, E::InvalidAudience(_))
        }),
        (fault(|f| f.wrong_nonce = true), |e| {
            matches!(e, E::InvalidNonce(_))
        }),
        (fault(|f| f.expired_id_token = true), |e| {
            matches!(e, E::Expired(_))
        }),
        (fault(|f| f.bad_signature = true), |e| {
            matches!(e, E::SignatureVerification(_))
        }),
    ];
    for (fault, expected) in cases {
        standin.set_faults(fault.clone());
        match sign_in_and_verify(&rp, &http, &standin, "1001").await {
            Err(e) => assert!(expected(&e), "{fault:?} failed for another reason: {e:?}"),
            Ok(claims) => panic!("{fault:?}: the ID token verified: {claims:?}"),
        }
    }

    // Cleared at runtime, the same flow verifies again.
    standin.set_faults(no());
    let claims = sign_in_and_verify(&rp, &http, &standin, "1001").await;
    assert_eq!(claims.unwrap()["sub"], "1001");
}

#[tokio::test]
async fn iss_parameter_can_be_overridden() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    standin.set_faults(Faults {
        iss_param: Some("https://mix-up.example".into()),
        ..Faults::default()
    });
    let login = oidc_login(&rp, &http, &standin, "1001").await;
    assert_eq!(query(&login.callback)["iss"], "https://mix-up.example");
}

#[tokio::test]
async fn deny_sends_access_denied_with_state_and_iss() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, state, _) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let page = consent_page(&http, url.as_str()).await;
    let back = decide(&http, &standin, &page, "1001", "deny").await;
    let q = query(&back);
    assert_eq!(q["error"], "access_denied");
    assert!(q.contains_key("error_description"));
    assert_eq!(q["state"], *state.secret());
    assert_eq!(q["iss"], standin.issuer());
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_its_token() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    let login = oidc_login(&rp, &http, &standin, "1001").await;
    let code = query(&login.callback)["code"].clone();
    let verifier = login.verifier.secret().clone();
    let tokens = exchange(&rp, &http, &code, login.verifier).await.unwrap();
    let userinfo = || {
        http.get(format!("{}/userinfo", standin.base_url))
            .bearer_auth(tokens.access_token().secret())
            .send()
    };
    assert_eq!(userinfo().await.unwrap().status(), StatusCode::OK);

    let second = exchange(&rp, &http, &code, PkceCodeVerifier::new(verifier)).await;
    assert_eq!(second.unwrap_err(), "invalid_grant");
    assert_eq!(userinfo().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_pkce_mismatch_is_refused() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    let login = oidc_login(&rp, &http, &standin, "1001").await;
    let code = query(&login.callback)["code"].clone();
    let (_, other) = PkceCodeChallenge::new_random_sha256();
    let res = exchange(&rp, &http, &code, other).await;
    assert_eq!(res.unwrap_err(), "invalid_grant");
}

#[tokio::test]
async fn authorize_refuses_requests_without_pkce_or_from_strangers() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let mut url = Url::parse(&format!("{}/authorize", standin.base_url)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", CLIENT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email")
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("state", "st-1")
        .append_pair("nonce", "n-1");
    let res = http.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let q = query(&location(&res));
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], standin.issuer());

    // An unknown client is never redirected to: its redirect_uri cannot be trusted.
    let stranger = url
        .as_str()
        .replace("client_id=usher-test", "client_id=mallory");
    let res = http.get(stranger).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn token_endpoint_takes_client_secret_post_and_refuses_a_wrong_secret() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    let token = |code: String, secret: &'static str, verifier: String| {
        let http = http.clone();
        let url = format!("{}/token", standin.base_url);
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", verifier.as_str()),
                    ("client_id", CLIENT),
                    ("client_secret", secret),
                ])
                .send()
                .await
                .unwrap()
        }
    };

    let login = oidc_login(&rp, &http, &standin, "1002").await;
    let code = query(&login.callback)["code"].clone();
    let verifier = login.verifier.secret().clone();
    let res = token(code.clone(), "wrong", verifier.clone()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    // A failed client authentication does not use up the code.
    let res = token(code, SECRET, verifier).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let claims = payload(body["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "1002");
    assert_eq!(claims["email_verified"], false);
    assert!(claims.get("amr").is_none(), "no amr when the user has none");
}

#[tokio::test]
async fn set_user_changes_what_the_next_login_says() {
    let standin = start(Kind::Oidc).await;
    let http = http();
    let rp = relying_party(&standin, &http).await;
    let mut renamed = alice();
    renamed.name = "Alice Pleasance".into();
    standin.set_user(renamed);
    let claims = sign_in_and_verify(&rp, &http, &standin, "1001").await;
    assert_eq!(claims.unwrap()["name"], "Alice Pleasance");
}

/// The GitHub authorize URL for `state`, with an optional PKCE challenge.
fn github_authorize(standin: &Standin, state: &str, challenge: Option<&str>) -> String {
    let mut url = Url::parse(&standin.authorize_url()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", "read:user user:email")
        .append_pair("state", state);
    if let Some(c) = challenge {
        url.query_pairs_mut()
            .append_pair("code_challenge", c)
            .append_pair("code_challenge_method", "S256");
    }
    url.into()
}

/// Sign in at the GitHub stand-in as `user`; returns the code.
async fn github_code(http: &reqwest::Client, standin: &Standin, user: &str) -> String {
    let page = consent_page(http, &github_authorize(standin, "gh-state", None)).await;
    assert_eq!(page.action, "/login/oauth/authorize");
    let back = decide(http, standin, &page, user, "authorize").await;
    let q = query(&back);
    assert_eq!(q["state"], "gh-state");
    assert!(!q.contains_key("iss"), "GitHub sends no iss");
    q["code"].clone()
}

async fn github_token(
    http: &reqwest::Client,
    standin: &Standin,
    form: &[(&str, &str)],
    json: bool,
) -> reqwest::Response {
    let mut req = http.post(standin.token_url()).form(form);
    if json {
        req = req.header(ACCEPT, "application/json");
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn github_sign_in_reads_user_and_emails() {
    let standin = start(Kind::Github).await;
    let http = http();
    let code = github_code(&http, &standin, "1001").await;
    let form = [
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
    ];
    let res = github_token(&http, &standin, &form, true).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("gho_"));
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["scope"], "read:user,user:email");

    let api = |path: &str, auth: String, agent: bool| {
        let mut req = http
            .get(format!("{}{path}", standin.base_url))
            .header("Authorization", auth);
        if agent {
            req = req.header(USER_AGENT, "usher-tests");
        }
        req.send()
    };
    let user: Value = api("/user", format!("Bearer {token}"), true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["id"], json!(1001), "the id is a JSON number");
    assert_eq!(user["login"], "alice");
    assert_eq!(user["name"], "Alice Liddell");
    assert_eq!(user["email"], "alice@example.com");
    assert!(user["html_url"].as_str().unwrap().ends_with("/alice"));
    assert!(user["avatar_url"].is_string());

    let old_style = api("/user", format!("token {token}"), true).await.unwrap();
    assert_eq!(
        old_style.status(),
        StatusCode::OK,
        "`token` scheme accepted"
    );
    let no_agent = api("/user", format!("Bearer {token}"), false)
        .await
        .unwrap();
    assert_eq!(no_agent.status(), StatusCode::FORBIDDEN);
    let bad = api("/user", "Bearer gho_nope".into(), true).await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["message"],
        "Bad credentials"
    );

    let emails: Value = api("/user/emails", format!("Bearer {token}"), true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        emails,
        json!([{ "email": "alice@example.com", "primary": true, "verified": true,
                 "visibility": "public" }])
    );
}

#[tokio::test]
async fn github_token_errors_come_with_http_200() {
    let standin = start(Kind::Github).await;
    let http = http();
    let bad = [
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", "0123456789abcdef0123"),
    ];
    let res = github_token(&http, &standin, &bad, true).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "GitHub reports errors with 200"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "bad_verification_code");
    assert!(body["error_description"].is_string());
    assert!(body["error_uri"].is_string());

    // Without Accept: JSON the answer is form-encoded, errors included.
    let res = github_token(&http, &standin, &bad, false).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(text.starts_with("error=bad_verification_code&"), "{text}");

    let code = github_code(&http, &standin, "1002").await;
    let wrong_secret = [
        ("client_id", CLIENT),
        ("client_secret", "x"),
        ("code", &code),
    ];
    let body: Value = github_token(&http, &standin, &wrong_secret, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"], "incorrect_client_credentials");

    // The code survived the failed client authentication; it works once, form-encoded.
    let good = [
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", &code),
    ];
    let text = github_token(&http, &standin, &good, false)
        .await
        .text()
        .await
        .unwrap();
    let pairs: HashMap<String, String> = url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    assert!(pairs["access_token"].starts_with("gho_"), "{text}");
    assert_eq!(pairs["token_type"], "bearer");
    let again: Value = github_token(&http, &standin, &good, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["error"], "bad_verification_code",
        "codes are single-use"
    );
}

#[tokio::test]
async fn github_deny_has_githubs_shape() {
    let standin = start(Kind::Github).await;
    let http = http();
    let page = consent_page(&http, &github_authorize(&standin, "st-9", None)).await;
    assert!(page.body.contains("Authorize usher-test"));
    let back = decide(&http, &standin, &page, "1001", "deny").await;
    let q = query(&back);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(
        q["error_description"],
        "The user has denied your application access."
    );
    assert!(q["error_uri"].starts_with("https://"));
    assert_eq!(q["state"], "st-9");
    assert!(!q.contains_key("iss"));
}

#[tokio::test]
async fn github_checks_pkce_when_a_challenge_was_sent() {
    let standin = start(Kind::Github).await;
    let http = http();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    for (verifier, works) in [("x".repeat(43), false), (verifier.secret().clone(), true)] {
        let url = github_authorize(&standin, "s", Some(challenge.as_str()));
        let page = consent_page(&http, &url).await;
        let code =
            query(&decide(&http, &standin, &page, "1001", "authorize").await)["code"].clone();
        let form = [
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        let body: Value = github_token(&http, &standin, &form, true)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["access_token"].is_string(), works, "{body}");
    }
}

#[tokio::test]
async fn github_private_email_is_null_on_user_but_listed_in_emails() {
    let standin = start(Kind::Github).await;
    let mut private = bob();
    private.extra_claims.insert("email".into(), Value::Null);
    standin.set_user(private);
    let http = http();
    let code = github_code(&http, &standin, "1002").await;
    let form = [
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", code.as_str()),
    ];
    let body: Value = github_token(&http, &standin, &form, true)
        .await
        .json()
        .await
        .unwrap();
    let token = body["access_token"].as_str().unwrap();
    let get = |path: &'static str| {
        http.get(format!("{}{path}", standin.base_url))
            .bearer_auth(token)
            .header(USER_AGENT, "usher-tests")
            .send()
    };
    let user: Value = get("/user").await.unwrap().json().await.unwrap();
    assert!(user["email"].is_null());
    let emails: Value = get("/user/emails").await.unwrap().json().await.unwrap();
    assert_eq!(emails[0]["email"], "bob@example.com");
    assert_eq!(emails[0]["verified"], false);
    assert_eq!(emails[0]["visibility"], "private");
}

#[tokio::test]
async fn start_on_a_chosen_listener_and_stop() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = StandinConfig::new(Kind::Github, CLIENT, SECRET).with_user(alice());
    let standin = Standin::start_on(listener, config).await.unwrap();
    assert_eq!(standin.base_url, format!("http://{addr}"));
    assert_eq!(standin.issuer(), standin.base_url);
    let url = standin.authorize_url();
    standin.stop().await;
    assert!(http().get(url).send().await.is_err(), "stopped means gone");

    let bad = StandinConfig::new(Kind::Github, CLIENT, SECRET).with_user(StandinUser::new(
        "octo",
        "octo",
        "Octo",
        "o@example.com",
    ));
    let err = Standin::start(bad)
        .await
        .err()
        .expect("non-numeric GitHub id refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
