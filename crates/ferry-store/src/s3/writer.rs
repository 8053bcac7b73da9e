//! Writing an upload into an S3 multipart upload.
//!
//! Bytes gather in memory; every full part (≥ S3's 5 MiB minimum) is sent as one
//! `UploadPart` as soon as it is full, up to [`MAX_INFLIGHT`] at once per writer (S3 is
//! fast in parallel and slow per request); a flush waits for the parts sent so far.
//! Nothing is acknowledged on S3's word alone: the server's offset commit records, in the same database transaction, the parts S3 acknowledged since the last
//! commit and the bytes past them (a tail chunk), so the committed offset always names
//! bytes that are either in an acknowledged part or in the database. A part sent but not
//! committed is simply sent again (same index) by the next writer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;

use super::store_error;
use crate::{BlobFlush, BlobLedger, BlobProgress, BlobWriter, PartRecord, StoreError, TailChunk};

/// Parts being sent at once by one writer (beyond this, writing waits for the oldest).
const MAX_INFLIGHT: usize = 4;

/// One part on its way: index, base, size, and the task sending it (its ETag).
type Sending = (u32, u64, u64, tokio::task::JoinHandle<Result<String, StoreError>>);

/// Parts sent and not yet offered to a commit, shared with the flush jobs.
#[derive(Debug, Default)]
struct Sent {
    multipart_id: Option<String>,
    parts: Vec<PartRecord>,
}

/// The writer of one request into one upload's multipart upload.
#[derive(Debug)]
pub(crate) struct S3Writer {
    store: Arc<AmazonS3>,
    path: Path,
    rt: tokio::runtime::Handle,
    part_size: u64,
    /// Parts cut from the stream, in order, kept until a commit recorded them: `(index,
    /// base, bytes)`.
    cut: VecDeque<(u32, u64, Bytes)>,
    /// Parts being sent, oldest first.
    inflight: VecDeque<Sending>,
    /// Bytes not yet cut into a part: `[pending_base, written)`.
    pending: BytesMut,
    pending_base: u64,
    next_index: u32,
    /// End of the parts the database knows.
    committed_parts_end: u64,
    sent: Arc<Mutex<Sent>>,
    /// The parts offered to the commit in flight (acknowledged by `acknowledge`).
    offered: Vec<PartRecord>,
    written: u64,
    durable: u64,
    acked: u64,
    failed: bool,
}

impl S3Writer {
    /// Resumes `ledger` at the acknowledged `offset`.
    pub(crate) fn resume(
        store: Arc<AmazonS3>,
        path: Path,
        rt: tokio::runtime::Handle,
        part_size: u64,
        ledger: BlobLedger,
        offset: u64,
    ) -> Result<Self, StoreError> {
        let (parts_end, pending) = reassemble(&ledger, offset)?;
        let sent = Sent { multipart_id: ledger.multipart_id, parts: Vec::new() };
        Ok(Self {
            store,
            path,
            rt,
            part_size,
            cut: VecDeque::new(),
            inflight: VecDeque::new(),
            pending,
            pending_base: parts_end,
            next_index: ledger.parts.len() as u32,
            committed_parts_end: parts_end,
            sent: Arc::new(Mutex::new(sent)),
            offered: Vec::new(),
            written: offset,
            durable: offset,
            acked: offset,
            failed: false,
        })
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The multipart upload, started now if this is the first part.
    fn multipart(&self) -> Result<String, StoreError> {
        if let Some(id) = self.sent().multipart_id.clone() {
            return Ok(id);
        }
        let id = self.rt.block_on(self.store.create_multipart(&self.path)).map_err(store_error)?;
        self.sent().multipart_id = Some(id.clone());
        Ok(id)
    }

    /// Cuts every full part off the pending bytes and starts sending it, waiting for the
    /// oldest part when too many are on their way.
    fn cut_parts(&mut self) -> Result<(), StoreError> {
        while self.pending.len() as u64 >= self.part_size {
            let multipart = self.multipart()?;
            let bytes = self.pending.split_to(self.part_size as usize).freeze();
            let (index, base, size) = (self.next_index, self.pending_base, self.part_size);
            self.cut.push_back((index, base, bytes.clone()));
            let (store, path) = (self.store.clone(), self.path.clone());
            let task = self.rt.spawn(async move {
                let part = store.put_part(&path, &multipart, index as usize, bytes.into()).await;
                part.map(|PartId { content_id }| content_id).map_err(store_error)
            });
            self.inflight.push_back((index, base, size, task));
            self.next_index += 1;
            self.pending_base += self.part_size;
            while self.inflight.len() > MAX_INFLIGHT {
                if let Some(oldest) = self.inflight.pop_front() {
                    settle(&self.rt, &self.sent, oldest)?;
                }
            }
        }
        Ok(())
    }

    /// The flush of everything written: it waits for the parts on their way.
    fn job(&mut self) -> S3Flush {
        S3Flush {
            rt: self.rt.clone(),
            sent: self.sent.clone(),
            parts: std::mem::take(&mut self.inflight).into(),
            upto: self.written,
        }
    }

    /// The bytes `[from, to)` still held (cut parts or pending).
    fn held(&self, from: u64, to: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(to.saturating_sub(from) as usize);
        let cut = self.cut.iter().map(|(_, base, b)| (*base, b.as_ref()));
        for (base, bytes) in cut.chain(std::iter::once((self.pending_base, self.pending.as_ref()))) {
            let end = base + bytes.len() as u64;
            let at = from + out.len() as u64;
            if base <= at && end > at && at < to {
                out.extend_from_slice(&bytes[(at - base) as usize..(end.min(to) - base) as usize]);
            }
        }
        out
    }
}

/// Checks a ledger up to the acknowledged `offset` and puts its bytes past the parts back
/// together: the end of the parts, and the bytes from there to `offset`.
pub(crate) fn reassemble(ledger: &BlobLedger, offset: u64) -> Result<(u64, BytesMut), StoreError> {
    let mut parts_end = 0;
    for (i, p) in ledger.parts.iter().enumerate() {
        if p.index as usize != i || p.base != parts_end {
            return Err(StoreError::Storage(format!("the multipart ledger has a gap at part {i}")));
        }
        parts_end += p.size;
    }
    if parts_end > offset {
        return Err(StoreError::Storage(format!(
            "the multipart ledger holds {parts_end} bytes, past the acknowledged offset {offset}"
        )));
    }
    let mut tail = BytesMut::with_capacity((offset - parts_end) as usize);
    for chunk in &ledger.tail {
        let (start, end) = (chunk.base, chunk.base + chunk.data.len() as u64);
        let at = parts_end + tail.len() as u64;
        if start <= at && end > at && at < offset {
            tail.extend_from_slice(&chunk.data[(at - start) as usize..(end.min(offset) - start) as usize]);
        }
    }
    if parts_end + tail.len() as u64 != offset {
        return Err(StoreError::Storage(format!(
            "the bytes from {} to {offset} are missing from the database",
            parts_end + tail.len() as u64
        )));
    }
    Ok((parts_end, tail))
}

impl BlobWriter for S3Writer {
    fn written(&self) -> u64 {
        self.written
    }

    fn durable(&self) -> u64 {
        self.durable
    }

    fn acknowledged(&self) -> u64 {
        self.acked
    }

    fn has_failed(&self) -> bool {
        self.failed
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Storage("an earlier write failed".into()));
        }
        self.pending.extend_from_slice(buf);
        self.written += buf.len() as u64;
        let cut = self.cut_parts();
        self.failed = cut.is_err();
        cut
    }

    fn sync(&mut self) -> Result<u64, StoreError> {
        if self.failed {
            return Err(StoreError::Storage("an earlier write failed".into()));
        }
        let result = Box::new(self.job()).run();
        self.flushed(result)
    }

    fn flush_job(&mut self) -> Box<dyn BlobFlush> {
        Box::new(self.job())
    }

    fn flushed(&mut self, result: Result<u64, StoreError>) -> Result<u64, StoreError> {
        match result {
            Ok(upto) => {
                self.durable = self.durable.max(upto);
                Ok(self.durable)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn acknowledge(&mut self, offset: u64) {
        self.acked = offset;
        for p in self.offered.drain(..) {
            self.committed_parts_end = self.committed_parts_end.max(p.base + p.size);
        }
        while self.cut.front().is_some_and(|(_, base, b)| base + b.len() as u64 <= self.committed_parts_end) {
            self.cut.pop_front();
        }
    }

    fn discard(mut self: Box<Self>) -> Result<(), StoreError> {
        // Parts sent past the acknowledged offset are in no commit: the next writer sends
        // the same indexes again, so none of ours may land after its.
        for (_, _, _, task) in std::mem::take(&mut self.inflight) {
            task.abort();
            let _ = self.rt.block_on(task);
        }
        Ok(())
    }

    fn holds_descriptor(&self) -> bool {
        false
    }

    fn progress(&mut self, upto: u64) -> Option<BlobProgress> {
        let (multipart_id, parts) = {
            let mut sent = self.sent();
            let parts: Vec<PartRecord> = sent.parts.iter().filter(|p| p.base + p.size <= upto).cloned().collect();
            sent.parts.retain(|p| p.base + p.size > upto);
            (sent.multipart_id.clone(), parts)
        };
        let parts = {
            let mut parts = parts;
            parts.sort_by_key(|p| p.index);
            parts
        };
        let parts_end = parts.iter().map(|p| p.base + p.size).max().unwrap_or(self.committed_parts_end);
        let from = self.acked.max(parts_end);
        let tail = (upto > from).then(|| TailChunk { base: from, data: self.held(from, upto) });
        self.offered.clone_from(&parts);
        Some(BlobProgress { multipart_id, parts, tail, drop_tail_below: parts_end })
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        for (_, _, _, task) in &self.inflight {
            task.abort();
        }
    }
}

/// Waits for one part and records it as sent.
fn settle(rt: &tokio::runtime::Handle, sent: &Mutex<Sent>, part: Sending) -> Result<(), StoreError> {
    let (index, base, size, task) = part;
    let etag = rt.block_on(task).map_err(|e| StoreError::Storage(format!("sending part {index}: {e}")))??;
    sent.lock().unwrap_or_else(|p| p.into_inner()).parts.push(PartRecord { index, etag, base, size });
    Ok(())
}

/// Waits for the parts on their way when a flush was asked for.
pub(crate) struct S3Flush {
    rt: tokio::runtime::Handle,
    sent: Arc<Mutex<Sent>>,
    parts: Vec<Sending>,
    upto: u64,
}

impl BlobFlush for S3Flush {
    fn upto(&self) -> u64 {
        self.upto
    }

    fn run(self: Box<Self>) -> Result<u64, StoreError> {
        let S3Flush { rt, sent, parts, upto } = *self;
        for part in parts {
            settle(&rt, &sent, part)?;
        }
        Ok(upto)
    }
}
