//! The data path: a request body streamed into an upload's staging bytes.
//!
//! socket → [`Pipeline`] (batches written and hashed off the async threads, background
//! flushes) → verify → `sync_data` → compare-and-set offset commit. Nothing is
//! acknowledged that is not on stable storage. A body that stops early keeps what arrived,
//! except a checksummed body, which is verified or discarded whole; a write or sync error
//! discards everything unacknowledged (a failed sync is never retried and trusted).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use ferry_core::digest::{parse_repr_digest_sha256, sha256_from_state, sha256_state, to_hex};
use ferry_core::{ChecksumAlgorithm, Checksummer, UploadChecksum};
use ferry_store::{Progress, StoreError, UploadRecord};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::sink::{Pipeline, Sink};
use super::{complete, header_str, next_expiry};
use crate::locks::UploadGuard;
use crate::{ApiError, AppState};

/// Bytes gathered before one blocking write.
const BATCH_BYTES: usize = 4 << 20;
/// A slower stream writes (and flushes) what it has once this much is at least
/// [`SLOW_AFTER`] old, so a slow connection holds little memory and no descriptor.
const SLOW_BATCH: usize = 8 << 10;
/// See [`SLOW_BATCH`].
const SLOW_AFTER: Duration = Duration::from_secs(1);
/// Frames smaller than this are copied into one compact buffer rather than kept, so a
/// slow stream's small frames do not each pin a socket read buffer.
const COPY_BELOW: usize = 16 << 10;

/// Bytes of the body gathered for the next write.
#[derive(Default)]
struct Batch {
    parts: Vec<Bytes>,
    /// Small frames, copied; grown to exactly what arrived (a slow stream's whole batch).
    small: Vec<u8>,
    len: usize,
    since: Option<Instant>,
}

/// When a batch is to be written.
enum Due {
    Full,
    Slow,
}

impl Batch {
    fn add(&mut self, data: Bytes) {
        self.since.get_or_insert_with(Instant::now);
        self.len += data.len();
        if data.len() < COPY_BELOW {
            self.small.reserve_exact(data.len());
            self.small.extend_from_slice(&data);
        } else {
            self.seal_small();
            self.parts.push(data);
        }
    }

    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            self.parts.push(Bytes::from(std::mem::take(&mut self.small)));
        }
    }

    fn due(&self) -> Option<Due> {
        if self.len >= BATCH_BYTES {
            Some(Due::Full)
        } else if self.len >= SLOW_BATCH && self.since.is_some_and(|t| t.elapsed() >= SLOW_AFTER) {
            Some(Due::Slow)
        } else {
            None
        }
    }

    fn take(&mut self) -> Vec<Bytes> {
        self.seal_small();
        (self.len, self.since) = (0, None);
        std::mem::take(&mut self.parts)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}
/// While an unchecksummed body streams, commit what is durable at least this often (a
/// kill -9 loses about this much of the transfer; group commit keeps many streams cheap).
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// What a receive achieved.
#[derive(Debug)]
pub(crate) struct Received {
    /// The committed offset afterwards.
    pub offset: u64,
    /// The whole-file SHA-256 when this request completed the upload.
    pub completed: Option<[u8; 32]>,
}

/// Why the body stopped before its end.
enum Stop {
    /// The connection broke or went silent.
    Cut(String),
    /// A newer request for this upload took over.
    Interrupted,
    /// The server's grace period for draining ran out.
    Shutdown,
    /// More bytes than the upload can take.
    Overflow(u64),
    /// The storage refused the bytes.
    Io(StoreError),
    /// The commit failed or found the upload changed.
    Api(ApiError),
}

impl Stop {
    fn into_error(self) -> ApiError {
        match self {
            Stop::Cut(reason) => ApiError::bad(reason),
            Stop::Interrupted => ApiError::Conflict(
                "upload interrupted: a newer request for this upload took over; resume from HEAD".into(),
            ),
            Stop::Shutdown => ApiError::Unavailable("server is shutting down; resume the upload later".into()),
            Stop::Overflow(limit) => ApiError::TooLarge(format!(
                "body is longer than the {limit} bytes this upload can still take; its unacknowledged bytes were discarded"
            )),
            Stop::Io(e) => io_failure(e),
            Stop::Api(e) => e,
        }
    }
}

/// A write or sync failure as the client sees it: 507 for a full disk, else 500.
fn io_failure(e: StoreError) -> ApiError {
    match ApiError::from(e) {
        ApiError::InsufficientStorage => ApiError::InsufficientStorage,
        other => ApiError::Internal(format!(
            "{other}; the bytes of this request that were not acknowledged were discarded, resume from HEAD"
        )),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// Makes sure the guard's running SHA-256 covers exactly `0..offset`. After a restart (or
/// when another process wrote the bytes) it re-reads the durable prefix once.
pub(crate) async fn hasher_at(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
) -> Result<Sha256, ApiError> {
    if let Some((at, h)) = &guard.state.hasher
        && *at == rec.offset
    {
        return Ok(h.clone());
    }
    let offset = rec.offset;
    if offset == 0 {
        return Ok(Sha256::new());
    }
    // Committed with the offset (by any node): no need to read the bytes again.
    if let Some(sha) = rec.sha_state.as_deref().and_then(sha256_from_state) {
        guard.state.hasher = Some((offset, sha.clone()));
        return Ok(sha);
    }
    let reader = state.blobs.reader(&rec.id, rec.host.as_ref()).await?;
    let sha = blocking(move || -> Result<Sha256, StoreError> {
        let mut sha = Sha256::new();
        reader.scan(0, offset, &mut |b| sha.update(b))?;
        Ok(sha)
    })
    .await??;
    guard.state.hasher = Some((offset, sha.clone()));
    Ok(sha)
}

/// How the request's bytes are verified before any of them is acknowledged.
enum Verify {
    /// Not at all: acknowledge what is durable, also periodically while streaming.
    Nothing,
    /// `Upload-Checksum` header: the whole body, at its end.
    Header(UploadChecksum),
    /// `Trailer: Upload-Checksum` announced: the whole body, against the trailer.
    Trailer,
}

impl Verify {
    fn whole(&self) -> bool {
        !matches!(self, Verify::Nothing)
    }

    /// The checksum computed on the way in. With a trailer the algorithm is only known
    /// at the end: crc32c (what ferry's own client sends) is computed, others re-read.
    fn checksummer(&self) -> Option<Checksummer> {
        match self {
            Verify::Nothing => None,
            Verify::Header(c) => Some(Checksummer::new(c.algorithm)),
            Verify::Trailer => Some(Checksummer::new(ChecksumAlgorithm::Crc32c)),
        }
    }
}

/// Streams `body` into upload `rec` (active, its offset already checked against the
/// request) and commits what may be committed.
pub(crate) async fn receive(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
    headers: &HeaderMap,
    body: Body,
    checksum: Option<UploadChecksum>,
    room: u64,
) -> Result<Received, ApiError> {
    let trailer_declared =
        header_str(headers, "trailer")?.is_some_and(|t| t.to_ascii_lowercase().contains("upload-checksum"));
    let verify = match checksum {
        Some(c) => Verify::Header(c),
        None if trailer_declared => Verify::Trailer,
        None => Verify::Nothing,
    };
    let _receiving = crate::metrics::Held::new(&state.metrics, |m| &m.uploads_active);
    let sha = Box::pin(hasher_at(state, guard, rec)).await?;
    let writer = match state.blobs.writer(&rec.id, rec.host.as_ref(), rec.offset).await {
        Ok(w) => w,
        Err(StoreError::NotFound(_)) if rec.host.is_some() => {
            return Err(ApiError::Gone("the final upload holding this part's bytes is gone".into()));
        }
        Err(e) => return Err(io_failure(e)),
    };
    let sink = Sink { writer, sha, check: verify.checksummer() };
    let mut pipe = Pipeline::new(sink, state.staging_files.clone());

    let trailers = match pump(state, guard, rec, &mut pipe, body, &verify, room).await {
        Ok(trailers) => trailers,
        Err(stop @ (Stop::Overflow(_) | Stop::Io(_) | Stop::Api(_))) => {
            Box::pin(discard(pipe)).await;
            return Err(stop.into_error());
        }
        Err(stop) if verify.whole() => {
            Box::pin(discard(pipe)).await;
            return Err(stop.into_error());
        }
        Err(stop) => {
            // Keep what arrived: make it durable and acknowledge it.
            if let Err(e) = Box::pin(commit(state, guard, rec, &mut pipe)).await {
                Box::pin(discard(pipe)).await;
                return Err(e);
            }
            return Err(stop.into_error());
        }
    };

    // The body ended normally: verify the request's checksum, if any.
    if let Err(e) = Box::pin(check_request(state, rec, &mut pipe, &verify, trailers.as_ref())).await {
        Box::pin(discard(pipe)).await;
        return Err(e);
    }
    let end = match pipe.ready().await {
        Ok(s) => s.writer.written(),
        Err(e) => {
            Box::pin(discard(pipe)).await;
            return Err(io_failure(e));
        }
    };
    if rec.length != Some(end) {
        return match Box::pin(commit(state, guard, rec, &mut pipe)).await {
            Ok(offset) => Ok(Received { offset, completed: None }),
            Err(e) => {
                Box::pin(discard(pipe)).await;
                Err(e)
            }
        };
    }
    // The last byte arrived: make it durable, check a declared digest, complete.
    let (acked, digest, blob): (u64, [u8; 32], _) = match Box::pin(pipe.sync()).await {
        Ok((_, sha)) => match pipe.ready().await {
            Ok(s) => (s.writer.acknowledged(), sha.finalize().into(), s.writer.progress(end)),
            Err(e) => return Err(io_failure(e)),
        },
        Err(e) => {
            Box::pin(discard(pipe)).await;
            return Err(io_failure(e));
        }
    };
    // A Repr-Digest (header or trailer) on the completing request names the whole upload.
    let declared = [Some(headers), trailers.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|h| h.get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256));
    if let Some(declared) = declared
        && declared != digest
    {
        let reason = format!(
            "whole-file SHA-256 mismatch: the client declared {}, the server received {}; the upload was discarded",
            to_hex(&declared),
            to_hex(&digest)
        );
        Box::pin(complete::fail(state, &rec.id, &reason)).await?;
        return Err(ApiError::ChecksumMismatch(reason));
    }
    let progress = Progress { sha_state: None, blob, lease_token: guard.lease_token() };
    Box::pin(complete::complete_upload(state, guard, rec, acked, end, digest, &progress)).await?;
    Ok(Received { offset: end, completed: Some(digest) })
}

/// Reads the body into the pipeline until it ends (its trailers, if any) or stops.
/// Unchecksummed bytes are acknowledged along the way, every `commit_every` bytes or
/// [`COMMIT_EVERY`], as far as background flushes made them durable.
async fn pump(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
    pipe: &mut Pipeline,
    mut body: Body,
    verify: &Verify,
    room: u64,
) -> Result<Option<HeaderMap>, Stop> {
    // A deferred length is bounded by the server's maximum and the caller's room (quota).
    let limit = match rec.length {
        Some(len) => len.saturating_sub(rec.offset),
        None => state.config.max_size.saturating_sub(rec.offset).min(room),
    };
    let mut batch = Batch::default();
    let mut accepted = 0u64;
    let mut trailers = None;
    let mut last_commit = Instant::now();
    let stop = loop {
        let frame = tokio::select! {
            biased;
            () = guard.stop.cancelled() => break Some(Stop::Interrupted),
            () = state.shutdown.cancelled() => break Some(Stop::Shutdown),
            f = tokio::time::timeout(state.config.network_timeout, body.frame()) => f,
        };
        let frame = match frame {
            Err(_) => break Some(Stop::Cut(format!("no data for {} s", state.config.network_timeout.as_secs()))),
            Ok(None) => break None,
            Ok(Some(Err(e))) => break Some(Stop::Cut(format!("request body ended early: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        accepted += data.len() as u64;
        if accepted > limit {
            return Err(Stop::Overflow(limit));
        }
        batch.add(data);
        let Some(due) = batch.due() else { continue };
        match due {
            // A slow stream's batch is written and made durable at once.
            Due::Slow => pipe.push_and_flush(batch.take()).await.map_err(Stop::Io)?,
            Due::Full => pipe.push(batch.take()).await.map_err(Stop::Io)?,
        }
        // What background flushes made durable is acknowledged along the way, fast stream
        // or slow, so a server killed mid-request keeps all but its last moments.
        if !verify.whole() {
            let acked = pipe.ready().await.map_err(Stop::Io)?.writer.acknowledged();
            if let Some((pos, sha)) = pipe.durable_beyond(acked)
                && (pos - acked >= state.config.commit_every_bytes || last_commit.elapsed() >= COMMIT_EVERY)
            {
                Box::pin(advance(state, guard, rec, pipe, acked, pos, sha)).await.map_err(Stop::Api)?;
                last_commit = Instant::now();
            }
        }
    };
    // What arrived before a stop is written too: an unchecksummed body keeps it.
    if !batch.is_empty() {
        pipe.push(batch.take()).await.map_err(Stop::Io)?;
    }
    pipe.settle().await.map_err(Stop::Io)?;
    match stop {
        None => Ok(trailers),
        Some(stop) => Err(stop),
    }
}

/// Checks the request's own checksum (header, or trailer) over the bytes it wrote.
async fn check_request(
    state: &AppState,
    rec: &UploadRecord,
    pipe: &mut Pipeline,
    verify: &Verify,
    trailers: Option<&HeaderMap>,
) -> Result<(), ApiError> {
    let sink = pipe.ready().await.map_err(io_failure)?;
    let (acked, written) = (sink.writer.acknowledged(), sink.writer.written());
    let trailer = trailers.and_then(|t| t.get("upload-checksum")).map(|v| {
        UploadChecksum::parse(v.to_str().unwrap_or(""))
            .map_err(|e| ApiError::bad(format!("Upload-Checksum trailer: {e}")))
    });
    let (expected, streamed, source) = match (verify, trailer) {
        (Verify::Header(c), _) => (c.clone(), sink.check.take().map(Checksummer::finish), "Upload-Checksum"),
        (_, Some(trailer)) => {
            let trailer = trailer?;
            if !verify.whole() && acked > rec.offset {
                return Err(ApiError::bad(
                    "an Upload-Checksum trailer must be announced with \"Trailer: Upload-Checksum\" for a body this large",
                ));
            }
            let streamed = match sink.check.take() {
                Some(c @ Checksummer::Crc32c(_)) if trailer.algorithm == ChecksumAlgorithm::Crc32c => Some(c.finish()),
                _ => None,
            };
            (trailer, streamed, "the Upload-Checksum trailer")
        }
        (Verify::Trailer, None) => {
            return Err(ApiError::bad("Upload-Checksum trailer was announced but never sent; the chunk was discarded"));
        }
        (Verify::Nothing, None) => return Ok(()),
    };
    let actual = match streamed {
        Some(v) => v,
        None => {
            // Re-read the request's bytes (from the page cache) with the trailer's algorithm.
            let reader = state.blobs.reader(&rec.id, rec.host.as_ref()).await.map_err(io_failure)?;
            let alg = expected.algorithm;
            blocking(move || -> Result<Vec<u8>, StoreError> {
                let mut c = Checksummer::new(alg);
                reader.scan(acked, written - acked, &mut |b| c.update(b))?;
                Ok(c.finish())
            })
            .await?
            .map_err(io_failure)?
        }
    };
    if actual != expected.expected {
        return Err(ApiError::ChecksumMismatch(format!(
            "{} checksum of the body does not match {source}; the chunk was discarded",
            expected.algorithm.name()
        )));
    }
    Ok(())
}

/// `sync_data`, then acknowledge everything written.
async fn commit(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
    pipe: &mut Pipeline,
) -> Result<u64, ApiError> {
    let (pos, sha) = pipe.sync().await.map_err(io_failure)?;
    let acked = pipe.ready().await.map_err(io_failure)?.writer.acknowledged();
    if pos > acked {
        advance(state, guard, rec, pipe, acked, pos, sha).await?;
    }
    Ok(pos)
}

/// The compare-and-set offset commit from `acked` to the durable `pos`.
async fn advance(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
    pipe: &mut Pipeline,
    acked: u64,
    pos: u64,
    sha: Sha256,
) -> Result<(), ApiError> {
    let progress = Progress {
        sha_state: Some(sha256_state(&sha)),
        blob: pipe.ready().await.map_err(io_failure)?.writer.progress(pos),
        lease_token: guard.lease_token(),
    };
    if !state.meta.commit_offset(&rec.id, acked, pos, Some(next_expiry(state)), &progress).await? {
        return Err(ApiError::Conflict("the upload changed under this request".into()));
    }
    pipe.ready().await.map_err(io_failure)?.writer.acknowledge(pos);
    guard.state.hasher = Some((pos, sha));
    Ok(())
}

/// Cuts the unacknowledged bytes off; a failure to do so is logged (the next request cuts
/// them anyway: the committed offset is the truth).
async fn discard(pipe: Pipeline) {
    if let Err(e) = pipe.discard().await {
        tracing::warn!(error = %e, "could not cut back unacknowledged bytes");
    }
}
