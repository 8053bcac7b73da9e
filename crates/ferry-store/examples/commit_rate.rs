//! Metadata writes per second under many concurrent uploads (bench row M1).
//!
//! `cargo run --release -p ferry-store --example commit_rate -- [UPLOADS] [ROUNDS] [DIR]`
//! creates UPLOADS uploads at once, then has each commit its offset ROUNDS times (each
//! commit waits for the previous one of its upload, as a PATCH does), all uploads at
//! once; then one upload alone commits ROUNDS × 10 times. Prints one line:
//! `creates_per_s commits_per_s lone_commits_per_s` — the database file lives in DIR
//! (default: a temporary directory), which should be on the disk being measured.

use std::time::Instant;

use ferry_core::UploadId;
use ferry_store::{ConcatKind, Metadata, NewUpload, SqliteMeta, UploadStore};

fn upload(i: usize) -> NewUpload {
    NewUpload {
        id: UploadId::random(),
        length: Some(1 << 20),
        metadata: format!("filename {i}"),
        concat: ConcatKind::None,
        expires_at: None,
        owner: None,
        tree_path: None,
        relay_to: None,
    }
}

async fn commit_rounds(meta: &SqliteMeta, id: &UploadId, rounds: u64) {
    for r in 0..rounds {
        assert!(meta.commit_offset(id, r, r + 1, None, &Default::default()).await.expect("commit"), "commit refused");
    }
}

async fn run(uploads: usize, rounds: u64, dir: &std::path::Path) -> (f64, f64, f64) {
    let meta = SqliteMeta::open(&dir.join("meta.db")).await.expect("open");
    let news: Vec<NewUpload> = (0..uploads).map(upload).collect();
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for new in news.clone() {
        let meta = meta.clone();
        tasks.spawn(async move { meta.create_upload(&new, 0).await.expect("create") });
    }
    tasks.join_all().await;
    let creates = uploads as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for new in &news {
        let (meta, id) = (meta.clone(), new.id.clone());
        tasks.spawn(async move { commit_rounds(&meta, &id, rounds).await });
    }
    tasks.join_all().await;
    let commits = (uploads as u64 * rounds) as f64 / t.elapsed().as_secs_f64();

    let lone = upload(uploads);
    meta.create_upload(&lone, 0).await.expect("create");
    let t = Instant::now();
    commit_rounds(&meta, &lone.id, rounds * 10).await;
    let lone_rate = (rounds * 10) as f64 / t.elapsed().as_secs_f64();
    meta.close().await;
    (creates, commits, lone_rate)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let uploads: usize = args.next().map_or(10_000, |a| a.parse().expect("UPLOADS is a number"));
    let rounds: u64 = args.next().map_or(5, |a| a.parse().expect("ROUNDS is a number"));
    let tmp = tempfile::tempdir_in(args.next().unwrap_or_else(|| std::env::temp_dir().display().to_string()))
        .expect("temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (creates, commits, lone) = rt.block_on(run(uploads, rounds, tmp.path()));
    println!("{creates:.0} {commits:.0} {lone:.0}");
}
