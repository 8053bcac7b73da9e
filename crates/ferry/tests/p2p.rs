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

fn peer_online(addr: &str, user: &str) -> bool {
    request(addr, "GET", &format!("/api/p2p/peers/{user}"), &[("Authorization", &basic_auth("alice"))], b"").status
        == 200
}

#[test]
fn a_file_goes_straight_to_a_watching_user_and_through_the_server_when_they_are_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob"]);
    let srv = Server::start_auth(&data, &["--heartbeat", "1s"]);
    let server = srv.url();
    let u = Users { dir: tmp.path().to_path_buf() };
    u.login("alice", &server);
    u.login("bob", &server);
    let inbox = tmp.path().join("bob-inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut watcher = direct(u.cli("bob", &server))
        .args(["inbox", "--watch", "--json", "--receive-into"])
        .arg(&inbox)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(20, "bob's client registered for direct transfers", || peer_online(&srv.addr, "bob"));

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
