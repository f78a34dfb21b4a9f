//! Upstream identity providers: sending the browser to a connection and making sense of
//! what comes back.
//!
//! Every round trip carries a random `state` (single use, bound to the flow and the
//! browser), a PKCE S256 challenge and, for OIDC, a nonce. The answer is checked here —
//! `iss` of the response (mix-up defence), the ID token's signature, issuer, audience,
//! expiry and nonce through the `openidconnect` crate, GitHub's API through `oauth2` and
//! plain HTTP — and becomes an [`UpstreamIdentity`] with claims mapped to local
//! attribute names. Provisioning (what to do with that identity) is `provision`'s job.

mod fetch;
mod oauth;
mod oidc;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Connection, ConnectionKind};
use crate::crypto::random_token;

/// What a connection's round trip established about the user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamIdentity {
    pub connection: String,
    /// The upstream's stable id for the user (`sub`, GitHub's numeric id).
    pub subject: String,
    /// Local attribute names (`email`, `name`, `preferred_username`, …) → values.
    pub claims: BTreeMap<String, Value>,
    /// What the upstream says it did (its `amr`).
    pub amr: Vec<String>,
    /// The upstream's answer as it came (an ID token's claims without the protocol
    /// ones, or the profile), so a recorded sign-in can be replayed as a fixture.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub raw: serde_json::Map<String, Value>,
}

impl UpstreamIdentity {
    pub fn claim_str(&self, name: &str) -> Option<String> {
        self.claims
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    pub fn email_verified(&self) -> bool {
        self.claims
            .get("email_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// The secrets of one round trip, kept in the flow until the answer arrives.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    pub connection: String,
    pub step: usize,
    /// Hash of the `state` sent upstream.
    pub state_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub started_at: u64,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("connection", &self.connection)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// Why a round trip failed. `Denied` is the user's choice; everything else is a
/// protocol or safety failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the user denied access at {0}")]
    Denied(String),
    #[error("{0} answered with an error: {1}")]
    Provider(String, String),
    #[error("the answer claims to come from `{got}`, not from {connection}")]
    WrongIssuer { connection: String, got: String },
    #[error("the ID token from {0} is not valid: {1}")]
    InvalidToken(String, String),
    #[error("{0} could not be reached or answered nonsense: {1}")]
    Unreachable(String, String),
    #[error("{0} did not say who the user is")]
    NoSubject(String),
    #[error("the connection is misconfigured: {0}")]
    Config(String),
    #[error("connection `{connection}`: the provider's discovery document names the issuer `{discovered}`, but the configuration says `{configured}`; they must match exactly (a trailing slash counts)")]
    IssuerMismatch {
        connection: String,
        configured: String,
        discovered: String,
    },
    #[error("{0}'s userinfo cannot be used: {1}")]
    Userinfo(String, String),
}

/// What reading one connection's discovery document showed.
#[derive(Debug, Clone, PartialEq)]
pub enum IssuerCheck {
    /// The document names the configured issuer.
    Matches(String),
    /// The document names another issuer ([`UpstreamError::IssuerMismatch`]).
    Differs(UpstreamError),
    /// The document could not be read (connection id, why).
    Unchecked(String, String),
}

/// The parameters the upstream sent to the callback.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Discovery documents, fetched once per connection and kept for a while.
pub struct Upstreams {
    http: reqwest::Client,
    discovered: Mutex<HashMap<String, (Instant, oidc::Metadata)>>,
}

const DISCOVERY_TTL: Duration = Duration::from_secs(600);

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    pub fn new() -> Upstreams {
        let http = reqwest::Client::builder()
            // Following redirects from an upstream's token endpoint is an SSRF hazard.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent("Usher")
            .build()
            .unwrap_or_default();
        Upstreams {
            http,
            discovered: Mutex::new(HashMap::new()),
        }
    }

    async fn metadata(&self, conn: &Connection) -> Result<oidc::Metadata, UpstreamError> {
        let cached = self
            .discovered
            .lock()
            .ok()
            .and_then(|m| m.get(&conn.id).cloned())
            // A reload may have changed the issuer: a document read for another one is
            // not this connection's any more.
            .filter(|(at, meta)| {
                at.elapsed() < DISCOVERY_TTL && Some(meta.issuer()) == conn.issuer_text.as_deref()
            })
            .map(|(_, meta)| meta);
        if let Some(meta) = cached {
            return Ok(meta);
        }
        let meta = oidc::discover(&self.http, conn).await?;
        if let Ok(mut m) = self.discovered.lock() {
            m.insert(conn.id.clone(), (Instant::now(), meta.clone()));
        }
        Ok(meta)
    }

    /// Read the discovery document of every OIDC connection of `config`, one after
    /// another (each bounded by the fetch timeout), as `usher check` and start-up do: a connection whose provider names another
    /// issuer is a configuration error (every sign-in through it would fail), one that
    /// cannot be reached now is only reported, since it may be back by the time anyone
    /// signs in.
    pub async fn check_issuers(&self, config: &crate::config::Config) -> Vec<IssuerCheck> {
        let mut out = Vec::new();
        for conn in config.connections.values() {
            if !matches!(conn.kind, ConnectionKind::Oidc | ConnectionKind::Google) {
                continue;
            }
            out.push(match self.metadata(conn).await {
                Ok(_) => IssuerCheck::Matches(conn.id.clone()),
                Err(e @ UpstreamError::IssuerMismatch { .. }) => IssuerCheck::Differs(e),
                Err(e) => IssuerCheck::Unchecked(conn.id.clone(), e.to_string()),
            });
        }
        out
    }

    /// Forget a connection's discovery document (its keys may have rotated).
    fn forget(&self, conn: &Connection) {
        if let Ok(mut m) = self.discovered.lock() {
            m.remove(&conn.id);
        }
    }

    /// Start a round trip: the URL to send the browser to, and what to keep.
    pub async fn begin(
        &self,
        conn: &Connection,
        callback: &str,
        step: usize,
        now: u64,
    ) -> Result<(String, Pending, String), UpstreamError> {
        let state = random_token(32);
        let nonce = random_token(32);
        let verifier = random_token(48);
        let url = match conn.kind {
            ConnectionKind::Oidc | ConnectionKind::Google => {
                let meta = self.metadata(conn).await?;
                oidc::authorize_url(&meta, conn, callback, &state, &nonce, &verifier)?
            }
            ConnectionKind::Github | ConnectionKind::Oauth2 => {
                oauth::authorize_url(conn, callback, &state, &verifier)?
            }
        };
        let pending = Pending {
            connection: conn.id.clone(),
            step,
            state_hash: crate::crypto::token_hash(&state),
            nonce,
            pkce_verifier: verifier,
            started_at: now,
        };
        Ok((url, pending, state))
    }

    /// Finish a round trip whose `state` already matched `pending`.
    pub async fn finish(
        &self,
        conn: &Connection,
        callback: &str,
        pending: &Pending,
        answer: &Callback,
    ) -> Result<UpstreamIdentity, UpstreamError> {
        if let Some(error) = &answer.error {
            return Err(if error == "access_denied" {
                UpstreamError::Denied(conn.display_name.clone())
            } else {
                UpstreamError::Provider(
                    conn.display_name.clone(),
                    answer
                        .error_description
                        .clone()
                        .map(|d| format!("{error}: {d}"))
                        .unwrap_or_else(|| error.clone()),
                )
            });
        }
        let code = answer
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                UpstreamError::Provider(conn.display_name.clone(), "no code in the answer".into())
            })?;
        match conn.kind {
            ConnectionKind::Oidc | ConnectionKind::Google => {
                let meta = self.metadata(conn).await?;
                check_iss(
                    conn,
                    answer.iss.as_deref(),
                    Some(meta.issuer()),
                    meta.iss_parameter(),
                )?;
                let result = oidc::exchange(&self.http, &meta, conn, callback, pending, code).await;
                if matches!(result, Err(UpstreamError::InvalidToken(..))) {
                    // A key rotation upstream looks like a bad signature until the
                    // JWKS is fetched again; the next attempt will see fresh keys.
                    self.forget(conn);
                }
                result
            }
            ConnectionKind::Github | ConnectionKind::Oauth2 => {
                check_iss(
                    conn,
                    answer.iss.as_deref(),
                    conn.issuer_text.as_deref(),
                    false,
                )?;
                oauth::exchange(&self.http, conn, callback, pending, code).await
            }
        }
    }
}

/// RFC 9207: an `iss` in the response must be the connection's issuer, compared as a
/// string (§2.4: no normalisation, so a trailing slash counts); a provider that promises
/// to send one must send it. Without this, a malicious provider could replay a code it
/// received for another connection (the mix-up attack).
fn check_iss(
    conn: &Connection,
    got: Option<&str>,
    expected: Option<&str>,
    required: bool,
) -> Result<(), UpstreamError> {
    match (got, expected) {
        (Some(got), Some(expected)) if got == expected => Ok(()),
        (Some(got), _) => Err(UpstreamError::WrongIssuer {
            connection: conn.display_name.clone(),
            got: got.to_string(),
        }),
        (None, _) if required => Err(UpstreamError::WrongIssuer {
            connection: conn.display_name.clone(),
            got: "(none)".into(),
        }),
        (None, _) => Ok(()),
    }
}

/// An identity from claims given directly — what the fixture runner and recorded
/// fixtures use in place of a live round trip. The claims are in the upstream's own
/// shape (an ID token's payload, or GitHub's `/user` with the verified primary
/// `email`), and are mapped exactly as a live answer would be.
pub fn identity_from_claims(
    conn: &Connection,
    raw: &serde_json::Map<String, Value>,
) -> Result<UpstreamIdentity, UpstreamError> {
    let (claims, subject) = match conn.kind {
        ConnectionKind::Oidc | ConnectionKind::Google => {
            (map_claims(conn, raw, oidc::DEFAULTS), raw.get("sub"))
        }
        ConnectionKind::Github | ConnectionKind::Oauth2 => (
            oauth::map_profile(conn, raw),
            raw.get("id").or_else(|| raw.get("sub")),
        ),
    };
    let subject = match subject {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(UpstreamError::NoSubject(conn.display_name.clone())),
    };
    let amr = raw
        .get("amr")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(UpstreamIdentity {
        connection: conn.id.clone(),
        subject,
        claims,
        amr,
        raw: raw.clone(),
    })
}

/// Map upstream claims to local attribute names: the kind's defaults, then the
/// connection's `claims:` (local ← upstream), which win.
pub fn map_claims(
    conn: &Connection,
    raw: &serde_json::Map<String, Value>,
    defaults: &[(&str, &str)],
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (local, upstream) in defaults {
        if let Some(v) = raw.get(*upstream).filter(|v| !v.is_null()) {
            out.insert(local.to_string(), v.clone());
        }
    }
    for (local, upstream) in &conn.claims {
        match raw.get(upstream).filter(|v| !v.is_null()) {
            Some(v) => {
                out.insert(local.clone(), v.clone());
            }
            None => {
                out.remove(local);
            }
        }
    }
    out
}
