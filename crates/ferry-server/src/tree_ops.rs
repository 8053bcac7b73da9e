//! Changes to the tree that WebDAV and the file API share: remove, move, make a folder.
//! Each checks the caller's right to the path as named *and* where it really leads, keeps
//! the recorded digests and dead properties with their files, and admits quota where bytes
//! start to count against a home.

use ferry_core::TreePath;
use ferry_store::StoreError;

use crate::auth::Identity;
use crate::{ApiError, AppState};

/// A storage failure as the file routes report it.
pub(crate) fn store_error(e: StoreError, path: &TreePath) -> ApiError {
    match e {
        StoreError::NotFound(_) => ApiError::NotFound(format!("no such file or folder: /{path}")),
        StoreError::Escapes(_) => ApiError::Forbidden(format!("/{path} leads out of the tree")),
        StoreError::Conflict(why) => ApiError::Conflict(why),
        e => e.into(),
    }
}

/// `path` when the caller may read it (`write`: write it), as named and where it leads.
pub(crate) async fn checked(state: &AppState, who: &Identity, path: &TreePath, write: bool) -> Result<(), ApiError> {
    let ok = |t: &TreePath| if write { who.may_write(t) } else { who.may_read(t) };
    let refuse = || ApiError::Forbidden(format!("you may not {} /{path}", if write { "change" } else { "read" }));
    if !ok(path) {
        return Err(refuse());
    }
    let real = state.blobs.real_tree_path(path).await.map_err(|e| store_error(e, path))?;
    if !ok(&real) {
        return Err(refuse());
    }
    Ok(())
}

/// The tree root and users' homes are never removed or moved.
fn fixed(p: &TreePath) -> bool {
    p.is_root() || p.components().count() == 1 && p.to_string().starts_with('~')
}

/// Removes a file or folder (a folder that is not empty only with `recursive`).
pub(crate) async fn remove(state: &AppState, who: &Identity, p: &TreePath, recursive: bool) -> Result<(), ApiError> {
    checked(state, who, p, true).await?;
    if fixed(p) {
        return Err(ApiError::Forbidden(format!("/{p} cannot be removed (the root and homes stay)")));
    }
    match state.blobs.remove_path(p, recursive).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) if !recursive => {
            return Err(ApiError::Conflict(format!("/{p} is a folder that is not empty (remove it recursively)")));
        }
        Err(e) => return Err(store_error(e, p)),
    }
    state.meta.tree_files_removed(&p.to_string()).await?;
    state.meta.remove_dead_props(&p.to_string()).await?;
    Ok(())
}

/// Moves (renames) a file or folder; something at `dst` is replaced only with `overwrite`.
pub(crate) async fn move_path(
    state: &AppState,
    who: &Identity,
    src: &TreePath,
    dst: &TreePath,
    overwrite: bool,
) -> Result<(), ApiError> {
    checked(state, who, src, true).await?;
    checked(state, who, dst, true).await?;
    if fixed(src) || dst.is_root() {
        return Err(ApiError::Forbidden(format!("/{src} cannot be moved (the root and homes stay)")));
    }
    if dst.starts_with(src) {
        return Err(ApiError::Conflict(format!("cannot move /{src} into itself")));
    }
    // A file moved into the caller's home from elsewhere (a shared folder) starts to count
    // against the quota.
    let home = who.home();
    let _admitted = if dst.starts_with(&home) && !src.starts_with(&home) && who.quota().is_some() {
        let size = state.blobs.stat(src).await.map_err(|e| store_error(e, src))?.map_or(0, |s| s.size);
        let claim = crate::quota::Claim { adds: size, replaces: 0, staged: false, opens: false };
        Some(crate::quota::admit(state, who, claim).await?)
    } else {
        None
    };
    state.blobs.move_path(src, dst, overwrite).await.map_err(|e| match e {
        StoreError::Conflict(_) if !overwrite => ApiError::Conflict(format!("/{dst} already exists")),
        e => store_error(e, src),
    })?;
    state.meta.tree_files_moved(&src.to_string(), &dst.to_string()).await?;
    state.meta.move_dead_props(&src.to_string(), &dst.to_string()).await?;
    Ok(())
}

/// Makes a folder (with `parents`, its missing ancestors too, and an existing folder is fine).
pub(crate) async fn make_dir(state: &AppState, who: &Identity, p: &TreePath, parents: bool) -> Result<(), ApiError> {
    checked(state, who, p, true).await?;
    if p.is_root() {
        return Err(ApiError::Conflict("the root exists".into()));
    }
    ensure_home(state, who, p).await?;
    match state.blobs.make_dir(p, parents).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict(_))
            if parents && state.blobs.stat(p).await.ok().flatten().is_some_and(|s| s.is_dir) =>
        {
            Ok(())
        }
        Err(StoreError::Conflict(_)) => Err(ApiError::Conflict(format!("/{p} already exists"))),
        Err(StoreError::NotFound(_)) => {
            Err(ApiError::NotFound(format!("the parent of /{p} does not exist (make parents too)")))
        }
        Err(e) => Err(store_error(e, p)),
    }
}

/// A user's home exists from its first use: made when something is put into it.
pub(crate) async fn ensure_home(state: &AppState, who: &Identity, p: &TreePath) -> Result<(), ApiError> {
    let home = who.home();
    if who.user_id().is_none() || !p.starts_with(&home) || *p == home {
        return Ok(());
    }
    match state.blobs.make_dir(&home, true).await {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(store_error(e, &home)),
    }
}
