//! The byte side of storage, as traits: an upload's bytes while it is in progress
//! ([`UploadBlobs`]) and the served tree of finished files ([`TreeBlobs`]). The server holds
//! an `Arc<dyn Blobs>` and does no file I/O of its own; [`crate::LocalBlobs`] is the
//! embedded backend (a staging directory and a tree directory on one filesystem).
//!
//! The data path's writer and readers are blocking (they run on the server's blocking
//! threads, where a batch is written and hashed in one pass); everything else is async.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use ferry_core::{TreePath, UploadId};

use crate::StoreError;

/// Where a partial upload's bytes live when a final upload adopted it: the final upload's
/// blob, from this offset (see [`UploadBlobs::create_host`]).
pub type Host = (UploadId, u64);

/// The writer of one request's bytes into an upload, from its acknowledged offset on.
/// Nothing past [`BlobWriter::acknowledged`] is ever part of the upload: after a crash or a
/// [`BlobWriter::discard`] the upload goes on from the acknowledged offset. Blocking.
pub trait BlobWriter: Send + Debug {
    /// The upload offset after everything written.
    fn written(&self) -> u64;
    /// The upload offset known to be on stable storage.
    fn durable(&self) -> u64;
    /// The last offset the caller acknowledged.
    fn acknowledged(&self) -> u64;
    /// Whether a write or flush failed (then nothing more may be acknowledged).
    fn has_failed(&self) -> bool;
    /// Appends `buf` at the written offset. A failure is final for this writer.
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError>;
    /// Makes everything written durable now; returns the durable offset. Refused after any
    /// failure.
    fn sync(&mut self) -> Result<u64, StoreError>;
    /// A flush of everything written so far, to run in the background while writing goes
    /// on; its result goes back through [`BlobWriter::flushed`].
    fn flush_job(&mut self) -> Box<dyn BlobFlush>;
    /// Records the result of a flush: its offset is durable, or the writer failed.
    fn flushed(&mut self, result: Result<u64, StoreError>) -> Result<u64, StoreError>;
    /// The caller committed `offset` (≤ durable) as the upload's acknowledged offset.
    fn acknowledge(&mut self, offset: u64);
    /// Throws away everything past the acknowledged offset.
    fn discard(self: Box<Self>) -> Result<(), StoreError>;
    /// Whether the writer holds an open file (or connection) now.
    fn holds_descriptor(&self) -> bool;

    /// What the commit of offset `upto` (≤ durable) must record for this backend, in the
    /// same transaction (object storage: parts acknowledged and bytes not yet in a part).
    /// `None` when the bytes themselves are durable (a local file).
    fn progress(&mut self, upto: u64) -> Option<crate::BlobProgress> {
        let _ = upto;
        None
    }
}

/// A flush of a [`BlobWriter`], run off the writer. Blocking.
pub trait BlobFlush: Send {
    /// The upload offset this flush makes durable when it succeeds.
    fn upto(&self) -> u64;
    /// Runs the flush.
    fn run(self: Box<Self>) -> Result<u64, StoreError>;
}

/// Random reads of one blob, pinned to the version that was opened. Blocking.
pub trait BlobRead: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, StoreError>;

    /// Reads exactly `len` bytes at `offset` into a new buffer (a backend may skip zeroing
    /// it first; this is what a download streams).
    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match self.read_at(&mut buf[done..], offset + done as u64)? {
                0 => return Err(StoreError::Storage("the blob shrank while being read".into())),
                n => done += n,
            }
        }
        Ok(buf)
    }

    /// Feeds `len` bytes from `offset` to `visit`, in order, in blocks of up to 1 MiB.
    fn scan(&self, offset: u64, len: u64, visit: &mut dyn FnMut(&[u8])) -> Result<(), StoreError> {
        let mut buf = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = self.read_at(&mut buf[..want], offset + done)?;
            if n == 0 {
                return Err(StoreError::Storage(format!("the blob ended {} bytes early", len - done)));
            }
            visit(&buf[..n]);
            done += n as u64;
        }
        Ok(())
    }
}

/// What is at a path of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// True for a directory.
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time.
    pub modified: SystemTime,
    /// Changes whenever the content may have changed (nanoseconds of the modification time
    /// on a filesystem): known digests are valid for one version.
    pub version: i64,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// File or directory name.
    pub name: String,
    /// What it is.
    pub stat: FileStat,
    /// Whether the entry is a link (only a link can lead somewhere its folder does not).
    pub link: bool,
}

/// The bytes of uploads in progress.
#[async_trait]
pub trait UploadBlobs: Send + Sync + Debug {
    /// Creates the empty blob of a new upload. `durable` makes it survive a crash now (an
    /// upload that completes at once); otherwise a lost blob is created again at offset 0.
    async fn create(&self, id: &UploadId, durable: bool) -> Result<(), StoreError>;

    /// The writer for one request's bytes, at the acknowledged `offset`. An upload's own
    /// blob loses any unacknowledged tail; a hosted part writes into its final upload's
    /// blob ([`StoreError::NotFound`] when that is gone).
    async fn writer(&self, id: &UploadId, host: Option<&Host>, offset: u64) -> Result<Box<dyn BlobWriter>, StoreError>;

    /// Reads an upload's bytes (offsets are the upload's own, hosted or not).
    async fn reader(&self, id: &UploadId, host: Option<&Host>) -> Result<Arc<dyn BlobRead>, StoreError>;

    /// Answers when the storage answers (readiness).
    async fn ready(&self) -> Result<(), StoreError>;

    /// Whether the upload still has its own blob (not yet published or removed).
    async fn exists(&self, id: &UploadId) -> Result<bool, StoreError>;

    /// Removes an upload's own blob (a missing one is fine).
    async fn remove(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Whether [`UploadBlobs::create_host`] works here: partial uploads written straight
    /// into their final upload's blob, so joining them costs no copy.
    fn hosts_parts(&self) -> bool {
        false
    }

    /// Creates a final upload's blob at its full length to host its parts in place.
    async fn create_host(&self, id: &UploadId, len: u64) -> Result<(), StoreError> {
        let _ = (id, len);
        Err(StoreError::Storage("this storage cannot join parts in place".into()))
    }
}

/// The served tree of finished files. Every path is confined to the tree: one that a link
/// leads out of is [`StoreError::Escapes`].
#[async_trait]
pub trait TreeBlobs: Send + Sync + Debug {
    /// What is at `path`, or `None` when nothing is.
    async fn stat(&self, path: &TreePath) -> Result<Option<FileStat>, StoreError>;

    /// Where `path` really is once links are followed (the names below its deepest
    /// existing ancestor kept as they are). Access is decided on this.
    async fn real_tree_path(&self, path: &TreePath) -> Result<TreePath, StoreError>;

    /// Lists a directory, sorted by name (ferry's temporary files and entries leading out
    /// of the tree left out).
    async fn list(&self, dir: &TreePath) -> Result<Vec<DirEntry>, StoreError>;

    /// Checks, changing nothing, that a file could be published at `dest`.
    async fn check_placeable(&self, dest: &TreePath) -> Result<(), StoreError>;

    /// Opens a file for reading, pinned to its current version.
    async fn open(&self, path: &TreePath) -> Result<(Arc<dyn BlobRead>, FileStat), StoreError>;

    /// Makes upload `id`'s finished blob the file at `dest`, atomically (a file already
    /// there is replaced only by the complete new one), creating parent directories.
    async fn publish(&self, id: &UploadId, dest: &TreePath) -> Result<FileStat, StoreError>;

    /// Publishes a durable copy of the tree file `src` at `dest`, atomically.
    async fn publish_copy(&self, src: &TreePath, dest: &TreePath) -> Result<FileStat, StoreError>;

    /// Creates the directory `path` (and, with `parents`, its missing ancestors).
    /// [`StoreError::Conflict`] when something is in the way (a file, or `path` itself
    /// exists), [`StoreError::NotFound`] when a parent is missing without `parents`.
    async fn make_dir(&self, path: &TreePath, parents: bool) -> Result<(), StoreError>;

    /// Removes the file (or link) or directory at `path`; a directory that is not empty
    /// only with `recursive` ([`StoreError::Conflict`] otherwise). The root is never removed.
    async fn remove_path(&self, path: &TreePath, recursive: bool) -> Result<(), StoreError>;

    /// Moves a file or directory to `to` (whose parent must exist). Something already at
    /// `to` is replaced only with `overwrite` (and a directory only by a directory).
    /// Atomic on a filesystem; on object storage a directory moves object by object.
    async fn move_path(&self, from: &TreePath, to: &TreePath, overwrite: bool) -> Result<(), StoreError>;

    /// Copies a file or a whole directory to `to` (whose parent must exist), each file
    /// published whole. Something at `to` is an error unless `overwrite` (then it is
    /// removed first).
    async fn copy_path(&self, from: &TreePath, to: &TreePath, overwrite: bool) -> Result<(), StoreError> {
        let Some(src) = self.stat(from).await? else { return Err(StoreError::NotFound(from.to_string())) };
        if to.starts_with(from) {
            return Err(StoreError::Conflict(format!("cannot copy {from} into itself")));
        }
        if self.stat(to).await?.is_some() {
            if !overwrite {
                return Err(StoreError::Conflict(format!("{to} exists")));
            }
            self.remove_path(to, true).await?;
        }
        if !src.is_dir {
            return self.publish_copy(from, to).await.map(drop);
        }
        // Depth first, without recursion in async code: a stack of directories to copy.
        let mut todo = vec![(from.clone(), to.clone())];
        while let Some((src_dir, dst_dir)) = todo.pop() {
            self.make_dir(&dst_dir, false).await?;
            for entry in self.list(&src_dir).await? {
                let name = TreePath::parse(&entry.name).map_err(|e| StoreError::Storage(e.to_string()))?;
                let (s, d) = (src_dir.join(&name), dst_dir.join(&name));
                if entry.stat.is_dir {
                    todo.push((s, d));
                } else {
                    self.publish_copy(&s, &d).await?;
                }
            }
        }
        Ok(())
    }
}

/// Both sides of one byte store.
pub trait Blobs: UploadBlobs + TreeBlobs {}

impl<T: UploadBlobs + TreeBlobs> Blobs for T {}
