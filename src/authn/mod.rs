//! Authenticators: one module per kind of credential. Each checks what the user
//! presented and answers with a subject or a reason; none of them knows about HTTP.

pub mod attempts;
pub mod email_otp;
pub mod password;
pub mod recovery;
pub mod sealing;
pub mod steps;
pub mod totp;

/// Reset an account's TOTP: the authenticator and its recovery codes are removed and its
/// lock cleared, so the next sign-in that needs TOTP enrols again. For the admin API and
/// My Account. Blocking (flushes).
pub async fn reset_totp(
    store: &dyn crate::store::Store,
    user_id: &str,
) -> crate::store::StoreResult<()> {
    store.delete_totp(user_id).await?;
    store.put_recovery_codes(user_id, &[]).await?;
    attempts::forgive(store, &steps::otp_key(user_id)).await?;
    store.flush().await
}
