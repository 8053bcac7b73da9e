//! Black-box tus 1.0.0 conformance: core, every extension, and the 25 adversarial cases
//! of shared/notes/tus-and-resumable-uploads.md §7 (numbered `case_NN_…`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::Write;
use std::thread;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use sha1::Digest as _;

fn server() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    (tmp, s)
}

fn staging_count(s: &Server) -> usize {
    std::fs::read_dir(s.data.join("staging")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn options_advertises_every_extension() {
    let (_t, s) = server();
    let r = request(&s.addr, "OPTIONS", "/tus/", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    let ext = r.header("tus-extension").unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "checksum-trailer",
        "expiration",
        "concatenation",
        "concatenation-unfinished",
    ] {
        assert!(ext.split(',').any(|x| x == e), "missing {e} in {ext}");
    }
    assert_eq!(r.header("tus-checksum-algorithm"), Some("sha1,md5,sha256,crc32c"));
    assert!(r.header("tus-max-size").unwrap().parse::<u64>().unwrap() > 0);
}

#[test]
fn case_01_missing_or_wrong_version_is_412_and_nothing_happens() {
    let (_t, s) = server();
    for version in [None, Some("0.2.2")] {
        let mut h = vec![("Upload-Length", "5")];
        if let Some(v) = version {
            h.push(("Tus-Resumable", v));
        }
        let r = request(&s.addr, "POST", "/tus/", &h, b"");
        assert_eq!(r.status, 412);
        assert_eq!(r.header("tus-version"), Some("1.0.0"));
    }
    assert_eq!(staging_count(&s), 0, "no upload was created");
}

#[test]
fn case_02_options_ignores_a_garbage_version() {
    let (_t, s) = server();
    let r = request(&s.addr, "OPTIONS", "/tus/", &[("Tus-Resumable", "garbage")], b"");
    assert_eq!(r.status, 204);
    assert!(r.header("tus-checksum-algorithm").is_some());
}

#[test]
fn creation_head_and_patch_happy_path() {
    let (_t, s) = server();
    let md = metadata(&[("filename", b"hello.txt")]);
    let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "11"), ("Upload-Metadata", &md)], b"");
    assert_eq!(r.status, 201);
    let loc = r.header("location").unwrap().to_owned();
    assert!(loc.starts_with("/tus/"), "relative Location, got {loc}");
    assert!(httpdate::parse_http_date(r.header("upload-expires").unwrap()).is_ok());
    let h = tus(&s.addr, "HEAD", &loc, &[], b"");
    assert_eq!(h.status, 200);
    assert_eq!(h.offset(), Some(0));
    assert_eq!(h.header("upload-length"), Some("11"));
    assert_eq!(h.header("cache-control"), Some("no-store"));
    assert_eq!(h.header("upload-metadata"), Some(md.as_str()));
    assert_eq!(h.header("tus-resumable"), Some("1.0.0"));
    let p = patch(&s.addr, &loc, 0, b"hello ", &[]);
    assert_eq!((p.status, p.offset()), (204, Some(6)));
    assert!(httpdate::parse_http_date(p.header("upload-expires").unwrap()).is_ok(), "PATCH carries Upload-Expires");
    assert!(!s.tree_file("hello.txt").exists(), "half an upload is never in the tree");
    let p = patch(&s.addr, &loc, 6, b"world", &[]);
    assert_eq!((p.status, p.offset()), (204, Some(11)));
    assert_eq!(std::fs::read(s.tree_file("hello.txt")).unwrap(), b"hello world");
    assert!(!s.staging_file(loc.trim_start_matches("/tus/")).exists(), "staging file moved, not copied");
}

#[test]
fn case_03_patch_needs_offset_octet_stream() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "5")]);
    for ct in [Some("application/octet-stream"), None] {
        let mut h = vec![("Upload-Offset", "0")];
        if let Some(ct) = ct {
            h.push(("Content-Type", ct));
        }
        let r = tus(&s.addr, "PATCH", &loc, &h, b"abc");
        assert_eq!(r.status, 415, "content type {ct:?}");
    }
    assert_eq!(head_offset(&s.addr, &loc), Some(0));
}

#[test]
fn case_04_offset_mismatch_is_409_with_the_real_offset() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "10")]);
    assert_eq!(patch(&s.addr, &loc, 0, b"abcd", &[]).status, 204);
    for wrong in [0, 2, 7] {
        let r = patch(&s.addr, &loc, wrong, b"xy", &[]);
        assert_eq!(r.status, 409);
        assert_eq!(r.offset(), Some(4));
    }
    assert_eq!(head_offset(&s.addr, &loc), Some(4));
}

#[test]
fn case_05_bad_offsets_are_400() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "10")]);
    let r = tus(&s.addr, "PATCH", &loc, &[("Content-Type", "application/offset+octet-stream")], b"ab");
    assert_eq!(r.status, 400, "missing Upload-Offset");
    for bad in ["-1", "1e3", "+5", "9223372036854775808", "abc"] {
        let r = tus(
            &s.addr,
            "PATCH",
            &loc,
            &[("Content-Type", "application/offset+octet-stream"), ("Upload-Offset", bad)],
            b"ab",
        );
        assert_eq!(r.status, 400, "Upload-Offset {bad}");
        assert!(!r.text().is_empty(), "a one-line reason");
    }
}

#[test]
fn case_06_content_length_past_the_end_is_413_before_reading() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "5")]);
    // Only the head is sent: the server must answer without waiting for the body.
    let mut stream = open_patch(&s.addr, &loc, 0, 1_000_000, b"", &[]);
    let r = read_response(&mut stream);
    assert_eq!(r.status, 413);
    assert_eq!(head_offset(&s.addr, &loc), Some(0));
}

#[test]
fn case_07_chunked_overrun_stores_nothing_past_the_length() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "5")]);
    let body = b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
    let r = tus(
        &s.addr,
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
            ("Transfer-Encoding", "chunked"),
        ],
        body,
    );
    assert_eq!(r.status, 413);
    let off = head_offset(&s.addr, &loc).unwrap();
    assert!(off <= 5);
    assert!(std::fs::metadata(s.staging_file(loc.trim_start_matches("/tus/"))).unwrap().len() <= 5);
}

#[test]
fn case_08_patch_on_a_complete_upload() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "3")]);
    assert_eq!(patch(&s.addr, &loc, 0, b"abc", &[]).status, 204);
    let r = patch(&s.addr, &loc, 3, b"", &[]);
    assert_eq!((r.status, r.offset()), (204, Some(3)));
    let r = patch(&s.addr, &loc, 3, b"more", &[]);
    assert_eq!(r.status, 413);
    assert_eq!(head_offset(&s.addr, &loc), Some(3));
}

#[test]
fn case_09_empty_patch_changes_nothing() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "3")]);
    let r = patch(&s.addr, &loc, 0, b"", &[]);
    assert_eq!((r.status, r.offset()), (204, Some(0)));
}

#[test]
fn case_10_concurrent_patches_never_interleave() {
    let (_t, s) = server();
    let data = test_data(2 << 20, 10);
    let md = metadata(&[("filename", b"c10.bin")]);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string()), ("Upload-Metadata", &md)]);
    let half = data.len() / 2;
    let mut handles = Vec::new();
    for _ in 0..2 {
        let (addr, loc, data) = (s.addr.clone(), loc.clone(), data.clone());
        handles.push(thread::spawn(move || {
            let mut st = open_patch(&addr, &loc, 0, data.len() as u64, &data[..half], &[]);
            thread::sleep(Duration::from_millis(300));
            let _ = st.write_all(&data[half..]);
            read_response(&mut st).status
        }));
    }
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| [204, 400, 409, 423].contains(s)), "{statuses:?}");
    // Whatever happened, the stored prefix is one contiguous stream: finish and compare.
    let off = head_offset(&s.addr, &loc).unwrap() as usize;
    if off < data.len() {
        assert_eq!(patch(&s.addr, &loc, off as u64, &data[off..], &[]).status, 204);
    }
    assert_eq!(std::fs::read(s.tree_file("c10.bin")).unwrap(), data);
}

#[test]
fn case_11_cut_connection_keeps_what_arrived() {
    let (_t, s) = server();
    let data = test_data(300_000, 11);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string())]);
    let mut offset = 0usize;
    for n in [1usize, 4096, 65_537, 100_000] {
        let st = open_patch(&s.addr, &loc, offset as u64, (data.len() - offset) as u64, &data[offset..offset + n], &[]);
        thread::sleep(Duration::from_millis(100));
        cut(st);
        wait_for(10, "offset to advance", || head_offset(&s.addr, &loc) != Some(offset as u64));
        let now = head_offset(&s.addr, &loc).unwrap() as usize;
        assert_eq!(now, offset + n, "every byte that arrived is kept");
        offset = now;
    }
    let id = loc.trim_start_matches("/tus/");
    assert_eq!(std::fs::read(s.staging_file(id)).unwrap(), data[..offset]);
}

#[test]
fn case_12_head_ends_a_half_open_patch_and_its_offset_is_accepted() {
    let (_t, s) = server();
    let data = test_data(1 << 20, 12);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string())]);
    // A PATCH that stalls with its connection open (a half-dead client).
    let stalled = open_patch(&s.addr, &loc, 0, data.len() as u64, &data[..1000], &[]);
    thread::sleep(Duration::from_millis(200));
    let h = tus(&s.addr, "HEAD", &loc, &[], b"");
    assert_eq!(h.status, 200, "HEAD is answered, not locked out: {}", h.text());
    let off = h.offset().unwrap();
    assert_eq!(off, 1000);
    let p = patch(&s.addr, &loc, off, &data[off as usize..], &[]);
    assert_eq!(p.status, 204, "the offset HEAD reported is accepted: {}", p.text());
    drop(stalled);
}

#[test]
fn case_13_unknown_ids_and_traversal_are_404() {
    let (_t, s) = server();
    for path in ["/tus/0123456789abcdef0123456789abcdef", "/tus/..%2F..%2Fetc%2Fpasswd", "/tus/nope"] {
        let h = tus(&s.addr, "HEAD", path, &[], b"");
        assert_eq!(h.status, 404, "{path}");
        assert!(h.offset().is_none());
        assert_eq!(patch(&s.addr, path, 0, b"x", &[]).status, 404);
    }
}

#[test]
fn case_14_expired_uploads_are_410_and_their_bytes_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &["--upload-ttl", "1s", "--sweep-interval", "1s"]);
    let loc = create(&s.addr, &[("Upload-Length", "10")]);
    let p = patch(&s.addr, &loc, 0, b"abc", &[]);
    assert!(p.header("upload-expires").is_some());
    let id = loc.trim_start_matches("/tus/").to_owned();
    assert!(s.staging_file(&id).exists());
    wait_for(10, "the sweeper", || tus(&s.addr, "HEAD", &loc, &[], b"").status == 410);
    assert!(!s.staging_file(&id).exists(), "bytes removed");
    assert_eq!(patch(&s.addr, &loc, 3, b"d", &[]).status, 410);
}

#[test]
fn case_15_length_neither_or_both_is_400() {
    let (_t, s) = server();
    assert_eq!(tus(&s.addr, "POST", "/tus/", &[], b"").status, 400);
    let both = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "5"), ("Upload-Defer-Length", "1")], b"");
    assert_eq!(both.status, 400);
}

#[test]
fn case_16_defer_length_must_be_1() {
    let (_t, s) = server();
    for v in ["0", "2", "true"] {
        assert_eq!(tus(&s.addr, "POST", "/tus/", &[("Upload-Defer-Length", v)], b"").status, 400, "{v}");
    }
}

#[test]
fn case_17_bad_and_oversized_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &["--max-size", "1M"]);
    for v in ["-1", "abc", "1.5", "9223372036854775808"] {
        assert_eq!(tus(&s.addr, "POST", "/tus/", &[("Upload-Length", v)], b"").status, 400, "{v}");
    }
    let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "1048577")], b"");
    assert_eq!(r.status, 413);
    assert_eq!(request(&s.addr, "OPTIONS", "/tus/", &[], b"").header("tus-max-size"), Some("1048576"));
}

#[test]
fn case_18_zero_length_upload_completes_at_once() {
    let (_t, s) = server();
    let md = metadata(&[("filename", b"empty.txt")]);
    let loc = create(&s.addr, &[("Upload-Length", "0"), ("Upload-Metadata", &md)]);
    let h = tus(&s.addr, "HEAD", &loc, &[], b"");
    assert_eq!((h.offset(), h.header("upload-length")), (Some(0), Some("0")));
    assert_eq!(std::fs::read(s.tree_file("empty.txt")).unwrap(), b"");
}

#[test]
fn case_19_deferred_length() {
    let (_t, s) = server();
    let md = metadata(&[("filename", b"deferred.txt")]);
    let loc = create(&s.addr, &[("Upload-Defer-Length", "1"), ("Upload-Metadata", &md)]);
    let h = tus(&s.addr, "HEAD", &loc, &[], b"");
    assert_eq!(h.header("upload-defer-length"), Some("1"));
    assert!(h.header("upload-length").is_none());
    assert_eq!(patch(&s.addr, &loc, 0, b"hello", &[]).offset(), Some(5));
    assert_eq!(patch(&s.addr, &loc, 5, b"", &[("Upload-Length", "3")]).status, 400, "below the offset");
    let r = patch(&s.addr, &loc, 5, b" you", &[("Upload-Length", "9")]);
    assert_eq!((r.status, r.offset()), (204, Some(9)));
    assert_eq!(std::fs::read(s.tree_file("deferred.txt")).unwrap(), b"hello you");
    let loc2 = create(&s.addr, &[("Upload-Defer-Length", "1")]);
    assert_eq!(patch(&s.addr, &loc2, 0, b"ab", &[("Upload-Length", "10")]).status, 204);
    assert_eq!(patch(&s.addr, &loc2, 2, b"cd", &[("Upload-Length", "11")]).status, 400, "length cannot change");
    assert_eq!(tus(&s.addr, "HEAD", &loc2, &[], b"").header("upload-length"), Some("10"));
}

#[test]
fn case_20_strict_metadata() {
    let (_t, s) = server();
    for bad in ["a !!!", "a YQ==,a Yg==", "a YQ==,,b Yg==", "a b YQ=="] {
        let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "1"), ("Upload-Metadata", bad)], b"");
        assert_eq!(r.status, 400, "{bad}");
    }
    let good = "filename aGkudHh0,flag,empty ";
    let loc = create(&s.addr, &[("Upload-Length", "1"), ("Upload-Metadata", good)]);
    assert_eq!(tus(&s.addr, "HEAD", &loc, &[], b"").header("upload-metadata"), Some("filename aGkudHh0,flag,empty"));
}

#[test]
fn case_21_crlf_metadata_is_never_emitted_decoded() {
    let (_t, s) = server();
    let md = format!("note {}", STANDARD.encode("a\r\nX-Evil: 1"));
    let loc = create(&s.addr, &[("Upload-Length", "1"), ("Upload-Metadata", &md)]);
    let h = tus(&s.addr, "HEAD", &loc, &[], b"");
    assert_eq!(h.header("upload-metadata"), Some(md.as_str()));
    assert!(h.header("x-evil").is_none());
}

fn checksum_header(alg: &str, data: &[u8]) -> String {
    let digest: Vec<u8> = match alg {
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "md5" => {
            // Computed by the server's own crate would be circular; use a known vector.
            assert_eq!(data, b"hello");
            STANDARD.decode("XUFAKrxLKna5cZ2REBfFkg==").unwrap()
        }
        "crc32c" => {
            assert_eq!(data, b"hello");
            0x9a71_bb4cu32.to_be_bytes().to_vec()
        }
        _ => unreachable!(),
    };
    format!("{alg} {}", STANDARD.encode(digest))
}

#[test]
fn case_22_checksums() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "20")]);
    for bad in ["blake3 AAAA", "SHA1 qvTGHdzF6KLavt4PO0gs2a6pQ00=", "sha1", "sha1 !!notbase64"] {
        let r = patch(&s.addr, &loc, 0, b"hello", &[("Upload-Checksum", bad)]);
        assert_eq!(r.status, 400, "{bad}");
    }
    let wrong = checksum_header("sha1", b"other");
    assert_eq!(patch(&s.addr, &loc, 0, b"hello", &[("Upload-Checksum", &wrong)]).status, 460);
    assert_eq!(head_offset(&s.addr, &loc), Some(0), "a mismatching chunk is discarded");
    let mut off = 0;
    for alg in ["sha1", "md5", "sha256", "crc32c"] {
        let r = patch(&s.addr, &loc, off, b"hello", &[("Upload-Checksum", &checksum_header(alg, b"hello"))]);
        assert_eq!(r.status, 204, "{alg}: {}", r.text());
        off += 5;
    }
    assert_eq!(head_offset(&s.addr, &loc), Some(20));
}

#[test]
fn case_23_checksummed_chunks_are_all_or_nothing() {
    let (_t, s) = server();
    let data = test_data(200_000, 23);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string())]);
    let sum = checksum_header("sha1", &data[..100_000]);
    // Cut mid-body: nothing of the chunk is kept.
    let st = open_patch(&s.addr, &loc, 0, 100_000, &data[..60_000], &[("Upload-Checksum", &sum)]);
    thread::sleep(Duration::from_millis(100));
    cut(st);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(head_offset(&s.addr, &loc), Some(0));
    // Trailer announced, never sent.
    let r = tus(
        &s.addr,
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "Upload-Checksum"),
        ],
        b"5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(head_offset(&s.addr, &loc), Some(0));
    // Trailer with a wrong and then the right checksum.
    let chunked = |payload: &[u8], trailer: &str| {
        let mut body = format!("{:x}\r\n", payload.len()).into_bytes();
        body.extend_from_slice(payload);
        body.extend_from_slice(format!("\r\n0\r\nUpload-Checksum: {trailer}\r\n\r\n").as_bytes());
        tus(
            &s.addr,
            "PATCH",
            &loc,
            &[
                ("Content-Type", "application/offset+octet-stream"),
                ("Upload-Offset", "0"),
                ("Transfer-Encoding", "chunked"),
                ("Trailer", "Upload-Checksum"),
            ],
            &body,
        )
    };
    assert_eq!(chunked(&data[..1000], &checksum_header("sha1", &data[..999])).status, 460);
    assert_eq!(head_offset(&s.addr, &loc), Some(0));
    let ok = chunked(&data[..1000], &checksum_header("sha1", &data[..1000]));
    assert_eq!((ok.status, ok.offset()), (204, Some(1000)), "{}", ok.text());
}

#[test]
fn case_24_termination() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "10")]);
    assert_eq!(patch(&s.addr, &loc, 0, b"abc", &[]).status, 204);
    assert_eq!(tus(&s.addr, "DELETE", &loc, &[], b"").status, 204);
    assert_eq!(tus(&s.addr, "HEAD", &loc, &[], b"").status, 404);
    assert_eq!(patch(&s.addr, &loc, 3, b"d", &[]).status, 404);
    assert!(!s.staging_file(loc.trim_start_matches("/tus/")).exists());
    // DELETE during an in-flight PATCH: the PATCH is ended and nothing comes back.
    let loc = create(&s.addr, &[("Upload-Length", "100000")]);
    let mut st = open_patch(&s.addr, &loc, 0, 100_000, &[7u8; 5000], &[]);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(tus(&s.addr, "DELETE", &loc, &[], b"").status, 204);
    let _ = st.write_all(&[7u8; 95_000]);
    let _ = read_response(&mut st);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(tus(&s.addr, "HEAD", &loc, &[], b"").status, 404);
    assert!(!s.staging_file(loc.trim_start_matches("/tus/")).exists(), "no data resurrected");
}

#[test]
fn case_25_concatenation_rules() {
    let (_t, s) = server();
    let a = create(&s.addr, &[("Upload-Length", "3"), ("Upload-Concat", "partial")]);
    let b = create(&s.addr, &[("Upload-Length", "2"), ("Upload-Concat", "partial")]);
    assert_eq!(tus(&s.addr, "HEAD", &a, &[], b"").header("upload-concat"), Some("partial"));
    let plain = create(&s.addr, &[("Upload-Length", "2")]);
    let fin = |list: &str, extra: &[(&str, &str)]| {
        let concat = format!("final;{list}");
        let mut h = vec![("Upload-Concat", concat.as_str())];
        h.extend_from_slice(extra);
        tus(&s.addr, "POST", "/tus/", &h, b"")
    };
    assert_eq!(fin(&format!("{a} {b}"), &[("Upload-Length", "5")]).status, 400, "final with Upload-Length");
    let with_body = tus(
        &s.addr,
        "POST",
        "/tus/",
        &[("Upload-Concat", &format!("final;{a} {b}")), ("Content-Type", "application/offset+octet-stream")],
        b"xx",
    );
    assert_eq!(with_body.status, 400, "final with a body");
    assert_eq!(fin(&format!("{a} /tus/0123456789abcdef0123456789abcdef"), &[]).status, 400, "missing part");
    assert_eq!(fin(&format!("{a} {plain}"), &[]).status, 400, "non-partial part");
    // Unfinished parts are allowed (concatenation-unfinished); a part may appear twice.
    let md = metadata(&[("filename", b"joined.txt")]);
    let r = fin(&format!("{a} {b} {a}"), &[("Upload-Metadata", &md)]);
    assert_eq!(r.status, 201, "{}", r.text());
    let f = r.header("location").unwrap().to_owned();
    let h = tus(&s.addr, "HEAD", &f, &[], b"");
    assert!(h.offset().is_none(), "no Upload-Offset before concatenation is done");
    assert_eq!(h.header("upload-length"), Some("8"));
    assert!(h.header("upload-concat").unwrap().starts_with("final;"));
    assert_eq!(patch(&s.addr, &f, 0, b"x", &[]).status, 403, "PATCH on a final upload");
    assert_eq!(patch(&s.addr, &a, 0, b"abc", &[]).status, 204);
    assert!(!s.tree_file("joined.txt").exists(), "not before every part is complete");
    assert_eq!(patch(&s.addr, &b, 0, b"de", &[]).status, 204);
    let h = tus(&s.addr, "HEAD", &f, &[], b"");
    assert_eq!((h.offset(), h.header("upload-length")), (Some(8), Some("8")));
    assert_eq!(std::fs::read(s.tree_file("joined.txt")).unwrap(), b"abcdeabc");
}

#[test]
fn concatenation_of_finished_parts_completes_on_post() {
    let (_t, s) = server();
    let a = create(&s.addr, &[("Upload-Length", "3"), ("Upload-Concat", "partial")]);
    let b = create(&s.addr, &[("Upload-Length", "3"), ("Upload-Concat", "partial")]);
    patch(&s.addr, &a, 0, b"foo", &[]);
    patch(&s.addr, &b, 0, b"bar", &[]);
    let md = metadata(&[("filename", b"foobar.txt"), ("dir", b"cat")]);
    let r = tus(
        &s.addr,
        "POST",
        "/tus/",
        &[("Upload-Concat", &format!("final;http://{}{a} {b}", s.addr)), ("Upload-Metadata", &md)],
        b"",
    );
    assert_eq!(r.status, 201);
    assert_eq!(std::fs::read(s.tree_file("cat/foobar.txt")).unwrap(), b"foobar");
    assert_eq!(tus(&s.addr, "HEAD", r.header("location").unwrap(), &[], b"").offset(), Some(6));
}

#[test]
fn creation_with_upload() {
    let (_t, s) = server();
    let md = metadata(&[("filename", b"cwu.txt")]);
    let r = tus(
        &s.addr,
        "POST",
        "/tus/",
        &[("Upload-Length", "10"), ("Upload-Metadata", &md), ("Content-Type", "application/offset+octet-stream")],
        b"01234",
    );
    assert_eq!((r.status, r.offset()), (201, Some(5)));
    let loc = r.header("location").unwrap().to_owned();
    assert_eq!(patch(&s.addr, &loc, 5, b"56789", &[]).status, 204);
    assert_eq!(std::fs::read(s.tree_file("cwu.txt")).unwrap(), b"0123456789");
    let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "10"), ("Content-Type", "text/plain")], b"01234");
    assert_eq!(r.status, 415);
}

#[test]
fn method_override_and_unknown_methods() {
    let (_t, s) = server();
    let loc = create(&s.addr, &[("Upload-Length", "4")]);
    let r = tus(
        &s.addr,
        "POST",
        &loc,
        &[
            ("X-HTTP-Method-Override", "PATCH"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
        ],
        b"ab",
    );
    assert_eq!((r.status, r.offset()), (204, Some(2)));
    let r = tus(&s.addr, "POST", &loc, &[("X-HTTP-Method-Override", "HEAD")], b"");
    assert_eq!(r.offset(), Some(2));
    assert_eq!(tus(&s.addr, "PUT", &loc, &[], b"xx").status, 405);
    assert_eq!(tus(&s.addr, "POST", &loc, &[("X-HTTP-Method-Override", "DELETE")], b"").status, 204);
    assert_eq!(tus(&s.addr, "HEAD", &loc, &[], b"").status, 404);
}

#[test]
fn location_ignores_forged_forwarded_host_unless_behind_proxy() {
    let (_t, s) = server();
    let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "1"), ("X-Forwarded-Host", "evil.example")], b"");
    assert!(r.header("location").unwrap().starts_with("/tus/"));
    let tmp = tempfile::tempdir().unwrap();
    let p = Server::start(&tmp.path().join("data"), &["--behind-proxy"]);
    let r = tus(
        &p.addr,
        "POST",
        "/tus/",
        &[("Upload-Length", "1"), ("X-Forwarded-Host", "files.example:8443"), ("X-Forwarded-Proto", "https")],
        b"",
    );
    assert!(r.header("location").unwrap().starts_with("https://files.example:8443/tus/"));
}

#[test]
fn untrusted_names_are_confined() {
    let (_t, s) = server();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(s.tree_file("")).unwrap();
    std::os::unix::fs::symlink(outside.path(), s.tree_file("escape")).unwrap();
    type Case<'a> = (&'a str, &'a [u8], Option<&'a [u8]>);
    let cases: [Case; 6] = [
        ("parent", b"../evil.txt", None),
        ("absolute", b"/etc/evil", None),
        ("nul", b"a\0b", None),
        ("backslash", b"..\\evil", None),
        ("dir parent", b"ok.txt", Some(b"../../x")),
        ("symlink escape", b"ok.txt", Some(b"escape")),
    ];
    for (what, name, dir) in cases {
        let mut pairs: Vec<(&str, &[u8])> = vec![("filename", name)];
        if let Some(d) = dir {
            pairs.push(("dir", d));
        }
        let r = tus(&s.addr, "POST", "/tus/", &[("Upload-Length", "1"), ("Upload-Metadata", &metadata(&pairs))], b"");
        assert_eq!(r.status, 400, "{what}: {}", r.text());
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn declared_sha256_is_checked_before_the_tree() {
    let (_t, s) = server();
    let data = b"the real content";
    let wrong = sha256_hex(b"something else");
    let md = metadata(&[("filename", b"checked.txt"), ("sha256", wrong.as_bytes())]);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string()), ("Upload-Metadata", &md)]);
    let r = patch(&s.addr, &loc, 0, data, &[]);
    assert_eq!(r.status, 460, "{}", r.text());
    assert!(!s.tree_file("checked.txt").exists());
    assert_eq!(tus(&s.addr, "HEAD", &loc, &[], b"").status, 410);
    let right = sha256_hex(data);
    let md = metadata(&[("filename", b"checked.txt"), ("sha256", right.as_bytes())]);
    let loc = create(&s.addr, &[("Upload-Length", &data.len().to_string()), ("Upload-Metadata", &md)]);
    let r = patch(&s.addr, &loc, 0, data, &[]);
    assert_eq!(r.status, 204);
    let expected_digest = format!("sha-256=:{}:", STANDARD.encode(sha2::Sha256::digest(data)));
    assert_eq!(r.header("repr-digest"), Some(expected_digest.as_str()));
    assert_eq!(std::fs::read(s.tree_file("checked.txt")).unwrap(), data);
}

#[test]
fn a_half_upload_never_replaces_a_good_file() {
    let (_t, s) = server();
    let md = metadata(&[("filename", b"keep.txt")]);
    let loc = create(&s.addr, &[("Upload-Length", "3"), ("Upload-Metadata", &md)]);
    patch(&s.addr, &loc, 0, b"old", &[]);
    let loc = create(&s.addr, &[("Upload-Length", "6"), ("Upload-Metadata", &md)]);
    patch(&s.addr, &loc, 0, b"new", &[]);
    assert_eq!(std::fs::read(s.tree_file("keep.txt")).unwrap(), b"old");
    patch(&s.addr, &loc, 3, b"new", &[]);
    assert_eq!(std::fs::read(s.tree_file("keep.txt")).unwrap(), b"newnew");
}

#[test]
fn a_final_created_before_its_parts_have_data_holds_them_in_place() {
    let (_t, s) = server();
    let a = create(&s.addr, &[("Upload-Length", "4"), ("Upload-Concat", "partial")]);
    let b = create(&s.addr, &[("Upload-Length", "3"), ("Upload-Concat", "partial")]);
    let md = metadata(&[("filename", b"inplace.txt")]);
    let r =
        tus(&s.addr, "POST", "/tus/", &[("Upload-Concat", &format!("final;{a} {b}")), ("Upload-Metadata", &md)], b"");
    assert_eq!(r.status, 201);
    let f = r.header("location").unwrap().to_owned();
    let id = |loc: &str| loc.trim_start_matches("/tus/").to_owned();
    assert!(!s.staging_file(&id(&a)).exists() && !s.staging_file(&id(&b)).exists(), "parts live in the final's file");
    // Cut a PATCH to a part midway: it keeps what arrived, in place.
    let st = open_patch(&s.addr, &b, 0, 3, b"xy", &[]);
    std::thread::sleep(Duration::from_millis(100));
    cut(st);
    wait_for(10, "the cut part to commit", || head_offset(&s.addr, &b) == Some(2));
    assert_eq!(patch(&s.addr, &b, 2, b"z", &[]).status, 204);
    assert_eq!(patch(&s.addr, &a, 0, b"abcd", &[]).status, 204);
    assert_eq!(std::fs::read(s.tree_file("inplace.txt")).unwrap(), b"abcdxyz");
    assert_eq!(tus(&s.addr, "HEAD", &f, &[], b"").offset(), Some(7));
    // Its parts' bytes became the file: they cannot be joined again.
    let again = tus(&s.addr, "POST", "/tus/", &[("Upload-Concat", &format!("final;{a}"))], b"");
    assert_eq!(again.status, 400, "{}", again.text());
}
