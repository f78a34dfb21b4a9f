//! Authenticators: one module per kind of credential. Each checks what the user
//! presented and answers with a subject or a reason; none of them knows about HTTP.

pub mod password;
