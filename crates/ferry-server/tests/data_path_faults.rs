//! Fault injection on the data path (issue 7): the staging writer is made to fail (sync
//! error, full disk, short writes) under the real router, and the upload must never
//! acknowledge a byte the disk may have lost, must answer with the right status, must be
//! left clean (staging cut back to the acknowledged offset) and must resume afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use ferry_server::{AppState, ServerConfig, app};
use ferry_store::{FaultPlan, LocalBlobs};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn state(faults: &Arc<FaultPlan>, commit_every: u64) -> (tempfile::TempDir, AppState) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.auth = false;
    config.commit_every_bytes = commit_every;
    let mut state = AppState::open(config, CancellationToken::new()).await.unwrap();
    let local = LocalBlobs::open(state.config.data_dir.join("staging"), state.config.tree_dir()).unwrap();
    state.blobs = Arc::new(local.with_faults(faults.clone()));
    (tmp, state)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

async fn create(s: &AppState, len: usize, name: &str) -> String {
    use base64::Engine;
    let md = format!("filename {}", base64::engine::general_purpose::STANDARD.encode(name));
    let r = app(s.clone())
        .oneshot(
            Request::post("/tus/")
                .header("tus-resumable", "1.0.0")
                .header("upload-length", len.to_string())
                .header("upload-metadata", md)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// A PATCH whose body arrives in 1 MiB frames (so background flushes run while it streams).
async fn patch(s: &AppState, loc: &str, offset: usize, bytes: &[u8]) -> (StatusCode, String) {
    let frames: Vec<Result<Bytes, std::io::Error>> =
        bytes.chunks(1 << 20).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let r = app(s.clone())
        .oneshot(
            Request::patch(loc)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", offset.to_string())
                .header("content-type", "application/offset+octet-stream")
                .body(Body::from_stream(futures_util::stream::iter(frames)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status();
    let body = http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn head_offset(s: &AppState, loc: &str) -> u64 {
    let r = app(s.clone())
        .oneshot(Request::head(loc).header("tus-resumable", "1.0.0").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
}

fn staged_len(s: &AppState, loc: &str) -> u64 {
    let id = ferry_core::UploadId::parse(loc.trim_start_matches("/tus/")).unwrap();
    // The local store's layout: one file per upload under DATA/staging.
    std::fs::metadata(s.config.data_dir.join("staging").join(format!("{id}.part"))).unwrap().len()
}

fn placed(s: &AppState, name: &str) -> Vec<u8> {
    std::fs::read(s.config.tree_dir().join(name)).unwrap()
}

#[tokio::test]
async fn a_failed_final_sync_acknowledges_nothing_and_the_upload_resumes() {
    let faults = Arc::new(FaultPlan::default());
    let (_t, s) = state(&faults, 64 << 20).await;
    let bytes = data(3 << 20);
    let loc = create(&s, bytes.len(), "sync.bin").await;
    faults.fail_syncs(1);
    let (status, reason) = patch(&s, &loc, 0, &bytes).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{reason}");
    assert!(reason.lines().count() == 1 && reason.contains("discarded"), "one-line reason: {reason:?}");
    assert_eq!(head_offset(&s, &loc).await, 0, "bytes whose sync failed were acknowledged");
    assert_eq!(staged_len(&s, &loc), 0, "the unacknowledged bytes were not cut back");
    let (status, reason) = patch(&s, &loc, 0, &bytes).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reason}");
    assert_eq!(placed(&s, "sync.bin"), bytes);
}

#[tokio::test]
async fn a_failed_background_flush_is_final_even_when_later_syncs_succeed() {
    let faults = Arc::new(FaultPlan::default());
    // Commit as often as possible: a flushed prefix would be acknowledged at once.
    let (_t, s) = state(&faults, 1).await;
    let bytes = data(48 << 20);
    let loc = create(&s, bytes.len(), "flush.bin").await;
    faults.fail_syncs(1); // the first background flush (at 16 MiB) fails; later ones would succeed
    let (status, reason) = patch(&s, &loc, 0, &bytes).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{reason}");
    let offset = head_offset(&s, &loc).await;
    assert_eq!(offset, 0, "after a failed flush nothing may be acknowledged, yet {offset} was");
    assert_eq!(staged_len(&s, &loc), 0);
    let (status, reason) = patch(&s, &loc, 0, &bytes).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reason}");
    assert_eq!(placed(&s, "flush.bin"), bytes);
}

#[tokio::test]
async fn a_full_disk_answers_507_keeps_a_clean_state_and_resumes_after_space_is_freed() {
    let faults = Arc::new(FaultPlan::default());
    let (_t, s) = state(&faults, 4 << 20).await;
    let bytes = data(40 << 20);
    let loc = create(&s, bytes.len(), "full.bin").await;
    // The first 20 MiB go through (and are acknowledged every 4 MiB as flushes finish).
    faults.limit_space(20 << 20);
    let (status, reason) = patch(&s, &loc, 0, &bytes).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{reason}");
    let offset = head_offset(&s, &loc).await;
    assert!(offset <= 20 << 20);
    assert_eq!(staged_len(&s, &loc), offset, "staging holds exactly the acknowledged bytes");
    faults.limit_space(u64::MAX);
    let (status, reason) = patch(&s, &loc, offset as usize, &bytes[offset as usize..]).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reason}");
    assert_eq!(placed(&s, "full.bin"), bytes);
}

#[tokio::test]
async fn short_writes_store_every_byte_in_order() {
    let faults = Arc::new(FaultPlan::default());
    faults.short_writes(true);
    let (_t, s) = state(&faults, 64 << 20).await;
    let bytes = data(20 << 20);
    let loc = create(&s, bytes.len(), "short.bin").await;
    let half = 7 << 20;
    assert_eq!(patch(&s, &loc, 0, &bytes[..half]).await.0, StatusCode::NO_CONTENT);
    assert_eq!(head_offset(&s, &loc).await, half as u64);
    assert_eq!(patch(&s, &loc, half, &bytes[half..]).await.0, StatusCode::NO_CONTENT);
    assert_eq!(placed(&s, "short.bin"), bytes);
}
