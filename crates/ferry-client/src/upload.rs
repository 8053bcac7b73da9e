//! Resumable, parallel, adaptive tus uploads, verified end to end.
//!
//! One file is sent either as one tus upload or, with `parallel > 1`, as that many partial
//! uploads joined by a final `Upload-Concat` request. Every part runs the same loop: learn
//! the server's offset (HEAD), send the next chunk as a PATCH with a `crc32c`
//! `Upload-Checksum` trailer, adapt the chunk size, and on any retryable failure back off
//! and re-sync. The whole-file SHA-256 is computed while the bytes stream (sequential mode)
//! or by one concurrent pass (parallel mode) and the server checks it before the file
//! enters its tree: as a `Repr-Digest` trailer on the completing PATCH, or as `sha256`
//! metadata on the final upload.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_core::ChecksumAlgorithm;
use ferry_core::digest::{parse_repr_digest_sha256, to_hex};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::chunking::{ChunkSize, Chunker};
use crate::error::{from_status, network};
use crate::hashing::RewindableSha;
use crate::patch_body::{Activity, PatchBody};
use crate::rate::RateLimiter;
use crate::state_dir::{PartRecord, UploadRecord};
use crate::{ClientError, Progress, ProgressFn, RetryPolicy, StateDir};

const TUS: &str = "1.0.0";

/// How an upload is sent.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Number of partial uploads; `None` picks from the file size and the round-trip time
    /// ([`default_parallel`]).
    pub parallel: Option<usize>,
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
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            parallel: None,
            chunk: ChunkSize::Max,
            checksum: Some(ChecksumAlgorithm::Crc32c),
            limit_rate: None,
            stall_timeout: Duration::from_secs(60),
            dedup: false,
            relay_to: None,
        }
    }
}

/// The part count `parallel: None` chooses from the file size and the round-trip time to the
/// server. Parallel connections pay off where one TCP stream cannot fill the path (long,
/// lossy links); on a LAN or loopback the disk is the limit and more streams only add work.
pub fn default_parallel(size: u64, rtt: Duration) -> usize {
    if rtt < Duration::from_millis(5) {
        return 1;
    }
    match size {
        s if s < 256 << 20 => 1,
        s if s < 2 << 30 => 2,
        _ => 4,
    }
}

/// Uploads files to a tus endpoint, resuming where an earlier run stopped.
#[derive(Clone)]
pub struct Uploader {
    http: reqwest::Client,
    server: Url,
    endpoint: Url,
    state: StateDir,
    retry: RetryPolicy,
    options: UploadOptions,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
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

/// One range of the file going to one tus upload.
struct Part {
    start: u64,
    end: u64,
    url: Mutex<Option<Url>>,
    concat_partial: bool,
    /// Bytes of this part the server holds (last known).
    confirmed: AtomicU64,
    /// The PATCH in flight, for progress.
    activity: Mutex<Option<Arc<Activity>>>,
    sent: AtomicU64,
    resumed_from: Mutex<Option<u64>>,
}

impl Part {
    fn new(start: u64, end: u64, url: Option<Url>, concat_partial: bool) -> Self {
        Self {
            start,
            end,
            url: Mutex::new(url),
            concat_partial,
            confirmed: AtomicU64::new(0),
            activity: Mutex::new(None),
            sent: AtomicU64::new(0),
            resumed_from: Mutex::new(None),
        }
    }

    fn len(&self) -> u64 {
        self.end - self.start
    }

    fn url(&self) -> Option<Url> {
        self.url.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn shown(&self) -> u64 {
        let inflight = self
            .activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |a| a.sent.load(Ordering::Relaxed));
        (self.confirmed.load(Ordering::Relaxed) + inflight).min(self.len())
    }
}

/// How one part ended.
struct PartDone {
    server_sha: Option<[u8; 32]>,
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
        let remote_dir = remote_dir.map(|d| d.trim_matches('/')).filter(|d| !d.is_empty());

        if self.options.dedup && self.options.relay_to.is_none() {
            let sha = hash_file(file.clone(), size, path).await?;
            if let Some(outcome) = crate::dedup::try_dedup(self, path, &name, remote_dir, size, &sha).await? {
                self.report(size, size);
                return Ok(outcome);
            }
        }

        let record = self.state.load_upload(&fingerprint).filter(|r| r.size == size);
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
                    None if size < 256 << 20 => 1,
                    None => default_parallel(size, self.measure_rtt().await),
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
        for _ in 0..3 {
            let started = Instant::now();
            if self.http.request(reqwest::Method::OPTIONS, self.endpoint.clone()).send().await.is_ok() {
                best = best.min(started.elapsed());
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
    async fn head(&self, url: &Url) -> Result<Option<HeadStatus>, ClientError> {
        match self.head_any(url).await? {
            Some((Some(offset), length, sha)) => Ok(Some(HeadStatus { offset, length, sha })),
            Some((None, ..)) => Err(ClientError::Protocol("HEAD answer without Upload-Offset".into())),
            None => Ok(None),
        }
    }

    /// HEAD of a final upload: its offset is absent until the parts are joined (reported
    /// here as 0, which never equals a positive length).
    async fn head_final(&self, url: &Url) -> Result<Option<HeadStatus>, ClientError> {
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

    async fn post(&self, headers: &[(&str, String)]) -> Result<Url, ClientError> {
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

/// `Upload-Metadata` naming where the file goes.
pub(crate) fn file_metadata(
    name: &str,
    remote_dir: Option<&str>,
    sha: Option<&[u8; 32]>,
    relay_to: Option<&str>,
) -> String {
    let mut md = format!("filename {}", STANDARD.encode(name.as_bytes()));
    if let Some(to) = relay_to {
        md.push_str(&format!(",relay_to {}", STANDARD.encode(to.as_bytes())));
    }
    if let Some(dir) = remote_dir {
        md.push_str(&format!(",dir {}", STANDARD.encode(dir.as_bytes())));
    }
    if let Some(sha) = sha {
        md.push_str(&format!(",sha256 {}", STANDARD.encode(to_hex(sha).as_bytes())));
    }
    md
}

/// SHA-256 of a whole file, in one pass off the async threads.
pub(crate) async fn hash_file(file: Arc<File>, size: u64, path: &Path) -> Result<[u8; 32], ClientError> {
    crate::hashing::sha256_of_file(file, size, path).await
}

struct HeadStatus {
    offset: u64,
    length: Option<u64>,
    sha: Option<[u8; 32]>,
}

/// Everything the upload of one file shares between its parts.
struct Ctx<'a> {
    up: &'a Uploader,
    path: &'a Path,
    file: Arc<File>,
    size: u64,
    name: &'a str,
    remote_dir: Option<&'a str>,
    fingerprint: &'a str,
    parts: Vec<Arc<Part>>,
    limiter: Option<Arc<RateLimiter>>,
    final_url: Mutex<Option<Url>>,
    /// A part had to be created again (its upload was gone), so an existing final upload
    /// names a dead part: join with a new final upload.
    recreated: AtomicBool,
}

impl Ctx<'_> {
    fn save_record(&self) {
        let concat = self.parts.len() > 1 || self.parts[0].concat_partial;
        let rec = UploadRecord {
            url: if concat { String::new() } else { self.parts[0].url().map(|u| u.to_string()).unwrap_or_default() },
            path: self.path.display().to_string(),
            size: self.size,
            parts: if concat {
                self.parts
                    .iter()
                    .map(|p| PartRecord {
                        url: p.url().map(|u| u.to_string()).unwrap_or_default(),
                        start: p.start,
                        end: p.end,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            final_url: self.final_url.lock().ok().and_then(|u| u.as_ref().map(|u| u.to_string())).unwrap_or_default(),
        };
        if let Err(e) = self.up.state.save_upload(self.fingerprint, &rec) {
            tracing::warn!(error = %e, "could not save the resume record; an interrupted upload will start over");
        }
    }

    /// One tus upload for the whole file, hashed as it streams.
    async fn sequential(&self) -> Result<(String, [u8; 32], bool), ClientError> {
        let part = self.parts[0].clone();
        let sha = Arc::new(Mutex::new(RewindableSha::default()));
        let done = self.run_part(&part, Some(sha.clone())).await?;
        let local = {
            let mut h = sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
            let mut f = File::open(self.path).map_err(|e| ClientError::local(self.path, e))?;
            h.seek(&mut f, self.size).map_err(|e| ClientError::local(self.path, e))?;
            h.digest()
        };
        let verified = match done.server_sha {
            Some(s) if s != local => {
                return Err(ClientError::Verification(format!(
                    "the server stored SHA-256 {} but the file has {}",
                    to_hex(&s),
                    to_hex(&local)
                )));
            }
            Some(_) => true,
            None => false,
        };
        Ok((part.url().map(|u| u.to_string()).unwrap_or_default(), local, verified))
    }

    /// Partial uploads in parallel. The parts are created first and joined at once by a
    /// final upload (concatenation-unfinished), which lets a ferry server write them in
    /// place, so joining costs no copy. Each part is hashed as it streams and checked by the
    /// server (`Repr-Digest` trailer) before it counts; the whole file is hashed by one
    /// concurrent pass and compared with the finished final upload's digest.
    async fn parallel(&self) -> Result<(String, [u8; 32], bool), ClientError> {
        for part in &self.parts {
            if part.url().is_none() {
                self.with_retries(|| self.create(part)).await?;
            }
        }
        let concat = format!(
            "final;{}",
            self.parts.iter().filter_map(|p| p.url()).map(|u| u.path().to_owned()).collect::<Vec<_>>().join(" ")
        );
        let mut final_url = self.final_url.lock().ok().and_then(|u| u.clone());
        if let Some(u) = &final_url
            && self.up.head_final(u).await?.is_none()
        {
            final_url = None; // gone (expired or failed): make a new one below
        }
        let mut join_later = false;
        if final_url.is_none() {
            let headers = [
                ("Upload-Concat", concat.clone()),
                (
                    "Upload-Metadata",
                    file_metadata(self.name, self.remote_dir, None, self.up.options.relay_to.as_deref()),
                ),
            ];
            match self.with_retries(|| self.up.post(&headers)).await {
                Ok(u) => final_url = Some(u),
                // A server without concatenation-unfinished: join after the parts are done.
                Err(ClientError::Rejected { status: 400, .. }) => join_later = true,
                Err(e) => return Err(e),
            }
            *self.final_url.lock().unwrap_or_else(|p| p.into_inner()) = final_url.clone();
            self.save_record();
        }

        let shas: Vec<_> =
            self.parts.iter().map(|p| Arc::new(Mutex::new(RewindableSha::starting_at(p.start)))).collect();
        let hashing = hash_file(self.file.clone(), self.size, self.path);
        let sends = futures_util::future::try_join_all(
            self.parts.iter().zip(&shas).map(|(p, sha)| self.run_part(p, Some(sha.clone()))),
        );
        let (sha, done) = futures_util::future::try_join(hashing, sends).await?;
        for ((part, part_sha), d) in self.parts.iter().zip(&shas).zip(&done) {
            let local = {
                let mut h = part_sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
                let mut f = File::open(self.path).map_err(|e| ClientError::local(self.path, e))?;
                h.seek(&mut f, part.end).map_err(|e| ClientError::local(self.path, e))?;
                h.digest()
            };
            if d.server_sha.is_some_and(|s| s != local) {
                return Err(ClientError::Verification(format!(
                    "the server stored different bytes for the part at {}",
                    part.start
                )));
            }
        }
        let final_url = match final_url {
            Some(u) if !join_later && !self.recreated.load(Ordering::Relaxed) => u,
            _ => {
                // The parts as they are now (one may have been created again).
                let concat = format!(
                    "final;{}",
                    self.parts
                        .iter()
                        .filter_map(|p| p.url())
                        .map(|u| u.path().to_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let headers = [
                    ("Upload-Concat", concat),
                    (
                        "Upload-Metadata",
                        file_metadata(self.name, self.remote_dir, Some(&sha), self.up.options.relay_to.as_deref()),
                    ),
                ];
                self.with_retries(|| self.up.post(&headers)).await?
            }
        };
        // The server joins the parts as the last one completes; confirm, and compare digests.
        for attempt in 0..50 {
            match self.up.head_final(&final_url).await? {
                Some(status) if status.length == Some(self.size) && status.offset == self.size => {
                    return match status.sha {
                        Some(s) if s != sha => Err(ClientError::Verification(format!(
                            "the server joined the parts into SHA-256 {} but the file has {}",
                            to_hex(&s),
                            to_hex(&sha)
                        ))),
                        server => Ok((final_url.to_string(), sha, server.is_some())),
                    };
                }
                Some(_) if attempt < 49 => tokio::time::sleep(Duration::from_millis(200)).await,
                Some(_) => break,
                None => {
                    return Err(ClientError::Rejected {
                        status: 410,
                        reason: "the final upload failed on the server".into(),
                    });
                }
            }
        }
        Err(ClientError::Unreachable("the server did not finish joining the parts; run again to resume".into()))
    }

    async fn with_retries<T, F, Fut>(&self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut attempts = 0;
        loop {
            match f().await {
                Err(e) if e.is_retryable() && attempts < self.up.retry.max_attempts => {
                    attempts += 1;
                    self.backoff(attempts, &e).await?;
                }
                other => return other,
            }
        }
    }

    async fn backoff(&self, attempt: u32, e: &ClientError) -> Result<(), ClientError> {
        let delay = self.up.retry.delay(attempt);
        tracing::info!(error = %e, attempt, delay_ms = delay.as_millis() as u64, "retrying");
        tokio::select! {
            () = self.up.cancel.cancelled() => Err(ClientError::Interrupted),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Creates the tus upload of a part.
    async fn create(&self, part: &Part) -> Result<Url, ClientError> {
        let mut headers = vec![("Upload-Length", part.len().to_string())];
        if part.concat_partial {
            headers.push(("Upload-Concat", "partial".to_owned()));
        } else {
            headers.push((
                "Upload-Metadata",
                file_metadata(self.name, self.remote_dir, None, self.up.options.relay_to.as_deref()),
            ));
        }
        let url = self.up.post(&headers).await?;
        *part.url.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.clone());
        self.save_record();
        Ok(url)
    }

    /// Drives one part to completion: re-sync, send a chunk, adapt, retry.
    async fn run_part(&self, part: &Part, sha: Option<Arc<Mutex<RewindableSha>>>) -> Result<PartDone, ClientError> {
        let mut chunker = Chunker::new(self.up.options.chunk);
        let mut attempts = 0u32;
        let mut last_offset = None;
        loop {
            if self.up.cancel.is_cancelled() {
                return Err(ClientError::Interrupted);
            }
            match self.part_step(part, &sha, &mut chunker).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {
                    let now = part.confirmed.load(Ordering::Relaxed);
                    if last_offset != Some(now) {
                        attempts = 0;
                    }
                    last_offset = Some(now);
                }
                Err(e) if e.is_retryable() && attempts < self.up.retry.max_attempts => {
                    attempts += 1;
                    let delivered =
                        part.activity.lock().ok().and_then(|a| a.as_ref().map(|a| a.sent.load(Ordering::Relaxed)));
                    chunker.failed(delivered.unwrap_or(0));
                    tracing::debug!(next_chunk = chunker.next_len(u64::MAX), "chunk failed");
                    self.backoff(attempts, &e).await?;
                }
                Err(ClientError::Unreachable(msg)) => {
                    return Err(ClientError::Unreachable(format!(
                        "{msg} (gave up after {attempts} retries without progress; run again to resume)"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One round for a part. `Some` when the part is complete.
    async fn part_step(
        &self,
        part: &Part,
        sha: &Option<Arc<Mutex<RewindableSha>>>,
        chunker: &mut Chunker,
    ) -> Result<Option<PartDone>, ClientError> {
        let (url, status) = match part.url() {
            Some(u) => match self.up.head(&u).await? {
                Some(s) if s.length == Some(part.len()) => (u, s),
                _ => {
                    self.recreated.store(true, Ordering::Relaxed);
                    (self.create(part).await?, HeadStatus { offset: 0, length: Some(part.len()), sha: None })
                }
            },
            None => (self.create(part).await?, HeadStatus { offset: 0, length: Some(part.len()), sha: None }),
        };
        let offset = status.offset;
        part.confirmed.store(offset, Ordering::Relaxed);
        part.resumed_from.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(offset);
        if offset == part.len() {
            return Ok(Some(PartDone { server_sha: status.sha }));
        }
        if let Some(sha) = sha {
            let mut h = sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
            let mut f = File::open(self.path).map_err(|e| ClientError::local(self.path, e))?;
            h.seek(&mut f, part.start + offset).map_err(|e| ClientError::local(self.path, e))?;
        }
        let len = chunker.next_len(part.len() - offset);
        let activity = Activity::new();
        *part.activity.lock().unwrap_or_else(|p| p.into_inner()) = Some(activity.clone());
        let body = PatchBody::new(
            self.file.clone(),
            part.start + offset,
            part.start + offset + len,
            self.up.options.checksum,
            sha.as_ref().map(|s| (s.clone(), part.end)),
            self.limiter.clone(),
            activity.clone(),
        );
        let mut req = self
            .up
            .http
            .patch(url.clone())
            .header("Tus-Resumable", TUS)
            .header("Upload-Offset", offset)
            .header("Content-Type", "application/offset+octet-stream");
        if let Some(t) = body.trailer_names() {
            req = req.header("Trailer", t);
        }
        let started = Instant::now();
        let send = req.body(reqwest::Body::wrap(body)).send();
        let stall = self.up.options.stall_timeout;
        let watchdog = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if activity.idle() > stall {
                    return;
                }
            }
        };
        let mut send = std::pin::pin!(send);
        let result = tokio::select! {
            () = self.up.cancel.cancelled() => {
                // Pause cleanly: end the body at the next block with its checksum trailer,
                // so the server keeps what it received, and give it a moment to say so.
                activity.stop.store(true, Ordering::Relaxed);
                if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(10), &mut send).await
                    && let Some(o) = resp.headers().get("upload-offset").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
                        part.confirmed.store(o, Ordering::Relaxed);
                    }
                Err(ClientError::Interrupted)
            }
            () = watchdog => Err(ClientError::Unreachable(format!("no progress for {} s; the connection looks dead", stall.as_secs()))),
            r = &mut send => r.map_err(|e| network(&e)),
        };
        part.sent.fetch_add(activity.sent.load(Ordering::Relaxed), Ordering::Relaxed);
        let result = match result {
            Ok(resp) if resp.status() == StatusCode::NO_CONTENT || resp.status() == StatusCode::OK => Ok(resp),
            Ok(resp) => Err(from_status(resp).await),
            Err(e) => Err(e),
        };
        *part.activity.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let resp = result?;
        let new_offset = resp
            .headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ClientError::Protocol("PATCH answer without Upload-Offset".into()))?;
        let elapsed = started.elapsed();
        chunker.succeeded(new_offset.saturating_sub(offset), elapsed);
        tracing::debug!(
            bytes = new_offset.saturating_sub(offset),
            elapsed_ms = elapsed.as_millis() as u64,
            next_chunk = chunker.next_len(u64::MAX),
            "chunk sent"
        );
        part.confirmed.store(new_offset, Ordering::Relaxed);
        if new_offset == part.len() {
            let server_sha =
                resp.headers().get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
            return Ok(Some(PartDone { server_sha }));
        }
        Ok(None)
    }
}
