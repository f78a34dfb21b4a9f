//! CPU-heavy work (Argon2, drawing a QR code, a script at its operation limit) moved
//! off the async workers, so one slow request never stalls the others on its worker.
//! Store calls stay where they are: they are awaited, not computed.

/// The work could not finish: the runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the server is shutting down")]
pub struct Cancelled;

/// Run `work` on the blocking pool and wait for it; inline when there is no runtime
/// (a command-line tool). A panic in `work` is carried on to the caller, as it would be
/// inline.
pub async fn cpu<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Cancelled> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(work());
    }
    // The caller's span (its request id) goes along, for anything the work logs.
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(work)).await {
        Ok(value) => Ok(value),
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(_) => Err(Cancelled),
        },
    }
}
