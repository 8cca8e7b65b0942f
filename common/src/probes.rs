//! The plain-HTTP port of hub and agent: `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

struct Probes {
    ready: Box<dyn Fn() -> bool + Send + Sync>,
    metrics: Box<dyn Fn() -> String + Send + Sync>,
}

/// Serves until `shutdown` completes: `/healthz` answers 200 while the process runs,
/// `/readyz` 200 while `ready()` holds (503 otherwise), `/metrics` the text `metrics()` gives.
pub async fn serve(
    listener: TcpListener,
    ready: impl Fn() -> bool + Send + Sync + 'static,
    metrics: impl Fn() -> String + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let probes = Arc::new(Probes {
        ready: Box::new(ready),
        metrics: Box::new(metrics),
    });
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(probes);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
}

async fn readyz(State(p): State<Arc<Probes>>) -> impl IntoResponse {
    if (p.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(State(p): State<Arc<Probes>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        (p.metrics)(),
    )
}
