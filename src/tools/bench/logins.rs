//! One complete sign-in of each kind, as a browser and an app would do it: the
//! authorization request, every page and redirect, the upstream's consent where there
//! is one, the code exchange and the ID token's validation.

use url::Url;

use super::client::{Browser, Hop, Jar, OpResult, Rp, Start, Tokens};

/// Post the first form of `page` with its CSRF token and `fields`.
async fn submit(browser: &mut Browser<'_>, page: &Hop, fields: &[(&str, &str)]) -> OpResult<Hop> {
    let action = page
        .form_action()
        .ok_or_else(|| format!("no form on {}", page.url))?;
    let csrf = page
        .input("csrf")
        .ok_or_else(|| format!("no CSRF token on {}", page.url))?;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post(action, &form).await
}

/// Password sign-in through a one-step `[password]` app.
pub async fn password(
    http: &reqwest::Client,
    rp: &Rp,
    login: &str,
    password: &str,
) -> OpResult<Tokens> {
    let mut browser = Browser::new(http);
    password_in(&mut browser, http, rp, login, password).await
}

/// The same, and the browser's cookies afterwards (its SSO session).
pub async fn password_keeping_cookies(
    http: &reqwest::Client,
    rp: &Rp,
    login: &str,
    password: &str,
) -> OpResult<Jar> {
    let mut browser = Browser::new(http);
    password_in(&mut browser, http, rp, login, password).await?;
    Ok(browser.into_jar())
}

async fn password_in(
    browser: &mut Browser<'_>,
    http: &reqwest::Client,
    rp: &Rp,
    login: &str,
    password: &str,
) -> OpResult<Tokens> {
    let start = rp.start();
    let hop = browser.get(start.url.clone()).await?;
    let page = browser
        .until_page(hop, &rp.redirect_uri, "the password page")
        .await?;
    let hop = submit(
        browser,
        &page,
        &[("username", login), ("password", password)],
    )
    .await?;
    let back = browser.until_app(hop, &rp.redirect_uri).await?;
    rp.finish(http, start, &back).await
}

/// A silent SSO re-authorization: a browser signed in already comes back with
/// `prompt=none`, is sent straight back to the app with a code (no page), and the app
/// exchanges the code and validates the ID token. Returns the cookies as they are after.
pub async fn silent(http: &reqwest::Client, rp: &Rp, jar: Jar) -> OpResult<Jar> {
    let mut browser = Browser::with_jar(http, jar);
    let start = rp.start_silent();
    let hop = browser.get(start.url.clone()).await?;
    let back = browser.until_app(hop, &rp.redirect_uri).await?;
    rp.finish(http, start, &back).await?;
    Ok(browser.into_jar())
}

/// Through the upstream: from the authorization request to the upstream's consent
/// page, and the consent given as `user`; returns the redirect back into Usher.
async fn via_upstream(
    browser: &mut Browser<'_>,
    rp: &Rp,
    start: &Start,
    user: &str,
) -> OpResult<Hop> {
    let hop = browser.get(start.url.clone()).await?;
    let consent = browser
        .until_page(hop, &rp.redirect_uri, "the upstream's consent page")
        .await?;
    let action = consent.form_action().ok_or("no form on the consent page")?;
    let request = consent
        .input("request")
        .ok_or("no request id on the consent page")?;
    browser
        .post(
            action,
            &[
                ("request", request.as_str()),
                ("user", user),
                ("decision", "authorize"),
            ],
        )
        .await
}

/// Federated sign-in through a one-step `[connection]` app, as upstream user `user`.
pub async fn federated(http: &reqwest::Client, rp: &Rp, user: &str) -> OpResult<Tokens> {
    let mut browser = Browser::new(http);
    let start = rp.start();
    let hop = via_upstream(&mut browser, rp, &start, user).await?;
    let back = browser.until_app(hop, &rp.redirect_uri).await?;
    rp.finish(http, start, &back).await
}

/// Two steps under a script: the connection, then a TOTP code.
pub async fn federated_then_totp(
    http: &reqwest::Client,
    rp: &Rp,
    user: &str,
    code: &str,
) -> OpResult<Tokens> {
    let mut browser = Browser::new(http);
    let start = rp.start();
    let hop = via_upstream(&mut browser, rp, &start, user).await?;
    let page = browser
        .until_page(hop, &rp.redirect_uri, "the TOTP page")
        .await?;
    let hop = submit(&mut browser, &page, &[("code", code)]).await?;
    let back = browser.until_app(hop, &rp.redirect_uri).await?;
    rp.finish(http, start, &back).await
}

/// A sign-in started and left: the authorization request only. Returns the page the
/// browser was sent to and its cookies, to come back to it later.
pub async fn abandoned(http: &reqwest::Client, rp: &Rp) -> OpResult<(Url, Option<String>)> {
    let mut browser = Browser::new(http);
    let start = rp.start();
    let hop = browser.get(start.url.clone()).await?;
    let next = hop
        .location
        .filter(|l| hop.status == 303 && l.path().contains("/login/"))
        .ok_or_else(|| {
            format!(
                "expected a redirect to the sign-in page, got {}",
                hop.status
            )
        })?;
    let cookies = browser.cookies(&next);
    Ok((next, cookies))
}
