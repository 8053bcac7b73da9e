//! Issue 8, items 1 and 3: instant upload (dedup) needs the bytes and reveals nothing it
//! should not, and quotas hold at every acknowledged byte, across parallel requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::Path;

use common::*;
use ferry_core::digest::possession_proof;
use sha2::{Digest, Sha256};

/// A tus request as `user`.
fn tus_as(addr: &str, user: &str, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Resp {
    let auth = basic_auth(user);
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(extra);
    tus(addr, method, path, &h, body)
}

/// Uploads `data` as `user` to `name` in their home, in one request.
fn put(addr: &str, user: &str, name: &str, data: &[u8]) {
    let len = data.len().to_string();
    let md = metadata(&[("filename", name.as_bytes())]);
    let h = [
        ("Upload-Length", len.as_str()),
        ("Upload-Metadata", &md),
        ("Content-Type", "application/offset+octet-stream"),
    ];
    let r = tus_as(addr, user, "POST", "/tus/", &h, data);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.offset(), Some(data.len() as u64), "{}", r.text());
}

/// `POST /api/dedup` as `user` for content `data` placed at `name`.
fn begin(addr: &str, user: &str, data: &[u8], name: &str) -> Resp {
    let body = serde_json::json!({ "size": data.len(), "sha256": sha256_hex(data), "filename": name });
    let auth = basic_auth(user);
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    request(addr, "POST", "/api/dedup", &h, body.to_string().as_bytes())
}

/// The challenge id, nonce and ranges of a 200 answer.
fn challenge(r: &Resp) -> (String, Vec<u8>, Vec<(u64, u64)>) {
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let nonce = v["nonce"].as_str().unwrap();
    let nonce = (0..nonce.len()).step_by(2).map(|i| u8::from_str_radix(&nonce[i..i + 2], 16).unwrap()).collect();
    let ranges = v["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["offset"].as_u64().unwrap(), r["length"].as_u64().unwrap()))
        .collect();
    (v["challenge"].as_str().unwrap().to_owned(), nonce, ranges)
}

/// Proofs made from the bytes, as an honest client does.
fn proofs(data: &[u8], nonce: &[u8], ranges: &[(u64, u64)]) -> Vec<String> {
    ranges.iter().map(|&(o, l)| possession_proof(nonce, o, &data[o as usize..(o + l) as usize])).collect()
}

fn prove(addr: &str, user: &str, id: &str, proofs: &[String]) -> Resp {
    let auth = basic_auth(user);
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let body = serde_json::json!({ "proofs": proofs }).to_string();
    request(addr, "POST", &format!("/api/dedup/{id}"), &h, body.as_bytes())
}

fn home_file(data: &Path, user: &str, rel: &str) -> std::path::PathBuf {
    data.join("files").join(format!("~{user}")).join(rel)
}

#[test]
fn dedup_needs_the_bytes_and_in_user_mode_tells_nobody_what_others_have() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob"]);
    let s = Server::start_auth(&data, &[]);
    let secret = b"alice's secret: the code is 4711-xyz".to_vec();
    let big = test_data(2 << 20, 81);
    put(&s.addr, "alice", "secret.txt", &secret);
    put(&s.addr, "alice", "big.bin", &big);

    // bob knows both hashes: "not yours" reads exactly like "unknown".
    let unknown = begin(&s.addr, "bob", &test_data(2 << 20, 82), "x.bin");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    for (content, name) in [(&secret, "stolen.txt"), (&big, "stolen.bin")] {
        let r = begin(&s.addr, "bob", content, name);
        assert_eq!((r.status, r.text()), (404, unknown.text()), "another user's file must look unknown");
        assert!(!home_file(&data, "bob", name).exists());
    }

    // alice reuses her own copy, but only with the bytes in hand.
    let (id, nonce, ranges) = challenge(&begin(&s.addr, "alice", &big, "again.bin"));
    assert_eq!(ranges.len(), 4);
    assert!(ranges.iter().all(|&(_, l)| l <= big.len() as u64 / 32), "ranges much shorter than the file: {ranges:?}");
    let plain: Vec<String> = ranges.iter().map(|&(o, l)| sha256_hex(&big[o as usize..(o + l) as usize])).collect();
    assert_eq!(prove(&s.addr, "alice", &id, &plain).status, 403, "plain range hashes are no proof");
    let (id, nonce2, ranges) = challenge(&begin(&s.addr, "alice", &big, "again.bin"));
    assert_ne!(nonce, nonce2, "every challenge has its own nonce");
    // Someone else cannot answer alice's challenge, even with the right proofs.
    let good = proofs(&big, &nonce2, &ranges);
    assert_eq!(prove(&s.addr, "bob", &id, &good).status, 404);
    let (id, nonce, ranges) = challenge(&begin(&s.addr, "alice", &big, "again.bin"));
    let r = prove(&s.addr, "alice", &id, &proofs(&big, &nonce, &ranges));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(std::fs::read(home_file(&data, "alice", "again.bin")).unwrap(), big);
    assert_eq!(tus(&s.addr, "OPTIONS", "/tus/", &[], b"").status, 204, "server still answering");
}

#[test]
fn global_dedup_keeps_small_files_private_and_counts_the_quota_when_proven() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    Users::add_with_quota(&data, "carol", "3M");
    let s = Server::start_auth(&data, &["--dedup", "global"]);
    let secret = b"alice's secret: the code is 4711-xyz".to_vec();
    let big = test_data(2 << 20, 83);
    put(&s.addr, "alice", "secret.txt", &secret);
    put(&s.addr, "alice", "big.bin", &big);

    // Below the size threshold nothing is reused across users, and it looks unknown.
    let unknown = begin(&s.addr, "carol", b"something nobody has, 36 bytes long", "u.txt");
    let r = begin(&s.addr, "carol", &secret, "stolen.txt");
    assert_eq!((r.status, r.text()), (404, unknown.text()));

    // Proofs are bound to their challenge's nonce: one challenge's proofs fail another.
    let (id1, nonce1, ranges1) = challenge(&begin(&s.addr, "carol", &big, "a.bin"));
    let (id2, _, _) = challenge(&begin(&s.addr, "carol", &big, "a.bin"));
    let replay = prove(&s.addr, "carol", &id2, &proofs(&big, &nonce1, &ranges1));
    assert_eq!(replay.status, 403, "{}", replay.text());
    drop(id1);

    // Two challenges both admitted (2 MiB of 3 MiB), proven at once: one copy fits.
    let a = challenge(&begin(&s.addr, "carol", &big, "a.bin"));
    let b = challenge(&begin(&s.addr, "carol", &big, "b.bin"));
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let statuses: Vec<u16> = [a, b]
        .into_iter()
        .map(|(id, nonce, ranges)| {
            let (addr, big, start) = (s.addr.clone(), big.clone(), start.clone());
            std::thread::spawn(move || {
                let proofs = proofs(&big, &nonce, &ranges);
                start.wait();
                prove(&addr, "carol", &id, &proofs).status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![201, 413], "the quota holds at proof time: {statuses:?}");
    let placed = ["a.bin", "b.bin"].iter().filter(|n| home_file(&data, "carol", n).exists()).count();
    assert_eq!(placed, 1);
}

#[test]
fn quota_holds_under_parallel_creations_and_for_relay_items_to_oneself() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add_with_quota(&data, "carol", "2M");
    let s = Server::start_auth(&data, &[]);
    // 32 creations of 500,000 bytes at once against 2 MiB: exactly four fit. (The first
    // request has the password verified and remembered, so the others arrive together.)
    let auth = basic_auth("carol");
    assert_eq!(request(&s.addr, "GET", "/api/me", &[("Authorization", auth.as_str())], b"").status, 200);
    let start = std::sync::Arc::new(std::sync::Barrier::new(32));
    let created: Vec<Resp> = (0..32)
        .map(|_| {
            let (addr, start) = (s.addr.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                tus_as(&addr, "carol", "POST", "/tus/", &[("Upload-Length", "500000")], b"")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let ok: Vec<&Resp> = created.iter().filter(|r| r.status == 201).collect();
    assert_eq!(ok.len(), 4, "{:?}", created.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(created.iter().all(|r| r.status == 201 || r.status == 413));
    for r in ok {
        let loc = r.header("location").unwrap();
        let path = loc.split_once("/tus/").map(|(_, id)| format!("/tus/{id}")).unwrap();
        assert_eq!(tus_as(&s.addr, "carol", "DELETE", &path, &[], b"").status, 204);
    }

    // A relay item sent to oneself and never fetched still counts.
    let item = test_data(1_500_000, 84);
    let md = metadata(&[("filename", b"self.bin"), ("relay_to", b"carol")]);
    let h =
        [("Upload-Length", "1500000"), ("Upload-Metadata", &md), ("Content-Type", "application/offset+octet-stream")];
    let r = tus_as(&s.addr, "carol", "POST", "/tus/", &h, &item);
    assert_eq!((r.status, r.offset()), (201, Some(1_500_000)), "{}", r.text());
    let r = tus_as(&s.addr, "carol", "POST", "/tus/", &[("Upload-Length", "1000000")], b"");
    assert_eq!(r.status, 413, "1.5 MB waiting in the relay + 1 MB > 2 MiB: {}", r.text());
}

#[test]
fn bytes_of_a_deferred_length_count_before_the_length_is_declared() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add_with_quota(&data, "carol", "2M");
    let s = Server::start_auth(&data, &[]);
    let deferred = || {
        let r = tus_as(&s.addr, "carol", "POST", "/tus/", &[("Upload-Defer-Length", "1")], b"");
        assert_eq!(r.status, 201, "{}", r.text());
        let loc = r.header("location").unwrap().to_owned();
        loc.split_once("/tus/").map(|(_, id)| format!("/tus/{id}")).unwrap()
    };
    let ct = ("Content-Type", "application/offset+octet-stream");
    // 3 MB without a declared length into a 2 MiB quota: refused, nothing acknowledged.
    let a = deferred();
    let r = tus_as(&s.addr, "carol", "PATCH", &a, &[("Upload-Offset", "0"), ct], &test_data(3_000_000, 85));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(tus_as(&s.addr, "carol", "HEAD", &a, &[], b"").offset(), Some(0));
    // 1.5 MB stored without a length counts: 1 MB more does not fit.
    let r = tus_as(&s.addr, "carol", "PATCH", &a, &[("Upload-Offset", "0"), ct], &test_data(1_500_000, 86));
    assert_eq!(r.status, 204, "{}", r.text());
    let r = tus_as(&s.addr, "carol", "POST", "/tus/", &[("Upload-Length", "1000000")], b"");
    assert_eq!(r.status, 413, "{}", r.text());
    // ...nor in another deferred upload.
    let b = deferred();
    let r = tus_as(&s.addr, "carol", "PATCH", &b, &[("Upload-Offset", "0"), ct], &test_data(1_000_000, 87));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(tus_as(&s.addr, "carol", "HEAD", &b, &[], b"").offset(), Some(0));
}

#[test]
fn unfinished_uploads_of_a_user_without_quota_are_bounded_too() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["dave"]);
    let s = Server::start_auth(&data, &["--max-staging", "3M"]);
    let create = |len: &str| tus_as(&s.addr, "dave", "POST", "/tus/", &[("Upload-Length", len)], b"").status;
    assert_eq!(create("2000000"), 201);
    assert_eq!(create("2000000"), 413, "the staging limit holds without a quota");
    // Finished files are not staging: after the first upload completes, more fit.
    let done = test_data(1_000_000, 88);
    put(&s.addr, "dave", "done.bin", &done);
    assert_eq!(Sha256::digest(std::fs::read(home_file(&data, "dave", "done.bin")).unwrap()), Sha256::digest(&done));
    assert_eq!(create("1000000"), 201);
}

/// Found by `ferry upload -r` with 8 files at once: an upload counted neither as unfinished
/// nor as a file between its completion and its placement, so creations admitted in that
/// moment overran the quota (6 files of 20 KiB stored under 100 KiB).
#[test]
fn a_folder_uploaded_several_files_at_a_time_stays_within_the_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add_with_quota(&data, "carol", "100K");
    let s = Server::start_auth(&data, &[]);
    let u = Users { dir: tmp.path().to_path_buf() };
    u.login("carol", &s.url());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..16 {
        std::fs::write(src.join(format!("f{i:02}.bin")), test_data(20 << 10, i)).unwrap();
    }
    for round in 0..3 {
        let o = u
            .cli("carol", &s.url())
            .args(["upload", "-r", "--jobs", "8", "--dir", &format!("r{round}")])
            .arg(&src)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4), "the quota stops it: {}", String::from_utf8_lossy(&o.stderr));
        let home = data.join("files/~carol");
        let stored: u64 = walk_sizes(&home);
        assert!(stored <= 100 << 10, "round {round}: {stored} bytes stored under a 100 KiB quota");
    }
}

fn walk_sizes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk_sizes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}
