//! Durability under `kill -9` and cut connections (DESIGN.md §4.1).
//!
//! A 200 MiB upload is streamed while the server is killed with SIGKILL at 20 random
//! moments and restarted each time. After every restart HEAD's offset must never go back,
//! and the staged bytes up to it must be exactly the bytes sent. The finished file's
//! SHA-256 must match. The seed is printed so a failure can be replayed (FERRY_TEST_SEED).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    let seed = std::env::var("FERRY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("FERRY_TEST_SEED={seed}");
    seed
}

/// Streams `data[offset..]` as one PATCH at about `rate` bytes/s until the server dies.
fn stream_rest(addr: String, loc: String, data: Arc<Vec<u8>>, offset: usize, rate: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Ok(mut st) =
            std::panic::catch_unwind(|| open_patch(&addr, &loc, offset as u64, (data.len() - offset) as u64, b"", &[]))
        else {
            return;
        };
        let step = 256 << 10;
        let pause = Duration::from_secs_f64(step as f64 / rate as f64);
        for chunk in data[offset..].chunks(step) {
            if st.write_all(chunk).is_err() {
                return;
            }
            thread::sleep(pause);
        }
        let _ = read_response(&mut st);
    })
}

#[test]
fn kill_9_at_20_random_points_loses_no_acknowledged_byte() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(test_data(200 << 20, 2));
    let mut s = Server::start(&tmp.path().join("data"), &["--commit-every", "4M"]);
    let md = metadata(&[("filename", b"crash.bin")]);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string()), ("Upload-Metadata", &md)]);
    let id = loc.trim_start_matches("/tus/").to_owned();
    let mut acked = 0u64;
    let mut kills = 0;
    while kills < 20 {
        let h = tus(&s.addr, "HEAD", &loc, &[], b"");
        assert_eq!(h.status, 200, "{}", h.text());
        let off = h.offset().unwrap();
        assert!(off >= acked, "offset went back from {acked} to {off}");
        acked = off;
        if off < data.len() as u64 {
            let staged = std::fs::read(s.staging_file(&id)).unwrap();
            assert!(staged.len() as u64 >= off, "acknowledged {off} but only {} bytes on disk", staged.len());
            assert!(staged[..off as usize] == data[..off as usize], "staged bytes differ from what was sent");
        }
        let writer = (off < data.len() as u64)
            .then(|| stream_rest(s.addr.clone(), loc.clone(), data.clone(), off as usize, 60 << 20));
        thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        s.kill9();
        kills += 1;
        if let Some(w) = writer {
            w.join().unwrap();
        }
        s.restart();
    }
    let off = head_offset(&s.addr, &loc).unwrap();
    assert!(off >= acked);
    eprintln!("after {kills} kills the server holds {off} of {} bytes", data.len());
    if off < data.len() as u64 {
        let r = patch(&s.addr, &loc, off, &data[off as usize..], &[]);
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let placed = std::fs::read(s.tree_file("crash.bin")).unwrap();
    assert_eq!(sha256_hex(&placed), sha256_hex(&data));
}

#[test]
fn connections_cut_at_random_byte_counts_keep_exactly_what_arrived() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(8 << 20, 3);
    let md = metadata(&[("filename", b"cut.bin")]);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string()), ("Upload-Metadata", &md)]);
    let mut offset = 0usize;
    for _ in 0..10 {
        let n = rng.random_range(1..(data.len() - offset) / 4);
        let st = open_patch(&s.addr, &loc, offset as u64, (data.len() - offset) as u64, &data[offset..offset + n], &[]);
        thread::sleep(Duration::from_millis(50));
        cut(st);
        wait_for(10, "the cut PATCH to commit", || head_offset(&s.addr, &loc) != Some(offset as u64));
        let now = head_offset(&s.addr, &loc).unwrap() as usize;
        assert_eq!(now, offset + n, "cut after {n} bytes");
        offset = now;
    }
    assert_eq!(patch(&s.addr, &loc, offset as u64, &data[offset..], &[]).status, 204);
    assert_eq!(std::fs::read(s.tree_file("cut.bin")).unwrap(), data);
}

#[test]
fn recovery_records_the_digest_of_a_file_renamed_just_before_a_crash() {
    use ferry_store::{ConcatKind, Metadata, NewUpload, SqliteMeta, UploadStore};
    use sha2::Digest;
    // The state a crash leaves between the rename into the tree and the digest record:
    // the upload is complete but not marked placed, its staging file is gone, and the file
    // is in the tree.
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(data_dir.join("files")).unwrap();
    let content = b"renamed, then the power went";
    let sha: [u8; 32] = sha2::Sha256::digest(content).into();
    std::fs::write(data_dir.join("files/found.txt"), content).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let meta = SqliteMeta::open(&data_dir.join("ferry.db")).await.unwrap();
        let id = ferry_core::UploadId::random();
        let new = NewUpload {
            id: id.clone(),
            length: Some(content.len() as u64),
            metadata: String::new(),
            concat: ConcatKind::None,
            expires_at: None,
            owner: None,
            tree_path: Some("found.txt".into()),
            relay_to: None,
        };
        meta.create_upload(&new, 0).await.unwrap();
        assert!(
            meta.complete(&id, 0, content.len() as u64, &sha, Some("found.txt"), None, &Default::default())
                .await
                .unwrap()
        );
        meta.close().await;
    });
    let s = Server::start(&data_dir, &[]);
    let r = request(&s.addr, "HEAD", "/files/found.txt", &[], b"");
    assert_eq!(r.status, 200);
    let digest = r.header("repr-digest").unwrap_or_else(|| panic!("no Repr-Digest: {:?}", r.headers));
    assert!(digest.contains(&base64_of(&sha)), "{digest}");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
