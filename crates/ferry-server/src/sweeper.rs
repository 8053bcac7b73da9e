//! The expiry sweeper: removes unfinished uploads (and consumed partials) past their
//! `Upload-Expires`, bytes and all; their records stay so HEAD can answer 410.

use ferry_store::{UploadState, unix_now};
use tokio::task::JoinHandle;

use crate::AppState;

/// Starts the sweeper. The caller owns the handle and aborts it at shutdown.
pub(crate) fn spawn(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.sweep_interval);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match sweep(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired uploads removed"),
                Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
            }
        }
    })
}

/// One pass; returns how many uploads expired.
pub(crate) async fn sweep(state: &AppState) -> Result<usize, crate::ApiError> {
    let mut n = 0;
    for item in state.meta.expire_relay_items(unix_now()).await? {
        if let Ok(Some(sender)) = state.meta.relay_sender(&item).await
            && let Ok(Some((u, _))) = state.meta.user_by_name(&sender).await
        {
            state.events.notify(u.id, "delivery", serde_json::json!({ "id": item, "state": "expired" }));
        }
        crate::api::relay::release_if_done(state, &item).await?;
        n += 1;
    }
    for id in state.meta.expired(unix_now(), 1000).await? {
        // An upload some request is working on is not idle; leave it for the next pass.
        let Some(_guard) = state.locks.try_acquire(&id) else { continue };
        // A request may have extended it between the query and the lock.
        let Some(rec) = state.meta.get(&id).await? else { continue };
        if rec.expires_at.is_none_or(|t| t >= unix_now())
            || !matches!(rec.state, UploadState::Active | UploadState::Complete)
        {
            continue;
        }
        state.meta.finish(&id, UploadState::Expired, Some("expired")).await?;
        crate::tus::release_bytes(state, &id).await?;
        state.locks.forget(&id);
        n += 1;
    }
    Ok(n)
}
