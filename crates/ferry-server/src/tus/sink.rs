//! Where a request body's bytes go: the upload's [`BlobWriter`] plus the running hashes,
//! driven from the async side without blocking it.
//!
//! [`Pipeline`] overlaps three things: the network delivers the next batch while the
//! previous one is written (and hashed) on a blocking thread, and a `sync_data` runs in the
//! background every [`FLUSH_EVERY`] bytes (or [`FLUSH_AFTER`] on a slower stream, so the
//! final sync of a request is short). Reading waits for the disk when more than
//! [`DIRTY_LIMIT`] bytes are written but not durable, so a fast client can never pile up
//! unbounded dirty pages (and a final sync stays short). A finished flush makes everything
//! written before it durable: [`Pipeline::durable_beyond`] is what may be acknowledged.
//!
//! The writer holds a file descriptor only while it has bytes that are not durable yet; the
//! pipeline takes a permit from the server's descriptor gate before it opens one, and gives
//! it back when the writer closes its file, so staging files can never use up the
//! descriptors the connections need.

use bytes::Bytes;
use ferry_core::Checksummer;
use ferry_store::{BlobWriter, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Bytes written between background flushes.
const FLUSH_EVERY: u64 = 16 << 20;
/// A slower stream is flushed at least this often, so the final sync of a request is short.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(250);
/// Written-but-not-durable bytes allowed before reading waits for the running flush.
const DIRTY_LIMIT: u64 = 256 << 20;

/// The writer and the hashes fed in the same pass.
#[derive(Debug)]
pub(super) struct Sink {
    pub writer: Box<dyn BlobWriter>,
    /// SHA-256 of the upload from byte 0 to `writer.written()`.
    pub sha: Sha256,
    /// The request's own checksum (header or trailer), when it has one.
    pub check: Option<Checksummer>,
}

impl Sink {
    fn push(&mut self, batch: &[Bytes]) -> Result<(), StoreError> {
        for buf in batch {
            self.writer.write(buf)?;
            self.sha.update(buf);
            if let Some(c) = &mut self.check {
                c.update(buf);
            }
        }
        Ok(())
    }
}

enum Slot {
    Ready(Box<Sink>),
    Busy(JoinHandle<(Box<Sink>, Result<(), StoreError>)>),
    /// A blocking task panicked with the sink.
    Lost,
}

/// The sink and its background work: at most one batch being written and one flush.
pub(super) struct Pipeline {
    slot: Slot,
    /// Permits for open staging files, shared by every request.
    gate: std::sync::Arc<Semaphore>,
    /// Held while the writer has a file open.
    permit: Option<OwnedSemaphorePermit>,
    flush: Option<(Sha256, JoinHandle<Result<u64, StoreError>>)>,
    last_flush_at: u64,
    last_flush_started: std::time::Instant,
    /// The newest durable offset and the SHA-256 state there.
    durable: Option<(u64, Sha256)>,
}

fn lost() -> StoreError {
    StoreError::Storage("a staging write task failed".into())
}

impl Pipeline {
    pub fn new(sink: Sink, gate: std::sync::Arc<Semaphore>) -> Self {
        let at = sink.writer.written();
        Self {
            slot: Slot::Ready(Box::new(sink)),
            gate,
            permit: None,
            flush: None,
            last_flush_at: at,
            last_flush_started: std::time::Instant::now(),
            durable: None,
        }
    }

    /// The sink, once the batch being written (if any) is done; its error is returned.
    pub async fn ready(&mut self) -> Result<&mut Sink, StoreError> {
        if let Slot::Busy(task) = &mut self.slot {
            let (sink, r) = task.await.map_err(|_| lost())?;
            self.slot = Slot::Ready(sink);
            r?;
        }
        match &mut self.slot {
            Slot::Ready(s) => Ok(s),
            _ => Err(lost()),
        }
    }

    /// Runs `f` on the sink on a blocking thread and waits for it.
    pub async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Sink) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.ready().await?;
        let Slot::Ready(mut sink) = std::mem::replace(&mut self.slot, Slot::Lost) else { return Err(lost()) };
        let (sink, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut sink);
            (sink, r)
        })
        .await
        .map_err(|_| lost())?;
        self.slot = Slot::Ready(sink);
        r
    }

    /// Hands `batch` to a blocking thread and returns at once (after the previous batch is
    /// written, finished flushes are collected, and the disk has caught up enough).
    pub async fn push(&mut self, batch: Vec<Bytes>) -> Result<(), StoreError> {
        self.ready().await?;
        self.collect_flush(false).await?;
        let (written, durable) = {
            let s = self.ready().await?;
            (s.writer.written(), s.writer.durable())
        };
        if written - durable > DIRTY_LIMIT {
            self.collect_flush(true).await?;
        }
        self.start_flush(false).await?;
        if self.permit.is_none() {
            let permit = self.gate.clone().acquire_owned().await.map_err(|_| lost())?;
            self.permit = Some(permit);
        }
        let Slot::Ready(mut sink) = std::mem::replace(&mut self.slot, Slot::Lost) else { return Err(lost()) };
        self.slot = Slot::Busy(tokio::task::spawn_blocking(move || {
            let r = sink.push(&batch);
            (sink, r)
        }));
        Ok(())
    }

    /// Writes a slow stream's small batch and starts its flush at once, so the descriptor
    /// (and its permit) goes back as soon as the bytes are durable, not at the next batch.
    pub async fn push_and_flush(&mut self, batch: Vec<Bytes>) -> Result<(), StoreError> {
        self.push(batch).await?;
        self.ready().await?;
        self.collect_flush(false).await?;
        self.start_flush(true).await
    }

    /// Starts a background flush if one is due (or `now`) and none is running. The flush
    /// takes the writer's descriptor and its permit with it and closes them when done.
    async fn start_flush(&mut self, now: bool) -> Result<(), StoreError> {
        if self.flush.is_some() {
            return Ok(());
        }
        let last = self.last_flush_at;
        let quiet = now || self.last_flush_started.elapsed() >= FLUSH_AFTER;
        let s = self.ready().await?;
        let written = s.writer.written();
        if written < last + FLUSH_EVERY && !(quiet && written > last) {
            return Ok(());
        }
        let job = s.writer.flush_job();
        let sha = s.sha.clone();
        let permit = self.permit.take();
        self.last_flush_started = std::time::Instant::now();
        self.last_flush_at = job.upto();
        self.flush = Some((
            sha,
            tokio::task::spawn_blocking(move || {
                let r = job.run();
                drop(permit);
                r
            }),
        ));
        Ok(())
    }

    /// Collects the running flush: when it has finished, or (with `wait`) by waiting.
    /// A failed flush fails the writer for good.
    async fn collect_flush(&mut self, wait: bool) -> Result<(), StoreError> {
        let finished = self.flush.as_ref().is_some_and(|(_, h)| h.is_finished());
        if !(finished || wait) {
            return Ok(());
        }
        let Some((sha, task)) = self.flush.take() else { return Ok(()) };
        let result = task.await.unwrap_or_else(|_| Err(lost()));
        let s = self.ready().await?;
        let upto = s.writer.flushed(result)?;
        if self.durable.as_ref().is_none_or(|(at, _)| *at < upto) {
            self.durable = Some((upto, sha));
        }
        Ok(())
    }

    /// What a finished background flush made durable beyond `acknowledged`, with the hash
    /// state there.
    pub fn durable_beyond(&self, acknowledged: u64) -> Option<(u64, Sha256)> {
        self.durable.as_ref().filter(|(at, _)| *at > acknowledged).cloned()
    }

    /// Waits for everything in the background: the batch being written and any flush.
    pub async fn settle(&mut self) -> Result<&mut Sink, StoreError> {
        self.ready().await?;
        self.collect_flush(true).await?;
        self.ready().await
    }

    /// Makes everything written durable (after settling); returns the offset and the hash
    /// state there.
    pub async fn sync(&mut self) -> Result<(u64, Sha256), StoreError> {
        self.settle().await?;
        let r = self.run(|s| s.writer.sync().map(|at| (at, s.sha.clone()))).await;
        if self.ready().await.is_ok_and(|s| !s.writer.holds_descriptor()) {
            self.permit = None;
        }
        r
    }

    /// Throws away everything past the acknowledged offset (after settling).
    pub async fn discard(mut self) -> Result<(), StoreError> {
        // A failure here is already the reason for the discard; cut back regardless.
        let _ = self.settle().await;
        match self.slot {
            Slot::Ready(sink) => {
                tokio::task::spawn_blocking(move || sink.writer.discard()).await.map_err(|_| lost())?
            }
            _ => Err(lost()),
        }
    }
}
