//! `/metrics` and the middleware that times every request.
//!
//! The middleware records each request's duration under its route template and the
//! longest single poll of its handler: the time one request held an async worker
//! without yielding, which is how a blocking call on the runtime shows up.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::extract::Core;
use super::Shared;

/// `GET /metrics` on the main listener, when `metrics.enabled` is on and no separate
/// `metrics.bind` address is configured.
pub(crate) async fn metrics_get(State(state): State<Shared>, core: Core) -> Response {
    if !core.config.metrics.on_main_listener() {
        return StatusCode::NOT_FOUND.into_response();
    }
    render(&state, &core).await
}

/// `GET /metrics` on the separate `metrics.bind` listener.
async fn metrics_only_get(State(state): State<Shared>, core: Core) -> Response {
    if !core.config.metrics.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    render(&state, &core).await
}

async fn render(state: &Shared, core: &Core) -> Response {
    let body = state.metrics.scrape(core.store.as_ref()).await;
    (
        [
            (header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The router of the separate metrics listener: `/metrics`, and the probes `/healthz`
/// and `/readyz`, so an orchestrator can stay off the public listener too.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics_only_get))
        .route("/healthz", axum::routing::get(super::healthz))
        .route("/readyz", axum::routing::get(super::ready::readyz))
        .with_state(state)
}

/// Time the request and the longest poll of its handler.
pub async fn observe(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let start = Instant::now();
    let (res, longest) = Timed::new(next.run(req)).await;
    let route = route.as_deref().unwrap_or("unmatched");
    state
        .metrics
        .request(route, start.elapsed(), longest.wall, longest.cpu);
    res
}

/// The longest poll of a future: its wall-clock time, and the thread's CPU time in it.
#[derive(Default, Clone, Copy)]
struct Longest {
    wall: Duration,
    cpu: Duration,
}

/// A future that measures each of its polls and yields, with its output, the longest.
struct Timed<F> {
    inner: Pin<Box<F>>,
    longest: Longest,
}

impl<F: Future> Timed<F> {
    fn new(inner: F) -> Self {
        Timed {
            inner: Box::pin(inner),
            longest: Longest::default(),
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = (F::Output, Longest);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = Instant::now();
        let cpu_start = crate::metrics::thread_cpu_time();
        let polled = self.inner.as_mut().poll(cx);
        let wall = start.elapsed();
        let cpu = crate::metrics::thread_cpu_time().saturating_sub(cpu_start);
        self.longest.wall = self.longest.wall.max(wall);
        self.longest.cpu = self.longest.cpu.max(cpu);
        match polled {
            Poll::Ready(out) => Poll::Ready((out, self.longest)),
            Poll::Pending => Poll::Pending,
        }
    }
}
