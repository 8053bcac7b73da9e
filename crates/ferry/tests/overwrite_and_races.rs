//! Issue 7, what else could lose or mix bytes: an upload never replaces other content at
//! its destination unless told to (identical content is "already there"); a download never
//! replaces a different local file unless forced, and a finished one run again fetches
//! nothing; two downloads to one output never race; two servers never share a data
//! directory; a complete upload whose placement fails is kept and placed later.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::process::Stdio;

use common::*;

#[test]
fn an_upload_never_replaces_other_content_unless_told_to() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let file = tmp.path().join("report.pdf");
    std::fs::write(&file, test_data(3 << 20, 81)).unwrap();
    let up = |extra: &[&str]| {
        client(&state)
            .args(["upload", "--json", "--dir", "docs", "--server", &s.url()])
            .args(extra)
            .arg(&file)
            .output()
            .unwrap()
    };
    let first = up(&[]);
    assert!(first.status.success());
    assert_eq!(json_of(&first)["sent"], 3 << 20);

    // The same content again: nothing is sent.
    let again = up(&[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let v = json_of(&again);
    assert_eq!((v["sent"].as_u64(), v["deduplicated"].as_bool()), (Some(0), Some(true)), "{v}");

    // Other content under the same name: refused before any byte is sent.
    let other = test_data(3 << 20, 82);
    std::fs::write(&file, &other).unwrap();
    let refused = up(&[]);
    assert_eq!(refused.status.code(), Some(4), "refused by the server: exit 4");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("already exists") && err.contains("--overwrite"), "{err}");
    assert_ne!(std::fs::read(s.tree_file("docs/report.pdf")).unwrap(), other, "the old file was kept");

    let replaced = up(&["--overwrite"]);
    assert!(replaced.status.success(), "{}", String::from_utf8_lossy(&replaced.stderr));
    assert_eq!(std::fs::read(s.tree_file("docs/report.pdf")).unwrap(), other);
}

#[test]
fn a_download_keeps_a_different_local_file_and_skips_an_identical_one() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(5 << 20, 83);
    let src = tmp.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    assert!(
        client(&tmp.path().join("st"))
            .args(["upload", "--server", &s.url()])
            .arg(&src)
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = tmp.path().join("out.bin");
    let down = |extra: &[&str]| {
        client(&tmp.path().join("st"))
            .args(["download", "--json", "--server", &s.url(), "src.bin", "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(down(&[]).status.success());
    let again = down(&[]);
    assert!(again.status.success());
    let v = json_of(&again);
    assert_eq!((v["fetched"].as_u64(), v["already_there"].as_bool()), (Some(0), Some(true)), "{v}");

    std::fs::write(&out, b"my own notes, not the server's file").unwrap();
    let refused = down(&[]);
    assert_eq!(refused.status.code(), Some(5), "a local file problem: exit 5");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), b"my own notes, not the server's file");
    assert!(!tmp.path().join("out.bin.ferry-partial").exists(), "a refused download leaves nothing behind");

    assert!(down(&["--force"]).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn two_downloads_to_one_output_never_race() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(32 << 20, 84);
    let src = tmp.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();
    assert!(
        client(&tmp.path().join("st"))
            .args(["upload", "--server", &s.url()])
            .arg(&src)
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = tmp.path().join("copy.bin");
    let start = || {
        client(&tmp.path().join("st"))
            .args(["download", "--limit-rate", "8M", "--server", &s.url(), "big.bin", "-o"])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start();
    wait_for(10, "the first download to start", || tmp.path().join("copy.bin.ferry-partial").exists());
    let second = start().wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(std::fs::read(&out).unwrap() == data);
}

#[test]
fn two_servers_never_share_a_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _first = Server::start(&data, &[]);
    let second = std::process::Command::new(ferry_bin())
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already using the data directory"), "{err}");
}

#[test]
fn a_complete_upload_whose_placement_fails_is_kept_and_placed_later() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(1 << 20, 85);
    let md = metadata(&[("filename", b"clash.bin")]);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string()), ("Upload-Metadata", &md)]);
    assert_eq!(patch(&s.addr, &loc, 0, &data[..1000], &[]).status, 204);
    // Something gets in the way of the destination while the upload runs.
    std::fs::create_dir_all(s.tree_file("clash.bin")).unwrap();
    let r = patch(&s.addr, &loc, 1000, &data[1000..], &[]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("kept"), "{}", r.text());
    let id = loc.trim_start_matches("/tus/");
    assert_eq!(std::fs::metadata(s.staging_file(id)).unwrap().len(), data.len() as u64, "the received bytes are kept");
    assert_eq!(tus(&s.addr, "HEAD", &loc, &[], b"").status, 409, "still in the way");
    std::fs::remove_dir(s.tree_file("clash.bin")).unwrap();
    let h = tus(&s.addr, "HEAD", &loc, &[], b"");
    assert_eq!(h.status, 200);
    assert_eq!(h.offset(), Some(data.len() as u64));
    assert_eq!(std::fs::read(s.tree_file("clash.bin")).unwrap(), data);
}
