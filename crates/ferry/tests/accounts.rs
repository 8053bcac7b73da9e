//! Accounts and auth (issue 4, part 1): users managed on the server machine, login and
//! logout with tokens kept at mode 0600, per-user homes, shared folders, quotas, and every
//! route refusing the unauthenticated (401) and the wrong user (403).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use common::*;

fn add_user(data: &Path, name: &str, password: &str, extra: &[&str]) {
    std::fs::create_dir_all(data).unwrap();
    let mut child = Command::new(ferry_bin())
        .args(["user", "add", name, "--password-stdin", "--data"])
        .arg(data)
        .args(extra)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn token(addr: &str, user: &str, password: &str) -> String {
    let body = format!(r#"{{"user":"{user}","password":"{password}"}}"#);
    let r = request(addr, "POST", "/api/login", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 200, "login {user}: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A server with alice (quota 1 MiB), bob and a shared folder `team` bob may read.
fn fixture() -> (tempfile::TempDir, Server, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    add_user(&data, "alice", "alice-pw", &["--quota", "1M"]);
    add_user(&data, "bob", "bob-pw", &[]);
    let out = Command::new(ferry_bin()).args(["user", "grant", "bob", "team", "--data"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = Server::start_auth(&data, &[]);
    let (a, b) = (token(&s.addr, "alice", "alice-pw"), token(&s.addr, "bob", "bob-pw"));
    (tmp, s, a, b)
}

#[test]
fn every_route_refuses_strangers_and_other_users() {
    let (_t, s, alice, bob) = fixture();
    let (ah, bh) = (bearer(&alice), bearer(&bob));
    // alice's upload, and a file in her home.
    let md = metadata(&[("filename", b"secret.txt")]);
    let r =
        tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "5"), ("Upload-Metadata", &md), ("Authorization", &ah)], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    let loc = r.header("location").unwrap().to_owned();
    assert_eq!(patch(&s.addr, &loc, 0, b"hel", &[("Authorization", &ah)]).status, 204);
    let md2 = metadata(&[("filename", b"done.txt")]);
    let r = tus(
        &s.addr,
        "POST",
        "/tus/",
        &[("Upload-Length", "2"), ("Upload-Metadata", &md2), ("Authorization", &ah)],
        b"",
    );
    assert_eq!(patch(&s.addr, r.header("location").unwrap(), 0, b"ok", &[("Authorization", &ah)]).status, 204);
    assert_eq!(std::fs::read(s.tree_file("~alice/done.txt")).unwrap(), b"ok", "uploads land in the user's home");

    // (method, path, who) → expected status; None = anonymous.
    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("HEAD", loc.clone(), None, 401),
        ("HEAD", loc.clone(), Some(&bh), 403),
        ("PATCH", loc.clone(), Some(&bh), 403),
        ("DELETE", loc.clone(), Some(&bh), 403),
        ("POST", "/tus/".into(), None, 401),
        ("GET", "/files/~alice/done.txt".into(), None, 401),
        ("GET", "/files/~alice/done.txt".into(), Some(&bh), 403),
        ("GET", "/files/~alice/".into(), Some(&bh), 403),
        ("GET", "/files/".into(), None, 401),
        ("GET", "/api/me".into(), None, 401),
        ("POST", "/api/dedup".into(), None, 401),
        ("DELETE", "/api/tokens/current".into(), None, 401),
        ("GET", "/healthz".into(), None, 200),
        ("OPTIONS", "/tus/".into(), None, 204),
        ("GET", "/not-a-route".into(), Some(&ah), 404),
    ];
    for (method, path, who, want) in cases {
        let mut h = vec![("Content-Type", "application/offset+octet-stream"), ("Upload-Offset", "3")];
        if let Some(w) = who {
            h.push(("Authorization", w));
        }
        let r = tus(&s.addr, method, &path, &h, if method == "PATCH" { b"lo" } else { b"" });
        assert_eq!(r.status, want, "{method} {path} as {:?}: {}", who.map(|w| &w[..12]), r.text());
    }
    assert_eq!(head_offset(&s.addr, &loc), None, "anonymous HEAD tells nothing");
    let h = tus(&s.addr, "HEAD", &loc, &[("Authorization", &ah)], b"");
    assert_eq!(h.offset(), Some(3), "bob's PATCH changed nothing");
    // Owner and admin-free access works; bob's listing of the root hides alice's home.
    assert_eq!(request(&s.addr, "GET", "/files/~alice/done.txt", &[("Authorization", &ah)], b"").body, b"ok");
    let root = request(&s.addr, "GET", "/files/", &[("Authorization", &bh)], b"").text();
    assert!(!root.contains("~alice"), "{root}");
    // Basic auth (curl -u, aria2c --http-user) with a password or a token.
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:alice-pw"));
    assert_eq!(request(&s.addr, "GET", "/files/~alice/done.txt", &[("Authorization", &basic)], b"").status, 200);
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:nope"));
    assert_eq!(request(&s.addr, "GET", "/files/~alice/done.txt", &[("Authorization", &wrong)], b"").status, 401);
}

#[test]
fn shared_folders_and_quotas() {
    let (_t, s, alice, bob) = fixture();
    let (ah, bh) = (bearer(&alice), bearer(&bob));
    std::fs::create_dir_all(s.tree_file("team")).unwrap();
    std::fs::write(s.tree_file("team/plan.txt"), b"plan").unwrap();
    assert_eq!(request(&s.addr, "GET", "/files/team/plan.txt", &[("Authorization", &bh)], b"").body, b"plan");
    assert_eq!(request(&s.addr, "GET", "/files/team/plan.txt", &[("Authorization", &ah)], b"").status, 403);
    // bob may read team but not write there.
    let md = metadata(&[("filename", b"x.txt"), ("dir", b"/team")]);
    let r =
        tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "1"), ("Upload-Metadata", &md), ("Authorization", &bh)], b"");
    assert_eq!(r.status, 403, "{}", r.text());
    let md = metadata(&[("filename", b"x.txt"), ("dir", b"/~alice")]);
    let r =
        tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "1"), ("Upload-Metadata", &md), ("Authorization", &bh)], b"");
    assert_eq!(r.status, 403, "nobody writes into another's home");
    // alice has 1 MiB.
    let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "2000000"), ("Authorization", &ah)], b"");
    assert_eq!(r.status, 413);
    assert!(r.text().contains("quota exceeded"), "{}", r.text());
    let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "500000"), ("Authorization", &ah)], b"");
    assert_eq!(r.status, 201);
    let me: serde_json::Value =
        serde_json::from_slice(&request(&s.addr, "GET", "/api/me", &[("Authorization", &ah)], b"").body).unwrap();
    assert_eq!(
        (me["user"].as_str(), me["quota"].as_u64(), me["used"].as_u64()),
        (Some("alice"), Some(1 << 20), Some(500_000))
    );
}

#[test]
fn cli_login_upload_logout() {
    let (t, s, _, _) = fixture();
    let cfg = t.path().join("cfg");
    let state = t.path().join("state");
    let file = t.path().join("mine.bin");
    std::fs::write(&file, test_data(100_000, 40)).unwrap();
    let cli = |args: &[&str], stdin: &str| {
        let mut c = client(&state)
            .env("FERRY_CONFIG_DIR", &cfg)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = writeln!(c.stdin.take().unwrap(), "{stdin}");
        c.wait_with_output().unwrap()
    };
    let o = cli(&["upload", "--server", &s.url(), file.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(4), "not logged in: {}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs an account; run `ferry login -s http://"), "{err}");
    let o = cli(&["login", "--server", &s.url(), "--user", "bob", "--password-stdin"], "wrong");
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&["login", "--server", &s.url(), "--user", "bob", "--password-stdin"], "bob-pw");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mode = std::fs::metadata(cfg.join("credentials.json")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is private");
    let o = cli(&["upload", "--server", &s.url(), "--dir", "inbox", file.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.tree_file("~bob/inbox/mine.bin").exists());
    let o = cli(
        &["download", "--server", &s.url(), "~bob/inbox/mine.bin", "-o", t.path().join("back.bin").to_str().unwrap()],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let saved = std::fs::read_to_string(cfg.join("credentials.json")).unwrap();
    let tok = saved.split("fy_").nth(1).unwrap().split('"').next().unwrap();
    assert!(cli(&["logout", "--server", &s.url()], "").status.success());
    let r = request(&s.addr, "GET", "/api/me", &[("Authorization", &format!("Bearer fy_{tok}"))], b"");
    assert_eq!(r.status, 401, "logout revoked the token on the server");
    let o = cli(&["upload", "--server", &s.url(), file.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(4));
    let o = Command::new(ferry_bin()).args(["user", "list", "--data"]).arg(&s.data).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "alice quota 1.00 MiB\nbob\n");
}

#[test]
fn first_start_creates_an_admin_and_says_how_to_log_in() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(ferry_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.next().unwrap().unwrap();
    let addr = banner.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let text: Vec<String> = lines.by_ref().take(4).map(|l| l.unwrap()).collect();
    // stdout is a pipe here (a service manager's log): the password is not in it, only
    // where to find it.
    let line = text.iter().find(|l| l.contains("created user \"admin\"")).unwrap_or_else(|| panic!("{text:?}"));
    let file = tmp.path().join("data/admin-password");
    assert!(line.contains(&file.display().to_string()), "{line}");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 16 && !text.join("\n").contains(&password), "{text:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let password = password.as_str();
    let t = token(&addr, "admin", password);
    let me = request(&addr, "GET", "/api/me", &[("Authorization", &bearer(&t))], b"");
    assert!(me.text().contains("\"admin\":true"), "{}", me.text());
    let _ = child.kill();
    let _ = child.wait();
}
