//! Bytes in an S3-compatible object store (`--blobs s3://bucket/prefix`), so any number of
//! stateless nodes share them.
//!
//! Layout under the prefix: `tree/<path>` holds the served files, `uploads/<id>` the
//! objects of uploads not bound for the tree (partial uploads, relay items). An upload
//! bound for the tree (its destination is fixed at creation) is a multipart upload aimed at
//! its tree key, completed there once verified: publishing it costs no copy. An upload in progress is an S3 multipart upload whose ledger (multipart id, the
//! parts S3 acknowledged, the bytes past them) is committed with each offset in the
//! metadata store ([`crate::Progress`]); so another node, or this one after a restart,
//! resumes it exactly at the acknowledged offset. Completion sends the tail as the last
//! part and completes the multipart upload (lazily, at publication or the first read, so a
//! crash in between only delays it); S3 makes an object appear whole or not at all.
//! Directories are implied by keys.

mod read;
mod writer;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use ferry_core::{TreePath, UploadId};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{
    BlobRead, BlobWriter, DirEntry, FileStat, Host, Metadata, StoreError, TreeBlobs, UploadBlobs, UploadState,
};
use read::S3Read;
use writer::S3Writer;

/// Smallest part ferry sends (S3 wants at least 5 MiB for every part but the last).
const MIN_PART: u64 = 8 << 20;
/// S3 allows at most 10,000 parts; ferry keeps a margin.
const MAX_PARTS: u64 = 9_000;

/// The S3 endpoint and credentials from the config file; the standard `AWS_*` environment
/// variables fill in what these leave out.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (`AWS_ENDPOINT_URL`), e.g. `http://127.0.0.1:9000`; plain HTTP is
    /// allowed for it.
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION`); `us-east-1` when nothing says otherwise.
    pub region: Option<String>,
    /// Access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// The S3 blob backend.
#[derive(Debug)]
pub struct S3Blobs {
    store: Arc<AmazonS3>,
    prefix: String,
    meta: Arc<dyn Metadata>,
    rt: tokio::runtime::Handle,
    bucket: String,
}

pub(crate) fn store_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
        object_store::Error::Precondition { .. } => {
            StoreError::Conflict("the object changed while it was being read".into())
        }
        other => StoreError::Storage(other.to_string()),
    }
}

/// A version number for an object's ETag (known digests are valid for one version).
fn etag_version(etag: Option<&str>) -> i64 {
    // FNV-1a: stable across processes and nodes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in etag.unwrap_or("").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 1) as i64
}

fn file_stat(meta: &object_store::ObjectMeta) -> FileStat {
    FileStat {
        is_dir: false,
        size: meta.size,
        modified: SystemTime::from(meta.last_modified),
        version: etag_version(meta.e_tag.as_deref()),
    }
}

fn dir_stat() -> FileStat {
    FileStat { is_dir: true, size: 0, modified: SystemTime::UNIX_EPOCH, version: 0 }
}

/// The part size for an upload of `length` bytes (unknown: the smallest).
fn part_size(length: Option<u64>) -> u64 {
    let need = length.unwrap_or(0).div_ceil(MAX_PARTS);
    need.next_multiple_of(1 << 20).max(MIN_PART)
}

impl S3Blobs {
    /// Connects to `s3://bucket[/prefix]` with `options` and the `AWS_*` environment;
    /// upload ledgers live in `meta`. Checks that the bucket answers.
    pub async fn open(url: &str, options: &S3Options, meta: Arc<dyn Metadata>) -> Result<Self, StoreError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::Storage(format!("unknown blob store {url:?}: use s3://BUCKET/PREFIX")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Storage(format!("{url:?} names no bucket")));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &options.endpoint {
            builder = builder.with_endpoint(e);
        }
        if let Some(r) = &options.region {
            builder = builder.with_region(r);
        }
        if let Some(k) = &options.access_key_id {
            builder = builder.with_access_key_id(k);
        }
        if let Some(s) = &options.secret_access_key {
            builder = builder.with_secret_access_key(s);
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok().or_else(|| options.endpoint.clone());
        if endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        if std::env::var("AWS_REGION").is_err()
            && std::env::var("AWS_DEFAULT_REGION").is_err()
            && options.region.is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build().map_err(|e| StoreError::Storage(format!("S3 configuration: {e}")))?;
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let blobs = Self {
            store: Arc::new(store),
            prefix,
            meta,
            rt: tokio::runtime::Handle::current(),
            bucket: bucket.to_owned(),
        };
        blobs.ready().await?;
        Ok(blobs)
    }

    fn upload_path(&self, id: &UploadId) -> Path {
        Path::from(format!("{}uploads/{id}", self.prefix))
    }

    /// Where an upload's object goes: a file bound for the tree (its destination fixed and
    /// authorised at creation) is completed at its tree key, so publishing it costs no
    /// copy; anything else (partial uploads, relay items) at `uploads/ID`.
    fn target(&self, rec: &crate::UploadRecord) -> (Path, Option<TreePath>) {
        let bound = rec.relay_to.is_none() && !matches!(rec.concat, crate::ConcatKind::Partial);
        match rec.tree_path.as_deref().filter(|_| bound).and_then(|p| TreePath::parse(p).ok()) {
            Some(dest) => (self.tree_path(&dest), Some(dest)),
            None => (self.upload_path(&rec.id), None),
        }
    }

    async fn record(&self, id: &UploadId) -> Result<crate::UploadRecord, StoreError> {
        self.meta.get(id).await?.ok_or_else(|| StoreError::NotFound(format!("upload {id}")))
    }

    fn tree_path(&self, path: &TreePath) -> Path {
        if path.is_root() {
            Path::from(format!("{}tree", self.prefix))
        } else {
            Path::from(format!("{}tree/{path}", self.prefix))
        }
    }

    async fn head(&self, path: &Path) -> Result<Option<object_store::ObjectMeta>, StoreError> {
        match self.store.head(path).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Whether any object lies below `path` (a directory).
    async fn has_children(&self, path: &Path) -> Result<bool, StoreError> {
        let listed = self.store.list_with_delimiter(Some(path)).await.map_err(store_error)?;
        Ok(!listed.objects.is_empty() || !listed.common_prefixes.is_empty())
    }

    /// Makes a complete upload's object exist at its target: sends its tail as the last
    /// part and completes the multipart upload (or puts a small upload whole). Runs only
    /// once the upload is recorded complete (verified), so a file bound for the tree
    /// appears there whole, at that moment. Idempotent: another node (or an earlier
    /// attempt) may have done it; the ledger is forgotten only after the object exists.
    async fn seal(&self, rec: &crate::UploadRecord) -> Result<object_store::ObjectMeta, StoreError> {
        let (path, _) = self.target(rec);
        let id = &rec.id;
        let length = match (rec.state, rec.length) {
            (UploadState::Complete, Some(len)) => len,
            _ => return Err(StoreError::NotFound(format!("upload {id} is not complete"))),
        };
        let ledger = self.meta.blob_ledger(id).await?;
        if ledger.multipart_id.is_none() && ledger.tail.is_empty() && length > 0 {
            // Sealed before (the ledger goes last).
            return self.head(&path).await?.ok_or_else(|| StoreError::NotFound(format!("upload {id}'s object")));
        }
        let (parts_end, tail) = writer::reassemble(&ledger, length)?;
        let tail = tail.freeze();
        match (&ledger.multipart_id, ledger.parts.is_empty()) {
            (_, true) => {
                self.store.put(&path, PutPayload::from(tail)).await.map_err(store_error)?;
                if let Some(mp) = &ledger.multipart_id {
                    let _ = self.store.abort_multipart(&path, mp).await;
                }
            }
            (Some(mp), false) => {
                let mut ids: Vec<PartId> = ledger.parts.iter().map(|p| PartId { content_id: p.etag.clone() }).collect();
                if length > parts_end {
                    let last = self.store.put_part(&path, mp, ids.len(), tail.into()).await;
                    match last {
                        Ok(p) => ids.push(p),
                        Err(e) => return self.sealed_meanwhile(&path, e).await,
                    }
                }
                if let Err(e) = self.store.complete_multipart(&path, mp, ids).await {
                    return self.sealed_meanwhile(&path, e).await;
                }
            }
            (None, false) => return Err(StoreError::Storage(format!("upload {id} has parts but no multipart id"))),
        }
        self.meta.forget_ledger(id).await?;
        self.head(&path).await?.ok_or_else(|| StoreError::Storage(format!("upload {id} vanished after completing")))
    }

    /// After a failed completion step: fine if another node completed it meanwhile.
    async fn sealed_meanwhile(
        &self,
        path: &Path,
        e: object_store::Error,
    ) -> Result<object_store::ObjectMeta, StoreError> {
        match self.head(path).await? {
            Some(m) => Ok(m),
            None => Err(store_error(e)),
        }
    }

    fn reader_for(&self, path: Path, meta: &object_store::ObjectMeta) -> Arc<dyn BlobRead> {
        Arc::new(S3Read {
            store: self.store.clone(),
            path,
            etag: meta.e_tag.clone(),
            size: meta.size,
            rt: self.rt.clone(),
        })
    }

    /// Copies the object `from` to the tree file `dest` (checked placeable first).
    async fn copy_into_tree(&self, from: &Path, dest: &TreePath) -> Result<FileStat, StoreError> {
        self.check_placeable(dest).await?;
        let to = self.tree_path(dest);
        self.store.copy(from, &to).await.map_err(store_error)?;
        let placed = self.head(&to).await?.ok_or_else(|| StoreError::Storage(format!("{dest} vanished after copy")))?;
        Ok(file_stat(&placed))
    }
}

#[async_trait]
impl UploadBlobs for S3Blobs {
    async fn create(&self, id: &UploadId, durable: bool) -> Result<(), StoreError> {
        // The multipart upload starts with the first part.
        // (An empty upload is put whole when sealed, at its target.)
        let _ = (id, durable);
        Ok(())
    }

    async fn writer(&self, id: &UploadId, host: Option<&Host>, offset: u64) -> Result<Box<dyn BlobWriter>, StoreError> {
        if host.is_some() {
            return Err(StoreError::Storage("S3 storage does not host parts in place".into()));
        }
        let rec = self.record(id).await?;
        let ledger = self.meta.blob_ledger(id).await?;
        let w = S3Writer::resume(
            self.store.clone(),
            self.target(&rec).0,
            self.rt.clone(),
            part_size(rec.length),
            ledger,
            offset,
        )?;
        Ok(Box::new(w))
    }

    async fn reader(&self, id: &UploadId, host: Option<&Host>) -> Result<Arc<dyn BlobRead>, StoreError> {
        if host.is_some() {
            return Err(StoreError::Storage("S3 storage does not host parts in place".into()));
        }
        let rec = self.record(id).await?;
        let meta = self.seal(&rec).await?;
        Ok(self.reader_for(self.target(&rec).0, &meta))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let probe = Path::from(format!("{}ready-probe", self.prefix));
        match self.store.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::Storage(format!("bucket {}: {e}", self.bucket))),
        }
    }

    async fn exists(&self, id: &UploadId) -> Result<bool, StoreError> {
        let ledger = self.meta.blob_ledger(id).await?;
        if ledger.multipart_id.is_some() || !ledger.tail.is_empty() {
            return Ok(true);
        }
        // Sealed: its own object, unless it was completed in the tree (published).
        let Some(rec) = self.meta.get(id).await? else { return Ok(false) };
        match self.target(&rec) {
            (_, Some(_)) => Ok(rec.length == Some(0) && rec.state == UploadState::Complete),
            (path, None) => Ok(self.head(&path).await?.is_some()),
        }
    }

    async fn remove(&self, id: &UploadId) -> Result<(), StoreError> {
        let ledger = self.meta.blob_ledger(id).await?;
        let (path, in_tree) = match self.meta.get(id).await? {
            Some(rec) => self.target(&rec),
            None => (self.upload_path(id), None),
        };
        if let Some(mp) = &ledger.multipart_id
            && let Err(e) = self.store.abort_multipart(&path, mp).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            tracing::warn!(upload = %id, error = %e, "could not abort the multipart upload");
        }
        // A file completed in the tree is the tree's now: only an upload's own object goes.
        if in_tree.is_none() {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        self.meta.forget_ledger(id).await
    }
}

#[async_trait]
impl TreeBlobs for S3Blobs {
    async fn stat(&self, path: &TreePath) -> Result<Option<FileStat>, StoreError> {
        if path.is_root() {
            return Ok(Some(dir_stat()));
        }
        let key = self.tree_path(path);
        if let Some(m) = self.head(&key).await? {
            return Ok(Some(file_stat(&m)));
        }
        Ok(self.has_children(&key).await?.then(dir_stat))
    }

    async fn real_tree_path(&self, path: &TreePath) -> Result<TreePath, StoreError> {
        // No links in an object store.
        Ok(path.clone())
    }

    async fn list(&self, dir: &TreePath) -> Result<Vec<DirEntry>, StoreError> {
        let listed = self.store.list_with_delimiter(Some(&self.tree_path(dir))).await.map_err(store_error)?;
        let mut out = Vec::with_capacity(listed.objects.len() + listed.common_prefixes.len());
        for p in &listed.common_prefixes {
            if let Some(name) = p.filename() {
                out.push(DirEntry { name: name.to_owned(), stat: dir_stat(), link: false });
            }
        }
        for m in &listed.objects {
            // ferry's own markers (an empty directory's) are not entries.
            if let Some(name) = m.location.filename().filter(|n| !n.starts_with(ferry_core::path::TEMP_PREFIX)) {
                out.push(DirEntry { name: name.to_owned(), stat: file_stat(m), link: false });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn check_placeable(&self, dest: &TreePath) -> Result<(), StoreError> {
        if dest.is_root() {
            return Err(StoreError::Conflict("an upload needs a file name".into()));
        }
        let names: Vec<&str> = dest.components().collect();
        for i in 1..names.len() {
            let ancestor = TreePath::parse(&names[..i].join("/")).map_err(|e| StoreError::Storage(e.to_string()))?;
            if self.head(&self.tree_path(&ancestor)).await?.is_some() {
                return Err(StoreError::Conflict(format!("{} is a file, not a directory", names[..i].join("/"))));
            }
        }
        if self.has_children(&self.tree_path(dest)).await? {
            return Err(StoreError::Conflict(format!("{dest} is a directory in the tree")));
        }
        Ok(())
    }

    async fn open(&self, path: &TreePath) -> Result<(Arc<dyn BlobRead>, FileStat), StoreError> {
        let key = self.tree_path(path);
        let meta = self.head(&key).await?.ok_or_else(|| StoreError::NotFound(path.to_string()))?;
        Ok((self.reader_for(key, &meta), file_stat(&meta)))
    }

    async fn publish(&self, id: &UploadId, dest: &TreePath) -> Result<FileStat, StoreError> {
        let rec = self.record(id).await?;
        let (from, in_tree) = self.target(&rec);
        if in_tree.as_ref() == Some(dest) {
            // Completed at its tree key: sealing it is publishing it.
            self.check_placeable(dest).await?;
            return Ok(file_stat(&self.seal(&rec).await?));
        }
        self.seal(&rec).await?;
        let placed = self.copy_into_tree(&from, dest).await?;
        if in_tree.is_none() {
            match self.store.delete(&from).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(placed)
    }

    async fn publish_copy(&self, src: &TreePath, dest: &TreePath) -> Result<FileStat, StoreError> {
        self.copy_into_tree(&self.tree_path(src), dest).await
    }

    async fn make_dir(&self, path: &TreePath, parents: bool) -> Result<(), StoreError> {
        if path.is_root() || self.stat(path).await?.is_some() {
            return Err(StoreError::Conflict(format!("{path} exists")));
        }
        if !parents && !self.stat(&path.parent()).await?.is_some_and(|s| s.is_dir) {
            return Err(StoreError::NotFound(format!("{} is not a directory", path.parent())));
        }
        self.check_placeable(path).await?;
        self.store.put(&self.dir_marker(path), PutPayload::default()).await.map_err(store_error)?;
        Ok(())
    }

    async fn remove_path(&self, path: &TreePath, recursive: bool) -> Result<(), StoreError> {
        if path.is_root() {
            return Err(StoreError::Conflict("the tree root cannot be removed".into()));
        }
        let key = self.tree_path(path);
        if self.head(&key).await?.is_some() {
            self.store.delete(&key).await.map_err(store_error)?;
        } else {
            let below = self.objects_below(path).await?;
            if below.is_empty() {
                return Err(StoreError::NotFound(path.to_string()));
            }
            let marker = self.dir_marker(path);
            if !recursive && below.iter().any(|m| m.location != marker) {
                return Err(StoreError::Conflict(format!("{path} is a directory that is not empty")));
            }
            for m in below {
                self.delete_quietly(&m.location).await?;
            }
        }
        self.keep_dir(&path.parent()).await
    }

    async fn move_path(&self, from: &TreePath, to: &TreePath, overwrite: bool) -> Result<(), StoreError> {
        if to.starts_with(from) {
            return Err(StoreError::Conflict(format!("cannot move {from} into itself")));
        }
        let Some(src) = self.stat(from).await? else { return Err(StoreError::NotFound(from.to_string())) };
        if from.is_root() || !self.stat(&to.parent()).await?.is_some_and(|s| s.is_dir) {
            return Err(StoreError::Conflict(format!("{} is not a directory", to.parent())));
        }
        if let Some(there) = self.stat(to).await? {
            if !overwrite {
                return Err(StoreError::Conflict(format!("{to} exists")));
            }
            if there.is_dir != src.is_dir {
                return Err(StoreError::Conflict(format!("{to} exists and is not the same kind of thing")));
            }
            self.remove_path(to, true).await?;
        }
        if !src.is_dir {
            let (a, b) = (self.tree_path(from), self.tree_path(to));
            self.store.copy(&a, &b).await.map_err(store_error)?;
            self.delete_quietly(&a).await?;
        } else {
            // Object by object: copies first, then the originals go.
            let (old, new) = (self.tree_path(from), self.tree_path(to));
            let below = self.objects_below(from).await?;
            for m in &below {
                let rel = m.location.as_ref().strip_prefix(old.as_ref()).unwrap_or_default();
                let dest = Path::parse(format!("{}{rel}", new.as_ref()))
                    .map_err(|e| StoreError::Storage(format!("moving {}: {e}", m.location)))?;
                self.store.copy(&m.location, &dest).await.map_err(store_error)?;
            }
            for m in &below {
                self.delete_quietly(&m.location).await?;
            }
        }
        self.keep_dir(&from.parent()).await
    }
}

impl S3Blobs {
    /// The object that keeps an empty directory in existence (keys imply the others).
    fn dir_marker(&self, path: &TreePath) -> Path {
        let dir = if path.is_root() { String::new() } else { format!("{path}/") };
        Path::from(format!("{}tree/{dir}{}dir", self.prefix, ferry_core::path::TEMP_PREFIX))
    }

    /// Every object below the directory `path`.
    async fn objects_below(&self, path: &TreePath) -> Result<Vec<object_store::ObjectMeta>, StoreError> {
        use futures_util::TryStreamExt;
        self.store.list(Some(&self.tree_path(path))).try_collect().await.map_err(store_error)
    }

    async fn delete_quietly(&self, key: &Path) -> Result<(), StoreError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Keeps the directory `dir` after its last entry went (as a filesystem would).
    async fn keep_dir(&self, dir: &TreePath) -> Result<(), StoreError> {
        if dir.is_root() || self.has_children(&self.tree_path(dir)).await? {
            return Ok(());
        }
        self.store.put(&self.dir_marker(dir), PutPayload::default()).await.map_err(store_error)?;
        Ok(())
    }
}
