//! Black-box downloads at /files/: ranges, multipart, conditionals, digests, listings,
//! confinement.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::fs;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use sha2::Digest;

/// A server with one uploaded file (digest known) and one file dropped into the tree by hand.
fn fixture() -> (tempfile::TempDir, Server, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(1_000_000, 42);
    let md = metadata(&[("filename", b"big file.bin"), ("dir", b"d")]);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string()), ("Upload-Metadata", &md)]);
    assert_eq!(patch(&s.addr, &loc, 0, &data, &[]).status, 204);
    fs::write(s.tree_file("d/manual.txt"), b"dropped in by hand").unwrap();
    (tmp, s, data)
}

const BIG: &str = "/files/d/big%20file.bin";

#[test]
fn full_get_has_validators_and_digest() {
    let (_t, s, data) = fixture();
    let r = request(&s.addr, "GET", BIG, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let digest = format!("sha-256=:{}:", STANDARD.encode(sha2::Sha256::digest(&data)));
    assert_eq!(r.header("repr-digest"), Some(digest.as_str()));
    let etag = r.header("etag").unwrap();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong ETag {etag}");
    assert!(r.header("last-modified").is_some());
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"big file.bin\"; filename*=UTF-8''big%20file.bin")
    );
    let h = request(&s.addr, "HEAD", BIG, &[], b"");
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(h.header("content-length"), Some("1000000"));
    let m = request(&s.addr, "GET", "/files/d/manual.txt", &[], b"");
    assert_eq!(m.body, b"dropped in by hand");
    assert!(m.header("repr-digest").is_none(), "unknown digest is not invented");
}

#[test]
fn single_ranges() {
    let (_t, s, data) = fixture();
    for (range, start, end) in
        [("bytes=0-99", 0, 99), ("bytes=999900-", 999_900, 999_999), ("bytes=-10", 999_990, 999_999)]
    {
        let r = request(&s.addr, "GET", BIG, &[("Range", range)], b"");
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.header("content-range").unwrap(), format!("bytes {start}-{end}/1000000"));
        assert_eq!(r.body, &data[start..=end]);
        assert!(r.header("repr-digest").is_some(), "Repr-Digest covers the whole representation on a 206");
    }
}

#[test]
fn multiple_ranges_are_multipart() {
    let (_t, s, data) = fixture();
    let r = request(&s.addr, "GET", BIG, &[("Range", "bytes=0-9,500-509")], b"");
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").expect(ct);
    assert_eq!(r.header("content-length").unwrap().parse::<usize>().unwrap(), r.body.len());
    let text = r.body.clone();
    let parts: Vec<&[u8]> = split(&text, format!("--{boundary}").as_bytes());
    let ranges: Vec<(&str, &[u8])> = parts
        .iter()
        .filter_map(|p| {
            let body_at = p.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            let head = std::str::from_utf8(&p[..body_at]).ok()?;
            let cr = head.lines().find(|l| l.starts_with("Content-Range:"))?;
            Some((cr.trim_start_matches("Content-Range: ").trim(), &p[body_at..p.len() - 2]))
        })
        .collect();
    assert_eq!(ranges.len(), 2);
    assert_eq!(ranges[0], ("bytes 0-9/1000000", &data[0..10]));
    assert_eq!(ranges[1], ("bytes 500-509/1000000", &data[500..510]));
    assert!(text.ends_with(format!("--{boundary}--\r\n").as_bytes()));
}

fn split<'a>(hay: &'a [u8], needle: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            out.push(&hay[start..i]);
            i += needle.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&hay[start..]);
    out
}

#[test]
fn unsatisfiable_is_416_with_the_length() {
    let (_t, s, _) = fixture();
    let r = request(&s.addr, "GET", BIG, &[("Range", "bytes=1000000-")], b"");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000000"));
    let r = request(&s.addr, "GET", BIG, &[("Range", "bytes=9-1")], b"");
    assert_eq!(r.status, 200, "an invalid Range is ignored");
}

#[test]
fn if_range_with_etag_and_date() {
    let (_t, s, data) = fixture();
    let full = request(&s.addr, "HEAD", BIG, &[], b"");
    let etag = full.header("etag").unwrap().to_owned();
    let r = request(&s.addr, "GET", BIG, &[("Range", "bytes=10-19"), ("If-Range", &etag)], b"");
    assert_eq!((r.status, r.body.as_slice()), (206, &data[10..20]));
    let r = request(&s.addr, "GET", BIG, &[("Range", "bytes=10-19"), ("If-Range", "\"nope\"")], b"");
    assert_eq!((r.status, r.body.len()), (200, data.len()), "changed ETag: the whole new file");
    let weak = format!("W/{etag}");
    assert_eq!(request(&s.addr, "GET", BIG, &[("Range", "bytes=10-19"), ("If-Range", &weak)], b"").status, 200);
    // A date counts only when Last-Modified is at least a second old.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let lm = full.header("last-modified").unwrap().to_owned();
    let r = request(&s.addr, "GET", BIG, &[("Range", "bytes=10-19"), ("If-Range", &lm)], b"");
    assert_eq!(r.status, 206);
    let r =
        request(&s.addr, "GET", BIG, &[("Range", "bytes=10-19"), ("If-Range", "Mon, 01 Jan 2001 00:00:00 GMT")], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn conditional_requests() {
    let (_t, s, _) = fixture();
    let etag = request(&s.addr, "HEAD", BIG, &[], b"").header("etag").unwrap().to_owned();
    assert_eq!(request(&s.addr, "GET", BIG, &[("If-None-Match", &etag)], b"").status, 304);
    assert_eq!(request(&s.addr, "GET", BIG, &[("If-None-Match", "\"x\"")], b"").status, 200);
    assert_eq!(request(&s.addr, "GET", BIG, &[("If-Match", "\"x\"")], b"").status, 412);
    assert_eq!(request(&s.addr, "GET", BIG, &[("If-Match", &etag)], b"").status, 200);
}

#[test]
fn directory_listing_is_json() {
    let (_t, s, data) = fixture();
    let r = request(&s.addr, "GET", "/files/d", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["name"], "big file.bin");
    assert_eq!(entries[0]["size"], data.len() as u64);
    assert_eq!(entries[0]["sha256"], sha256_hex(&data));
    assert!(entries[0]["mtime"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(entries[1]["name"], "manual.txt");
    assert!(entries[1].get("sha256").is_none());
    let root: serde_json::Value = serde_json::from_slice(&request(&s.addr, "GET", "/files/", &[], b"").body).unwrap();
    assert_eq!(root["entries"][0]["type"], "dir");
}

#[test]
fn paths_are_confined_to_the_tree() {
    let (_t, s, _) = fixture();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"top secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), s.tree_file("link")).unwrap();
    for path in [
        "/files/link/secret",
        "/files/../ferry.db",
        "/files/%2e%2e/ferry.db",
        "/files/d/%2e%2e/%2e%2e/ferry.db",
        "/files/nothing",
    ] {
        let r = request(&s.addr, "GET", path, &[], b"");
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(!r.body.windows(10).any(|w| w == b"top secret"));
    }
    let listing = request(&s.addr, "GET", "/files/", &[], b"").text();
    assert!(!listing.contains("link"), "a link out of the tree is not listed");
}

#[test]
fn a_changed_file_loses_its_recorded_digest() {
    let (_t, s, _) = fixture();
    fs::write(s.tree_file("d/big file.bin"), b"replaced by hand").unwrap();
    let r = request(&s.addr, "GET", BIG, &[], b"");
    assert_eq!(r.body, b"replaced by hand");
    assert!(r.header("repr-digest").is_none(), "a stale digest would be a lie");
}
