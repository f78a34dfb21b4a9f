//! The YAML for how clients are seen and limited: `server.trusted_proxies` and
//! `server.forwarded_header` (whose word about the client address is believed), and
//! `security.throttle` (how many requests of each kind one address may make). Kept
//! beside `raw.rs` and re-exported from it, with the same rules: unknown keys are
//! errors, defaults live next to their keys.

use serde::{Deserialize, Serialize};

use super::raw::lenient;

/// `server.forwarded_header`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
pub enum RawForwardedHeader {
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// `security.throttle:` — per client address, per kind of request.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    /// Throttle at all (default true).
    #[serde(default = "d_true", deserialize_with = "lenient")]
    pub enabled: bool,
    /// Password and code posts and the linking proof (default 30 per 60 s).
    #[serde(default = "d_sign_in")]
    pub sign_in: RawRate,
    /// Sign-up posts (default 10 per 600 s).
    #[serde(default = "d_sign_up")]
    pub sign_up: RawRate,
    /// Email code sends (default 10 per 600 s).
    #[serde(default = "d_email")]
    pub email: RawRate,
    /// `/token` requests (default 600 per 60 s).
    #[serde(default = "d_token")]
    pub token: RawRate,
    /// SCIM and admin API requests (default 600 per 60 s).
    #[serde(default = "d_api")]
    pub api: RawRate,
}

/// One throttle: at most `max` requests in any `seconds`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    /// Requests allowed in the window.
    #[serde(deserialize_with = "lenient")]
    pub max: u32,
    /// The window, in seconds.
    #[serde(deserialize_with = "lenient")]
    pub seconds: u64,
}

fn d_true() -> bool {
    true
}
fn d_sign_in() -> RawRate {
    RawRate {
        max: 30,
        seconds: 60,
    }
}
fn d_sign_up() -> RawRate {
    RawRate {
        max: 10,
        seconds: 600,
    }
}
fn d_email() -> RawRate {
    RawRate {
        max: 10,
        seconds: 600,
    }
}
fn d_token() -> RawRate {
    RawRate {
        max: 600,
        seconds: 60,
    }
}
fn d_api() -> RawRate {
    RawRate {
        max: 600,
        seconds: 60,
    }
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle {
            enabled: true,
            sign_in: d_sign_in(),
            sign_up: d_sign_up(),
            email: d_email(),
            token: d_token(),
            api: d_api(),
        }
    }
}
