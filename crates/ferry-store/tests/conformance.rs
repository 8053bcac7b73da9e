//! The store conformance suite: what every metadata backend ([`Metadata`]) and every byte
//! backend ([`Blobs`]) must do, run against each backend. A new backend adds one test per
//! side below that opens it and calls the same checks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::sync::Arc;

use ferry_core::{TreePath, UploadId};
use ferry_store::{
    Blobs, ConcatKind, Continuation, DeadProp, DeliveryState, ItemKind, LocalBlobs, Metadata, NewUpload, Progress,
    PropChange, RelayItem, SqliteMeta, StoreError, StoredLock, TreeFileRecord, UploadState,
};

fn upload(length: Option<u64>, concat: ConcatKind, owner: Option<i64>) -> NewUpload {
    NewUpload {
        id: UploadId::random(),
        length,
        metadata: "filename YS5iaW4=".into(),
        concat,
        expires_at: Some(1_000),
        owner,
        tree_path: Some("a.bin".into()),
        relay_to: None,
    }
}

/// Creation, the offset compare-and-set, deferred length, completion and placement, final
/// states, expiry.
async fn uploads_life_cycle(m: &dyn Metadata) {
    let new = upload(Some(100), ConcatKind::None, None);
    m.create_upload(&new, 10).await.unwrap();
    let rec = m.get(&new.id).await.unwrap().unwrap();
    assert_eq!((rec.offset, rec.length, rec.state), (0, Some(100), UploadState::Active));
    assert_eq!(
        (rec.metadata.as_str(), rec.created_at, rec.tree_path.as_deref()),
        (new.metadata.as_str(), 10, Some("a.bin"))
    );
    assert!(m.get(&UploadId::random()).await.unwrap().is_none());

    assert!(
        !m.commit_offset(&new.id, 5, 40, None, &Default::default()).await.unwrap(),
        "a stale expected offset changes nothing"
    );
    assert!(m.commit_offset(&new.id, 0, 40, Some(2_000), &Default::default()).await.unwrap());
    assert!(
        !m.commit_offset(&new.id, 0, 60, None, &Default::default()).await.unwrap(),
        "the same expected offset wins once"
    );
    let rec = m.get(&new.id).await.unwrap().unwrap();
    assert_eq!((rec.offset, rec.expires_at), (40, Some(2_000)));

    let sha = [7u8; 32];
    assert!(!m.complete(&new.id, 39, 100, &sha, Some("a.bin"), None, &Default::default()).await.unwrap());
    assert!(m.complete(&new.id, 40, 100, &sha, Some("a.bin"), None, &Default::default()).await.unwrap());
    let rec = m.get(&new.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.offset, rec.sha256), (UploadState::Complete, 100, Some(sha)));
    assert!(
        !m.commit_offset(&new.id, 100, 120, None, &Default::default()).await.unwrap(),
        "a complete upload takes no bytes"
    );
    assert!(m.unplaced().await.unwrap().iter().any(|r| r.id == new.id), "complete, not placed yet");
    m.mark_placed(&new.id).await.unwrap();
    assert!(!m.unplaced().await.unwrap().iter().any(|r| r.id == new.id));

    let deferred = upload(None, ConcatKind::None, None);
    m.create_upload(&deferred, 10).await.unwrap();
    assert!(m.set_length(&deferred.id, 50).await.unwrap());
    assert!(!m.set_length(&deferred.id, 60).await.unwrap(), "a length is set once");
    assert_eq!(m.get(&deferred.id).await.unwrap().unwrap().length, Some(50));

    assert!(m.expired(999, 100).await.unwrap().is_empty());
    assert!(m.expired(1_001, 100).await.unwrap().contains(&deferred.id));
    assert!(!m.expired(1_001, 100).await.unwrap().contains(&new.id), "complete uploads do not expire");
    m.finish(&deferred.id, UploadState::Expired, Some("too old")).await.unwrap();
    let rec = m.get(&deferred.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.reason.as_deref()), (UploadState::Expired, Some("too old")));
    assert!(
        !m.commit_offset(&deferred.id, 0, 10, None, &Default::default()).await.unwrap(),
        "a finished upload takes no bytes"
    );
}

/// Racing commits of one offset: exactly one wins, whatever else runs at once.
async fn racing_commits_have_one_winner(m: Arc<dyn Metadata>) {
    let new = upload(Some(1 << 20), ConcatKind::None, None);
    m.create_upload(&new, 0).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let (m, id) = (m.clone(), new.id.clone());
        tasks.push(tokio::spawn(
            async move { m.commit_offset(&id, 0, 100 + i, None, &Default::default()).await.unwrap() },
        ));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert!(m.get(&new.id).await.unwrap().unwrap().offset >= 100);
}

/// Partial uploads, a final upload that hosts them, and which uploads keep which bytes.
async fn concatenation(m: &dyn Metadata) {
    let (a, b) = (upload(Some(10), ConcatKind::Partial, None), upload(Some(20), ConcatKind::Partial, None));
    m.create_upload(&a, 0).await.unwrap();
    m.create_upload(&b, 0).await.unwrap();
    let fin = upload(None, ConcatKind::Final(vec![a.id.clone(), b.id.clone()]), None);
    m.create_upload(&fin, 0).await.unwrap();
    assert_eq!(m.get(&fin.id).await.unwrap().unwrap().concat, ConcatKind::Final(vec![a.id.clone(), b.id.clone()]));
    assert_eq!(m.final_using(&a.id).await.unwrap(), Some(fin.id.clone()));
    assert!(m.finals_waiting_on(&b.id).await.unwrap().iter().any(|r| r.id == fin.id));
    assert!(m.active_finals().await.unwrap().iter().any(|r| r.id == fin.id));

    assert!(m.adopt(&fin.id, &[(a.id.clone(), 0), (b.id.clone(), 10)]).await.unwrap());
    assert_eq!(m.get(&b.id).await.unwrap().unwrap().host, Some((fin.id.clone(), 10)));
    assert!(m.hosts_live_parts(&fin.id).await.unwrap());
    m.finish(&a.id, UploadState::Terminated, None).await.unwrap();
    m.finish(&b.id, UploadState::Terminated, None).await.unwrap();
    assert!(!m.hosts_live_parts(&fin.id).await.unwrap(), "no live part left in it");
}

/// Users, tokens, grants, quota usage, removal.
async fn accounts(m: &dyn Metadata) {
    assert!(!m.has_users().await.unwrap());
    assert!(m.add_user("alice", "hash-a", true, Some(1_000)).await.unwrap());
    assert!(!m.add_user("alice", "other", false, None).await.unwrap(), "names are unique");
    assert!(m.add_user("bob", "hash-b", false, None).await.unwrap());
    assert!(m.has_users().await.unwrap());
    let (alice, hash) = m.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((alice.name.as_str(), alice.admin, alice.quota, hash.as_str()), ("alice", true, Some(1_000), "hash-a"));
    assert_eq!(m.users().await.unwrap().len(), 2);

    let token = [3u8; 32];
    m.add_token(&token, alice.id, "laptop").await.unwrap();
    assert_eq!(m.user_by_token(&token).await.unwrap().map(|u| u.id), Some(alice.id));
    assert!(m.set_password("alice", "hash-c").await.unwrap());
    assert!(m.user_by_token(&token).await.unwrap().is_none(), "a new password revokes the tokens");
    m.add_token(&token, alice.id, "laptop").await.unwrap();
    assert!(m.revoke_token(&token).await.unwrap());
    assert!(!m.revoke_token(&token).await.unwrap());

    let (bob, _) = m.user_by_name("bob").await.unwrap().unwrap();
    m.grant(bob.id, "~alice/shared", true).await.unwrap();
    let grants = m.grants(bob.id).await.unwrap();
    assert_eq!((grants.len(), grants[0].path.as_str(), grants[0].write), (1, "~alice/shared", true));

    let open = upload(Some(300), ConcatKind::None, Some(alice.id));
    m.create_upload(&open, 0).await.unwrap();
    assert_eq!(m.open_uploads(alice.id).await.unwrap(), 1);
    m.record_tree_file("~alice/a", &TreeFileRecord { size: 200, mtime_ns: 1, sha256: [1; 32] }).await.unwrap();
    m.record_tree_file("~alice_b/x", &TreeFileRecord { size: 50, mtime_ns: 1, sha256: [2; 32] }).await.unwrap();
    let usage = m.usage_of(alice.id, "~alice").await.unwrap();
    assert_eq!(
        (usage.files, usage.staging),
        (200, 300),
        "{usage:?}: a sibling home with the same prefix is not alice's"
    );
    assert_eq!(m.usage(alice.id, "~alice").await.unwrap(), usage.total());

    assert!(m.remove_user("bob").await.unwrap());
    assert!(!m.remove_user("bob").await.unwrap());
    assert!(m.user_by_name("bob").await.unwrap().is_none());
    assert!(m.grants(bob.id).await.unwrap().is_empty(), "a removed user's grants go with them");
}

/// A relay upload becomes an item with deliveries in one step; deliveries move forward only.
async fn relay(m: &dyn Metadata) {
    m.add_user("sender", "h", false, None).await.unwrap();
    m.add_user("rcpt", "h", false, None).await.unwrap();
    let (sender, _) = m.user_by_name("sender").await.unwrap().unwrap();
    let (rcpt, _) = m.user_by_name("rcpt").await.unwrap().unwrap();
    let mut new = upload(Some(5), ConcatKind::None, Some(sender.id));
    new.tree_path = None;
    new.relay_to = Some(rcpt.id.to_string());
    m.create_upload(&new, 0).await.unwrap();
    let item = RelayItem {
        id: new.id.to_string(),
        sender: String::new(),
        name: "note.txt".into(),
        size: 5,
        sha256: [9; 32],
        created_at: 100,
        expires_at: 200,
        kind: ItemKind::File,
        continues: Some(Continuation { offset: 7, size: 12, sha256: [4; 32] }),
    };
    assert!(
        !m.complete_relay(&new.id, 3, &item, sender.id, &[rcpt.id], &Default::default()).await.unwrap(),
        "compare-and-set"
    );
    assert!(m.get(&new.id).await.unwrap().unwrap().state == UploadState::Active, "nothing changed");
    assert!(m.complete_relay(&new.id, 0, &item, sender.id, &[rcpt.id], &Default::default()).await.unwrap());
    assert_eq!(m.get(&new.id).await.unwrap().unwrap().state, UploadState::Complete);

    let inbox = m.relay_inbox(rcpt.id).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!((inbox[0].0.sender.as_str(), inbox[0].1), ("sender", DeliveryState::Waiting));
    assert_eq!((inbox[0].0.kind, inbox[0].0.continues), (item.kind, item.continues), "kind and continuation kept");
    assert!(m.relay_item_for(&item.id, sender.id).await.unwrap().is_some());
    assert!(m.relay_item_for(&item.id, rcpt.id).await.unwrap().is_some());
    assert!(m.relay_item_for(&item.id, 9_999).await.unwrap().is_none(), "nobody else sees it");
    assert_eq!(m.relay_sender(&item.id).await.unwrap().as_deref(), Some("sender"));

    assert!(!m.relay_item_done(&item.id).await.unwrap());
    assert!(m.set_delivery(&item.id, rcpt.id, DeliveryState::Downloading).await.unwrap());
    assert!(m.set_delivery(&item.id, rcpt.id, DeliveryState::Delivered).await.unwrap());
    assert!(!m.set_delivery(&item.id, rcpt.id, DeliveryState::Declined).await.unwrap(), "final states stay");
    assert!(m.relay_item_done(&item.id).await.unwrap());
    let outbox = m.relay_outbox(sender.id).await.unwrap();
    assert_eq!(outbox[0].1[0].state, DeliveryState::Delivered);
    assert_eq!(m.relay_deliveries(&item.id).await.unwrap().len(), 1);

    // An item nobody fetched expires with its open deliveries; a delivered one is left.
    let mut late = upload(Some(5), ConcatKind::None, Some(sender.id));
    late.tree_path = None;
    m.create_upload(&late, 0).await.unwrap();
    let waiting =
        RelayItem { id: late.id.to_string(), expires_at: 300, kind: ItemKind::Text, continues: None, ..item.clone() };
    assert!(m.complete_relay(&late.id, 0, &waiting, sender.id, &[rcpt.id], &Default::default()).await.unwrap());
    let stored = m.relay_item_for(&waiting.id, rcpt.id).await.unwrap().unwrap();
    assert_eq!((stored.kind, stored.continues), (ItemKind::Text, None));
    assert!(m.expire_relay_items(299).await.unwrap().is_empty());
    assert_eq!(m.expire_relay_items(301).await.unwrap(), vec![waiting.id.clone()], "not the delivered one");
    assert_eq!(m.relay_deliveries(&waiting.id).await.unwrap()[0].state, DeliveryState::Expired);
    assert!(m.relay_item_done(&waiting.id).await.unwrap());
    assert!(m.expire_relay_items(301).await.unwrap().is_empty(), "once");
}

/// Known digests are valid for one size and version only.
async fn tree_index(m: &dyn Metadata) {
    let rec = TreeFileRecord { size: 10, mtime_ns: 77, sha256: [5; 32] };
    m.record_tree_file("d/f", &rec).await.unwrap();
    assert_eq!(m.tree_file_digest("d/f", 10, 77).await.unwrap(), Some([5; 32]));
    assert_eq!(m.tree_file_digest("d/f", 10, 78).await.unwrap(), None, "another version");
    assert_eq!(m.tree_file_digest("d/f", 11, 77).await.unwrap(), None, "another size");
    assert_eq!(m.tree_paths_with_digest(&[5; 32], 10).await.unwrap(), vec!["d/f".to_owned()]);
    m.record_tree_file("d/f", &TreeFileRecord { size: 10, mtime_ns: 78, sha256: [6; 32] }).await.unwrap();
    assert!(m.tree_paths_with_digest(&[5; 32], 10).await.unwrap().is_empty(), "replaced");
}

/// Leases and fencing: one live lease at a time, a new token each time, and a commit that
/// carries a token no longer current changes nothing.
async fn leases_fence_commits(m: &dyn Metadata) {
    let new = upload(Some(100), ConcatKind::None, None);
    m.create_upload(&new, 0).await.unwrap();
    let id = &new.id;
    let t1 = m.acquire_lease(id, "node-a", 1_000, 1_030).await.unwrap().expect("free upload");
    assert!(m.acquire_lease(id, "node-b", 1_010, 1_040).await.unwrap().is_none(), "a live lease is exclusive");
    assert!(m.renew_lease(id, t1, 1_060).await.unwrap());
    // Node A pauses past its lease; node B takes over with a newer token.
    let t2 = m.acquire_lease(id, "node-b", 1_061, 1_090).await.unwrap().expect("an expired lease passes on");
    assert!(t2 > t1, "fencing tokens only grow");
    assert!(!m.renew_lease(id, t1, 1_100).await.unwrap(), "the old holder learns it lost the lease");
    let stale = Progress { lease_token: Some(t1), ..Default::default() };
    assert!(!m.commit_offset(id, 0, 10, None, &stale).await.unwrap(), "a stale token commits nothing");
    assert!(!m.complete(id, 0, 100, &[1; 32], None, None, &stale).await.unwrap());
    let current = Progress { lease_token: Some(t2), sha_state: Some(vec![7; 8]), ..Default::default() };
    assert!(m.commit_offset(id, 0, 10, None, &current).await.unwrap());
    let rec = m.get(id).await.unwrap().unwrap();
    assert_eq!((rec.offset, rec.sha_state), (10, Some(vec![7; 8])), "the hash state commits with the offset");
    m.release_lease(id, t2).await.unwrap();
    assert!(m.acquire_lease(id, "node-a", 1_062, 1_092).await.unwrap().is_some(), "a released lease is free");
}

fn prop(name: &str, value: &str) -> DeadProp {
    DeadProp {
        namespace: "urn:x".into(),
        name: name.into(),
        prefix: Some("x".into()),
        xml: Some(format!("<x:{name} xmlns:x=\"urn:x\">{value}</x:{name}>").into_bytes()),
    }
}

fn names(props: Vec<DeadProp>) -> Vec<String> {
    props.into_iter().map(|p| p.name).collect()
}

fn lock(token: &str, path: &str) -> StoredLock {
    StoredLock {
        token: token.into(),
        path: path.into(),
        url: format!("/dav/{path}"),
        principal: Some("alice".into()),
        owner_xml: Some("<D:owner xmlns:D=\"DAV:\">me</D:owner>".into()),
        timeout_at_ms: Some(1_000),
        timeout_ms: Some(600_000),
        shared: false,
        deep: true,
    }
}

/// WebDAV's state: dead properties in order, following moves and copies of a path and
/// everything below it (names that look like prefixes are not below: `d%` and `d_x` are
/// not under `d`), locks at and below a path, uploads in progress below a path.
async fn webdav_state(m: &dyn Metadata) {
    let set = |p: DeadProp| PropChange::Set(p);
    m.patch_dead_props("d/f", &[set(prop("a", "1")), set(prop("b", "2"))]).await.unwrap();
    m.patch_dead_props("d/f", &[set(prop("c", "3")), PropChange::Remove("urn:x".into(), "c".into())]).await.unwrap();
    assert_eq!(names(m.dead_props("d/f").await.unwrap()), ["a", "b"], "applied in order");
    m.patch_dead_props("d/f", &[set(prop("a", "one"))]).await.unwrap();
    let a = m.dead_props("d/f").await.unwrap().into_iter().find(|p| p.name == "a").unwrap();
    assert_eq!(a.xml.unwrap(), b"<x:a xmlns:x=\"urn:x\">one</x:a>", "replaced");
    m.patch_dead_props("d", &[set(prop("top", "t"))]).await.unwrap();
    m.patch_dead_props("d%", &[set(prop("lookalike", "l"))]).await.unwrap();
    m.patch_dead_props("d_x", &[set(prop("lookalike", "l"))]).await.unwrap();
    assert!(m.has_dead_props("d").await.unwrap() && !m.has_dead_props("e").await.unwrap());
    let mut below = m.dead_prop_paths("d").await.unwrap();
    below.sort();
    assert_eq!(below, ["d", "d/f"]);

    m.copy_dead_props("d", "c").await.unwrap();
    assert_eq!(names(m.dead_props("c/f").await.unwrap()), ["a", "b"]);
    assert_eq!(names(m.dead_props("c").await.unwrap()), ["top"]);
    m.move_dead_props("d", "e/d").await.unwrap();
    assert!(m.dead_props("d/f").await.unwrap().is_empty() && m.dead_props("d").await.unwrap().is_empty());
    assert_eq!(names(m.dead_props("e/d/f").await.unwrap()), ["a", "b"]);
    assert_eq!(names(m.dead_props("d%").await.unwrap()), ["lookalike"], "not below d");
    assert_eq!(names(m.dead_props("d_x").await.unwrap()), ["lookalike"], "not below d");
    m.move_dead_props("c", "e/d").await.unwrap();
    assert_eq!(names(m.dead_props("e/d").await.unwrap()), ["top"], "a move replaces what was at the target");
    m.remove_dead_props("e").await.unwrap();
    assert!(m.dead_props("e/d/f").await.unwrap().is_empty() && m.dead_props("e/d").await.unwrap().is_empty());
    let many: Vec<PropChange> = (0..=ferry_store::MAX_DEAD_PROPS).map(|i| set(prop(&format!("p{i}"), "v"))).collect();
    assert!(matches!(m.patch_dead_props("big", &many).await, Err(StoreError::Conflict(_))));
    assert!(m.dead_props("big").await.unwrap().is_empty(), "all or nothing");
    let huge = "v".repeat(300_000);
    let heavy: Vec<PropChange> = (0..4).map(|i| set(prop(&format!("h{i}"), &huge))).collect();
    assert!(matches!(m.patch_dead_props("big", &heavy).await, Err(StoreError::Conflict(_))), "bytes are bounded");
    m.patch_dead_props("big", &heavy[..3]).await.unwrap();

    assert!(!m.has_locks().await.unwrap());
    let rec = TreeFileRecord { size: 10, mtime_ns: 1, sha256: [9; 32] };
    m.record_tree_file("t/a", &rec).await.unwrap();
    m.record_tree_file("t%/a", &rec).await.unwrap();
    m.tree_files_copied("t", "u").await.unwrap();
    assert_eq!(m.tree_file_digest("u/a", 10, 1).await.unwrap(), Some([9; 32]));
    m.tree_files_moved("u", "v/u").await.unwrap();
    assert_eq!(m.tree_file_digest("u/a", 10, 1).await.unwrap(), None);
    assert_eq!(m.tree_file_digest("v/u/a", 10, 1).await.unwrap(), Some([9; 32]));
    m.tree_files_removed("t").await.unwrap();
    assert_eq!(m.tree_file_digest("t/a", 10, 1).await.unwrap(), None);
    assert_eq!(m.tree_file_digest("t%/a", 10, 1).await.unwrap(), Some([9; 32]), "not below t");

    assert!(!m.has_locks().await.unwrap());
    m.put_lock(&lock("t1", "d")).await.unwrap();
    assert!(m.has_locks().await.unwrap());
    m.put_lock(&lock("t2", "d/f")).await.unwrap();
    m.put_lock(&lock("t3", "d%/f")).await.unwrap();
    assert_eq!(m.locks_at("d").await.unwrap(), vec![lock("t1", "d")]);
    let below: Vec<String> = m.locks_below("d").await.unwrap().into_iter().map(|l| l.token).collect();
    assert_eq!(below, ["t2"]);
    assert_eq!(m.locks_below("").await.unwrap().len(), 3, "everything is below the root");
    let refreshed = StoredLock { timeout_at_ms: Some(9_000), ..lock("t1", "d") };
    m.put_lock(&refreshed).await.unwrap();
    assert_eq!(m.locks_at("d").await.unwrap(), vec![refreshed], "a refresh replaces the timeout");
    assert!(m.remove_lock("t1").await.unwrap() && !m.remove_lock("t1").await.unwrap());

    let mut to_tree = upload(Some(10), ConcatKind::None, Some(1));
    to_tree.tree_path = Some("w/x/y.bin".into());
    m.create_upload(&to_tree, 5).await.unwrap();
    let mut elsewhere = upload(Some(10), ConcatKind::None, Some(1));
    elsewhere.tree_path = Some("w%/y.bin".into());
    m.create_upload(&elsewhere, 6).await.unwrap();
    let ids = |v: Vec<ferry_store::UploadRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(m.uploads_in_progress("w").await.unwrap()), vec![to_tree.id.clone()]);
    assert_eq!(ids(m.uploads_in_progress("w/x/y.bin").await.unwrap()), vec![to_tree.id.clone()]);
    m.finish(&to_tree.id, UploadState::Terminated, None).await.unwrap();
    assert!(m.uploads_in_progress("w").await.unwrap().is_empty(), "only unfinished uploads");
}

async fn metadata_suite(m: Arc<dyn Metadata>) {
    m.ready().await.unwrap();
    uploads_life_cycle(&*m).await;
    leases_fence_commits(&*m).await;
    racing_commits_have_one_winner(m.clone()).await;
    concatenation(&*m).await;
    accounts(&*m).await;
    relay(&*m).await;
    tree_index(&*m).await;
    webdav_state(&*m).await;
    m.close().await;
    assert!(m.ready().await.is_err(), "a closed store is not ready");
}

/// Reads `len` bytes of an upload.
async fn read_upload(b: &dyn Blobs, id: &UploadId, host: Option<&(UploadId, u64)>, len: u64) -> Vec<u8> {
    let r = b.reader(id, host).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        r.scan(0, len, &mut |c| out.extend_from_slice(c)).unwrap();
        out
    })
    .await
    .unwrap()
}

/// One backend pair: the bytes, and the metadata their ledgers are committed to.
struct Store {
    b: Arc<dyn Blobs>,
    m: Arc<dyn Metadata>,
}

impl Store {
    /// A new upload of `length` bytes bound for `tree` (or kept, like a relay item or a
    /// partial upload), recorded and created.
    async fn new_upload(&self, length: Option<u64>, tree: Option<&str>) -> UploadId {
        let mut new = upload(length, ConcatKind::None, None);
        new.tree_path = tree.map(str::to_owned);
        self.m.create_upload(&new, 0).await.unwrap();
        self.b.create(&new.id, length == Some(0)).await.unwrap();
        new.id
    }

    /// Writes `bytes` at `offset` through a writer, as a request does: makes them durable,
    /// then commits (with the writer's ledger) and acknowledges them when `ack`, or
    /// discards them; returns the acknowledged offset. Each request's bytes go in as
    /// several writes, with background flushes.
    async fn write(&self, id: &UploadId, host: Option<&(UploadId, u64)>, offset: u64, bytes: &[u8], ack: bool) -> u64 {
        let mut w = self.b.writer(id, host, offset).await.unwrap();
        let bytes = bytes.to_vec();
        let (w, durable, blob) = tokio::task::spawn_blocking(move || {
            for piece in bytes.chunks(3 << 20) {
                w.write(piece).unwrap();
                let job = w.flush_job();
                let done = job.run();
                w.flushed(done).unwrap();
            }
            let durable = w.sync().unwrap();
            assert_eq!(durable, offset + bytes.len() as u64);
            let blob = w.progress(durable);
            (w, durable, blob)
        })
        .await
        .unwrap();
        if !ack {
            // A request that failed verification: nothing past the acknowledged offset stays.
            tokio::task::spawn_blocking(move || w.discard().unwrap()).await.unwrap();
            return offset;
        }
        let progress = Progress { blob, ..Default::default() };
        assert!(self.m.commit_offset(id, offset, durable, None, &progress).await.unwrap());
        let mut w = w;
        w.acknowledge(durable);
        w.acknowledged()
    }

    /// Records an upload complete at `length` (its bytes all acknowledged), with the
    /// destination it was created with, as the server does.
    async fn complete(&self, id: &UploadId, length: u64) {
        let dest = self.m.get(id).await.unwrap().unwrap().tree_path;
        let progress = Progress::default();
        assert!(self.m.complete(id, length, length, &[0; 32], dest.as_deref(), None, &progress).await.unwrap());
    }
}

/// Upload bytes: write, resume at the acknowledged offset, discard, publish, read back.
async fn upload_bytes(s: &Store) {
    let b = &*s.b;
    // Kept bytes (a relay item, a partial upload): read back where they are.
    let kept = s.new_upload(Some(11), None).await;
    assert_eq!(s.write(&kept, None, 0, b"hello ", true).await, 6);
    assert!(b.exists(&kept).await.unwrap());
    assert_eq!(s.write(&kept, None, 6, b"XXXX", false).await, 6, "a discarded request leaves nothing");
    // A writer at the acknowledged offset never sees a tail left past it.
    assert_eq!(s.write(&kept, None, 6, b"world", true).await, 11);
    s.complete(&kept, 11).await;
    assert_eq!(read_upload(b, &kept, None, 11).await, b"hello world");
    assert!(b.exists(&kept).await.unwrap());
    b.remove(&kept).await.unwrap();
    assert!(!b.exists(&kept).await.unwrap());

    // A file bound for the tree: invisible there until published, whole.
    let dest = TreePath::parse("docs/greeting.txt").unwrap();
    let id = s.new_upload(Some(11), Some("docs/greeting.txt")).await;
    assert_eq!(s.write(&id, None, 0, b"hello ", true).await, 6);
    assert_eq!(s.write(&id, None, 6, b"XXXX", false).await, 6);
    assert_eq!(s.write(&id, None, 6, b"world", true).await, 11);
    s.complete(&id, 11).await;
    assert!(b.exists(&id).await.unwrap());
    assert!(b.stat(&dest).await.unwrap().is_none(), "nothing in the tree before publication");
    b.check_placeable(&dest).await.unwrap();
    let placed = b.publish(&id, &dest).await.unwrap();
    assert_eq!((placed.size, placed.is_dir), (11, false));
    assert!(!b.exists(&id).await.unwrap(), "published bytes leave the uploads");
    let (r, stat) = b.open(&dest).await.unwrap();
    assert_eq!(stat, placed);
    let got = tokio::task::spawn_blocking(move || r.read_vec(6, 5).unwrap()).await.unwrap();
    assert_eq!(got, b"world");
    assert!(b.stat(&TreePath::parse("docs").unwrap()).await.unwrap().unwrap().is_dir);
    assert!(matches!(b.check_placeable(&TreePath::parse("docs").unwrap()).await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        b.check_placeable(&TreePath::parse("docs/greeting.txt/x").unwrap()).await,
        Err(StoreError::Conflict(_))
    ));

    // A second upload replaces the file whole.
    let id2 = s.new_upload(Some(3), Some("docs/greeting.txt")).await;
    s.write(&id2, None, 0, b"bye", true).await;
    s.complete(&id2, 3).await;
    assert_eq!(b.publish(&id2, &dest).await.unwrap().size, 3);
    let copy = TreePath::parse("docs/copy.txt").unwrap();
    assert_eq!(b.publish_copy(&dest, &copy).await.unwrap().size, 3);
    let (r, _) = b.open(&copy).await.unwrap();
    assert_eq!(tokio::task::spawn_blocking(move || r.read_vec(0, 3).unwrap()).await.unwrap(), b"bye");

    let names: Vec<_> = b.list(&TreePath::parse("docs").unwrap()).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["copy.txt", "greeting.txt"]);
    let deeper = TreePath::parse("docs/new/file").unwrap();
    assert_eq!(b.real_tree_path(&deeper).await.unwrap(), deeper, "names below the existing ones are kept");

    b.remove(&id2).await.unwrap();
    b.remove(&UploadId::random()).await.unwrap(); // missing is fine
    assert!(b.open(&TreePath::parse("nothing").unwrap()).await.is_err());

    // An upload that completes empty.
    let empty = s.new_upload(Some(0), None).await;
    s.complete(&empty, 0).await;
    assert!(read_upload(b, &empty, None, 0).await.is_empty());
}

/// An upload larger than object storage's parts, sent in requests that end anywhere (also
/// inside a part), with a discarded request between them whose bytes reached the store:
/// every byte comes back in order, once.
async fn large_upload_across_requests(s: &Store) {
    let len = 23 << 20;
    let data: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let id = s.new_upload(Some(len), Some("big/file.bin")).await;
    let cuts = [0, 5_000_001, 9_437_184, 17_000_003, len];
    for w in cuts.windows(2) {
        let (from, to) = (w[0] as usize, w[1] as usize);
        // Garbage first, discarded: the next writer starts at the acknowledged offset.
        let garbage = vec![0xEE; 9 << 20];
        assert_eq!(s.write(&id, None, from as u64, &garbage, false).await, from as u64);
        assert_eq!(s.write(&id, None, from as u64, &data[from..to], true).await, to as u64);
    }
    s.complete(&id, len).await;
    let dest = TreePath::parse("big/file.bin").unwrap();
    assert_eq!(s.b.publish(&id, &dest).await.unwrap().size, len);
    let (r, _) = s.b.open(&dest).await.unwrap();
    let back = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        r.scan(0, len, &mut |c| out.extend_from_slice(c)).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(back == data, "the bytes read back differ from those written");
}

/// Parts written straight into their final upload's blob, when the store can host them.
async fn hosted_parts(s: &Store) {
    let b = &*s.b;
    if !b.hosts_parts() {
        return;
    }
    let fin = UploadId::random();
    b.create_host(&fin, 10).await.unwrap();
    let (p1, p2) = (UploadId::random(), UploadId::random());
    let (h1, h2) = ((fin.clone(), 0), (fin.clone(), 4));
    let raw = |id: UploadId, host: (UploadId, u64), bytes: &'static [u8]| async move {
        let mut w = b.writer(&id, Some(&host), 0).await.unwrap();
        tokio::task::spawn_blocking(move || {
            w.write(bytes).unwrap();
            let at = w.sync().unwrap();
            w.acknowledge(at);
        })
        .await
        .unwrap();
    };
    raw(p2.clone(), h2.clone(), b"efghij").await;
    raw(p1.clone(), h1.clone(), b"abcd").await;
    assert_eq!(read_upload(b, &p2, Some(&h2), 6).await, b"efghij");
    assert_eq!(read_upload(b, &fin, None, 10).await, b"abcdefghij");
    b.remove(&fin).await.unwrap();
    assert!(matches!(b.writer(&p1, Some(&h1), 4).await, Err(StoreError::NotFound(_))), "the host is gone");
}

/// Files and directories managed in the tree: make, list, move, copy, remove.
async fn tree_management(s: &Store) {
    let b = &*s.b;
    let p = |t: &str| TreePath::parse(t).unwrap();
    let names = |dir: &'static str| async move {
        b.list(&TreePath::parse(dir).unwrap()).await.unwrap().into_iter().map(|e| e.name).collect::<Vec<_>>()
    };
    // A file to work with, published as an upload would be.
    let id = s.new_upload(Some(5), Some("m/a/f.txt")).await;
    s.write(&id, None, 0, b"12345", true).await;
    s.complete(&id, 5).await;
    b.publish(&id, &p("m/a/f.txt")).await.unwrap();

    b.make_dir(&p("m/empty"), false).await.unwrap();
    assert!(b.stat(&p("m/empty")).await.unwrap().unwrap().is_dir, "an empty directory exists");
    assert_eq!(names("m").await, ["a", "empty"]);
    assert!(names("m/empty").await.is_empty(), "no marker or temporary shows");
    assert!(matches!(b.make_dir(&p("m/empty"), false).await, Err(StoreError::Conflict(_))), "exists");
    assert!(matches!(b.make_dir(&p("m/x/y"), false).await, Err(StoreError::NotFound(_))), "no parent");
    b.make_dir(&p("m/x/y"), true).await.unwrap();
    assert!(b.make_dir(&p("m/a/f.txt/z"), true).await.is_err(), "a file is in the way");

    assert!(matches!(b.remove_path(&p("m/a"), false).await, Err(StoreError::Conflict(_))), "not empty");
    b.move_path(&p("m/a/f.txt"), &p("m/empty/g.txt"), false).await.unwrap();
    assert!(b.stat(&p("m/a/f.txt")).await.unwrap().is_none());
    assert!(b.stat(&p("m/a")).await.unwrap().unwrap().is_dir, "a directory outlives its last file");
    b.copy_path(&p("m/empty"), &p("m/copy"), false).await.unwrap();
    b.move_path(&p("m/empty"), &p("m/x/moved"), false).await.unwrap();
    assert!(matches!(b.move_path(&p("m/copy"), &p("m/x/moved"), false).await, Err(StoreError::Conflict(_))));
    assert!(matches!(b.move_path(&p("m/x"), &p("m/x/y/in"), true).await, Err(StoreError::Conflict(_))));
    for f in ["m/x/moved/g.txt", "m/copy/g.txt"] {
        let (r, stat) = b.open(&p(f)).await.unwrap();
        assert_eq!(stat.size, 5);
        assert_eq!(tokio::task::spawn_blocking(move || r.read_vec(0, 5).unwrap()).await.unwrap(), b"12345", "{f}");
    }
    assert_eq!(names("m").await, ["a", "copy", "x"]);
    b.remove_path(&p("m/a"), false).await.unwrap();
    b.remove_path(&p("m/copy/g.txt"), false).await.unwrap();
    assert!(b.stat(&p("m/copy")).await.unwrap().unwrap().is_dir);
    b.remove_path(&p("m"), true).await.unwrap();
    assert!(b.stat(&p("m")).await.unwrap().is_none());
    assert!(matches!(b.remove_path(&p("m"), true).await, Err(StoreError::NotFound(_))));
    assert!(b.remove_path(&TreePath::root(), true).await.is_err(), "the root stays");
}

async fn blobs_suite(b: Arc<dyn Blobs>, m: Arc<dyn Metadata>) {
    b.ready().await.unwrap();
    let s = Store { b, m };
    tree_management(&s).await;
    upload_bytes(&s).await;
    large_upload_across_requests(&s).await;
    hosted_parts(&s).await;
}

#[tokio::test]
async fn sqlite_metadata_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    metadata_suite(Arc::new(SqliteMeta::open(&tmp.path().join("ferry.db")).await.unwrap())).await;
}

#[tokio::test]
async fn local_blobs_conform() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Arc::new(SqliteMeta::open(&tmp.path().join("ferry.db")).await.unwrap());
    blobs_suite(Arc::new(LocalBlobs::open(tmp.path().join("staging"), tmp.path().join("files")).unwrap()), m).await;
}

/// PostgreSQL, when one is reachable: `FERRY_TEST_PG_URL` names a server (`postgres://user@host:port`,
/// no database); each run makes its own database there. `.ci/run` starts one and sets it.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_metadata_conforms() {
    use sqlx::Connection;
    let Some(server) = std::env::var("FERRY_TEST_PG_URL").ok().filter(|s| !s.is_empty()) else {
        eprintln!(
            "SKIPPED postgres_metadata_conforms: FERRY_TEST_PG_URL is not set (.ci/run starts PostgreSQL and sets it)"
        );
        return;
    };
    let server = server.trim_end_matches('/');
    let db = format!("ferry_conformance_{}", UploadId::random());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut admin).await.unwrap();
    let url = format!("{server}/{db}");
    // Two nodes starting at once migrate the schema once between them.
    let (a, b) = tokio::join!(ferry_store::PgMeta::open(&url), ferry_store::PgMeta::open(&url));
    b.unwrap().close().await;
    metadata_suite(Arc::new(a.unwrap())).await;
    // Local bytes with PostgreSQL metadata.
    let tmp = tempfile::tempdir().unwrap();
    let m = Arc::new(ferry_store::PgMeta::open(&url).await.unwrap());
    blobs_suite(Arc::new(LocalBlobs::open(tmp.path().join("staging"), tmp.path().join("files")).unwrap()), m.clone())
        .await;
    m.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}"))).execute(&mut admin).await.unwrap();
}

/// S3 bytes (moto, or any S3 endpoint) with SQLite metadata and, when a PostgreSQL is
/// reachable too, with PostgreSQL metadata. `FERRY_TEST_S3_ENDPOINT` names the endpoint;
/// the bucket `ferry-test` must exist there (`.ci/run` starts moto and creates it); each
/// run writes below its own prefix.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blobs_conform() {
    let Some(endpoint) = std::env::var("FERRY_TEST_S3_ENDPOINT").ok().filter(|s| !s.is_empty()) else {
        eprintln!("SKIPPED s3_blobs_conform: FERRY_TEST_S3_ENDPOINT is not set (.ci/run starts moto and sets it)");
        return;
    };
    let options = ferry_store::S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    };
    let url = format!("s3://ferry-test/conformance-{}", UploadId::random());
    let tmp = tempfile::tempdir().unwrap();
    let m: Arc<dyn Metadata> = Arc::new(SqliteMeta::open(&tmp.path().join("ferry.db")).await.unwrap());
    let b = ferry_store::S3Blobs::open(&url, &options, m.clone()).await.unwrap();
    blobs_suite(Arc::new(b), m).await;

    #[cfg(feature = "postgres")]
    if let Some(server) = std::env::var("FERRY_TEST_PG_URL").ok().filter(|s| !s.is_empty()) {
        use sqlx::Connection;
        let server = server.trim_end_matches('/');
        let db = format!("ferry_s3_{}", UploadId::random());
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut admin).await.unwrap();
        let m: Arc<dyn Metadata> = Arc::new(ferry_store::PgMeta::open(&format!("{server}/{db}")).await.unwrap());
        let url = format!("s3://ferry-test/conformance-pg-{}", UploadId::random());
        let b = ferry_store::S3Blobs::open(&url, &options, m.clone()).await.unwrap();
        blobs_suite(Arc::new(b), m.clone()).await;
        m.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}"))).execute(&mut admin).await.unwrap();
    } else {
        eprintln!("SKIPPED the PostgreSQL + S3 half of s3_blobs_conform: FERRY_TEST_PG_URL is not set");
    }
}
