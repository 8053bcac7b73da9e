//! The body of one PATCH: a range of a local file, read in blocks off the async threads,
//! paced by the rate limiter, checksummed on the way out, ending with trailers:
//! `Upload-Checksum: crc32c …` for the request, and `Repr-Digest: sha-256=…` for the
//! whole file on the request that completes a sequential upload.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use ferry_core::digest::format_repr_digest;
use ferry_core::{ChecksumAlgorithm, Checksummer, UploadChecksum};
use http_body::{Body, Frame, SizeHint};
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::hashing::RewindableSha;
use crate::rate::RateLimiter;

/// Bytes read per block, unless the chunker says otherwise ([`PatchBody::with_block`]).
const BLOCK: u64 = 1 << 20;

/// Shared counters a watchdog and the progress display read.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Bytes handed to the connection by this body.
    pub sent: AtomicU64,
    /// Milliseconds since `origin` of the last block handed over.
    pub last_ms: AtomicU64,
    /// Reference point for `last_ms`.
    pub origin: Instant,
    /// Set to end the body early but cleanly (Ctrl-C): the blocks sent so far are followed
    /// by the trailers, so the server verifies and keeps them.
    pub stop: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            sent: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            origin: Instant::now(),
            stop: AtomicBool::new(false),
        })
    }

    fn touch(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.last_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the body last made progress.
    pub fn idle(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// What the body computes and sends as trailers.
pub(crate) struct PatchBody {
    file: Arc<File>,
    pos: u64,
    end: u64,
    pending: Option<JoinHandle<io::Result<Vec<u8>>>>,
    pause: Option<Pin<Box<Sleep>>>,
    limiter: Option<Arc<RateLimiter>>,
    crc: Option<Checksummer>,
    /// Whole-file hash, fed in order; a Repr-Digest trailer is sent when it reaches `file_len`.
    sha: Option<(Arc<Mutex<RewindableSha>>, u64)>,
    activity: Arc<Activity>,
    /// End at the next block once this long has passed and this many bytes were sent.
    soft_end: Option<(std::time::Duration, u64)>,
    started: Option<Instant>,
    done: bool,
    /// Bytes read (and handed to the connection) at a time.
    block: u64,
}

impl PatchBody {
    pub fn new(
        file: Arc<File>,
        start: u64,
        end: u64,
        checksum: Option<ChecksumAlgorithm>,
        sha: Option<(Arc<Mutex<RewindableSha>>, u64)>,
        limiter: Option<Arc<RateLimiter>>,
        activity: Arc<Activity>,
    ) -> Self {
        Self {
            file,
            pos: start,
            end,
            pending: None,
            pause: None,
            limiter,
            crc: checksum.map(Checksummer::new),
            sha,
            activity,
            soft_end: None,
            started: None,
            done: false,
            block: BLOCK,
        }
    }

    /// Reads (and hands over) `block` bytes at a time: small blocks on a slow link keep the
    /// bytes counted as sent close to the bytes on their way.
    pub fn with_block(mut self, block: u64) -> Self {
        self.block = block.clamp(4 << 10, BLOCK);
        self
    }

    /// Ends the body cleanly at the first block boundary after `after` has passed, once at
    /// least `min_bytes` were sent (see [`crate::chunking`]).
    pub fn with_soft_end(mut self, soft_end: Option<(std::time::Duration, u64)>) -> Self {
        self.soft_end = soft_end;
        self
    }

    fn due(&self) -> bool {
        if self.activity.stop.load(Ordering::Relaxed) {
            return true;
        }
        match (self.soft_end, self.started) {
            (Some((after, min_bytes)), Some(t)) => {
                self.activity.sent.load(Ordering::Relaxed) >= min_bytes && t.elapsed() >= after
            }
            _ => false,
        }
    }

    /// The `Trailer` header value announcing what this body will send.
    pub fn trailer_names(&self) -> Option<&'static str> {
        let digest = self.sha.as_ref().is_some_and(|(_, len)| *len == self.end);
        match (self.crc.is_some(), digest) {
            (true, true) => Some("Upload-Checksum, Repr-Digest"),
            (true, false) => Some("Upload-Checksum"),
            (false, true) => Some("Repr-Digest"),
            (false, false) => None,
        }
    }

    fn trailers(&mut self) -> Option<HeaderMap> {
        let mut map = HeaderMap::new();
        if let Some(c) = self.crc.take() {
            let alg = match &c {
                Checksummer::Sha1(_) => ChecksumAlgorithm::Sha1,
                Checksummer::Md5(_) => ChecksumAlgorithm::Md5,
                Checksummer::Sha256(_) => ChecksumAlgorithm::Sha256,
                Checksummer::Crc32c(_) => ChecksumAlgorithm::Crc32c,
            };
            if let Ok(v) = HeaderValue::from_str(&UploadChecksum::format(alg, &c.finish())) {
                map.insert("upload-checksum", v);
            }
        }
        if let Some((sha, len)) = &self.sha {
            let h = sha.lock().unwrap_or_else(|p| p.into_inner());
            if h.position() == *len
                && *len == self.end
                && let Ok(v) = HeaderValue::from_str(&format_repr_digest(&h.digest()))
            {
                map.insert("repr-digest", v);
            }
        }
        (!map.is_empty()).then_some(map)
    }
}

impl Body for PatchBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        this.started.get_or_insert_with(Instant::now);
        loop {
            if this.pending.is_none() && this.pos < this.end && this.due() {
                this.end = this.pos;
                this.pause = None;
            }
            if let Some(p) = this.pause.as_mut() {
                ready!(p.as_mut().poll(cx));
                this.pause = None;
            }
            if let Some(task) = this.pending.as_mut() {
                let block = ready!(Pin::new(task).poll(cx)).map_err(io::Error::other)??;
                this.pending = None;
                this.pos += block.len() as u64;
                if let Some(c) = &mut this.crc {
                    c.update(&block);
                }
                this.activity.touch(block.len() as u64);
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(block)))));
            }
            if this.pos >= this.end {
                if this.done {
                    return Poll::Ready(None);
                }
                this.done = true;
                return Poll::Ready(this.trailers().map(|t| Ok(Frame::trailers(t))));
            }
            let n = (this.end - this.pos).min(this.block);
            if let Some(l) = &this.limiter {
                let wait = l.reserve(n);
                if !wait.is_zero() {
                    this.pause = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
            let (file, pos, sha) = (this.file.clone(), this.pos, this.sha.as_ref().map(|(s, _)| s.clone()));
            this.pending = Some(tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n as usize];
                file.read_exact_at(&mut buf, pos)?;
                if let Some(sha) = sha {
                    let mut h = sha.lock().map_err(|_| io::Error::other("hash lock poisoned"))?;
                    // Only bytes that extend the hash in order are fed to it.
                    if h.position() == pos {
                        h.update(&buf);
                    }
                }
                Ok(buf)
            }));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
