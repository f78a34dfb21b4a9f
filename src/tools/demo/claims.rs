//! How Thrift reads an ID token to a person: the payload's claims in a readable order,
//! each with a line saying what it is, timestamps as dates, and a short "signed in
//! with …" taken from `sub` and `amr`.

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Serialize)]
pub(super) struct ClaimRow {
    pub name: String,
    pub value: String,
    pub note: &'static str,
}

pub(super) fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

pub(super) fn display_name(claims: &Map<String, Value>) -> String {
    ["name", "preferred_username", "email", "sub"]
        .iter()
        .find_map(|c| str_claim(claims, c))
        .unwrap_or("you")
        .to_string()
}

/// How the user signed in, from `amr` as Usher reports it.
pub(super) fn signed_in_via(claims: &Map<String, Value>) -> String {
    let amr: Vec<&str> = claims
        .get("amr")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let sub = str_claim(claims, "sub").unwrap_or_default();
    let first = match sub.split_once('|') {
        Some((connection, _)) => title_case(connection),
        None if amr.contains(&"pwd") => "a password".to_string(),
        None if amr.contains(&"fed") => "a social account".to_string(),
        None => "Usher".to_string(),
    };
    if amr.iter().any(|m| matches!(*m, "otp" | "mfa")) {
        format!("{first} and a one-time code")
    } else {
        first
    }
}

fn title_case(id: &str) -> String {
    match id {
        "github" => "GitHub".into(),
        "google" => "Google".into(),
        other => other.to_string(),
    }
}

pub(super) fn jwt_payload(jwt: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The claims in a readable order, each with a line saying what it is.
pub(super) fn claim_rows(claims: &Map<String, Value>) -> Vec<ClaimRow> {
    const ORDER: &[(&str, &str)] = &[
        ("sub", "Who you are to Usher. Accounts have ids starting with u_; a subject without an account (pass-through) is connection|upstream id."),
        ("name", "Your name."),
        ("preferred_username", "Your username."),
        ("email", "Your email address."),
        ("email_verified", "Whether the address is verified."),
        ("amr", "How you proved who you are: pwd password, fed an upstream provider, otp a one-time code, mfa more than one factor."),
        ("auth_time", "When you last actively signed in."),
        ("iss", "Who issued this token: Usher."),
        ("aud", "Who the token is for: Thrift's client id."),
        ("azp", "The party the token was issued to."),
        ("iat", "When the token was issued."),
        ("exp", "When the token expires."),
        ("nonce", "Ties the token to the sign-in Thrift started."),
        ("at_hash", "Binds the token to the access token issued with it."),
        ("sid", "Usher's session id, for sign-out."),
        ("updated_at", "When the profile last changed."),
        ("picture", "A picture of you, as the upstream provider gave it."),
        ("profile", "Your profile page at the upstream provider."),
    ];
    let mut rows = Vec::new();
    for (name, note) in ORDER {
        if let Some(v) = claims.get(*name) {
            rows.push(ClaimRow {
                name: (*name).to_string(),
                value: show_value(name, v),
                note,
            });
        }
    }
    for (name, v) in claims {
        if !ORDER.iter().any(|(n, _)| n == name) {
            rows.push(ClaimRow {
                name: name.clone(),
                value: show_value(name, v),
                note: "",
            });
        }
    }
    rows
}

fn show_value(name: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if matches!(name, "iat" | "exp" | "auth_time" | "updated_at") => {
            match n.as_u64() {
                Some(t) => format!("{t} ({})", crate::timefmt::rfc3339(t)),
                None => n.to_string(),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_reads_sub_and_amr() {
        let claims = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            signed_in_via(&claims(
                serde_json::json!({"sub": "github|583231", "amr": ["fed"]})
            )),
            "GitHub"
        );
        assert_eq!(
            signed_in_via(&claims(
                serde_json::json!({"sub": "u_x", "amr": ["pwd", "otp", "mfa"]})
            )),
            "a password and a one-time code"
        );
    }
}
