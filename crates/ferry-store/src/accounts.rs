//! Users, API tokens and shared-folder grants.
//!
//! Passwords are stored as argon2id PHC strings; tokens only as their SHA-256, so the
//! database never holds a secret that works as a credential.

use crate::AccountStore;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::{ColumnIndex, Decode, Type};

use crate::{SqliteMeta, StoreError, UploadRecord, unix_now};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// May manage users and read and write the whole tree.
    pub admin: bool,
    /// Bytes the user may keep in their home, `None` for no limit.
    pub quota: Option<u64>,
}

impl User {
    /// Decodes a row of `users` (any backend).
    pub(crate) fn from_row<R>(r: &R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
        &'static str: ColumnIndex<R>,
    {
        Ok(Self {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            admin: r.try_get::<i64, _>("admin")? != 0,
            quota: r.try_get::<Option<i64>, _>("quota")?.map(|q| q as u64),
        })
    }
}

/// A folder (tree path prefix) shared with a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Tree path of the folder, without leading or trailing `/`.
    pub path: String,
    /// Whether the user may write there (reading is always granted).
    pub write: bool,
}

/// The uploads that hold a user's bytes in staging (`u`, bound to the owner): unfinished
/// ones, and finished partial uploads no finished final upload has used yet.
macro_rules! held {
    () => {
        "u.owner = ? AND (u.state = 'active' \
     OR (u.state = 'complete' AND u.placed = 0 AND u.tree_path IS NOT NULL AND COALESCE(u.concat, '') <> 'partial') \
     OR (u.state = 'complete' AND u.concat = 'partial' \
     AND NOT EXISTS (SELECT 1 FROM uploads f WHERE f.owner = u.owner \
     AND f.state = 'complete' AND f.concat LIKE 'final;%' || u.id || '%')))"
    };
}

#[async_trait]
impl AccountStore for SqliteMeta {
    async fn add_user(&self, name: &str, pw_hash: &str, admin: bool, quota: Option<u64>) -> Result<bool, StoreError> {
        // Ids are never reused: a new user must not inherit a removed one's uploads or items.
        let mut tx = self.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT next FROM id_counters WHERE name = 'users'), 1), \
             COALESCE((SELECT MAX(id) FROM users), 0) + 1)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let r = sqlx::query(
            "INSERT INTO users (id, name, pw_hash, admin, quota, created_at) VALUES (?, ?, ?, ?, ?, ?) \
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
        sqlx::query("INSERT INTO id_counters (name, next) VALUES ('users', ?) ON CONFLICT(name) DO UPDATE SET next = excluded.next")
            .bind(id + 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT id, name, admin, quota FROM users ORDER BY name").fetch_all(self.pool()).await?;
        Ok(rows.iter().map(User::from_row).collect::<Result<_, _>>()?)
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query("SELECT id, name, admin, quota, pw_hash FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some((User::from_row(&r)?, r.try_get("pw_hash")?)),
            None => None,
        })
    }

    async fn set_password(&self, name: &str, pw_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let r = sqlx::query("UPDATE users SET pw_hash = ? WHERE name = ?")
            .bind(pw_hash)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE name = ?)")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        for q in [
            "DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE name = ?)",
            "DELETE FROM grants WHERE user_id = (SELECT id FROM users WHERE name = ?)",
            // What the user owned ends: unfinished uploads expire at the next sweep (their
            // bytes go), items they sent expire, deliveries to them are declined.
            "UPDATE uploads SET expires_at = 0 WHERE state = 'active' AND owner = (SELECT id FROM users WHERE name = ?)",
            "UPDATE relay_items SET expires_at = 0 WHERE sender_id = (SELECT id FROM users WHERE name = ?)",
            "UPDATE relay_deliveries SET state = 'declined' WHERE state IN ('waiting', 'downloading') \
             AND recipient_id = (SELECT id FROM users WHERE name = ?)",
        ] {
            sqlx::query(q).bind(name).execute(&mut *tx).await?;
        }
        let r = sqlx::query("DELETE FROM users WHERE name = ?").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn has_users(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM users LIMIT 1").fetch_optional(self.pool()).await?.is_some())
    }

    async fn add_token(&self, token_sha: &[u8; 32], user_id: i64, label: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tokens (sha256, user_id, label, created_at) VALUES (?, ?, ?, ?)")
            .bind(&token_sha[..])
            .bind(user_id)
            .bind(label)
            .bind(unix_now())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn user_by_token(&self, token_sha: &[u8; 32]) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.admin, u.quota FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.sha256 = ?",
        )
        .bind(&token_sha[..])
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(User::from_row).transpose()?)
    }

    async fn revoke_token(&self, token_sha: &[u8; 32]) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM tokens WHERE sha256 = ?").bind(&token_sha[..]).execute(self.pool()).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn grant(&self, user_id: i64, path: &str, write: bool) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO grants (user_id, path, write) VALUES (?, ?, ?) ON CONFLICT(user_id, path) DO UPDATE SET write = excluded.write")
            .bind(user_id)
            .bind(path)
            .bind(write as i64)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn grants(&self, user_id: i64) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query("SELECT path, write FROM grants WHERE user_id = ? ORDER BY path")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(Grant { path: r.try_get("path")?, write: r.try_get::<i64, _>("write")? != 0 }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn open_uploads(&self, user_id: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) FROM uploads u WHERE ", held!()))
            .bind(user_id)
            .fetch_one(self.pool())
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn unfinished_uploads(&self, user_id: Option<i64>, limit: i64) -> Result<Vec<UploadRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM uploads WHERE state = 'active' AND owner IS ? \
             ORDER BY created_at, id LIMIT ?",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(UploadRecord::from_row).collect::<Result<_, _>>()?)
    }

    async fn usage_of(&self, user_id: i64, home: &str) -> Result<Usage, StoreError> {
        let files: Option<i64> = sqlx::query("SELECT SUM(size) AS s FROM tree_files WHERE path LIKE ? ESCAPE '\\'")
            .bind(format!("{}/%", home.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
            .fetch_one(self.pool())
            .await?
            .try_get("s")?;
        // A part held in place by a final upload is counted as the final upload's length.
        let uploads: Option<i64> = sqlx::query(concat!(
            "SELECT SUM(COALESCE(length, \"offset\")) AS s FROM uploads u WHERE ",
            held!(),
            " AND u.host IS NULL"
        ))
        .bind(user_id)
        .fetch_one(self.pool())
        .await?
        .try_get("s")?;
        let relay: Option<i64> = sqlx::query(
            "SELECT SUM(size) AS s FROM relay_items i WHERE sender_id = ? AND EXISTS \
             (SELECT 1 FROM relay_deliveries d WHERE d.item_id = i.id AND d.state IN ('waiting', 'downloading'))",
        )
        .bind(user_id)
        .fetch_one(self.pool())
        .await?
        .try_get("s")?;
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        Ok(Usage { files: n(files), staging: n(uploads), relay: n(relay) })
    }

    async fn usage(&self, user_id: i64, home: &str) -> Result<u64, StoreError> {
        Ok(self.usage_of(user_id, home).await?.total())
    }
}

/// What a user's bytes on the server are made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Files in their home.
    pub files: u64,
    /// Unfinished uploads.
    pub staging: u64,
    /// Relay items waiting for a recipient.
    pub relay: u64,
}

impl Usage {
    /// Everything counted against a quota.
    pub fn total(&self) -> u64 {
        self.files.saturating_add(self.staging).saturating_add(self.relay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TreeIndex, UploadStore};

    #[tokio::test]
    async fn users_tokens_grants_and_usage() {
        let tmp = tempfile::tempdir().unwrap();
        let db = SqliteMeta::open(&tmp.path().join("t.db")).await.unwrap();
        assert!(!db.has_users().await.unwrap());
        assert!(db.add_user("alice", "h1", false, Some(100)).await.unwrap());
        assert!(!db.add_user("alice", "h2", true, None).await.unwrap(), "names are unique");
        let (alice, hash) = db.user_by_name("alice").await.unwrap().unwrap();
        assert_eq!((alice.name.as_str(), hash.as_str(), alice.quota), ("alice", "h1", Some(100)));
        db.add_token(&[9; 32], alice.id, "cli").await.unwrap();
        assert_eq!(db.user_by_token(&[9; 32]).await.unwrap(), Some(alice.clone()));
        assert!(db.set_password("alice", "h3").await.unwrap());
        assert_eq!(db.user_by_token(&[9; 32]).await.unwrap(), None, "a new password revokes tokens");
        db.grant(alice.id, "team", false).await.unwrap();
        db.grant(alice.id, "team", true).await.unwrap();
        assert_eq!(db.grants(alice.id).await.unwrap(), vec![Grant { path: "team".into(), write: true }]);
        let rec = crate::TreeFileRecord { size: 40, mtime_ns: 1, sha256: [0; 32] };
        db.record_tree_file("~alice/a", &rec).await.unwrap();
        db.record_tree_file("~alice_b/x", &rec).await.unwrap();
        assert_eq!(db.usage(alice.id, "~alice").await.unwrap(), 40, "another home with the same prefix does not count");
        assert!(db.remove_user("alice").await.unwrap());
        assert!(db.grants(alice.id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_removed_users_id_is_never_given_to_a_new_user() {
        let tmp = tempfile::tempdir().unwrap();
        let db = SqliteMeta::open(&tmp.path().join("t.db")).await.unwrap();
        db.add_user("alice", "h", false, None).await.unwrap();
        db.add_user("bob", "h", false, None).await.unwrap();
        let bob = db.user_by_name("bob").await.unwrap().unwrap().0;
        let upload = crate::NewUpload {
            id: ferry_core::UploadId::random(),
            length: Some(10),
            metadata: String::new(),
            concat: crate::ConcatKind::None,
            expires_at: Some(i64::MAX),
            owner: Some(bob.id),
            tree_path: None,
            relay_to: None,
        };
        db.create_upload(&upload, 0).await.unwrap();
        assert!(db.remove_user("bob").await.unwrap());
        db.add_user("carol", "h", false, None).await.unwrap();
        let carol = db.user_by_name("carol").await.unwrap().unwrap().0;
        assert_ne!(carol.id, bob.id, "bob's id was given to carol");
        assert_eq!(db.get(&upload.id).await.unwrap().unwrap().expires_at, Some(0), "bob's upload ends");
    }
}
