//! The offline-file relay: items sent to users, and each recipient's delivery state.
//!
//! One stored copy serves every recipient. A delivery ends only as `delivered` (the
//! recipient acknowledged a verified copy), `declined` or `expired`; the bytes may go once
//! every delivery of an item has ended.

use crate::RelayStore;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::{ColumnIndex, Decode, Type};

use crate::{SqliteMeta, StoreError, unix_now};

/// Where one recipient's copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not fetched yet.
    Waiting,
    /// The recipient has started fetching.
    Downloading,
    /// The recipient acknowledged a verified copy.
    Delivered,
    /// The recipient declined it.
    Declined,
    /// It expired before delivery.
    Expired,
}

impl DeliveryState {
    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Downloading => "downloading",
            Self::Delivered => "delivered",
            Self::Declined => "declined",
            Self::Expired => "expired",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "downloading" => Self::Downloading,
            "delivered" => Self::Delivered,
            "declined" => Self::Declined,
            "expired" => Self::Expired,
            _ => Self::Waiting,
        }
    }

    /// Whether the delivery has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Declined | Self::Expired)
    }
}

/// A relayed file.
#[derive(Debug, Clone)]
pub struct RelayItem {
    /// Its id (32 hex digits).
    pub id: String,
    /// Who sent it.
    pub sender: String,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Expires (Unix seconds).
    pub expires_at: i64,
    /// A file or a text message.
    pub kind: ItemKind,
    /// Set when the item is the rest of a direct transfer the recipient began.
    pub continues: Option<Continuation>,
}

/// What a relay item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ItemKind {
    /// A file.
    #[default]
    File,
    /// A short text message (its content is the UTF-8 text).
    Text,
    /// An empty folder of a folder sent whole (no content; the item's name is its path).
    Folder,
}

impl ItemKind {
    /// The kind's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Text => "text",
            Self::Folder => "folder",
        }
    }

    /// The kind named `s` (`None` for an unknown name).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(Self::File),
            "text" => Some(Self::Text),
            "folder" => Some(Self::Folder),
            _ => None,
        }
    }
}

/// An item holding a file's bytes from `offset` on: the recipient's client already holds
/// the bytes before it (a direct transfer cut when it went offline) and puts the file
/// together, `size` bytes with SHA-256 `sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuation {
    /// Where the item's bytes begin in the whole file.
    pub offset: u64,
    /// The whole file's size.
    pub size: u64,
    /// The whole file's SHA-256.
    pub sha256: [u8; 32],
}

impl Continuation {
    /// `OFFSET SIZE SHA256HEX`, as stored (and as the sender declares it in the upload's
    /// `continues` metadata).
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.offset, self.size, ferry_core::digest::to_hex(&self.sha256))
    }

    /// The inverse of [`Continuation::encode`]; `None` when malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(' ');
        let offset = it.next()?.parse().ok()?;
        let size = it.next()?.parse().ok()?;
        let hex = it.next()?;
        if it.next().is_some() || hex.len() != 64 {
            return None;
        }
        Some(Self { offset, size, sha256: ferry_core::digest::parse_sha256_text(hex)? })
    }
}

/// One recipient's delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The recipient.
    pub recipient: String,
    /// The recipient's user id.
    pub recipient_id: i64,
    /// Its state.
    pub state: DeliveryState,
    /// When it last changed (Unix seconds).
    pub updated_at: i64,
}

/// Decodes a relay item selected with `item_columns!()` (any backend).
pub(crate) fn item_from_row<R>(r: &R) -> Result<RelayItem, sqlx::Error>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    let sha: Vec<u8> = r.try_get("sha256")?;
    Ok(RelayItem {
        id: r.try_get("id")?,
        sender: r.try_get("sender")?,
        name: r.try_get("name")?,
        size: r.try_get::<i64, _>("size")? as u64,
        sha256: sha.try_into().map_err(|_| sqlx::Error::Decode("bad sha256".into()))?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        kind: ItemKind::parse(&r.try_get::<String, _>("kind")?).unwrap_or_default(),
        continues: r.try_get::<Option<String>, _>("continues")?.as_deref().and_then(Continuation::parse),
    })
}

/// The columns [`item_from_row`] decodes (`i`: relay_items, `s`: the sender's user row).
macro_rules! item_columns {
    () => {
        "i.id, s.name AS sender, i.name, i.size, i.sha256, i.created_at, i.expires_at, i.kind, i.continues"
    };
}
pub(crate) use item_columns;

#[async_trait]
impl RelayStore for SqliteMeta {
    async fn complete_relay(
        &self,
        upload: &ferry_core::UploadId,
        expected: u64,
        item: &RelayItem,
        sender_id: i64,
        recipient_ids: &[i64],
        progress: &crate::Progress,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET state = 'complete', length = ?, \"offset\" = ?, sha256 = ?, placed = 1 \
             WHERE id = ? AND state = 'active' AND \"offset\" = ? AND lease_token = COALESCE(?, lease_token)",
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
        sqlx::query("INSERT INTO relay_items (id, sender_id, name, size, sha256, created_at, expires_at, kind, continues) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
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
            sqlx::query("INSERT OR IGNORE INTO relay_deliveries (item_id, recipient_id, state, updated_at) VALUES (?, ?, 'waiting', ?)")
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
            " FROM relay_items i JOIN users s ON s.id = i.sender_id WHERE i.id = ? AND \
             (i.sender_id = ? OR EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.item_id = i.id AND d.recipient_id = ?))"
        ))
        .bind(id)
        .bind(user_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(item_from_row).transpose()?)
    }

    async fn relay_inbox(&self, user_id: i64) -> Result<Vec<(RelayItem, DeliveryState)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            ", d.state FROM relay_items i JOIN users s ON s.id = i.sender_id \
             JOIN relay_deliveries d ON d.item_id = i.id \
             WHERE d.recipient_id = ? AND d.state IN ('waiting', 'downloading') ORDER BY i.created_at, i.id"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
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
            " FROM relay_items i JOIN users s ON s.id = i.sender_id WHERE i.sender_id = ? \
             ORDER BY i.created_at DESC, i.id LIMIT 500"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
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
             WHERE d.item_id = ? ORDER BY u.name",
        )
        .bind(item_id)
        .fetch_all(self.pool())
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
            "UPDATE relay_deliveries SET state = ?, updated_at = ? WHERE item_id = ? AND recipient_id = ? \
             AND state IN ('waiting', 'downloading') AND state != ?",
        )
        .bind(to.as_str())
        .bind(unix_now())
        .bind(item_id)
        .bind(recipient_id)
        .bind(to.as_str())
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn relay_item_done(&self, item_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM relay_deliveries WHERE item_id = ? AND state IN ('waiting', 'downloading') LIMIT 1",
        )
        .bind(item_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_none())
    }

    async fn expire_relay_items(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT i.id FROM relay_items i JOIN relay_deliveries d ON d.item_id = i.id \
             WHERE i.expires_at < ? AND d.state IN ('waiting', 'downloading')",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let ids: Vec<String> = rows.iter().filter_map(|r| r.try_get("id").ok()).collect();
        for id in &ids {
            sqlx::query("UPDATE relay_deliveries SET state = 'expired', updated_at = ? WHERE item_id = ? AND state IN ('waiting', 'downloading')")
                .bind(now)
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        Ok(ids)
    }

    async fn relay_sender(&self, item_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT s.name FROM relay_items i JOIN users s ON s.id = i.sender_id WHERE i.id = ?")
            .bind(item_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.and_then(|r| r.try_get("name").ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_round_trip_and_malformed_ones_are_refused() {
        let c = Continuation { offset: 1 << 40, size: (1 << 40) + 5, sha256: [0xab; 32] };
        assert_eq!(Continuation::parse(&c.encode()), Some(c));
        for bad in ["", "1 2", "1 2 abc", "x 2 ".to_owned().as_str(), &format!("1 2 {} 4", "ab".repeat(32))] {
            assert_eq!(Continuation::parse(bad), None, "{bad:?}");
        }
    }
}
