//! Upload records and known file digests in SQLite.

use crate::{Metadata, TreeIndex, UploadStore};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Type};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ferry_core::UploadId;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreError;
use crate::group_commit::Write;
use crate::ledger::{ACQUIRE_LEASE, RELEASE_LEASE, RENEW_LEASE, forget_blob_ledger, read_blob_ledger};
use crate::{BlobLedger, Progress};
/// The schema, version by version: migration `i` takes a database from version `i` to
/// `i + 1` (SQLite's `user_version`, set by its second statement), in one transaction each.
const MIGRATIONS: &[(&str, &str)] = &[
    (include_str!("../migrations/sqlite/0001_initial.sql"), "PRAGMA user_version = 1"),
    (include_str!("../migrations/sqlite/0002_ledger_and_leases.sql"), "PRAGMA user_version = 2"),
    (include_str!("../migrations/sqlite/0003_webdav.sql"), "PRAGMA user_version = 3"),
    (include_str!("../migrations/sqlite/0004_relay_kinds.sql"), "PRAGMA user_version = 4"),
];

/// Columns added to `uploads` before the schema was versioned: a database from then is at
/// version 0 with its tables but without these.
const UNVERSIONED_COLUMNS: &[(&str, &str)] = &[
    ("host", "ALTER TABLE uploads ADD COLUMN host TEXT"),
    ("host_base", "ALTER TABLE uploads ADD COLUMN host_base INTEGER"),
    ("owner", "ALTER TABLE uploads ADD COLUMN owner INTEGER"),
    ("relay_to", "ALTER TABLE uploads ADD COLUMN relay_to TEXT"),
];

/// Brings the database to the newest schema version.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *conn).await?;
    if version < 0 || version as usize > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "the database has schema version {version}, newer than this ferry knows ({}); use a newer ferry",
            MIGRATIONS.len()
        )));
    }
    for (i, (sql, set_version)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        if i == 0 {
            let have: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info('uploads')").fetch_all(&mut *tx).await?;
            for (name, add) in UNVERSIONED_COLUMNS {
                if !have.iter().any(|h| h == name) {
                    sqlx::raw_sql(*add).execute(&mut *tx).await?;
                }
            }
        }
        sqlx::raw_sql(*set_version).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}

crate::dav::impl_dav_store!(SqliteMeta);

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// Accepting bytes.
    Active,
    /// All bytes arrived (and, for a named upload, the file is in the tree).
    Complete,
    /// Expired before completion; its bytes are gone (HEAD answers 410).
    Expired,
    /// Deleted by the client (HEAD answers 404).
    Terminated,
    /// Completed but failed verification or placement; its bytes are gone (410).
    Failed,
}

impl UploadState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Complete => "complete",
            Self::Expired => "expired",
            Self::Terminated => "terminated",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "complete" => Self::Complete,
            "expired" => Self::Expired,
            "terminated" => Self::Terminated,
            "failed" => Self::Failed,
            _ => Self::Active,
        }
    }
}

/// The concatenation role of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcatKind {
    /// An ordinary upload.
    None,
    /// A partial upload, to be used by a final one.
    Partial,
    /// A final upload made of these partials, in order.
    Final(Vec<UploadId>),
}

impl ConcatKind {
    pub(crate) fn to_db(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Partial => Some("partial".into()),
            Self::Final(ids) => {
                Some(format!("final;{}", ids.iter().map(UploadId::as_str).collect::<Vec<_>>().join(" ")))
            }
        }
    }

    pub(crate) fn from_db(s: Option<&str>) -> Self {
        match s {
            None => Self::None,
            Some("partial") => Self::Partial,
            Some(f) => {
                Self::Final(f.strip_prefix("final;").unwrap_or("").split(' ').filter_map(UploadId::parse).collect())
            }
        }
    }
}

/// One tus upload as stored.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    /// Its id.
    pub id: UploadId,
    /// Total length, `None` while deferred.
    pub length: Option<u64>,
    /// Bytes durably stored and acknowledged.
    pub offset: u64,
    /// `Upload-Metadata` as received.
    pub metadata: String,
    /// Concatenation role.
    pub concat: ConcatKind,
    /// Life-cycle state.
    pub state: UploadState,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// When an unfinished upload expires (Unix seconds).
    pub expires_at: Option<i64>,
    /// SHA-256 of the whole upload once complete.
    pub sha256: Option<[u8; 32]>,
    /// Where the finished file goes (decided at creation) or went in the tree.
    pub tree_path: Option<String>,
    /// Why it failed, for a failed upload.
    pub reason: Option<String>,
    /// For a partial upload adopted by a final one: the final upload whose staging file
    /// holds this part's bytes, and where they start in it.
    pub host: Option<(UploadId, u64)>,
    /// The user who created it (`None` without accounts).
    pub owner: Option<i64>,
    /// For a file sent through the relay: the recipients' user ids, comma-separated.
    pub relay_to: Option<String>,
    /// The running SHA-256 over bytes `0..offset`, serialized (see [`crate::Progress`]).
    pub sha_state: Option<Vec<u8>>,
}

impl UploadRecord {
    /// Decodes a row of `uploads` (any backend).
    pub(crate) fn from_row<R>(row: &R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
        &'static str: ColumnIndex<R>,
    {
        let id: String = row.try_get("id")?;
        let sha: Option<Vec<u8>> = row.try_get("sha256")?;
        Ok(Self {
            id: UploadId::parse(&id).ok_or_else(|| sqlx::Error::Decode(format!("bad upload id {id:?}").into()))?,
            length: row.try_get::<Option<i64>, _>("length")?.map(|v| v as u64),
            offset: row.try_get::<i64, _>("offset")? as u64,
            metadata: row.try_get("metadata")?,
            concat: ConcatKind::from_db(row.try_get::<Option<String>, _>("concat")?.as_deref()),
            state: UploadState::parse(&row.try_get::<String, _>("state")?),
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            sha256: sha.and_then(|v| v.try_into().ok()),
            tree_path: row.try_get("tree_path")?,
            reason: row.try_get("reason")?,
            host: match (row.try_get::<Option<String>, _>("host")?, row.try_get::<Option<i64>, _>("host_base")?) {
                (Some(h), Some(base)) => UploadId::parse(&h).map(|h| (h, base as u64)),
                _ => None,
            },
            owner: row.try_get("owner")?,
            relay_to: row.try_get("relay_to")?,
            sha_state: row.try_get("sha_state")?,
        })
    }
}

/// What a new upload starts with.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Its id.
    pub id: UploadId,
    /// Total length, `None` when deferred.
    pub length: Option<u64>,
    /// `Upload-Metadata` as received.
    pub metadata: String,
    /// Concatenation role.
    pub concat: ConcatKind,
    /// Expiry (Unix seconds).
    pub expires_at: Option<i64>,
    /// The user who created it (`None` without accounts).
    pub owner: Option<i64>,
    /// Where the finished file goes in the tree (decided and authorised at creation).
    pub tree_path: Option<String>,
    /// For a file sent through the relay: the recipients' user ids, comma-separated.
    pub relay_to: Option<String>,
}

/// A file ferry placed in the tree, with the digest computed while it streamed. The digest
/// is trusted only while the file's size and mtime still match.
#[derive(Debug, Clone)]
pub struct TreeFileRecord {
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
}

/// The metadata database (SQLite in WAL mode with `synchronous=FULL`, so a committed
/// offset survives power loss as well as `kill -9`).
#[derive(Debug, Clone)]
pub struct SqliteMeta {
    pool: SqlitePool,
    /// The data path's writes, grouped into shared transactions.
    writes: crate::group_commit::Writes,
}

impl SqliteMeta {
    /// Opens (creating if needed) the database file and its schema.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        migrate(&pool).await?;
        let writes = crate::group_commit::Writes::start(pool.clone());
        Ok(Self { pool, writes })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl UploadStore for SqliteMeta {
    async fn create_upload(&self, new: &NewUpload, now: i64) -> Result<(), StoreError> {
        self.writes.run(Write::Create { new: new.clone(), now }).await.map(drop)
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM uploads WHERE id = ?").bind(id.as_str()).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(UploadRecord::from_row).transpose()?)
    }

    async fn commit_offset(
        &self,
        id: &UploadId,
        expected: u64,
        new: u64,
        expires_at: Option<i64>,
        progress: &Progress,
    ) -> Result<bool, StoreError> {
        let progress = Box::new(progress.clone());
        let write = Write::CommitOffset { id: id.to_string(), expected, new, expires_at, progress };
        Ok(self.writes.run(write).await? == 1)
    }

    async fn set_length(&self, id: &UploadId, length: u64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE uploads SET length = ? WHERE id = ? AND length IS NULL")
            .bind(length as i64)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete(
        &self,
        id: &UploadId,
        expected: u64,
        length: u64,
        sha256: &[u8; 32],
        tree_path: Option<&str>,
        expires_at: Option<i64>,
        progress: &Progress,
    ) -> Result<bool, StoreError> {
        let (tree_path, progress) = (tree_path.map(str::to_owned), Box::new(progress.clone()));
        let write =
            Write::Complete { id: id.to_string(), expected, length, sha256: *sha256, tree_path, expires_at, progress };
        Ok(self.writes.run(write).await? == 1)
    }

    async fn blob_ledger(&self, id: &UploadId) -> Result<BlobLedger, StoreError> {
        Ok(read_blob_ledger!(&self.pool, id.as_str()))
    }

    async fn forget_ledger(&self, id: &UploadId) -> Result<(), StoreError> {
        forget_blob_ledger!(&self.pool, id.as_str());
        Ok(())
    }

    async fn acquire_lease(&self, id: &UploadId, node: &str, now: i64, until: i64) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(ACQUIRE_LEASE)
            .bind(node)
            .bind(until)
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn renew_lease(&self, id: &UploadId, token: i64, until: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(RENEW_LEASE).bind(until).bind(id.as_str()).bind(token).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, id: &UploadId, token: i64) -> Result<(), StoreError> {
        sqlx::query(RELEASE_LEASE).bind(id.as_str()).bind(token).execute(&self.pool).await?;
        Ok(())
    }

    async fn mark_placed(&self, id: &UploadId) -> Result<(), StoreError> {
        self.writes.run(Write::MarkPlaced { id: id.to_string() }).await.map(drop)
    }

    async fn unplaced(&self) -> Result<Vec<UploadRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM uploads WHERE state = 'complete' AND placed = 0 AND tree_path IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(UploadRecord::from_row).collect::<Result<_, _>>()?)
    }

    async fn active_finals(&self) -> Result<Vec<UploadRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM uploads WHERE state = 'active' AND concat LIKE 'final;%'")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(UploadRecord::from_row).collect::<Result<_, _>>()?)
    }

    async fn finish(&self, id: &UploadId, state: UploadState, reason: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE uploads SET state = ?, reason = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(reason)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn expired(&self, now: i64, limit: i64) -> Result<Vec<UploadId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM uploads WHERE expires_at IS NOT NULL AND expires_at < ? \
             AND (state = 'active' OR (state = 'complete' AND concat = 'partial')) LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                UploadId::parse(&id).ok_or_else(|| sqlx::Error::Decode(format!("bad upload id {id:?}").into()))
            })
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn finals_waiting_on(&self, partial: &UploadId) -> Result<Vec<UploadRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM uploads WHERE state = 'active' AND concat LIKE ?")
            .bind(format!("final;%{}%", partial.as_str()))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(UploadRecord::from_row).collect::<Result<_, _>>()?)
    }

    async fn final_using(&self, partial: &UploadId) -> Result<Option<UploadId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM uploads WHERE state IN ('active', 'complete') AND concat LIKE ? LIMIT 1",
        )
        .bind(format!("final;%{}%", partial.as_str()))
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.and_then(|i| UploadId::parse(&i)))
    }

    async fn adopt(&self, host: &UploadId, parts: &[(UploadId, u64)]) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for (id, base) in parts {
            let done = sqlx::query(
                "UPDATE uploads SET host = ?, host_base = ? WHERE id = ? AND state = 'active' AND \"offset\" = 0 \
                 AND concat = 'partial' AND host IS NULL AND length IS NOT NULL",
            )
            .bind(host.as_str())
            .bind(*base as i64)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn hosts_live_parts(&self, host: &UploadId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM uploads WHERE host = ? AND state IN ('active', 'complete') LIMIT 1")
            .bind(host.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[async_trait]
impl TreeIndex for SqliteMeta {
    async fn record_tree_file(&self, path: &str, rec: &TreeFileRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tree_files (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?) \
             ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256",
        )
        .bind(path)
        .bind(rec.size as i64)
        .bind(rec.mtime_ns)
        .bind(&rec.sha256[..])
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn tree_file_digest(&self, path: &str, size: u64, mtime_ns: i64) -> Result<Option<[u8; 32]>, StoreError> {
        let row = sqlx::query("SELECT sha256 FROM tree_files WHERE path = ? AND size = ? AND mtime_ns = ?")
            .bind(path)
            .bind(size as i64)
            .bind(mtime_ns)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get::<Vec<u8>, _>("sha256").ok()).and_then(|v| v.try_into().ok()))
    }

    async fn tree_paths_with_digest(&self, sha256: &[u8; 32], size: u64) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT path FROM tree_files WHERE sha256 = ? AND size = ? ORDER BY mtime_ns DESC LIMIT 16")
                .bind(&sha256[..])
                .bind(size as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().filter_map(|r| r.try_get::<String, _>("path").ok()).collect())
    }
}

#[async_trait]
impl Metadata for SqliteMeta {
    async fn ready(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TreeIndex, UploadStore};

    #[tokio::test]
    async fn an_unversioned_database_is_migrated_and_a_newer_one_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("old.db");
        // A database from before versioning: `uploads` without the later columns, one row.
        let opts =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display())).unwrap().create_if_missing(true);
        let pool = SqlitePoolOptions::new().connect_with(opts.clone()).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE uploads (id TEXT PRIMARY KEY, length INTEGER, \"offset\" INTEGER NOT NULL DEFAULT 0, \
             metadata TEXT NOT NULL DEFAULT '', concat TEXT, state TEXT NOT NULL, created_at INTEGER NOT NULL, \
             expires_at INTEGER, sha256 BLOB, tree_path TEXT, placed INTEGER NOT NULL DEFAULT 0, reason TEXT); \
             INSERT INTO uploads (id, length, state, created_at) VALUES ('0123456789abcdef0123456789abcdef', 5, 'active', 1);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let db = SqliteMeta::open(&path).await.unwrap();
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let rec = db.get(&id).await.unwrap().unwrap();
        assert_eq!((rec.length, rec.owner, rec.host), (Some(5), None, None), "the row is kept, new columns empty");
        let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&db.pool).await.unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        db.close().await;
        SqliteMeta::open(&path).await.unwrap().close().await; // opening again changes nothing

        let pool = SqlitePoolOptions::new().connect_with(opts).await.unwrap();
        sqlx::raw_sql("PRAGMA user_version = 99").execute(&pool).await.unwrap();
        pool.close().await;
        let err = SqliteMeta::open(&path).await.unwrap_err().to_string();
        assert!(err.contains("schema version 99") && err.contains("newer ferry"), "{err}");
    }

    #[tokio::test]
    async fn offsets_are_compare_and_set_and_never_decrease() {
        let tmp = tempfile::tempdir().unwrap();
        let db = SqliteMeta::open(&tmp.path().join("t.db")).await.unwrap();
        let new = new_upload(10);
        let id = new.id.clone();
        db.create_upload(&new, 1).await.unwrap();
        assert!(db.commit_offset(&id, 0, 4, None, &Default::default()).await.unwrap());
        assert!(!db.commit_offset(&id, 0, 8, None, &Default::default()).await.unwrap(), "stale expected offset");
        assert!(!db.commit_offset(&id, 4, 3, None, &Default::default()).await.unwrap(), "offsets never decrease");
        assert_eq!(db.get(&id).await.unwrap().unwrap().offset, 4);
        db.finish(&id, UploadState::Terminated, None).await.unwrap();
        assert!(
            !db.commit_offset(&id, 4, 6, None, &Default::default()).await.unwrap(),
            "terminated uploads take no bytes"
        );
    }

    fn new_upload(length: u64) -> NewUpload {
        NewUpload {
            id: UploadId::random(),
            length: Some(length),
            metadata: String::new(),
            concat: ConcatKind::None,
            expires_at: None,
            owner: None,
            tree_path: None,
            relay_to: None,
        }
    }

    /// Writes queued together share a transaction, but each keeps its own answer: racing
    /// commits on one upload (all expecting offset 0) let exactly one through, while every
    /// other upload's commit in the same batches succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_writes_keep_each_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let db = SqliteMeta::open(&tmp.path().join("t.db")).await.unwrap();
        let contested = new_upload(100);
        let others: Vec<NewUpload> = (0..300).map(|_| new_upload(100)).collect();
        let mut creates = tokio::task::JoinSet::new();
        for new in others.iter().chain([&contested]) {
            let (db, new) = (db.clone(), new.clone());
            creates.spawn(async move { db.create_upload(&new, 1).await });
        }
        assert!(creates.join_all().await.iter().all(Result::is_ok));

        let mut racers = tokio::task::JoinSet::new();
        for n in 1..=50u64 {
            let (db, id) = (db.clone(), contested.id.clone());
            racers.spawn(async move { (n, db.commit_offset(&id, 0, n, None, &Default::default()).await.unwrap()) });
        }
        for (i, new) in others.iter().enumerate() {
            let (db, id) = (db.clone(), new.id.clone());
            racers.spawn(async move {
                (1000 + i as u64, db.commit_offset(&id, 0, 7, None, &Default::default()).await.unwrap())
            });
        }
        let answers = racers.join_all().await;
        let winners: Vec<u64> = answers.iter().filter(|(n, ok)| *n <= 50 && *ok).map(|(n, _)| *n).collect();
        assert_eq!(winners.len(), 1, "exactly one racing commit wins: {winners:?}");
        assert!(answers.iter().filter(|(n, _)| *n >= 1000).all(|(_, ok)| *ok), "uncontested commits all succeed");
        assert_eq!(db.get(&contested.id).await.unwrap().unwrap().offset, winners[0]);
        for new in &others {
            assert_eq!(db.get(&new.id).await.unwrap().unwrap().offset, 7);
        }
    }

    #[tokio::test]
    async fn concat_and_tree_records_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let db = SqliteMeta::open(&tmp.path().join("t.db")).await.unwrap();
        let (a, f) = (UploadId::random(), UploadId::random());
        let concat = ConcatKind::Final(vec![a.clone(), a.clone()]);
        db.create_upload(
            &NewUpload {
                id: f.clone(),
                length: None,
                metadata: "k dg==".into(),
                concat: concat.clone(),
                expires_at: Some(5),
                owner: Some(7),
                tree_path: None,
                relay_to: None,
            },
            1,
        )
        .await
        .unwrap();
        assert_eq!(db.get(&f).await.unwrap().unwrap().concat, concat);
        assert_eq!(db.get(&f).await.unwrap().unwrap().owner, Some(7));
        assert_eq!(db.finals_waiting_on(&a).await.unwrap().len(), 1);
        assert_eq!(db.expired(6, 10).await.unwrap(), vec![f.clone()]);
        let rec = TreeFileRecord { size: 3, mtime_ns: 7, sha256: [1; 32] };
        db.record_tree_file("x/y", &rec).await.unwrap();
        assert_eq!(db.tree_file_digest("x/y", 3, 7).await.unwrap(), Some([1; 32]));
        assert_eq!(db.tree_file_digest("x/y", 3, 8).await.unwrap(), None, "changed mtime voids the digest");
    }
}
