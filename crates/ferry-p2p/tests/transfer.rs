//! The transfer protocol between two real iroh endpoints through ferry's embedded relay, on
//! loopback (endpoints bound to 127.0.0.1, no port mapping: nothing leaves the machine): direct and relay-only paths, resume after a cut connection (only the missing
//! chunks travel again), a corrupted chunk re-fetched, a peer whose chunks never verify.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_core::chunks::{MIN_CHUNK, Manifest};
use ferry_p2p::endpoint::{self, PathKind, Paths};
use ferry_p2p::transfer::{self, Incoming, Received, Report, Sent};
use ferry_p2p::{ALPN, EmbeddedRelay, P2pError};
use iroh::Endpoint;
use iroh::endpoint::Connection;
use sha2::{Digest, Sha256};

/// A stop signal that never comes.
fn never() -> &'static tokio_util::sync::CancellationToken {
    static NEVER: std::sync::OnceLock<tokio_util::sync::CancellationToken> = std::sync::OnceLock::new();
    NEVER.get_or_init(tokio_util::sync::CancellationToken::new)
}

async fn relay() -> EmbeddedRelay {
    let local = "127.0.0.1:0".parse().unwrap();
    EmbeddedRelay::spawn(local, local, vec!["127.0.0.1".into()], Arc::new(iroh_relay::server::AllowAll)).await.unwrap()
}

async fn pair(relay: &EmbeddedRelay, paths: Paths) -> (Endpoint, Endpoint) {
    let a = endpoint::bind(relay.info(), None, paths).await.unwrap();
    let b = endpoint::bind(relay.info(), None, paths).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), b.online()).await.expect("b reaches the relay");
    (a, b)
}

/// Connects a to b (b's relay address, plus its direct ones when it has any).
async fn connect(a: &Endpoint, b: &Endpoint, relay: &EmbeddedRelay) -> (Connection, Connection) {
    let mut addr = endpoint::peer_addr(b.id(), relay.info());
    for ip in b.addr().ip_addrs() {
        addr = addr.with_ip_addr(*ip);
    }
    let accept = async {
        let incoming = b.accept().await.expect("an incoming connection");
        incoming.await.expect("accepted")
    };
    let (out, inc) = tokio::join!(a.connect(addr, ALPN), accept);
    (out.unwrap(), inc)
}

fn file_of(dir: &std::path::Path, len: usize, seed: u8) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| ((i * 31) as u8).wrapping_add(seed)).collect();
    let path = dir.join(format!("src-{seed}.bin"));
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// The file out of what a receive returned (errors pass through).
async fn file(r: impl Future<Output = Result<Incoming, P2pError>>) -> Result<Received, P2pError> {
    r.await.map(|i| match i {
        Incoming::File(r) => r,
        Incoming::Text(t) => panic!("a file was expected, a message came: {t}"),
    })
}

fn small_chunks(data: &[u8]) -> Manifest {
    Manifest::build(data, MIN_CHUNK).unwrap()
}

async fn transfer_over(paths: Paths) {
    let nothing = Report::default();
    let relay = relay().await;
    let (a, b) = pair(&relay, paths).await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = file_of(tmp.path(), 3 * 1024 * 1024 + 5, 1);
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let (ca, cb) = connect(&a, &b, &relay).await;
    let expected = |name: &str, size: u64| name == "big.bin" && size == data.len() as u64;
    let (sent, got) = tokio::join!(
        transfer::send(&ca, &src, "big.bin", &nothing),
        file(transfer::receive(&cb, &inbox, &expected, &|_| {}, &|_| {}, never()))
    );
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(got.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    assert_eq!(std::fs::read(inbox.join("big.bin")).unwrap(), data);
    assert_eq!((sent.chunks, sent.bytes, sent.skipped), (4, data.len() as u64, 0));
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 1, "no partial or state file left");
    let want = if paths == Paths::Loopback { PathKind::Direct } else { PathKind::Relay };
    assert_eq!(endpoint::path_kind(&ca), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_verified_directly() {
    transfer_over(Paths::Loopback).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_verified_through_the_relay_alone() {
    transfer_over(Paths::RelayOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_transfer_resumes_with_only_the_missing_chunks() {
    let nothing = Report::default();
    let relay = relay().await;
    let (a, b) = pair(&relay, Paths::Loopback).await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = file_of(tmp.path(), 2 * 1024 * 1024, 2);
    let manifest = small_chunks(&data); // 128 chunks of 16 KiB
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();

    // First attempt: the connection breaks the moment the receiver holds 40 chunks (closed
    // from its side, inside its own progress report, so the cut cannot come too late).
    let (ca, cb) = connect(&a, &b, &relay).await;
    let watch = |held: u64| {
        if held >= 40 * 16384 {
            cb.close(0u32.into(), b"cut");
        }
    };
    let report = Report::default();
    let (sent, got) = tokio::join!(
        transfer::send_with(&ca, &src, "f.bin", &manifest, &report, None, &|_, d| d),
        file(transfer::receive(&cb, &inbox, &|_, _| true, &watch, &|_| {}, never()))
    );
    assert!(sent.is_err() && got.is_err(), "both sides see the cut: {sent:?} {got:?}");
    assert!(!inbox.join("f.bin").exists(), "nothing half-written takes the name");
    // What the sender heard confirmed (if anything reached it before the abrupt close) is
    // never more than the receiver holds.
    let confirmed = report.confirmed.load(Ordering::SeqCst);
    let (held, sha) = transfer::partial_of(&inbox, "f.bin").expect("the interrupted transfer is on record");
    assert_eq!(sha, manifest.sha256);
    assert!(confirmed <= held && held >= 40 * 16384, "confirmed {confirmed}, held {held}");

    // Second attempt: what was synced is skipped.
    let (ca, cb) = connect(&a, &b, &relay).await;
    let (sent, got) = tokio::join!(
        transfer::send_with(&ca, &src, "f.bin", &manifest, &nothing, None, &|_, d| d),
        file(transfer::receive(&cb, &inbox, &|_, _| true, &|_| {}, &|_| {}, never()))
    );
    let (sent, got): (Sent, _) = (sent.unwrap(), got.unwrap());
    assert!(got.resumed_from >= 40 * 16384, "what arrived before the cut was kept: {}", got.resumed_from);
    assert_eq!(sent.skipped * 16384, got.resumed_from);
    assert_eq!(sent.chunks + sent.skipped, manifest.count(), "each missing chunk sent once");
    assert_eq!(std::fs::read(inbox.join("f.bin")).unwrap(), data);
    eprintln!("resumed at {} of {} bytes; {} chunks sent again", got.resumed_from, data.len(), sent.chunks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chunk_is_refused_and_fetched_again_and_a_liar_gets_nothing_in() {
    let nothing = Report::default();
    let relay = relay().await;
    let (a, b) = pair(&relay, Paths::Loopback).await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = file_of(tmp.path(), 300_000, 3);
    let manifest = small_chunks(&data);
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();

    let once = AtomicBool::new(true);
    let flip_once = |i: u64, mut d: Vec<u8>| {
        if i == 5 && once.swap(false, Ordering::SeqCst) {
            d[100] ^= 0xff;
        }
        d
    };
    let (ca, cb) = connect(&a, &b, &relay).await;
    let (sent, got) = tokio::join!(
        transfer::send_with(&ca, &src, "c.bin", &manifest, &nothing, None, &flip_once),
        file(transfer::receive(&cb, &inbox, &|_, _| true, &|_| {}, &|_| {}, never()))
    );
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!((got.rejected, sent.chunks), (1, manifest.count() + 1), "chunk 5 travelled twice");
    assert_eq!(std::fs::read(inbox.join("c.bin")).unwrap(), data);

    // A peer whose chunk never matches its own manifest gets nothing placed.
    let always = |i: u64, mut d: Vec<u8>| {
        if i == 2 {
            d[0] ^= 1;
        }
        d
    };
    let (ca, cb) = connect(&a, &b, &relay).await;
    let (sent, got) = tokio::join!(
        transfer::send_with(&ca, &src, "l.bin", &manifest, &nothing, None, &always),
        file(transfer::receive(&cb, &inbox, &|_, _| true, &|_| {}, &|_| {}, never()))
    );
    assert!(matches!(got, Err(P2pError::Verification(_))), "{got:?}");
    assert!(sent.is_err());
    assert!(!inbox.join("l.bin").exists());

    // And a receiver may decline.
    let (ca, cb) = connect(&a, &b, &relay).await;
    let (sent, got) = tokio::join!(
        transfer::send(&ca, &src, "no.bin", &nothing),
        file(transfer::receive(&cb, &inbox, &|_, _| false, &|_| {}, &|_| {}, never()))
    );
    assert_eq!((sent, got.map(|_| ())), (Err(P2pError::Declined), Err(P2pError::Declined)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_transfer_is_finished_from_the_rest_kept_elsewhere() {
    let relay = relay().await;
    let (a, b) = pair(&relay, Paths::Loopback).await;
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = file_of(tmp.path(), 1024 * 1024 + 77, 4);
    let manifest = small_chunks(&data);
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    // The receiver's user quits while 20 of 65 chunks are in: it tells the sender what it
    // keeps, exactly.
    let (ca, cb) = connect(&a, &b, &relay).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let watch = |held: u64| {
        if held >= 20 * 16384 {
            stop.cancel();
        }
    };
    let report = Report::default();
    let (sent, got) = tokio::join!(
        transfer::send_with(&ca, &src, "g.bin", &manifest, &report, None, &|_, d| d),
        file(transfer::receive(&cb, &inbox, &|_, _| true, &watch, &|_| {}, &stop))
    );
    assert!(sent.is_err() && got.is_err());
    let at = report.confirmed.load(Ordering::SeqCst);
    assert_eq!(Some(at), transfer::partial_of(&inbox, "g.bin").map(|(held, _)| held), "told exactly");
    assert!(at >= 20 * 16384, "{at}");
    let tail = tmp.path().join("tail");

    // A rest that begins past what the receiver holds cannot finish it.
    std::fs::write(&tail, &data[data.len() - 10..]).unwrap();
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let r = transfer::complete_from_tail(&inbox, "g.bin", &tail, data.len() as u64 - 10, &sha);
    assert!(matches!(r, Err(P2pError::Protocol(_))), "{r:?}");
    // A wrong rest is caught by the whole file's SHA-256, and nothing takes the name.
    let mut bad = data[at as usize..].to_vec();
    bad[3] ^= 1;
    std::fs::write(&tail, &bad).unwrap();
    let r = transfer::complete_from_tail(&inbox, "g.bin", &tail, at, &sha);
    assert!(matches!(r, Err(P2pError::Verification(_))), "{r:?}");
    assert!(!inbox.join("g.bin").exists());
    // The right rest from where the sender was told the receiver's disk got.
    std::fs::write(&tail, &data[at as usize..]).unwrap();
    let got = transfer::complete_from_tail(&inbox, "g.bin", &tail, at, &sha).unwrap();
    assert_eq!((got.size, got.resumed_from), (data.len() as u64, at));
    assert_eq!(std::fs::read(inbox.join("g.bin")).unwrap(), data);
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 1, "no partial or state file left");
    assert!(transfer::partial_of(&inbox, "g.bin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_is_acknowledged_once_shown() {
    let relay = relay().await;
    let (a, b) = pair(&relay, Paths::Loopback).await;
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cb) = connect(&a, &b, &relay).await;
    let shown = std::sync::Mutex::new(Vec::new());
    let show = |t: &str| shown.lock().unwrap().push(t.to_owned());
    let (sent, got) = tokio::join!(
        transfer::send_text(&ca, "the keys are under the mat"),
        transfer::receive(&cb, tmp.path(), &|_, _| true, &|_| {}, &show, never())
    );
    sent.unwrap();
    assert_eq!(got.unwrap(), Incoming::Text("the keys are under the mat".into()));
    assert_eq!(*shown.lock().unwrap(), ["the keys are under the mat"]);
    let long = "x".repeat(transfer::MAX_TEXT + 1);
    assert!(matches!(transfer::send_text(&ca, &long).await, Err(P2pError::Protocol(_))));
}
