//! The offline-file relay end to end with the real binary: send to an offline user,
//! restart, deliver, interrupt and resume, acknowledge, and only then delete; group sends,
//! decline, expiry, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

fn run(mut c: Command) -> (bool, String, String) {
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn relay_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("staging")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn offline_delivery_survives_a_restart_and_an_interrupted_download() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob"]);
    let listen = free_addr();
    let mut s = Server::start_on_auth(&listen, &data);
    let u = Users { dir: tmp.path().to_path_buf() };
    u.login("alice", &s.url());
    u.login("bob", &s.url());
    let file = tmp.path().join("report.bin");
    let content = test_data(24 << 20, 50);
    std::fs::write(&file, &content).unwrap();

    // bob is offline; alice sends.
    let (ok, out, err) = run({
        let mut c = u.cli("alice", &s.url());
        c.args(["send", "--json", "--to", "bob"]).arg(&file);
        c
    });
    assert!(ok, "{err}");
    let id = json_lines(&out)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(relay_files(&data), 1, "one stored copy");

    // The server restarts; bob comes online and sees it at once.
    s.kill9();
    s = Server::start_on_auth(&listen, &data);
    let (ok, out, _) = run({
        let mut c = u.cli("bob", &s.url());
        c.args(["inbox", "--json"]);
        c
    });
    assert!(ok);
    assert_eq!(json_lines(&out)[0]["id"], id.as_str());

    // bob's download is interrupted (slow link), then resumed.
    let proxy = Proxy::start(&s.addr, 4 << 20);
    u.login("bob", &proxy.url()); // tokens are kept per server address
    let got = tmp.path().join("got");
    let child = u
        .cli("bob", &proxy.url())
        .args(["receive", "--json", &id, "-o"])
        .arg(&got)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(30, "part of the item", || {
        std::fs::metadata(got.join("report.bin.ferry-partial")).is_ok_and(|m| m.len() > 4 << 20)
    });
    signal(child.id(), "INT");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    assert_eq!(relay_files(&data), 1, "nothing deleted before the acknowledgement");
    let (_, out, _) = run({
        let mut c = u.cli("alice", &s.url());
        c.args(["outbox", "--json"]);
        c
    });
    let rec = &json_lines(&out)[0]["recipients"][0];
    assert_eq!(rec["state"], "downloading");
    assert!(rec["bytes"].as_u64().unwrap() >= 4 << 20, "the sender sees the recipient's progress: {rec}");

    proxy.rate.store(0, Ordering::Relaxed);
    let (ok, out, err) = run({
        let mut c = u.cli("bob", &proxy.url());
        c.args(["receive", "--json", &id, "-o"]).arg(&got);
        c
    });
    assert!(ok, "{err}");
    let r = &json_lines(&out)[0];
    assert!(r["resumed_from"].as_u64().unwrap() >= 4 << 20, "{r}");
    assert_eq!(std::fs::read(got.join("report.bin")).unwrap(), content);
    assert_eq!(relay_files(&data), 0, "bytes deleted once the verified copy was acknowledged");
    let (_, out, _) = run({
        let mut c = u.cli("alice", &s.url());
        c.args(["outbox", "--json"]);
        c
    });
    assert_eq!(json_lines(&out)[0]["recipients"][0]["state"], "delivered");
}

#[test]
fn a_watching_recipient_gets_the_item_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob"]);
    let s = Server::start_auth(&data, &[]);
    let u = Users { dir: tmp.path().to_path_buf() };
    u.login("alice", &s.url());
    u.login("bob", &s.url());
    let mut watcher = u
        .cli("bob", &s.url())
        .args(["inbox", "--watch", "--json", "--receive-into"])
        .arg(tmp.path().join("auto"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    std::thread::sleep(Duration::from_millis(1000)); // bob is online
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, b"hello bob").unwrap();
    let (ok, _, err) = run({
        let mut c = u.cli("alice", &s.url());
        c.args(["send", "--to", "bob"]).arg(&file);
        c
    });
    let sent = Instant::now();
    assert!(ok, "{err}");
    // bob is online, so it went straight to his client (whose folder did not exist yet).
    assert!(err.contains("verified by their client") && !err.contains("broke"), "{err}");
    let (at, line) = rx.recv_timeout(Duration::from_secs(10)).expect("bob saw nothing");
    assert!(line.contains("hello.txt"), "{line}");
    assert!(at.saturating_duration_since(sent) < Duration::from_secs(1), "pushed within a second");
    wait_for(10, "auto-receive", || tmp.path().join("auto/hello.txt").exists());
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(std::fs::read(tmp.path().join("auto/hello.txt")).unwrap(), b"hello bob");
}

#[test]
fn group_send_decline_expiry_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob", "carol"]);
    let s = Server::start_auth(&data, &["--relay-ttl", "2s", "--sweep-interval", "1s"]);
    let u = Users { dir: tmp.path().to_path_buf() };
    for n in ["alice", "bob", "carol"] {
        u.login(n, &s.url());
    }
    let file = tmp.path().join("g.bin");
    std::fs::write(&file, test_data(100_000, 51)).unwrap();
    let send = |to: &str| {
        run({
            let mut c = u.cli("alice", &s.url());
            c.args(["send", "--json", "--to", to]).arg(&file);
            c
        })
    };
    // Group: one copy, gone only after the last recipient.
    let (ok, out, err) = send("bob,carol");
    assert!(ok, "{err}");
    let id = json_lines(&out)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(relay_files(&data), 1);
    let (ok, _, err) = run({
        let mut c = u.cli("bob", &s.url());
        c.args(["receive", "--all", "-o"]).arg(tmp.path().join("bob"));
        c
    });
    assert!(ok, "{err}");
    assert_eq!(relay_files(&data), 1, "carol has not had it yet");
    let (ok, _, err) = run({
        let mut c = u.cli("carol", &s.url());
        c.args(["decline", &id]);
        c
    });
    assert!(ok, "{err}");
    assert_eq!(relay_files(&data), 0, "gone after the last recipient ended");

    // Bad input: unknown recipient, forged ids, a wrong acknowledgement, someone else's item.
    let (ok, _, err) = send("nobody");
    assert!(!ok && err.contains("unknown recipient"), "{err}");
    let (_, out, _) = send("bob");
    let id2 = json_lines(&out)[0]["id"].as_str().unwrap().to_owned();
    let login = |n: &str| {
        let body = format!(r#"{{"user":"{n}","password":"{n}-pw"}}"#);
        let r = request(&s.addr, "POST", "/api/login", &[("Content-Type", "application/json")], body.as_bytes());
        format!("Bearer {}", serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["token"].as_str().unwrap())
    };
    let (bob, carol) = (login("bob"), login("carol"));
    let json = ("Content-Type", "application/json");
    let wrong = format!(r#"{{"sha256":"{}"}}"#, "00".repeat(32));
    let r = request(
        &s.addr,
        "POST",
        &format!("/api/relay/items/{id2}/ack"),
        &[json, ("Authorization", &bob)],
        wrong.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r =
        request(&s.addr, "POST", &format!("/api/relay/items/{id2}/decline"), &[json, ("Authorization", &carol)], b"{}");
    assert_eq!(r.status, 404, "not carol's item");
    let r = request(&s.addr, "GET", &format!("/api/relay/items/{id2}/content"), &[("Authorization", &carol)], b"");
    assert_eq!(r.status, 404);
    let r = request(
        &s.addr,
        "POST",
        "/api/relay/items/..%2F..%2Fetc/ack",
        &[json, ("Authorization", &bob)],
        wrong.as_bytes(),
    );
    assert!(r.status == 404 || r.status == 400, "{}", r.status);
    let inbox = request(&s.addr, "GET", "/api/relay/inbox", &[("Authorization", &bob)], b"").text();
    assert!(inbox.contains(&id2), "the wrong ack changed nothing: {inbox}");

    // Expiry: after 2 s the item expires and its bytes go; the sender sees it.
    wait_for(15, "expiry", || relay_files(&data) == 0);
    let (_, out, _) = run({
        let mut c = u.cli("alice", &s.url());
        c.args(["outbox", "--json"]);
        c
    });
    let item = json_lines(&out).into_iter().find(|v| v["id"] == id2.as_str()).unwrap();
    assert_eq!(item["recipients"][0]["state"], "expired");
}

#[test]
fn presence_follows_the_watcher_and_notices_it_gone_within_three_heartbeats() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob"]);
    let s = Server::start_auth(&data, &["--heartbeat", "1s"]);
    let u = Users { dir: tmp.path().to_path_buf() };
    u.login("alice", &s.url());
    u.login("bob", &s.url());
    let body = r#"{"user":"alice","password":"alice-pw"}"#;
    let r = request(&s.addr, "POST", "/api/login", &[("Content-Type", "application/json")], body.as_bytes());
    let alice =
        format!("Bearer {}", serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["token"].as_str().unwrap());
    let online = || {
        let r = request(&s.addr, "GET", "/api/presence/bob", &[("Authorization", &alice)], b"");
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["online"].as_bool().unwrap()
    };
    assert!(!online(), "bob has never been online");
    let mut watcher =
        u.cli("bob", &s.url()).args(["inbox", "--watch"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(10, "bob online", online);
    std::thread::sleep(Duration::from_millis(3500));
    assert!(online(), "a watching client keeps reporting");
    watcher.kill().unwrap(); // SIGKILL: no goodbye
    let _ = watcher.wait();
    let gone = Instant::now();
    wait_for(10, "bob offline", || !online());
    assert!(gone.elapsed() < Duration::from_secs(5), "noticed within three 1 s heartbeats (plus polling)");
}
