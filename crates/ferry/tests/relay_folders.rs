//! Issue 11: `ferry send --to bob DIR` sends a folder whole through the relay (structure,
//! empty folders, links skipped; a re-run sends nothing twice), the receiving side never
//! writes outside its folder, and `send` of content the server already holds makes the
//! item from the server's copy after a proof of possession instead of uploading it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use ferry_core::digest::possession_proof;

fn go(u: &Users, user: &str, url: &str, args: &[&str]) -> Output {
    u.cli(user, url).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "failed: {err}\nstdout: {}", String::from_utf8_lossy(&o.stdout));
    err
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Files (relative path → bytes), folders and links under `root`.
type Tree = (Vec<(String, Vec<u8>)>, Vec<String>, Vec<String>);

/// Every file and every folder under `root`, links as such.
fn tree(root: &Path) -> Tree {
    let (mut files, mut dirs, mut links) = (Vec::new(), Vec::new(), Vec::new());
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{rel}{}", e.file_name().to_string_lossy());
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                links.push(name);
            } else if t.is_dir() {
                dirs.push(name.clone());
                stack.push((e.path(), format!("{name}/")));
            } else {
                files.push((name, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    files.sort();
    dirs.sort();
    (files, dirs, links)
}

/// A folder with nested folders, an empty folder (inside another), a link and a larger file.
fn make_photos(root: &Path) -> std::path::PathBuf {
    let p = root.join("photos");
    std::fs::create_dir_all(p.join("2024/summer")).unwrap();
    std::fs::create_dir_all(p.join("empty/inner")).unwrap();
    std::fs::write(p.join("top.txt"), b"top").unwrap();
    std::fs::write(p.join("2024/a.jpg"), test_data(3000, 1)).unwrap();
    std::fs::write(p.join("2024/summer/b.jpg"), test_data(2 << 20, 2)).unwrap();
    std::fs::write(p.join("zero.txt"), b"").unwrap();
    std::os::unix::fs::symlink("top.txt", p.join("link.txt")).unwrap();
    p
}

/// A server with accounts alice and bob, both logged in.
fn alice_and_bob() -> (tempfile::TempDir, std::path::PathBuf, Server, Users) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice", "bob"]);
    let s = Server::start_auth(&data, &[]);
    let u = Users { dir: tmp.path().to_path_buf() };
    u.login("alice", &s.url());
    u.login("bob", &s.url());
    (tmp, data, s, u)
}

#[test]
fn a_folder_sent_whole_arrives_whole_and_a_rerun_sends_nothing_twice() {
    let (tmp, data, s, u) = alice_and_bob();
    let photos = make_photos(tmp.path());
    let photos_arg = photos.to_str().unwrap();

    let o = go(&u, "alice", &s.url(), &["send", "--json", "--to", "bob", photos_arg]);
    ok(&o);
    let out = lines(&o);
    let summary = out.last().unwrap();
    // 4 files and the empty folder; the link is left out and counted.
    assert_eq!((summary["files"].as_u64(), summary["transferred"].as_u64()), (Some(5), Some(5)), "{summary}");
    assert_eq!(summary["not_regular"], 1, "{summary}");
    let names: Vec<&str> = out.iter().filter_map(|v| v["name"].as_str()).collect();
    assert!(names.contains(&"photos/2024/summer/b.jpg") && names.contains(&"photos/empty/inner"), "{names:?}");

    // Interrupted or not, a re-run sends nothing it sent before.
    let o = go(&u, "alice", &s.url(), &["send", "--json", "--to", "bob", photos_arg]);
    ok(&o);
    let summary = lines(&o).last().unwrap().clone();
    assert_eq!((summary["transferred"].as_u64(), summary["skipped"].as_u64()), (Some(0), Some(5)), "{summary}");
    assert_eq!(summary["bytes"], 0);

    // A folder cannot go peer to peer: a usage error, before anything is sent.
    let o = go(&u, "alice", &s.url(), &["send", "--via", "direct", "--to", "bob", photos_arg]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a folder: folders go through the server"));

    // bob's inbox shows the paths and the folder; he receives everything into one place.
    let o = go(&u, "bob", &s.url(), &["inbox", "--json"]);
    ok(&o);
    let inbox = lines(&o);
    assert_eq!(inbox.len(), 5, "{inbox:?}");
    let folder = inbox.iter().find(|v| v["name"] == "photos/empty/inner").unwrap();
    assert_eq!((folder["kind"].as_str(), folder["size"].as_u64()), (Some("folder"), Some(0)));
    let got = tmp.path().join("got");
    ok(&go(&u, "bob", &s.url(), &["receive", "--all", "-o", got.to_str().unwrap()]));
    let (sent_files, sent_dirs, _) = tree(&photos);
    let (got_files, got_dirs, got_links) = tree(&got.join("photos"));
    assert_eq!(got_files, sent_files, "every file, byte for byte");
    assert_eq!(got_dirs, sent_dirs, "every folder, the empty ones too");
    assert!(got_links.is_empty() && !got.join("photos/link.txt").exists(), "the link was not sent");
    let o = go(&u, "alice", &s.url(), &["outbox", "--json"]);
    let delivered = lines(&o).iter().filter(|v| v["recipients"][0]["state"] == "delivered").count();
    assert_eq!(delivered, 5);
    assert_eq!(std::fs::read_dir(data.join("staging")).unwrap().count(), 0, "relay bytes gone once delivered");

    // `DIR/` sends the folder's contents (rsync's naming).
    let o = go(&u, "alice", &s.url(), &["send", "--json", "--to", "bob", &format!("{photos_arg}/2024/")]);
    ok(&o);
    let mut names: Vec<String> = lines(&o).iter().filter_map(|v| v["name"].as_str().map(str::to_owned)).collect();
    names.sort();
    assert_eq!(names, ["a.jpg", "summer/b.jpg"]);
}

#[test]
fn a_sender_cannot_aim_anything_outside_the_receiving_folder() {
    let (tmp, _data, s, u) = alice_and_bob();

    // Crafted item paths are refused when the upload is created, before any byte.
    let auth = basic_auth("alice");
    for (folder, kind, len) in [
        ("../escape", "file", "5"),
        ("/etc", "file", "5"),
        ("a/../../b", "file", "5"),
        ("ok", "folder", "5"),
        ("a\\b", "file", "5"),
    ] {
        let md = metadata(&[
            ("filename", b"x.txt"),
            ("relay_to", b"bob"),
            ("relay_folder", folder.as_bytes()),
            ("relay_kind", kind.as_bytes()),
        ]);
        let r = tus(
            &s.addr,
            "POST",
            "/tus/",
            &[("Authorization", &auth), ("Upload-Length", len), ("Upload-Metadata", &md)],
            b"",
        );
        assert_eq!(r.status, 400, "{folder} {kind}: {}", r.text());
    }

    // A link in bob's folder where the sent folder would go: nothing is written through it.
    let photos = make_photos(tmp.path());
    ok(&go(&u, "alice", &s.url(), &["send", "--to", "bob", photos.to_str().unwrap()]));
    let got = tmp.path().join("got");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&got).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, got.join("photos")).unwrap();
    let o = go(&u, "bob", &s.url(), &["receive", "--all", "-o", got.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is a symbolic link, and ferry does not write through links"), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing landed behind the link");
    let o = go(&u, "bob", &s.url(), &["inbox", "--json"]);
    assert_eq!(lines(&o).len(), 5, "nothing was acknowledged");
}

/// `POST /api/dedup` with `relay_to`, then the proofs `make` returns for the challenge.
fn relay_dedup(addr: &str, user: &str, data: &[u8], make: impl Fn(&[u8], u64, u64) -> String) -> Resp {
    let auth = basic_auth(user);
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let body =
        serde_json::json!({ "size": data.len(), "sha256": sha256_hex(data), "filename": "x.bin", "relay_to": "bob" });
    let r = request(addr, "POST", "/api/dedup", &h, body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let hex = v["nonce"].as_str().unwrap();
    let nonce: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let proofs: Vec<String> = v["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| make(&nonce, r["offset"].as_u64().unwrap(), r["length"].as_u64().unwrap()))
        .collect();
    let body = serde_json::json!({ "proofs": proofs }).to_string();
    request(addr, "POST", &format!("/api/dedup/{}", v["challenge"].as_str().unwrap()), &h, body.as_bytes())
}

#[test]
fn send_of_content_the_server_holds_uploads_nothing() {
    let (tmp, _data, s, u) = alice_and_bob();
    let content = test_data(8 << 20, 7);
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, &content).unwrap();
    let file_arg = file.to_str().unwrap();

    // Not on the server yet: uploaded.
    let o = go(&u, "alice", &s.url(), &["send", "--json", "--to", "bob", file_arg]);
    ok(&o);
    let first = lines(&o)[0].clone();
    assert_eq!((first["deduplicated"].as_bool(), first["sent"].as_u64()), (Some(false), Some(8 << 20)), "{first}");

    // alice keeps a copy in her home; sending it again moves no bytes.
    ok(&go(&u, "alice", &s.url(), &["upload", "--dir", "keep", file_arg]));
    let o = go(&u, "alice", &s.url(), &["send", "--json", "--to", "bob", file_arg]);
    let err = ok(&o);
    let second = lines(&o)[0].clone();
    assert_eq!((second["deduplicated"].as_bool(), second["sent"].as_u64()), (Some(true), Some(0)), "{second}");
    assert_ne!(second["id"], first["id"]);
    let o = go(&u, "alice", &s.url(), &["send", "--to", "bob", file_arg]);
    assert!(ok(&o).contains("without uploading it (the server had its content)"), "{err}");
    // --no-dedup uploads regardless.
    let o = go(&u, "alice", &s.url(), &["send", "--json", "--no-dedup", "--to", "bob", file_arg]);
    ok(&o);
    assert_eq!(lines(&o)[0]["sent"], 8 << 20);

    // bob receives each, byte for byte, and the items are gone afterwards.
    let got = tmp.path().join("got");
    for v in [&first, &second] {
        let id = v["id"].as_str().unwrap();
        let dir = got.join(id);
        ok(&go(&u, "bob", &s.url(), &["receive", id, "-o", dir.to_str().unwrap()]));
        assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), content);
    }

    // bob may not reuse alice's copy (user mode): his send of the same content uploads.
    let o = go(&u, "bob", &s.url(), &["send", "--json", "--to", "alice", file_arg]);
    ok(&o);
    assert_eq!(lines(&o)[0]["deduplicated"], false);

    // Knowing the hash is not enough: wrong proofs make no item.
    let before = go(&u, "bob", &s.url(), &["inbox", "--json"]);
    let r = relay_dedup(&s.addr, "alice", &content, |_, _, _| "00".repeat(32));
    assert_eq!(r.status, 403, "{}", r.text());
    let after = go(&u, "bob", &s.url(), &["inbox", "--json"]);
    assert_eq!(lines(&after).len(), lines(&before).len(), "no item from a failed proof");
    // The honest proof makes one, named as asked, with the server's bytes.
    let r = relay_dedup(&s.addr, "alice", &content, |nonce, o, l| {
        possession_proof(nonce, o, &content[o as usize..(o + l) as usize])
    });
    assert_eq!(r.status, 201, "{}", r.text());
    let id = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"].as_str().unwrap().to_owned();
    let o = go(&u, "bob", &s.url(), &["receive", "--json", &id, "-o", got.join("raw").to_str().unwrap()]);
    ok(&o);
    assert_eq!(std::fs::read(got.join("raw/x.bin")).unwrap(), content);

    // A folder with a file alice holds: that file goes without its bytes, the rest uploads.
    let dir = tmp.path().join("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&file, dir.join("big.bin")).unwrap();
    std::fs::write(dir.join("new.txt"), b"new").unwrap();
    let o = go(&u, "alice", &s.url(), &["send", "--json", "--to", "bob", dir.to_str().unwrap()]);
    ok(&o);
    let out = lines(&o);
    let big = out.iter().find(|v| v["name"] == "mixed/big.bin").unwrap();
    assert_eq!((big["deduplicated"].as_bool(), big["sent"].as_u64()), (Some(true), Some(0)), "{big}");
    assert_eq!(out.last().unwrap()["bytes"], 3, "only new.txt's bytes moved");
}
