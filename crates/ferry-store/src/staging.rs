//! Uploads in progress: one file per upload under `staging/`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use ferry_core::UploadId;

use crate::staging_writer::{FaultPlan, StagingWriter};

/// The directory holding the bytes of unfinished uploads.
///
/// A staging file may hold more bytes than the upload's committed offset (written but not
/// yet acknowledged when the server died); [`StagingArea::open_at`] cuts that tail off so
/// the committed offset is always the truth.
#[derive(Debug, Clone)]
pub struct StagingArea {
    dir: PathBuf,
    faults: Option<std::sync::Arc<FaultPlan>>,
}

impl StagingArea {
    /// Opens (creating if needed) the staging directory.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir, faults: None })
    }

    /// Makes this area's writers fail as `faults` says (tests of the data path).
    pub fn with_faults(mut self, faults: std::sync::Arc<FaultPlan>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// The writer for one request's bytes, positioned at the acknowledged `offset`: an own
    /// file is cut to `offset` first (see [`StagingArea::open_at`]); a region of a final
    /// upload's file is left as it is (the bytes past `offset` are this part's own).
    pub fn writer(&self, id: &UploadId, host: Option<&(UploadId, u64)>, offset: u64) -> io::Result<StagingWriter> {
        // Opened (and closed again) to check and prepare it; the writer reopens it on demand.
        match host {
            None => drop(self.open_at(id, offset)?),
            Some((h, _)) => drop(OpenOptions::new().read(true).write(true).open(self.path_of(h))?),
        }
        let (path, base) = self.locate(id, host);
        let mut w = StagingWriter::new(path, base, host.is_none(), offset, self.faults.clone());
        if host.is_none() && offset == 0 {
            w.sync_dir_on_first_flush(self.dir.clone());
        }
        Ok(w)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh name in the staging directory for a temporary copy.
    pub fn temp_path(&self) -> PathBuf {
        self.dir.join(format!("{}.copy", UploadId::random()))
    }

    /// The file of an upload.
    pub fn path_of(&self, id: &UploadId) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    /// Creates the empty file of a new upload. Nothing is synced: until a byte is
    /// acknowledged a lost file is simply created again ([`StagingArea::open_at`] at offset
    /// 0), and the first flush of its bytes makes its directory entry durable too
    /// ([`StagingWriter`]). `durable` syncs now (an empty upload that completes at once).
    pub fn create(&self, id: &UploadId, durable: bool) -> io::Result<()> {
        let f = OpenOptions::new().write(true).create_new(true).open(self.path_of(id))?;
        if durable {
            f.sync_all()?;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Opens an upload's file for writing at `offset`, discarding any unacknowledged tail.
    /// A missing file (lost staging) is recreated only when `offset` is 0.
    pub fn open_at(&self, id: &UploadId, offset: u64) -> io::Result<File> {
        let path = self.path_of(id);
        let file = OpenOptions::new().read(true).write(true).create(offset == 0).truncate(false).open(&path)?;
        let len = file.metadata()?.len();
        if len < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("staging file {} holds {len} bytes, offset is {offset}", path.display()),
            ));
        }
        if len > offset {
            file.set_len(offset)?;
        }
        Ok(file)
    }

    /// Where an upload's bytes live: its own file from byte 0, or, for a partial upload
    /// adopted by a final one, a region of the final's file.
    pub fn locate(&self, id: &UploadId, host: Option<&(UploadId, u64)>) -> (PathBuf, u64) {
        match host {
            Some((h, base)) => (self.path_of(h), *base),
            None => (self.path_of(id), 0),
        }
    }

    /// Creates a final upload's file at its full length (sparse) to host its parts.
    pub fn create_host(&self, id: &UploadId, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).create_new(true).open(self.path_of(id))?;
        f.set_len(len)?;
        f.sync_all()?;
        sync_dir(&self.dir)
    }

    /// Removes an upload's bytes (missing is fine).
    pub fn remove(&self, id: &UploadId) -> io::Result<()> {
        match fs::remove_file(self.path_of(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// `fsync` a directory so a create, rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn open_at_cuts_unacknowledged_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let area = StagingArea::open(tmp.path().join("staging")).unwrap();
        let id = UploadId::random();
        area.create(&id, false).unwrap();
        let mut f = area.open_at(&id, 0).unwrap();
        f.write_all(b"hello world").unwrap();
        let f = area.open_at(&id, 5).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 5);
        assert!(area.open_at(&id, 6).is_err(), "cannot resume past the bytes on disk");
        area.remove(&id).unwrap();
        area.remove(&id).unwrap();
    }
}
