//! Quotas that hold under parallel requests.
//!
//! Every request that adds bytes to a user's usage (a creation, a deferred length declared,
//! a final upload, a dedup copy, bytes of a still-unsized upload) is admitted under that
//! user's lock: it reads the usage, checks the quota and the staging limit, and records what
//! it adds (the upload row, the length) before the lock is released. Bytes that are not yet
//! in the database while a request runs (a dedup copy in progress, a PATCH to an upload whose
//! length is deferred) are held as an in-memory reservation that other requests count too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::auth::Identity;
use crate::{ApiError, AppState};

/// Per-user admission locks and reservations.
#[derive(Debug, Default)]
pub struct Quotas {
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    reserved: Arc<Mutex<HashMap<i64, u64>>>,
}

/// What a request is about to add.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Claim {
    /// Bytes it adds to the user's usage.
    pub adds: u64,
    /// Bytes already counted in the usage that it replaces (the parts of a final upload).
    pub replaces: u64,
    /// Whether the bytes are unfinished uploads (staging) rather than files in the tree.
    pub staged: bool,
    /// Whether it opens a new upload (counted against `max_open_uploads`).
    pub opens: bool,
}

/// A request admitted: holds the user's lock until it has recorded what it adds, or
/// turns into a [`Reservation`].
#[must_use = "hold it until what the request adds is recorded"]
pub(crate) struct Admitted {
    /// What the user may still add after this claim (quota and staging limit).
    pub room: u64,
    user: Option<(i64, OwnedMutexGuard<()>)>,
    reserved: Arc<Mutex<HashMap<i64, u64>>>,
}

/// Bytes counted against a user while a request runs; released on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    user: Option<(i64, u64)>,
    reserved: Arc<Mutex<HashMap<i64, u64>>>,
}

impl Admitted {
    /// Releases the lock and keeps `bytes` counted until the reservation is dropped.
    pub(crate) fn reserve(self, bytes: u64) -> Reservation {
        let user = self.user.map(|(id, _guard)| {
            *self.reserved.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default() += bytes;
            (id, bytes)
        });
        Reservation { user, reserved: self.reserved }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((id, bytes)) = self.user {
            let mut map = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = map.get_mut(&id) {
                *v = v.saturating_sub(bytes);
                if *v == 0 {
                    map.remove(&id);
                }
            }
        }
    }
}

impl Quotas {
    fn lock_of(&self, user: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(user).or_default().clone()
    }

    fn reserved_by(&self, user: i64) -> u64 {
        self.reserved.lock().unwrap_or_else(|p| p.into_inner()).get(&user).copied().unwrap_or(0)
    }
}

/// Admits `claim` for the caller or explains (413) which limit it would cross.
pub(crate) async fn admit(state: &AppState, who: &Identity, claim: Claim) -> Result<Admitted, ApiError> {
    let reserved = state.quotas.reserved.clone();
    let Some(user) = who.user_id() else { return Ok(Admitted { room: u64::MAX, user: None, reserved }) };
    let guard = state.quotas.lock_of(user).lock_owned().await;
    if claim.opens && state.meta.open_uploads(user).await? >= state.config.max_open_uploads {
        return Err(ApiError::Forbidden(format!(
            "you have {} unfinished uploads, the most this server allows; finish or delete some first",
            state.config.max_open_uploads
        )));
    }
    let usage = state.meta.usage_of(user, &who.home().to_string()).await?;
    let held = state.quotas.reserved_by(user);
    let mut room = u64::MAX;
    if let Some((_, quota)) = who.quota() {
        let used = usage.total().saturating_add(held).saturating_sub(claim.replaces);
        if used.saturating_add(claim.adds) > quota {
            return Err(ApiError::TooLarge(format!(
                "quota exceeded: {used} of {quota} bytes used, this needs {} more",
                claim.adds
            )));
        }
        room = quota - used - claim.adds;
    }
    if claim.staged {
        let limit = state.config.max_staging_bytes;
        let staged = usage.staging.saturating_add(held).saturating_sub(claim.replaces);
        if staged.saturating_add(claim.adds) > limit {
            return Err(ApiError::TooLarge(format!(
                "your unfinished uploads hold {staged} bytes, the server allows {limit}; finish or delete some first"
            )));
        }
        room = room.min(limit - staged - claim.adds);
    }
    Ok(Admitted { room, user: Some((user, guard)), reserved })
}

/// For a request body to an upload whose length is deferred: how many bytes it may take
/// (the room under the quota and the staging limit, at most `wants` when the body's length
/// is known), held as a reservation while the request runs. Nothing to hold when the
/// length is declared (it was admitted then).
pub(crate) async fn for_body(
    state: &AppState,
    who: &Identity,
    length: Option<u64>,
    wants: Option<u64>,
) -> Result<(Option<Reservation>, u64), ApiError> {
    if length.is_some() {
        return Ok((None, u64::MAX));
    }
    let admitted = admit(state, who, Claim { staged: true, ..Claim::default() }).await?;
    let take = wants.map_or(admitted.room, |w| w.min(admitted.room));
    Ok((Some(admitted.reserve(take)), take))
}
