//! Issue 8: the attacks of an adversarial review, each reproduced against the real binary
//! (accounts on): the status it must get, nothing stored, the server still answering.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;

fn basic(user: &str) -> String {
    basic_auth(user)
}

fn staged(data: &Path) -> usize {
    std::fs::read_dir(data.join("staging")).map(|d| d.count()).unwrap_or(0)
}

fn auth_server(tmp: &Path, users: &[&str]) -> (Server, std::path::PathBuf) {
    let data = tmp.join("data");
    Users::add(&data, users);
    (Server::start_auth(&data, &[]), data)
}

#[test]
fn method_override_cannot_skip_authentication() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, data) = auth_server(tmp.path(), &["alice"]);
    let attack = [
        ("X-HTTP-Method-Override", "POST"),
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Concat", "partial"),
        ("Upload-Length", "5"),
        ("Content-Type", "application/offset+octet-stream"),
    ];
    let r = request(&s.addr, "OPTIONS", "/tus/", &attack, b"hello");
    assert_eq!(r.status, 401, "an OPTIONS meaning POST needs what a POST needs: {}", r.text());
    assert_eq!(staged(&data), 0, "nothing was stored");
    // The override itself still works for a logged-in user.
    let auth = basic("alice");
    let mut with_auth = attack.to_vec();
    with_auth.push(("Authorization", &auth));
    let r = request(&s.addr, "OPTIONS", "/tus/", &with_auth, b"hello");
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn deep_and_long_paths_are_refused_at_once_and_the_server_keeps_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, data) = auth_server(tmp.path(), &["alice"]);
    let auth = basic("alice");
    let create = |dir: &str| {
        let md = metadata(&[("filename", b"x.bin"), ("dir", dir.as_bytes())]);
        request(
            &s.addr,
            "POST",
            "/tus/",
            &[("Tus-Resumable", "1.0.0"), ("Upload-Length", "1"), ("Upload-Metadata", &md), ("Authorization", &auth)],
            b"",
        )
    };
    let attacks = ["d/".repeat(2000), "abcdefghij/".repeat(40), format!("{}/", "n".repeat(250)).repeat(5)];
    for dir in &attacks {
        let r = create(dir);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("too"), "says why: {}", r.text());
    }
    assert_eq!(request(&s.addr, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(staged(&data), 0);
    assert_eq!(create("a/b/c").status, 201, "ordinary nesting still works");
}

#[test]
fn reserved_and_deceptive_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, data) = auth_server(tmp.path(), &["alice"]);
    let auth = basic("alice");
    for name in [".ferry-tmp-1234", "invoice\u{202E}fdp.exe", "zero\u{200B}width"] {
        let md = metadata(&[("filename", name.as_bytes())]);
        let r = request(
            &s.addr,
            "POST",
            "/tus/",
            &[("Tus-Resumable", "1.0.0"), ("Upload-Length", "1"), ("Upload-Metadata", &md), ("Authorization", &auth)],
            b"",
        );
        assert_eq!(r.status, 400, "{name:?}: {}", r.text());
    }
    assert_eq!(staged(&data), 0);
}

#[test]
fn a_user_name_cannot_forge_log_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    let log = tmp.path().join("server.log");
    let s = Server::start_auth_logged(&data, &log);
    let body = br#"{"user":"bob\nFAKE ERROR admin logged in","password":"x"}"#;
    let r = request(&s.addr, "POST", "/api/login", &[("Content-Type", "application/json")], body);
    assert_eq!(r.status, 401, "{}", r.text());
    wait_for(5, "the failed login in the log", || std::fs::read_to_string(&log).unwrap().contains("failed login"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.lines().any(|l| l.starts_with("FAKE")), "a forged line got into the log:\n{text}");
}

/// Opens `GET /api/events` with `auth` and waits for its `hello`.
fn open_events(addr: &str, auth: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut st = std::net::TcpStream::connect(addr).unwrap();
    write!(st, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
        .unwrap();
    st.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: hello") {
        let n = st.read(&mut buf).unwrap();
        assert!(n > 0, "the stream closed before hello: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    st
}

/// Whether the server ends the stream within `secs` (heartbeats keep arriving until then).
fn ends_within(st: &mut std::net::TcpStream, secs: u64) -> bool {
    use std::io::Read;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match st.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn event_streams_end_when_their_credential_is_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob"]);
    let s = Server::start_auth(&data, &["--heartbeat", "1s"]);
    let r = request(
        &s.addr,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        br#"{"user":"alice","password":"alice-pw"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = serde_json::from_str::<serde_json::Value>(&r.text()).unwrap()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");

    // Logout closes the stream the token opened.
    let mut st = open_events(&s.addr, &bearer);
    assert_eq!(request(&s.addr, "DELETE", "/api/tokens/current", &[("Authorization", &bearer)], b"").status, 204);
    assert!(ends_within(&mut st, 5), "the stream outlived the logout");

    // Removing the user (on the server machine, another process) closes a password stream.
    let mut st = open_events(&s.addr, &basic("bob"));
    let out =
        std::process::Command::new(ferry_bin()).args(["user", "remove", "bob", "--data"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ends_within(&mut st, 5), "the stream outlived the user's removal");
}

fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024
}

#[test]
fn a_storm_of_wrong_passwords_neither_exhausts_memory_nor_goes_on_for_ever() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _data) = auth_server(tmp.path(), &["alice"]);
    let wrong = format!("Basic {}", STANDARD.encode("alice:guess"));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|_| scope.spawn(|| request(&s.addr, "GET", "/api/me", &[("Authorization", &wrong)], b"").status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&c| c == 401 || c == 429), "{statuses:?}");
    assert!(statuses.contains(&429), "failures are throttled: {statuses:?}");
    let peak = peak_rss_mb(s.child.id());
    eprintln!("peak RSS after 64 concurrent wrong passwords: {peak} MB");
    assert!(peak < 200, "peak RSS {peak} MB");
    let r = request(&s.addr, "GET", "/api/me", &[("Authorization", &wrong)], b"");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0)), "{:?}", r.headers);
    assert_eq!(request(&s.addr, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn a_link_in_a_shared_folder_does_not_open_another_home() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let root = tmp.path().join("share");
    std::fs::create_dir_all(root.join("~alice")).unwrap();
    std::fs::create_dir_all(root.join("team")).unwrap();
    std::fs::write(root.join("~alice/private.txt"), b"alice's secret").unwrap();
    std::os::unix::fs::symlink("../~alice", root.join("team/shortcut")).unwrap();
    Users::add(&data, &["alice", "bob"]);
    let grant = std::process::Command::new(ferry_bin())
        .args(["user", "grant", "bob", "team", "--write", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(grant.status.success(), "{}", String::from_utf8_lossy(&grant.stderr));
    let s = Server::start_auth(&data, &["--root", root.to_str().unwrap()]);
    let bob = basic("bob");
    let r = request(&s.addr, "GET", "/files/team/shortcut/private.txt", &[("Authorization", &bob)], b"");
    assert_eq!(r.status, 403, "bob read alice's file through a link: {}", r.text());
    assert!(!r.text().contains("secret"));
    let r = request(&s.addr, "GET", "/files/team/shortcut/", &[("Authorization", &bob)], b"");
    assert_eq!(r.status, 403, "{}", r.text());
    let listing = request(&s.addr, "GET", "/files/team/", &[("Authorization", &bob)], b"");
    assert_eq!(listing.status, 200);
    assert!(!listing.text().contains("shortcut"), "the link is not listed to bob: {}", listing.text());
    let md = metadata(&[("filename", b"planted.txt"), ("dir", b"/team/shortcut")]);
    let r = request(
        &s.addr,
        "POST",
        "/tus/",
        &[("Tus-Resumable", "1.0.0"), ("Upload-Length", "4"), ("Upload-Metadata", &md), ("Authorization", &bob)],
        b"",
    );
    assert_eq!(r.status, 403, "bob could plant a file in alice's home: {}", r.text());
    // alice herself still reads her file, also through the link.
    let alice = basic("alice");
    assert_eq!(request(&s.addr, "GET", "/files/~alice/private.txt", &[("Authorization", &alice)], b"").status, 200);
}

#[test]
fn presence_does_not_tell_which_names_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _data) = auth_server(tmp.path(), &["alice", "bob"]);
    let alice = basic("alice");
    let known = request(&s.addr, "GET", "/api/presence/bob", &[("Authorization", &alice)], b"");
    let unknown = request(&s.addr, "GET", "/api/presence/nobody", &[("Authorization", &alice)], b"");
    assert_eq!((known.status, unknown.status), (200, 200), "{} / {}", known.text(), unknown.text());
    let shape = |t: &str| {
        let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
        v["user"] = serde_json::Value::Null;
        v
    };
    assert_eq!(shape(&known.text()), shape(&unknown.text()), "an offline user and no user look alike");
}

#[test]
fn quota_holds_for_deferred_lengths_and_repeated_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add_with_quota(&data, "carol", "2M");
    let s = Server::start_auth(&data, &[]);
    let auth = basic("carol");
    let tus_req = |method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]| {
        let mut h = vec![("Tus-Resumable", "1.0.0"), ("Authorization", auth.as_str())];
        h.extend_from_slice(extra);
        request(&s.addr, method, path, &h, body)
    };
    // Defer the length, then declare 5 MB in a PATCH.
    let r = tus_req("POST", "/tus/", &[("Upload-Defer-Length", "1")], b"");
    assert_eq!(r.status, 201);
    let loc = r.header("location").unwrap().to_owned();
    let loc = loc.split_once("/tus/").map(|(_, id)| format!("/tus/{id}")).unwrap();
    let r = tus_req(
        "PATCH",
        &loc,
        &[("Upload-Offset", "0"), ("Upload-Length", "5000000"), ("Content-Type", "application/offset+octet-stream")],
        b"abc",
    );
    assert_eq!(r.status, 413, "a deferred length past the quota: {}", r.text());

    // One 1 MB partial listed forty times.
    let r = tus_req("POST", "/tus/", &[("Upload-Length", "1000000"), ("Upload-Concat", "partial")], b"");
    assert_eq!(r.status, 201);
    let part = r.header("location").unwrap().to_owned();
    let part = part.split_once("/tus/").map(|(_, id)| format!("/tus/{id}")).unwrap();
    let concat = format!("final;{}", vec![part.as_str(); 40].join(" "));
    let r = tus_req("POST", "/tus/", &[("Upload-Concat", &concat)], b"");
    assert_eq!(r.status, 413, "a 40 MB join in a 2 MB quota: {}", r.text());
    // The same part once is fine; in a second final it is refused.
    let r = tus_req("POST", "/tus/", &[("Upload-Concat", &format!("final;{part}"))], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = tus_req("POST", "/tus/", &[("Upload-Concat", &format!("final;{part}"))], b"");
    assert_eq!(r.status, 400, "a part already used by a final upload: {}", r.text());
}

#[test]
fn half_sent_headers_are_cut_and_do_not_stop_the_server() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start_auth(&data, &["--header-timeout", "1s"]);
    let mut slow: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut st = std::net::TcpStream::connect(&s.addr).unwrap();
            st.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            st
        })
        .collect();
    // The server keeps answering while they hang.
    let r = request(&s.addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    // And cuts them once the header timeout has passed.
    let first = &mut slow[0];
    first.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).unwrap_or_else(|e| panic!("a half-sent header was still open after 10 s: {e}"));
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "a half-sent header was left open: {answer:?}");
}

#[test]
fn connections_past_the_cap_are_answered_503_on_arrival() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_auth(&tmp.path().join("data"), &["--max-connections", "5"]);
    let _held: Vec<std::net::TcpStream> = (0..5).map(|_| std::net::TcpStream::connect(&s.addr).unwrap()).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(&s.addr).unwrap();
    extra.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "the sixth connection was served: {answer:?}");
    assert!(answer.contains("Retry-After: 2"), "{answer:?}");
}

#[test]
fn one_user_cannot_open_uploads_without_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    let s = Server::start_auth(&data, &["--max-open-uploads", "3"]);
    let auth = basic("alice");
    let create = || {
        request(
            &s.addr,
            "POST",
            "/tus/",
            &[("Tus-Resumable", "1.0.0"), ("Upload-Length", "10"), ("Authorization", &auth)],
            b"",
        )
    };
    for _ in 0..3 {
        assert_eq!(create().status, 201);
    }
    let r = create();
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("unfinished uploads"), "{}", r.text());
    assert_eq!(staged(&data), 3);
}

#[test]
fn relay_recipients_cannot_be_used_to_walk_the_accounts() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _data) = auth_server(tmp.path(), &["alice", "bob"]);
    let auth = basic("alice");
    let send_to = |to: &str| {
        let md = metadata(&[("filename", b"x.txt"), ("relay_to", to.as_bytes())]);
        tus(
            &s.addr,
            "POST",
            "/tus/",
            &[("Authorization", auth.as_str()), ("Upload-Length", "3"), ("Upload-Metadata", &md)],
            b"",
        )
        .status
    };
    assert_eq!(send_to("bob"), 201, "a real recipient");
    let guesses: Vec<u16> = (0..12).map(|i| send_to(&format!("guess{i}"))).collect();
    assert_eq!(&guesses[..10], &[400; 10], "{guesses:?}");
    assert_eq!(&guesses[10..], &[429, 429], "after ten unknown names the caller is throttled: {guesses:?}");
    assert_eq!(send_to("bob"), 429, "...whatever name it tries next");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_auth(&tmp.path().join("data"), &["--header-timeout", "2s"]);
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then nothing: the server closes it once the next header is overdue.
    let start = std::time::Instant::now();
    let n = c.read(&mut buf).unwrap_or_else(|e| panic!("an idle connection was still open after 10 s: {e}"));
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(start.elapsed() >= std::time::Duration::from_secs(1), "closed too early: {:?}", start.elapsed());
}
