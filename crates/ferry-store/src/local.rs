//! The embedded byte store: uploads in progress under `staging/`, finished files in the tree
//! directory, on one filesystem (a publish is one rename). Blocking filesystem calls run on
//! tokio's blocking threads.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_core::{TreePath, UploadId};

use crate::blobs::{BlobFlush, BlobRead, BlobWriter, DirEntry, FileStat, Host, TreeBlobs, UploadBlobs};
use crate::staging_writer::{FlushJob, StagingWriter};
use crate::tree::stat_of;
use crate::{FaultPlan, StagingArea, StoreError, Tree};

/// Staging and tree directories on the local filesystem.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    staging: StagingArea,
    tree: Tree,
}

impl LocalBlobs {
    /// Opens (creating if needed) the staging directory and the tree.
    pub fn open(staging_dir: impl Into<PathBuf>, tree_root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Ok(Self { staging: StagingArea::open(staging_dir)?, tree: Tree::open(tree_root)? })
    }

    /// Makes the writers fail as `faults` says (tests of the data path).
    pub fn with_faults(mut self, faults: Arc<FaultPlan>) -> Self {
        self.staging = self.staging.with_faults(faults);
        self
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Storage(format!("a storage task failed: {e}")))?
}

/// Reads of one open file, from `base` on.
#[derive(Debug)]
struct FileRead {
    file: File,
    base: u64,
    /// Held while [`BlobRead::read_vec`] uses the file position.
    position: Mutex<()>,
}

impl FileRead {
    fn new(file: File, base: u64) -> Self {
        Self { file, base, position: Mutex::new(()) }
    }
}

impl BlobRead for FileRead {
    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        // `read_to_end` fills the buffer's spare capacity without zeroing it first.
        let _held = self.position.lock().unwrap_or_else(|p| p.into_inner());
        let mut reader = &self.file;
        reader.seek(SeekFrom::Start(self.base + offset))?;
        let mut buf = Vec::with_capacity(len);
        reader.take(len as u64).read_to_end(&mut buf)?;
        if buf.len() < len {
            return Err(StoreError::Storage("the file shrank while being read".into()));
        }
        Ok(buf)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, StoreError> {
        loop {
            match self.file.read_at(buf, self.base + offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map_err(StoreError::from),
            }
        }
    }
}

impl BlobWriter for StagingWriter {
    fn written(&self) -> u64 {
        StagingWriter::written(self)
    }
    fn durable(&self) -> u64 {
        StagingWriter::durable(self)
    }
    fn acknowledged(&self) -> u64 {
        StagingWriter::acknowledged(self)
    }
    fn has_failed(&self) -> bool {
        StagingWriter::has_failed(self)
    }
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        Ok(StagingWriter::write(self, buf)?)
    }
    fn sync(&mut self) -> Result<u64, StoreError> {
        Ok(StagingWriter::sync(self)?)
    }
    fn flush_job(&mut self) -> Box<dyn BlobFlush> {
        Box::new(StagingWriter::flush_job(self))
    }
    fn flushed(&mut self, result: Result<u64, StoreError>) -> Result<u64, StoreError> {
        let result = result.map_err(|e| io::Error::other(e.to_string()));
        Ok(StagingWriter::flushed(self, result)?)
    }
    fn acknowledge(&mut self, offset: u64) {
        StagingWriter::acknowledge(self, offset);
    }
    fn discard(self: Box<Self>) -> Result<(), StoreError> {
        Ok(StagingWriter::discard(*self)?)
    }
    fn holds_descriptor(&self) -> bool {
        StagingWriter::holds_descriptor(self)
    }
}

impl BlobFlush for FlushJob {
    fn upto(&self) -> u64 {
        FlushJob::upto(self)
    }
    fn run(self: Box<Self>) -> Result<u64, StoreError> {
        Ok(FlushJob::run(*self)?)
    }
}

#[async_trait]
impl UploadBlobs for LocalBlobs {
    async fn create(&self, id: &UploadId, durable: bool) -> Result<(), StoreError> {
        // Two at a time: creations contend on the directory's lock, and more threads in
        // that queue only cost CPU.
        static CREATING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let _turn = CREATING.acquire().await.map_err(|_| StoreError::Storage("closed".into()))?;
        let (staging, id) = (self.staging.clone(), id.clone());
        blocking(move || Ok(staging.create(&id, durable)?)).await
    }

    async fn writer(&self, id: &UploadId, host: Option<&Host>, offset: u64) -> Result<Box<dyn BlobWriter>, StoreError> {
        let (staging, id, host) = (self.staging.clone(), id.clone(), host.cloned());
        blocking(move || Ok(Box::new(staging.writer(&id, host.as_ref(), offset)?) as Box<dyn BlobWriter>)).await
    }

    async fn reader(&self, id: &UploadId, host: Option<&Host>) -> Result<Arc<dyn BlobRead>, StoreError> {
        let (path, base) = self.staging.locate(id, host);
        blocking(move || Ok(Arc::new(FileRead::new(File::open(path)?, base)) as Arc<dyn BlobRead>)).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let dirs = [self.staging.dir().to_path_buf(), self.tree.root().to_path_buf()];
        blocking(move || {
            for dir in dirs {
                if !fs::metadata(&dir)?.is_dir() {
                    return Err(StoreError::Storage(format!("{} is not a directory", dir.display())));
                }
            }
            Ok(())
        })
        .await
    }

    async fn exists(&self, id: &UploadId) -> Result<bool, StoreError> {
        let path = self.staging.path_of(id);
        blocking(move || Ok(path.try_exists()?)).await
    }

    async fn remove(&self, id: &UploadId) -> Result<(), StoreError> {
        let (staging, id) = (self.staging.clone(), id.clone());
        blocking(move || Ok(staging.remove(&id)?)).await
    }

    fn hosts_parts(&self) -> bool {
        true
    }

    async fn create_host(&self, id: &UploadId, len: u64) -> Result<(), StoreError> {
        let (staging, id) = (self.staging.clone(), id.clone());
        blocking(move || Ok(staging.create_host(&id, len)?)).await
    }
}

#[async_trait]
impl TreeBlobs for LocalBlobs {
    async fn stat(&self, path: &TreePath) -> Result<Option<FileStat>, StoreError> {
        let (tree, path) = (self.tree.clone(), path.clone());
        blocking(move || match tree.resolve(&path) {
            Ok(real) => Ok(Some(stat_of(&fs::metadata(real)?))),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn real_tree_path(&self, path: &TreePath) -> Result<TreePath, StoreError> {
        let (tree, path) = (self.tree.clone(), path.clone());
        blocking(move || tree.real_tree_path(&path)).await
    }

    async fn list(&self, dir: &TreePath) -> Result<Vec<DirEntry>, StoreError> {
        let (tree, dir) = (self.tree.clone(), dir.clone());
        blocking(move || {
            let real = tree.resolve(&dir)?;
            tree.list(&real)
        })
        .await
    }

    async fn check_placeable(&self, dest: &TreePath) -> Result<(), StoreError> {
        let (tree, dest) = (self.tree.clone(), dest.clone());
        blocking(move || tree.check_placeable(&dest)).await
    }

    async fn open(&self, path: &TreePath) -> Result<(Arc<dyn BlobRead>, FileStat), StoreError> {
        let (tree, path) = (self.tree.clone(), path.clone());
        blocking(move || {
            let file = File::open(tree.resolve(&path)?)?;
            // The open file's own metadata: the version read is the version described.
            let stat = stat_of(&file.metadata()?);
            Ok((Arc::new(FileRead::new(file, 0)) as Arc<dyn BlobRead>, stat))
        })
        .await
    }

    async fn publish(&self, id: &UploadId, dest: &TreePath) -> Result<FileStat, StoreError> {
        let (tree, src, dest) = (self.tree.clone(), self.staging.path_of(id), dest.clone());
        blocking(move || {
            let placed = tree.place(&src, &dest)?;
            Ok(stat_of(&fs::metadata(placed)?))
        })
        .await
    }

    async fn make_dir(&self, path: &TreePath, parents: bool) -> Result<(), StoreError> {
        let (tree, path) = (self.tree.clone(), path.clone());
        blocking(move || tree.make_dir(&path, parents)).await
    }

    async fn remove_path(&self, path: &TreePath, recursive: bool) -> Result<(), StoreError> {
        let (tree, path) = (self.tree.clone(), path.clone());
        blocking(move || tree.remove_path(&path, recursive)).await
    }

    async fn move_path(&self, from: &TreePath, to: &TreePath, overwrite: bool) -> Result<(), StoreError> {
        let (tree, from, to) = (self.tree.clone(), from.clone(), to.clone());
        blocking(move || tree.move_path(&from, &to, overwrite)).await
    }

    async fn publish_copy(&self, src: &TreePath, dest: &TreePath) -> Result<FileStat, StoreError> {
        let (tree, src, dest) = (self.tree.clone(), src.clone(), dest.clone());
        let tmp = self.staging.temp_path();
        blocking(move || {
            let from = tree.resolve(&src)?;
            let copied = fs::copy(&from, &tmp).and_then(|_| File::open(&tmp)?.sync_all());
            let placed = copied.map_err(StoreError::from).and_then(|()| tree.place(&tmp, &dest));
            if placed.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            Ok(stat_of(&fs::metadata(placed?)?))
        })
        .await
    }
}
