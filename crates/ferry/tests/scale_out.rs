//! Two `ferry serve` nodes on one PostgreSQL and one S3 bucket (moto), as a load balancer
//! would see them: an upload survives the `kill -9` of the node it started on, two writers
//! on two nodes never corrupt an upload, and files download from either node.
//!
//! Needs `FERRY_TEST_PG_URL` (a PostgreSQL server) and `FERRY_TEST_S3_ENDPOINT` (an S3
//! endpoint with the bucket `ferry-test`); `.ci/run` starts both. Without them each test
//! prints SKIPPED.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

/// The shared services, or why the test is skipped.
struct Cluster {
    server: String,
    db: String,
    config: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn new(test: &str) -> Option<Cluster> {
        let pg = std::env::var("FERRY_TEST_PG_URL").ok().filter(|s| !s.is_empty());
        let s3 = std::env::var("FERRY_TEST_S3_ENDPOINT").ok().filter(|s| !s.is_empty());
        let (Some(pg), Some(s3)) = (pg, s3) else {
            eprintln!("SKIPPED {test}: FERRY_TEST_PG_URL and FERRY_TEST_S3_ENDPOINT are needed (.ci/run sets both)");
            return None;
        };
        let server = pg.trim_end_matches('/').to_owned();
        let db = format!("ferry_{test}_{}", std::process::id());
        psql(&server, &format!("DROP DATABASE IF EXISTS {db}"));
        psql(&server, &format!("CREATE DATABASE {db}"));
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("ferry.toml");
        std::fs::write(
            &config,
            format!(
                "database = \"{server}/{db}\"\nblobs = \"s3://ferry-test/{db}\"\ns3_endpoint = \"{s3}\"\n\
                 s3_region = \"us-east-1\"\ns3_access_key_id = \"test\"\ns3_secret_access_key = \"test\"\n"
            ),
        )
        .unwrap();
        Some(Cluster { server, db, config, _tmp: tmp })
    }

    /// A node with its own (tiny) data directory.
    fn node(&self, data: &Path, listen: &str) -> Server {
        Server::start_on(listen, data, &["--config", self.config.to_str().unwrap()])
    }

    /// A node with accounts on.
    fn node_auth(&self, data: &Path) -> Server {
        Server::start_auth(data, &["--config", self.config.to_str().unwrap()])
    }

    /// Adds a user (password `{name}-pw`) to the shared database.
    fn add_user(&self, name: &str) {
        let mut c = Command::new(ferry_bin())
            .args(["user", "add", name, "--password-stdin", "--database", &format!("{}/{}", self.server, self.db)])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(c.stdin.take().unwrap(), "{name}-pw").unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        psql(&self.server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db));
    }
}

fn psql(server: &str, sql: &str) {
    let out = Command::new("psql").args(["-d", &format!("{server}/postgres"), "-Atc", sql]).output().unwrap();
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
}

/// A round-robin TCP balancer: each connection goes to the next upstream that accepts it.
struct Balancer {
    addr: String,
}

impl Balancer {
    fn start(upstreams: Vec<String>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let next = Arc::new(AtomicUsize::new(0));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let start = next.fetch_add(1, Ordering::Relaxed);
                let upstream = (0..upstreams.len())
                    .find_map(|i| TcpStream::connect(&upstreams[(start + i) % upstreams.len()]).ok());
                let Some(upstream) = upstream else { continue };
                pipe(client, upstream);
            }
        });
        Balancer { addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (mut a, mut b) = (a, b);
    thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b);
        let _ = b.shutdown(std::net::Shutdown::Both);
        let _ = a.shutdown(std::net::Shutdown::Both);
    });
    thread::spawn(move || {
        let _ = std::io::copy(&mut b2, &mut a2);
        let _ = a2.shutdown(std::net::Shutdown::Both);
        let _ = b2.shutdown(std::net::Shutdown::Both);
    });
}

fn get(addr: &str, path: &str) -> Vec<u8> {
    let resp = request(addr, "GET", path, &[], b"");
    assert_eq!(resp.status, 200, "GET {path} on {addr}: {}", resp.text());
    resp.body
}

#[test]
fn an_upload_goes_on_through_another_node_after_a_kill9() {
    let Some(cluster) = Cluster::new("scale_kill") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let mut a = cluster.node(&tmp.path().join("a"), &a_addr);
    let b = cluster.node(&tmp.path().join("b"), &b_addr);
    let lb = Balancer::start(vec![a_addr.clone(), b_addr.clone()]);

    let bytes = test_data(40 << 20, 91);
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let state = tmp.path().join("state");
    // Through the balancer (requests alternate between the nodes), slow enough that the
    // kill lands mid-upload; the client runs at its defaults otherwise.
    let up = client(&state)
        .args(["upload", "--json", "--limit-rate", "8M", "--server", &lb.url()])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(2500));
    a.kill9();
    let out = up.wait_with_output().unwrap();
    assert!(out.status.success(), "the upload finished through node B: {}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["verified"], true, "{v}");
    let want = sha256_hex(&bytes);
    assert_eq!(v["sha256"].as_str(), Some(want.as_str()), "{v}");

    // Node A comes back: the file is served by both nodes, whole.
    let a = cluster.node(&tmp.path().join("a"), &a_addr);
    for node in [&a, &b] {
        let got = get(&node.addr, "/files/big.bin");
        assert!(got == bytes, "node {} serves the uploaded file", node.addr);
    }
    let part = request(&b.addr, "GET", "/files/big.bin", &[("Range", "bytes=10000000-10000099")], b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, bytes[10_000_000..10_000_100]);
}

#[test]
fn two_writers_on_two_nodes_never_corrupt_an_upload() {
    let Some(cluster) = Cluster::new("scale_race") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (cluster.node(&tmp.path().join("a"), &free_addr()), cluster.node(&tmp.path().join("b"), &free_addr()));
    let bytes = test_data(20 << 20, 17);
    let len = bytes.len().to_string();
    let name = metadata(&[("filename", b"race.bin")]);
    let path = create(&a.addr, &[("Upload-Length", &len), ("Upload-Metadata", &name)]);

    // Writer 1 on node A: 12 MiB sent, the rest held back (a slow client).
    let first = 12 << 20;
    let mut w1 = open_patch(&a.addr, &path, 0, bytes.len() as u64, &bytes[..first], &[]);
    thread::sleep(Duration::from_millis(1500));
    // Writer 2 on node B, at the same offset 0: it asks node A to let go.
    let w2 = patch(&b.addr, &path, 0, &bytes, &[]);
    let _ = w1.write_all(b"");
    let mut raw = Vec::new();
    let _ = w1.read_to_end(&mut raw);
    let w1 = parse_response(&raw);
    let statuses = (w1.status, w2.status);
    assert!(
        [409, 423].contains(&w1.status) || [409, 423].contains(&w2.status),
        "one writer loses with 409 or 423: {statuses:?}"
    );
    // Whatever each side got, the upload resumes from its committed offset and completes.
    let at = head_offset(&b.addr, &path).unwrap();
    assert_eq!(at, first as u64, "node A kept (and acknowledged) what writer 1 had sent when it let go");
    let done = patch(&b.addr, &path, at, &bytes[at as usize..], &[]);
    assert_eq!(done.status, 204, "{}", done.text());
    let got = get(&a.addr, "/files/race.bin");
    assert_eq!(sha256_hex(&got), sha256_hex(&bytes), "every byte once, in order");
}

#[test]
fn a_relay_send_on_one_node_reaches_a_watcher_on_the_other_within_a_second() {
    let Some(cluster) = Cluster::new("scale_events") else { return };
    let tmp = tempfile::tempdir().unwrap();
    cluster.add_user("alice");
    cluster.add_user("bob");
    let (a, b) = (cluster.node_auth(&tmp.path().join("a")), cluster.node_auth(&tmp.path().join("b")));

    // Bob watches his events on node B.
    let mut stream = TcpStream::connect(&b.addr).unwrap();
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nAccept: text/event-stream\r\n\r\n",
        b.addr,
        basic_auth("bob")
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                return;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("event: hello") {
                let _ = tx.send(("hello", std::time::Instant::now()));
                seen = seen.replacen("event: hello", "", 1);
            }
            if seen.contains("event: item") {
                let _ = tx.send(("item", std::time::Instant::now()));
                return;
            }
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().0, "hello", "bob's stream on node B is open");
    // Node A knows bob is online (his stream is on node B).
    wait_for(5, "node A sees bob online", || {
        let r = request(&a.addr, "GET", "/api/presence/bob", &[("Authorization", &basic_auth("alice"))], b"");
        r.status == 200 && r.text().contains("\"online\":true")
    });

    // Alice sends through node A.
    let users = Users { dir: tmp.path().join("cli") };
    users.login("alice", &a.url());
    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"for bob, through node A").unwrap();
    let out = users.cli("alice", &a.url()).args(["send", "--to", "bob"]).arg(&file).output().unwrap();
    let sent = std::time::Instant::now();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (what, at) = rx.recv_timeout(Duration::from_secs(5)).expect("bob's watcher on node B got the item");
    assert_eq!(what, "item");
    let late = at.saturating_duration_since(sent);
    assert!(late < Duration::from_secs(1), "the item reached node B {late:?} after the send ended");
}
