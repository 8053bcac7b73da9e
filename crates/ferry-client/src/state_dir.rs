//! Where the client remembers unfinished uploads.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The client's state directory: `$FERRY_STATE_DIR`, else the platform's state directory
/// (`~/.local/state/ferry` on Linux).
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// What is remembered about an unfinished upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The upload URL.
    pub url: String,
    /// The local file.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// For a parallel upload: the partial uploads, in file order (`url` is then empty).
    #[serde(default)]
    pub parts: Vec<PartRecord>,
    /// For a parallel upload: the final upload joining the parts, once created.
    #[serde(default)]
    pub final_url: String,
}

/// One partial upload of a parallel upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRecord {
    /// The partial upload's URL.
    pub url: String,
    /// First file byte of the part.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
}

impl StateDir {
    /// The default location.
    pub fn default_location() -> Self {
        let dir = std::env::var_os("FERRY_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            directories::ProjectDirs::from("", "", "ferry")
                .map(|d| d.state_dir().unwrap_or_else(|| d.data_local_dir()).to_path_buf())
                .unwrap_or_else(|| PathBuf::from(".ferry-state"))
        });
        Self { dir }
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }

    /// A state directory at `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn upload_path(&self, fingerprint: &str) -> PathBuf {
        self.dir.join("uploads").join(format!("{fingerprint}.json"))
    }

    /// The remembered upload for a fingerprint.
    pub fn load_upload(&self, fingerprint: &str) -> Option<UploadRecord> {
        let text = fs::read(self.upload_path(fingerprint)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Remembers an upload (written to a temporary file and renamed, so never half-written).
    pub fn save_upload(&self, fingerprint: &str, rec: &UploadRecord) -> io::Result<()> {
        let path = self.upload_path(fingerprint);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec(rec).map_err(io::Error::other)?)?;
        fs::rename(tmp, path)
    }

    /// Forgets an upload.
    pub fn forget_upload(&self, fingerprint: &str) {
        let _ = fs::remove_file(self.upload_path(fingerprint));
    }
}
