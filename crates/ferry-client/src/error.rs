//! Client errors, sorted by what the caller does next.

use std::io;
use std::path::PathBuf;

/// Why a transfer stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached (or kept failing) within the retry budget: run
    /// again later to resume.
    #[error("{0}")]
    Unreachable(String),
    /// The server refused the request; retrying the same thing will not help.
    #[error("the server refused: {status} {reason}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's one-line reason.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    LocalIo {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The local disk is full.
    #[error("{}: the disk is full", path.display())]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// The bytes did not verify: nothing was kept that could be wrong.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Stopped by the user (Ctrl-C); run again to resume.
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
    /// The server's TLS certificate is not trusted (retrying will not help).
    #[error("the server's TLS certificate is not trusted ({0}); if the server has its own CA, pass --cacert CA.pem")]
    Untrusted(String),
    /// The server answered something this client cannot understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Wraps a local I/O error with its path, recognising a full disk.
    pub fn local(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            Self::DiskFull { path }
        } else {
            Self::LocalIo { path, source }
        }
    }

    /// Whether retrying (after a re-sync) may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// Classifies a reqwest error: everything network-level is retryable. The message is one
/// clause naming the server and why ("cannot reach http://host:8080 (connection
/// refused)"), not reqwest's chain of wrappers.
pub fn network(e: &reqwest::Error) -> ClientError {
    let mut io_kind = None;
    let mut innermost = None;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(why) = s.to_string().strip_prefix("invalid peer certificate: ") {
            return ClientError::Untrusted(why.to_owned());
        }
        if let Some(io) = s.downcast_ref::<io::Error>() {
            io_kind = Some(io.kind());
        }
        innermost = Some(s.to_string());
        src = s.source();
    }
    let why = match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(io::ErrorKind::TimedOut) => "timed out".to_owned(),
        Some(io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
        Some(io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe) => "connection closed".to_owned(),
        Some(io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable) => "no route to the host".to_owned(),
        _ if e.is_timeout() => "no answer in time".to_owned(),
        _ => innermost.map_or_else(|| e.to_string(), |s| strip_os_error(&s)),
    };
    let server = e.url().map_or_else(|| "the server".to_owned(), |u| u.origin().ascii_serialization());
    if e.is_connect() {
        ClientError::Unreachable(format!("cannot reach {server} ({why})"))
    } else {
        ClientError::Unreachable(format!("the connection to {server} failed ({why})"))
    }
}

/// "Connection refused (os error 111)" → "Connection refused".
fn strip_os_error(s: &str) -> String {
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_owned(),
        _ => s.to_owned(),
    }
}

/// Turns a non-success response into an error: 5xx, 409, 423 and 429 are retryable,
/// other 4xx are rejections carrying the server's reason.
pub async fn from_status(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let reason = resp.text().await.unwrap_or_default();
    let reason = reason.lines().next().unwrap_or("").trim().to_owned();
    if status >= 500 || matches!(status, 408 | 409 | 423 | 429) {
        ClientError::Unreachable(format!("the server answered {status} {reason}"))
    } else if status == 460 {
        ClientError::Verification(reason)
    } else {
        ClientError::Rejected { status, reason }
    }
}

/// Turns a non-success answer to a one-off request (not a transfer: a listing, a move) into
/// an error: 5xx, 408 and 429 are worth running again, every other refusal is final and
/// carries the server's reason.
pub async fn refusal(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    if status >= 500 || matches!(status, 408 | 429) {
        return from_status(resp).await;
    }
    let reason = resp.text().await.unwrap_or_default();
    ClientError::Rejected { status, reason: reason.lines().next().unwrap_or("").trim().to_owned() }
}
