//! The one writer on the data path: open at the acknowledged offset, write, flush, then
//! commit what is durable or discard the rest.
//!
//! The writer keeps three positions (upload offsets, not file positions):
//! `acknowledged ≤ durable ≤ written`. Only `durable` may ever be acknowledged, and a failed
//! write or `sync_data` is final: the writer refuses every later sync (Linux reports a
//! writeback error once, so a second `fsync` could succeed over lost pages) and
//! [`StagingWriter::discard`] cuts the file back to the last acknowledged offset.
//!
//! The writer holds a file descriptor only while it has bytes that are written but not yet
//! durable (from a write through the sync that covers it, so a writeback error is always
//! seen on a descriptor that was open when it happened); a slow upload waiting for its
//! next bytes pins none, so the server's limit is its sockets, not sockets × 2.
//!
//! Tests make the I/O fail through a [`FaultPlan`] on the [`crate::StagingArea`]: a sync
//! error, a full disk after N bytes, or short writes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Injected I/O failures, for tests of the data path. Cheap to check; inert by default.
#[derive(Debug)]
pub struct FaultPlan {
    sync_errors: AtomicU32,
    space_left: AtomicU64,
    short_writes: AtomicBool,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            sync_errors: AtomicU32::new(0),
            space_left: AtomicU64::new(u64::MAX),
            short_writes: AtomicBool::new(false),
        }
    }
}

impl FaultPlan {
    /// The next `n` syncs fail with EIO (without syncing anything).
    pub fn fail_syncs(&self, n: u32) {
        self.sync_errors.store(n, Ordering::SeqCst);
    }

    /// Only `bytes` more bytes fit on the disk; a write past that stores what fits and
    /// fails with ENOSPC. `u64::MAX` lifts the limit.
    pub fn limit_space(&self, bytes: u64) {
        self.space_left.store(bytes, Ordering::SeqCst);
    }

    /// Every write call stores at most half of what it was given (the caller must loop).
    pub fn short_writes(&self, on: bool) {
        self.short_writes.store(on, Ordering::SeqCst);
    }

    fn sync(&self) -> io::Result<()> {
        let failed = self.sync_errors.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failed { Err(io::Error::from_raw_os_error(5)) } else { Ok(()) }
    }

    /// How many of `len` bytes one write call may store, or ENOSPC when none fit.
    fn admit(&self, len: usize) -> io::Result<usize> {
        let len = if self.short_writes.load(Ordering::SeqCst) && len > 1 { len / 2 } else { len };
        let mut fit = len;
        let r = self.space_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            if left == u64::MAX {
                return Some(left);
            }
            fit = (len as u64).min(left) as usize;
            Some(left - fit as u64)
        });
        match r {
            Ok(_) if fit == 0 && len > 0 => Err(io::Error::from_raw_os_error(28)),
            _ => Ok(fit),
        }
    }
}

/// The writer of one request's bytes into an upload's staging bytes.
#[derive(Debug)]
pub struct StagingWriter {
    /// The file holding the upload's bytes (its own, or its final upload's).
    path: PathBuf,
    /// Open while bytes are written but not durable.
    file: Option<Arc<File>>,
    /// File position of upload offset 0 (non-zero for a part written into its final upload).
    base: u64,
    /// True when the upload owns the file, so a discard may cut it.
    own_file: bool,
    acknowledged: u64,
    durable: u64,
    written: u64,
    failed: bool,
    faults: Option<Arc<FaultPlan>>,
    /// A new file's directory, synced with the first flush of its bytes.
    unsynced_dir: Option<PathBuf>,
}

/// How long staging files' `sync_data` calls took (the durability rule's cost; exported as
/// `ferry_fsync_seconds`).
pub static FSYNC_LATENCY: ferry_core::histogram::Histogram = ferry_core::histogram::Histogram::new();

/// A `sync_data` that runs off the writer (in the background) while it keeps writing.
#[derive(Debug)]
pub struct FlushJob {
    /// `None` when nothing was written since the last durable point.
    file: Option<Arc<File>>,
    upto: u64,
    faults: Option<Arc<FaultPlan>>,
    /// Synced after the file (a new file's entry).
    dir: Option<PathBuf>,
}

impl FlushJob {
    /// The upload offset this flush makes durable when it succeeds.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Runs the flush (blocking).
    pub fn run(self) -> io::Result<u64> {
        let Some(file) = self.file else { return Ok(self.upto) };
        if let Some(f) = &self.faults {
            f.sync()?;
        }
        let started = std::time::Instant::now();
        file.sync_data()?;
        FSYNC_LATENCY.observe(started.elapsed());
        if let Some(dir) = &self.dir {
            crate::staging::sync_dir(dir)?;
        }
        Ok(self.upto)
    }
}

impl StagingWriter {
    /// A writer of the file at `path` (checked to exist by the caller; opened on demand).
    pub(crate) fn new(path: PathBuf, base: u64, own_file: bool, offset: u64, faults: Option<Arc<FaultPlan>>) -> Self {
        Self {
            path,
            file: None,
            base,
            own_file,
            acknowledged: offset,
            durable: offset,
            written: offset,
            failed: false,
            faults,
            unsynced_dir: None,
        }
    }

    /// The file is new (created without syncing): its directory is synced with the first
    /// flush of its bytes, before anything can be acknowledged.
    pub(crate) fn sync_dir_on_first_flush(&mut self, dir: PathBuf) {
        self.unsynced_dir = Some(dir);
    }

    /// The upload offset after everything written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The upload offset known to be on stable storage.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// The last offset the caller acknowledged (see [`StagingWriter::acknowledge`]).
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Whether a write or sync failed (then nothing more may be acknowledged).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Appends `buf` at the written offset. A failure is final for this writer.
    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        self.usable()?;
        while !buf.is_empty() {
            let n = match self.write_some(buf) {
                Ok(0) => Err(io::Error::new(io::ErrorKind::WriteZero, "the disk accepted no bytes")),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            }
            .inspect_err(|_| self.failed = true)?;
            self.written += n as u64;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &self.faults {
            Some(f) => f.admit(buf.len())?,
            None => buf.len(),
        };
        let at = self.base + self.written;
        self.file()?.write_at(&buf[..n], at)
    }

    /// The open file, opened now if it is not.
    fn file(&mut self) -> io::Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = Arc::new(OpenOptions::new().write(true).open(&self.path)?);
        self.file = Some(f.clone());
        Ok(f)
    }

    /// `sync_data` now; everything written becomes durable. Refused after any failure.
    pub fn sync(&mut self) -> io::Result<u64> {
        self.usable()?;
        let job = self.flush_job();
        let r = job.run();
        self.flushed(r)
    }

    /// A flush of everything written so far, to run in the background. The job takes the
    /// open descriptor with it (closed when the job is done); a later write opens the
    /// file again, and the next flush covers it.
    pub fn flush_job(&mut self) -> FlushJob {
        let dir = self.unsynced_dir.clone().filter(|_| self.file.is_some());
        FlushJob { file: self.file.take(), upto: self.written, faults: self.faults.clone(), dir }
    }

    /// Records the result of a [`FlushJob`]: its offset is durable, or the writer failed.
    pub fn flushed(&mut self, result: io::Result<u64>) -> io::Result<u64> {
        match result {
            Ok(upto) if !self.failed => {
                if upto > self.durable {
                    self.unsynced_dir = None; // that flush synced it
                }
                self.durable = self.durable.max(upto);
                Ok(self.durable)
            }
            Ok(_) => self.usable().map(|()| self.durable),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// The caller committed `offset` (≤ durable) as the upload's acknowledged offset.
    pub fn acknowledge(&mut self, offset: u64) {
        debug_assert!(offset <= self.durable, "acknowledging {offset} past the durable {}", self.durable);
        self.acknowledged = offset.min(self.durable);
    }

    /// Throws away everything past the acknowledged offset: an own file is cut back to it
    /// (a region of a final upload's file is simply overwritten later).
    pub fn discard(mut self) -> io::Result<()> {
        if self.own_file && self.written > self.acknowledged {
            let len = self.base + self.acknowledged;
            self.file()?.set_len(len)?;
        }
        Ok(())
    }

    /// Whether the writer holds a file descriptor now.
    pub fn holds_descriptor(&self) -> bool {
        self.file.is_some()
    }

    fn usable(&self) -> io::Result<()> {
        if self.failed {
            Err(io::Error::other("an earlier write or sync of this upload failed; its unacknowledged bytes are lost"))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StagingArea;
    use ferry_core::UploadId;

    fn area_with(faults: &Arc<FaultPlan>) -> (tempfile::TempDir, StagingArea, UploadId) {
        let tmp = tempfile::tempdir().unwrap();
        let area = StagingArea::open(tmp.path().join("staging")).unwrap().with_faults(faults.clone());
        let id = UploadId::random();
        area.create(&id, false).unwrap();
        (tmp, area, id)
    }

    #[test]
    fn short_writes_still_store_every_byte() {
        let faults = Arc::new(FaultPlan::default());
        faults.short_writes(true);
        let (_tmp, area, id) = area_with(&faults);
        let mut w = area.writer(&id, None, 0).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        w.write(&data).unwrap();
        assert_eq!(w.sync().unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(area.path_of(&id)).unwrap(), data);
    }

    #[test]
    fn a_failed_sync_is_final_and_discard_cuts_back() {
        let faults = Arc::new(FaultPlan::default());
        let (_tmp, area, id) = area_with(&faults);
        let mut w = area.writer(&id, None, 0).unwrap();
        w.write(b"durable").unwrap();
        w.sync().unwrap();
        w.acknowledge(7);
        w.write(b" lost").unwrap();
        faults.fail_syncs(1);
        assert!(w.sync().is_err());
        assert_eq!(w.durable(), 7, "a failed sync makes nothing durable");
        assert!(w.sync().is_err(), "a second sync after a failure is refused, not trusted");
        assert!(w.write(b"more").is_err());
        w.discard().unwrap();
        assert_eq!(std::fs::read(area.path_of(&id)).unwrap(), b"durable");
    }

    #[test]
    fn a_background_flush_failure_poisons_the_writer() {
        let faults = Arc::new(FaultPlan::default());
        let (_tmp, area, id) = area_with(&faults);
        let mut w = area.writer(&id, None, 0).unwrap();
        w.write(b"abc").unwrap();
        let job = w.flush_job();
        faults.fail_syncs(1);
        let r = job.run();
        assert!(w.flushed(r).is_err());
        assert_eq!(w.durable(), 0);
        assert!(w.has_failed());
        assert!(w.sync().is_err());
    }

    #[test]
    fn a_full_disk_stores_what_fits_then_fails() {
        let faults = Arc::new(FaultPlan::default());
        faults.limit_space(10);
        let (_tmp, area, id) = area_with(&faults);
        let mut w = area.writer(&id, None, 0).unwrap();
        let e = w.write(&[7u8; 25]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(w.written(), 10, "the part that fitted was written");
        w.discard().unwrap();
        assert_eq!(std::fs::metadata(area.path_of(&id)).unwrap().len(), 0);
        faults.limit_space(u64::MAX);
        let mut w = area.writer(&id, None, 0).unwrap();
        w.write(b"fits again").unwrap();
        assert_eq!(w.sync().unwrap(), 10);
    }

    #[test]
    fn a_descriptor_is_held_only_while_bytes_are_not_durable() {
        let faults = Arc::new(FaultPlan::default());
        let (_tmp, area, id) = area_with(&faults);
        let mut w = area.writer(&id, None, 0).unwrap();
        assert!(!w.holds_descriptor(), "a writer waiting for bytes holds no descriptor");
        w.write(b"abc").unwrap();
        assert!(w.holds_descriptor());
        let job = w.flush_job();
        w.write(b"def").unwrap();
        let r = job.run();
        assert_eq!(w.flushed(r).unwrap(), 3);
        assert!(w.holds_descriptor(), "bytes past the flush are not durable yet (opened again for them)");
        assert_eq!(w.sync().unwrap(), 6);
        assert!(!w.holds_descriptor());
        w.write(b"ghi").unwrap();
        w.sync().unwrap();
        assert_eq!(std::fs::read(area.path_of(&id)).unwrap(), b"abcdefghi");
    }
}
