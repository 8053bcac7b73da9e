//! Group commit for the data path's metadata writes: creations, offset commits,
//! completions and placements queue up, and one task writes whatever has queued in one
//! transaction. 10,000 clients creating, committing or completing at once cost a few
//! hundred WAL syncs, not 10,000, and nobody waits seconds for a pool connection: a waiting
//! request holds a queue entry, not a connection.
//!
//! Each write is one statement and keeps its own meaning (a compare-and-set that finds
//! the row changed affects no row and says so); a failed statement rolls back only itself.
//! A write's answer comes after the transaction holding it committed, so an acknowledged
//! write is as durable as one written alone.

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::ledger::{COMMIT_OFFSET, COMPLETE, record_blob_progress};
use crate::{NewUpload, Progress, StoreError};

/// Most writes in one transaction.
const MAX_BATCH: usize = 512;

/// One queued statement.
#[derive(Debug)]
pub(crate) enum Write {
    /// A new upload, active at offset 0.
    Create { new: NewUpload, now: i64 },
    /// Compare-and-set of an active upload's offset, pushing its expiry out.
    CommitOffset { id: String, expected: u64, new: u64, expires_at: Option<i64>, progress: Box<Progress> },
    /// An active upload at `expected` becomes complete.
    Complete {
        id: String,
        expected: u64,
        length: u64,
        sha256: [u8; 32],
        tree_path: Option<String>,
        expires_at: Option<i64>,
        progress: Box<Progress>,
    },
    /// A complete upload's file is in the tree.
    MarkPlaced { id: String },
}

type Job = (Write, oneshot::Sender<Result<u64, StoreError>>);

/// The queue of writes (cheap to clone; the writer ends with the last clone).
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    tx: mpsc::UnboundedSender<Job>,
}

impl Writes {
    /// Starts the writer on `pool`.
    pub(crate) fn start(pool: SqlitePool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(pool, rx));
        Self { tx }
    }

    /// Runs `write`; the rows it affected, once committed.
    pub(crate) async fn run(&self, write: Write) -> Result<u64, StoreError> {
        let (answer, result) = oneshot::channel();
        let closed = || StoreError::Database("the database is closed".into());
        self.tx.send((write, answer)).map_err(|_| closed())?;
        result.await.map_err(|_| closed())?
    }
}

async fn write_batches(pool: SqlitePool, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let mut results = Vec::with_capacity(jobs.len());
        let committed = async {
            let mut tx = pool.begin().await?;
            for (write, _) in &jobs {
                results.push(execute(&mut tx, write).await);
            }
            tx.commit().await
        }
        .await;
        let mut results = results.into_iter();
        for (_, answer) in jobs.drain(..) {
            let r = match &committed {
                Ok(()) => results.next().unwrap_or(Err(StoreError::Database("the database is closed".into()))),
                Err(e) => Err(StoreError::Database(format!("group commit failed: {e}"))),
            };
            let _ = answer.send(r);
        }
    }
}

async fn execute(conn: &mut sqlx::SqliteConnection, write: &Write) -> Result<u64, StoreError> {
    let done = match write {
        Write::Create { new, now } => {
            sqlx::query(
                "INSERT INTO uploads (id, length, \"offset\", metadata, concat, state, created_at, expires_at, owner, tree_path, relay_to) \
                 VALUES (?, ?, 0, ?, ?, 'active', ?, ?, ?, ?, ?)",
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
            .execute(conn)
            .await?
        }
        Write::CommitOffset { id, expected, new, expires_at, progress } => {
            let update = sqlx::query(COMMIT_OFFSET)
                .bind(*new as i64)
                .bind(expires_at)
                .bind(progress.sha_state.as_deref())
                .bind(id)
                .bind(*expected as i64)
                .bind(progress.lease_token);
            return with_ledger(conn, id, update, progress).await;
        }
        Write::Complete { id, expected, length, sha256, tree_path, expires_at, progress } => {
            let update = sqlx::query(COMPLETE)
                .bind(*length as i64)
                .bind(&sha256[..])
                .bind(tree_path.as_deref())
                .bind(expires_at)
                .bind(id)
                .bind(*expected as i64)
                .bind(progress.lease_token);
            return with_ledger(conn, id, update, progress).await;
        }
        Write::MarkPlaced { id } => {
            sqlx::query("UPDATE uploads SET placed = 1 WHERE id = ?").bind(id).execute(conn).await?
        }
    };
    Ok(done.rows_affected())
}

/// Runs a compare-and-set `update` and, when it took, the blob ledger changes that go with
/// it, all or nothing (a savepoint inside the shared transaction).
async fn with_ledger(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    update: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    progress: &Progress,
) -> Result<u64, StoreError> {
    let Some(blob) = &progress.blob else {
        return Ok(update.execute(conn).await?.rows_affected());
    };
    sqlx::raw_sql("SAVEPOINT ledger").execute(&mut *conn).await?;
    let done = async {
        let rows = update.execute(&mut *conn).await?.rows_affected();
        if rows == 1 && !record_blob_progress!(conn, id, blob) {
            return Ok::<u64, StoreError>(0);
        }
        Ok(rows)
    }
    .await;
    match done {
        Ok(1) => {
            sqlx::raw_sql("RELEASE ledger").execute(&mut *conn).await?;
            Ok(1)
        }
        other => {
            sqlx::raw_sql("ROLLBACK TO ledger").execute(&mut *conn).await?;
            sqlx::raw_sql("RELEASE ledger").execute(&mut *conn).await?;
            other.map(|_| 0)
        }
    }
}
