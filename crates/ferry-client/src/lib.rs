//! ferry-client: the library other programs embed to move files with a ferry server (or
//! any tus 1.0 server and any HTTP Range server).
//!
//! - [`Uploader`]: resumable tus uploads. A file's upload URL is remembered under a
//!   fingerprint of path, size, mtime and server, so a re-run continues where the last one
//!   stopped; failures are retried with backoff and an offset re-sync; the SHA-256 is
//!   computed while bytes stream and checked against the server's.
//!   Large files go as parallel partial uploads; PATCH sizes adapt to the link; every
//!   PATCH carries a crc32c checksum trailer and is bounded in time, so a server crash or
//!   restart costs at most one short chunk; `--dedup` skips bytes the server has; an
//!   upload never replaces other content at its destination unless told to.
//! - [`Downloader`]: resumable downloads that never stitch two versions of a file
//!   (`If-Range` on the saved ETag) and verify `Repr-Digest`; an existing output is kept
//!   when it is the server's file, and never replaced by another one unless forced.
#![deny(missing_docs)]

mod appends;
mod chunking;
mod credentials;
mod dedup;
mod download;
mod error;
mod hashing;
mod overwrite;
mod owned_task;
mod parts;
mod patch_body;
mod progress;
pub mod ramp;
mod rate;
mod relay;
mod retry;
mod segmented;
mod state_dir;
pub mod tls;
mod upload;

pub use chunking::ChunkSize;
pub use credentials::Credentials;
pub use download::{DownloadOutcome, Downloader};
pub use error::{ClientError, from_status, network, refusal};
pub use progress::{Progress, ProgressFn};
pub use rate::RateLimiter;
pub use relay::{Continues, RecipientState, RelayClient, RelayItem, ServerEvent};
pub use reqwest::Url;
pub use retry::{RetryFn, RetryPolicy};
pub use state_dir::StateDir;
pub use upload::{UploadOptions, UploadOutcome, Uploader};

/// The HTTP client ferry's commands use: HTTP/1.1 (over TLS for https://, see [`tls`]), connect and read timeouts so a dead
/// connection is noticed rather than waited on forever, and the API token (if any) on
/// every request.
pub fn http_client(token: Option<&str>) -> Result<reqwest::Client, ClientError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| ClientError::Protocol("the saved token is not valid header text".into()))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    tls::configure(reqwest::Client::builder())
        .default_headers(headers)
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Protocol(format!("could not build the HTTP client: {e}")))
}
