//! The accept loop: how many connections are served at once, how long a client may
//! take over a request's headers, and how the listener drains on shutdown.
//!
//! `axum::serve` has no header-read timeout and no connection limit, so one client
//! trickling headers a byte at a time, or a few thousand idle sockets, could hold the
//! server's connections forever. Here each connection takes a slot of
//! `server.max_connections` before it is accepted (clients beyond that wait in the
//! kernel's listen queue and are served as slots free up, rather than being refused),
//! and hyper closes a connection whose headers do not arrive within
//! `server.header_read_timeout_seconds` — which also bounds how long an idle keep-alive
//! connection holds its slot. Request timeouts, the in-flight limit and body sizes are
//! per request and live in `web::limits`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::ServerSettings;

/// Serve `router` on `listener` until `shutdown` completes, then stop accepting and
/// give in-flight requests `settings.shutdown_grace` to finish before their
/// connections are closed.
pub async fn run(
    listener: TcpListener,
    router: Router,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished connections are reaped here so the set stays as small as the load.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: keep
                    // serving, but do not spin on an error that repeats at once.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = match tower::Service::call(&mut make, peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                // A header-read timeout or a client hanging up: nothing to act on.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    drain(graceful, connections, settings.shutdown_grace).await;
}

/// Ask every connection to finish its current request and close; cut the ones still
/// busy when `grace` runs out.
async fn drain(graceful: GracefulShutdown, mut connections: JoinSet<()>, grace: Duration) {
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, "draining connections");
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            grace_seconds = grace.as_secs(),
            "requests still running when the shutdown grace ran out; closing their connections"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}
