//! The metadata side of storage, as traits: the server holds an `Arc<dyn Metadata>` and
//! never knows which database is behind it. [`crate::SqliteMeta`] is the embedded backend.

use async_trait::async_trait;
use ferry_core::UploadId;

use crate::{
    BlobLedger, Delivery, DeliveryState, Grant, NewUpload, Progress, RelayItem, StoreError, TreeFileRecord,
    UploadRecord, UploadState, Usage, User,
};

/// Upload records: creation, the offset compare-and-set, completion, concatenation hosts,
/// expiry. Every offset change is conditional on the offset the caller expects, so a stale
/// writer never moves an offset backwards or skips bytes.
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Inserts a new upload in state `active` at offset 0.
    async fn create_upload(&self, new: &NewUpload, now: i64) -> Result<(), StoreError>;

    /// Reads one upload.
    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError>;

    /// Advances the offset from `expected` to `new` (compare-and-set), pushes the expiry
    /// out and records `progress` (hash state, blob ledger) in the same transaction.
    /// Returns false, changing nothing, when the stored offset is not `expected`, the
    /// upload is no longer active, or `progress` carries a lease token that is not the
    /// upload's current one (a writer that lost its lease).
    async fn commit_offset(
        &self,
        id: &UploadId,
        expected: u64,
        new: u64,
        expires_at: Option<i64>,
        progress: &Progress,
    ) -> Result<bool, StoreError>;

    /// Sets the length of a deferred-length upload; false if it was already set.
    async fn set_length(&self, id: &UploadId, length: u64) -> Result<bool, StoreError>;

    /// Records an active upload at offset `expected` as complete, with its digest and (for
    /// a file bound for the tree) its destination, not yet placed, with the blob ledger of
    /// its last bytes. Compare-and-set: false, changing nothing, if the upload is not
    /// active at `expected` (or the lease token in `progress` is not current).
    #[allow(clippy::too_many_arguments)]
    async fn complete(
        &self,
        id: &UploadId,
        expected: u64,
        length: u64,
        sha256: &[u8; 32],
        tree_path: Option<&str>,
        expires_at: Option<i64>,
        progress: &Progress,
    ) -> Result<bool, StoreError>;

    /// An upload's multipart ledger (empty for uploads on local storage).
    async fn blob_ledger(&self, id: &UploadId) -> Result<BlobLedger, StoreError>;

    /// Forgets an upload's multipart ledger (its object is complete, or gone).
    async fn forget_ledger(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Takes the lease on an upload for `node` until `until` (Unix seconds) when nobody
    /// else holds a live one, drawing a new fencing token. `None` while another node's
    /// lease is live.
    async fn acquire_lease(&self, id: &UploadId, node: &str, now: i64, until: i64) -> Result<Option<i64>, StoreError>;

    /// Extends a lease still held with `token`; false once it was lost.
    async fn renew_lease(&self, id: &UploadId, token: i64, until: i64) -> Result<bool, StoreError>;

    /// Gives a lease up (if `token` still holds it).
    async fn release_lease(&self, id: &UploadId, token: i64) -> Result<(), StoreError>;

    /// Records that a completed upload's file is in the tree.
    async fn mark_placed(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Completed uploads bound for the tree whose placement was not recorded (a crash
    /// between the completion commit and the rename).
    async fn unplaced(&self) -> Result<Vec<UploadRecord>, StoreError>;

    /// Final uploads not yet assembled.
    async fn active_finals(&self) -> Result<Vec<UploadRecord>, StoreError>;

    /// Moves an upload to a final state (`expired`, `terminated`, `failed`) with a reason.
    async fn finish(&self, id: &UploadId, state: UploadState, reason: Option<&str>) -> Result<(), StoreError>;

    /// Unfinished uploads, and completed partial uploads, whose expiry has passed.
    async fn expired(&self, now: i64, limit: i64) -> Result<Vec<UploadId>, StoreError>;

    /// Final uploads still waiting for `partial` to finish.
    async fn finals_waiting_on(&self, partial: &UploadId) -> Result<Vec<UploadRecord>, StoreError>;

    /// A final upload, unfinished or finished, that already uses `partial`.
    async fn final_using(&self, partial: &UploadId) -> Result<Option<UploadId>, StoreError>;

    /// Lets final upload `host` hold the bytes of fresh partial uploads, each at its base
    /// offset, so concatenation needs no copy. All or nothing: false (nothing changed) if
    /// any part is no longer an empty, active, unhosted partial upload.
    async fn adopt(&self, host: &UploadId, parts: &[(UploadId, u64)]) -> Result<bool, StoreError>;

    /// Whether partial uploads that still matter (active, or complete and not yet expired)
    /// keep their bytes in `host`'s staging file.
    async fn hosts_live_parts(&self, host: &UploadId) -> Result<bool, StoreError>;
}

/// Users, their tokens, grants and quota usage.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a user with an argon2id `pw_hash`; false if the name is taken.
    async fn add_user(&self, name: &str, pw_hash: &str, admin: bool, quota: Option<u64>) -> Result<bool, StoreError>;

    /// All users, by name.
    async fn users(&self) -> Result<Vec<User>, StoreError>;

    /// A user and their password hash, by name.
    async fn user_by_name(&self, name: &str) -> Result<Option<(User, String)>, StoreError>;

    /// Replaces a user's password hash and revokes their tokens; false for an unknown user.
    async fn set_password(&self, name: &str, pw_hash: &str) -> Result<bool, StoreError>;

    /// Removes a user, their tokens and grants; false for an unknown user.
    async fn remove_user(&self, name: &str) -> Result<bool, StoreError>;

    /// Whether any user exists.
    async fn has_users(&self) -> Result<bool, StoreError>;

    /// Stores a token (by its SHA-256) for a user.
    async fn add_token(&self, token_sha: &[u8; 32], user_id: i64, label: &str) -> Result<(), StoreError>;

    /// The user a token belongs to.
    async fn user_by_token(&self, token_sha: &[u8; 32]) -> Result<Option<User>, StoreError>;

    /// Revokes a token; false if it did not exist.
    async fn revoke_token(&self, token_sha: &[u8; 32]) -> Result<bool, StoreError>;

    /// Shares the folder `path` with a user (replacing an earlier grant of it).
    async fn grant(&self, user_id: i64, path: &str, write: bool) -> Result<(), StoreError>;

    /// A user's grants.
    async fn grants(&self, user_id: i64) -> Result<Vec<Grant>, StoreError>;

    /// How many unfinished uploads a user has (a finished partial upload counts until a
    /// finished final upload has used it).
    async fn open_uploads(&self, user_id: i64) -> Result<u64, StoreError>;

    /// A user's unfinished uploads (`None`: those without an owner, made without accounts),
    /// oldest first, at most `limit`.
    async fn unfinished_uploads(&self, user_id: Option<i64>, limit: i64) -> Result<Vec<UploadRecord>, StoreError>;

    /// Bytes a user holds on the server: files in the tree under `home`, unfinished uploads
    /// (declared length, or the bytes stored so far while the length is deferred) and relay
    /// items they sent that still wait for a recipient.
    async fn usage_of(&self, user_id: i64, home: &str) -> Result<Usage, StoreError>;

    /// [`SqliteMeta::usage_of`] in one figure.
    async fn usage(&self, user_id: i64, home: &str) -> Result<u64, StoreError>;
}

/// The offline-file relay: items, their recipients and delivery states.
#[async_trait]
pub trait RelayStore: Send + Sync {
    /// Completes relay upload `upload` (active at offset `expected`) and records its item
    /// and deliveries, all in one transaction: either the file is an item for its
    /// recipients, or it is still an unfinished upload. False (nothing changed) if the
    /// upload was not active at `expected`.
    async fn complete_relay(
        &self,
        upload: &ferry_core::UploadId,
        expected: u64,
        item: &RelayItem,
        sender_id: i64,
        recipient_ids: &[i64],
        progress: &Progress,
    ) -> Result<bool, StoreError>;

    /// An item, if `user_id` is its sender or one of its recipients.
    async fn relay_item_for(&self, id: &str, user_id: i64) -> Result<Option<RelayItem>, StoreError>;

    /// Items waiting for `user_id` (not yet delivered, declined or expired), oldest first.
    async fn relay_inbox(&self, user_id: i64) -> Result<Vec<(RelayItem, DeliveryState)>, StoreError>;

    /// Items `user_id` sent, newest first, with every recipient's delivery.
    async fn relay_outbox(&self, user_id: i64) -> Result<Vec<(RelayItem, Vec<Delivery>)>, StoreError>;

    /// The deliveries of an item.
    async fn relay_deliveries(&self, item_id: &str) -> Result<Vec<Delivery>, StoreError>;

    /// Moves `recipient_id`'s delivery of an item to `to`, only from a state that has not
    /// ended. Returns whether it changed.
    async fn set_delivery(&self, item_id: &str, recipient_id: i64, to: DeliveryState) -> Result<bool, StoreError>;

    /// Whether every delivery of an item has ended (so its bytes may go).
    async fn relay_item_done(&self, item_id: &str) -> Result<bool, StoreError>;

    /// Items past their expiry that still have open deliveries; their open deliveries are
    /// marked expired. Returns the item ids.
    async fn expire_relay_items(&self, now: i64) -> Result<Vec<String>, StoreError>;

    /// The sender's name of an item.
    async fn relay_sender(&self, item_id: &str) -> Result<Option<String>, StoreError>;
}

/// Known digests of files in the served tree, valid while their size and version
/// (modification time) are unchanged.
#[async_trait]
pub trait TreeIndex: Send + Sync {
    /// Remembers the digest of a file placed in the tree.
    async fn record_tree_file(&self, path: &str, rec: &TreeFileRecord) -> Result<(), StoreError>;

    /// The recorded digest of a tree file, if its size and mtime still match.
    async fn tree_file_digest(&self, path: &str, size: u64, mtime_ns: i64) -> Result<Option<[u8; 32]>, StoreError>;

    /// Tree paths recorded with this digest and size (newest first).
    async fn tree_paths_with_digest(&self, sha256: &[u8; 32], size: u64) -> Result<Vec<String>, StoreError>;
}

/// Everything ferry keeps besides bytes: one backend implements every part (some
/// operations span several of them in one transaction).
#[async_trait]
pub trait Metadata: UploadStore + AccountStore + RelayStore + TreeIndex + crate::DavStore + std::fmt::Debug {
    /// Answers when the database answers (readiness).
    async fn ready(&self) -> Result<(), StoreError>;

    /// Closes the pool, flushing the WAL.
    async fn close(&self);

    /// Whether other nodes may share this database (then uploads are leased, and events
    /// and release requests travel through [`Metadata::publish`]).
    fn shared(&self) -> bool {
        false
    }

    /// Sends `payload` on `topic` to every node subscribed (this one too). Nothing to do
    /// for a database no other node shares.
    async fn publish(&self, topic: &str, payload: &str) -> Result<(), StoreError> {
        let _ = (topic, payload);
        Ok(())
    }

    /// Messages published on `topics` by any node, as `(topic, payload)`; `None` for a
    /// database no other node shares.
    async fn subscribe(
        &self,
        topics: &[&str],
    ) -> Result<Option<tokio::sync::mpsc::Receiver<(String, String)>>, StoreError> {
        let _ = topics;
        Ok(None)
    }
}
