//! Many nodes on one shared database (PostgreSQL): upload leases with fencing tokens,
//! release requests between nodes, and events that reach a watcher on any node.
//!
//! - A PATCH (or DELETE, or an assembly) takes the upload's lease in the database besides
//!   the in-process lock: a row lease with a fencing token, renewed while the request runs
//!   and given up at its end. Every offset commit and completion carries the token, so a
//!   node that lost its lease (paused, cut off) can commit nothing.
//! - A request meeting another node's live lease publishes a release request; the holder's
//!   node stops its request there (which commits what is durable and answers), like a
//!   newer request does on one node; the lease then passes.
//! - Relay events are published through the database and delivered by every node to its
//!   own open event streams.
//!
//! On a database no other node shares (SQLite) none of this runs.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::UploadId;
use ferry_store::Metadata;
use tokio::task::JoinHandle;

use crate::{ApiError, AppState};

/// Topic of release requests (payload: the upload id).
pub(crate) const RELEASE_TOPIC: &str = "ferry_release";
/// Topic of relay events (payload: `{"user", "kind", "data"}`).
pub(crate) const EVENT_TOPIC: &str = "ferry_event";
/// A lease lives this long unless renewed.
const LEASE_TTL: i64 = 30;
/// A held lease is renewed this often.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a request waiting for another node's lease asks again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// This node's lease on one upload; renewed in the background, given up when dropped.
#[derive(Debug)]
pub(crate) struct LeaseHold {
    pub(crate) token: i64,
    renewer: JoinHandle<()>,
    meta: Arc<dyn Metadata>,
    id: UploadId,
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        self.renewer.abort();
        let (meta, id, token) = (self.meta.clone(), self.id.clone(), self.token);
        tokio::spawn(async move {
            if let Err(e) = meta.release_lease(&id, token).await {
                tracing::warn!(upload = %id, error = %e, "could not give up the lease (it runs out by itself)");
            }
        });
    }
}

/// Takes the lease on `id` for this node, asking another node that holds it to let go;
/// `None` on a database no other node shares. 423 when the holder does not let go within
/// `wait`. `lost` is cancelled if the lease is lost later (the request must stop).
pub(crate) async fn lease(
    state: &AppState,
    id: &UploadId,
    wait: Duration,
    lost: tokio_util::sync::CancellationToken,
) -> Result<Option<LeaseHold>, ApiError> {
    if !state.meta.shared() {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut asked = false;
    loop {
        let now = ferry_store::unix_now();
        if let Some(token) = state.meta.acquire_lease(id, &state.node, now, now + LEASE_TTL).await? {
            let (meta, rid) = (state.meta.clone(), id.clone());
            let renewer = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    match meta.renew_lease(&rid, token, ferry_store::unix_now() + LEASE_TTL).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(upload = %rid, "lease lost to another node; stopping this request");
                            lost.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(upload = %rid, error = %e, "could not renew the lease"),
                    }
                }
            });
            return Ok(Some(LeaseHold { token, renewer, meta: state.meta.clone(), id: id.clone() }));
        }
        if !asked {
            state.meta.publish(RELEASE_TOPIC, id.as_str()).await?;
            asked = true;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Locked);
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Starts delivering what other nodes publish: release requests stop this node's request
/// on the upload; events go to this node's open streams. Events published here go out
/// through the database (and come back to be delivered here too).
pub(crate) async fn start(state: &AppState) -> Result<(), ApiError> {
    let Some(mut rx) = state.meta.subscribe(&[RELEASE_TOPIC, EVENT_TOPIC]).await? else { return Ok(()) };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    state.events.publish_through(out_tx);
    let meta = state.meta.clone();
    tokio::spawn(async move {
        while let Some(payload) = out_rx.recv().await {
            if let Err(e) = meta.publish(EVENT_TOPIC, &payload).await {
                tracing::warn!(error = %e, "could not publish an event to the other nodes");
            }
        }
    });
    let state = state.clone();
    tokio::spawn(async move {
        while let Some((topic, payload)) = rx.recv().await {
            match topic.as_str() {
                RELEASE_TOPIC => {
                    if let Some(id) = UploadId::parse(&payload) {
                        state.locks.request_release(&id);
                    }
                }
                EVENT_TOPIC => state.events.deliver_published(&payload),
                _ => {}
            }
        }
    });
    Ok(())
}
