//! Bounded input: the length and count caps on everything a request may make Usher
//! parse, hash, store or audit, in one place so every check and the docs
//! (`docs/security.md`, "Bounded input") name the same numbers.
//!
//! A cap is checked at the narrowest point before the value is used: before a parser
//! runs, before Argon2 sees a password, before a flow, counter or audit event holds the
//! text. Text a person types (names, usernames, emails) is counted in characters, so a
//! cap never depends on the script it is written in; what a protocol carries (OAuth
//! parameters, passwords fed to Argon2) in bytes, since that is what costs. A value over
//! its cap is refused, never truncated: a silently shortened username or `state` would
//! name something else.

/// A sign-in name as typed (a username or an email address), in characters. SCIM's
/// `userName` has the same cap, so every account it creates can sign in.
pub const USERNAME_MAX: usize = 256;
/// An email address, in characters (RFC 5321 allows 254 octets in a path).
pub const EMAIL_MAX: usize = 254;
/// A password, in bytes: Argon2's work must not grow with an attacker's input, and
/// no passphrase a person types comes near it.
pub const PASSWORD_MAX: usize = 1024;
/// A display, given or family name, in characters.
pub const NAME_MAX: usize = 256;
/// A URL Usher keeps (a picture, a redirect URI), in bytes.
pub const URL_MAX: usize = 2048;
/// A SCIM `externalId`, in characters.
pub const EXTERNAL_ID_MAX: usize = 256;
/// One role name, in characters.
pub const ROLE_MAX: usize = 128;
/// Roles one account may hold, and one group may give.
pub const ROLES_MAX: usize = 100;
/// A group's display name, in characters.
pub const GROUP_NAME_MAX: usize = 256;
/// Members of one group. Every write of a group rewrites its member list, so the cap
/// also bounds what one write costs.
pub const GROUP_MEMBERS_MAX: usize = 10_000;
/// Member values one SCIM request may name (a POST or PUT body's `members`, or the
/// values of all of a PATCH's operations together).
pub const SCIM_MEMBERS_PER_REQUEST_MAX: usize = 1_000;

/// A SCIM filter expression, in bytes, checked before it is tokenized.
pub const SCIM_FILTER_MAX: usize = 2048;
/// How deeply a SCIM filter may nest `(…)` and `not (…)`; the parser refuses to descend
/// further, so its recursion is bounded whatever the text.
pub const SCIM_FILTER_DEPTH_MAX: usize = 32;
/// Operations in one SCIM PATCH request.
pub const SCIM_PATCH_OPS_MAX: usize = 100;

/// Authorization request parameters, in bytes. `state` and `nonce` are opaque to Usher
/// but kept in the flow and echoed back, so they are bounded like everything stored.
pub const STATE_MAX: usize = 2048;
pub const NONCE_MAX: usize = 512;
pub const LOGIN_HINT_MAX: usize = 256;
pub const ACR_VALUES_MAX: usize = 512;
pub const SCOPE_MAX: usize = 1024;
pub const CLIENT_ID_MAX: usize = 256;
/// RFC 7636 §4.2: a challenge (and §4.1 a verifier) is at most 128 characters.
pub const CODE_CHALLENGE_MAX: usize = 128;
/// Any other parameter of an authorization or token request, in bytes.
pub const PARAM_MAX: usize = 4096;
/// A parameter name, in bytes.
pub const PARAM_NAME_MAX: usize = 64;
/// Parameters in one authorization or token request (OpenID Connect defines about
/// twenty; a request with more is not a real client's).
pub const PARAMS_MAX: usize = 32;

/// An upstream provider's userinfo answer, in bytes: a profile is a few hundred bytes;
/// the cap stops a provider (or whoever sits in its place) from filling a sign-in's
/// record and the account with megabytes.
pub const USERINFO_MAX: usize = 64 * 1024;
/// An upstream provider's discovery document, in bytes (real ones are a few KiB).
pub const DISCOVERY_MAX: usize = 256 * 1024;

/// Request header names an app's script may be shown (`sign_in.request_headers`).
pub const SCRIPT_HEADERS_MAX: usize = 32;
/// One request header value a script sees, in bytes; a longer one is left out (never
/// cut, since a shortened value would be another value).
pub const SCRIPT_HEADER_VALUE_MAX: usize = 1024;

/// How deeply a configuration file may nest mappings and sequences. Usher's own
/// schema needs fewer than ten levels; the position walk stops past the cap, so the
/// paths it records (which grow with the depth) stay small.
pub const CONFIG_DEPTH_MAX: usize = 64;

/// One line of an audit event's detail, and its `sub`, `app`, `kind` and `outcome`, in
/// characters; longer text is cut with a marker, since the event must still be written.
pub const AUDIT_LINE_MAX: usize = 512;
/// Detail lines of one audit event; the rest are summarised in one last line.
pub const AUDIT_LINES_MAX: usize = 64;

/// A value over its cap: which field, the cap and what it counts, for a message that
/// never repeats the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} is too long (at most {max} {unit})")]
pub struct TooLong {
    pub field: &'static str,
    pub max: usize,
    /// `characters`, `bytes`, or what else was counted (`values`).
    pub unit: &'static str,
}

/// `value` has at most `max` characters. Counting stops at the cap, so a megabyte of
/// text costs no more than `max` steps past the cheap byte-length test.
pub fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), TooLong> {
    // Every character is at least one byte: a short string needs no counting.
    if value.len() <= max || value.chars().nth(max).is_none() {
        Ok(())
    } else {
        Err(TooLong {
            field,
            max,
            unit: "characters",
        })
    }
}

/// `value` has at most `max` bytes.
pub fn check_bytes(field: &'static str, value: &str, max: usize) -> Result<(), TooLong> {
    if value.len() <= max {
        Ok(())
    } else {
        Err(TooLong {
            field,
            max,
            unit: "bytes",
        })
    }
}

/// `value` cut to at most `max` characters, with `…` in place of what was cut.
pub fn clip(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_string(),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = value
                .char_indices()
                .nth(keep)
                .map_or(value.len(), |(i, _)| i);
            format!("{}…", &value[..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_are_counted_for_text_and_bytes_for_protocol_values() {
        assert!(check_len("name", "ééé", 3).is_ok(), "3 characters, 6 bytes");
        assert_eq!(
            check_len("name", "éééé", 3),
            Err(TooLong {
                field: "name",
                max: 3,
                unit: "characters"
            })
        );
        let e = check_bytes("state", "ééé", 3).unwrap_err();
        assert_eq!(e.to_string(), "state is too long (at most 3 bytes)");
        assert!(check_bytes("state", "abc", 3).is_ok());
    }

    #[test]
    fn clipping_keeps_whole_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("ééééé", 3).chars().count(), 3);
        assert_eq!(clip("", 0), "");
    }
}
