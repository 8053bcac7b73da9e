//! The access log: one line per request when its answer's body has ended (or the client
//! went away), with user, client address, status, bytes in and out and the duration to
//! the end of the body; server faults at `error` with their reason. The same pass feeds
//! the traffic figures of `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use tracing::Instrument;

use crate::AppState;
use crate::error::FaultReason;
use crate::metrics::Metrics;

/// The authenticated user's name, left on the response by the auth middleware for the log.
#[derive(Debug, Clone)]
pub(crate) struct LoggedUser(pub String);

/// Logs each request once its answer is over and counts it for `/metrics`.
pub async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let client = client_addr(&state, &req);
    let received = Arc::new(AtomicU64::new(0));
    let metrics = state.metrics.clone();
    let req = req.map(|b| Body::new(CountedBody { inner: b, count: received.clone(), metrics: metrics.clone() }));
    let span = tracing::info_span!("request", %method, %path);
    let resp = next.run(req).instrument(span.clone()).await;
    let entry = Entry {
        span,
        patch: method == Method::PATCH && path.starts_with("/tus"),
        head: method == Method::HEAD,
        length: resp
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        client,
        user: resp.extensions().get::<LoggedUser>().map(|u| u.0.clone()),
        status: resp.status().as_u16(),
        fault: resp.extensions().get::<FaultReason>().map(|f| f.0.clone()),
        started,
        received,
        metrics,
    };
    resp.map(|b| Body::new(LoggedBody { inner: b, sent: 0, entry: Some(entry) }))
}

/// The client's address: the connection's peer, or (behind a proxy) the first
/// `X-Forwarded-For` address.
fn client_addr(state: &AppState, req: &Request) -> Option<IpAddr> {
    if state.config.behind_proxy
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

struct Entry {
    span: tracing::Span,
    patch: bool,
    head: bool,
    /// The response's Content-Length, when it has one.
    length: Option<u64>,
    client: Option<IpAddr>,
    user: Option<String>,
    status: u16,
    fault: Option<String>,
    started: Instant,
    received: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl Entry {
    fn write(self, sent: u64, complete: bool) {
        let elapsed = self.started.elapsed();
        let ms = elapsed.as_millis() as u64;
        let received = self.received.load(Relaxed);
        self.metrics.count_request(self.status);
        if self.patch {
            self.metrics.patch_seconds.observe(elapsed);
        }
        let client = self.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let user = self.user.as_deref().unwrap_or("-");
        let _e = self.span.enter();
        let status = self.status;
        match (&self.fault, complete) {
            (Some(reason), _) => {
                tracing::error!(%client, user, status, received, sent, ms, %reason, "request failed")
            }
            (None, true) => tracing::info!(%client, user, status, received, sent, ms, "request"),
            (None, false) => {
                tracing::info!(%client, user, status, received, sent, ms, "request (client left before the end)")
            }
        }
    }
}

/// A request body that counts its bytes as they arrive.
struct CountedBody {
    inner: Body,
    count: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Relaxed);
            self.metrics.received_bytes.fetch_add(data.len() as u64, Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that writes the log line when it ends (or is dropped unfinished).
struct LoggedBody {
    inner: Body,
    sent: u64,
    entry: Option<Entry>,
}

impl LoggedBody {
    fn finish(&mut self, complete: bool) {
        if let Some(entry) = self.entry.take() {
            entry.write(self.sent, complete);
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                    if let Some(e) = &self.entry {
                        e.metrics.sent_bytes.fetch_add(data.len() as u64, Relaxed);
                    }
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // hyper drops an empty body (HEAD, 204, Content-Length: 0) without polling it, and
        // a body once its Content-Length went out: that is its end.
        let complete =
            self.inner.is_end_stream() || self.entry.as_ref().is_some_and(|e| e.head || e.length == Some(self.sent));
        self.finish(complete);
    }
}
