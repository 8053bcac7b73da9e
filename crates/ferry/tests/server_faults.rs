//! Issue 7: server faults under ferry's own client at its defaults. The server is killed
//! with SIGKILL (or stopped with SIGTERM) at random moments of a 1 GiB transfer and started
//! again on the same address; the client must carry on by itself, finish with the right
//! SHA-256, and re-send at most one bounded chunk per fault:
//! max(64 MiB, 2 s of transfer at the rate used). The seed is printed (FERRY_TEST_SEED
//! replays it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::thread;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

const SIZE: usize = 1 << 30;
/// The client's rate cap, so that ten faults land inside the transfer.
const RATE: u64 = 80 << 20;

fn seed() -> u64 {
    let seed = std::env::var("FERRY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("FERRY_TEST_SEED={seed}");
    seed
}

/// The most one fault may cost: max(64 MiB, 2 s of transfer).
fn bound() -> u64 {
    (64u64 << 20).max(2 * RATE)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Term,
}

/// Faults the server at random moments (0.4–1.6 s apart) while `client` runs, restarting it
/// on the same address each time; returns how many faults were made.
fn fault_until_done(s: &mut Server, client: &mut Child, fault: Fault, max: usize, rng: &mut impl Rng) -> usize {
    let mut faults = 0;
    while faults < max {
        thread::sleep(Duration::from_millis(rng.random_range(400..1600)));
        if client.try_wait().unwrap().is_some() {
            break;
        }
        match fault {
            Fault::Kill => s.kill9(),
            Fault::Term => assert!(s.terminate(), "ferry serve exits cleanly on SIGTERM"),
        }
        faults += 1;
        thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        s.restart();
    }
    faults
}

fn upload_under_faults(fault: Fault, extra: &[&str]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let tmp = tempfile::tempdir().unwrap();
    let data = test_data(SIZE, 71);
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let listen = free_addr();
    let mut s = Server::start_on(&listen, &tmp.path().join("data"), &[]);
    let mut child = client(&tmp.path().join("state"))
        .args(["upload", "--json", "--limit-rate", &RATE.to_string(), "--server", &s.url()])
        .args(extra)
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let faults = fault_until_done(&mut s, &mut child, fault, 10, &mut rng);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the client finished by itself: {}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    let sent = v["sent"].as_u64().unwrap();
    let resent = sent.saturating_sub(SIZE as u64);
    eprintln!(
        "{fault:?} {extra:?}: {faults} faults, {sent} bytes sent for {SIZE} ({resent} re-sent, {} per fault, bound {})",
        resent / faults.max(1) as u64,
        bound()
    );
    assert!(faults >= 5, "the transfer outlived at least five faults ({faults})");
    assert!(resent <= faults as u64 * bound(), "{resent} bytes re-sent after {faults} faults: {v}");
    if let Fault::Term = fault {
        // A graceful stop drains: the PATCH in flight ends on time and is kept whole.
        assert!(resent <= faults as u64 * (32 << 20), "{resent} bytes re-sent after {faults} SIGTERMs: {v}");
    }
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["sha256"], sha256_hex(&data));
    let placed = std::fs::read(s.tree_file("big.bin")).unwrap();
    assert!(placed == data, "the placed file differs");
}

#[test]
fn upload_survives_kill_9_of_the_server_at_ten_random_points() {
    upload_under_faults(Fault::Kill, &[]);
}

#[test]
fn upload_survives_sigterm_restarts_of_the_server() {
    upload_under_faults(Fault::Term, &[]);
}

#[test]
fn parallel_upload_survives_kill_9_of_the_server() {
    upload_under_faults(Fault::Kill, &["--parallel", "4"]);
}

/// Puts a 1 GiB file into the server's tree through ferry (so its digest is known).
fn seed_file(s: &Server, tmp: &Path, data: &[u8]) {
    let file = tmp.join("seed.bin");
    std::fs::write(&file, data).unwrap();
    let out = client(&tmp.join("seed-state")).args(["upload", "--server", &s.url()]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(file).unwrap();
}

#[test]
fn segmented_download_survives_kill_9_and_sigterm_of_the_server() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let tmp = tempfile::tempdir().unwrap();
    let data = test_data(SIZE, 72);
    let listen = free_addr();
    let mut s = Server::start_on(&listen, &tmp.path().join("data"), &[]);
    seed_file(&s, tmp.path(), &data);
    for (fault, name) in [(Fault::Kill, "k.bin"), (Fault::Term, "t.bin")] {
        let out_path = tmp.path().join(name);
        let mut child = client(&tmp.path().join("state"))
            .args(["download", "--json", "-j", "4", "--limit-rate", &RATE.to_string(), "--server", &s.url()])
            .args(["seed.bin", "-o"])
            .arg(&out_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let faults = fault_until_done(&mut s, &mut child, fault, 10, &mut rng);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{fault:?}: {}", String::from_utf8_lossy(&out.stderr));
        let v = json_of(&out);
        let fetched = v["fetched"].as_u64().unwrap();
        eprintln!("download {fault:?}: {faults} faults, {fetched} bytes fetched for {SIZE}");
        assert!(faults >= 5, "the download outlived at least five faults ({faults})");
        // A download keeps every byte that arrived: a fault costs at most what was in flight.
        assert!(fetched <= SIZE as u64 + faults as u64 * (8 << 20), "{fetched} fetched after {faults} faults");
        assert_eq!(v["verified"], true, "{v}");
        let got = std::fs::read(&out_path).unwrap();
        assert!(got == data, "{fault:?}: the downloaded file differs");
        std::fs::remove_file(&out_path).unwrap();
    }
}

#[test]
fn relay_receive_survives_kill_9_of_the_server() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    Users::add(&data_dir, &["alice", "bob"]);
    let users = Users { dir: tmp.path().to_path_buf() };
    let listen = free_addr();
    let mut s = Server::start_on_auth(&listen, &data_dir);
    users.login("alice", &s.url());
    users.login("bob", &s.url());
    let data = test_data(SIZE / 2, 73);
    let file = tmp.path().join("gift.bin");
    std::fs::write(&file, &data).unwrap();
    let out = users.cli("alice", &s.url()).args(["send", "--to", "bob"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inbox = tmp.path().join("inbox");
    let mut child = users
        .cli("bob", &s.url())
        .args(["receive", "--all", "--json", "--limit-rate", &RATE.to_string(), "-o"])
        .arg(&inbox)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let faults = fault_until_done(&mut s, &mut child, Fault::Kill, 10, &mut rng);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    let fetched = v["fetched"].as_u64().unwrap();
    eprintln!("receive Kill: {faults} faults, {fetched} bytes fetched for {}", data.len());
    assert!(faults >= 3, "the receive outlived at least three faults ({faults})");
    assert!(fetched <= data.len() as u64 + faults as u64 * (8 << 20), "{fetched} fetched after {faults} faults");
    assert_eq!(v["sha256"], sha256_hex(&data));
    assert!(std::fs::read(inbox.join("gift.bin")).unwrap() == data);
    // The acknowledgement arrived: the item left bob's inbox and its bytes were released.
    let out = users.cli("bob", &s.url()).args(["inbox", "--json"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}
