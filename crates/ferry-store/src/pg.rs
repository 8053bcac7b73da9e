//! The PostgreSQL metadata backend (`--database postgres://…`), for several `ferry serve`
//! nodes sharing one database. Same operations and compare-and-set rules as
//! [`crate::SqliteMeta`]; the schema is versioned in `ferry_schema` and migrated at open
//! under an advisory lock, so nodes starting together migrate once.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::UploadId;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::ledger;
use crate::relay::{Continuation, Delivery, DeliveryState, RelayItem, item_columns, item_from_row};
use crate::{
    AccountStore, BlobLedger, Grant, Metadata, NewUpload, Progress, RelayStore, StoreError, TreeFileRecord, TreeIndex,
    UploadRecord, UploadState, UploadStore, Usage, User, unix_now,
};

/// The schema, version by version (`migrations/pg/NNNN_*.sql`).
const MIGRATIONS: &[(&str, i64)] = &[
    (include_str!("../migrations/pg/0001_initial.sql"), 1),
    (include_str!("../migrations/pg/0002_ledger_and_leases.sql"), 2),
    (include_str!("../migrations/pg/0003_webdav.sql"), 3),
    (include_str!("../migrations/pg/0004_relay_kinds.sql"), 4),
];

/// Metadata in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgMeta {
    pool: PgPool,
}

impl PgMeta {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings the
    /// schema to the newest version.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }
}

crate::dav::impl_dav_store!(PgMeta);

impl PgMeta {
    /// Runs a compare-and-set `update` and, when it took, the blob ledger changes that go
    /// with it, in one transaction.
    async fn with_ledger(
        &self,
        id: &UploadId,
        update: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        progress: &Progress,
    ) -> Result<bool, StoreError> {
        let Some(blob) = &progress.blob else {
            return Ok(update.execute(&self.pool).await?.rows_affected() == 1);
        };
        let mut tx = self.pool.begin().await?;
        let conn = &mut *tx;
        if update.execute(&mut *conn).await?.rows_affected() != 1
            || !ledger::record_blob_progress!(conn, id.as_str(), blob)
        {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// Brings the database to the newest schema version, in one transaction per version, under
/// a transaction-scoped advisory lock (another node migrating waits, then finds it done).
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7231400614)").execute(&mut *tx).await?;
    let versioned: bool =
        sqlx::query_scalar("SELECT to_regclass('ferry_schema') IS NOT NULL").fetch_one(&mut *tx).await?;
    if !versioned {
        sqlx::raw_sql("CREATE TABLE ferry_schema (version BIGINT NOT NULL)").execute(&mut *tx).await?;
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM ferry_schema").fetch_one(&mut *tx).await?;
    let version = version.unwrap_or(0);
    if version > MIGRATIONS.len() as i64 {
        return Err(StoreError::Database(format!(
            "the database has schema version {version}, newer than this ferry knows ({}); use a newer ferry",
            MIGRATIONS.len()
        )));
    }
    for (sql, to) in MIGRATIONS.iter().skip(version as usize) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO ferry_schema (version) VALUES ($1)").bind(to).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The uploads that hold a user's bytes in staging (see `accounts.rs`); the user is `$1`.
macro_rules! held {
    () => {
        "u.owner = $1 AND (u.state = 'active' \
     OR (u.state = 'complete' AND u.placed = 0 AND u.tree_path IS NOT NULL AND COALESCE(u.concat, '') <> 'partial') \
     OR (u.state = 'complete' AND u.concat = 'partial' \
     AND NOT EXISTS (SELECT 1 FROM uploads f WHERE f.owner = u.owner \
     AND f.state = 'complete' AND f.concat LIKE 'final;%' || u.id || '%')))"
    };
}

#[async_trait]
impl UploadStore for PgMeta {
    async fn create_upload(&self, new: &NewUpload, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO uploads (id, length, \"offset\", metadata, concat, state, created_at, expires_at, owner, tree_path, relay_to) \
             VALUES ($1, $2, 0, $3, $4, 'active', $5, $6, $7, $8, $9)",
        )
        .bind(new.id.as_str())
        .bind(new.length.map(|v| v as i64))
        .bind(&new.metadata)
        .bind(new.concat.to_db())
        .bind(now)
        .bind(new.expires_at)
        .bind(new.owner)
        .bind(new.tree_path.as_deref())
        .bind(new.relay_to.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM uploads WHERE id = $1").bind(id.as_str()).fetch_optional(&self.pool).await?;
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
        let update = sqlx::query(ledger::COMMIT_OFFSET)
            .bind(new as i64)
            .bind(expires_at)
            .bind(progress.sha_state.as_deref())
            .bind(id.as_str())
            .bind(expected as i64)
            .bind(progress.lease_token);
        self.with_ledger(id, update, progress).await
    }

    async fn set_length(&self, id: &UploadId, length: u64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE uploads SET length = $1 WHERE id = $2 AND length IS NULL")
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
        let update = sqlx::query(ledger::COMPLETE)
            .bind(length as i64)
            .bind(&sha256[..])
            .bind(tree_path)
            .bind(expires_at)
            .bind(id.as_str())
            .bind(expected as i64)
            .bind(progress.lease_token);
        self.with_ledger(id, update, progress).await
    }

    async fn blob_ledger(&self, id: &UploadId) -> Result<BlobLedger, StoreError> {
        Ok(ledger::read_blob_ledger!(&self.pool, id.as_str()))
    }

    async fn forget_ledger(&self, id: &UploadId) -> Result<(), StoreError> {
        ledger::forget_blob_ledger!(&self.pool, id.as_str());
        Ok(())
    }

    async fn acquire_lease(&self, id: &UploadId, node: &str, now: i64, until: i64) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(ledger::ACQUIRE_LEASE)
            .bind(node)
            .bind(until)
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn renew_lease(&self, id: &UploadId, token: i64, until: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query(ledger::RENEW_LEASE).bind(until).bind(id.as_str()).bind(token).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, id: &UploadId, token: i64) -> Result<(), StoreError> {
        sqlx::query(ledger::RELEASE_LEASE).bind(id.as_str()).bind(token).execute(&self.pool).await?;
        Ok(())
    }

    async fn mark_placed(&self, id: &UploadId) -> Result<(), StoreError> {
        sqlx::query("UPDATE uploads SET placed = 1 WHERE id = $1").bind(id.as_str()).execute(&self.pool).await?;
        Ok(())
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
        sqlx::query("UPDATE uploads SET state = $1, reason = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(reason)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn expired(&self, now: i64, limit: i64) -> Result<Vec<UploadId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM uploads WHERE expires_at IS NOT NULL AND expires_at < $1 \
             AND (state = 'active' OR (state = 'complete' AND concat = 'partial')) LIMIT $2",
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
        let rows = sqlx::query("SELECT * FROM uploads WHERE state = 'active' AND concat LIKE $1")
            .bind(format!("final;%{}%", partial.as_str()))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(UploadRecord::from_row).collect::<Result<_, _>>()?)
    }

    async fn final_using(&self, partial: &UploadId) -> Result<Option<UploadId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM uploads WHERE state IN ('active', 'complete') AND concat LIKE $1 LIMIT 1",
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
                "UPDATE uploads SET host = $1, host_base = $2 WHERE id = $3 AND state = 'active' AND \"offset\" = 0 \
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
        let row = sqlx::query("SELECT 1 FROM uploads WHERE host = $1 AND state IN ('active', 'complete') LIMIT 1")
            .bind(host.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[async_trait]
impl TreeIndex for PgMeta {
    async fn record_tree_file(&self, path: &str, rec: &TreeFileRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tree_files (path, size, mtime_ns, sha256) VALUES ($1, $2, $3, $4) \
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
        let row = sqlx::query("SELECT sha256 FROM tree_files WHERE path = $1 AND size = $2 AND mtime_ns = $3")
            .bind(path)
            .bind(size as i64)
            .bind(mtime_ns)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get::<Vec<u8>, _>("sha256").ok()).and_then(|v| v.try_into().ok()))
    }

    async fn tree_paths_with_digest(&self, sha256: &[u8; 32], size: u64) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT path FROM tree_files WHERE sha256 = $1 AND size = $2 ORDER BY mtime_ns DESC LIMIT 16")
                .bind(&sha256[..])
                .bind(size as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().filter_map(|r| r.try_get::<String, _>("path").ok()).collect())
    }
}

#[async_trait]
impl Metadata for PgMeta {
    async fn ready(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn shared(&self) -> bool {
        true
    }

    async fn publish(&self, topic: &str, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(topic).bind(payload).execute(&self.pool).await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        topics: &[&str],
    ) -> Result<Option<tokio::sync::mpsc::Receiver<(String, String)>>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen_all(topics.iter().copied()).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                // recv() reconnects by itself after a lost connection (messages sent
                // meanwhile are lost: a release request is sent again, an event is missed).
                match listener.recv().await {
                    Ok(n) => {
                        if tx.send((n.channel().to_owned(), n.payload().to_owned())).await.is_err() {
                            return;
                        }
                    }
                    Err(_) if pool.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "PostgreSQL notifications interrupted; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}

#[async_trait]
impl AccountStore for PgMeta {
    async fn add_user(&self, name: &str, pw_hash: &str, admin: bool, quota: Option<u64>) -> Result<bool, StoreError> {
        // Ids are never reused: a new user must not inherit a removed one's uploads or items.
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "SELECT GREATEST(COALESCE((SELECT next FROM id_counters WHERE name = 'users'), 1), \
             COALESCE((SELECT MAX(id) FROM users), 0) + 1)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let r = sqlx::query(
            "INSERT INTO users (id, name, pw_hash, admin, quota, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT(name) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(pw_hash)
        .bind(admin as i64)
        .bind(quota.map(|q| q as i64))
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO id_counters (name, next) VALUES ('users', $1) ON CONFLICT(name) DO UPDATE SET next = excluded.next")
            .bind(id + 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT id, name, admin, quota FROM users ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(User::from_row).collect::<Result<_, _>>()?)
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query("SELECT id, name, admin, quota, pw_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some((User::from_row(&r)?, r.try_get("pw_hash")?)),
            None => None,
        })
    }

    async fn set_password(&self, name: &str, pw_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("UPDATE users SET pw_hash = $1 WHERE name = $2")
            .bind(pw_hash)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE name = $1)")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for q in [
            "DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE name = $1)",
            "DELETE FROM grants WHERE user_id = (SELECT id FROM users WHERE name = $1)",
            // What the user owned ends: unfinished uploads expire at the next sweep (their
            // bytes go), items they sent expire, deliveries to them are declined.
            "UPDATE uploads SET expires_at = 0 WHERE state = 'active' AND owner = (SELECT id FROM users WHERE name = $1)",
            "UPDATE relay_items SET expires_at = 0 WHERE sender_id = (SELECT id FROM users WHERE name = $1)",
            "UPDATE relay_deliveries SET state = 'declined' WHERE state IN ('waiting', 'downloading') \
             AND recipient_id = (SELECT id FROM users WHERE name = $1)",
        ] {
            sqlx::query(q).bind(name).execute(&mut *tx).await?;
        }
        let r = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn has_users(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM users LIMIT 1").fetch_optional(&self.pool).await?.is_some())
    }

    async fn add_token(&self, token_sha: &[u8; 32], user_id: i64, label: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tokens (sha256, user_id, label, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&token_sha[..])
            .bind(user_id)
            .bind(label)
            .bind(unix_now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn user_by_token(&self, token_sha: &[u8; 32]) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.admin, u.quota FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.sha256 = $1",
        )
        .bind(&token_sha[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(User::from_row).transpose()?)
    }

    async fn revoke_token(&self, token_sha: &[u8; 32]) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM tokens WHERE sha256 = $1").bind(&token_sha[..]).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn grant(&self, user_id: i64, path: &str, write: bool) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO grants (user_id, path, write) VALUES ($1, $2, $3) ON CONFLICT(user_id, path) DO UPDATE SET write = excluded.write")
            .bind(user_id)
            .bind(path)
            .bind(write as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn grants(&self, user_id: i64) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query("SELECT path, write FROM grants WHERE user_id = $1 ORDER BY path")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(Grant { path: r.try_get("path")?, write: r.try_get::<i64, _>("write")? != 0 }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn open_uploads(&self, user_id: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) FROM uploads u WHERE ", held!()))
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn unfinished_uploads(&self, user_id: Option<i64>, limit: i64) -> Result<Vec<UploadRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM uploads WHERE state = 'active' AND owner IS NOT DISTINCT FROM $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(UploadRecord::from_row).collect::<Result<_, _>>()?)
    }

    async fn usage_of(&self, user_id: i64, home: &str) -> Result<Usage, StoreError> {
        let files: Option<i64> =
            sqlx::query("SELECT SUM(size)::BIGINT AS s FROM tree_files WHERE path LIKE $1 ESCAPE '\\'")
                .bind(format!("{}/%", home.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
                .fetch_one(&self.pool)
                .await?
                .try_get("s")?;
        // A part held in place by a final upload is counted as the final upload's length.
        let uploads: Option<i64> = sqlx::query(concat!(
            "SELECT SUM(COALESCE(length, \"offset\"))::BIGINT AS s FROM uploads u WHERE ",
            held!(),
            " AND u.host IS NULL"
        ))
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("s")?;
        let relay: Option<i64> = sqlx::query(
            "SELECT SUM(size)::BIGINT AS s FROM relay_items i WHERE sender_id = $1 AND EXISTS \
             (SELECT 1 FROM relay_deliveries d WHERE d.item_id = i.id AND d.state IN ('waiting', 'downloading'))",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("s")?;
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        Ok(Usage { files: n(files), staging: n(uploads), relay: n(relay) })
    }

    async fn usage(&self, user_id: i64, home: &str) -> Result<u64, StoreError> {
        Ok(self.usage_of(user_id, home).await?.total())
    }
}

#[async_trait]
impl RelayStore for PgMeta {
    async fn complete_relay(
        &self,
        upload: &ferry_core::UploadId,
        expected: u64,
        item: &RelayItem,
        sender_id: i64,
        recipient_ids: &[i64],
        progress: &crate::Progress,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET state = 'complete', length = $1, \"offset\" = $2, sha256 = $3, placed = 1 \
             WHERE id = $4 AND state = 'active' AND \"offset\" = $5 AND lease_token = COALESCE($6, lease_token)",
        )
        .bind(item.size as i64)
        .bind(item.size as i64)
        .bind(&item.sha256[..])
        .bind(upload.as_str())
        .bind(expected as i64)
        .bind(progress.lease_token)
        .execute(&mut *tx)
        .await?;
        let ledger_ok = match &progress.blob {
            Some(blob) if done.rows_affected() == 1 => {
                let conn = &mut *tx;
                crate::ledger::record_blob_progress!(conn, upload.as_str(), blob)
            }
            _ => true,
        };
        if done.rows_affected() != 1 || !ledger_ok {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("INSERT INTO relay_items (id, sender_id, name, size, sha256, created_at, expires_at, kind, continues) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&item.id)
            .bind(sender_id)
            .bind(&item.name)
            .bind(item.size as i64)
            .bind(&item.sha256[..])
            .bind(item.created_at)
            .bind(item.expires_at)
            .bind(item.kind.as_str())
            .bind(item.continues.as_ref().map(Continuation::encode))
            .execute(&mut *tx)
            .await?;
        for r in recipient_ids {
            sqlx::query("INSERT INTO relay_deliveries (item_id, recipient_id, state, updated_at) VALUES ($1, $2, 'waiting', $3) ON CONFLICT DO NOTHING")
                .bind(&item.id)
                .bind(r)
                .bind(item.created_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn relay_item_for(&self, id: &str, user_id: i64) -> Result<Option<RelayItem>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM relay_items i JOIN users s ON s.id = i.sender_id WHERE i.id = $1 AND \
             (i.sender_id = $2 OR EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.item_id = i.id AND d.recipient_id = $3))"
        ))
        .bind(id)
        .bind(user_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(item_from_row).transpose()?)
    }

    async fn relay_inbox(&self, user_id: i64) -> Result<Vec<(RelayItem, DeliveryState)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            ", d.state FROM relay_items i JOIN users s ON s.id = i.sender_id \
             JOIN relay_deliveries d ON d.item_id = i.id \
             WHERE d.recipient_id = $1 AND d.state IN ('waiting', 'downloading') ORDER BY i.created_at, i.id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((item_from_row(r)?, DeliveryState::parse(&r.try_get::<String, _>("state")?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn relay_outbox(&self, user_id: i64) -> Result<Vec<(RelayItem, Vec<Delivery>)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM relay_items i JOIN users s ON s.id = i.sender_id WHERE i.sender_id = $1 \
             ORDER BY i.created_at DESC, i.id LIMIT 500"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let item = item_from_row(r)?;
            let deliveries = self.relay_deliveries(&item.id).await?;
            out.push((item, deliveries));
        }
        Ok(out)
    }

    async fn relay_deliveries(&self, item_id: &str) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.name, d.recipient_id, d.state, d.updated_at FROM relay_deliveries d JOIN users u ON u.id = d.recipient_id \
             WHERE d.item_id = $1 ORDER BY u.name",
        )
        .bind(item_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    recipient: r.try_get("name")?,
                    recipient_id: r.try_get("recipient_id")?,
                    state: DeliveryState::parse(&r.try_get::<String, _>("state")?),
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn set_delivery(&self, item_id: &str, recipient_id: i64, to: DeliveryState) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE relay_deliveries SET state = $1, updated_at = $2 WHERE item_id = $3 AND recipient_id = $4 \
             AND state IN ('waiting', 'downloading') AND state != $5",
        )
        .bind(to.as_str())
        .bind(unix_now())
        .bind(item_id)
        .bind(recipient_id)
        .bind(to.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn relay_item_done(&self, item_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM relay_deliveries WHERE item_id = $1 AND state IN ('waiting', 'downloading') LIMIT 1",
        )
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_none())
    }

    async fn expire_relay_items(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT i.id FROM relay_items i JOIN relay_deliveries d ON d.item_id = i.id \
             WHERE i.expires_at < $1 AND d.state IN ('waiting', 'downloading')",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<String> = rows.iter().filter_map(|r| r.try_get("id").ok()).collect();
        for id in &ids {
            sqlx::query("UPDATE relay_deliveries SET state = 'expired', updated_at = $1 WHERE item_id = $2 AND state IN ('waiting', 'downloading')")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(ids)
    }

    async fn relay_sender(&self, item_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT s.name FROM relay_items i JOIN users s ON s.id = i.sender_id WHERE i.id = $1")
            .bind(item_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get("name").ok()))
    }
}
