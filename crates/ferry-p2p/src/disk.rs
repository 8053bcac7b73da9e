//! The receiver's disk side on a thread of its own: chunks verified by the network side are
//! written at their offsets, the whole file's SHA-256 kept while they come in order, and
//! every few chunks the file is synced and then the state saved — never on the async
//! threads, so a slow disk (a sync under writeback pressure can take seconds) never stalls
//! the QUIC connection into looking dead.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use ferry_core::chunks::Assembly;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::P2pError;

/// The receiver syncs and saves its state at least every this many new chunks.
const SAVE_EVERY: u64 = 8;
/// Chunks queued for the disk before the network side waits (bounds memory: 16 chunks).
const QUEUE: usize = 16;

/// A chunk for the disk: its index, where it goes, and its frame (index prefix, then data).
struct Block {
    index: u64,
    offset: u64,
    frame: Vec<u8>,
}

/// What the disk side holds when it stops.
pub(crate) struct Written {
    pub(crate) file: std::fs::File,
    /// The whole file's SHA-256 so far and where it stopped, while chunks came in order.
    pub(crate) running: Option<(Sha256, u64)>,
    /// The chunks written and synced (the state file says the same).
    pub(crate) held: Assembly,
}

/// The handle the network side writes through.
pub(crate) struct DiskWriter {
    tx: Option<mpsc::Sender<Block>>,
    synced: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<Result<Written, P2pError>>,
}

fn io(e: std::io::Error) -> P2pError {
    P2pError::Io(e.to_string())
}

impl DiskWriter {
    /// Starts writing into `file`, whose chunks `held` are already on disk; the state file
    /// is `state`.
    pub(crate) fn start(
        file: std::fs::File,
        state: PathBuf,
        mut held: Assembly,
        mut running: Option<(Sha256, u64)>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Block>(QUEUE);
        let (synced_tx, synced) = watch::channel(held.contiguous_bytes());
        let task = tokio::task::spawn_blocking(move || {
            let mut unsaved = 0u64;
            let save = |held: &Assembly| -> Result<(), P2pError> {
                file.sync_data().map_err(io)?;
                crate::transfer::save_state(&state, held)?;
                let _ = synced_tx.send(held.contiguous_bytes());
                Ok(())
            };
            while let Some(b) = rx.blocking_recv() {
                let data = &b.frame[8..];
                file.write_all_at(data, b.offset).map_err(io)?;
                running = running.take().and_then(|(mut sha, next)| {
                    (next == b.offset).then(|| {
                        sha.update(data);
                        (sha, next + data.len() as u64)
                    })
                });
                held.mark(b.index);
                unsaved += 1;
                if unsaved >= SAVE_EVERY {
                    save(&held)?;
                    unsaved = 0;
                }
            }
            // The network side is done (or gone): whatever arrived is recorded.
            save(&held)?;
            Ok(Written { file, running, held })
        });
        Self { tx: Some(tx), synced, task }
    }

    /// Queues a verified chunk (its frame: index prefix, then data) for `offset`; waits
    /// while the disk is [`QUEUE`] chunks behind.
    pub(crate) async fn write(&self, index: u64, offset: u64, frame: Vec<u8>) -> Result<(), P2pError> {
        let tx = self.tx.as_ref().ok_or_else(|| P2pError::Io("the disk writer has stopped".into()))?;
        tx.send(Block { index, offset, frame }).await.map_err(|_| P2pError::Io("the disk writer failed".into()))
    }

    /// Bytes from the start of the file now synced and recorded, when that grew since the
    /// last call.
    pub(crate) fn newly_synced(&mut self) -> Option<u64> {
        self.synced.has_changed().ok().filter(|c| *c).map(|_| *self.synced.borrow_and_update())
    }

    /// Stops after the queued chunks, syncs and records them.
    pub(crate) async fn finish(mut self) -> Result<Written, P2pError> {
        drop(self.tx.take());
        self.task.await.map_err(|e| P2pError::Io(e.to_string()))?
    }
}
