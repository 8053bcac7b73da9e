//! Start-up recovery: finish what a crash interrupted.
//!
//! - A completed upload recorded but not yet renamed into the tree is placed now; one
//!   renamed but not yet recorded gets its digest record.
//! - A final upload whose parts all finished is assembled now.
//!
//! Uploads that were mid-PATCH need nothing: their committed offset is the truth and the
//! next PATCH leaves any unacknowledged tail behind.

use ferry_core::TreePath;

use crate::tus::{self};
use crate::{ApiError, AppState};

/// Runs the recovery pass.
pub(crate) async fn recover(state: &AppState) -> Result<(), ApiError> {
    for rec in state.meta.unplaced().await? {
        let (Some(path), Some(sha)) = (rec.tree_path.as_deref(), rec.sha256) else { continue };
        let dest = TreePath::parse(path).map_err(|e| ApiError::Internal(e.to_string()))?;
        if !state.blobs.exists(&rec.id).await? {
            // Published before the crash; the digest record and the flag were lost. The file
            // at the destination is this upload's when its size matches.
            match state.blobs.stat(&dest).await {
                Ok(Some(placed)) if !placed.is_dir && Some(placed.size) == rec.length => {
                    tus::record_placed(state, &rec.id, &dest, &placed, &sha).await?;
                }
                _ => state.meta.mark_placed(&rec.id).await?,
            }
            continue;
        }
        match tus::place(state, &rec.id, &dest, &sha).await {
            Ok(()) => tracing::info!(upload = %rec.id, path, "recovered: placed a completed upload"),
            Err(e) => tracing::error!(upload = %rec.id, error = %e, "recovery could not place a completed upload"),
        }
    }
    for rec in state.meta.active_finals().await? {
        if let Err(e) = tus::try_assemble(state, &rec.id).await {
            tracing::warn!(upload = %rec.id, error = %e, "recovery could not assemble a final upload");
        }
    }
    Ok(())
}
