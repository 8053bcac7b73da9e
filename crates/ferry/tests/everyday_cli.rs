//! Everyday use of the `ferry` binary (issue 11): file management, folders, the path model,
//! several logins, admin over HTTP, completions, `/metrics` — and the table of failure
//! messages with their exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A server with accounts: `root` (admin), alice (quota 10M) and bob; alice and bob logged in.
struct Fixture {
    tmp: tempfile::TempDir,
    s: Server,
    u: Users,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["bob"]);
    Users::add_with_quota(&data, "alice", "10M");
    let mut c = Command::new(ferry_bin())
        .args(["user", "add", "root", "--admin", "--password-stdin", "--data"])
        .arg(&data)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(c.stdin.take().unwrap(), "root-pw").unwrap();
    assert!(c.wait().unwrap().success());
    let s = Server::start_auth(&data, &[]);
    let u = Users { dir: tmp.path().to_path_buf() };
    u.login("alice", &s.url());
    u.login("bob", &s.url());
    Fixture { tmp, s, u }
}

fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

fn as_user(f: &Fixture, user: &str, args: &[&str]) -> Output {
    let mut c = f.u.cli(user, &f.s.url());
    c.args(args);
    run(c)
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}\nstdout: {}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn ls_mkdir_mv_rm_whoami_and_uploads() {
    let f = fixture();
    let file = f.tmp.path().join("notes.txt");
    std::fs::write(&file, b"hello notes").unwrap();

    ok(&as_user(&f, "alice", &["mkdir", "-p", "docs/2026"]));
    assert!(f.s.tree_file("~alice/docs/2026").is_dir(), "relative paths are in the home");
    let o = as_user(&f, "alice", &["mkdir", "docs"]);
    assert_eq!(o.status.code(), Some(4), "exists: {}", stderr(&o));
    ok(&as_user(&f, "alice", &["mkdir", "-p", "docs"]));

    let o = as_user(&f, "alice", &["upload", "--dir", "docs", file.to_str().unwrap()]);
    ok(&o);
    assert!(stderr(&o).contains("→ /~alice/docs/notes.txt"), "says where it landed: {}", stderr(&o));
    let o = as_user(&f, "alice", &["upload", "--json", "--dir", "docs/2026", file.to_str().unwrap()]);
    assert_eq!(json_of(&o)["remote"], "/~alice/docs/2026/notes.txt");

    // ls: names, long, json, a file, the home with its quota.
    assert_eq!(ok(&as_user(&f, "alice", &["ls", "docs"])), "2026/\nnotes.txt\n");
    let long = ok(&as_user(&f, "alice", &["ls", "-l", "--sha", "docs"]));
    let sha = sha256_hex(b"hello notes");
    assert!(
        long.lines()
            .any(|l| l.starts_with("file") && l.contains("11 B") && l.contains(&sha) && l.ends_with("notes.txt")),
        "{long}"
    );
    assert!(long.lines().any(|l| l.starts_with("dir") && l.ends_with("2026/")), "{long}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&as_user(&f, "alice", &["ls", "--json", "docs/notes.txt"]))).unwrap();
    assert_eq!((v["entries"][0]["size"].as_u64(), v["entries"][0]["sha256"].as_str()), (Some(11), Some(sha.as_str())));
    let o = as_user(&f, "alice", &["ls"]);
    assert_eq!(ok(&o), "docs/\n");
    assert!(stderr(&o).contains("/~alice: 22 B used of 10.00 MiB"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&ok(&as_user(&f, "alice", &["ls", "--json", "~"]))).unwrap();
    assert_eq!((v["used"].as_u64(), v["quota"].as_u64()), (Some(22), Some(10 << 20)));

    // mv: rename, into a folder, refuse to clobber.
    ok(&as_user(&f, "alice", &["mv", "docs/notes.txt", "docs/renamed.txt"]));
    ok(&as_user(&f, "alice", &["mv", "docs/renamed.txt", "docs/2026"]));
    let o = as_user(&f, "alice", &["mv", "--json", "docs/2026/renamed.txt", "docs/2026/notes.txt"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(ok(&as_user(&f, "alice", &["ls", "docs/2026"])), "notes.txt\nrenamed.txt\n");

    // rm: a folder with content only with -r; another user's file refused.
    ok(&as_user(&f, "bob", &["upload", file.to_str().unwrap()]));
    let o = as_user(&f, "alice", &["rm", "~bob/notes.txt"]);
    assert_eq!((o.status.code(), stderr(&o).trim()), (Some(4), "ferry: you may not change /~bob/notes.txt"));
    assert!(f.s.tree_file("~bob/notes.txt").exists());
    let o = as_user(&f, "alice", &["mv", "~bob/notes.txt", "stolen.txt"]);
    assert_eq!((o.status.code(), stderr(&o).trim()), (Some(4), "ferry: you may not change /~bob/notes.txt"));
    // Not by method override either, nor without credentials.
    let r = request(
        &f.s.addr,
        "POST",
        "/files/~bob/notes.txt",
        &[("Authorization", &basic_auth("alice")), ("X-HTTP-Method-Override", "DELETE")],
        b"",
    );
    assert_eq!(r.status, 404, "no POST route under /files/");
    assert_eq!(request(&f.s.addr, "DELETE", "/files/~bob/notes.txt", &[], b"").status, 401);
    let r = request(
        &f.s.addr,
        "POST",
        "/api/files/move",
        &[("Authorization", &basic_auth("alice")), ("Content-Type", "application/json")],
        br#"{"from":"~bob/notes.txt","to":"~alice/x"}"#,
    );
    assert_eq!(r.status, 403);
    assert!(f.s.tree_file("~bob/notes.txt").exists());
    let o = as_user(&f, "alice", &["rm", "docs"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    ok(&as_user(&f, "alice", &["rm", "-r", "docs"]));
    assert!(!f.s.tree_file("~alice/docs").exists());
    let o = as_user(&f, "alice", &["rm", "docs"]);
    assert_eq!((o.status.code(), stderr(&o).trim()), (Some(4), "ferry: no such file or folder: /~alice/docs"));

    // whoami.
    let out = ok(&as_user(&f, "alice", &["whoami"]));
    assert!(out.starts_with(&format!("alice on {}\n", f.s.url())), "{out}");
    let v: serde_json::Value = serde_json::from_str(&ok(&as_user(&f, "alice", &["whoami", "--json"]))).unwrap();
    assert_eq!(
        (v["user"].as_str(), v["home"].as_str(), v["quota"].as_u64()),
        (Some("alice"), Some("/~alice"), Some(10 << 20))
    );

    // uploads: an unfinished upload is listed, then cancelled by an id prefix.
    let created = tus(
        &f.s.addr,
        "POST",
        "/tus/",
        &[
            ("Upload-Length", "1000"),
            ("Authorization", &basic_auth("alice")),
            ("Upload-Metadata", &metadata(&[("filename", b"half.bin")])),
        ],
        b"",
    );
    assert_eq!(created.status, 201);
    let id = created.header("location").unwrap().rsplit('/').next().unwrap().to_owned();
    let v: serde_json::Value = serde_json::from_str(&ok(&as_user(&f, "alice", &["uploads", "--json"]))).unwrap();
    let list = v["uploads"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(
        (list[0]["id"].as_str(), list[0]["length"].as_u64(), list[0]["path"].as_str()),
        (Some(id.as_str()), Some(1000), Some("/~alice/half.bin"))
    );
    let text = ok(&as_user(&f, "alice", &["uploads"]));
    assert!(text.contains("/~alice/half.bin") && text.contains("0%"), "{text}");
    assert_eq!(ok(&as_user(&f, "bob", &["uploads", "--json"])), "{\"uploads\":[]}\n", "only your own");
    ok(&as_user(&f, "alice", &["uploads", "--cancel", &id[..8]]));
    assert_eq!(head_offset(&f.s.addr, &format!("/tus/{id}")), None);
    assert_eq!(ok(&as_user(&f, "alice", &["uploads", "--json"])), "{\"uploads\":[]}\n");
}

fn make_tree(root: &Path, small_files: usize) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty/inner")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    std::fs::write(root.join("top.txt"), b"top").unwrap();
    std::fs::write(root.join("a/b/c/deep.bin"), test_data(300_000, 7)).unwrap();
    std::fs::write(root.join("a/b/zero.bin"), b"").unwrap();
    for i in 0..small_files {
        std::fs::write(root.join(format!("many/f{i:04}.txt")), format!("file {i}\n")).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", root.join("a/link-out")).unwrap();
}

/// Every regular file under `root`, relative path → content.
fn files_of(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn folders_go_up_and_down_whole_and_a_rerun_skips_what_is_there() {
    let f = fixture();
    let src = f.tmp.path().join("project");
    make_tree(&src, 1000);

    let o = as_user(&f, "bob", &["upload", "-r", "--json", "--dir", "backup", src.to_str().unwrap()]);
    let v = json_of(&o);
    assert_eq!(
        (
            v["files"].as_u64(),
            v["transferred"].as_u64(),
            v["skipped"].as_u64(),
            v["failed"].as_u64(),
            v["not_regular"].as_u64()
        ),
        (Some(1003), Some(1003), Some(0), Some(0), Some(1)),
        "{v}"
    );
    let remote = f.s.tree_file("~bob/backup/project");
    assert_eq!(files_of(&remote), files_of(&src), "every file, the same bytes");
    assert!(remote.join("empty/inner").is_dir(), "empty folders are made");
    assert!(!remote.join("a/link-out").exists(), "links are not followed");
    let o = as_user(&f, "bob", &["upload", "-r", "--dir", "backup", src.to_str().unwrap()]);
    assert!(stderr(&o).contains("skipping") && stderr(&o).contains("link-out"), "{}", stderr(&o));
    assert!(stderr(&o).contains("0 of 1003 files") && stderr(&o).contains("1003 already there"), "{}", stderr(&o));

    // Contents only (rsync's trailing slash), and a folder upload needs -r.
    ok(&as_user(&f, "bob", &["upload", "-r", "--dir", "flat", &format!("{}/", src.join("a").display())]));
    assert!(f.s.tree_file("~bob/flat/b/c/deep.bin").exists());
    let o = as_user(&f, "bob", &["upload", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Download the folder back; again: everything is already there.
    let dest = f.tmp.path().join("restore");
    let o = as_user(&f, "bob", &["download", "-r", "--json", "backup/project", "-o", dest.to_str().unwrap()]);
    let v = json_of(&o);
    assert_eq!((v["transferred"].as_u64(), v["failed"].as_u64()), (Some(1003), Some(0)), "{v}");
    assert_eq!(files_of(&dest.join("project")), files_of(&src));
    assert!(dest.join("project/empty/inner").is_dir());
    let o = as_user(&f, "bob", &["download", "-r", "--json", "backup/project", "-o", dest.to_str().unwrap()]);
    let v = json_of(&o);
    assert_eq!((v["transferred"].as_u64(), v["skipped"].as_u64()), (Some(0), Some(1003)), "{v}");
}

#[test]
fn an_interrupted_folder_upload_resends_only_the_unfinished_file() {
    let f = fixture();
    let src = f.tmp.path().join("photos");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("small{i:02}.jpg")), test_data(10_000, i)).unwrap();
    }
    let big = test_data(8 << 20, 99);
    std::fs::write(src.join("zz-big.raw"), &big).unwrap();
    let mut c = f.u.cli("bob", &f.s.url());
    c.args(["upload", "-r", "--jobs", "1", "--limit-rate", "2M", src.to_str().unwrap()]).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let staged = || -> u64 {
        std::fs::read_dir(f.s.data.join("staging"))
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).max().unwrap_or(0))
            .unwrap_or(0)
    };
    wait_for(60, "2 MiB of the big file on the server", || staged() >= 2 << 20);
    signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("run the same command again to resume"), "{}", stderr(&out));

    let o = as_user(&f, "bob", &["upload", "-r", "--json", src.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = ok(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sent: Vec<(&str, u64)> = lines
        .iter()
        .filter(|v| v["skipped"] == false)
        .map(|v| (v["remote"].as_str().unwrap(), v["sent"].as_u64().unwrap()))
        .collect();
    assert_eq!(sent.len(), 1, "only the unfinished file goes again: {sent:?}");
    assert_eq!(sent[0].0, "/~bob/photos/zz-big.raw");
    assert!(sent[0].1 <= (big.len() as u64) - (2 << 20), "it resumed: sent {} of {}", sent[0].1, big.len());
    assert_eq!(lines.last().unwrap()["skipped"].as_u64(), Some(20));
    assert_eq!(std::fs::read(f.s.tree_file("~bob/photos/zz-big.raw")).unwrap(), big);
}

#[test]
fn several_logins_per_server_and_admin_over_http() {
    let f = fixture();
    // One config directory with two logins: the last one is current, --user / FERRY_USER pick.
    let cfg = f.tmp.path().join("shared-cfg");
    let login = |user: &str| {
        let mut c = client(&f.tmp.path().join("st"))
            .env("FERRY_CONFIG_DIR", &cfg)
            .args(["login", "-s", &f.s.url(), "--user", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(c.stdin.take().unwrap(), "{user}-pw").unwrap();
        ok(&c.wait_with_output().unwrap());
    };
    login("alice");
    login("root");
    let me = |extra: &[&str], env_user: Option<&str>| {
        let mut c = client(&f.tmp.path().join("st"));
        c.env("FERRY_CONFIG_DIR", &cfg).args(["whoami", "--json", "-s", &f.s.url()]).args(extra);
        if let Some(u) = env_user {
            c.env("FERRY_USER", u);
        }
        let o = run(c);
        json_of(&o)["user"].as_str().map(str::to_owned)
    };
    assert_eq!(me(&[], None).as_deref(), Some("root"));
    assert_eq!(me(&["--user", "alice"], None).as_deref(), Some("alice"));
    assert_eq!(me(&[], Some("alice")).as_deref(), Some("alice"));
    let mut c = client(&f.tmp.path().join("st"));
    c.env("FERRY_CONFIG_DIR", &cfg).args(["whoami", "-s", &f.s.url()]);
    assert!(ok(&run(c)).contains("other saved logins here: alice"));

    // Admin over HTTP: add, list, grant, passwd, remove.
    let admin = |args: &[&str], stdin: &str| {
        let mut c = client(&f.tmp.path().join("st"));
        c.env("FERRY_CONFIG_DIR", &cfg)
            .arg("user")
            .args(args)
            .args(["--server", &f.s.url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let _ = writeln!(child.stdin.take().unwrap(), "{stdin}");
        child.wait_with_output().unwrap()
    };
    ok(&admin(&["add", "carol", "--quota", "5M", "--password-stdin"], "carol-pw"));
    let list = ok(&admin(&["list"], ""));
    assert!(list.contains("carol quota 5.00 MiB") && list.contains("root (admin)"), "{list}");
    ok(&admin(&["grant", "carol", "team", "--write"], ""));
    let r = request(&f.s.addr, "GET", "/api/me", &[("Authorization", &basic_auth("carol"))], b"");
    assert!(r.text().contains("\"path\":\"team\",\"write\":true"), "{}", r.text());
    ok(&admin(&["passwd", "carol", "--password-stdin"], "new-pw"));
    assert_eq!(request(&f.s.addr, "GET", "/api/me", &[("Authorization", &basic_auth("carol"))], b"").status, 401);
    ok(&admin(&["remove", "carol"], ""));
    let o = admin(&["add", "carol", "--password-stdin"], "x");
    assert!(o.status.success(), "the name may be taken again after removal: {}", stderr(&o));
    // A user who is not an admin is refused.
    let o = as_user(&f, "alice", &["user", "list", "--server", &f.s.url()]);
    assert_eq!((o.status.code(), stderr(&o).trim()), (Some(4), "ferry: only admins manage users"));
}

#[test]
fn metrics_parsed_by_a_prometheus_parser_move_with_uploads_and_downloads() {
    let Some(python) = std::env::var_os("FERRY_TEST_PROM_PYTHON") else {
        eprintln!(
            "SKIPPED metrics_parsed_by_a_prometheus_parser: FERRY_TEST_PROM_PYTHON (a python with prometheus_client; .ci/run sets it) is needed"
        );
        return;
    };
    let f = fixture();
    let admin_token = {
        let r = request(
            &f.s.addr,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            br#"{"user":"root","password":"root-pw"}"#,
        );
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["token"].as_str().unwrap().to_owned()
    };
    let scrape = || -> std::collections::HashMap<String, f64> {
        let r = request(&f.s.addr, "GET", "/metrics", &[("Authorization", &format!("Bearer {admin_token}"))], b"");
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
        let parser = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        key = s.name + "".join("{%s=%s}" % kv for kv in sorted(s.labels.items()))
        out[key] = s.value
print(json.dumps(out))
"#;
        let mut c =
            Command::new(&python).args(["-c", parser]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        c.stdin.take().unwrap().write_all(&r.body).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "the Prometheus parser refused the text:\n{}", r.text());
        serde_json::from_slice(&o.stdout).unwrap()
    };
    assert_eq!(
        request(&f.s.addr, "GET", "/metrics", &[("Authorization", &basic_auth("alice"))], b"").status,
        403,
        "admins only"
    );
    assert_eq!(request(&f.s.addr, "GET", "/metrics", &[], b"").status, 403);
    let before = scrape();
    let file = f.tmp.path().join("m.bin");
    std::fs::write(&file, test_data(1 << 20, 5)).unwrap();
    ok(&as_user(&f, "alice", &["upload", file.to_str().unwrap()]));
    ok(&as_user(&f, "alice", &["download", "m.bin", "-o", f.tmp.path().join("back.bin").to_str().unwrap()]));
    let after = scrape();
    let d = |k: &str| {
        after.get(k).copied().unwrap_or_else(|| panic!("no {k}: {after:?}")) - before.get(k).copied().unwrap_or(0.0)
    };
    assert_eq!(d("ferry_uploads_completed_total"), 1.0);
    assert_eq!(d("ferry_uploads_failed_total"), 0.0);
    assert!(d("ferry_received_bytes_total") >= (1 << 20) as f64, "{}", d("ferry_received_bytes_total"));
    assert!(d("ferry_sent_bytes_total") >= (1 << 20) as f64, "{}", d("ferry_sent_bytes_total"));
    assert!(d("ferry_patch_seconds_count") >= 1.0);
    assert!(d("ferry_fsync_seconds_count") >= 1.0);
    assert!(d("ferry_http_requests_total{code=2xx}") >= 3.0);
    assert_eq!(after["ferry_uploads_active"], 0.0);
    assert!(after["ferry_connections_open"] >= 1.0, "this scrape's own connection");
    assert_eq!(after["ferry_patch_seconds_bucket{le=+Inf}"], after["ferry_patch_seconds_count"]);
}

#[test]
fn access_log_names_user_client_status_bytes_and_duration() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    let log = tmp.path().join("server.log");
    let addr = free_addr();
    let mut server = Command::new(ferry_bin())
        .args(["serve", "--listen", &addr, "--data"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(20, "the server", || std::net::TcpStream::connect(&addr).is_ok());
    struct S {
        addr: String,
    }
    let s = S { addr };
    let body = test_data(5000, 3);
    let created = tus(
        &s.addr,
        "POST",
        "/tus/",
        &[
            ("Upload-Length", "5000"),
            ("Authorization", &basic_auth("alice")),
            ("Content-Type", "application/offset+octet-stream"),
        ],
        &body,
    );
    assert_eq!(created.status, 201);
    wait_for(10, "the access log line", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("method=POST path=/tus/")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("method=POST path=/tus/") && l.contains("status=201"))
        .unwrap_or_else(|| panic!("{text}"));
    for part in ["client=127.0.0.1", "user=\"alice\"", "received=5000", "sent=", "ms="] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!line.contains("client left"), "an answer without a body ended normally: {line}");
    // A WebDAV PUT's 201 (Content-Length: 0) and a 404 listing are complete answers too.
    let put = request(&s.addr, "PUT", "/dav/~alice/w.txt", &[("Authorization", &basic_auth("alice"))], b"hello");
    assert_eq!(put.status, 201, "{}", put.text());
    let missing = request(&s.addr, "PROPFIND", "/dav/~alice/nothing/", &[("Authorization", &basic_auth("alice"))], b"");
    assert_eq!(missing.status, 404);
    wait_for(10, "the PROPFIND line", || std::fs::read_to_string(&log).unwrap_or_default().contains("method=PROPFIND"));
    let text = std::fs::read_to_string(&log).unwrap();
    for method in ["method=PUT", "method=PROPFIND"] {
        let line =
            text.lines().find(|l| l.contains(method) && l.contains("status=")).unwrap_or_else(|| panic!("{text}"));
        assert!(!line.contains("client left"), "{line}");
    }
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn completions_and_quiet() {
    for (shell, marker) in [("bash", "_ferry()"), ("zsh", "#compdef ferry"), ("fish", "complete -c ferry")] {
        let o = run({
            let mut c = Command::new(ferry_bin());
            c.args(["completions", shell]);
            c
        });
        let text = ok(&o);
        assert!(
            text.contains(marker) && text.contains("upload") && text.contains("whoami"),
            "{shell}: {}",
            &text[..text.len().min(300)]
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let file = tmp.path().join("q.bin");
    std::fs::write(&file, b"quiet please").unwrap();
    let o = run({
        let mut c = client(&tmp.path().join("st"));
        c.args(["upload", "-q", "-s", &s.url()]).arg(&file);
        c
    });
    ok(&o);
    assert_eq!(stderr(&o), "", "--quiet prints nothing on success");
}

/// One failure: the command, its exact one-line message (`{URL}` is the server) and exit code.
struct Case {
    what: &'static str,
    args: Vec<String>,
    user: Option<&'static str>,
    message: String,
    code: i32,
}

#[test]
fn failure_messages_and_exit_codes() {
    let f = fixture();
    let url = f.s.url();
    let dead = format!("http://{}", free_addr());
    let missing = f.tmp.path().join("missing.bin").display().to_string();
    let folder = f.tmp.path().join("afolder");
    std::fs::create_dir_all(&folder).unwrap();
    let folder = folder.display().to_string();
    // alice's token, revoked on the server (as after `ferry logout` elsewhere or a new password).
    let revoked_cfg = f.tmp.path().join("cfg-revoked");
    let t = {
        let r = request(
            &f.s.addr,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            br#"{"user":"alice","password":"alice-pw"}"#,
        );
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["token"].as_str().unwrap().to_owned()
    };
    std::fs::create_dir_all(&revoked_cfg).unwrap();
    std::fs::write(
        revoked_cfg.join("credentials.json"),
        format!(r#"{{"{url}": {{"current": "alice", "tokens": {{"alice": "{t}"}}}}}}"#),
    )
    .unwrap();
    assert_eq!(
        request(&f.s.addr, "DELETE", "/api/tokens/current", &[("Authorization", &format!("Bearer {t}"))], b"").status,
        204
    );

    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = vec![
        Case { what: "server down", args: a(&["ls", "-s", &dead]), user: Some("alice"), message: format!("cannot reach {dead} (connection refused); run the same command again to resume"), code: 3 },
        Case { what: "server down, upload", args: a(&["upload", "-s", &dead, &missing]), user: Some("alice"), message: format!("cannot reach {dead} (connection refused); run the same command again to resume"), code: 3 },
        Case { what: "not logged in", args: a(&["ls", "-s", &url]), user: None, message: format!("{url} needs an account; run `ferry login -s {url}`"), code: 4 },
        Case { what: "no such saved login", args: a(&["ls", "-s", &url, "--user", "carol"]), user: Some("alice"), message: format!("not logged in as carol on {url}; run `ferry login -s {url} --user carol`"), code: 4 },
        Case { what: "revoked token", args: a(&["ls", "-s", &url]), user: Some("revoked"), message: format!("your token for alice on {url} was revoked or has expired; run `ferry login -s {url} --user alice`"), code: 4 },
        Case { what: "wrong password", args: a(&["login", "-s", &url, "--user", "alice", "--password-stdin"]), user: Some("alice"), message: "wrong user name or password".into(), code: 4 },
        Case { what: "missing local file", args: a(&["upload", "-s", &url, &missing]), user: Some("alice"), message: format!("upload of {missing} stopped: {missing}: No such file or directory"), code: 5 },
        Case { what: "a folder without -r", args: a(&["upload", "-s", &url, &folder]), user: Some("alice"), message: format!("{folder} is a folder; upload folders with -r"), code: 2 },
        Case { what: "no such remote file", args: a(&["download", "-s", &url, "nothing.bin"]), user: Some("alice"), message: "no such file: /~alice/nothing.bin".into(), code: 4 },
        Case { what: "another user's file", args: a(&["rm", "-s", &url, "~bob/x"]), user: Some("alice"), message: "you may not change /~bob/x".into(), code: 4 },
        Case { what: "climbing out", args: a(&["ls", "-s", &url, "a/../../b"]), user: Some("alice"), message: "\"a/../../b\": `..` is not allowed in remote paths".into(), code: 2 },
        Case { what: "not a URL", args: a(&["ls", "-s", "ftp://x"]), user: Some("alice"), message: "\"ftp://x\" is not a server URL (use http:// or https://)".into(), code: 2 },
        Case { what: "no data directory", args: a(&["user", "list", "--data", "/nonexistent/ferry-data"]), user: None, message: "there is no data directory /nonexistent/ferry-data; pass the one `ferry serve` uses with --data (or make it first), or manage users over HTTP with --server URL".into(), code: 2 },
        Case { what: "unknown upload id", args: a(&["uploads", "-s", &url, "--cancel", "zzzz"]), user: Some("alice"), message: "no unfinished upload zzzz".into(), code: 4 },
    ];
    for c in &cases {
        let mut cmd = match c.user {
            Some("revoked") => {
                let mut cmd = client(&f.tmp.path().join("st-revoked"));
                cmd.env("FERRY_CONFIG_DIR", &revoked_cfg);
                cmd
            }
            Some(u) => f.u.cli(u, &url),
            None => {
                let mut cmd = client(&f.tmp.path().join("st-nobody"));
                cmd.env("FERRY_CONFIG_DIR", f.tmp.path().join("cfg-nobody"));
                cmd
            }
        };
        cmd.env_remove("FERRY_SERVER")
            .args(&c.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let _ = writeln!(child.stdin.take().unwrap(), "wrong-password");
        let o = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(6), "{}: took {:?}", c.what, started.elapsed());
        assert_eq!((o.status.code(), stderr(&o)), (Some(c.code), format!("ferry: {}\n", c.message)), "{}", c.what);
    }
    // Usage errors are clap's, exit 2; --json failures are JSON on stdout as well.
    let o = run({
        let mut c = Command::new(ferry_bin());
        c.args(["ls", "--no-such-flag"]);
        c
    });
    assert_eq!(o.status.code(), Some(2));
    let o = as_user(&f, "alice", &["ls", "--json", "-s", &dead]);
    let v = json_of(&o);
    assert_eq!(
        (v["exit_code"].as_u64(), v["error"].as_str()),
        (
            Some(3),
            Some(format!("cannot reach {dead} (connection refused); run the same command again to resume").as_str())
        )
    );
}

#[test]
fn inbox_header_nothing_waiting_and_id_prefixes() {
    let f = fixture();
    let o = as_user(&f, "bob", &["inbox"]);
    assert_eq!((ok(&o).as_str(), stderr(&o).as_str()), ("", "nothing waiting for you\n"));
    let file = f.tmp.path().join("gift.txt");
    std::fs::write(&file, b"for bob").unwrap();
    for _ in 0..2 {
        ok(&as_user(&f, "alice", &["send", "--via", "server", "--to", "bob", file.to_str().unwrap()]));
    }
    let listing = ok(&as_user(&f, "bob", &["inbox"]));
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("FROM") && lines[0].ends_with("NAME"), "{listing}");
    assert_eq!(lines.len(), 3, "{listing}");
    let ids: Vec<&str> = lines[1..].iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    // The shortest prefix that tells the two apart, and one that does not.
    let n = (1..ids[0].len()).find(|&n| ids[0][..n] != ids[1][..n]).unwrap();
    let common = &ids[0][..n - 1];
    if !common.is_empty() {
        let o = as_user(&f, "bob", &["decline", common]);
        assert_eq!(o.status.code(), Some(2), "an ambiguous prefix: {}", stderr(&o));
    }
    let out = f.tmp.path().join("got");
    ok(&as_user(&f, "bob", &["receive", &ids[0][..n], "-o", out.to_str().unwrap()]));
    assert_eq!(std::fs::read(out.join("gift.txt")).unwrap(), b"for bob");
    ok(&as_user(&f, "bob", &["decline", &ids[1][..n]]));
    let o = as_user(&f, "bob", &["inbox"]);
    assert_eq!(stderr(&o), "nothing waiting for you\n");
}
