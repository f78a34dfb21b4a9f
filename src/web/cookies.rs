//! Every cookie Usher sets is built here: HttpOnly, SameSite=Lax, and `Secure` with
//! the `__Host-` prefix whenever the issuer is https (browsers refuse both over plain
//! http, so a localhost development issuer gets plain names).

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::config::Config;

/// The browser cookie: binds flows to the browser that started them and keys CSRF.
pub const BROWSER: &str = "usher_browser";
/// The SSO session cookie.
pub const SESSION: &str = "usher_session";
/// My Account's access token (an `at+jwt` of the built-in app, bound to the session).
pub const ACCOUNT: &str = "usher_account";
/// My Account's sign-in in progress: its `state` and PKCE verifier.
pub const ACCOUNT_START: &str = "usher_account_start";
/// A one-time message or recovery codes for the next My Account page.
pub const ACCOUNT_FLASH: &str = "usher_account_flash";

fn secure(config: &Config) -> bool {
    config.issuer.scheme() == "https"
}

fn name(config: &Config, base: &str) -> String {
    if secure(config) {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

fn build(config: &Config, base: &str, value: String, max_age: Option<u64>) -> Cookie<'static> {
    let mut c = Cookie::new(name(config, base), value);
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_secure(secure(config));
    if let Some(secs) = max_age {
        c.set_max_age(time_duration(secs));
    }
    c
}

fn time_duration(secs: u64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

pub fn get(jar: &CookieJar, config: &Config, base: &str) -> Option<String> {
    jar.get(&name(config, base)).map(|c| c.value().to_string())
}

/// The browser id, creating one when the browser has none yet.
pub fn ensure_browser(jar: CookieJar, config: &Config) -> (CookieJar, String) {
    match get(&jar, config, BROWSER) {
        Some(id) if id.len() >= 32 => (jar, id),
        _ => {
            let id = crate::crypto::random_token(32);
            let jar = jar.add(build(config, BROWSER, id.clone(), Some(400 * 24 * 3600)));
            (jar, id)
        }
    }
}

pub fn set_session(jar: CookieJar, config: &Config, value: String) -> CookieJar {
    jar.add(build(
        config,
        SESSION,
        value,
        Some(config.security.session_ttl),
    ))
}

pub fn clear_session(jar: CookieJar, config: &Config) -> CookieJar {
    jar.remove(build(config, SESSION, String::new(), None))
}

/// Set one of the other cookies above, for `max_age` seconds.
pub fn set(jar: CookieJar, config: &Config, base: &str, value: String, max_age: u64) -> CookieJar {
    jar.add(build(config, base, value, Some(max_age)))
}

pub fn clear(jar: CookieJar, config: &Config, base: &str) -> CookieJar {
    jar.remove(build(config, base, String::new(), None))
}

#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    fn config() -> &'static Config {
        static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        CONFIG.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("usher.yaml");
            std::fs::write(&path, "issuer: https://id.example\napps: {}\n").unwrap();
            crate::config::load_with_env(&path, &|_| None)
                .unwrap_or_else(|d| panic!("{d}"))
                .config
        })
    }

    fn jar(cookie_header: &[u8]) -> CookieJar {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(cookie_header) {
            headers.insert(header::COOKIE, v);
        }
        CookieJar::from_headers(&headers)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any `Cookie` header decodes into cookies or none; a browser id is only taken
        /// from the `__Host-` cookie of an https issuer, and one too short is replaced.
        #[test]
        fn any_cookie_header_is_read_without_trouble(
            header_bytes in prop::collection::vec(any::<u8>(), 0..200),
            value in "[ -~]{0,80}",
        ) {
            let config = config();
            for base in [BROWSER, SESSION, ACCOUNT, ACCOUNT_START, ACCOUNT_FLASH] {
                let _ = get(&jar(&header_bytes), config, base);
            }
            let header_text = format!("usher_browser=x; __Host-usher_browser={value}");
            let (_, id) = ensure_browser(jar(header_text.as_bytes()), config);
            let shown = get(&jar(header_text.as_bytes()), config, BROWSER);
            match shown {
                Some(v) if v.len() >= 32 => prop_assert_eq!(id, v),
                _ => prop_assert_eq!(id.len(), crate::crypto::random_token(32).len()),
            }
        }
    }
}
