//! `ferry serve` configuration (flags > environment > file > defaults), `--root`,
//! graceful shutdown, and help and errors for people.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;

fn banner(cmd: &mut Command) -> (std::process::Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

#[test]
fn flags_beat_environment_beat_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("ferry.toml");
    let file_data = tmp.path().join("from-file");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata = \"{}\"\nmax_size = \"2M\"\nupload_ttl = \"2h\"\n",
            file_data.display()
        ),
    )
    .unwrap();
    // File only.
    let (mut c, line) = banner(Command::new(ferry_bin()).args(["serve", "--config"]).arg(&cfg));
    assert!(line.contains(&file_data.display().to_string()), "{line}");
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert_eq!(request(&addr, "OPTIONS", "/tus/", &[], b"").header("tus-max-size"), Some("2097152"));
    let _ = c.kill();
    // Environment beats the file.
    let env_data = tmp.path().join("from-env");
    let (mut c, line) = banner(
        Command::new(ferry_bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("FERRY_DATA", &env_data)
            .env("FERRY_MAX_SIZE", "3M"),
    );
    assert!(line.contains(&env_data.display().to_string()), "{line}");
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert_eq!(request(&addr, "OPTIONS", "/tus/", &[], b"").header("tus-max-size"), Some("3145728"));
    let _ = c.kill();
    // Flags beat both.
    let flag_data = tmp.path().join("from-flag");
    let (mut c, line) = banner(
        Command::new(ferry_bin())
            .args(["serve", "--max-size", "4M", "--config"])
            .arg(&cfg)
            .arg("--data")
            .arg(&flag_data)
            .env("FERRY_DATA", &env_data)
            .env("FERRY_MAX_SIZE", "3M"),
    );
    assert!(line.contains(&flag_data.display().to_string()), "{line}");
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert_eq!(request(&addr, "OPTIONS", "/tus/", &[], b"").header("tus-max-size"), Some("4194304"));
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn bad_configuration_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nmax_sise = 5\n").unwrap();
    let o = Command::new(ferry_bin()).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("max_sise"), "names the bad key: {err}");
    let o = Command::new(ferry_bin()).args(["serve", "--max-size", "lots"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("examples"));
    let o = Command::new(ferry_bin()).args(["serve", "--root"]).arg(tmp.path().join("missing")).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a directory"));
}

#[test]
fn help_teaches() {
    let o = Command::new(ferry_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for word in ["serve", "upload", "download", "resume"] {
        assert!(text.contains(word), "--help mentions {word}");
    }
    let o = Command::new(ferry_bin()).args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in ["--listen", "--data", "--root", "--config", "FERRY_LISTEN", "127.0.0.1:8080"] {
        assert!(text.contains(flag), "serve --help mentions {flag}");
    }
}

#[test]
fn root_serves_an_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("share");
    std::fs::create_dir_all(root.join("old")).unwrap();
    std::fs::write(root.join("old/readme.txt"), b"already here").unwrap();
    let s = Server::start(&tmp.path().join("data"), &["--root", root.to_str().unwrap()]);
    assert_eq!(request(&s.addr, "GET", "/files/old/readme.txt", &[], b"").body, b"already here");
    let md = metadata(&[("filename", b"new.txt"), ("dir", b"old")]);
    let loc = create(&s.addr, &[("Upload-Length", "3"), ("Upload-Metadata", &md)]);
    assert_eq!(patch(&s.addr, &loc, 0, b"new", &[]).status, 204);
    assert_eq!(std::fs::read(root.join("old/new.txt")).unwrap(), b"new");
}

#[test]
fn sigterm_commits_in_flight_patches_and_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(4 << 20, 4);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string())]);
    let mut st = open_patch(&s.addr, &loc, 0, data.len() as u64, &data[..1 << 20], &[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal(s.child.id(), "TERM");
    let r = read_response(&mut st);
    assert_eq!(r.status, 503, "the in-flight PATCH is answered: {}", r.text());
    assert!(s.child.wait().unwrap().success(), "clean exit");
    let _ = st.write_all(b"late");
    s.restart();
    assert_eq!(head_offset(&s.addr, &loc), Some(1 << 20), "what arrived before shutdown was kept");
}

/// `--database postgres://…`: the metadata lives in PostgreSQL (no ferry.db), survives a
/// `kill -9` of the server, and a resumed upload finds its offset there. Runs when
/// `FERRY_TEST_PG_URL` names a server (`.ci/run` starts one); prints SKIPPED otherwise.
#[test]
fn metadata_in_postgres_survives_a_server_kill() {
    let Some(server) = std::env::var("FERRY_TEST_PG_URL").ok().filter(|s| !s.is_empty()) else {
        eprintln!("SKIPPED metadata_in_postgres_survives_a_server_kill: FERRY_TEST_PG_URL is not set");
        return;
    };
    let server = server.trim_end_matches('/');
    let db = format!("ferry_serve_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql").args(["-d", &format!("{server}/postgres"), "-Atc", sql]).output().unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    };
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    psql(&format!("CREATE DATABASE {db}"));
    let url = format!("{server}/{db}");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start(&data, &["--database", &url]);
    let bytes = test_data(24 << 20, 71);
    let file = tmp.path().join("pg.bin");
    std::fs::write(&file, &bytes).unwrap();
    let state = tmp.path().join("state");
    // An upload slow enough to be cut by the kill, then resumed against a new process.
    let mut up = client(&state)
        .args(["upload", "--json", "--limit-rate", "4M", "--server", &s.url()])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its first PATCHes (~1.5 s each) are acknowledged by then.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    s.kill9();
    let _ = up.kill(); // the user runs the command again
    let _ = up.wait();
    let s = Server::start_on(&s.addr, &data, &["--database", &url]);
    let out = client(&state).args(["upload", "--json", "--server", &s.url()]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert!(v["resumed_from"].as_u64().unwrap() > 0, "the offset was kept in PostgreSQL: {v}");
    assert_eq!(v["verified"], true);
    assert_eq!(std::fs::read(s.tree_file("pg.bin")).unwrap(), bytes);
    assert!(!data.join("ferry.db").exists(), "no SQLite database beside it");
    drop(s);
    psql(&format!("DROP DATABASE {db}"));
}
