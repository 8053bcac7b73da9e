//! The one table of protocol errors: every refusal the server gives, its status and reason.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_store::StoreError;

/// A refusal or failure, answered as `status` with a one-line plain-text reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 412: missing or unsupported `Tus-Resumable`.
    #[error("unsupported tus version; this server speaks Tus-Resumable: 1.0.0")]
    TusVersion,
    /// 400: a malformed or contradictory request.
    #[error("{0}")]
    BadRequest(String),
    /// 401: this route needs a logged-in user.
    #[error("log in first: this needs an account (ferry login, or an Authorization header)")]
    Unauthorized,
    /// 404: no such upload or file.
    #[error("{0}")]
    NotFound(String),
    /// 410: an upload that existed and is gone (expired, failed).
    #[error("{0}")]
    Gone(String),
    /// 403: not allowed on this resource (e.g. PATCH on a final upload).
    #[error("{0}")]
    Forbidden(String),
    /// 409: `Upload-Offset` does not match, or something is in the way.
    #[error("{0}")]
    Conflict(String),
    /// 409 for offset mismatches, carrying the server's offset.
    #[error("Upload-Offset {given} does not match the upload's offset {actual}")]
    OffsetMismatch {
        /// What the client sent.
        given: u64,
        /// What the server holds.
        actual: u64,
    },
    /// 415: PATCH without `application/offset+octet-stream`.
    #[error("PATCH needs Content-Type: application/offset+octet-stream")]
    UnsupportedMediaType,
    /// 413: more bytes than the upload's length or the server's maximum.
    #[error("{0}")]
    TooLarge(String),
    /// 460: the body does not match `Upload-Checksum`.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// 423: another request holds the upload and did not let go in time.
    #[error("the upload is busy with another request; retry shortly")]
    Locked,
    /// 405.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// 412 for downloads (If-Match / If-Unmodified-Since).
    #[error("precondition failed: the file has changed")]
    PreconditionFailed,
    /// 416 with `Content-Range: bytes */len`.
    #[error("range not satisfiable; the file has {0} bytes")]
    RangeNotSatisfiable(u64),
    /// 429 with `Retry-After`: too many failed password attempts for this user or address.
    #[error("too many failed attempts; try again in {} s", .0.as_secs().max(1))]
    TooManyRequests(std::time::Duration),
    /// 507: the disk is full.
    #[error("the server's disk is full")]
    InsufficientStorage,
    /// 503: shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a server fault (logged; the reason is kept generic for the client).
    #[error("internal server error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TusVersion | Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) | Self::OffsetMismatch { .. } => StatusCode::CONFLICT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ChecksumMismatch(_) => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Locked => StatusCode::LOCKED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for a 400.
    pub fn bad(reason: impl Into<String>) -> Self {
        Self::BadRequest(reason.into())
    }
}

/// A server fault's text, stashed in the response so the logging middleware can log it
/// once, inside the request span.
#[derive(Debug, Clone)]
pub struct FaultReason(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let reason = self.to_string();
        let mut resp =
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{reason}\n")).into_response();
        match &self {
            Self::RangeNotSatisfiable(len) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            Self::TusVersion => {
                resp.headers_mut().insert("tus-version", HeaderValue::from_static(ferry_core::tus::TUS_VERSION));
            }
            Self::OffsetMismatch { actual, .. } => {
                resp.headers_mut().insert("upload-offset", HeaderValue::from(*actual));
            }
            Self::TooManyRequests(wait) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            }
            Self::Unavailable(_) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(2));
            }
            _ => {}
        }
        if status.is_server_error() {
            resp.extensions_mut().insert(FaultReason(reason));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DiskFull => Self::InsufficientStorage,
            StoreError::Escapes(p) => Self::bad(format!("path {p:?} leads outside the served tree")),
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::OutOfDescriptors => {
                Self::Unavailable("the server is out of file descriptors; retry shortly".into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(format!("background task failed: {e}"))
    }
}
