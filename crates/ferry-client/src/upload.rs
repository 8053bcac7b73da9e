//! Resumable, parallel, adaptive tus uploads, verified end to end.
//!
//! One file is sent either as one tus upload or, with `parallel > 1`, as that many partial
//! uploads joined by a final `Upload-Concat` request. Every part runs the same loop: learn
//! the server's offset (HEAD), send chunk after chunk as PATCHes bounded in time with a
//! `crc32c` `Upload-Checksum` trailer, and on any retryable failure shrink the chunks, back
//! off and re-sync. The whole-file SHA-256 is computed while the bytes stream (sequential mode)
//! or by one concurrent pass (parallel mode) and the server checks it before the file
//! enters its tree: as a `Repr-Digest` trailer on the completing PATCH, or as `sha256`
//! metadata on the final upload.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use ferry_core::ChecksumAlgorithm;
use ferry_core::digest::{parse_repr_digest_sha256, to_hex};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::chunking::ChunkSize;
use crate::error::{from_status, network};
use crate::parts::{Ctx, HeadStatus, Part, hash_file};
use crate::rate::RateLimiter;
use crate::{ClientError, Progress, ProgressFn, RetryPolicy, StateDir};

pub(crate) const TUS: &str = "1.0.0";

/// How an upload is sent.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Number of partial uploads, all sent at once; `None` adapts: one upload to a nearby
    /// server, else up to `2 × max_parallel` parts (so that streams started early are not
    /// idle at the end) sent by a stream count that grows while the rate keeps rising
    /// ([`crate::ramp`]).
    pub parallel: Option<usize>,
    /// Cap on the streams an adaptive upload uses.
    pub max_parallel: usize,
    /// PATCH sizing.
    pub chunk: ChunkSize,
    /// Per-PATCH checksum (sent as a trailer); `None` sends none.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Cap on the total rate, bytes per second.
    pub limit_rate: Option<u64>,
    /// A PATCH whose body makes no progress for this long is abandoned and retried.
    pub stall_timeout: Duration,
    /// Ask the server for the content first and skip the transfer if it has it.
    pub dedup: bool,
    /// Send through the offline-file relay to these users (comma-separated) instead of
    /// into the tree.
    pub relay_to: Option<String>,
    /// More metadata of a relay item: `relay_kind` (`text`, `folder`), `relay_continues`
    /// (`OFFSET SIZE SHA256HEX`: the rest of a direct transfer), `relay_folder` (the
    /// folder, relative, that a file of a folder sent whole belongs to). With `dedup`, a
    /// file (of a folder or not) the server holds already becomes an item without being
    /// sent.
    pub relay_metadata: Vec<(&'static str, String)>,
    /// Replace a file of the same name with other content in the tree (otherwise such an
    /// upload is refused before any byte is sent).
    pub overwrite: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            parallel: None,
            max_parallel: crate::ramp::DEFAULT_MAX,
            chunk: ChunkSize::Auto,
            checksum: Some(ChecksumAlgorithm::Crc32c),
            limit_rate: None,
            stall_timeout: Duration::from_secs(60),
            dedup: false,
            relay_to: None,
            relay_metadata: Vec::new(),
            overwrite: false,
        }
    }
}

/// Smallest part of an adaptive upload; a file under two of these goes as one upload.
const MIN_PART: u64 = 1 << 20;

/// Uploads files to a tus endpoint, resuming where an earlier run stopped.
#[derive(Clone)]
pub struct Uploader {
    pub(crate) http: reqwest::Client,
    server: Url,
    pub(crate) endpoint: Url,
    pub(crate) state: StateDir,
    pub(crate) retry: RetryPolicy,
    pub(crate) options: UploadOptions,
    progress: Option<ProgressFn>,
    pub(crate) cancel: CancellationToken,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader").field("endpoint", &self.endpoint.as_str()).field("options", &self.options).finish()
    }
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// The local file.
    pub path: PathBuf,
    /// The upload URL (the final upload's, for a parallel upload).
    pub url: String,
    /// File size.
    pub size: u64,
    /// Bytes the server already had when this run started.
    pub resumed_from: u64,
    /// Bytes put on the wire by this run (re-sent bytes included).
    pub sent: u64,
    /// Number of partial uploads used.
    pub parts: usize,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Whether the server confirmed the SHA-256 before placing the file.
    pub verified: bool,
    /// Whether the server already had the content and no bytes were sent.
    pub deduplicated: bool,
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
            server: base,
            endpoint,
            state: StateDir::default_location(),
            retry: RetryPolicy::default(),
            options: UploadOptions::default(),
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

    /// Sets how uploads are sent.
    pub fn with_options(mut self, options: UploadOptions) -> Self {
        self.options = options;
        self
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
        let fingerprint = to_hex(&Sha256::digest(format!(
            "{}\0{size}\0{mtime_ns}\0{}\0{}",
            abs.display(),
            self.endpoint,
            self.options.relay_to.as_deref().unwrap_or("")
        )));
        let file = Arc::new(File::open(path).map_err(|e| ClientError::local(path, e))?);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
        // Relative to the user's home, or from the tree root with a leading `/` (kept).
        let remote_dir = remote_dir.and_then(|d| match d.strip_prefix('/') {
            Some(abs) => Some(format!("/{}", abs.trim_matches('/'))),
            None => Some(d.trim_matches('/').to_owned()).filter(|d| !d.is_empty()),
        });
        let remote_dir = remote_dir.as_deref();

        let plain_file = self.options.relay_metadata.iter().all(|(k, _)| *k == "relay_folder");
        if self.options.dedup && plain_file {
            let sha = hash_file(file.clone(), size, path).await?;
            if let Some(outcome) = crate::dedup::try_dedup(self, path, &name, remote_dir, size, &sha).await? {
                self.report(size, size);
                return Ok(outcome);
            }
        }

        let record = self.state.load_upload(&fingerprint).filter(|r| r.size == size);
        if record.is_none()
            && self.options.relay_to.is_none()
            && !self.options.overwrite
            && let Some(sha) = crate::overwrite::existing_copy(self, path, &file, size, &name, remote_dir).await?
        {
            self.report(size, size);
            return Ok(UploadOutcome {
                path: path.to_path_buf(),
                url: String::new(),
                size,
                resumed_from: size,
                sent: 0,
                parts: 0,
                sha256: to_hex(&sha),
                verified: true,
                deduplicated: true,
            });
        }
        let mut rtt = None;
        let parts: Vec<Arc<Part>> = match &record {
            Some(r) if !r.parts.is_empty() => {
                r.parts.iter().map(|p| Arc::new(Part::new(p.start, p.end, Url::parse(&p.url).ok(), true))).collect()
            }
            Some(r) if self.options.parallel.is_none_or(|n| n <= 1) || size == 0 => {
                vec![Arc::new(Part::new(0, size, Url::parse(&r.url).ok(), false))]
            }
            _ => {
                let n = match self.options.parallel {
                    Some(n) => n,
                    None if size < 2 * MIN_PART => 1,
                    None => match self.measure_rtt().await {
                        r if r < crate::ramp::NEAR => 1,
                        r => {
                            rtt = Some(r);
                            (size / MIN_PART).min(2 * self.options.max_parallel as u64) as usize
                        }
                    },
                }
                .clamp(1, 64);
                let n = if size < n as u64 { 1 } else { n };
                if n == 1 {
                    vec![Arc::new(Part::new(0, size, None, false))]
                } else {
                    (0..n as u64)
                        .map(|i| Arc::new(Part::new(size * i / n as u64, size * (i + 1) / n as u64, None, true)))
                        .collect()
                }
            }
        };
        let ctx = Ctx {
            final_url: Mutex::new(record.as_ref().and_then(|r| Url::parse(&r.final_url).ok())),
            recreated: AtomicBool::new(false),
            up: self,
            path,
            file: file.clone(),
            size,
            name: &name,
            remote_dir,
            fingerprint: &fingerprint,
            parts: parts.clone(),
            limiter: self.options.limit_rate.map(|r| Arc::new(RateLimiter::new(r))),
            rtt,
        };
        let ticker = self.progress.clone().map(|p| {
            let parts = parts.clone();
            let stop = CancellationToken::new();
            let s = stop.clone();
            tokio::spawn(async move {
                loop {
                    let done: u64 = parts.iter().map(|p| p.shown()).sum();
                    p(Progress { done, total: Some(size) });
                    tokio::select! {
                        () = s.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            });
            stop
        });
        let result =
            if parts.len() == 1 && !parts[0].concat_partial { ctx.sequential().await } else { ctx.parallel().await };
        if let Some(t) = ticker {
            t.cancel();
        }
        let (url, sha, verified) = result?;
        self.state.forget_upload(&fingerprint);
        self.report(size, size);
        Ok(UploadOutcome {
            path: path.to_path_buf(),
            url,
            size,
            resumed_from: parts.iter().map(|p| p.resumed_from.lock().map_or(0, |r| r.unwrap_or(0))).sum(),
            sent: parts.iter().map(|p| p.sent.load(Ordering::Relaxed)).sum(),
            parts: if parts.len() == 1 && !parts[0].concat_partial { 1 } else { parts.len() },
            sha256: to_hex(&sha),
            verified,
            deduplicated: false,
        })
    }

    /// The quickest of three OPTIONS round trips to the tus endpoint (a generous value if
    /// the server does not answer: the upload itself will report why).
    async fn measure_rtt(&self) -> Duration {
        let mut best = Duration::from_secs(1);
        for n in 0..3 {
            let started = Instant::now();
            if self.http.request(reqwest::Method::OPTIONS, self.endpoint.clone()).send().await.is_ok() {
                best = best.min(started.elapsed()); // the first may also have opened the connection
            }
            // A far server is far on every try; a near one may look far once on a busy machine.
            if best < crate::ramp::NEAR || (n == 1 && best > 4 * crate::ramp::NEAR) {
                break;
            }
        }
        tracing::debug!(rtt_ms = best.as_millis() as u64, "round trip to the server");
        best
    }

    pub(crate) fn report(&self, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(Progress { done, total: Some(total) });
        }
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn server(&self) -> &Url {
        &self.server
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// HEAD of an upload: `None` when it is gone (404, 410, 403).
    pub(crate) async fn head(&self, url: &Url) -> Result<Option<HeadStatus>, ClientError> {
        match self.head_any(url).await? {
            Some((Some(offset), length, sha)) => Ok(Some(HeadStatus { offset, length, sha })),
            Some((None, ..)) => Err(ClientError::Protocol("HEAD answer without Upload-Offset".into())),
            None => Ok(None),
        }
    }

    /// HEAD of a final upload: its offset is absent until the parts are joined (reported
    /// here as 0, which never equals a positive length).
    pub(crate) async fn head_final(&self, url: &Url) -> Result<Option<HeadStatus>, ClientError> {
        Ok(self.head_any(url).await?.map(|(offset, length, sha)| HeadStatus {
            offset: offset.unwrap_or(0),
            length,
            sha,
        }))
    }

    /// HEAD: `Upload-Offset`, `Upload-Length` and `Repr-Digest` as they come.
    async fn head_any(&self, url: &Url) -> Result<Option<(Option<u64>, Option<u64>, Option<[u8; 32]>)>, ClientError> {
        let resp = self.http.head(url.clone()).header("Tus-Resumable", TUS).send().await.map_err(|e| network(&e))?;
        match resp.status() {
            s if s.is_success() => {
                let h = resp.headers();
                let num = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                let sha = h.get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
                Ok(Some((num("upload-offset"), num("upload-length"), sha)))
            }
            StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::FORBIDDEN => Ok(None),
            _ => Err(from_status(resp).await),
        }
    }

    pub(crate) async fn post(&self, headers: &[(&str, String)]) -> Result<Url, ClientError> {
        let mut req = self.http.post(self.endpoint.clone()).header("Tus-Resumable", TUS);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.map_err(|e| network(&e))?;
        if resp.status() != StatusCode::CREATED {
            return Err(from_status(resp).await);
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Protocol("creation answer without Location".into()))?;
        self.endpoint.join(location).map_err(|e| ClientError::Protocol(format!("bad Location {location:?}: {e}")))
    }
}
