//! The one place errors become HTTP. Users get a page with a request id; the log gets
//! the internals under the same id.

use axum::http::StatusCode;

use crate::store::StoreError;

#[derive(Debug)]
pub enum WebError {
    /// Something the user can understand and maybe fix.
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
        hint: Option<String>,
        back_url: Option<String>,
    },
    /// A fault on our side; the user sees a generic page.
    Internal(String),
}

impl WebError {
    pub fn page(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        WebError::Page {
            status,
            title,
            message: message.into(),
            hint: None,
            back_url: None,
        }
    }

    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let WebError::Page { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::page(
            StatusCode::BAD_REQUEST,
            "Something is wrong with this request",
            message,
        )
    }

    /// The flow is gone, expired, or belongs to another browser.
    pub fn flow_lost() -> Self {
        Self::page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            "This sign-in link is no longer valid.",
        )
        .with_hint("Go back to the application and start signing in again.")
    }

    pub fn csrf() -> Self {
        Self::page(
            StatusCode::FORBIDDEN,
            "The form could not be accepted",
            "The form was missing its security token or it did not match this browser.",
        )
        .with_hint("Reload the page and try again. If you use several tabs, use the newest one.")
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        WebError::Internal(e.to_string())
    }
}

impl From<minijinja::Error> for WebError {
    fn from(e: minijinja::Error) -> Self {
        WebError::Internal(format!("template: {e:#}"))
    }
}

impl From<tokio::task::JoinError> for WebError {
    fn from(e: tokio::task::JoinError) -> Self {
        WebError::Internal(format!("background task: {e}"))
    }
}
