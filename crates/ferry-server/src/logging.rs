//! One log line per request, inside the request's span; server faults logged as errors.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::FaultReason;

/// Logs method, path, status and duration; 5xx answers at `error` with their reason.
pub async fn log_request(req: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
    let started = Instant::now();
    async move {
        let resp = next.run(req).await;
        let ms = started.elapsed().as_millis() as u64;
        let status = resp.status().as_u16();
        match resp.extensions().get::<FaultReason>() {
            Some(FaultReason(reason)) => tracing::error!(status, ms, %reason, "request failed"),
            None => tracing::info!(status, ms, "request"),
        }
        resp
    }
    .instrument(span)
    .await
}
