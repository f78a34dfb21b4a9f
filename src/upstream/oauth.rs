//! OAuth2 connections (`github`, `oauth2`): the authorization URL and the code exchange
//! through the `oauth2` crate, then the profile from the provider's API. For GitHub the
//! account key is the numeric user id (a login can be renamed and reused), and the email
//! is the verified primary address from `/user/emails`. With the `read:org` scope, the
//! user's teams (`/user/teams`) become `groups`, named `organisation/team-slug`.
//! Every answer is read through one capped reader (`upstream::fetch`): a profile or an
//! address list at most [`USERINFO_MAX`](crate::limits::USERINFO_MAX) bytes, the teams
//! listing at most [`ANSWER_MAX`].

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde_json::{json, Value};

use super::{fetch, map_claims, Pending, UpstreamError, UpstreamIdentity};
use crate::config::{Connection, ConnectionKind};

/// Local attribute ← GitHub's `/user` field.
const GITHUB: &[(&str, &str)] = &[
    ("preferred_username", "login"),
    ("name", "name"),
    ("picture", "avatar_url"),
    ("email", "email"),
    ("profile", "html_url"),
    ("groups", "groups"),
];

/// Local attribute ← field, for a generic OAuth2 provider's userinfo.
const GENERIC: &[(&str, &str)] = &[
    ("email", "email"),
    ("email_verified", "email_verified"),
    ("name", "name"),
    ("given_name", "given_name"),
    ("family_name", "family_name"),
    ("picture", "picture"),
    ("preferred_username", "preferred_username"),
];

fn url_of(conn: &Connection, which: &str, url: &Option<url::Url>) -> Result<String, UpstreamError> {
    url.as_ref()
        .map(|u| u.to_string())
        .ok_or_else(|| UpstreamError::Config(format!("connection {} has no {which}", conn.id)))
}

pub fn authorize_url(
    conn: &Connection,
    callback: &str,
    state: &str,
    verifier: &str,
) -> Result<String, UpstreamError> {
    let config = |e: url::ParseError| UpstreamError::Config(e.to_string());
    let client = BasicClient::new(ClientId::new(conn.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(url_of(conn, "authorize_url", &conn.authorize_url)?).map_err(config)?,
        )
        .set_redirect_uri(RedirectUrl::new(callback.to_string()).map_err(config)?);
    let state = state.to_string();
    let mut req = client
        .authorize_url(move || CsrfToken::new(state.clone()))
        .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
            &PkceCodeVerifier::new(verifier.to_string()),
        ));
    for s in &conn.scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    Ok(req.url().0.to_string())
}

pub async fn exchange(
    http: &reqwest::Client,
    conn: &Connection,
    callback: &str,
    pending: &Pending,
    code: &str,
) -> Result<UpstreamIdentity, UpstreamError> {
    let name = || conn.display_name.clone();
    let config = |e: url::ParseError| UpstreamError::Config(e.to_string());
    let client = BasicClient::new(ClientId::new(conn.client_id.clone()))
        .set_client_secret(ClientSecret::new(conn.client_secret.expose().to_string()))
        .set_auth_uri(
            AuthUrl::new(url_of(conn, "authorize_url", &conn.authorize_url)?).map_err(config)?,
        )
        .set_token_uri(TokenUrl::new(url_of(conn, "token_url", &conn.token_url)?).map_err(config)?)
        .set_redirect_uri(RedirectUrl::new(callback.to_string()).map_err(config)?)
        // GitHub documents the credentials in the body.
        .set_auth_type(AuthType::RequestBody);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
        .request_async(http)
        .await
        .map_err(|e| match e {
            oauth2::RequestTokenError::ServerResponse(r) => {
                UpstreamError::Provider(name(), r.error().to_string())
            }
            // GitHub answers a bad code with HTTP 200 and an error body, which does
            // not parse as a token.
            oauth2::RequestTokenError::Parse(_, body) => {
                let err = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| "an unreadable token response".into());
                UpstreamError::Provider(name(), err)
            }
            other => UpstreamError::Unreachable(name(), other.to_string()),
        })?;
    let access = tokens.access_token().secret().clone();
    let mut profile = get_json(
        http,
        conn,
        &url_of(conn, "userinfo_url", &conn.userinfo_url)?,
        &access,
    )
    .await?;
    let subject = match profile.get("id").or_else(|| profile.get("sub")) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(UpstreamError::NoSubject(name())),
    };
    if conn.kind == ConnectionKind::Github {
        // The profile's email is only the public one, and says nothing of
        // verification: take the verified primary address, or none.
        profile.remove("email");
        if let Some(emails_url) = &conn.emails_url {
            let emails = get_json_value(
                http,
                conn,
                emails_url.as_str(),
                &access,
                crate::limits::USERINFO_MAX,
            )
            .await?;
            let primary = emails.as_array().and_then(|list| {
                list.iter().find(|e| {
                    e.get("primary").and_then(Value::as_bool) == Some(true)
                        && e.get("verified").and_then(Value::as_bool) == Some(true)
                })
            });
            if let Some(email) = primary.and_then(|e| e.get("email")) {
                profile.insert("email".into(), email.clone());
            }
        }
    }
    if conn.kind == ConnectionKind::Github {
        // `/user` never has `groups`; only the teams call below may set it.
        profile.remove("groups");
        if conn.scopes.iter().any(|s| s == "read:org") {
            let teams = github_teams(http, conn, &access).await?;
            profile.insert("groups".into(), Value::from(teams));
        }
    }
    let claims = map_profile(conn, &profile);
    Ok(UpstreamIdentity {
        connection: conn.id.clone(),
        subject,
        claims,
        amr: Vec::new(),
        raw: profile,
    })
}

/// Map a profile (GitHub's `/user` with the verified primary address as `email`, or a
/// generic userinfo) to local attributes.
pub(super) fn map_profile(
    conn: &Connection,
    profile: &serde_json::Map<String, Value>,
) -> std::collections::BTreeMap<String, Value> {
    let defaults = match conn.kind {
        ConnectionKind::Github => GITHUB,
        _ => GENERIC,
    };
    let mut claims = map_claims(conn, profile, defaults);
    if conn.kind == ConnectionKind::Github && claims.contains_key("email") {
        // Only the verified primary address is ever put in `email` for GitHub.
        claims.insert("email_verified".into(), json!(true));
    }
    claims
}

/// The most bytes of GitHub's teams listing a sign-in reads: a hundred teams in
/// GitHub's shape (each with its URLs and organisation) pass [`USERINFO_MAX`](crate::limits::USERINFO_MAX).
pub const ANSWER_MAX: usize = 1024 * 1024;

/// The user's teams as `organisation/team-slug`: the first page of GitHub's listing at
/// its largest (`per_page=100`), which is also as many groups as a sign-in keeps
/// ([`crate::provision::UPSTREAM_NAMES_MAX`]); a team without both names is skipped.
async fn github_teams(
    http: &reqwest::Client,
    conn: &Connection,
    token: &str,
) -> Result<Vec<String>, UpstreamError> {
    let user = url_of(conn, "userinfo_url", &conn.userinfo_url)?;
    let mut url = url::Url::parse(&format!("{}/teams", user.trim_end_matches('/')))
        .map_err(|e| UpstreamError::Config(e.to_string()))?;
    url.query_pairs_mut().append_pair(
        "per_page",
        &crate::provision::UPSTREAM_NAMES_MAX.to_string(),
    );
    let listed = get_json_value(http, conn, url.as_str(), token, ANSWER_MAX).await?;
    let Value::Array(teams) = listed else {
        return Err(UpstreamError::Unreachable(
            conn.display_name.clone(),
            format!("{} did not answer a list", url.path()),
        ));
    };
    Ok(teams
        .iter()
        .filter_map(|t| {
            let org = t.pointer("/organization/login").and_then(Value::as_str)?;
            let slug = t.get("slug").and_then(Value::as_str)?;
            Some(format!("{org}/{slug}"))
        })
        .take(crate::provision::UPSTREAM_NAMES_MAX)
        .collect())
}

/// A profile, an address list or a listing from the provider's API: JSON, at most
/// `max` bytes, within five seconds.
async fn get_json_value(
    http: &reqwest::Client,
    conn: &Connection,
    url: &str,
    token: &str,
    max: usize,
) -> Result<Value, UpstreamError> {
    fetch::json(
        http,
        url,
        Some(token),
        max,
        std::time::Duration::from_secs(5),
    )
    .await
    .map_err(|e| match e {
        fetch::FetchError::Status { .. } => {
            UpstreamError::Provider(conn.display_name.clone(), e.to_string())
        }
        other => UpstreamError::Unreachable(conn.display_name.clone(), other.to_string()),
    })
}

async fn get_json(
    http: &reqwest::Client,
    conn: &Connection,
    url: &str,
    token: &str,
) -> Result<serde_json::Map<String, Value>, UpstreamError> {
    match get_json_value(http, conn, url, token, crate::limits::USERINFO_MAX).await? {
        Value::Object(m) => Ok(m),
        _ => Err(UpstreamError::Unreachable(
            conn.display_name.clone(),
            format!("{url} did not answer an object"),
        )),
    }
}
