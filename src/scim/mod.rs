//! SCIM 2.0 (RFC 7643 resources, RFC 7644 protocol) over Usher's accounts: the `User`
//! resource and its Usher extension, filters, PATCH, ETags, the discovery documents,
//! and the admin operations behind them. No HTTP here: the web layer authenticates the
//! caller (a `client_credentials` token with the `scim` scope), hands over the parsed
//! request, and turns an [`Answer`] or a [`ScimError`] into the response.
//!
//! Every operation is blocking (store, flush, Argon2); the web layer runs it on the
//! blocking pool. Writes are audited as `admin.*` events naming the client.

pub mod filter;
pub mod groups;
mod patch;
pub mod project;
mod resource;
pub mod schemas;
mod users;

use serde_json::{json, Value};

use crate::store::StoreError;

pub use resource::{Draft, Record};
pub use users::Admin;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const USHER_USER_SCHEMA: &str = "urn:usher:params:scim:schemas:extension:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const USHER_GROUP_SCHEMA: &str = "urn:usher:params:scim:schemas:extension:2.0:Group";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Media type of every SCIM body.
pub const MEDIA_TYPE: &str = "application/scim+json";

/// A successful SCIM answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Option<Value>,
    /// `meta.version` of the resource, sent as the `ETag` header.
    pub etag: Option<String>,
    /// `meta.location` of a created resource, sent as the `Location` header.
    pub location: Option<String>,
}

impl Answer {
    pub fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            body: Some(body),
            etag: None,
            location: None,
        }
    }
}

/// A SCIM error (RFC 7644 §3.12): an HTTP status, an optional `scimType`, a detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// 400 with a `scimType` (`invalidFilter`, `invalidValue`, `invalidSyntax`, …).
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(404, None, format!("{what} not found"))
    }

    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some("uniqueness"), detail)
    }

    pub fn precondition() -> Self {
        Self::new(
            412,
            None,
            "the resource has changed since that version (If-Match); fetch it again",
        )
    }

    /// When the store could not be reached (503): the internal detail, which the web
    /// layer logs under a request id while the client is told to retry (`Retry-After`).
    pub fn unavailable(&self) -> Option<&str> {
        (self.status == 503).then_some(&self.detail)
    }

    /// The error body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        body
    }
}

#[cfg(test)]
mod tests;

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                ScimError::uniqueness(format!("the {what} is already taken by another account"))
            }
            StoreError::NotFound => ScimError::not_found("User"),
            StoreError::Unavailable(detail) => ScimError::new(503, None, detail),
            other => {
                tracing::error!(error = %other, "store failure in the SCIM API");
                ScimError::new(500, None, "the server could not complete the request")
            }
        }
    }
}
