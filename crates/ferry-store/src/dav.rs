//! What WebDAV keeps besides bytes: dead properties of tree paths, locks (so they survive
//! a restart and are seen by every node sharing the database), and the uploads in progress
//! below a path (for IT Hit's upload-progress report). Paths are tree paths as text
//! (`~alice/docs/a.txt`, the root is `""`); "below" means the path itself and everything
//! under it.
//!
//! One implementation serves every backend: [`impl_dav_store!`] expands the same statements
//! for SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::{StoreError, UploadRecord};

/// Most dead properties one path may carry (a PROPPATCH past it is refused).
pub const MAX_DEAD_PROPS: i64 = 1_000;

/// Most bytes of dead properties one path may carry.
pub const MAX_DEAD_PROP_BYTES: i64 = 1 << 20;

/// A WebDAV dead property (RFC 4918 §4.3), stored as the XML element the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadProp {
    /// Namespace URI (`""` for none).
    pub namespace: String,
    /// Local name.
    pub name: String,
    /// The prefix the client used.
    pub prefix: Option<String>,
    /// The whole element, serialized.
    pub xml: Option<Vec<u8>>,
}

/// One change of a PROPPATCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropChange {
    /// Sets (or replaces) a property.
    Set(DeadProp),
    /// Removes a property (namespace, name); removing an absent one is no error.
    Remove(String, String),
}

/// A WebDAV lock as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLock {
    /// The lock token (`urn:uuid:…`).
    pub token: String,
    /// The locked tree path.
    pub path: String,
    /// The locked resource's URL path as the client named it (for `lockroot`).
    pub url: String,
    /// Who took it (a user name).
    pub principal: Option<String>,
    /// The client's `owner` element, serialized.
    pub owner_xml: Option<String>,
    /// When it lapses (Unix milliseconds), `None` for never.
    pub timeout_at_ms: Option<i64>,
    /// The timeout it was granted, in milliseconds.
    pub timeout_ms: Option<i64>,
    /// Shared (else exclusive).
    pub shared: bool,
    /// Depth infinity (else depth 0).
    pub deep: bool,
}

/// WebDAV's state in the metadata store.
#[async_trait]
pub trait DavStore: Send + Sync {
    /// The dead properties of one path.
    async fn dead_props(&self, path: &str) -> Result<Vec<DeadProp>, StoreError>;

    /// Whether a path has any dead property.
    async fn has_dead_props(&self, path: &str) -> Result<bool, StoreError>;

    /// The paths at or below `path` that carry dead properties (one query for a listing).
    async fn dead_prop_paths(&self, path: &str) -> Result<Vec<String>, StoreError>;

    /// Whether any lock is stored at all (lets a listing skip every lock lookup).
    async fn has_locks(&self) -> Result<bool, StoreError>;

    /// Sets and removes dead properties of one path, in the order given (a property set and
    /// then removed is gone), all or nothing. [`StoreError::Conflict`] when the path would
    /// carry more than [`MAX_DEAD_PROPS`] or [`MAX_DEAD_PROP_BYTES`].
    async fn patch_dead_props(&self, path: &str, changes: &[PropChange]) -> Result<(), StoreError>;

    /// Moves the dead properties of `from` and everything below it to `to` (replacing
    /// those of `to` and below).
    async fn move_dead_props(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Copies the dead properties of `from` and everything below it to `to` (replacing
    /// those of `to` and below).
    async fn copy_dead_props(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Forgets the dead properties of `path` and everything below it.
    async fn remove_dead_props(&self, path: &str) -> Result<(), StoreError>;

    /// Keeps the index of placed files ([`crate::TreeIndex`], which quotas count) true when
    /// `from` and everything below it moved to `to`.
    async fn tree_files_moved(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// ... when `from` and everything below it was copied to `to` (the copies are counted).
    async fn tree_files_copied(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// ... when `path` and everything below it was removed.
    async fn tree_files_removed(&self, path: &str) -> Result<(), StoreError>;

    /// Locks taken on exactly `path`.
    async fn locks_at(&self, path: &str) -> Result<Vec<StoredLock>, StoreError>;

    /// Locks taken on paths strictly below `path`.
    async fn locks_below(&self, path: &str) -> Result<Vec<StoredLock>, StoreError>;

    /// Stores a lock (replacing one with the same token: a refresh).
    async fn put_lock(&self, lock: &StoredLock) -> Result<(), StoreError>;

    /// Removes a lock; false if there was none with that token.
    async fn remove_lock(&self, token: &str) -> Result<bool, StoreError>;

    /// Unfinished uploads bound for `path` or a path below it, oldest first.
    async fn uploads_in_progress(&self, path: &str) -> Result<Vec<UploadRecord>, StoreError>;
}

/// `path` as the prefix of the paths strictly below it, with its length in characters (as
/// SQL's `substr` counts).
pub(crate) fn below(path: &str) -> (String, i32) {
    let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
    let len = prefix.chars().count() as i32;
    (prefix, len)
}

/// The character position after `path` in the paths below it (for `substr`).
pub(crate) fn after(path: &str) -> i32 {
    path.chars().count() as i32 + 1
}

pub(crate) const DEAD_PROPS: &str =
    "SELECT namespace, name, prefix, xml FROM dav_props WHERE path = $1 ORDER BY namespace, name";
pub(crate) const DEAD_PROP_PATHS: &str =
    "SELECT DISTINCT path FROM dav_props WHERE path = $1 OR substr(path, 1, $2) = $3";
pub(crate) const HAS_LOCKS: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM dav_locks LIMIT 1) AS one";
pub(crate) const HAS_DEAD_PROPS: &str = "SELECT COUNT(*) FROM dav_props WHERE path = $1";
pub(crate) const DEAD_PROP_BYTES: &str =
    "SELECT CAST(COALESCE(SUM(LENGTH(xml)), 0) AS BIGINT) FROM dav_props WHERE path = $1";
pub(crate) const SET_DEAD_PROP: &str = "INSERT INTO dav_props (path, namespace, name, prefix, xml) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (path, namespace, name) DO UPDATE SET prefix = excluded.prefix, xml = excluded.xml";
pub(crate) const REMOVE_DEAD_PROP: &str = "DELETE FROM dav_props WHERE path = $1 AND namespace = $2 AND name = $3";
pub(crate) const REMOVE_DEAD_PROPS_BELOW: &str = "DELETE FROM dav_props WHERE path = $1 OR substr(path, 1, $2) = $3";
pub(crate) const MOVE_DEAD_PROPS: &str =
    "UPDATE dav_props SET path = $1 || substr(path, $2) WHERE path = $3 OR substr(path, 1, $4) = $5";
pub(crate) const COPY_DEAD_PROPS: &str = "INSERT INTO dav_props (path, namespace, name, prefix, xml) \
     SELECT $1 || substr(path, $2), namespace, name, prefix, xml FROM dav_props WHERE path = $3 OR substr(path, 1, $4) = $5";
pub(crate) const REMOVE_TREE_FILES_BELOW: &str = "DELETE FROM tree_files WHERE path = $1 OR substr(path, 1, $2) = $3";
pub(crate) const MOVE_TREE_FILES: &str =
    "UPDATE tree_files SET path = $1 || substr(path, $2) WHERE path = $3 OR substr(path, 1, $4) = $5";
pub(crate) const COPY_TREE_FILES: &str = "INSERT INTO tree_files (path, size, mtime_ns, sha256) \
     SELECT $1 || substr(path, $2), size, mtime_ns, sha256 FROM tree_files WHERE path = $3 OR substr(path, 1, $4) = $5";
pub(crate) const LOCKS_AT: &str = "SELECT token, path, url, principal, owner_xml, timeout_at, timeout_ms, shared, deep FROM dav_locks WHERE path = $1";
pub(crate) const LOCKS_BELOW: &str = "SELECT token, path, url, principal, owner_xml, timeout_at, timeout_ms, shared, deep \
     FROM dav_locks WHERE substr(path, 1, $1) = $2 AND path <> $3";
pub(crate) const PUT_LOCK: &str = "INSERT INTO dav_locks (token, path, url, principal, owner_xml, timeout_at, timeout_ms, shared, deep) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (token) DO UPDATE SET \
     timeout_at = excluded.timeout_at, timeout_ms = excluded.timeout_ms";
pub(crate) const REMOVE_LOCK: &str = "DELETE FROM dav_locks WHERE token = $1";
pub(crate) const UPLOADS_IN_PROGRESS: &str = "SELECT * FROM uploads WHERE state = 'active' \
     AND (tree_path = $1 OR substr(tree_path, 1, $2) = $3) ORDER BY created_at";

/// Runs `$clear` (a delete with `path = $1 OR substr(path, 1, $2) = $3`) for `$path` and
/// everything below it.
macro_rules! clear_below {
    ($self:ident, $clear:expr, $path:expr) => {{
        let path: &str = $path;
        let (prefix, len) = $crate::dav::below(path);
        sqlx::query($clear).bind(path).bind(len).bind(&prefix).execute(&$self.pool).await?;
        Ok(())
    }};
}
pub(crate) use clear_below;

/// Clears what is at and below `to` (`$clear`), then moves or copies (`$apply`) the rows at
/// and below `from` there, in one transaction.
macro_rules! subtree {
    ($self:ident, $clear:expr, $apply:expr, $from:expr, $to:expr) => {{
        let (from, to): (&str, &str) = ($from, $to);
        let (to_prefix, to_len) = $crate::dav::below(to);
        let (from_prefix, from_len) = $crate::dav::below(from);
        let mut tx = $self.pool.begin().await?;
        sqlx::query($clear).bind(to).bind(to_len).bind(&to_prefix).execute(&mut *tx).await?;
        sqlx::query($apply)
            .bind(to)
            .bind($crate::dav::after(from))
            .bind(from)
            .bind(from_len)
            .bind(&from_prefix)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }};
}
pub(crate) use subtree;

/// Implements [`DavStore`] for a backend whose `self.pool` is an sqlx pool.
macro_rules! impl_dav_store {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl $crate::dav::DavStore for $backend {
            async fn dead_props(&self, path: &str) -> Result<Vec<$crate::dav::DeadProp>, $crate::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query($crate::dav::DEAD_PROPS).bind(path).fetch_all(&self.pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push($crate::dav::DeadProp {
                        namespace: r.try_get("namespace")?,
                        name: r.try_get("name")?,
                        prefix: r.try_get("prefix")?,
                        xml: r.try_get("xml")?,
                    });
                }
                Ok(out)
            }

            async fn dead_prop_paths(&self, path: &str) -> Result<Vec<String>, $crate::StoreError> {
                let (prefix, len) = $crate::dav::below(path);
                Ok(sqlx::query_scalar($crate::dav::DEAD_PROP_PATHS)
                    .bind(path)
                    .bind(len)
                    .bind(&prefix)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn has_locks(&self) -> Result<bool, $crate::StoreError> {
                let n: i64 = sqlx::query_scalar($crate::dav::HAS_LOCKS).fetch_one(&self.pool).await?;
                Ok(n > 0)
            }

            async fn has_dead_props(&self, path: &str) -> Result<bool, $crate::StoreError> {
                let n: i64 = sqlx::query_scalar($crate::dav::HAS_DEAD_PROPS).bind(path).fetch_one(&self.pool).await?;
                Ok(n > 0)
            }

            async fn patch_dead_props(
                &self,
                path: &str,
                changes: &[$crate::dav::PropChange],
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                for change in changes {
                    match change {
                        $crate::dav::PropChange::Remove(ns, name) => {
                            sqlx::query($crate::dav::REMOVE_DEAD_PROP)
                                .bind(path)
                                .bind(ns)
                                .bind(name)
                                .execute(&mut *tx)
                                .await?;
                        }
                        $crate::dav::PropChange::Set(p) => {
                            sqlx::query($crate::dav::SET_DEAD_PROP)
                                .bind(path)
                                .bind(&p.namespace)
                                .bind(&p.name)
                                .bind(&p.prefix)
                                .bind(&p.xml)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                let n: i64 = sqlx::query_scalar($crate::dav::HAS_DEAD_PROPS).bind(path).fetch_one(&mut *tx).await?;
                let bytes: i64 =
                    sqlx::query_scalar($crate::dav::DEAD_PROP_BYTES).bind(path).fetch_one(&mut *tx).await?;
                if n > $crate::dav::MAX_DEAD_PROPS || bytes > $crate::dav::MAX_DEAD_PROP_BYTES {
                    return Err($crate::StoreError::Conflict(format!(
                        "at most {} dead properties and {} bytes of them per resource",
                        $crate::dav::MAX_DEAD_PROPS,
                        $crate::dav::MAX_DEAD_PROP_BYTES
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn tree_files_moved(&self, from: &str, to: &str) -> Result<(), $crate::StoreError> {
                $crate::dav::subtree!(
                    self,
                    $crate::dav::REMOVE_TREE_FILES_BELOW,
                    $crate::dav::MOVE_TREE_FILES,
                    from,
                    to
                )
            }

            async fn tree_files_copied(&self, from: &str, to: &str) -> Result<(), $crate::StoreError> {
                $crate::dav::subtree!(
                    self,
                    $crate::dav::REMOVE_TREE_FILES_BELOW,
                    $crate::dav::COPY_TREE_FILES,
                    from,
                    to
                )
            }

            async fn tree_files_removed(&self, path: &str) -> Result<(), $crate::StoreError> {
                $crate::dav::clear_below!(self, $crate::dav::REMOVE_TREE_FILES_BELOW, path)
            }

            async fn move_dead_props(&self, from: &str, to: &str) -> Result<(), $crate::StoreError> {
                $crate::dav::subtree!(
                    self,
                    $crate::dav::REMOVE_DEAD_PROPS_BELOW,
                    $crate::dav::MOVE_DEAD_PROPS,
                    from,
                    to
                )
            }

            async fn copy_dead_props(&self, from: &str, to: &str) -> Result<(), $crate::StoreError> {
                $crate::dav::subtree!(
                    self,
                    $crate::dav::REMOVE_DEAD_PROPS_BELOW,
                    $crate::dav::COPY_DEAD_PROPS,
                    from,
                    to
                )
            }

            async fn remove_dead_props(&self, path: &str) -> Result<(), $crate::StoreError> {
                $crate::dav::clear_below!(self, $crate::dav::REMOVE_DEAD_PROPS_BELOW, path)
            }

            async fn locks_at(&self, path: &str) -> Result<Vec<$crate::dav::StoredLock>, $crate::StoreError> {
                let rows = sqlx::query($crate::dav::LOCKS_AT).bind(path).fetch_all(&self.pool).await?;
                rows.iter().map($crate::dav::lock_from_row).collect()
            }

            async fn locks_below(&self, path: &str) -> Result<Vec<$crate::dav::StoredLock>, $crate::StoreError> {
                let (prefix, len) = $crate::dav::below(path);
                let rows = sqlx::query($crate::dav::LOCKS_BELOW)
                    .bind(len)
                    .bind(&prefix)
                    .bind(path)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map($crate::dav::lock_from_row).collect()
            }

            async fn put_lock(&self, l: &$crate::dav::StoredLock) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::dav::PUT_LOCK)
                    .bind(&l.token)
                    .bind(&l.path)
                    .bind(&l.url)
                    .bind(&l.principal)
                    .bind(&l.owner_xml)
                    .bind(l.timeout_at_ms)
                    .bind(l.timeout_ms)
                    .bind(l.shared)
                    .bind(l.deep)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn remove_lock(&self, token: &str) -> Result<bool, $crate::StoreError> {
                Ok(sqlx::query($crate::dav::REMOVE_LOCK).bind(token).execute(&self.pool).await?.rows_affected() > 0)
            }

            async fn uploads_in_progress(&self, path: &str) -> Result<Vec<$crate::UploadRecord>, $crate::StoreError> {
                let (prefix, len) = $crate::dav::below(path);
                let rows = sqlx::query($crate::dav::UPLOADS_IN_PROGRESS)
                    .bind(path)
                    .bind(len)
                    .bind(&prefix)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map($crate::UploadRecord::from_row).collect::<Result<_, _>>()?)
            }
        }
    };
}
pub(crate) use impl_dav_store;

/// A [`StoredLock`] from a row of any backend.
pub(crate) fn lock_from_row<R>(r: &R) -> Result<StoredLock, StoreError>
where
    R: sqlx::Row,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    Ok(StoredLock {
        token: r.try_get("token")?,
        path: r.try_get("path")?,
        url: r.try_get("url")?,
        principal: r.try_get("principal")?,
        owner_xml: r.try_get("owner_xml")?,
        timeout_at_ms: r.try_get("timeout_at")?,
        timeout_ms: r.try_get("timeout_ms")?,
        shared: r.try_get("shared")?,
        deep: r.try_get("deep")?,
    })
}
