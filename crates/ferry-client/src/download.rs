//! Resumable, verified downloads from any HTTP server with Range support.
//!
//! The bytes go to `OUT.ferry-partial`, with `OUT.ferry-state` beside it remembering the URL
//! and the ETag. A re-run asks for the rest with `If-Range` on that ETag: if the file
//! changed on the server, the server answers 200 with the whole new version and the
//! download restarts from zero, so two versions are never stitched together. The finished
//! file is checked against `Repr-Digest` (when the server sends one) before it is renamed
//! to OUT.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::digest::{parse_repr_digest_sha256, to_hex};
use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{from_status, network};
use crate::hashing::RewindableSha;
use crate::rate::RateLimiter;
use crate::{ClientError, Progress, ProgressFn, RetryPolicy};

/// Buffered bytes before a write to disk.
const WRITE_BATCH: usize = 1 << 20;

/// Downloads URLs to local files, resuming and verifying.
#[derive(Clone)]
pub struct Downloader {
    pub(crate) http: reqwest::Client,
    pub(crate) retry: RetryPolicy,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) cancel: CancellationToken,
    /// Connections for one file: `None` adapts (see [`crate::ramp`]).
    pub(crate) connections: Option<usize>,
    /// Cap on adaptive connections.
    pub(crate) max_connections: usize,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    force: bool,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader").finish_non_exhaustive()
    }
}

/// What a download did.
#[derive(Debug, Clone)]
pub struct DownloadOutcome {
    /// The finished file.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Bytes already on disk from an earlier run and kept.
    pub resumed_from: u64,
    /// Bytes fetched by this run.
    pub fetched: u64,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Whether it was checked against the server's `Repr-Digest`.
    pub verified: bool,
    /// Whether a partial file was thrown away because the server's file changed.
    pub restarted: bool,
    /// Whether the output already held exactly the server's file, so nothing was fetched.
    pub already_there: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedState {
    url: String,
    etag: String,
}

/// Paths of the partial file and its state file for an output path.
pub(crate) fn side_paths(out: &Path) -> (PathBuf, PathBuf) {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".ferry-partial");
    let mut state = out.as_os_str().to_owned();
    state.push(".ferry-state");
    (partial.into(), state.into())
}

impl Downloader {
    /// A downloader using `http`.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            retry: RetryPolicy::default(),
            progress: None,
            cancel: CancellationToken::new(),
            connections: None,
            max_connections: crate::ramp::DEFAULT_MAX,
            limiter: None,
            force: false,
        }
    }

    /// Replaces an existing output file whose content differs from the server's.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Fetches over exactly `n` connections at once (segmented, with dynamic splitting)
    /// when the server supports ranges. Without this, a download from a nearby server
    /// uses one connection and one from a far server adapts the count (see
    /// [`crate::ramp`]).
    pub fn with_connections(mut self, n: usize) -> Self {
        self.connections = Some(n.max(1));
        self
    }

    /// Caps the adaptive connection count (default [`crate::ramp::DEFAULT_MAX`]).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Caps the total rate at `bytes_per_sec`.
    pub fn with_limit_rate(mut self, bytes_per_sec: u64) -> Self {
        self.limiter = Some(Arc::new(RateLimiter::new(bytes_per_sec)));
        self
    }

    /// Reports progress to `f`.
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Stops cleanly (resumable) when `cancel` fires.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Uses another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Downloads `url` to `out`, resuming a partial download of the same URL. An existing
    /// `out` with the server's content is left alone (nothing is fetched); one with other
    /// content is replaced only with [`Downloader::with_force`]. Two downloads to the same
    /// `out` never run at once: the second is refused.
    pub async fn download(&self, url: &Url, out: &Path) -> Result<DownloadOutcome, ClientError> {
        let (partial, state_path) = side_paths(out);
        let had_partial = partial.exists();
        let _lock = lock_partial(&partial)?;
        if out.is_file() && !state_path.exists() {
            match self.check_existing(url, out).await {
                Ok(Some(done)) => {
                    if !had_partial {
                        let _ = fs::remove_file(&partial);
                    }
                    return Ok(done);
                }
                Ok(None) => {}
                Err(e) => {
                    if !had_partial {
                        let _ = fs::remove_file(&partial);
                    }
                    return Err(e);
                }
            }
        }
        // A segmented download's partial file has holes: only the segmented path may resume it.
        if (self.connections != Some(1) || crate::segmented::has_state(out))
            && let Some(outcome) = crate::segmented::download(self, url, out).await?
        {
            return Ok(outcome);
        }
        self.download_single(url, out).await
    }

    /// `out` exists: is it the server's file already (`Some`), may it be replaced (`None`),
    /// or must it be kept (an error)?
    async fn check_existing(&self, url: &Url, out: &Path) -> Result<Option<DownloadOutcome>, ClientError> {
        let resp = self.http.head(url.clone()).send().await.map_err(|e| network(&e))?;
        if !resp.status().is_success() {
            return Err(from_status(resp).await);
        }
        let digest = resp.headers().get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
        let size = crate::overwrite::header_len(&resp);
        let local_len = fs::metadata(out).map_err(|e| ClientError::local(out, e))?.len();
        if let Some(digest) = digest
            && size == Some(local_len)
        {
            let file = Arc::new(File::open(out).map_err(|e| ClientError::local(out, e))?);
            let local = crate::hashing::sha256_of_file(file, local_len, out).await?;
            if local == digest {
                if let Some(p) = &self.progress {
                    p(Progress { done: local_len, total: Some(local_len) });
                }
                return Ok(Some(DownloadOutcome {
                    path: out.to_path_buf(),
                    size: local_len,
                    resumed_from: local_len,
                    fetched: 0,
                    sha256: to_hex(&local),
                    verified: true,
                    restarted: false,
                    already_there: true,
                }));
            }
        }
        if self.force {
            return Ok(None);
        }
        Err(ClientError::local(
            out,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the file exists and is not the server's version; pass --force to replace it",
            ),
        ))
    }

    async fn download_single(&self, url: &Url, out: &Path) -> Result<DownloadOutcome, ClientError> {
        let (partial, state_path) = side_paths(out);
        let saved: Option<SavedState> = fs::read(&state_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|s: &SavedState| s.url == url.as_str());
        let mut etag = saved.map(|s| s.etag);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(etag.is_none())
            .open(&partial)
            .map_err(|e| ClientError::local(&partial, e))?;
        let initial = file.metadata().map_err(|e| ClientError::local(&partial, e))?.len();
        let mut sha = RewindableSha::default();
        let mut restarted = false;
        let mut fetched = 0u64;
        let mut attempts = 0u32;
        let mut resumed_from = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClientError::Interrupted);
            }
            let have = file.metadata().map_err(|e| ClientError::local(&partial, e))?.len();
            let round =
                self.round(url, &partial, &state_path, &mut file, &mut etag, have, &mut sha, &mut fetched).await;
            match round {
                Ok(Round::Done { total, server_sha, restarted: r }) => {
                    restarted |= r;
                    resumed_from.get_or_insert(if r { 0 } else { have.min(initial) });
                    sha.seek(&mut file, total).map_err(|e| ClientError::local(&partial, e))?;
                    let local = sha.digest();
                    publish(&file, &partial, &state_path, out, &local, server_sha)?;
                    return Ok(DownloadOutcome {
                        path: out.to_path_buf(),
                        size: total,
                        resumed_from: resumed_from.unwrap_or(0),
                        fetched,
                        sha256: to_hex(&local),
                        verified: server_sha.is_some(),
                        restarted,
                        already_there: false,
                    });
                }
                Ok(Round::Restarted) => {
                    restarted = true;
                    resumed_from = Some(0);
                }
                Err(e) if e.is_retryable() && attempts < self.retry.max_attempts => {
                    resumed_from.get_or_insert(have.min(initial));
                    let now = file.metadata().map(|m| m.len()).unwrap_or(have);
                    attempts = if now > have { 1 } else { attempts + 1 };
                    let delay = self.retry.announce(attempts, &e);
                    tracing::info!(error = %e, attempt = attempts, "retrying download");
                    tokio::select! {
                        () = self.cancel.cancelled() => return Err(ClientError::Interrupted),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(ClientError::Unreachable(msg)) => {
                    return Err(ClientError::Unreachable(format!("{msg} (gave up; run again to resume)")));
                }
                Err(e) => return Err(e),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn round(
        &self,
        url: &Url,
        partial: &Path,
        state_path: &Path,
        file: &mut File,
        etag: &mut Option<String>,
        have: u64,
        sha: &mut RewindableSha,
        fetched: &mut u64,
    ) -> Result<Round, ClientError> {
        let mut req = self.http.get(url.clone());
        let resuming = have > 0 && etag.is_some();
        if let (true, Some(tag)) = (resuming, etag.as_deref()) {
            req = req.header(RANGE, format!("bytes={have}-")).header(IF_RANGE, tag);
        }
        let resp = tokio::select! {
            () = self.cancel.cancelled() => return Err(ClientError::Interrupted),
            r = req.send() => r.map_err(|e| network(&e))?,
        };
        let server_sha =
            resp.headers().get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
        let new_etag =
            resp.headers().get(ETAG).and_then(|v| v.to_str().ok()).filter(|t| !t.starts_with("W/")).map(str::to_owned);
        let (start, total, restarted) = match resp.status() {
            StatusCode::PARTIAL_CONTENT if resuming => {
                let (start, total) = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range)
                    .ok_or_else(|| ClientError::Protocol("206 answer without a usable Content-Range".into()))?;
                if start != have {
                    return Err(ClientError::Protocol(format!("asked for bytes from {have}, got from {start}")));
                }
                (start, total, false)
            }
            StatusCode::OK => {
                let total = resp.content_length();
                (0, total, have > 0)
            }
            StatusCode::RANGE_NOT_SATISFIABLE if resuming => {
                // Our partial file is as long as (or longer than) the file: start over.
                file.set_len(0).map_err(|e| ClientError::local(partial, e))?;
                let _ = fs::remove_file(state_path);
                *etag = None;
                return Ok(Round::Restarted);
            }
            _ => return Err(from_status(resp).await),
        };
        if restarted {
            tracing::info!("the file changed on the server (or cannot be resumed); starting over");
        }
        if start == 0 {
            file.set_len(0).map_err(|e| ClientError::local(partial, e))?;
        }
        *etag = new_etag;
        match etag {
            Some(tag) => {
                let saved = SavedState { url: url.to_string(), etag: tag.clone() };
                let bytes = serde_json::to_vec(&saved).map_err(|e| ClientError::Protocol(e.to_string()))?;
                fs::write(state_path, bytes).map_err(|e| ClientError::local(state_path, e))?;
            }
            None => {
                let _ = fs::remove_file(state_path);
            }
        }
        sha.seek(file, start).map_err(|e| ClientError::local(partial, e))?;
        file.seek(SeekFrom::Start(start)).map_err(|e| ClientError::local(partial, e))?;
        let mut pos = start;
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        let mut stream = resp.bytes_stream();
        let report = |done: u64| {
            if let Some(p) = &self.progress {
                p(Progress { done, total });
            }
        };
        report(pos);
        let mut failure = None;
        loop {
            let next = tokio::select! {
                () = self.cancel.cancelled() => { failure = Some(ClientError::Interrupted); None }
                n = stream.next() => n,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    failure = Some(network(&e));
                    break;
                }
                Some(Ok(chunk)) => {
                    if let Some(l) = &self.limiter {
                        l.acquire(chunk.len() as u64).await;
                    }
                    buf.extend_from_slice(&chunk);
                    *fetched += chunk.len() as u64;
                    if buf.len() >= WRITE_BATCH {
                        file.write_all(&buf).map_err(|e| ClientError::local(partial, e))?;
                        sha.update(&buf);
                        pos += buf.len() as u64;
                        buf.clear();
                        report(pos);
                    }
                }
            }
        }
        // Keep what arrived, even when the connection broke.
        file.write_all(&buf).map_err(|e| ClientError::local(partial, e))?;
        sha.update(&buf);
        pos += buf.len() as u64;
        report(pos);
        if let Some(f) = failure {
            file.sync_data().map_err(|e| ClientError::local(partial, e))?;
            return Err(f);
        }
        match total {
            Some(t) if pos != t => Err(ClientError::Unreachable(format!("connection closed at byte {pos} of {t}"))),
            _ => Ok(Round::Done { total: pos, server_sha, restarted }),
        }
    }
}

/// Holds `OUT.ferry-partial` exclusively (an `flock`, released when the process ends, even
/// by `kill -9`), so a second download to the same output is refused instead of racing.
fn lock_partial(partial: &Path) -> Result<File, ClientError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(partial)
        .map_err(|e| ClientError::local(partial, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(ClientError::local(
            partial,
            std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                "another ferry download to this file is already running",
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(ClientError::local(partial, e)),
    }
}

/// Checks the finished partial file against the server's digest (deleting it on a
/// mismatch), makes it durable and renames it to `out`.
pub(crate) fn publish(
    file: &File,
    partial: &Path,
    state_path: &Path,
    out: &Path,
    local: &[u8; 32],
    expected: Option<[u8; 32]>,
) -> Result<(), ClientError> {
    if let Some(expected) = expected
        && expected != *local
    {
        let _ = fs::remove_file(partial);
        let _ = fs::remove_file(state_path);
        return Err(ClientError::Verification(format!(
            "downloaded bytes have SHA-256 {} but the server's Repr-Digest says {}; the partial file was deleted",
            to_hex(local),
            to_hex(&expected)
        )));
    }
    file.sync_all().map_err(|e| ClientError::local(partial, e))?;
    fs::rename(partial, out).map_err(|e| ClientError::local(out, e))?;
    let _ = fs::remove_file(state_path);
    Ok(())
}

enum Round {
    Done { total: u64, server_sha: Option<[u8; 32]>, restarted: bool },
    Restarted,
}

/// `bytes a-b/len` → (a, Some(len)).
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let c = ferry_core::ContentRange::parse(v)?;
    Some((c.range?.0, c.total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, Some(1000))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
