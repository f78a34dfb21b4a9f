//! Authenticators: one module per kind of credential. Each checks what the user
//! presented and answers with a subject or a reason; none of them knows about HTTP.

pub mod email_otp;
pub mod password;
pub mod recovery;
pub mod sealing;
pub mod totp;
