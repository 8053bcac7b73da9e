//! What an offset commit records besides the offset, in the same transaction: the state of
//! the upload's running SHA-256 (so any node, after any restart, goes on hashing without
//! reading the bytes back) and, for object storage, the upload's multipart ledger: the
//! multipart id, the parts the store acknowledged, and the bytes past the last part (too
//! few for a part yet, kept in the database until they fill one).
//!
//! The statements are written once, with `$n` parameters, which SQLite and PostgreSQL both
//! read.

/// One part of a multipart upload, acknowledged by the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    /// Its index, from 0 (S3's part number minus one); parts are contiguous.
    pub index: u32,
    /// The store's tag for it (S3's ETag), needed to complete the upload.
    pub etag: String,
    /// Upload offset of its first byte.
    pub base: u64,
    /// Its length.
    pub size: u64,
}

/// Bytes of an upload from `base` on, kept in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailChunk {
    /// Upload offset of its first byte.
    pub base: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What a blob backend records with an offset commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobProgress {
    /// The multipart upload the parts belong to (set once; a commit naming another one
    /// changes nothing).
    pub multipart_id: Option<String>,
    /// Parts acknowledged since the last commit.
    pub parts: Vec<PartRecord>,
    /// Bytes since the last commit that are in no part yet.
    pub tail: Option<TailChunk>,
    /// Kept tail chunks that end at or below this offset are dropped (parts hold them).
    pub drop_tail_below: u64,
}

/// Everything a commit records besides the offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The running SHA-256 over bytes `0..offset`, serialized.
    pub sha_state: Option<Vec<u8>>,
    /// The blob backend's ledger changes.
    pub blob: Option<BlobProgress>,
    /// The fencing token of the writer's lease: the commit changes nothing unless it is
    /// still the upload's current token.
    pub lease_token: Option<i64>,
}

/// An upload's multipart ledger as committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobLedger {
    /// The multipart upload, once one was started.
    pub multipart_id: Option<String>,
    /// Acknowledged parts, by index.
    pub parts: Vec<PartRecord>,
    /// Kept bytes past the parts, by offset (a chunk may begin below the last part's end).
    pub tail: Vec<TailChunk>,
}

pub(crate) const COMMIT_OFFSET: &str = "UPDATE uploads SET \"offset\" = $1, expires_at = $2, sha_state = $3 \
     WHERE id = $4 AND \"offset\" = $5 AND state = 'active' AND $1 >= \"offset\" AND lease_token = COALESCE($6, lease_token)";
pub(crate) const COMPLETE: &str = "UPDATE uploads SET state = 'complete', length = $1, \"offset\" = $1, sha256 = $2, \
     tree_path = $3, placed = 0, expires_at = $4, sha_state = NULL \
     WHERE id = $5 AND state = 'active' AND \"offset\" = $6 AND lease_token = COALESCE($7, lease_token)";
pub(crate) const ACQUIRE_LEASE: &str = "UPDATE uploads SET lease_node = $1, lease_until = $2, lease_token = lease_token + 1 \
     WHERE id = $3 AND (lease_node IS NULL OR lease_node = $1 OR lease_until < $4) RETURNING lease_token";
pub(crate) const RENEW_LEASE: &str = "UPDATE uploads SET lease_until = $1 WHERE id = $2 AND lease_token = $3";
pub(crate) const RELEASE_LEASE: &str =
    "UPDATE uploads SET lease_node = NULL, lease_until = NULL WHERE id = $1 AND lease_token = $2";
pub(crate) const SET_MULTIPART: &str =
    "UPDATE uploads SET multipart_id = $1 WHERE id = $2 AND (multipart_id IS NULL OR multipart_id = $1)";
pub(crate) const PUT_PART: &str = "INSERT INTO upload_parts (upload_id, part_index, etag, base, size) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (upload_id, part_index) \
     DO UPDATE SET etag = excluded.etag, base = excluded.base, size = excluded.size";
pub(crate) const PUT_TAIL: &str = "INSERT INTO upload_tail (upload_id, base, len, data) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (upload_id, base) DO UPDATE SET len = excluded.len, data = excluded.data";
pub(crate) const DROP_TAIL: &str = "DELETE FROM upload_tail WHERE upload_id = $1 AND base + len <= $2";
pub(crate) const MULTIPART_OF: &str = "SELECT multipart_id FROM uploads WHERE id = $1";
pub(crate) const PARTS_OF: &str =
    "SELECT part_index, etag, base, size FROM upload_parts WHERE upload_id = $1 ORDER BY part_index";
pub(crate) const TAIL_OF: &str = "SELECT base, data FROM upload_tail WHERE upload_id = $1 ORDER BY base";
pub(crate) const FORGET_PARTS: &str = "DELETE FROM upload_parts WHERE upload_id = $1";
pub(crate) const FORGET_TAIL: &str = "DELETE FROM upload_tail WHERE upload_id = $1";
pub(crate) const FORGET_MULTIPART: &str = "UPDATE uploads SET multipart_id = NULL WHERE id = $1";

/// Runs a [`BlobProgress`]'s statements for upload `$id` on `$conn` (any backend): false
/// when the multipart id conflicts with the recorded one.
macro_rules! record_blob_progress {
    ($conn:expr, $id:expr, $blob:expr) => {{
        let (id, blob): (&str, &$crate::BlobProgress) = ($id, $blob);
        let mut ok = true;
        if let Some(mp) = &blob.multipart_id {
            ok = sqlx::query($crate::ledger::SET_MULTIPART)
                .bind(mp)
                .bind(id)
                .execute(&mut *$conn)
                .await?
                .rows_affected()
                == 1;
        }
        if ok {
            for p in &blob.parts {
                sqlx::query($crate::ledger::PUT_PART)
                    .bind(id)
                    .bind(i64::from(p.index))
                    .bind(&p.etag)
                    .bind(p.base as i64)
                    .bind(p.size as i64)
                    .execute(&mut *$conn)
                    .await?;
            }
            if let Some(t) = &blob.tail {
                sqlx::query($crate::ledger::PUT_TAIL)
                    .bind(id)
                    .bind(t.base as i64)
                    .bind(t.data.len() as i64)
                    .bind(&t.data)
                    .execute(&mut *$conn)
                    .await?;
            }
            sqlx::query($crate::ledger::DROP_TAIL)
                .bind(id)
                .bind(blob.drop_tail_below as i64)
                .execute(&mut *$conn)
                .await?;
        }
        ok
    }};
}
pub(crate) use record_blob_progress;

/// Reads upload `$id`'s [`BlobLedger`] through `$exec` (a pool of any backend).
macro_rules! read_blob_ledger {
    ($exec:expr, $id:expr) => {{
        use sqlx::Row as _;
        let id: &str = $id;
        let multipart_id: Option<String> =
            sqlx::query_scalar($crate::ledger::MULTIPART_OF).bind(id).fetch_optional($exec).await?.flatten();
        let mut parts = Vec::new();
        for r in sqlx::query($crate::ledger::PARTS_OF).bind(id).fetch_all($exec).await? {
            parts.push($crate::PartRecord {
                index: r.try_get::<i64, _>("part_index")? as u32,
                etag: r.try_get("etag")?,
                base: r.try_get::<i64, _>("base")? as u64,
                size: r.try_get::<i64, _>("size")? as u64,
            });
        }
        let mut tail = Vec::new();
        for r in sqlx::query($crate::ledger::TAIL_OF).bind(id).fetch_all($exec).await? {
            tail.push($crate::TailChunk { base: r.try_get::<i64, _>("base")? as u64, data: r.try_get("data")? });
        }
        $crate::BlobLedger { multipart_id, parts, tail }
    }};
}
pub(crate) use read_blob_ledger;

/// Forgets upload `$id`'s ledger through `$exec` (a pool of any backend).
macro_rules! forget_blob_ledger {
    ($exec:expr, $id:expr) => {{
        let id: &str = $id;
        sqlx::query($crate::ledger::FORGET_PARTS).bind(id).execute($exec).await?;
        sqlx::query($crate::ledger::FORGET_TAIL).bind(id).execute($exec).await?;
        sqlx::query($crate::ledger::FORGET_MULTIPART).bind(id).execute($exec).await?;
    }};
}
pub(crate) use forget_blob_ledger;
