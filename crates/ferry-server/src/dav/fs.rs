//! ferry's tree as `dav-server` sees it: every call checks the caller's right to the path
//! as given and where it really leads (as `/files/` does), dead properties live in the
//! metadata store and follow their resource through MOVE, COPY and DELETE, and writes go
//! to [`super::write::UploadFile`].

use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavMetaData, DavProp, FsError, FsFuture, FsResult, FsStream, GuardedFileSystem, OpenOptions,
    ReadDirMeta,
};
use ferry_core::TreePath;
use ferry_store::{BlobRead, DeadProp, FileStat, PropChange, StoreError};
use futures_util::FutureExt;
use http::StatusCode;

use super::{Caller, tree_path};
use crate::AppState;

/// The tree, for one request's `dav-server` handler.
#[derive(Debug, Clone)]
pub(crate) struct FerryFs {
    state: AppState,
    /// For this request: per folder, the paths below it that carry dead properties (a
    /// listing asks about every entry; one query answers them all).
    props_below: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<std::collections::HashSet<String>>>>>,
}

/// A storage failure as WebDAV reports it.
pub(crate) fn store_error(e: StoreError) -> FsError {
    match e {
        StoreError::NotFound(_) => FsError::NotFound,
        StoreError::Escapes(_) => FsError::Forbidden,
        StoreError::Conflict(_) => FsError::Exists,
        StoreError::DiskFull => FsError::InsufficientStorage,
        e => {
            tracing::warn!(error = %e, "WebDAV storage call failed");
            FsError::GeneralFailure
        }
    }
}

impl FerryFs {
    pub(crate) fn new(state: AppState) -> Self {
        Self { state, props_below: Arc::default() }
    }

    /// Whether `p` has dead properties, from one query per folder and request.
    async fn has_props(&self, p: &TreePath) -> bool {
        let dir = p.parent().to_string();
        let known = self.props_below.lock().unwrap_or_else(|e| e.into_inner()).get(&dir).cloned();
        let paths = match known {
            Some(paths) => paths,
            None => {
                let Ok(found) = self.state.meta.dead_prop_paths(&dir).await else { return false };
                let paths = Arc::new(found.into_iter().collect::<std::collections::HashSet<_>>());
                self.props_below.lock().unwrap_or_else(|e| e.into_inner()).insert(dir, paths.clone());
                paths
            }
        };
        paths.contains(&p.to_string())
    }

    /// Forgets what [`FerryFs::has_props`] learnt (properties changed).
    fn props_changed(&self) {
        self.props_below.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The tree path of `path` when the caller may read it (as named and where it leads).
    async fn readable(&self, c: &Caller, path: &DavPath) -> FsResult<TreePath> {
        self.allowed(c, path, false).await
    }

    /// The tree path of `path` when the caller may write it.
    pub(crate) async fn writable(&self, c: &Caller, path: &DavPath) -> FsResult<TreePath> {
        self.allowed(c, path, true).await
    }

    async fn allowed(&self, c: &Caller, path: &DavPath, write: bool) -> FsResult<TreePath> {
        let p = tree_path(path)?;
        let ok = |t: &TreePath| if write { c.who.may_write(t) } else { c.who.may_read(t) };
        if !ok(&p) {
            return Err(FsError::Forbidden);
        }
        let real = self.state.blobs.real_tree_path(&p).await.map_err(store_error)?;
        if !ok(&real) {
            return Err(FsError::Forbidden);
        }
        Ok(p)
    }

    async fn stat(&self, p: &TreePath) -> FsResult<FileStat> {
        self.stat_as(p, None).await
    }

    /// What is at `p`; a caller's own home exists from its first use (a new user's home is
    /// made when their client first looks at it).
    async fn stat_as(&self, p: &TreePath, c: Option<&Caller>) -> FsResult<FileStat> {
        match self.state.blobs.stat(p).await.map_err(store_error)? {
            Some(s) => Ok(s),
            None if p.is_root() => Ok(FileStat { is_dir: true, size: 0, modified: UNIX_EPOCH, version: 0 }),
            None if c.is_some_and(|c| c.who.user_id().is_some() && *p == c.who.home()) => {
                match self.state.blobs.make_dir(p, true).await {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(store_error(e)),
                }
                self.state.blobs.stat(p).await.map_err(store_error)?.ok_or(FsError::NotFound)
            }
            None => Err(FsError::NotFound),
        }
    }
}

/// A file's or directory's metadata. The ETag is size and modification time (the same one
/// GET under `/dav/` gives), so listings cost no database lookups.
#[derive(Debug, Clone)]
pub(crate) struct Meta(pub FileStat);

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.0.modified)
    }

    fn is_dir(&self) -> bool {
        self.0.is_dir
    }

    fn etag(&self) -> Option<String> {
        let nanos = self.0.modified.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        Some(if self.0.is_dir { format!("{nanos:x}") } else { format!("{:x}-{nanos:x}", self.0.size) })
    }
}

struct Entry {
    name: String,
    stat: FileStat,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.as_bytes().to_vec()
    }

    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta(self.stat));
        Box::pin(std::future::ready(Ok(meta)))
    }
}

/// A file opened for reading (dav-server reads only when ferry's own GET is not used).
#[derive(Debug)]
struct ReadFile {
    blob: Arc<dyn BlobRead>,
    stat: FileStat,
    pos: u64,
}

impl DavFile for ReadFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta(self.stat));
        Box::pin(std::future::ready(Ok(meta)))
    }

    fn write_buf(&mut self, _buf: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        Box::pin(std::future::ready(Err(FsError::Forbidden)))
    }

    fn write_bytes(&mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        Box::pin(std::future::ready(Err(FsError::Forbidden)))
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            let len = (self.stat.size.saturating_sub(self.pos)).min(count as u64) as usize;
            let (blob, pos) = (self.blob.clone(), self.pos);
            let data = tokio::task::spawn_blocking(move || blob.read_vec(pos, len))
                .await
                .map_err(|_| FsError::GeneralFailure)?
                .map_err(store_error)?;
            self.pos += data.len() as u64;
            Ok(Bytes::from(data))
        }
        .boxed()
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.stat.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let result = match to {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(FsError::GeneralFailure),
        };
        Box::pin(std::future::ready(result))
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

fn prop_key(p: &DavProp) -> (String, String) {
    (p.namespace.clone().unwrap_or_default(), p.name.clone())
}

impl GuardedFileSystem<Caller> for FerryFs {
    fn open<'a>(&'a self, path: &'a DavPath, options: OpenOptions, c: &'a Caller) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            if options.write {
                let p = self.writable(c, path).await?;
                let file = super::write::UploadFile::open(self.state.clone(), c.clone(), p, options).await?;
                return Ok(Box::new(file) as Box<dyn DavFile>);
            }
            let p = self.readable(c, path).await?;
            let (blob, stat) = self.state.blobs.open(&p).await.map_err(store_error)?;
            Ok(Box::new(ReadFile { blob, stat, pos: 0 }) as Box<dyn DavFile>)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
        c: &'a Caller,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let dir = self.readable(c, path).await?;
            let entries = self.state.blobs.list(&dir).await.map_err(store_error)?;
            let mut out: Vec<FsResult<Box<dyn DavDirEntry>>> = Vec::with_capacity(entries.len());
            for e in entries {
                let Ok(child) = TreePath::parse(&e.name).map(|n| dir.join(&n)) else { continue };
                if !c.who.may_read(&child) {
                    continue; // another user's home, or a folder not shared with this one
                }
                // The folder's own real path was checked; only a link can lead elsewhere.
                if !e.link || self.state.blobs.real_tree_path(&child).await.is_ok_and(|r| c.who.may_read(&r)) {
                    out.push(Ok(Box::new(Entry { name: e.name, stat: e.stat })));
                }
            }
            Ok(Box::pin(futures_util::stream::iter(out)) as FsStream<Box<dyn DavDirEntry>>)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath, c: &'a Caller) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let p = self.readable(c, path).await?;
            let mut stat = self.stat_as(&p, Some(c)).await?;
            // dav-server reports quota-used-bytes below "/" as the resource's length: a
            // user's home says how much of the quota the user holds.
            if let Some(user) = c.who.user_id()
                && stat.is_dir
                && p == c.who.home()
            {
                stat.size = self.state.meta.usage(user, &p.to_string()).await.map_err(store_error)?;
            }
            Ok(Box::new(Meta(stat)) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath, c: &'a Caller) -> FsFuture<'a, ()> {
        async move {
            let p = self.writable(c, path).await?;
            if p.is_root() {
                return Err(FsError::Exists);
            }
            if p.parent() == c.who.home() {
                self.stat_as(&p.parent(), Some(c)).await?;
            }
            self.state.blobs.make_dir(&p, false).await.map_err(store_error)
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath, c: &'a Caller) -> FsFuture<'a, ()> {
        self.remove(path, c)
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath, c: &'a Caller) -> FsFuture<'a, ()> {
        self.remove(path, c)
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath, c: &'a Caller) -> FsFuture<'a, ()> {
        async move {
            let (src, dst) = (tree_path(from)?, tree_path(to)?);
            let moved = crate::tree_ops::move_path(&self.state, &c.who, &src, &dst, true).await;
            self.props_changed();
            moved.map_err(|e| super::fs_error(&e))
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath, c: &'a Caller) -> FsFuture<'a, ()> {
        async move {
            let (src, dst) = (self.readable(c, from).await?, self.writable(c, to).await?);
            let size = self.stat(&src).await?.size;
            let replaces = match self.state.blobs.stat(&dst).await.map_err(store_error)? {
                Some(s) if !s.is_dir => s.size,
                _ => 0,
            };
            // A copy is new bytes in the caller's tree: it counts against the quota.
            let claim = crate::quota::Claim { adds: size, replaces, staged: false, opens: false };
            let _admitted = crate::quota::admit(&self.state, &c.who, claim).await.map_err(|e| super::fs_error(&e))?;
            self.state.blobs.copy_path(&src, &dst, true).await.map_err(store_error)?;
            self.props_changed();
            self.state.meta.tree_files_copied(&src.to_string(), &dst.to_string()).await.map_err(store_error)?;
            self.state.meta.copy_dead_props(&src.to_string(), &dst.to_string()).await.map_err(store_error)
        }
        .boxed()
    }

    fn have_props<'a>(&'a self, path: &'a DavPath, c: &'a Caller) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        async move {
            // The resource itself was authorised when it was found; this only says whether
            // properties are worth fetching (get_props checks access).
            match tree_path(path) {
                Ok(p) if c.who.may_read(&p) => self.has_props(&p).await,
                _ => false,
            }
        }
        .boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
        c: &'a Caller,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            let p = self.writable(c, path).await?;
            self.stat(&p).await?;
            let (mut changes, mut out) = (Vec::new(), Vec::new());
            for (is_set, prop) in patch {
                let (namespace, name) = prop_key(&prop);
                changes.push(if is_set {
                    PropChange::Set(DeadProp { namespace, name, prefix: prop.prefix.clone(), xml: prop.xml.clone() })
                } else {
                    PropChange::Remove(namespace, name)
                });
                out.push((StatusCode::OK, DavProp { xml: None, ..prop }));
            }
            self.props_changed();
            match self.state.meta.patch_dead_props(&p.to_string(), &changes).await {
                Ok(()) => Ok(out),
                Err(StoreError::Conflict(_)) => Err(FsError::InsufficientStorage),
                Err(e) => Err(store_error(e)),
            }
        }
        .boxed()
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool, c: &'a Caller) -> FsFuture<'a, Vec<DavProp>> {
        async move {
            let p = self.readable(c, path).await?;
            let props = self.state.meta.dead_props(&p.to_string()).await.map_err(store_error)?;
            Ok(props.into_iter().map(|d| to_dav_prop(d, do_content)).collect())
        }
        .boxed()
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp, c: &'a Caller) -> FsFuture<'a, Vec<u8>> {
        async move {
            let p = self.readable(c, path).await?;
            let (namespace, name) = prop_key(&prop);
            let props = self.state.meta.dead_props(&p.to_string()).await.map_err(store_error)?;
            props
                .into_iter()
                .find(|d| d.namespace == namespace && d.name == name)
                .and_then(|d| d.xml)
                .ok_or(FsError::NotFound)
        }
        .boxed()
    }

    fn get_quota<'a>(&'a self, c: &'a Caller) -> FsFuture<'a, (u64, Option<u64>)> {
        async move {
            let Some(user) = c.who.user_id() else { return Err(FsError::NotImplemented) };
            let used = self.state.meta.usage(user, &c.who.home().to_string()).await.map_err(store_error)?;
            Ok((used, c.who.quota().map(|(_, q)| q)))
        }
        .boxed()
    }
}

impl FerryFs {
    fn remove<'a>(&'a self, path: &'a DavPath, c: &'a Caller) -> FsFuture<'a, ()> {
        async move {
            let p = tree_path(path)?;
            let removed = crate::tree_ops::remove(&self.state, &c.who, &p, false).await;
            self.props_changed();
            removed.map_err(|e| super::fs_error(&e))
        }
        .boxed()
    }
}

fn to_dav_prop(d: DeadProp, with_content: bool) -> DavProp {
    DavProp {
        name: d.name,
        prefix: d.prefix,
        namespace: (!d.namespace.is_empty()).then_some(d.namespace),
        xml: if with_content { d.xml } else { None },
    }
}
