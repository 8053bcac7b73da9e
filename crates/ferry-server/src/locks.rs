//! Per-upload exclusive ownership with tusd-style lock release.
//!
//! One request at a time owns an upload. A new request for the same upload first asks the
//! current owner to stop (its stop token is cancelled: a streaming PATCH then makes durable
//! and commits what it has and answers), then waits for the lock. So a half-dead PATCH
//! never blocks a client that reconnected, and the offset the new request reads is final.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::UploadId;
use sha2::Sha256;
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;

/// State that lives with the lock: the running whole-file SHA-256 and the offset it covers.
#[derive(Debug, Default)]
pub struct SlotState {
    /// SHA-256 over bytes `0..offset` of the upload, if this process has seen them.
    pub hasher: Option<(u64, Sha256)>,
}

#[derive(Debug, Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<SlotState>>,
    holder_stop: Mutex<CancellationToken>,
}

/// The lock table.
#[derive(Debug, Default)]
pub struct UploadLocks {
    slots: Mutex<HashMap<UploadId, Arc<Slot>>>,
}

/// Exclusive ownership of one upload; dropping it releases the upload.
#[derive(Debug)]
pub struct UploadGuard {
    /// The state kept with the lock.
    pub state: OwnedMutexGuard<SlotState>,
    /// Cancelled when a newer request wants this upload (here or on another node), or when
    /// this node lost its lease on it.
    pub stop: CancellationToken,
    /// This node's lease on the upload in a shared database, while it holds one.
    pub(crate) lease: Option<crate::cluster::LeaseHold>,
}

impl UploadGuard {
    /// The fencing token of this node's lease on the upload, when uploads are leased
    /// across nodes.
    pub fn lease_token(&self) -> Option<i64> {
        self.lease.as_ref().map(|l| l.token)
    }
}

impl UploadLocks {
    fn slot(&self, id: &UploadId) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(id.clone()).or_default().clone()
    }

    /// Takes ownership of `id`, asking the current owner to stop. Gives up after `wait`.
    pub async fn acquire(&self, id: &UploadId, wait: Duration) -> Option<UploadGuard> {
        let slot = self.slot(id);
        let deadline = Instant::now() + wait;
        loop {
            slot.holder_stop.lock().unwrap_or_else(|p| p.into_inner()).cancel();
            let step = Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now()));
            if let Ok(state) = tokio::time::timeout(step, slot.lock.clone().lock_owned()).await {
                let stop = CancellationToken::new();
                *slot.holder_stop.lock().unwrap_or_else(|p| p.into_inner()) = stop.clone();
                return Some(UploadGuard { state, stop, lease: None });
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Takes ownership only if nobody holds the upload (for background jobs).
    pub fn try_acquire(&self, id: &UploadId) -> Option<UploadGuard> {
        let slot = self.slot(id);
        let state = slot.lock.clone().try_lock_owned().ok()?;
        let stop = CancellationToken::new();
        *slot.holder_stop.lock().unwrap_or_else(|p| p.into_inner()) = stop.clone();
        Some(UploadGuard { state, stop, lease: None })
    }

    /// Asks the request holding `id` here, if any, to stop (another node wants it).
    pub fn request_release(&self, id: &UploadId) {
        let slot = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        if let Some(slot) = slot {
            slot.holder_stop.lock().unwrap_or_else(|p| p.into_inner()).cancel();
        }
    }

    /// Drops the slot of an upload that reached a final state (no request can change it
    /// any more, so a fresh slot later is harmless).
    pub fn forget(&self, id: &UploadId) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_request_stops_the_holder() {
        let locks = Arc::new(UploadLocks::default());
        let id = UploadId::random();
        let first = locks.acquire(&id, Duration::from_secs(1)).await.unwrap();
        let stop = first.stop.clone();
        let holder = tokio::spawn(async move {
            stop.cancelled().await;
            drop(first);
        });
        let second = locks.acquire(&id, Duration::from_secs(5)).await;
        assert!(second.is_some(), "second request got the upload after the holder stopped");
        assert!(!second.unwrap().stop.is_cancelled());
        holder.await.unwrap();
    }

    #[tokio::test]
    async fn a_stubborn_holder_makes_the_newcomer_give_up() {
        let locks = UploadLocks::default();
        let id = UploadId::random();
        let _first = locks.acquire(&id, Duration::from_secs(1)).await.unwrap();
        assert!(locks.acquire(&id, Duration::from_millis(200)).await.is_none());
        assert!(locks.try_acquire(&id).is_none());
    }
}
