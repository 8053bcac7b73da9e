//! `GET /metrics`: counters and histograms in the Prometheus text format (version 0.0.4).
//!
//! Traffic figures (requests, bytes, PATCH durations) are taken by the access-log
//! middleware ([`crate::logging`]) for every route; upload and relay events where they
//! happen; fsync latency by the staging writer ([`ferry_store::FSYNC_LATENCY`]). The route
//! needs an admin (Prometheus sends a bearer token) unless `metrics_public` is set.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ferry_core::histogram::Histogram;

use crate::auth::Identity;
use crate::{ApiError, AppState};

/// The server's counters (one set per process).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered, by status class (index: 1xx … 5xx).
    pub requests: [AtomicU64; 5],
    /// Request body bytes received (uploads and everything else).
    pub received_bytes: AtomicU64,
    /// Response body bytes sent (downloads and everything else).
    pub sent_bytes: AtomicU64,
    /// Uploads with a PATCH or PUT body streaming in right now.
    pub uploads_active: AtomicI64,
    /// Uploads that completed verified and were placed (or became relay items).
    pub uploads_completed: AtomicU64,
    /// Uploads that failed (whole-file verification refused, or placing failed).
    pub uploads_failed: AtomicU64,
    /// Uploads terminated by their client (`DELETE /tus/{id}`, `ferry uploads --cancel`).
    pub uploads_terminated: AtomicU64,
    /// Relay items created and confirmed delivered.
    pub relay_items_created: AtomicU64,
    /// Relay deliveries acknowledged by their recipient with a verified copy.
    pub relay_items_delivered: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicI64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections turned away at the connection cap.
    pub connections_refused: AtomicU64,
    /// Time from a tus PATCH's arrival to the end of its answer.
    pub patch_seconds: Histogram,
}

impl Metrics {
    /// Counts one answered request.
    pub fn count_request(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "ferry_uploads_completed_total",
            "Uploads completed, verified and placed",
            self.uploads_completed.load(Relaxed),
        );
        counter(
            "ferry_uploads_failed_total",
            "Uploads that failed verification or placement",
            self.uploads_failed.load(Relaxed),
        );
        counter(
            "ferry_uploads_terminated_total",
            "Uploads cancelled by their client",
            self.uploads_terminated.load(Relaxed),
        );
        counter("ferry_received_bytes_total", "Request body bytes received", self.received_bytes.load(Relaxed));
        counter("ferry_sent_bytes_total", "Response body bytes sent", self.sent_bytes.load(Relaxed));
        counter(
            "ferry_relay_items_created_total",
            "Relay items stored for recipients",
            self.relay_items_created.load(Relaxed),
        );
        counter(
            "ferry_relay_items_delivered_total",
            "Relay deliveries confirmed by the recipient's verified copy",
            self.relay_items_delivered.load(Relaxed),
        );
        counter("ferry_connections_total", "Connections accepted", self.connections_total.load(Relaxed));
        counter(
            "ferry_connections_refused_total",
            "Connections turned away at the cap",
            self.connections_refused.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP ferry_http_requests_total Requests answered, by status class\n# TYPE ferry_http_requests_total counter"
        );
        for (i, n) in self.requests.iter().enumerate() {
            let _ = writeln!(out, "ferry_http_requests_total{{code=\"{}xx\"}} {}", i + 1, n.load(Relaxed));
        }
        let mut gauge = |name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge("ferry_uploads_active", "Uploads receiving a body right now", self.uploads_active.load(Relaxed));
        gauge("ferry_connections_open", "Connections open now", self.connections_open.load(Relaxed));
        self.patch_seconds.render("ferry_patch_seconds", "tus PATCH durations, to the end of the answer", &mut out);
        ferry_store::FSYNC_LATENCY.render("ferry_fsync_seconds", "Staging file fsync (sync_data) latency", &mut out);
        out
    }
}

/// A gauge held up by one while this lives (an open connection, an upload's body
/// streaming in).
#[allow(missing_debug_implementations)]
pub struct Held {
    metrics: Arc<Metrics>,
    gauge: fn(&Metrics) -> &AtomicI64,
}

impl Held {
    /// Adds one to `gauge` until dropped.
    pub fn new(metrics: &Arc<Metrics>, gauge: fn(&Metrics) -> &AtomicI64) -> Self {
        gauge(metrics).fetch_add(1, Relaxed);
        Self { metrics: metrics.clone(), gauge }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Relaxed);
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, ApiError> {
    if !state.config.metrics_public && !who.is_admin() {
        return Err(ApiError::Forbidden("metrics are for admins (or start the server with --metrics-public)".into()));
    }
    let text = state.metrics.render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}
