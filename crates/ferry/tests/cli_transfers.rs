//! `ferry upload` and `ferry download` as users run them: interrupted with Ctrl-C and run
//! again, servers restarted underneath them, files changed or corrupted on the server, and
//! the exit codes scripts rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use common::*;

fn spawn_upload(state: &Path, server: &str, file: &Path) -> Child {
    client(state)
        .args(["upload", "--json", "--server", server])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn upload_path(url: &str) -> String {
    url.split_once("/tus/").map(|(_, id)| format!("/tus/{id}")).unwrap()
}

#[test]
fn upload_resumes_after_ctrl_c_sending_only_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &["--commit-every", "1M"]);
    let proxy = Proxy::start(&s.addr, 8 << 20);
    let data = test_data(48 << 20, 5);
    let file = tmp.path().join("movie.bin");
    std::fs::write(&file, &data).unwrap();
    let state = tmp.path().join("state");

    let child = spawn_upload(&state, &proxy.url(), &file);
    wait_for(30, "the upload to be remembered", || remembered_upload(&state).is_some());
    let loc = upload_path(&remembered_upload(&state).unwrap());
    // Watch the staging file, not HEAD: a HEAD would (rightly) end the running PATCH.
    let staged = s.staging_file(loc.trim_start_matches("/tus/"));
    wait_for(60, "12 MiB on the server", || std::fs::metadata(&staged).is_ok_and(|m| m.len() >= 12 << 20));
    signal(child.id(), "INT");
    // Let what the client already handed to the (throttling) proxy reach the server.
    proxy.rate.store(0, Ordering::Relaxed);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "Ctrl-C exit code; stderr: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resume"), "tells the user how to go on");
    let kept = head_offset(&s.addr, &loc).unwrap();
    assert!(kept >= 12 << 20);

    proxy.rate.store(0, Ordering::Relaxed);
    let out = client(&state).args(["upload", "--json", "--server", &proxy.url()]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["resumed_from"], kept, "continued where the server was");
    assert_eq!(v["sent"], data.len() as u64 - kept, "only the rest was sent");
    assert_eq!(v["verified"], true);
    assert_eq!(v["sha256"], sha256_hex(&data));
    assert_eq!(std::fs::read(s.tree_file("movie.bin")).unwrap(), data);
    assert!(remembered_upload(&state).is_none(), "the resume record is dropped when done");
}

#[test]
fn upload_survives_a_server_restart_underneath_it() {
    let tmp = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let data_dir = tmp.path().join("data");
    let mut s = Server::start_on(&listen, &data_dir, &["--commit-every", "1M"]);
    let proxy = Proxy::start(&listen, 8 << 20);
    let data = test_data(32 << 20, 6);
    let file = tmp.path().join("restart.bin");
    std::fs::write(&file, &data).unwrap();
    let state = tmp.path().join("state");

    let child = spawn_upload(&state, &proxy.url(), &file);
    wait_for(30, "the upload to be remembered", || remembered_upload(&state).is_some());
    let loc = upload_path(&remembered_upload(&state).unwrap());
    let staged = s.staging_file(loc.trim_start_matches("/tus/"));
    wait_for(60, "8 MiB on the server", || std::fs::metadata(&staged).is_ok_and(|m| m.len() >= 8 << 20));
    s.kill9();
    thread::sleep(Duration::from_millis(700));
    proxy.rate.store(0, Ordering::Relaxed);
    let _s = Server::start_on(&listen, &data_dir, &[]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["verified"], true);
    assert_eq!(std::fs::read(data_dir.join("files/restart.bin")).unwrap(), data);
}

/// Uploads `data` as `name` straight to the server.
fn put(s: &Server, state: &Path, name: &str, data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, data).unwrap();
    let out =
        client(state).args(["upload", "--json", "--overwrite", "--server", &s.url()]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Starts a throttled download and interrupts it once `min` bytes are on disk.
fn interrupted_download(state: &Path, server: &str, remote: &str, out: &Path, min: u64) {
    let mut child = client(state)
        .args(["download", "--json", "--server", server, remote, "-o"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut partial = out.as_os_str().to_owned();
    partial.push(".ferry-partial");
    wait_for(60, "part of the download", || std::fs::metadata(&partial).is_ok_and(|m| m.len() >= min));
    signal(child.id(), "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!out.exists(), "an unfinished download is never at the output path");
}

#[test]
fn download_resumes_after_ctrl_c_fetching_only_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let data = test_data(40 << 20, 8);
    put(&s, &state, "dl.bin", &data);
    let proxy = Proxy::start(&s.addr, 8 << 20);
    let out = tmp.path().join("dl-copy.bin");
    interrupted_download(&state, &proxy.url(), "dl.bin", &out, 8 << 20);

    proxy.rate.store(0, Ordering::Relaxed);
    let o = client(&state)
        .args(["download", "--json", "--server", &proxy.url(), "dl.bin", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    let resumed = v["resumed_from"].as_u64().unwrap();
    assert!(resumed >= 8 << 20, "kept the partial file: {v}");
    assert_eq!(v["fetched"].as_u64().unwrap(), data.len() as u64 - resumed, "fetched only the rest");
    assert_eq!((v["verified"].as_bool(), v["restarted"].as_bool()), (Some(true), Some(false)));
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn download_restarts_when_the_file_changed_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    put(&s, &state, "v.bin", &test_data(24 << 20, 1));
    let proxy = Proxy::start(&s.addr, 8 << 20);
    let out = tmp.path().join("v-copy.bin");
    interrupted_download(&state, &proxy.url(), "v.bin", &out, 4 << 20);

    let v2 = test_data(24 << 20, 2);
    put(&s, &state, "v.bin", &v2);
    proxy.rate.store(0, Ordering::Relaxed);
    let o = client(&state)
        .args(["download", "--json", "--server", &proxy.url(), "v.bin", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert_eq!(v["restarted"], true, "{v}");
    assert_eq!(std::fs::read(&out).unwrap(), v2, "never stitched from two versions");
}

#[test]
fn corrupted_download_fails_verification_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let data = test_data(1 << 20, 9);
    put(&s, &state, "rot.bin", &data);
    // Bit rot on the server: same size, same mtime, different bytes.
    let path = s.tree_file("rot.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bad = data.clone();
    bad[12345] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    let out = tmp.path().join("rot-copy.bin");
    let o = client(&state).args(["download", "--server", &s.url(), "rot.bin", "-o"]).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(6), "verification exit code; {}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("verification failed"));
    assert!(!out.exists());
}

#[test]
fn exit_codes_and_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let file = tmp.path().join("x.bin");
    std::fs::write(&file, b"x").unwrap();
    let dead = format!("http://{}", free_addr());
    let o = client(&state).args(["upload", "--retries", "1", "--server", &dead]).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "unreachable: {}", String::from_utf8_lossy(&o.stderr));
    let o = client(&state)
        .args(["download", "--retries", "1", "--server", &dead, "x.bin"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));

    let s = Server::start(&tmp.path().join("data"), &[]);
    let o = client(&state).args(["upload", "--server", &s.url()]).arg(tmp.path().join("missing.bin")).output().unwrap();
    assert_eq!(o.status.code(), Some(5), "local file missing");
    let o = client(&state).args(["upload", "--server", &s.url(), "--dir", "../escape"]).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "a bad remote path is a usage error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`..` is not allowed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let o =
        client(&state).args(["download", "--server", &s.url(), "nope.bin"]).current_dir(tmp.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn uploads_several_files_into_a_folder_then_lists_and_downloads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let (a, b) = (tmp.path().join("a.txt"), tmp.path().join("b.txt"));
    std::fs::write(&a, b"alpha").unwrap();
    std::fs::write(&b, b"").unwrap();
    let o = client(&state)
        .args(["upload", "--json", "--server", &s.url(), "--dir", "/team/docs/"])
        .args([&a, &b])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    assert_eq!(std::fs::read(s.tree_file("team/docs/a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(s.tree_file("team/docs/b.txt")).unwrap(), b"");
    let dest = tmp.path().join("dl");
    std::fs::create_dir(&dest).unwrap();
    let url = format!("{}/files/team/docs/a.txt", s.url());
    let o = client(&state).args(["download", &url, "-o"]).arg(&dest).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"alpha");
}
