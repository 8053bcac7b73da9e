//! ferry's transfer protocol on one QUIC stream, resumable and verified chunk by chunk.
//!
//! ```text
//! sender → Offer(name, manifest)
//! receiver → Want(missing chunks)              (what it already holds, verified, is skipped)
//! sender → Chunk(i, bytes)… End
//! receiver → Bad(i)… as chunks fail their SHA-256, then Want(still missing) or Done
//! receiver → Have(bytes)                       (any time: the file's first bytes it holds, synced)
//!
//! sender → Message(text)                       (a short text instead of an offer)
//! receiver → Done                              (shown to the user: the sender's ACK)
//! ```
//!
//! The receiver keeps a partial file and a state file (the manifest and which chunks it
//! holds, saved only after those chunks' bytes are synced), so after a broken connection —
//! or a path change, or a restart — the next offer of the same manifest resumes where it
//! stopped. The whole file's SHA-256 is checked before the file takes its name.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_core::chunks::{Accepted, Assembly, ChunkError, MAX_CHUNK, Manifest, chunk_size_for};
use iroh::endpoint::{Connection, RecvStream, SendStream};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::P2pError;
use crate::disk::DiskWriter;

const OFFER: u8 = 1;
const CHUNK: u8 = 2;
const END: u8 = 3;
const MESSAGE: u8 = 4;
const WANT: u8 = 10;
const BAD: u8 = 11;
const DONE: u8 = 12;
const HAVE: u8 = 13;

/// Longest text message (bytes of UTF-8).
pub const MAX_TEXT: usize = 64 << 10;

/// Largest frame accepted (a chunk and its index).
const MAX_FRAME: usize = MAX_CHUNK as usize + 16;
/// Largest offer (name and manifest).
const MAX_OFFER: usize = 4 << 20;
/// Rounds of re-sending bad chunks before giving up.
const MAX_ROUNDS: u32 = 5;

async fn write_frame(send: &mut SendStream, kind: u8, payload: &[u8]) -> Result<(), P2pError> {
    write_frame_parts(send, kind, &[payload]).await
}

/// One frame whose payload is `parts` one after another (no copy to join them).
async fn write_frame_parts(send: &mut SendStream, kind: u8, parts: &[&[u8]]) -> Result<(), P2pError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&(len as u32).to_be_bytes());
    send.write_all(&head).await.map_err(|e| P2pError::Stream(e.to_string()))?;
    for part in parts {
        send.write_all(part).await.map_err(|e| P2pError::Stream(e.to_string()))?;
    }
    Ok(())
}

async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<(u8, Vec<u8>), P2pError> {
    let mut head = [0u8; 5];
    recv.read_exact(&mut head).await.map_err(|e| P2pError::Stream(e.to_string()))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(P2pError::Protocol(format!("a frame of {len} bytes (at most {max})")));
    }
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload).await.map_err(|e| P2pError::Stream(e.to_string()))?;
    Ok((head[0], payload))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, P2pError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| P2pError::Protocol("a truncated number".into()))
}

/// Chunk indices as (start, count) runs.
fn runs(indices: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for i in indices {
        match out.last_mut() {
            Some((start, count)) if *start + *count == i => *count += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// What a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sent {
    /// Chunks sent (a chunk sent twice counts twice).
    pub chunks: u64,
    /// Bytes of chunks sent.
    pub bytes: u64,
    /// Chunks the receiver held already.
    pub skipped: u64,
}

/// What a sender learns as it goes, readable while it runs (progress) and after it failed
/// (where another path may continue).
#[derive(Debug, Default)]
pub struct Report {
    /// Bytes the receiver holds or is being sent (what a progress bar shows).
    pub sent: AtomicU64,
    /// Bytes from the start of the file the receiver said it holds, synced to its disk.
    pub confirmed: AtomicU64,
    /// Bytes of chunks written to the stream (every attempt that shares this report).
    pub written: AtomicU64,
    /// Bytes the receiver held when the first attempt began.
    pub held_at_start: std::sync::OnceLock<u64>,
}

impl Report {
    /// Bytes sent more than needed: chunks sent again after a cut or a failed check.
    pub fn resent(&self, size: u64) -> u64 {
        let needed = size.saturating_sub(self.held_at_start.get().copied().unwrap_or(0));
        self.written.load(Ordering::Relaxed).saturating_sub(needed)
    }
}

/// Sends `file` as `name` over a new stream of `conn`; returns when the receiver confirmed
/// the whole file's SHA-256. `report` follows the transfer.
pub async fn send(conn: &Connection, file: &Path, name: &str, report: &Report) -> Result<Sent, P2pError> {
    let manifest = manifest_of(file).await?;
    send_with(conn, file, name, &manifest, report, None, &|_, data| data).await
}

/// The manifest of `file` (one read of it), off the async threads.
pub async fn manifest_of(file: &Path) -> Result<Manifest, P2pError> {
    let path = file.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<Manifest> {
        let size = std::fs::metadata(&path)?.len();
        Manifest::build(std::io::BufReader::new(std::fs::File::open(&path)?), chunk_size_for(size))
    })
    .await
    .map_err(|e| P2pError::Io(e.to_string()))?
    .map_err(|e| P2pError::Io(e.to_string()))
}

/// Sends a short text over a new stream of `conn`; returns once the receiver's client
/// acknowledged it (it has shown it).
pub async fn send_text(conn: &Connection, text: &str) -> Result<(), P2pError> {
    if text.len() > MAX_TEXT {
        return Err(P2pError::Protocol(format!("a message of {} bytes (at most {MAX_TEXT})", text.len())));
    }
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| P2pError::Stream(e.to_string()))?;
    write_frame(&mut send, MESSAGE, text.as_bytes()).await?;
    let answer = read_frame(&mut recv, 16).await;
    // Finished only now: the receiver waits for this end before it lets the connection go,
    // so its answer cannot be lost in the close.
    let _ = send.finish();
    match answer? {
        (DONE, p) if p.first() == Some(&1) => Ok(()),
        (DONE, _) => Err(P2pError::Declined),
        (other, _) => Err(P2pError::Protocol(format!("unexpected frame {other}"))),
    }
}

/// [`send`] with a given manifest, a cap on the rate (bytes per second), and a hook that
/// may alter each chunk before it leaves (tests: a lying or corrupting sender).
#[allow(clippy::too_many_arguments)]
pub async fn send_with(
    conn: &Connection,
    file: &Path,
    name: &str,
    manifest: &Manifest,
    report: &Report,
    limit_rate: Option<u64>,
    tamper: &(dyn Fn(u64, Vec<u8>) -> Vec<u8> + Sync),
) -> Result<Sent, P2pError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| P2pError::Stream(e.to_string()))?;
    let mut offer = Vec::new();
    offer.extend_from_slice(&(name.len() as u32).to_be_bytes());
    offer.extend_from_slice(name.as_bytes());
    offer.extend_from_slice(&manifest.encode());
    write_frame(&mut send, OFFER, &offer).await?;
    let file = std::fs::File::open(file).map_err(|e| P2pError::Io(e.to_string()))?;
    // The receiver's frames are read while chunks go out: Have arrives at any time.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = async {
        loop {
            let (kind, payload) = read_frame(&mut recv, MAX_OFFER).await?;
            if kind == HAVE {
                report.confirmed.fetch_max(u64_at(&payload, 0)?.min(manifest.size), Ordering::Relaxed);
                continue;
            }
            let last = kind == DONE;
            if tx.send((kind, payload)).is_err() || last {
                return Ok::<(), P2pError>(());
            }
        }
    };
    let writer = async {
        let started = std::time::Instant::now();
        let mut sent = Sent::default();
        let mut first = true;
        // The receiver counts the rounds and ends them with Done; a little slack here.
        for _round in 0..=MAX_ROUNDS + 2 {
            let wanted = loop {
                let Some((kind, payload)) = rx.recv().await else {
                    return Err(P2pError::Stream("the receiver stopped answering".into()));
                };
                match kind {
                    DONE if payload.first() == Some(&1) => {
                        report.sent.store(manifest.size, Ordering::Relaxed);
                        report.confirmed.store(manifest.size, Ordering::Relaxed);
                        let _ = send.finish();
                        return Ok(sent);
                    }
                    DONE if payload.first() == Some(&2) => return Err(P2pError::Declined),
                    DONE => {
                        return Err(P2pError::Verification("the receiver's copy does not match the file".into()));
                    }
                    WANT => break decode_runs(&payload)?,
                    BAD => continue, // it will be in the next Want
                    other => return Err(P2pError::Protocol(format!("unexpected frame {other}"))),
                }
            };
            let wanted_count: u64 = wanted.iter().map(|(_, n)| n).sum();
            if first {
                sent.skipped = manifest.count().saturating_sub(wanted_count);
                first = false;
            }
            let missing: u64 =
                wanted.iter().flat_map(|&(s, n)| s..s.saturating_add(n)).map(|i| chunk_len(manifest, i)).sum();
            let mut held = manifest.size.saturating_sub(missing);
            let _ = report.held_at_start.set(held);
            report.sent.store(held, Ordering::Relaxed);
            for (start, count) in wanted {
                for index in start..start.saturating_add(count) {
                    let (offset, len) = manifest.chunk(index).map_err(|e| P2pError::Protocol(e.to_string()))?;
                    let mut data = vec![0u8; len as usize];
                    read_chunk(&file, offset, &mut data)?;
                    let data = tamper(index, data);
                    write_frame_parts(&mut send, CHUNK, &[&index.to_be_bytes(), &data]).await?;
                    sent.chunks += 1;
                    sent.bytes += len;
                    report.written.fetch_add(len, Ordering::Relaxed);
                    if let Some(rate) = limit_rate.filter(|r| *r > 0) {
                        let due = std::time::Duration::from_secs_f64(sent.bytes as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    held += len;
                    report.sent.store(held.min(manifest.size), Ordering::Relaxed);
                }
            }
            write_frame(&mut send, END, &[]).await?;
        }
        Err(P2pError::Verification(format!("chunks kept failing verification after {MAX_ROUNDS} rounds")))
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        r = &mut reader => match r {
            Err(e) => Err(e),
            Ok(()) => writer.await, // Done was forwarded: the writer returns with it
        },
        r = &mut writer => r,
    }
}

/// Reads one chunk of `file` at `offset` (positioned read: no shared cursor).
fn read_chunk(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> Result<(), P2pError> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).map_err(|e| P2pError::Io(e.to_string()))
}

/// Chunk runs as sent in Want: (start, count) pairs of big-endian u64.
fn decode_runs(payload: &[u8]) -> Result<Vec<(u64, u64)>, P2pError> {
    payload.chunks_exact(16).map(|r| Ok((u64_at(r, 0)?, u64_at(r, 8)?))).collect()
}

fn chunk_len(m: &Manifest, i: u64) -> u64 {
    m.chunk(i).map_or(0, |(_, len)| len)
}

/// What a receive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Where the file is now.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Bytes held from an earlier attempt when this one began.
    pub resumed_from: u64,
    /// Chunks that failed verification (and were fetched again).
    pub rejected: u64,
}

/// The partial file and state file of a transfer into `dir`.
fn partial_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(name), dir.join(format!(".{name}.ferry-p2p")), dir.join(format!(".{name}.ferry-p2p.state")))
}

/// The lock of the transfer into `partial` (one per file, process-wide).
fn turn_for(partial: &Path) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static TURNS: std::sync::Mutex<Vec<(PathBuf, std::sync::Weak<tokio::sync::Mutex<()>>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut turns = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    turns.retain(|(_, w)| w.strong_count() > 0);
    if let Some(t) = turns.iter().find(|(p, _)| p == partial).and_then(|(_, w)| w.upgrade()) {
        return t;
    }
    let t = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    turns.push((partial.to_owned(), std::sync::Arc::downgrade(&t)));
    t
}

/// A file name a peer may choose: one component, no control characters.
fn safe_name(name: &str) -> Result<&str, P2pError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
        && !name.starts_with('.');
    if ok { Ok(name) } else { Err(P2pError::Protocol(format!("refused file name {name:?}"))) }
}

/// Saved state: the manifest, then one byte per chunk (1 = held, synced).
pub(crate) fn save_state(state: &Path, a: &Assembly) -> Result<(), P2pError> {
    let m = a.manifest();
    let mut bytes = m.encode();
    bytes.extend((0..m.count()).map(|i| u8::from(a.has(i))));
    let tmp = state.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| P2pError::Io(e.to_string()))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| P2pError::Io(e.to_string()))?;
    std::fs::rename(&tmp, state).map_err(|e| P2pError::Io(e.to_string()))
}

fn load_state(state: &Path, manifest: &Manifest) -> Option<Assembly> {
    let bytes = std::fs::read(state).ok()?;
    let encoded = manifest.encode();
    let (head, held) = bytes.split_at_checked(encoded.len())?;
    if head != encoded.as_slice() || held.len() as u64 != manifest.count() {
        return None; // another file by that name: start over
    }
    Some(load_state_bytes(manifest, held))
}

fn load_state_bytes(manifest: &Manifest, held: &[u8]) -> Assembly {
    Assembly::resume(manifest.clone(), held.iter().enumerate().filter(|(_, h)| **h == 1).map(|(i, _)| i as u64))
}

/// What arrived on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A file, verified and in place.
    File(Received),
    /// A text message (acknowledged to the sender once `show` returned).
    Text(String),
}

/// Accepts one transfer on `conn` into `dir` (resuming an earlier one of the same file), or
/// one text message. `accept` sees a file's name and size first and may refuse; `progress`
/// sees bytes held; `show` sees a message before the sender hears it arrived. When `stop` is
/// cancelled (the user quits) it syncs what it holds and tells the sender, so another path
/// can continue from exactly there.
pub async fn receive(
    conn: &Connection,
    dir: &Path,
    accept: &(dyn Fn(&str, u64) -> bool + Sync),
    progress: &(dyn Fn(u64) + Sync),
    show: &(dyn Fn(&str) + Sync),
    stop: &CancellationToken,
) -> Result<Incoming, P2pError> {
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| P2pError::Stream(e.to_string()))?;
    let (kind, offer) = read_frame(&mut recv, MAX_OFFER).await?;
    if kind == MESSAGE {
        let text = String::from_utf8(offer).map_err(|_| P2pError::Protocol("a message that is not UTF-8".into()))?;
        if text.len() > MAX_TEXT {
            return Err(P2pError::Protocol(format!("a message of {} bytes (at most {MAX_TEXT})", text.len())));
        }
        show(&text);
        write_frame(&mut send, DONE, &[1]).await?;
        let _ = send.finish();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), recv.read_to_end(0)).await;
        return Ok(Incoming::Text(text));
    }
    if kind != OFFER {
        return Err(P2pError::Protocol("the first frame is not an offer".into()));
    }
    let name_len = offer.get(0..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).unwrap_or(usize::MAX);
    let name = offer
        .get(4..4usize.saturating_add(name_len))
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| P2pError::Protocol("a bad name in the offer".into()))?
        .to_owned();
    let name = safe_name(&name)?.to_owned();
    let manifest = Manifest::decode(&offer[4 + name_len..]).map_err(|e| P2pError::Protocol(e.to_string()))?;
    if !accept(&name, manifest.size) {
        write_frame(&mut send, DONE, &[2]).await?;
        last_word(&mut send).await;
        return Err(P2pError::Declined);
    }
    let (dest, partial, state) = partial_paths(dir, &name);
    // One receive per file at a time: a reconnecting sender's new stream waits until the
    // old one has recorded what it got.
    let turn = turn_for(&partial);
    let _turn = turn.lock().await;
    let mut assembly = load_state(&state, &manifest).unwrap_or_else(|| Assembly::new(manifest.clone()));
    let resumed_from = assembly.held_bytes();
    // The whole file's SHA-256, kept while chunks arrive in order from the start (the usual
    // case), so the check at the end needs no second read; else the file is read once then.
    let running: Option<(Sha256, u64)> = (resumed_from == 0).then(|| (Sha256::new(), 0));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial)
        .map_err(|e| P2pError::Io(e.to_string()))?;
    let mut disk = DiskWriter::start(file, state.clone(), assembly.clone(), running);
    let mut rejected = 0;
    let outcome = async {
        for _round in 0..=MAX_ROUNDS {
            let want: Vec<u8> = runs(assembly.missing())
                .iter()
                .flat_map(|(s, n)| [s.to_be_bytes(), n.to_be_bytes()])
                .flatten()
                .collect();
            progress(assembly.held_bytes());
            if assembly.is_complete() {
                return Ok(());
            }
            write_frame(&mut send, WANT, &want).await?;
            loop {
                let (kind, payload) = tokio::select! {
                    r = read_frame(&mut recv, MAX_FRAME) => r?,
                    () = stop.cancelled() => return Err(P2pError::Stream("stopped by the receiver".into())),
                };
                match kind {
                    END => break,
                    CHUNK => {
                        let index = u64_at(&payload, 0)?;
                        match assembly.accept(index, &payload[8..]) {
                            Ok(Accepted::New) => {
                                let (offset, _) =
                                    manifest.chunk(index).map_err(|e| P2pError::Protocol(e.to_string()))?;
                                disk.write(index, offset, payload).await?;
                                progress(assembly.held_bytes());
                            }
                            Ok(Accepted::Duplicate) => {}
                            Err(ChunkError::Corrupt(i)) => {
                                rejected += 1;
                                write_frame(&mut send, BAD, &i.to_be_bytes()).await?;
                            }
                            Err(e) => return Err(P2pError::Protocol(e.to_string())),
                        }
                        // The sender learns what survives us: another path (the server's
                        // store) may continue from there.
                        if let Some(synced) = disk.newly_synced() {
                            write_frame(&mut send, HAVE, &synced.to_be_bytes()).await?;
                        }
                    }
                    other => return Err(P2pError::Protocol(format!("unexpected frame {other}"))),
                }
            }
        }
        write_frame(&mut send, DONE, &[0]).await?;
        last_word(&mut send).await;
        Err(P2pError::Verification(format!("chunks kept failing verification after {MAX_ROUNDS} rounds")))
    }
    .await;
    // Whatever happened, what arrived is synced and recorded: the next attempt resumes there.
    let written = disk.finish().await;
    if let Ok(w) = &written
        && stop.is_cancelled()
    {
        // Leaving on purpose: the sender learns exactly what is kept.
        let have = w.held.contiguous_bytes().to_be_bytes();
        if write_frame(&mut send, HAVE, &have).await.is_ok() {
            last_word(&mut send).await;
        }
    }
    // A failed disk says why (the network side only saw its queue close).
    let written = written?;
    outcome?;
    let sha256 = finish(written.file, &manifest, written.running).await?;
    let ok = sha256 == manifest.sha256;
    write_frame(&mut send, DONE, &[u8::from(ok)]).await?;
    if !ok {
        last_word(&mut send).await;
        let _ = std::fs::remove_file(&state);
        return Err(P2pError::Verification("the assembled file's SHA-256 is not the sender's".into()));
    }
    let _ = send.finish();
    std::fs::rename(&partial, &dest).map_err(|e| P2pError::Io(e.to_string()))?;
    let _ = std::fs::remove_file(&state);
    // Wait for the sender to read Done before the connection may close.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), recv.read_to_end(0)).await;
    Ok(Incoming::File(Received { path: dest, size: manifest.size, sha256, resumed_from, rejected }))
}

/// How far an earlier, interrupted transfer of `name` into `dir` got: the bytes from the
/// start of the file held (synced), and the whole file's SHA-256 it was to have.
pub fn partial_of(dir: &Path, name: &str) -> Option<(u64, [u8; 32])> {
    let name = safe_name(name).ok()?;
    let (_, _, state) = partial_paths(dir, name);
    let bytes = std::fs::read(state).ok()?;
    let (manifest, held) = Manifest::decode_prefix(&bytes).ok()?;
    let assembly = (held.len() as u64 == manifest.count()).then(|| load_state_bytes(&manifest, held))?;
    Some((assembly.contiguous_bytes(), manifest.sha256))
}

/// Removes what an interrupted transfer of `name` into `dir` left (the file arrived whole
/// another way).
pub fn discard_partial(dir: &Path, name: &str) {
    if let Ok(name) = safe_name(name) {
        let (_, partial, state) = partial_paths(dir, name);
        let _ = std::fs::remove_file(partial);
        let _ = std::fs::remove_file(state);
    }
}

/// Finishes an interrupted transfer of `name` into `dir` with its rest from another path:
/// `tail` holds the file's bytes from `offset` on (what the server's store kept). The whole
/// file's SHA-256 must be `sha256` before it takes its name.
pub fn complete_from_tail(
    dir: &Path,
    name: &str,
    tail: &Path,
    offset: u64,
    sha256: &[u8; 32],
) -> Result<Received, P2pError> {
    let io = |e: std::io::Error| P2pError::Io(e.to_string());
    let name = safe_name(name)?;
    let (dest, partial, state) = partial_paths(dir, name);
    let (held, expected) = partial_of(dir, name)
        .ok_or_else(|| P2pError::Protocol(format!("no interrupted transfer of {name} in {}", dir.display())))?;
    if &expected != sha256 || held < offset {
        return Err(P2pError::Protocol(format!(
            "the interrupted transfer of {name} in {} does not reach where the rest begins",
            dir.display()
        )));
    }
    let mut out = std::fs::OpenOptions::new().read(true).write(true).open(&partial).map_err(io)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut prefix = (&mut out).take(offset);
    loop {
        match prefix.read(&mut buf).map_err(io)? {
            0 => break,
            n => sha.update(&buf[..n]),
        }
    }
    out.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut rest = std::fs::File::open(tail).map_err(io)?;
    let mut size = offset;
    loop {
        match rest.read(&mut buf).map_err(io)? {
            0 => break,
            n => {
                sha.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io)?;
                size += n as u64;
            }
        }
    }
    out.set_len(size).and_then(|()| out.sync_all()).map_err(io)?;
    let got: [u8; 32] = sha.finalize().into();
    if &got != sha256 {
        return Err(P2pError::Verification(format!("{name} put together from both paths has another SHA-256")));
    }
    std::fs::rename(&partial, &dest).map_err(io)?;
    let _ = std::fs::remove_file(&state);
    Ok(Received { path: dest, size, sha256: got, resumed_from: offset, rejected: 0 })
}

/// Ends our side of the stream and waits (a little) until the sender read it or went: a
/// final answer must not be lost in the connection's close.
async fn last_word(send: &mut SendStream) {
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), send.stopped()).await;
    }
}

/// Sizes and syncs the partial file (off the async threads); its SHA-256 from `running`
/// when that covers the whole file, else from one read of it.
async fn finish(
    file: std::fs::File,
    manifest: &Manifest,
    running: Option<(Sha256, u64)>,
) -> Result<[u8; 32], P2pError> {
    let size = manifest.size;
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        let mut f = file;
        f.set_len(size)?;
        f.sync_all()?;
        if let Some((sha, hashed)) = running
            && hashed == size
        {
            return Ok(sha.finalize().into());
        }
        f.seek(SeekFrom::Start(0))?;
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match f.read(&mut buf)? {
                0 => return Ok(sha.finalize().into()),
                n => sha.update(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|e| P2pError::Io(e.to_string()))?
    .map_err(|e| P2pError::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_chunks_travel_as_runs() {
        assert_eq!(runs([0, 1, 2, 5, 7, 8].into_iter()), vec![(0, 3), (5, 1), (7, 2)]);
        assert!(runs(std::iter::empty()).is_empty());
    }

    #[test]
    fn peers_cannot_name_files_outside_the_folder() {
        for bad in ["", ".", "..", "a/b", "..\\x", ".hidden", "a\nb"] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_name("report.pdf").unwrap(), "report.pdf");
    }
}
