//! Issue 10, first steps: `ferry send --via direct|auto` to a user whose `ferry inbox --watch
//! --receive-into DIR` is running, through the server's embedded relay and registry, against
//! the real binary (endpoints on loopback only: `FERRY_P2P_PATHS=loopback`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn direct(mut c: Command) -> Command {
    c.env("FERRY_P2P_PATHS", "loopback");
    c
}

/// alice and bob with accounts on a server with a 1 s heartbeat, both logged in, and an
/// empty folder for bob's inbox.
struct Pair {
    tmp: tempfile::TempDir,
    srv: Server,
    u: Users,
    inbox: std::path::PathBuf,
}

impl Pair {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        Users::add(&data, &["alice", "bob"]);
        let srv = Server::start_auth(&data, &["--heartbeat", "1s"]);
        let u = Users { dir: tmp.path().to_path_buf() };
        u.login("alice", &srv.url());
        u.login("bob", &srv.url());
        let inbox = tmp.path().join("bob-inbox");
        std::fs::create_dir(&inbox).unwrap();
        Self { tmp, srv, u, inbox }
    }
}

fn peer_online(addr: &str, user: &str) -> bool {
    request(addr, "GET", &format!("/api/p2p/peers/{user}"), &[("Authorization", &basic_auth("alice"))], b"").status
        == 200
}

#[test]
fn a_file_goes_straight_to_a_watching_user_and_through_the_server_when_they_are_gone() {
    let pair = Pair::new();
    let (tmp, srv, server, u, inbox) = (&pair.tmp, &pair.srv, pair.srv.url(), &pair.u, pair.inbox.clone());
    let mut watcher = direct(u.cli("bob", &server))
        .args(["inbox", "--watch", "--json", "--receive-into"])
        .arg(&inbox)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(20, "bob's client registered for direct transfers", || peer_online(&srv.addr, "bob"));
    // Presence says he is online and names the endpoint that takes direct transfers.
    let alice = [("Authorization", basic_auth("alice"))];
    let alice: Vec<(&str, &str)> = alice.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let presence: serde_json::Value =
        serde_json::from_str(&request(&srv.addr, "GET", "/api/presence/bob", &alice, b"").text()).unwrap();
    let peer: serde_json::Value =
        serde_json::from_str(&request(&srv.addr, "GET", "/api/p2p/peers/bob", &alice, b"").text()).unwrap();
    assert_eq!((presence["online"].as_bool(), &presence["endpoint_id"]), (Some(true), &peer["endpoint_id"]));

    let payload = test_data(3 * 1024 * 1024 + 77, 42);
    let file = tmp.path().join("report.bin");
    std::fs::write(&file, &payload).unwrap();
    let out = direct(u.cli("alice", &server))
        .args(["send", "--to", "bob", "--via", "direct", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = json_of(&out);
    assert_eq!((j["via"].as_str(), j["size"].as_u64()), (Some("direct"), Some(payload.len() as u64)), "{j}");
    let got = inbox.join("report.bin");
    wait_for(10, "the file in bob's folder", || got.exists());
    assert_eq!(sha256_hex(&std::fs::read(&got).unwrap()), sha256_hex(&payload));
    assert!(
        request(&srv.addr, "GET", "/api/relay/inbox", &[("Authorization", &basic_auth("bob"))], b"")
            .text()
            .contains("[]"),
        "nothing was stored on the server"
    );

    // Bob's client goes away: once his registration lapses, direct is refused and auto
    // falls back to the server's store.
    watcher.kill().unwrap();
    let _ = watcher.wait();
    wait_for(10, "bob's registration lapsed", || !peer_online(&srv.addr, "bob"));
    let out =
        direct(u.cli("alice", &server)).args(["send", "--to", "bob", "--via", "direct"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bob is not online for direct transfers"));
    let out = direct(u.cli("alice", &server)).args(["send", "--to", "bob", "--json"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(json_of(&out)["id"].is_string(), "stored as a relay item for later");
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn the_relay_and_registry_need_a_login_and_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    let srv = Server::start_auth(&data, &[]);
    assert_eq!(request(&srv.addr, "GET", "/api/p2p", &[], b"").status, 401);
    let auth = basic_auth("alice");
    let info = request(&srv.addr, "GET", "/api/p2p", &[("Authorization", &auth)], b"");
    assert_eq!(info.status, 200);
    assert!(info.text().contains("\"cert\""));
    // A registration not signed by the endpoint's key is refused.
    let forged =
        r#"{"endpoint_id":"ae58ff8833241ac82d6ff7611046ed67b5072d142c588d0063e942d9a75502b6","signature":"00"}"#;
    let r = request(
        &srv.addr,
        "POST",
        "/api/p2p/endpoint",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        forged.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(request(&srv.addr, "GET", "/api/p2p/peers/alice", &[("Authorization", &auth)], b"").status, 404);
    Users::add(&tmp.path().join("data2"), &["alice"]);
    let off = Server::start_auth(&tmp.path().join("data2"), &["--no-p2p"]);
    assert_eq!(request(&off.addr, "GET", "/api/p2p", &[("Authorization", &auth)], b"").status, 404);
}

/// Starts bob's `ferry inbox --watch --json --receive-into DIR` (stdout piped).
fn watch_inbox(u: &Users, server: &str, dir: &std::path::Path) -> std::process::Child {
    direct(u.cli("bob", server))
        .args(["inbox", "--watch", "--json", "--receive-into"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// JSON lines a finished child printed.
fn lines_of(child: std::process::Child) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn when_the_recipient_quits_mid_transfer_the_rest_waits_on_the_server_and_completes_his_copy() {
    // He quits: his client tells exactly what it keeps, so (almost) nothing travels twice.
    recipient_leaves_mid_transfer("-TERM", 2 << 20);
}

#[test]
fn when_the_recipient_is_killed_mid_transfer_the_rest_waits_on_the_server_too() {
    // Killed: the sender knows only the last sync he reported (every 8 chunks), so up to 8
    // chunks and what was in flight travel again through the server.
    recipient_leaves_mid_transfer("-KILL", 10 << 20);
}

/// Bob's watching client gets `signal` once part of a file alice sends him (at her defaults,
/// `--via auto`) is on his disk; alice's send finishes through the server re-sending at
/// most `max_resent` bytes, and bob's next run finishes his copy from where it stopped.
fn recipient_leaves_mid_transfer(signal: &str, max_resent: u64) {
    let pair = Pair::new();
    let (tmp, srv, server, u, inbox) = (&pair.tmp, &pair.srv, pair.srv.url(), &pair.u, pair.inbox.clone());
    let watcher = watch_inbox(u, &server, &inbox);
    wait_for(20, "bob's client registered for direct transfers", || peer_online(&srv.addr, "bob"));

    let size = 24 << 20;
    let payload = test_data(size, 7);
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, &payload).unwrap();
    let alice = direct(u.cli("alice", &server))
        .args(["send", "--to", "bob", "--json", "--limit-rate", "6M"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Past the first sync (8 chunks) and its report to alice, halfway to the next.
    let partial = inbox.join(".big.bin.ferry-p2p");
    let state = inbox.join(".big.bin.ferry-p2p.state");
    wait_for(30, "bob's client holds part of the file", || {
        state.exists() && std::fs::metadata(&partial).is_ok_and(|m| m.len() >= 12 << 20)
    });
    let status = Command::new("kill").args([signal, &watcher.id().to_string()]).status().unwrap();
    assert!(status.success());
    let bob_lines = lines_of(watcher);
    assert!(bob_lines.iter().all(|l| l["received"].is_null()), "bob had not got it all: {bob_lines:?}");

    let out = alice.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = json_of(&out);
    let (direct_bytes, server_bytes) = (j["direct_bytes"].as_u64().unwrap(), j["server_bytes"].as_u64().unwrap());
    eprintln!("{j}");
    assert_eq!(j["via"], "direct+server", "{j}");
    assert!(direct_bytes >= 8 << 20, "what bob's disk held stayed with him: {j}");
    assert_eq!(direct_bytes + server_bytes, size as u64, "the server got exactly the rest: {j}");
    assert!(j["resent_bytes"].as_u64().unwrap() <= max_resent, "bytes sent twice at the switch: {j}");
    assert!(!inbox.join("big.bin").exists(), "nothing half-made takes the name");

    // Bob comes back: his client finishes the file from where it stopped.
    let watcher = watch_inbox(u, &server, &inbox);
    let got = inbox.join("big.bin");
    wait_for(30, "bob's copy finished", || got.exists());
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-TERM", &watcher.id().to_string()]).status().unwrap();
    let lines = lines_of(watcher);
    assert_eq!(sha256_hex(&std::fs::read(&got).unwrap()), sha256_hex(&payload));
    let done = lines.iter().find(|l| l["via"] == "direct+server").unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!((done["resumed_from"].as_u64(), done["fetched"].as_u64()), (Some(direct_bytes), Some(server_bytes)));
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 1, "no partial, state or rest file left");
    let outbox = request(&srv.addr, "GET", "/api/relay/outbox", &[("Authorization", &basic_auth("alice"))], b"");
    assert!(outbox.text().contains("\"delivered\""), "{}", outbox.text());
}

#[test]
fn a_text_message_is_acknowledged_by_a_watching_client_or_held_until_read() {
    let pair = Pair::new();
    let (srv, server, u, inbox) = (&pair.srv, pair.srv.url(), &pair.u, pair.inbox.clone());
    let watcher = watch_inbox(u, &server, &inbox);
    wait_for(20, "bob's client registered for direct transfers", || peer_online(&srv.addr, "bob"));
    let out = direct(u.cli("alice", &server))
        .args(["send", "--to", "bob", "--json", "--text", "lunch at 1? <b>ok</b>"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = json_of(&out);
    assert_eq!(
        (j["via"].as_str(), j["acknowledged"].as_bool()),
        (Some("direct"), Some(true)),
        "{j} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Command::new("kill").args(["-TERM", &watcher.id().to_string()]).status().unwrap();
    let lines = lines_of(watcher);
    assert!(
        lines.iter().any(|l| l["message"] == "lunch at 1? <b>ok</b>" && l["from"] == "alice"),
        "bob's client showed it, naming alice: {lines:?}"
    );
    wait_for(10, "bob offline", || !peer_online(&srv.addr, "bob"));

    // Bob offline: the server holds it; his next `ferry inbox` shows it once and the outbox
    // then says delivered.
    let out =
        direct(u.cli("alice", &server)).args(["send", "--to", "bob", "--json", "--text", "call me"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = json_of(&out);
    assert_eq!((j["via"].as_str(), j["acknowledged"].as_bool()), (Some("server"), Some(false)), "{j}");
    let out = u.cli("bob", &server).args(["inbox", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = json_of(&out);
    assert_eq!((j["message"].as_str(), j["from"].as_str()), (Some("call me"), Some("alice")), "{j}");
    let again = u.cli("bob", &server).args(["inbox", "--json"]).output().unwrap();
    assert!(again.stdout.is_empty(), "read once: {}", String::from_utf8_lossy(&again.stdout));
    let outbox = request(&srv.addr, "GET", "/api/relay/outbox", &[("Authorization", &basic_auth("alice"))], b"");
    assert!(outbox.text().contains("\"delivered\""), "{}", outbox.text());
    // Too long for a message; a text as a "part" of a parallel upload is refused by the server.
    let long = "x".repeat(70_000);
    let out = u.cli("alice", &server).args(["send", "--to", "bob", "--text", &long]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a message is at most"));
}

#[test]
fn doctor_reports_udp_the_relay_and_a_direct_path_to_a_watching_user() {
    let pair = Pair::new();
    let (srv, server, u, inbox) = (&pair.srv, pair.srv.url(), &pair.u, pair.inbox.clone());
    let out = direct(u.cli("alice", &server)).args(["doctor", "--json", "--to", "bob"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = json_of(&out);
    assert_eq!(j["udp"], true, "{j}");
    assert!(j["relay_latency_ms"].as_f64().is_some(), "{j}");
    assert_eq!((j["peer"]["reachable"].as_bool(), j["port_mapping"].as_array().map(Vec::len)), (Some(false), Some(0)));
    assert!(j["peer"]["error"].as_str().unwrap().contains("bob is not online"), "{j}");

    let watcher = watch_inbox(u, &server, &inbox);
    wait_for(20, "bob's client registered for direct transfers", || peer_online(&srv.addr, "bob"));
    // Nobody but bob takes his client offline: not alice, not anonymously, not by method
    // override; whose endpoint it is needs a login too.
    let alice = basic_auth("alice");
    let peer = request(&srv.addr, "GET", "/api/p2p/peers/bob", &[("Authorization", &alice)], b"").text();
    let bob_id = serde_json::from_str::<serde_json::Value>(&peer).unwrap()["endpoint_id"].as_str().unwrap().to_owned();
    let path = format!("/api/p2p/endpoints/{bob_id}");
    assert_eq!(request(&srv.addr, "DELETE", &path, &[("Authorization", &alice)], b"").status, 404);
    assert_eq!(request(&srv.addr, "DELETE", &path, &[], b"").status, 401);
    assert_eq!(request(&srv.addr, "GET", &path, &[], b"").status, 401);
    let overridden =
        request(&srv.addr, "POST", &path, &[("Authorization", &alice), ("X-HTTP-Method-Override", "DELETE")], b"");
    assert_ne!(overridden.status / 100, 2, "{}", overridden.text());
    assert!(peer_online(&srv.addr, "bob"), "bob's client is still registered");
    let owner = request(&srv.addr, "GET", &path, &[("Authorization", &alice)], b"").text();
    assert!(owner.contains("\"user\":\"bob\""), "{owner}");
    // Bob's doctor registers another endpoint of his, which must not hide his inbox.
    let out = direct(u.cli("bob", &server)).args(["doctor", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = direct(u.cli("alice", &server)).args(["doctor", "--json", "--to", "bob"]).output().unwrap();
    let j = json_of(&out);
    assert_eq!((j["peer"]["reachable"].as_bool(), j["peer"]["direct"].as_bool()), (Some(true), Some(true)), "{j}");
    Command::new("kill").args(["-TERM", &watcher.id().to_string()]).status().unwrap();
    let _ = lines_of(watcher);
    assert!(!peer_online(&srv.addr, "bob"), "a client that quits unregisters at once (not 3 heartbeats later)");
    let out = direct(u.cli("alice", &server)).args(["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("UDP             works") && text.contains("relay latency"), "{text}");
}

#[test]
fn with_ask_the_recipient_accepts_or_declines_each_direct_transfer() {
    let pair = Pair::new();
    let (tmp, srv, server, u, inbox) = (&pair.tmp, &pair.srv, pair.srv.url(), &pair.u, pair.inbox.clone());
    let mut watcher = direct(u.cli("bob", &server))
        .args(["inbox", "--watch", "--json", "--ask", "--receive-into"])
        .arg(&inbox)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        watcher.stdin.as_mut().unwrap().write_all(b"n\ny\n").unwrap();
    }
    wait_for(20, "bob's client registered for direct transfers", || peer_online(&srv.addr, "bob"));
    let file = tmp.path().join("offer.bin");
    std::fs::write(&file, test_data(100_000, 3)).unwrap();
    let out = direct(u.cli("alice", &server)).args(["send", "--to", "bob"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bob declined"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!inbox.join("offer.bin").exists());
    let out = direct(u.cli("alice", &server)).args(["send", "--to", "bob", "--json"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["via"], "direct");
    wait_for(10, "the accepted file in bob's folder", || inbox.join("offer.bin").exists());
    Command::new("kill").args(["-TERM", &watcher.id().to_string()]).status().unwrap();
    let lines = lines_of(watcher);
    assert!(lines.iter().any(|l| l["declined"] == "offer.bin" && l["from"] == "alice"), "{lines:?}");
    let inbox_items = request(&srv.addr, "GET", "/api/relay/inbox", &[("Authorization", &basic_auth("bob"))], b"");
    assert!(inbox_items.text().contains("[]"), "a declined direct offer is not stored on the server instead");
}
