//! The transfer engine (issue 3): parallel uploads with per-part resume, adaptive chunks on
//! a shaped link, retries that give up with a clear message, end-to-end checksums,
//! instant upload with proof of possession, segmented downloads surviving cut
//! connections, and rate limits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use sha2::Digest;

fn remembered(state: &Path) -> serde_json::Value {
    let dir = std::fs::read_dir(state.join("uploads")).unwrap();
    for e in dir.flatten() {
        if e.path().extension().is_some_and(|x| x == "json")
            && let Ok(v) = serde_json::from_slice(&std::fs::read(e.path()).unwrap())
        {
            return v;
        }
    }
    serde_json::Value::Null
}

fn remembered_parts(state: &Path) -> Vec<serde_json::Value> {
    remembered(state)["parts"].as_array().cloned().unwrap_or_default()
}

#[test]
fn parallel_upload_resumes_and_recreates_only_the_lost_part() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let proxy = Proxy::start(&s.addr, 2 << 20);
    let data = test_data(32 << 20, 31);
    let file = tmp.path().join("par.bin");
    std::fs::write(&file, &data).unwrap();
    let state = tmp.path().join("state");

    let child = client(&state)
        .args(["upload", "--json", "--parallel", "4", "--server", &proxy.url()])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(30, "four parts and the final upload remembered", || {
        std::fs::read_dir(state.join("uploads")).is_ok()
            && !remembered(&state)["final_url"].as_str().unwrap_or("").is_empty()
    });
    let parts = remembered_parts(&state);
    let paths: Vec<String> =
        parts.iter().map(|p| p["url"].as_str().unwrap().split_once("/tus/").unwrap().1.to_owned()).collect();
    // The parts are written in place into the final upload's (sparse) file.
    let final_id = remembered(&state)["final_url"].as_str().unwrap().split_once("/tus/").unwrap().1.to_owned();
    let host = s.staging_file(&final_id);
    wait_for(60, "8 MiB written in place", || {
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&host).unwrap()) * 512 >= 8 << 20
    });
    assert!(paths.iter().all(|id| !s.staging_file(id).exists()), "no per-part files: the final upload holds the bytes");
    signal(child.id(), "INT");
    // Let what the client already handed to the proxy reach the server, still throttled:
    // unthrottled, a client slow to see the signal (a loaded machine) could send the
    // whole file first, and there would be no interrupted part left to lose.
    proxy.rate.store(4 << 20, Ordering::Relaxed);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));

    // Lose one part on the server; the others must be resumed, not re-sent.
    assert_eq!(tus(&s.addr, "DELETE", &format!("/tus/{}", paths[1]), &[], b"").status, 204);
    let kept: u64 = [0, 2, 3].iter().map(|&i| head_offset(&s.addr, &format!("/tus/{}", paths[i])).unwrap()).sum();
    assert!(kept > 3 << 20, "the interrupted parts kept their bytes: {kept}");

    proxy.rate.store(0, Ordering::Relaxed);
    let out = client(&state)
        .args(["upload", "--json", "--parallel", "4", "--server", &proxy.url()])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["parts"], 4);
    assert_eq!(v["resumed_from"], kept, "three parts resumed where they were: {v}");
    assert_eq!(v["sent"], data.len() as u64 - kept, "only the missing bytes were sent: {v}");
    assert_eq!(v["verified"], true);
    assert_eq!(std::fs::read(s.tree_file("par.bin")).unwrap(), data);
}

#[test]
fn default_patches_are_bounded_in_time_so_a_server_fault_costs_little() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(160 << 20, 32);
    let file = tmp.path().join("bounded.bin");
    std::fs::write(&file, &data).unwrap();
    let state = tmp.path().join("state");
    let log = tmp.path().join("client.log");
    let rate = 40u64 << 20;
    let out = client(&state)
        .args(["upload", "--json", "--limit-rate", &rate.to_string(), "--server", &s.url()])
        .arg(&file)
        .env("RUST_LOG", "ferry_client=debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let field = |l: &str, name: &str| l.split(name).nth(1)?.split_whitespace().next()?.parse::<u64>().ok();
    let chunks: Vec<(u64, u64)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("chunk sent"))
        .filter_map(|l| Some((field(l, "bytes=")?, field(l, "elapsed_ms=")?)))
        .collect();
    assert_eq!(chunks.iter().map(|c| c.0).sum::<u64>(), data.len() as u64, "{chunks:?}");
    assert!(chunks.len() >= 3, "a 4 s upload is sent as several ~1.5 s PATCHes: {chunks:?}");
    // The rate limit caps the bytes per second; a busy machine may only make them slower.
    for &(n, ms) in &chunks[..chunks.len() - 1] {
        assert!(ms >= 1000, "a PATCH runs ~1.5 s, not less than 1 s: {chunks:?}");
        assert!(n <= 2 * rate, "no PATCH carries more than ~2 s of transfer: {chunks:?}");
    }
    assert_eq!(std::fs::read(s.tree_file("bounded.bin")).unwrap(), data);
}

#[test]
fn retries_give_up_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start(&tmp.path().join("data"), &[]);
    let proxy = Proxy::start(&s.addr, 2 << 20);
    let file = tmp.path().join("doomed.bin");
    std::fs::write(&file, test_data(16 << 20, 33)).unwrap();
    let state = tmp.path().join("state");
    let child = client(&state)
        .args(["upload", "--retries", "2", "--server", &proxy.url()])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(30, "the upload to start", || remembered_upload(&state).is_some());
    std::thread::sleep(Duration::from_millis(300));
    s.kill9();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gave up after 2 retries") && err.contains("run again to resume"), "{err}");
}

/// A chunked PATCH with trailers, as ferry's client sends it.
fn patch_with_trailers(addr: &str, loc: &str, offset: u64, body: &[u8], trailers: &[(&str, String)]) -> Resp {
    let names: Vec<&str> = trailers.iter().map(|(k, _)| *k).collect();
    let mut raw = format!("{:x}\r\n", body.len()).into_bytes();
    raw.extend_from_slice(body);
    raw.extend_from_slice(b"\r\n0\r\n");
    for (k, v) in trailers {
        raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let off = offset.to_string();
    let names = names.join(", ");
    tus(
        addr,
        "PATCH",
        loc,
        &[
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", &off),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", &names),
        ],
        &raw,
    )
}

#[test]
fn end_to_end_checksums_reject_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(100_000, 34);
    let md = metadata(&[("filename", b"e2e.bin")]);
    let loc = create(&s.addr, &[("Upload-Length", "100000"), ("Upload-Metadata", &md)]);
    let crc = |b: &[u8]| format!("crc32c {}", STANDARD.encode(crc32c::crc32c(b).to_be_bytes()));
    // A crc32c trailer that does not match: the chunk is discarded.
    let r = patch_with_trailers(&s.addr, &loc, 0, &data[..50_000], &[("Upload-Checksum", crc(&data[..49_999]))]);
    assert_eq!(r.status, 460, "{}", r.text());
    assert_eq!(head_offset(&s.addr, &loc), Some(0));
    let r = patch_with_trailers(&s.addr, &loc, 0, &data[..50_000], &[("Upload-Checksum", crc(&data[..50_000]))]);
    assert_eq!((r.status, r.offset()), (204, Some(50_000)), "{}", r.text());
    // The completing request declares the whole file's SHA-256; a wrong one fails the upload.
    let wrong = format!("sha-256=:{}:", STANDARD.encode(sha2::Sha256::digest(b"not the file")));
    let r = patch_with_trailers(
        &s.addr,
        &loc,
        50_000,
        &data[50_000..],
        &[("Upload-Checksum", crc(&data[50_000..])), ("Repr-Digest", wrong)],
    );
    assert_eq!(r.status, 460, "{}", r.text());
    assert!(r.text().contains("SHA-256 mismatch"));
    assert!(!s.tree_file("e2e.bin").exists(), "nothing placed");
    assert_eq!(tus(&s.addr, "HEAD", &loc, &[], b"").status, 410);
    // And the right one places it.
    let loc = create(&s.addr, &[("Upload-Length", "100000"), ("Upload-Metadata", &md)]);
    let right = format!("sha-256=:{}:", STANDARD.encode(sha2::Sha256::digest(&data)));
    let r = patch_with_trailers(&s.addr, &loc, 0, &data, &[("Upload-Checksum", crc(&data)), ("Repr-Digest", right)]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(std::fs::read(s.tree_file("e2e.bin")).unwrap(), data);
}

#[test]
fn dedup_places_known_content_only_after_proof_of_possession() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let data = test_data(3 << 20, 35);
    let file = tmp.path().join("orig.bin");
    std::fs::write(&file, &data).unwrap();
    assert!(client(&state).args(["upload", "--server", &s.url()]).arg(&file).output().unwrap().status.success());

    let copy = tmp.path().join("copy.bin");
    std::fs::write(&copy, &data).unwrap();
    let out = client(&state)
        .args(["upload", "--json", "--dedup", "--dir", "again", "--server", &s.url()])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!((v["deduplicated"].as_bool(), v["sent"].as_u64()), (Some(true), Some(0)), "{v}");
    assert_eq!(std::fs::read(s.tree_file("again/copy.bin")).unwrap(), data);

    // Knowing the hash is not enough: a wrong proof is refused and nothing is placed.
    let sha = sha256_hex(&data);
    let body = format!(r#"{{"size":{},"sha256":"{sha}","filename":"stolen.bin"}}"#, data.len());
    let r = request(&s.addr, "POST", "/api/dedup", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let challenge: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = challenge["challenge"].as_str().unwrap();
    let guesses = r#"{"proofs":["00","00","00","00"]}"#;
    let r = request(
        &s.addr,
        "POST",
        &format!("/api/dedup/{id}"),
        &[("Content-Type", "application/json")],
        guesses.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!s.tree_file("stolen.bin").exists());
    let again = request(
        &s.addr,
        "POST",
        &format!("/api/dedup/{id}"),
        &[("Content-Type", "application/json")],
        guesses.as_bytes(),
    );
    assert_eq!(again.status, 404, "challenges are single-use");
    // Unknown content: the client falls back to a real upload.
    let other = tmp.path().join("new.bin");
    std::fs::write(&other, test_data(1 << 20, 36)).unwrap();
    let v = json_of(
        &client(&state).args(["upload", "--json", "--dedup", "--server", &s.url()]).arg(&other).output().unwrap(),
    );
    assert_eq!((v["deduplicated"].as_bool(), v["sent"].as_u64()), (Some(false), Some(1 << 20)));
}

#[test]
fn segmented_download_survives_connections_cut_mid_range() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let data = test_data(32 << 20, 37);
    let src = tmp.path().join("seg.bin");
    std::fs::write(&src, &data).unwrap();
    assert!(client(&state).args(["upload", "--server", &s.url()]).arg(&src).output().unwrap().status.success());
    let proxy = Proxy::start(&s.addr, 6 << 20);
    let out = tmp.path().join("seg-copy.bin");
    let child = client(&state)
        .args(["download", "--json", "-j", "4", "--server", &proxy.url(), "seg.bin", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state_file = tmp.path().join("seg-copy.bin.ferry-state");
    let progress = || -> u64 {
        let Ok(b) = std::fs::read(&state_file) else { return 0 };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) else { return 0 };
        v["segments"]
            .as_array()
            .map_or(0, |a| a.iter().map(|s| s["pos"].as_u64().unwrap() - s["start"].as_u64().unwrap()).sum())
    };
    wait_for(30, "a few MiB over four connections", || progress() > 4 << 20);
    let cut = proxy.kill_all();
    assert!(cut >= 2, "several connections were open: {cut}");
    proxy.rate.store(0, Ordering::Relaxed);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    assert_eq!(v["verified"], true);
    assert!(v["fetched"].as_u64().unwrap() < data.len() as u64 + (8 << 20), "cut ranges resumed, not refetched: {v}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!state_file.exists());
}

#[test]
fn segmented_download_resumes_every_segment_after_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let data = test_data(24 << 20, 38);
    let src = tmp.path().join("segr.bin");
    std::fs::write(&src, &data).unwrap();
    assert!(client(&state).args(["upload", "--server", &s.url()]).arg(&src).output().unwrap().status.success());
    let out = tmp.path().join("segr-copy.bin");
    let child = client(&state)
        .args(["download", "--json", "-j", "3", "--limit-rate", "4M", "--server", &s.url(), "segr.bin", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    signal(child.id(), "INT");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    let o = client(&state)
        .args(["download", "--json", "-j", "3", "--server", &s.url(), "segr.bin", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json_of(&o);
    let resumed = v["resumed_from"].as_u64().unwrap();
    assert!(resumed >= 4 << 20, "kept the interrupted segments: {v}");
    assert!(v["fetched"].as_u64().unwrap() <= data.len() as u64 - resumed + (3 << 20), "{v}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn rate_limits_hold_and_split_ranges_are_fetched_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let state = tmp.path().join("state");
    let data = test_data(6 << 20, 39);
    let file = tmp.path().join("slow.bin");
    std::fs::write(&file, &data).unwrap();
    let started = Instant::now();
    let o = client(&state).args(["upload", "--limit-rate", "2M", "--server", &s.url()]).arg(&file).output().unwrap();
    let up = started.elapsed().as_secs_f64();
    assert!(o.status.success());
    // Eight connections whose ranges are split as they finish: bytes another connection
    // took over are neither fetched twice nor charged to the limit.
    let started = Instant::now();
    let o = client(&state)
        .args(["download", "--json", "-j", "8", "--limit-rate", "2M", "--server", &s.url(), "slow.bin", "-o"])
        .arg(tmp.path().join("slow-copy.bin"))
        .output()
        .unwrap();
    let down = started.elapsed().as_secs_f64();
    assert!(o.status.success());
    assert_eq!(json_of(&o)["fetched"].as_u64(), Some(data.len() as u64), "every byte fetched once");
    // Never faster than the limit; a loaded machine may run slower, not the limiter.
    for (what, secs) in [("upload", up), ("download", down)] {
        let rate = data.len() as f64 / secs / (2 << 20) as f64;
        assert!((0.6..=1.15).contains(&rate), "{what} ran at {rate:.2}x the limit ({secs:.2} s)");
    }
}

/// Streams the debug log reports for an adaptive transfer: (streams, next) per step.
fn ramp_steps(log: &Path, what: &str) -> Vec<(u64, u64)> {
    let field = |l: &str, name: &str| l.split(name).nth(1)?.split_whitespace().next()?.parse().ok();
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| Some((field(l, " streams=")?, field(l, " next=")?)))
        .collect()
}

#[test]
fn defaults_use_one_stream_nearby_and_grow_on_a_far_link() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let data = test_data(24 << 20, 33);
    let file = tmp.path().join("far.bin");
    std::fs::write(&file, &data).unwrap();
    let run = |args: &[&str], log: &Path| {
        let out = client(&tmp.path().join("state"))
            .args(args)
            .env("RUST_LOG", "ferry_client=debug")
            .stderr(std::fs::File::create(log).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", std::fs::read_to_string(log).unwrap());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };

    // Nearby (loopback): one upload, one connection, no ramp.
    let log = tmp.path().join("near-up.log");
    let up = run(&["upload", "--json", "--server", &s.url(), file.to_str().unwrap()], &log);
    assert_eq!(up["parts"], 1);
    assert!(ramp_steps(&log, "upload streams").is_empty());
    let out = tmp.path().join("near-down.bin");
    let log = tmp.path().join("near-down.log");
    run(&["download", "--json", "-o", out.to_str().unwrap(), &format!("{}/files/far.bin", s.url())], &log);
    assert!(ramp_steps(&log, "download connections").is_empty());
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Far (≥ 12 ms round trip), each connection limited to 1 MiB/s: more streams, more
    // rate, so both directions grow past the 4 streams they start with.
    let proxy = Proxy::start_far(&s.addr, 1 << 20, Duration::from_millis(6));
    std::fs::remove_file(s.tree_file("far.bin")).unwrap();
    let log = tmp.path().join("far-up.log");
    let up = run(&["upload", "--json", "--server", &proxy.url(), file.to_str().unwrap()], &log);
    let steps = ramp_steps(&log, "upload streams");
    assert!(up["parts"].as_u64().unwrap() > 4, "{up}");
    assert!(steps.first().is_some_and(|&(n, next)| n == 4 && next > 4), "{steps:?}");
    assert_eq!(std::fs::read(s.tree_file("far.bin")).unwrap(), data);
    let out = tmp.path().join("far-down.bin");
    let log = tmp.path().join("far-down.log");
    run(&["download", "--json", "-o", out.to_str().unwrap(), &format!("{}/files/far.bin", proxy.url())], &log);
    let steps = ramp_steps(&log, "download connections");
    assert!(steps.first().is_some_and(|&(n, next)| n == 4 && next > 4), "{steps:?}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
}
