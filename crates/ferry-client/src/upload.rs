//! Resumable tus uploads.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ferry_core::digest::{parse_repr_digest_sha256, to_hex};
use futures_util::stream;
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::{from_status, network};
use crate::hashing::RewindableSha;
use crate::state_dir::UploadRecord;
use crate::{ClientError, Progress, ProgressFn, RetryPolicy, StateDir};

const TUS: &str = "1.0.0";
const READ_BLOCK: usize = 1 << 20;

/// Uploads files to a tus endpoint, resuming where an earlier run stopped.
#[derive(Clone)]
pub struct Uploader {
    http: reqwest::Client,
    endpoint: Url,
    state: StateDir,
    retry: RetryPolicy,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader").field("endpoint", &self.endpoint.as_str()).finish_non_exhaustive()
    }
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// The local file.
    pub path: PathBuf,
    /// The upload URL.
    pub url: String,
    /// File size.
    pub size: u64,
    /// Offset the server already had when this run started (0 for a fresh upload).
    pub resumed_from: u64,
    /// Bytes put on the wire by this run.
    pub sent: u64,
    /// SHA-256 of the file, computed while it streamed.
    pub sha256: String,
    /// Whether the server confirmed the same SHA-256 (`Repr-Digest`); false if it gave none.
    pub verified: bool,
}

impl Uploader {
    /// An uploader for the ferry server at `server` (its tus endpoint is `server/tus/`).
    pub fn new(http: reqwest::Client, server: &str) -> Result<Self, ClientError> {
        let base = Url::parse(server)
            .map_err(|e| ClientError::Rejected { status: 0, reason: format!("bad server URL {server:?}: {e}") })?;
        let base = if base.path().ends_with('/') { base } else { Url::parse(&format!("{base}/")).unwrap_or(base) };
        let endpoint = base.join("tus/").map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            state: StateDir::default_location(),
            retry: RetryPolicy::default(),
            progress: None,
            cancel: CancellationToken::new(),
        })
    }

    /// Uses another state directory for resume records.
    pub fn with_state_dir(mut self, state: StateDir) -> Self {
        self.state = state;
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

    fn report(&self, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(Progress { done, total: Some(total) });
        }
    }

    /// Uploads `path` into `remote_dir` (tree root when `None`), resuming a previous
    /// attempt of the same file to the same server.
    pub async fn upload(&self, path: &Path, remote_dir: Option<&str>) -> Result<UploadOutcome, ClientError> {
        let meta = std::fs::metadata(path).map_err(|e| ClientError::local(path, e))?;
        if !meta.is_file() {
            return Err(ClientError::local(path, std::io::Error::other("not a regular file")));
        }
        let size = meta.len();
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let abs = std::fs::canonicalize(path).map_err(|e| ClientError::local(path, e))?;
        let fingerprint = to_hex(&Sha256::digest(format!("{}\0{size}\0{mtime_ns}\0{}", abs.display(), self.endpoint)));

        let mut file = File::open(path).map_err(|e| ClientError::local(path, e))?;
        let sha = Arc::new(Mutex::new(RewindableSha::default()));
        let mut attempts = 0u32;
        let mut url: Option<Url> = self.state.load_upload(&fingerprint).and_then(|r| Url::parse(&r.url).ok());
        let mut resumed_from: Option<u64> = None;
        let mut sent = 0u64;
        let mut last_offset = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClientError::Interrupted);
            }
            let step = self.step(path, &mut file, size, remote_dir, &fingerprint, &mut url, &sha, &mut sent).await;
            match step {
                Ok(Step::Done { offset_at_start, server_sha }) => {
                    let local = sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?.digest();
                    let verified = match server_sha {
                        Some(s) if s != local => {
                            self.state.forget_upload(&fingerprint);
                            return Err(ClientError::Verification(format!(
                                "the server stored SHA-256 {} but the file has {}",
                                to_hex(&s),
                                to_hex(&local)
                            )));
                        }
                        Some(_) => true,
                        None => false,
                    };
                    self.state.forget_upload(&fingerprint);
                    self.report(size, size);
                    return Ok(UploadOutcome {
                        path: path.to_path_buf(),
                        url: url.map(|u| u.to_string()).unwrap_or_default(),
                        size,
                        resumed_from: resumed_from.unwrap_or(offset_at_start),
                        sent,
                        sha256: to_hex(&local),
                        verified,
                    });
                }
                Ok(Step::Progressed { offset_at_start, offset }) => {
                    resumed_from.get_or_insert(offset_at_start);
                    if last_offset != Some(offset) {
                        attempts = 0;
                    }
                    last_offset = Some(offset);
                }
                Err(e) if e.is_retryable() && attempts < self.retry.max_attempts => {
                    attempts += 1;
                    let delay = self.retry.delay(attempts);
                    tracing::info!(error = %e, attempt = attempts, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return Err(ClientError::Interrupted),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(ClientError::Unreachable(msg)) => {
                    return Err(ClientError::Unreachable(format!(
                        "{msg} (gave up after {attempts} retries; run again to resume)"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One round: find or create the upload, learn its offset, send the rest.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        path: &Path,
        file: &mut File,
        size: u64,
        remote_dir: Option<&str>,
        fingerprint: &str,
        url: &mut Option<Url>,
        sha: &Arc<Mutex<RewindableSha>>,
        sent: &mut u64,
    ) -> Result<Step, ClientError> {
        let (upload_url, status) = match url.clone() {
            Some(u) => match self.head(&u).await? {
                Some(status) if status.length == Some(size) => (u, status),
                _ => {
                    // Gone, expired or not ours any more: start a fresh upload.
                    self.state.forget_upload(fingerprint);
                    *url = None;
                    let u = self.create(path, size, remote_dir, fingerprint).await?;
                    *url = Some(u.clone());
                    (u, HeadStatus { offset: 0, length: Some(size), sha: None })
                }
            },
            None => {
                let u = self.create(path, size, remote_dir, fingerprint).await?;
                *url = Some(u.clone());
                (u, HeadStatus { offset: 0, length: Some(size), sha: None })
            }
        };
        let offset = status.offset;
        {
            let mut h = sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
            h.seek(file, offset).map_err(|e| ClientError::local(path, e))?;
        }
        self.report(offset, size);
        if offset == size {
            let server_sha = match status.sha {
                Some(s) => Some(s),
                None if size == 0 => None,
                None => self.head(&upload_url).await?.and_then(|s| s.sha),
            };
            return Ok(Step::Done { offset_at_start: offset, server_sha });
        }
        let resp = self.patch(path, &upload_url, offset, size, sha, sent).await?;
        let new_offset = resp
            .headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ClientError::Protocol("PATCH answer without Upload-Offset".into()))?;
        if new_offset == size {
            let server_sha =
                resp.headers().get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
            let mut h = sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
            h.seek(file, size).map_err(|e| ClientError::local(path, e))?;
            return Ok(Step::Done { offset_at_start: offset, server_sha });
        }
        Ok(Step::Progressed { offset_at_start: offset, offset: new_offset })
    }

    async fn head(&self, url: &Url) -> Result<Option<HeadStatus>, ClientError> {
        let resp = self.http.head(url.clone()).header("Tus-Resumable", TUS).send().await.map_err(|e| network(&e))?;
        match resp.status() {
            s if s.is_success() => {
                let num = |name: &str| {
                    resp.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
                };
                let offset = num("upload-offset")
                    .ok_or_else(|| ClientError::Protocol("HEAD answer without Upload-Offset".into()))?;
                let sha =
                    resp.headers().get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
                Ok(Some(HeadStatus { offset, length: num("upload-length"), sha }))
            }
            StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::FORBIDDEN => Ok(None),
            _ => Err(from_status(resp).await),
        }
    }

    async fn create(
        &self,
        path: &Path,
        size: u64,
        remote_dir: Option<&str>,
        fingerprint: &str,
    ) -> Result<Url, ClientError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
        let mut metadata = format!("filename {}", STANDARD.encode(name.as_bytes()));
        if let Some(dir) = remote_dir.map(|d| d.trim_matches('/')).filter(|d| !d.is_empty()) {
            metadata.push_str(&format!(",dir {}", STANDARD.encode(dir.as_bytes())));
        }
        let resp = self
            .http
            .post(self.endpoint.clone())
            .header("Tus-Resumable", TUS)
            .header("Upload-Length", size)
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .map_err(|e| network(&e))?;
        if resp.status() != StatusCode::CREATED {
            return Err(from_status(resp).await);
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Protocol("creation answer without Location".into()))?;
        let url = self
            .endpoint
            .join(location)
            .map_err(|e| ClientError::Protocol(format!("bad Location {location:?}: {e}")))?;
        let rec = UploadRecord { url: url.to_string(), path: path.display().to_string(), size };
        if let Err(e) = self.state.save_upload(fingerprint, &rec) {
            tracing::warn!(error = %e, "could not save the resume record; an interrupted upload will start over");
        }
        Ok(url)
    }

    async fn patch(
        &self,
        path: &Path,
        url: &Url,
        offset: u64,
        size: u64,
        sha: &Arc<Mutex<RewindableSha>>,
        sent: &mut u64,
    ) -> Result<reqwest::Response, ClientError> {
        let reader = File::open(path).map_err(|e| ClientError::local(path, e))?;
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body = body_stream(reader, offset, size, sha.clone(), counter.clone(), self.progress.clone());
        let request = self
            .http
            .patch(url.clone())
            .header("Tus-Resumable", TUS)
            .header("Upload-Offset", offset)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Content-Length", size - offset)
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let result = tokio::select! {
            () = self.cancel.cancelled() => Err(ClientError::Interrupted),
            r = request => r.map_err(|e| network(&e)),
        };
        *sent += counter.load(std::sync::atomic::Ordering::Relaxed);
        let resp = result?;
        if resp.status() != StatusCode::NO_CONTENT && resp.status() != StatusCode::OK {
            return Err(from_status(resp).await);
        }
        Ok(resp)
    }
}

struct HeadStatus {
    offset: u64,
    length: Option<u64>,
    sha: Option<[u8; 32]>,
}

enum Step {
    Done { offset_at_start: u64, server_sha: Option<[u8; 32]> },
    Progressed { offset_at_start: u64, offset: u64 },
}

/// The PATCH body: the file from `offset`, read in blocks off the async threads, hashed as
/// it goes.
fn body_stream(
    file: File,
    offset: u64,
    size: u64,
    sha: Arc<Mutex<RewindableSha>>,
    counter: Arc<std::sync::atomic::AtomicU64>,
    progress: Option<ProgressFn>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use std::io::{Seek, SeekFrom};
    let file = Arc::new(Mutex::new((file, false)));
    stream::try_unfold(offset, move |pos| {
        let file = file.clone();
        let sha = sha.clone();
        let counter = counter.clone();
        let progress = progress.clone();
        async move {
            if pos >= size {
                return Ok(None);
            }
            let n = (size - pos).min(READ_BLOCK as u64) as usize;
            let block = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let mut guard = file.lock().map_err(|_| std::io::Error::other("file lock poisoned"))?;
                let (f, positioned) = &mut *guard;
                if !*positioned {
                    f.seek(SeekFrom::Start(pos))?;
                    *positioned = true;
                }
                let mut buf = vec![0u8; n];
                f.read_exact(&mut buf)?;
                sha.lock().map_err(|_| std::io::Error::other("hash lock poisoned"))?.update(&buf);
                Ok(buf)
            })
            .await
            .map_err(std::io::Error::other)??;
            let done = counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed) + n as u64;
            if let Some(p) = &progress {
                p(Progress { done: offset + done, total: Some(size) });
            }
            Ok(Some((Bytes::from(block), pos + n as u64)))
        }
    })
}
