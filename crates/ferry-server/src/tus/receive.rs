//! The data path: a request body streamed into an upload's staging file.
//!
//! Bytes go to disk in batches of up to [`BATCH_BYTES`] (the `Bytes` frames hyper hands
//! us, written without copying), hashed for the whole-file SHA-256 in the same pass.
//! The durability rule: `sync_data` first, then the compare-and-set offset commit; nothing
//! is acknowledged that is not on stable storage. A body that stops early keeps what
//! arrived, except a checksummed body, which is verified or discarded whole.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use ferry_core::digest::{parse_repr_digest_sha256, to_hex};
use ferry_core::{ChecksumAlgorithm, Checksummer, UploadChecksum};
use ferry_store::UploadRecord;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::{complete, header_str, next_expiry};
use crate::locks::UploadGuard;
use crate::{ApiError, AppState};

/// Bytes gathered before one blocking write.
const BATCH_BYTES: usize = 4 << 20;
/// While streaming, commit at least this often.
const COMMIT_EVERY: Duration = Duration::from_secs(5);

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
    Cut(String),
    Interrupted,
    Shutdown,
    Overflow,
}

/// The open staging file and the running hashes, moved into blocking tasks and back.
struct Sink {
    file: File,
    sha: Sha256,
    check: Option<Checksummer>,
    written: u64,
}

impl Sink {
    fn write_batch(&mut self, batch: &[Bytes]) -> io::Result<()> {
        for buf in batch {
            self.file.write_all(buf)?;
            self.sha.update(buf);
            if let Some(c) = &mut self.check {
                c.update(buf);
            }
            self.written += buf.len() as u64;
        }
        Ok(())
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
    let (path, base) = state.staging.locate(&rec.id, rec.host.as_ref());
    let offset = rec.offset;
    let sha = blocking(move || -> io::Result<Sha256> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(base))?;
        let mut f = f.take(offset);
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
        }
        Ok(sha)
    })
    .await??;
    guard.state.hasher = Some((offset, sha.clone()));
    Ok(sha)
}

/// Streams `body` into upload `rec` (active, its offset already checked against the
/// request) and commits what may be committed. `limit` is how many bytes the upload can
/// still take.
pub(crate) async fn receive(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
    headers: &HeaderMap,
    body: Body,
    checksum: Option<UploadChecksum>,
) -> Result<Received, ApiError> {
    let start = rec.offset;
    let limit = rec.length.unwrap_or(state.config.max_size).saturating_sub(start);
    let trailer_declared =
        header_str(headers, "trailer")?.is_some_and(|t| t.to_ascii_lowercase().contains("upload-checksum"));
    let verified_whole = checksum.is_some() || trailer_declared;

    let sha = hasher_at(state, guard, rec).await?;
    let staging = state.staging.clone();
    let (id, host) = (rec.id.clone(), rec.host.clone());
    let file = match blocking(move || staging.open_region(&id, host.as_ref(), start)).await? {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && rec.host.is_some() => {
            return Err(ApiError::Gone("the final upload holding this part's bytes is gone".into()));
        }
        Err(e) => return Err(e.into()),
    };
    // With a checksum trailer announced, the algorithm is only known at the end; crc32c (what
    // ferry's own client sends) is computed on the way in, anything else is re-read then.
    let check = match (&checksum, trailer_declared) {
        (Some(c), _) => Some(Checksummer::new(c.algorithm)),
        (None, true) => Some(Checksummer::new(ChecksumAlgorithm::Crc32c)),
        (None, false) => None,
    };
    let flush_file = Arc::new(file.try_clone()?);
    let mut sink = Some(Sink { file, sha, check, written: 0 });
    let mut flusher = Flusher::default();

    let mut body = body;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    let mut committed = start;
    let mut last_commit = Instant::now();
    let mut trailers: Option<HeaderMap> = None;
    let mut write_error: Option<io::Error> = None;
    let mut accepted = 0u64;
    let mut inflight: Option<tokio::task::JoinHandle<(Sink, io::Result<()>)>> = None;
    let stop: Option<Stop> = loop {
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
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        if accepted + frame.len() as u64 > limit {
            break Some(Stop::Overflow);
        }
        accepted += frame.len() as u64;
        batch_len += frame.len();
        batch.push(frame);
        if batch_len >= BATCH_BYTES {
            // Double buffering: the previous batch is written (and hashed) on a blocking
            // thread while this one was received; wait for it, then hand this one over.
            if let Some(h) = inflight.take() {
                let (s, r) = h.await?;
                sink = Some(s);
                if let Err(e) = r {
                    write_error = Some(e);
                    break Some(Stop::Cut("write failed".into()));
                }
                let s = sink.as_ref().ok_or_else(|| ApiError::Internal("sink lost".into()))?;
                // Keep the disk busy while the network delivers: flush in the background,
                // and acknowledge (for unchecksummed bodies) what a finished flush made durable.
                if let Err(e) = flusher.harvest().await {
                    write_error = Some(e);
                    break Some(Stop::Cut("write failed".into()));
                }
                flusher.maybe_start(&flush_file, start + s.written, &s.sha);
                if !verified_whole
                    && let Some((pos, _)) = &flusher.durable
                    && (*pos - committed >= state.config.commit_every_bytes || last_commit.elapsed() >= COMMIT_EVERY)
                    && let Some((pos, sha)) = flusher.durable.take()
                {
                    if !state.meta.commit_offset(&rec.id, committed, pos, Some(next_expiry(state))).await? {
                        return Err(ApiError::Conflict("the upload changed under this request".into()));
                    }
                    guard.state.hasher = Some((pos, sha));
                    committed = pos;
                    last_commit = Instant::now();
                }
            }
            let mut s = sink.take().ok_or_else(|| ApiError::Internal("sink lost".into()))?;
            let pending = std::mem::take(&mut batch);
            batch_len = 0;
            inflight = Some(tokio::task::spawn_blocking(move || {
                let r = s.write_batch(&pending);
                (s, r)
            }));
        }
    };
    // Collect the write still in flight.
    if let Some(h) = inflight.take() {
        let (s, r) = h.await?;
        sink = Some(s);
        if let Err(e) = r {
            write_error.get_or_insert(e);
        }
    }

    // Write what is still batched (unless the request is being thrown away).
    if !batch.is_empty() && write_error.is_none() && !matches!(stop, Some(Stop::Overflow)) {
        let mut s = sink.take().ok_or_else(|| ApiError::Internal("sink lost".into()))?;
        let (s, r) = blocking(move || {
            let r = s.write_batch(&batch);
            (s, r)
        })
        .await?;
        sink = Some(s);
        write_error = r.err();
    }

    let discard = |reason: ApiError| {
        let staging = state.staging.clone();
        let (id, host) = (rec.id.clone(), rec.host.clone());
        async move {
            blocking(move || staging.open_region(&id, host.as_ref(), committed).map(drop)).await??;
            Err::<Received, ApiError>(reason)
        }
    };

    if let Some(e) = write_error {
        if verified_whole {
            return discard(ApiError::from(e)).await;
        }
        commit(state, guard, rec, &mut sink, committed).await?;
        return Err(ApiError::from(e));
    }
    match stop {
        Some(Stop::Overflow) => {
            return discard(ApiError::TooLarge(format!(
                "body is longer than the {limit} bytes this upload can still take; its unacknowledged bytes were discarded"
            )))
            .await;
        }
        Some(other) => {
            let err = match other {
                Stop::Interrupted => ApiError::Conflict(
                    "upload interrupted: a newer request for this upload took over; resume from HEAD".into(),
                ),
                Stop::Shutdown => ApiError::Unavailable("server is shutting down; resume the upload later".into()),
                Stop::Cut(reason) => ApiError::bad(reason),
                Stop::Overflow => ApiError::Internal("unreachable".into()),
            };
            if verified_whole {
                return discard(err).await;
            }
            commit(state, guard, rec, &mut sink, committed).await?;
            return Err(err);
        }
        None => {}
    }

    // The body ended normally: verify the chunk checksum, if any.
    let trailer_checksum = trailers.as_ref().and_then(|t| t.get("upload-checksum")).map(|v| {
        UploadChecksum::parse(v.to_str().unwrap_or(""))
            .map_err(|e| ApiError::bad(format!("Upload-Checksum trailer: {e}")))
    });
    let s = sink.as_mut().ok_or_else(|| ApiError::Internal("sink lost".into()))?;
    if let Some(expected) = &checksum {
        let actual = s.check.take().map(Checksummer::finish).unwrap_or_default();
        if actual != expected.expected {
            return discard(ApiError::ChecksumMismatch(format!(
                "{} checksum of the body does not match Upload-Checksum; the chunk was discarded",
                expected.algorithm.name()
            )))
            .await;
        }
    } else if let Some(trailer) = trailer_checksum {
        let trailer = match trailer {
            Ok(t) => t,
            Err(e) => return discard(e).await,
        };
        if !trailer_declared && committed > start {
            return Err(ApiError::bad(
                "an Upload-Checksum trailer must be announced with \"Trailer: Upload-Checksum\" for a body this large",
            ));
        }
        let (path, base) = state.staging.locate(&rec.id, rec.host.as_ref());
        let (from, len) = (base + committed, start + s.written - committed);
        let alg = trailer.algorithm;
        let streamed = match s.check.take() {
            Some(c @ Checksummer::Crc32c(_)) if alg == ChecksumAlgorithm::Crc32c && committed == start => {
                Some(c.finish())
            }
            _ => None,
        };
        let actual = if let Some(v) = streamed {
            v
        } else {
            blocking(move || -> io::Result<Vec<u8>> {
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(from))?;
                let mut f = f.take(len);
                let mut c = Checksummer::new(alg);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break Ok(c.finish());
                    }
                    c.update(&buf[..n]);
                }
            })
            .await??
        };
        if actual != trailer.expected {
            return discard(ApiError::ChecksumMismatch(format!(
                "{} checksum of the body does not match the Upload-Checksum trailer; the chunk was discarded",
                alg.name()
            )))
            .await;
        }
    } else if trailer_declared {
        return discard(ApiError::bad("Upload-Checksum trailer was announced but never sent; the chunk was discarded"))
            .await;
    }

    let end = start + s.written;
    if rec.length == Some(end) {
        let s = sink.take().ok_or_else(|| ApiError::Internal("sink lost".into()))?;
        let sha = blocking(move || s.file.sync_data().map(|()| s.sha.finalize())).await??;
        let digest: [u8; 32] = sha.into();
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
            complete::fail(state, &rec.id, &reason).await?;
            return Err(ApiError::ChecksumMismatch(reason));
        }
        complete::complete_upload(state, guard, rec, committed, end, digest).await?;
        return Ok(Received { offset: end, completed: Some(digest) });
    }
    let offset = commit(state, guard, rec, &mut sink, committed).await?;
    Ok(Received { offset, completed: None })
}

/// Background `sync_data` of the staging file while a body streams in: at most one in
/// flight, started every [`FLUSH_EVERY`] bytes. A finished flush makes everything written
/// before it started durable, which is what may then be acknowledged.
#[derive(Default)]
struct Flusher {
    running: Option<(u64, Sha256, tokio::task::JoinHandle<io::Result<()>>)>,
    last_started: u64,
    /// The newest durable position (and the hash state there), not yet acknowledged.
    durable: Option<(u64, Sha256)>,
}

/// Bytes written between background flushes.
const FLUSH_EVERY: u64 = 16 << 20;

impl Flusher {
    /// Collects a finished flush, if any.
    async fn harvest(&mut self) -> io::Result<()> {
        if self.running.as_ref().is_some_and(|(_, _, h)| h.is_finished())
            && let Some((pos, sha, handle)) = self.running.take()
        {
            handle.await.map_err(io::Error::other)??;
            self.durable = Some((pos, sha));
        }
        Ok(())
    }

    /// Starts a flush covering everything up to `pos` if one is due.
    fn maybe_start(&mut self, file: &Arc<File>, pos: u64, sha: &Sha256) {
        if self.running.is_none() && pos >= self.last_started + FLUSH_EVERY {
            let f = file.clone();
            self.running = Some((pos, sha.clone(), tokio::task::spawn_blocking(move || f.sync_data())));
            self.last_started = pos;
        }
    }
}

/// `sync_data`, then advance the committed offset to everything written.
async fn commit(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
    sink: &mut Option<Sink>,
    committed: u64,
) -> Result<u64, ApiError> {
    let s = sink.take().ok_or_else(|| ApiError::Internal("sink lost".into()))?;
    let (s, r) = blocking(move || {
        let r = s.file.sync_data();
        (s, r)
    })
    .await?;
    let new = rec.offset + s.written;
    let sha = s.sha.clone();
    *sink = Some(s);
    r?;
    if new == committed {
        return Ok(committed);
    }
    if !state.meta.commit_offset(&rec.id, committed, new, Some(next_expiry(state))).await? {
        return Err(ApiError::Conflict("the upload changed under this request".into()));
    }
    guard.state.hasher = Some((new, sha));
    Ok(new)
}
