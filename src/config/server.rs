//! `server:`: how the server meets its clients, from the YAML to the model: the
//! transport limits of the listener, and which reverse proxies are believed about the
//! client's address.
//!
//! These bound what one client can make the server hold: a connection whose headers
//! never finish, a request that never ends, more sockets or requests than the machine
//! can serve, and bodies larger than any form or SCIM document Usher reads. Every one
//! has a default that is on, so an operator who never writes `server:` is protected;
//! zero is refused rather than read as "unlimited". They are read when the listener
//! starts, so changing them takes effect on restart, like `listen`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::locate::{item, Part};
use super::raw::lenient;
use super::raw::RawForwardedHeader;
use super::report::Report;
use crate::client_addr::{Cidr, ForwardedHeader};

/// `server:`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Seconds a client has to send a request's headers, and the longest an idle
    /// keep-alive connection is kept (default 10).
    #[serde(default = "d_header_read", deserialize_with = "lenient")]
    pub header_read_timeout_seconds: u64,
    /// Seconds from the headers to the end of the response: reading the body and
    /// running the handler (default 30).
    #[serde(default = "d_request", deserialize_with = "lenient")]
    pub request_timeout_seconds: u64,
    /// Open connections at once; further clients wait in the listen queue until one
    /// closes (default 1024).
    #[serde(default = "d_connections", deserialize_with = "lenient")]
    pub max_connections: usize,
    /// Requests handled at once; beyond that a request is answered 503 at once
    /// (default 256).
    #[serde(default = "d_in_flight", deserialize_with = "lenient")]
    pub max_in_flight: usize,
    /// Seconds in-flight requests get to finish on SIGTERM or Ctrl-C (default 10).
    #[serde(default = "d_grace", deserialize_with = "lenient")]
    pub shutdown_grace_seconds: u64,
    /// Largest request body of the browser forms and OAuth endpoints, in bytes
    /// (default 16384).
    #[serde(default = "d_form", deserialize_with = "lenient")]
    pub max_form_bytes: usize,
    /// Largest request body of the SCIM and admin JSON APIs, in bytes (default 262144).
    #[serde(default = "d_json", deserialize_with = "lenient")]
    pub max_json_bytes: usize,
    /// Which header the trusted proxies write the client address into:
    /// `x-forwarded-for` (default) or `forwarded` (RFC 7239). Only that one is read.
    #[serde(default)]
    pub forwarded_header: RawForwardedHeader,
    /// Reverse proxies (addresses or CIDR ranges) whose forwarded header is believed;
    /// from any other peer the header is ignored (default: none).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            header_read_timeout_seconds: d_header_read(),
            request_timeout_seconds: d_request(),
            max_connections: d_connections(),
            max_in_flight: d_in_flight(),
            shutdown_grace_seconds: d_grace(),
            max_form_bytes: d_form(),
            max_json_bytes: d_json(),
            forwarded_header: RawForwardedHeader::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

fn d_header_read() -> u64 {
    10
}
fn d_request() -> u64 {
    30
}
fn d_connections() -> usize {
    1024
}
fn d_in_flight() -> usize {
    256
}
fn d_grace() -> u64 {
    10
}
fn d_form() -> usize {
    16 * 1024
}
fn d_json() -> usize {
    256 * 1024
}

/// `server:`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// How long a client may take over a request's headers (and idle between requests).
    pub header_read_timeout: Duration,
    /// How long a request may take from its headers to its response.
    pub request_timeout: Duration,
    /// Connections served at once; the listener stops accepting at this many.
    pub max_connections: usize,
    /// Requests handled at once; more are refused with 503.
    pub max_in_flight: usize,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub shutdown_grace: Duration,
    /// Body limit of every route but the JSON APIs.
    pub max_form_bytes: usize,
    /// Body limit of `/scim/` and `/admin/`.
    pub max_json_bytes: usize,
    /// The header trusted proxies write the client address into.
    pub forwarded_header: ForwardedHeader,
    /// Peers whose forwarded header is believed; empty means the TCP peer is always
    /// the client.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        settings(&RawServer::default(), Vec::new())
    }
}

fn settings(raw: &RawServer, trusted_proxies: Vec<Cidr>) -> ServerSettings {
    ServerSettings {
        forwarded_header: match raw.forwarded_header {
            RawForwardedHeader::XForwardedFor => ForwardedHeader::XForwardedFor,
            RawForwardedHeader::Forwarded => ForwardedHeader::Forwarded,
        },
        trusted_proxies,
        header_read_timeout: Duration::from_secs(raw.header_read_timeout_seconds),
        request_timeout: Duration::from_secs(raw.request_timeout_seconds),
        max_connections: raw.max_connections,
        max_in_flight: raw.max_in_flight,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_seconds),
        max_form_bytes: raw.max_form_bytes,
        max_json_bytes: raw.max_json_bytes,
    }
}

/// Check `server:`; every limit must be above zero, since zero would either refuse
/// every request or (read as "none") switch the protection off.
pub fn resolve(
    report: &mut Report,
    file: usize,
    raw: Option<&RawServer>,
) -> Option<ServerSettings> {
    let Some(raw) = raw else {
        return Some(ServerSettings::default());
    };
    let fields: [(&str, u64); 7] = [
        (
            "header_read_timeout_seconds",
            raw.header_read_timeout_seconds,
        ),
        ("request_timeout_seconds", raw.request_timeout_seconds),
        ("max_connections", raw.max_connections as u64),
        ("max_in_flight", raw.max_in_flight as u64),
        ("shutdown_grace_seconds", raw.shutdown_grace_seconds),
        ("max_form_bytes", raw.max_form_bytes as u64),
        ("max_json_bytes", raw.max_json_bytes as u64),
    ];
    let mut ok = true;
    for (key, value) in fields {
        if value == 0 {
            let path = format!("server.{key}");
            report.error(
                file,
                &path,
                Part::Value,
                format!("{path} must be greater than 0; every transport limit stays on"),
            );
            ok = false;
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        match text.parse::<Cidr>() {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => {
                let path = item("server.trusted_proxies", i);
                report.error(
                    file,
                    &path,
                    Part::Value,
                    format!("{path}: {e}; give an address or a range like `10.0.0.0/8` or `2001:db8::/32`"),
                );
                ok = false;
            }
        }
    }
    ok.then(|| settings(raw, trusted_proxies))
}
