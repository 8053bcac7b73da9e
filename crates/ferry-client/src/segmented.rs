//! Segmented downloads: one file over several connections, like aria2.
//!
//! The file is cut into one segment per connection; a connection that runs out of work
//! splits the largest remaining segment in two and takes the back half, so the
//! connections finish together. Unless told how many, the download adapts the count
//! ([`crate::ramp`]): a new connection simply splits off work. A connection that delivers
//! nothing for [`STALL`] is dropped and its range fetched again on a fresh one. Every
//! range request carries `If-Range` with the strong ETag: if the file changes, the server
//! answers 200 and the download restarts from zero instead of stitching two versions. Bytes go straight to their place in
//! `OUT.ferry-partial`; `OUT.ferry-state` records each segment's progress every second,
//! so an interrupted download resumes every segment where it stopped. The finished file is
//! hashed once and checked against `Repr-Digest` before it is renamed to OUT.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::digest::{parse_repr_digest_sha256, to_hex};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT_RANGES, CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::download::{Downloader, parse_content_range, publish, side_paths};
use crate::error::{from_status, network};
use crate::ramp::{NEAR, Ramp, STALL, START, step_rate};
use crate::{ClientError, DownloadOutcome, Progress};

/// A segment is never split into halves smaller than this.
const MIN_SPLIT: u64 = 256 << 10;
/// Bytes gathered before one positional write.
const WRITE_BATCH: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    start: u64,
    end: u64,
    pos: u64,
    #[serde(skip)]
    busy: bool,
    /// Bytes received past `pos` and not yet written: a split leaves them to this segment.
    #[serde(skip)]
    buffered: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedState {
    url: String,
    etag: String,
    size: u64,
    segments: Vec<Segment>,
}

struct Shared {
    segments: Mutex<Vec<Segment>>,
    fetched: AtomicU64,
    changed: AtomicBool,
    /// Connections running, and how many may run (a connection past that ends after its
    /// current range).
    running: AtomicUsize,
    allowed: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Segment>> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done(&self) -> u64 {
        self.lock().iter().map(|s| s.pos - s.start).sum()
    }

    /// Uncounts the caller if more connections run than are allowed; true when it should end.
    fn surplus(&self) -> bool {
        self.running
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n > self.allowed.load(Ordering::Relaxed)).then(|| n - 1)
            })
            .is_ok()
    }
}

/// Takes unstarted work, or splits the largest segment another connection is on.
fn claim(segments: &mut Vec<Segment>) -> Option<usize> {
    if let Some(i) = segments.iter().position(|s| !s.busy && s.pos < s.end) {
        segments[i].busy = true;
        return Some(i);
    }
    let (i, left) = segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.busy)
        .map(|(i, s)| (i, s.end.saturating_sub(s.pos + s.buffered)))
        .max_by_key(|x| x.1)?;
    if left < 2 * MIN_SPLIT {
        return None;
    }
    let mid = segments[i].end - left / 2;
    let back = Segment { start: mid, end: segments[i].end, pos: mid, busy: true, buffered: 0 };
    segments[i].end = mid;
    segments.push(back);
    Some(segments.len() - 1)
}

struct Probe {
    size: u64,
    etag: String,
    digest: Option<[u8; 32]>,
    /// Round trip to the server (a nearby one is under [`NEAR`]).
    rtt: Duration,
}

/// What the server says about the file, or `None` if it cannot serve ranges of it.
async fn probe(d: &Downloader, url: &Url) -> Result<Option<Probe>, ClientError> {
    let started = std::time::Instant::now();
    let resp = d.http.head(url.clone()).send().await.map_err(|e| network(&e))?;
    // The first request may also have opened the connection, and a busy machine may slow
    // it: a server that looks far is asked once more over the open connection.
    let mut rtt = started.elapsed();
    if rtt >= NEAR && resp.status().is_success() {
        let again = std::time::Instant::now();
        if d.http.head(url.clone()).send().await.is_ok_and(|r| r.status().is_success()) {
            rtt = rtt.min(again.elapsed());
        }
    }
    if !resp.status().is_success() {
        return Err(from_status(resp).await);
    }
    let h = resp.headers();
    let ranges = h.get(ACCEPT_RANGES).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("bytes"));
    let etag = h.get(ETAG).and_then(|v| v.to_str().ok()).filter(|t| !t.starts_with("W/")).map(str::to_owned);
    let size = h.get(reqwest::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let digest = h.get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
    Ok(match (ranges, etag, size) {
        (true, Some(etag), Some(size)) if size >= 2 * MIN_SPLIT => Some(Probe { size, etag, digest, rtt }),
        _ => None,
    })
}

/// A segmented download; `None` when the server cannot do ranges (the caller then
/// downloads over one connection).
pub(crate) async fn download(d: &Downloader, url: &Url, out: &Path) -> Result<Option<DownloadOutcome>, ClientError> {
    let mut restarted = false;
    for _ in 0..3 {
        let Some(p) = probe(d, url).await? else { return Ok(None) };
        if d.connections.is_none() && p.rtt < NEAR && !has_state(out) {
            return Ok(None); // a nearby server: one connection is as fast and costs less
        }
        match attempt(d, url, out, &p).await? {
            Attempt::Done(mut o) => {
                o.restarted |= restarted;
                return Ok(Some(o));
            }
            Attempt::Changed => {
                tracing::info!("the file changed on the server during the download; starting over");
                restarted = true;
            }
        }
    }
    Err(ClientError::Unreachable("the file keeps changing on the server; try again later".into()))
}

enum Attempt {
    Done(DownloadOutcome),
    Changed,
}

/// Whether `out` has a segmented download's state to resume.
pub(crate) fn has_state(out: &Path) -> bool {
    let (_, state_path) = side_paths(out);
    fs::read(&state_path).ok().and_then(|b| serde_json::from_slice::<SavedState>(&b).ok()).is_some()
}

/// A one-connection download's state (URL, ETag; the partial file holds the bytes so far).
#[derive(Deserialize)]
struct SingleState {
    url: String,
    etag: String,
}

async fn attempt(d: &Downloader, url: &Url, out: &Path, p: &Probe) -> Result<Attempt, ClientError> {
    let (partial, state_path) = side_paths(out);
    let state = fs::read(&state_path).ok();
    let saved: Option<SavedState> = state.as_deref().and_then(|b| serde_json::from_slice(b).ok());
    let had_state = saved.is_some();
    let resumable = saved.filter(|s| {
        s.url == url.as_str()
            && s.etag == p.etag
            && s.size == p.size
            && !s.segments.is_empty()
            && fs::metadata(&partial).is_ok_and(|m| m.len() == p.size)
    });
    // A download that one connection began goes on from where it stopped.
    let single = state
        .as_deref()
        .and_then(|b| serde_json::from_slice::<SingleState>(b).ok())
        .filter(|s| !had_state && s.url == url.as_str() && s.etag == p.etag)
        .and_then(|_| fs::metadata(&partial).ok())
        .map(|m| m.len())
        .filter(|&have| have <= p.size);
    let restarted = had_state && resumable.is_none() && single.is_none();
    let start = d.connections.unwrap_or(START);
    let segments = match (resumable, single) {
        (Some(s), _) => s.segments,
        (None, Some(have)) => vec![Segment { start: 0, end: p.size, pos: have, busy: false, buffered: 0 }],
        (None, None) => {
            let n = start as u64;
            (0..n)
                .map(|i| Segment {
                    start: p.size * i / n,
                    end: p.size * (i + 1) / n,
                    pos: p.size * i / n,
                    busy: false,
                    buffered: 0,
                })
                .collect()
        }
    };
    let resumed_from: u64 = segments.iter().map(|s| s.pos - s.start).sum();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(resumed_from == 0 && single.is_none())
        .open(&partial)
        .map_err(|e| ClientError::local(&partial, e))?;
    file.set_len(p.size).map_err(|e| ClientError::local(&partial, e))?;
    let file = Arc::new(file);
    let shared = Arc::new(Shared {
        segments: Mutex::new(segments),
        fetched: AtomicU64::new(0),
        changed: AtomicBool::new(false),
        running: AtomicUsize::new(0),
        allowed: AtomicUsize::new(usize::MAX),
    });
    save(&shared, &file, url, p, &state_path)?;

    let stop_ticker = CancellationToken::new();
    let ticker = {
        let (shared, file, url, state_path, stop) =
            (shared.clone(), file.clone(), url.clone(), state_path.clone(), stop_ticker.clone());
        let (progress, size, etag) = (d.progress.clone(), p.size, p.etag.clone());
        tokio::spawn(async move {
            let probe = Probe { size, etag, digest: None, rtt: Duration::MAX };
            let mut n = 0u32;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                if let Some(p) = &progress {
                    p(Progress { done: shared.done(), total: Some(size) });
                }
                n += 1;
                if n.is_multiple_of(4) {
                    let _ = save(&shared, &file, &url, &probe, &state_path);
                }
            }
        })
    };
    let job = Job { d, url, etag: &p.etag, file: &file, partial: &partial, shared: &shared };
    let result = run_workers(&job, start, p.rtt).await;
    stop_ticker.cancel();
    let _ = ticker.await;
    let saved = save(&shared, &file, url, p, &state_path);
    if shared.changed.load(Ordering::Relaxed) {
        let _ = fs::remove_file(&partial);
        let _ = fs::remove_file(&state_path);
        return Ok(Attempt::Changed);
    }
    // Interrupted beats other errors: the user asked to stop.
    if result.iter().any(|r| matches!(r, Err(ClientError::Interrupted))) {
        return Err(ClientError::Interrupted);
    }
    for r in result {
        r?;
    }
    saved?;
    if shared.lock().iter().any(|s| s.pos < s.end) {
        return Err(ClientError::Unreachable("some ranges could not be fetched; run again to resume".into()));
    }
    let local = crate::hashing::sha256_of_file(file.clone(), p.size, &partial).await?;
    publish(&file, &partial, &state_path, out, &local, p.digest)?;
    if let Some(pf) = &d.progress {
        pf(Progress { done: p.size, total: Some(p.size) });
    }
    Ok(Attempt::Done(DownloadOutcome {
        path: out.to_path_buf(),
        size: p.size,
        resumed_from,
        fetched: shared.fetched.load(Ordering::Relaxed),
        sha256: to_hex(&local),
        verified: p.digest.is_some(),
        restarted,
        already_there: false,
    }))
}

/// What every connection of one download shares.
#[derive(Clone, Copy)]
struct Job<'a> {
    d: &'a Downloader,
    url: &'a Url,
    etag: &'a str,
    file: &'a Arc<File>,
    partial: &'a Path,
    shared: &'a Arc<Shared>,
}

/// Runs `start` connections, adding more while the rate keeps rising (when the count
/// was not given), until every connection has run out of work.
async fn run_workers(job: &Job<'_>, start: usize, rtt: Duration) -> Vec<Result<(), ClientError>> {
    let Job { d, shared, .. } = *job;
    let mut ramp = match d.connections {
        Some(n) => Ramp::new(n, n),
        None => Ramp::new(start, d.max_connections).with_rtt(rtt),
    };
    let mut workers = futures_util::stream::FuturesUnordered::new();
    shared.allowed.store(ramp.streams(), Ordering::Relaxed);
    for _ in 0..ramp.streams() {
        shared.running.fetch_add(1, Ordering::Relaxed);
        workers.push(counted_worker(job));
    }
    let mut results = Vec::new();
    let fetched = || shared.fetched.load(Ordering::Relaxed);
    let mut measuring = Box::pin(step_rate(fetched));
    loop {
        tokio::select! {
            r = workers.next() => match r {
                Some(r) => results.push(r),
                None => return results,
            },
            rate = &mut measuring, if !ramp.fixed() => {
                measuring = Box::pin(step_rate(fetched));
                let before = ramp.streams();
                let next = ramp.observe(rate);
                tracing::debug!(rate_mb_s = rate / 1e6, streams = before, next, "download connections");
                // A count given back lets the surplus connections end after their range.
                shared.allowed.store(next, Ordering::Relaxed);
                let running = shared.running.load(Ordering::Relaxed);
                for _ in running.min(next)..next {
                    shared.running.fetch_add(1, Ordering::Relaxed);
                    workers.push(counted_worker(job));
                }
            }
        }
    }
}

/// Makes the written bytes durable, then records how far each segment got. The positions
/// are read before the sync, so a position never names bytes the sync did not cover.
fn save(shared: &Shared, file: &File, url: &Url, p: &Probe, state_path: &Path) -> Result<(), ClientError> {
    let segments = shared.lock().clone();
    file.sync_data().map_err(|e| ClientError::local(state_path, e))?;
    let state = SavedState { url: url.to_string(), etag: p.etag.clone(), size: p.size, segments };
    let bytes = serde_json::to_vec(&state).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let tmp = state_path.with_extension("ferry-state-tmp");
    fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, state_path)).map_err(|e| ClientError::local(state_path, e))
}

/// One connection, counted in `shared.running` until it ends.
async fn counted_worker(job: &Job<'_>) -> Result<(), ClientError> {
    let shared = job.shared;
    let mut left = false;
    let r = worker(job, &mut left).await;
    if !left {
        shared.running.fetch_sub(1, Ordering::Relaxed);
    }
    r
}

/// One connection: claim work, fetch it, retry what fails. Sets `left` when it ended as a
/// surplus connection (already uncounted).
async fn worker(job: &Job<'_>, left: &mut bool) -> Result<(), ClientError> {
    let Job { d, shared, .. } = *job;
    let mut attempts = 0u32;
    loop {
        if shared.changed.load(Ordering::Relaxed) {
            return Ok(());
        }
        if d.cancel.is_cancelled() {
            return Err(ClientError::Interrupted);
        }
        if shared.surplus() {
            *left = true;
            return Ok(());
        }
        let Some(idx) = claim(&mut shared.lock()) else { return Ok(()) };
        let before = shared.fetched.load(Ordering::Relaxed);
        let r = fetch(job, idx).await;
        {
            let s = &mut shared.lock()[idx];
            s.busy = false;
            s.buffered = 0;
        }
        match r {
            Ok(()) => attempts = 0,
            Err(e) if e.is_retryable() && attempts < d.retry.max_attempts => {
                attempts = if shared.fetched.load(Ordering::Relaxed) > before { 1 } else { attempts + 1 };
                let delay = d.retry.announce(attempts, &e);
                tracing::info!(error = %e, attempt = attempts, "retrying a range");
                tokio::select! {
                    () = d.cancel.cancelled() => return Err(ClientError::Interrupted),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Fetches what is left of segment `idx` (its end may shrink while this runs).
async fn fetch(job: &Job<'_>, idx: usize) -> Result<(), ClientError> {
    let Job { d, url, etag, file, partial, shared } = *job;
    let (pos, end) = {
        let s = &shared.lock()[idx];
        (s.pos, s.end)
    };
    if pos >= end {
        return Ok(());
    }
    let req = d.http.get(url.clone()).header(RANGE, format!("bytes={pos}-{}", end - 1)).header(IF_RANGE, etag);
    let resp = tokio::select! {
        () = d.cancel.cancelled() => return Err(ClientError::Interrupted),
        r = tokio::time::timeout(STALL, req.send()) => r.map_err(|_| stalled())?.map_err(|e| network(&e))?,
    };
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let start = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .map(|r| r.0);
            if start != Some(pos) {
                return Err(ClientError::Protocol(format!("asked for bytes from {pos}, got {start:?}")));
            }
        }
        StatusCode::OK => {
            shared.changed.store(true, Ordering::Relaxed);
            return Ok(());
        }
        _ => return Err(from_status(resp).await),
    }
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    loop {
        let next = tokio::select! {
            () = d.cancel.cancelled() => None,
            n = tokio::time::timeout(STALL, stream.next()) => Some(n),
        };
        let (chunk, failure) = match next {
            None => (None, Some(ClientError::Interrupted)),
            Some(Err(_)) => (None, Some(stalled())),
            Some(Ok(n)) => match n {
                None => (None, None),
                Some(Err(e)) => (None, Some(network(&e))),
                Some(Ok(c)) => (Some(c), None),
            },
        };
        let ended = chunk.is_none();
        // Another connection may have taken the back of this range: what lies past its
        // end now is neither kept, nor counted, nor charged to the rate limit.
        let mut full = false;
        if let Some(c) = &chunk {
            let (room, take) = {
                let s = &mut shared.lock()[idx];
                let room = s.end.saturating_sub(s.pos + buf.len() as u64);
                let take = (c.len() as u64).min(room);
                s.buffered = buf.len() as u64 + take;
                (room, take)
            };
            let take = take as usize;
            full = take as u64 == room;
            if let Some(l) = &d.limiter {
                l.acquire(take as u64).await;
            }
            shared.fetched.fetch_add(take as u64, Ordering::Relaxed);
            buf.extend_from_slice(&c[..take]);
        }
        if buf.len() >= WRITE_BATCH || ended || full {
            let finished = flush(file, partial, shared, idx, &mut buf).await?;
            if finished {
                return Ok(());
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        if ended {
            return Err(ClientError::Unreachable("the server ended a range early".into()));
        }
        if shared.changed.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
}

/// A connection that delivered nothing for [`STALL`]: dropped, its range retried.
fn stalled() -> ClientError {
    ClientError::Unreachable(format!("no data for {} s on one connection", STALL.as_secs()))
}

/// Writes the buffered bytes at the segment's position; true when the segment is done.
async fn flush(
    file: &Arc<File>,
    partial: &Path,
    shared: &Arc<Shared>,
    idx: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, ClientError> {
    let (pos, end) = {
        let s = &shared.lock()[idx];
        (s.pos, s.end)
    };
    let n = (buf.len() as u64).min(end.saturating_sub(pos)) as usize;
    let data = std::mem::take(buf);
    let f = file.clone();
    let written = tokio::task::spawn_blocking(move || f.write_all_at(&data[..n], pos).map(|()| n))
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?
        .map_err(|e| ClientError::local(partial, e))?;
    let mut segs = shared.lock();
    let s = &mut segs[idx];
    s.pos = (s.pos + written as u64).min(s.end.max(s.pos));
    s.buffered = 0;
    Ok(s.pos >= s.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_split_the_largest_remaining_segment() {
        let mut segs = vec![Segment { start: 0, end: 100 << 20, pos: 0, busy: false, buffered: 0 }];
        assert_eq!(claim(&mut segs), Some(0));
        assert_eq!(claim(&mut segs), Some(1), "splits the busy segment");
        assert_eq!((segs[0].end, segs[1].start, segs[1].end), (50 << 20, 50 << 20, 100 << 20));
        segs[0].pos = 49 << 20; // nearly done
        assert_eq!(claim(&mut segs), Some(2), "splits the larger remainder");
        assert_eq!(segs[2].start, 75 << 20);
        segs[0].pos = segs[0].end;
        segs[0].busy = false;
        segs[1].pos = segs[1].end - MIN_SPLIT;
        segs[2].pos = segs[2].end - MIN_SPLIT;
        assert_eq!(claim(&mut segs), None, "nothing worth splitting");
    }
}
