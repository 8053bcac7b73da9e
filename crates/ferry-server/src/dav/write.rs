//! Writes through WebDAV: every PUT and SabreDAV PATCH is an ordinary upload bound for its
//! path, streamed through ferry's data path (`tus::receive`), so it is staged, verified and
//! placed atomically like a tus upload, and a broken one is a resumable upload.
//!
//! `dav-server` parses the request (Content-Range, X-Update-Range, X-Expected-Entity-Length,
//! If headers, locks) and calls [`UploadFile`]: `open`, maybe `seek` to the range's start,
//! `write_bytes` per body frame, `flush` at the body's clean end. Frames go through a
//! channel to a task running the receive; a request that breaks drops the file without a
//! flush, and the receive sees the body end early and keeps what arrived.
//!
//! What a write means depends on what is at the path:
//! - a truncating PUT (no range) starts a new upload (an unfinished one of the caller's for
//!   the same path is discarded, as IT Hit's server resets on a write from 0);
//! - a ranged write where the caller has an upload in progress continues it: from its
//!   offset, bytes re-sent below it are skipped; a start past it is 416;
//! - a ranged write to an existing file rewrites that range: the new file is the old bytes
//!   around the new ones (a gap past the end reads as zeros), built in staging and placed
//!   whole;
//! - a ranged write from 0 to a new path starts an upload of the range's total length.

use std::io::SeekFrom;

use axum::body::Body;
use bytes::Bytes;
use dav_server::fs::{DavFile, DavMetaData, FsError, FsFuture, FsResult, OpenOptions};
use ferry_core::{TreePath, UploadId};
use ferry_store::{ConcatKind, FileStat, NewUpload, UploadRecord, unix_now};
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fs::{Meta, store_error};
use super::{Caller, fs_error};
use crate::files::body::region;
use crate::tus::upload::{complete_as_is, declare_length, take};
use crate::{ApiError, AppState, quota};

/// What the write does (see the module docs).
#[derive(Debug)]
enum Plan {
    Fresh,
    Resume(Box<UploadRecord>),
    Modify(FileStat),
}

enum Msg {
    Data(Bytes),
    End,
}

/// Where the write is.
enum Flow {
    Idle,
    Streaming { tx: mpsc::Sender<Msg>, skip: u64, task: tokio::task::JoinHandle<Result<Option<FileStat>, ApiError>> },
    Done(Option<FileStat>),
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flow::Idle => "Idle",
            Flow::Streaming { .. } => "Streaming",
            Flow::Done(_) => "Done",
        })
    }
}

/// A PUT or PATCH in progress.
#[derive(Debug)]
pub(crate) struct UploadFile {
    state: AppState,
    caller: Caller,
    path: TreePath,
    options: OpenOptions,
    plan: Plan,
    start: u64,
    /// Bytes of the body passed on.
    sent: u64,
    flow: Flow,
}

/// The caller's unfinished upload bound for exactly `path`, newest first.
pub(crate) async fn upload_in_progress(
    state: &AppState,
    caller: &crate::auth::Identity,
    path: &TreePath,
) -> Result<Option<UploadRecord>, ApiError> {
    let text = path.to_string();
    let mut found: Vec<UploadRecord> = state
        .meta
        .uploads_in_progress(&text)
        .await?
        .into_iter()
        .filter(|r| {
            r.tree_path.as_deref() == Some(text.as_str()) && caller.owns(r.owner) && r.concat == ConcatKind::None
        })
        .collect();
    Ok(found.pop())
}

impl UploadFile {
    pub(crate) async fn open(state: AppState, caller: Caller, path: TreePath, options: OpenOptions) -> FsResult<Self> {
        let existing = state.blobs.stat(&path).await.map_err(store_error)?;
        if existing.is_some_and(|s| s.is_dir) {
            return Err(FsError::Forbidden);
        }
        if !options.create && existing.is_none() {
            return Err(FsError::NotFound);
        }
        if options.create_new && existing.is_some() {
            return Err(FsError::Exists);
        }
        if caller.method.as_str() == "LOCK" {
            // LOCK on an unmapped URL makes an empty file (RFC 4918 §9.10.4).
            let rec = create(&state, &caller, &path, Some(0)).await.map_err(|e| fs_error(&e))?;
            receive(state.clone(), caller.clone(), rec.id, 0, None, Body::empty()).await.map_err(|e| fs_error(&e))?;
            return Ok(Self {
                state,
                caller,
                path,
                options,
                plan: Plan::Fresh,
                start: 0,
                sent: 0,
                flow: Flow::Done(None),
            });
        }
        let plan = if options.truncate {
            Plan::Fresh
        } else if let Some(rec) = upload_in_progress(&state, &caller.who, &path).await.map_err(|e| fs_error(&e))? {
            Plan::Resume(Box::new(rec))
        } else if let Some(stat) = existing {
            Plan::Modify(stat)
        } else {
            Plan::Fresh
        };
        let start = match (&plan, options.append) {
            (Plan::Resume(rec), true) => rec.offset,
            (Plan::Modify(stat), true) => stat.size,
            _ => 0,
        };
        Ok(Self { state, caller, path, options, plan, start, sent: 0, flow: Flow::Idle })
    }

    /// The body's length, when the request says it.
    fn count(&self) -> Option<u64> {
        self.caller.content_range().and_then(|c| c.range).map(|(s, e)| e + 1 - s).or(self.options.size)
    }

    /// Starts the upload the plan calls for and the task that receives the body.
    async fn begin(&mut self) -> Result<(), ApiError> {
        let (tx, rx) = mpsc::channel::<Msg>(4);
        let body = channel_body(rx);
        let (rec, skip, body): (UploadRecord, u64, Body) = match &self.plan {
            Plan::Fresh => {
                // A range's total is the file's length (`*`: not known yet); else the body's.
                let length = match self.caller.content_range() {
                    Some(c) => c.total,
                    None => self.options.size,
                };
                let rec = create(&self.state, &self.caller, &self.path, length).await?;
                (rec, 0, Body::from_stream(body))
            }
            Plan::Resume(rec) => {
                let skip = rec.offset - self.start;
                ((**rec).clone(), skip, Body::from_stream(body))
            }
            Plan::Modify(old) => {
                let count = self.count().ok_or_else(|| ApiError::bad("a ranged write needs its length"))?;
                let end = self.start + count;
                let length = old.size.max(end);
                let rec = create(&self.state, &self.caller, &self.path, Some(length)).await?;
                let (blob, _) = self.state.blobs.open(&self.path).await?;
                let keep = self.start.min(old.size);
                let stream = region(blob.clone(), 0, keep, CancellationToken::new())
                    .chain(zeros(self.start.saturating_sub(old.size)))
                    .chain(body)
                    .chain(region(blob, end, old.size.saturating_sub(end), CancellationToken::new()));
                (rec, 0, Body::from_stream(stream))
            }
        };
        let (state, caller) = (self.state.clone(), self.caller.clone());
        let expected = rec.offset; // the offset the plan was made at
        let total = self.caller.content_range().and_then(|c| c.total);
        let task = tokio::spawn(async move { receive(state, caller, rec.id, expected, total, body).await });
        self.flow = Flow::Streaming { tx, skip, task };
        Ok(())
    }
}

/// The task behind a write: takes the upload, streams `body` into it, and completes a
/// deferred-length upload whose body ended cleanly. The file's stat once placed.
async fn receive(
    state: AppState,
    caller: Caller,
    id: UploadId,
    expected: u64,
    total: Option<u64>,
    body: Body,
) -> Result<Option<FileStat>, ApiError> {
    let (mut guard, mut rec) = take(&state, &id, &caller.who, true).await?;
    if rec.offset != expected {
        return Err(ApiError::OffsetMismatch { given: expected, actual: rec.offset });
    }
    if let (None, Some(n)) = (rec.length, total) {
        declare_length(&state, &caller.who, &mut rec, n).await?;
    }
    if let Some(len) = rec.length
        && total.is_some_and(|n| n != len)
    {
        return Err(ApiError::Conflict(format!("this upload's length is {len}, not the Content-Range total")));
    }
    let path = rec.tree_path.clone().unwrap_or_default();
    let done = if rec.length == Some(rec.offset) {
        complete_as_is(&state, &mut guard, &rec).await.map(|_| true)?
    } else {
        let (held, room) = quota::for_body(&state, &caller.who, rec.length, None).await?;
        let received =
            Box::pin(crate::tus::receive::receive(&state, &mut guard, &rec, &caller.headers, body, None, room)).await;
        drop(held); // before the length is declared: the reservation made room for these bytes
        let received = received?;
        if received.completed.is_some() {
            true
        } else if rec.length.is_none() {
            // A body of unannounced length ended cleanly: that was the whole file.
            let mut rec = state.meta.get(&id).await?.ok_or_else(|| ApiError::NotFound("no such upload".into()))?;
            let arrived = rec.offset;
            declare_length(&state, &caller.who, &mut rec, arrived).await?;
            complete_as_is(&state, &mut guard, &rec).await?;
            true
        } else {
            false
        }
    };
    if !done {
        return Ok(None);
    }
    let path = TreePath::parse(&path).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(state.blobs.stat(&path).await?)
}

/// Creates a new upload bound for `path` (discarding the caller's unfinished one for it).
async fn create(
    state: &AppState,
    caller: &Caller,
    path: &TreePath,
    length: Option<u64>,
) -> Result<UploadRecord, ApiError> {
    let who = &caller.who;
    crate::tus::authorise_destination(state, who, path).await?;
    if state.config.auth && who.user_id().is_none() {
        return Err(ApiError::Unauthorized);
    }
    if let Some(len) = length
        && len > state.config.max_size
    {
        return Err(ApiError::TooLarge(format!(
            "{len} bytes exceed the server's maximum of {}",
            state.config.max_size
        )));
    }
    while let Some(old) = upload_in_progress(state, who, path).await? {
        crate::tus::upload::delete(state, &old.id, who).await?;
    }
    let claim = quota::Claim { adds: length.unwrap_or(0), replaces: 0, staged: true, opens: true };
    let admitted = quota::admit(state, who, claim).await?;
    let id = UploadId::random();
    use base64::Engine as _;
    let name = path.file_name().unwrap_or("file");
    let new = NewUpload {
        id: id.clone(),
        length,
        metadata: format!("filename {}", base64::engine::general_purpose::STANDARD.encode(name)),
        concat: ConcatKind::None,
        expires_at: Some(crate::tus::next_expiry(state)),
        owner: who.user_id(),
        tree_path: Some(path.to_string()),
        relay_to: None,
    };
    state.blobs.create(&id, length == Some(0)).await?;
    state.meta.create_upload(&new, unix_now()).await?;
    drop(admitted);
    tracing::info!(upload = %id, length = ?length, path = %path, "WebDAV upload created");
    state.meta.get(&id).await?.ok_or_else(|| ApiError::Internal("new upload vanished".into()))
}

/// The request body as the receive sees it: frames until the end marker; a sender gone
/// without one is a body that broke.
fn channel_body(rx: mpsc::Receiver<Msg>) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Msg::Data(b)) => Some((Ok(b), Some(rx))),
            Some(Msg::End) => None,
            None => Some((Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")), None)),
        }
    })
}

/// `len` zero bytes (the gap of a write past a file's end).
fn zeros(len: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    const BLOCK: u64 = 1 << 20;
    let blocks = len.div_ceil(BLOCK);
    futures_util::stream::iter(
        (0..blocks).map(move |i| Ok(Bytes::from(vec![0u8; (len - i * BLOCK).min(BLOCK) as usize]))),
    )
}

impl UploadFile {
    async fn send(&mut self, mut buf: Bytes) -> FsResult<()> {
        if matches!(self.flow, Flow::Idle) {
            self.begin().await.map_err(|e| fs_error(&e))?;
        }
        self.sent += buf.len() as u64;
        let Flow::Streaming { tx, skip, .. } = &mut self.flow else { return Err(FsError::GeneralFailure) };
        if *skip > 0 {
            let n = (*skip).min(buf.len() as u64);
            *skip -= n;
            buf = buf.slice(n as usize..);
            if buf.is_empty() {
                return Ok(());
            }
        }
        if tx.send(Msg::Data(buf)).await.is_ok() {
            return Ok(());
        }
        // The receive stopped early: its error is the answer.
        Err(self.finish_failed().await)
    }

    async fn finish_failed(&mut self) -> FsError {
        match std::mem::replace(&mut self.flow, Flow::Done(None)) {
            Flow::Streaming { task, .. } => match task.await {
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "WebDAV write refused");
                    fs_error(&e)
                }
                _ => FsError::GeneralFailure,
            },
            _ => FsError::GeneralFailure,
        }
    }

    async fn finish(&mut self) -> FsResult<()> {
        if matches!(self.flow, Flow::Idle) {
            self.begin().await.map_err(|e| fs_error(&e))?;
        }
        if self.count().is_some_and(|c| c != self.sent) {
            // The body was cut short (or ran long): not a clean end, whatever dav-server
            // says; the receive keeps what arrived.
            self.flow = Flow::Done(None);
            return Err(FsError::GeneralFailure);
        }
        match std::mem::replace(&mut self.flow, Flow::Done(None)) {
            Flow::Streaming { tx, task, .. } => {
                let _ = tx.send(Msg::End).await;
                drop(tx);
                match task.await {
                    Ok(Ok(stat)) => {
                        self.flow = Flow::Done(stat);
                        Ok(())
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "WebDAV write refused");
                        Err(fs_error(&e))
                    }
                    Err(_) => Err(FsError::GeneralFailure),
                }
            }
            _ => Ok(()),
        }
    }
}

impl DavFile for UploadFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let result = match &self.flow {
            Flow::Done(Some(stat)) => Ok(Box::new(Meta(*stat)) as Box<dyn DavMetaData>),
            _ => Err(FsError::NotFound),
        };
        Box::pin(std::future::ready(result))
    }

    fn write_buf(&mut self, mut buf: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        self.send(bytes).boxed()
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        self.send(buf).boxed()
    }

    fn read_bytes(&mut self, _count: usize) -> FsFuture<'_, Bytes> {
        Box::pin(std::future::ready(Err(FsError::NotImplemented)))
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let result = match (pos, &self.plan) {
            _ if !matches!(self.flow, Flow::Idle) => Err(FsError::GeneralFailure),
            // dav-server seeks to 0 for an append: the end it is.
            _ if self.options.append => Ok(self.start),
            (SeekFrom::Start(0), Plan::Fresh) => Ok(0),
            (SeekFrom::Start(s), Plan::Resume(rec)) if s <= rec.offset => Ok(s),
            (SeekFrom::Start(s), Plan::Modify(_)) => Ok(s),
            _ => Err(FsError::GeneralFailure),
        };
        if let Ok(s) = result {
            self.start = s;
        }
        Box::pin(std::future::ready(result))
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        self.finish().boxed()
    }
}
