//! Issue 9: WebDAV at /dav/ against the real binary (accounts on): every resume dialect
//! after a PUT cut at a random byte (the half file never served, the old one never
//! replaced), partial updates, wrong-user refusals for every method, locks and dead
//! properties across a restart, quotas on COPY.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;

use common::*;

/// Request headers, and a request body, in the tables below.
type Headers<'a> = &'a [(&'a str, &'a str)];
type Body<'a> = &'a [u8];
/// Method, path, headers, body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Body<'a>);

fn server(tmp: &std::path::Path) -> (Server, PathBuf) {
    let data = tmp.join("data");
    Users::add(&data, &["alice", "bob"]);
    Users::add_with_quota(&data, "carol", "2M");
    (Server::start_auth(&data, &[]), data)
}

/// A request as `user` (`None`: no credentials).
fn dav(addr: &str, user: Option<&str>, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let auth = user.map(basic_auth);
    let mut h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    h.extend_from_slice(headers);
    let has_len = h.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    let len = body.len().to_string();
    if !has_len && body.is_empty() && matches!(method, "PUT" | "PROPFIND" | "PROPPATCH" | "LOCK" | "REPORT") {
        h.push(("Content-Length", &len));
    }
    request(addr, method, path, &h, body)
}

/// A connection that has sent the head of a PUT as `user` with `headers`; the caller sends
/// the body (or part of it).
fn open_put(addr: &str, user: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n", basic_auth(user));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// A PUT of `data` that sends `cut` bytes and breaks the connection.
fn broken_put(addr: &str, user: &str, path: &str, data: &[u8], cut_at: usize) {
    let mut s = open_put(addr, user, path, &[("Content-Length", &data.len().to_string())]);
    s.write_all(&data[..cut_at]).unwrap();
    s.flush().unwrap();
    cut(s);
}

/// The uploads in progress an upload-progress REPORT lists: (href, bytes uploaded, total,
/// tus URL).
fn progress(addr: &str, user: &str, path: &str) -> Vec<(String, u64, Option<u64>, String)> {
    let r = dav(addr, Some(user), "REPORT", path, &[], b"<?xml version=\"1.0\"?><upload-progress xmlns=\"ithit\"/>");
    if r.status == 404 {
        return Vec::new(); // nothing there, and no upload in progress to it
    }
    assert_eq!(r.status, 207, "REPORT {path}: {}", r.text());
    let text = r.text();
    let between = |s: &str, a: &str, b: &str| s.split(a).nth(1).and_then(|x| x.split(b).next()).map(str::to_owned);
    text.split("<d:response>")
        .skip(1)
        .map(|resp| {
            let href = between(resp, "<d:href>", "</d:href>").unwrap();
            let bytes = between(resp, "<bytes-uploaded xmlns=\"ithit\">", "<").unwrap().parse().unwrap();
            let total = between(resp, "<total-content-length xmlns=\"ithit\">", "<").map(|t| t.parse().unwrap());
            let saved = between(resp, "<last-chunk-saved xmlns=\"ithit\">", "<").unwrap();
            assert!(httpdate::parse_http_date(&saved).is_ok(), "last-chunk-saved {saved:?} is an HTTP date");
            let tus = between(resp, "<f:tus-upload>", "<").unwrap();
            (href, bytes, total, tus)
        })
        .collect()
}

fn get(addr: &str, user: &str, path: &str) -> Resp {
    dav(addr, Some(user), "GET", path, &[], b"")
}

fn random_cut(len: usize) -> usize {
    1 + (rand::random::<u64>() as usize) % (len - 2)
}

#[test]
fn a_broken_put_is_never_served_and_resumes_with_content_range() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = server(tmp.path());
    let addr = srv.addr.clone();
    let old = test_data(100_000, 1);
    assert_eq!(dav(&addr, Some("alice"), "PUT", "/dav/~alice/f.bin", &[], &old).status, 201);
    let new = test_data(3 * 1024 * 1024 + 12_345, 2);
    let cut_at = random_cut(new.len());
    broken_put(&addr, "alice", "/dav/~alice/f.bin", &new, cut_at);
    wait_for(10, "the cut PUT's bytes committed", || {
        progress(&addr, "alice", "/dav/~alice/f.bin").first().is_some_and(|p| p.1 == cut_at as u64)
    });
    // In between, the good old file is what is served and listed; the half one is nowhere.
    let r = get(&addr, "alice", "/dav/~alice/f.bin");
    assert_eq!((r.status, sha256_hex(&r.body)), (200, sha256_hex(&old)), "cut at {cut_at}");
    let list = dav(&addr, Some("alice"), "PROPFIND", "/dav/~alice/", &[("Depth", "1")], b"");
    assert!(
        list.text().contains(&format!("<D:getcontentlength>{}</D:getcontentlength>", old.len())),
        "{}",
        list.text()
    );
    // The folder's report lists the same upload, with its total.
    let folder = progress(&addr, "alice", "/dav/~alice/");
    assert_eq!(folder.len(), 1);
    assert_eq!(
        (folder[0].0.as_str(), folder[0].1, folder[0].2),
        ("/dav/~alice/f.bin", cut_at as u64, Some(new.len() as u64))
    );
    // IT Hit's resume: the rest, with Content-Range.
    let range = format!("bytes {cut_at}-{}/{}", new.len() - 1, new.len());
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/f.bin", &[("Content-Range", &range)], &new[cut_at..]);
    assert!(matches!(r.status, 201 | 204), "{} {}", r.status, r.text());
    let r = get(&addr, "alice", "/dav/~alice/f.bin");
    assert_eq!(sha256_hex(&r.body), sha256_hex(&new), "cut at {cut_at}");
    assert!(r.header("repr-digest").is_some(), "the placed file is verified and its digest known");
    assert!(progress(&addr, "alice", "/dav/~alice/").is_empty(), "nothing in progress once placed");
}

#[test]
fn the_google_probe_reports_the_saved_length_and_never_truncates() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = server(tmp.path());
    let addr = srv.addr.clone();
    let data = test_data(2 * 1024 * 1024 + 7, 3);
    let total = format!("bytes */{}", data.len());
    let probe = |path: &str| dav(&addr, Some("alice"), "PUT", path, &[("Content-Range", &total)], b"");

    let r = probe("/dav/~alice/g.bin");
    assert_eq!((r.status, r.header("range")), (308, None), "nothing received yet");
    let cut_at = random_cut(data.len());
    broken_put(&addr, "alice", "/dav/~alice/g.bin", &data, cut_at);
    wait_for(10, "the cut PUT's bytes committed", || probe("/dav/~alice/g.bin").header("range").is_some());
    let want = format!("bytes=0-{}", cut_at - 1);
    for _ in 0..2 {
        let r = probe("/dav/~alice/g.bin");
        assert_eq!((r.status, r.header("range")), (308, Some(want.as_str())), "asking changes nothing");
    }
    // Resume from below the saved length (bytes sent twice are skipped).
    let from = cut_at.saturating_sub(1000);
    let range = format!("bytes {from}-{}/{}", data.len() - 1, data.len());
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/g.bin", &[("Content-Range", &range)], &data[from..]);
    assert!(matches!(r.status, 201 | 204), "{} {}", r.status, r.text());
    assert_eq!(sha256_hex(&get(&addr, "alice", "/dav/~alice/g.bin").body), sha256_hex(&data));
    // A probe of the complete file says so and leaves it whole (dav-server alone truncates).
    assert_eq!(probe("/dav/~alice/g.bin").status, 200);
    assert_eq!(get(&addr, "alice", "/dav/~alice/g.bin").body.len(), data.len());
    // A resume past what was saved is refused.
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/h.bin", &[("Content-Range", "bytes 5-9/10")], b"56789");
    assert_eq!(r.status, 416, "{}", r.text());
}

#[test]
fn tus_and_webdav_share_one_upload_and_cancelupload_discards_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, data_dir) = server(tmp.path());
    let addr = srv.addr.clone();
    let auth = basic_auth("alice");
    let data = test_data(1_500_000, 4);

    // Started by a WebDAV PUT that broke, finished by tus PATCH at the reported URL.
    let cut_at = random_cut(data.len());
    broken_put(&addr, "alice", "/dav/~alice/a.bin", &data, cut_at);
    wait_for(10, "committed", || progress(&addr, "alice", "/dav/~alice/a.bin").first().is_some_and(|p| p.1 > 0));
    let tus_url = progress(&addr, "alice", "/dav/~alice/a.bin")[0].3.clone();
    let offset = tus(&addr, "HEAD", &tus_url, &[("Authorization", &auth)], b"").offset().unwrap();
    assert_eq!(offset, cut_at as u64);
    let r = patch(&addr, &tus_url, offset, &data[cut_at..], &[("Authorization", &auth)]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(sha256_hex(&get(&addr, "alice", "/dav/~alice/a.bin").body), sha256_hex(&data));

    // Started by tus, finished by a WebDAV Content-Range PUT.
    let meta = metadata(&[("filename", b"b.bin")]);
    let len = data.len().to_string();
    let url = create(&addr, &[("Authorization", &auth), ("Upload-Length", &len), ("Upload-Metadata", &meta)]);
    assert_eq!(patch(&addr, &url, 0, &data[..500_000], &[("Authorization", &auth)]).status, 204);
    let seen = progress(&addr, "alice", "/dav/~alice/");
    assert_eq!(seen.iter().map(|p| (p.0.as_str(), p.1)).collect::<Vec<_>>(), vec![("/dav/~alice/b.bin", 500_000)]);
    let range = format!("bytes 500000-{}/{}", data.len() - 1, data.len());
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/b.bin", &[("Content-Range", &range)], &data[500_000..]);
    assert!(matches!(r.status, 201 | 204), "{} {}", r.status, r.text());
    assert_eq!(sha256_hex(&get(&addr, "alice", "/dav/~alice/b.bin").body), sha256_hex(&data));

    // CANCELUPLOAD discards an upload in progress, its bytes included.
    broken_put(&addr, "alice", "/dav/~alice/c.bin", &data, cut_at);
    wait_for(10, "committed", || !progress(&addr, "alice", "/dav/~alice/c.bin").is_empty());
    let tus_url = progress(&addr, "alice", "/dav/~alice/c.bin")[0].3.clone();
    assert_eq!(dav(&addr, Some("bob"), "CANCELUPLOAD", "/dav/~alice/c.bin", &[], b"").status, 403);
    assert_eq!(dav(&addr, Some("alice"), "CANCELUPLOAD", "/dav/~alice/c.bin", &[], b"").status, 204);
    assert!(progress(&addr, "alice", "/dav/~alice/").is_empty());
    assert_eq!(tus(&addr, "HEAD", &tus_url, &[("Authorization", &auth)], b"").status, 404);
    assert_eq!(dav(&addr, Some("alice"), "CANCELUPLOAD", "/dav/~alice/c.bin", &[], b"").status, 404);
    assert_eq!(get(&addr, "alice", "/dav/~alice/c.bin").status, 404);
    let staged = std::fs::read_dir(data_dir.join("staging")).unwrap().count();
    assert_eq!(staged, 0, "no staging bytes left behind");
}

#[test]
fn partial_updates_follow_sabredav_and_apache() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = server(tmp.path());
    let addr = srv.addr.clone();
    let sabre = "application/x-sabredav-partialupdate";
    // (X-Update-Range, body, expected file)
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("bytes=0-3", b"ABCD", b"ABCD456789"),
        ("bytes=1-4", b"ABCD", b"0ABCD56789"),
        ("bytes=0-", b"ABCD", b"ABCD456789"),
        ("bytes=-4", b"ABCD", b"012345ABCD"),
        ("bytes=-2", b"AB", b"01234567AB"),
        ("bytes=2-", b"AB", b"01AB456789"),
        ("bytes=12-", b"AB", b"0123456789\0\0AB"),
        ("append", b"AB", b"0123456789AB"),
    ];
    for (i, (range, body, want)) in cases.iter().enumerate() {
        let path = format!("/dav/~alice/p{i}.txt");
        assert_eq!(dav(&addr, Some("alice"), "PUT", &path, &[], b"0123456789").status, 201);
        let r = dav(&addr, Some("alice"), "PATCH", &path, &[("Content-Type", sabre), ("X-Update-Range", range)], body);
        assert!(matches!(r.status, 200 | 204), "{range}: {} {}", r.status, r.text());
        assert_eq!(get(&addr, "alice", &path).body, *want, "X-Update-Range: {range}");
    }
    let path = "/dav/~alice/p0.txt";
    let before = get(&addr, "alice", path).body;
    let refused: &[(Headers, &[u8], u16)] = &[
        (&[("X-Update-Range", "append")], b"AB", 415),
        (&[("Content-Type", sabre)], b"AB", 400),
        (&[("Content-Type", sabre), ("X-Update-Range", "bytes=0-3")], b"AB", 416),
        (
            &[("Content-Type", sabre), ("X-Update-Range", "append"), ("Transfer-Encoding", "chunked")],
            b"2\r\nAB\r\n0\r\n\r\n",
            411,
        ),
    ];
    for (headers, body, status) in refused {
        let r = dav(&addr, Some("alice"), "PATCH", path, headers, body);
        assert_eq!(r.status, *status, "{headers:?}: {}", r.text());
    }
    assert_eq!(get(&addr, "alice", path).body, before, "refused updates change nothing");

    // Apache: PUT with Content-Range on an existing file rewrites that range; a gap is zeros.
    assert_eq!(dav(&addr, Some("alice"), "PUT", "/dav/~alice/a.txt", &[], b"0123456789").status, 201);
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/a.txt", &[("Content-Range", "bytes 3-6/*")], b"ABCD");
    assert_eq!(r.status, 204);
    assert_eq!(get(&addr, "alice", "/dav/~alice/a.txt").body, b"012ABCD789");
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/a.txt", &[("Content-Range", "bytes 12-13/*")], b"XY");
    assert_eq!(r.status, 204);
    assert_eq!(get(&addr, "alice", "/dav/~alice/a.txt").body, b"012ABCD789\0\0XY");
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/a.txt", &[("Content-Range", "bytes 0-3/*")], b"XY");
    assert_eq!(r.status, 416, "the range must match the body's length");
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/a.txt", &[("Content-Range", "bytes nonsense")], b"XY");
    assert_eq!(r.status, 400);
    assert_eq!(get(&addr, "alice", "/dav/~alice/a.txt").body, b"012ABCD789\0\0XY");
}

#[test]
fn another_users_files_are_refused_to_every_method() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, data_dir) = server(tmp.path());
    let addr = srv.addr.clone();
    let secret = b"alice's secret";
    assert_eq!(dav(&addr, Some("alice"), "PUT", "/dav/~alice/s.txt", &[], secret).status, 201);
    assert_eq!(dav(&addr, Some("alice"), "MKCOL", "/dav/~alice/d", &[], b"").status, 201);
    assert_eq!(dav(&addr, Some("bob"), "PUT", "/dav/~bob/mine.txt", &[], b"bob's").status, 201);
    broken_put(&addr, "alice", "/dav/~alice/u.bin", &test_data(100_000, 5), 5_000);
    wait_for(10, "committed", || !progress(&addr, "alice", "/dav/~alice/u.bin").is_empty());

    let host = format!("http://{addr}");
    let to_bob = format!("{host}/dav/~bob/stolen.txt");
    let to_alice = format!("{host}/dav/~alice/planted.txt");
    let prop = b"<?xml version=\"1.0\"?><D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop><x xmlns=\"urn:x\">1</x></D:prop></D:set></D:propertyupdate>";
    let lock = b"<?xml version=\"1.0\"?><D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>";
    let sabre = [("Content-Type", "application/x-sabredav-partialupdate"), ("X-Update-Range", "append")];
    let cases: Vec<Case> = vec![
        ("GET", "/dav/~alice/s.txt", vec![], b""),
        ("HEAD", "/dav/~alice/s.txt", vec![], b""),
        ("PUT", "/dav/~alice/s.txt", vec![], b"overwritten"),
        ("PUT", "/dav/~alice/s.txt", vec![("Content-Range", "bytes 0-3/*")], b"XXXX"),
        ("PUT", "/dav/~alice/u.bin", vec![("Content-Range", "bytes */100000")], b""),
        ("PATCH", "/dav/~alice/s.txt", sabre.to_vec(), b"XX"),
        ("DELETE", "/dav/~alice/s.txt", vec![], b""),
        ("DELETE", "/dav/~alice/d", vec![], b""),
        ("PROPFIND", "/dav/~alice/", vec![("Depth", "1")], b""),
        ("PROPPATCH", "/dav/~alice/s.txt", vec![], prop),
        ("MKCOL", "/dav/~alice/new", vec![], b""),
        ("COPY", "/dav/~alice/s.txt", vec![("Destination", &to_bob)], b""),
        ("COPY", "/dav/~bob/mine.txt", vec![("Destination", &to_alice)], b""),
        ("MOVE", "/dav/~alice/s.txt", vec![("Destination", &to_bob)], b""),
        ("MOVE", "/dav/~bob/mine.txt", vec![("Destination", &to_alice)], b""),
        ("LOCK", "/dav/~alice/s.txt", vec![], lock),
        ("UNLOCK", "/dav/~alice/s.txt", vec![("Lock-Token", "<urn:uuid:00000000-0000-4000-a000-000000000000>")], b""),
        ("REPORT", "/dav/~alice/", vec![], b"<upload-progress xmlns=\"ithit\"/>"),
        ("CANCELUPLOAD", "/dav/~alice/u.bin", vec![], b""),
    ];
    for (method, path, headers, body) in &cases {
        let r = dav(&addr, Some("bob"), method, path, headers, body);
        // dav-server answers a destination whose folder the caller may not see with 409.
        let refused = matches!(r.status, 403 | 404 | 423) || (r.status == 409 && matches!(*method, "COPY" | "MOVE"));
        assert!(refused, "bob {method} {path}: {} {}", r.status, r.text());
        let r = dav(&addr, None, method, path, headers, body);
        assert_eq!(r.status, 401, "anonymous {method} {path}");
    }
    // Method override is not honoured on /dav/: a POST that says DELETE is no DELETE.
    for user in [Some("bob"), None] {
        let r = dav(&addr, user, "POST", "/dav/~alice/s.txt", &[("X-HTTP-Method-Override", "DELETE")], b"");
        assert!(matches!(r.status, 401 | 404 | 405), "{user:?}: {} {}", r.status, r.text());
    }
    // Knowing the token of alice's lock does not let bob lift it.
    let r = dav(&addr, Some("alice"), "LOCK", "/dav/~alice/s.txt", &[], lock);
    let token = r.header("lock-token").unwrap().to_owned();
    assert_eq!(dav(&addr, Some("bob"), "UNLOCK", "/dav/~alice/s.txt", &[("Lock-Token", &token)], b"").status, 403);
    assert_eq!(dav(&addr, Some("alice"), "PUT", "/dav/~alice/s.txt", &[], b"x").status, 423, "still locked");
    assert_eq!(dav(&addr, Some("alice"), "UNLOCK", "/dav/~alice/s.txt", &[("Lock-Token", &token)], b"").status, 204);
    assert_eq!(get(&addr, "alice", "/dav/~alice/s.txt").body, secret);
    assert_eq!(dav(&addr, Some("alice"), "PROPFIND", "/dav/~alice/d", &[("Depth", "0")], b"").status, 207);
    assert_eq!(progress(&addr, "alice", "/dav/~alice/u.bin")[0].1, 5_000, "alice's upload untouched");
    assert!(!data_dir.join("files/~bob/stolen.txt").exists() && !data_dir.join("files/~alice/planted.txt").exists());
    assert!(!data_dir.join("files/~alice/new").exists());
    let root = dav(&addr, Some("bob"), "PROPFIND", "/dav/", &[("Depth", "1")], b"");
    assert_eq!(root.status, 207);
    assert!(root.text().contains("~bob") && !root.text().contains("~alice"), "{}", root.text());
}

#[test]
fn locks_and_dead_properties_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut srv, _) = server(tmp.path());
    let addr = srv.addr.clone();
    assert_eq!(dav(&addr, Some("alice"), "PUT", "/dav/~alice/l.txt", &[], b"v1").status, 201);
    let prop = b"<?xml version=\"1.0\"?><D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop><z:color xmlns:z=\"urn:z\">blue</z:color></D:prop></D:set></D:propertyupdate>";
    assert_eq!(dav(&addr, Some("alice"), "PROPPATCH", "/dav/~alice/l.txt", &[], prop).status, 207);
    let lock = b"<?xml version=\"1.0\"?><D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>";
    let r = dav(&addr, Some("alice"), "LOCK", "/dav/~alice/l.txt", &[("Timeout", "Second-3600")], lock);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.header("lock-token").unwrap().trim_matches(['<', '>']).to_owned();

    srv.restart();
    let addr = srv.addr.clone();
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/l.txt", &[], b"v2");
    assert_eq!(r.status, 423, "the lock outlived the restart");
    let r = dav(&addr, Some("alice"), "DELETE", "/dav/~alice/l.txt", &[], b"");
    assert_eq!(r.status, 423);
    let if_token = format!("(<{token}>)");
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/l.txt", &[("If", &if_token)], b"v2");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(&addr, "alice", "/dav/~alice/l.txt").body, b"v2");
    let find = b"<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop><z:color xmlns:z=\"urn:z\"/><D:lockdiscovery/></D:prop></D:propfind>";
    let r = dav(&addr, Some("alice"), "PROPFIND", "/dav/~alice/l.txt", &[("Depth", "0")], find);
    assert!(r.text().contains(">blue<") && r.text().contains(&token) && r.text().contains(">me<"), "{}", r.text());

    // A move takes the properties along (and needs the lock's token).
    let dest = format!("http://{addr}/dav/~alice/m.txt");
    let r = dav(&addr, Some("alice"), "MOVE", "/dav/~alice/l.txt", &[("Destination", &dest), ("If", &if_token)], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = dav(&addr, Some("alice"), "PROPFIND", "/dav/~alice/m.txt", &[("Depth", "0")], find);
    assert!(r.text().contains(">blue<"), "{}", r.text());
    assert!(!r.text().contains(&token), "the lock stayed with the source");
}

#[test]
fn copies_count_against_the_quota_and_deep_listings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, data_dir) = server(tmp.path());
    let addr = srv.addr.clone();
    let data = test_data(1_500_000, 6);
    assert_eq!(dav(&addr, Some("carol"), "PUT", "/dav/~carol/big.bin", &[], &data).status, 201);
    let dest = format!("http://{addr}/dav/~carol/copy.bin");
    let r = dav(&addr, Some("carol"), "COPY", "/dav/~carol/big.bin", &[("Destination", &dest)], b"");
    assert!(matches!(r.status, 413 | 507), "{} {}", r.status, r.text());
    assert!(!data_dir.join("files/~carol/copy.bin").exists());
    let r = dav(&addr, Some("carol"), "PUT", "/dav/~carol/more.bin", &[], &data);
    assert!(matches!(r.status, 413 | 507), "a PUT past the quota: {} {}", r.status, r.text());
    // Copies stay counted (no quota bypass by copying twice), and a DELETE frees them.
    assert_eq!(dav(&addr, Some("carol"), "DELETE", "/dav/~carol/big.bin", &[], b"").status, 204);
    let small = test_data(600_000, 10);
    assert_eq!(dav(&addr, Some("carol"), "PUT", "/dav/~carol/s.bin", &[], &small).status, 201);
    for (i, want_ok) in [(1, true), (2, true), (3, false)] {
        let dest = format!("http://{addr}/dav/~carol/s{i}.bin");
        let r = dav(&addr, Some("carol"), "COPY", "/dav/~carol/s.bin", &[("Destination", &dest)], b"");
        assert_eq!(matches!(r.status, 201 | 204), want_ok, "copy {i}: {} {}", r.status, r.text());
    }
    for i in [1, 2] {
        assert_eq!(dav(&addr, Some("carol"), "DELETE", &format!("/dav/~carol/s{i}.bin"), &[], b"").status, 204);
    }
    let back = test_data(1_400_000, 11);
    assert_eq!(dav(&addr, Some("carol"), "PUT", "/dav/~carol/big.bin", &[], &back).status, 201, "freed by DELETE");
    let find = b"<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop><D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>";
    let r = dav(&addr, Some("carol"), "PROPFIND", "/dav/~carol/", &[("Depth", "0")], find);
    let used = format!("<D:quota-used-bytes>{}</D:quota-used-bytes>", back.len() + small.len());
    assert!(r.text().contains(&used), "{}", r.text());
    let r = dav(&addr, Some("alice"), "PROPFIND", "/dav/~alice/", &[("Depth", "infinity")], b"");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("propfind-finite-depth"));
}

/// A chunked PUT: the head, then `data` in chunks of `chunk`; cut after `cut` bytes of
/// data when given (no final chunk).
fn chunked_put(
    addr: &str,
    user: &str,
    path: &str,
    extra: &[(&str, &str)],
    data: &[u8],
    cut_at: Option<usize>,
) -> Option<Resp> {
    let mut h = vec![("Connection", "close"), ("Transfer-Encoding", "chunked")];
    h.extend_from_slice(extra);
    let mut s = open_put(addr, user, path, &h);
    let send = cut_at.unwrap_or(data.len());
    for piece in data[..send].chunks(64 * 1024) {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).unwrap();
        s.write_all(piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    if cut_at.is_some() {
        s.flush().unwrap();
        cut(s);
        return None;
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    Some(read_response(&mut s))
}

#[test]
fn finder_and_windows_clients_get_what_they_expect() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, _) = server(tmp.path());
    let addr = srv.addr.clone();
    let data = test_data(700_000, 7);
    let len = data.len().to_string();

    // Finder: chunked, with the length in X-Expected-Entity-Length.
    let r = chunked_put(&addr, "alice", "/dav/~alice/finder.bin", &[("X-Expected-Entity-Length", &len)], &data, None);
    assert_eq!(r.unwrap().status, 201);
    assert_eq!(sha256_hex(&get(&addr, "alice", "/dav/~alice/finder.bin").body), sha256_hex(&data));
    // Chunked without any length: the clean end of the body is the end of the file.
    let r = chunked_put(&addr, "alice", "/dav/~alice/nolen.bin", &[], &data, None);
    assert_eq!(r.unwrap().status, 201);
    assert_eq!(sha256_hex(&get(&addr, "alice", "/dav/~alice/nolen.bin").body), sha256_hex(&data));
    // ... and when such a body breaks, what arrived is an upload of unknown length that a
    // Content-Range with the total finishes.
    chunked_put(&addr, "alice", "/dav/~alice/cut.bin", &[], &data, Some(300_000));
    wait_for(10, "committed", || {
        progress(&addr, "alice", "/dav/~alice/cut.bin").first().is_some_and(|p| p.1 == 300_000)
    });
    assert_eq!(progress(&addr, "alice", "/dav/~alice/cut.bin")[0].2, None, "no total known yet");
    assert_eq!(get(&addr, "alice", "/dav/~alice/cut.bin").status, 404, "a body cut short is not a file");
    let range = format!("bytes 300000-{}/{len}", data.len() - 1);
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/cut.bin", &[("Content-Range", &range)], &data[300_000..]);
    assert!(matches!(r.status, 201 | 204), "{} {}", r.status, r.text());
    assert_eq!(sha256_hex(&get(&addr, "alice", "/dav/~alice/cut.bin").body), sha256_hex(&data));

    // Windows' Mini-Redirector: LOCK a new name (an empty file appears), PUT with the token
    // and `Translate: f`, UNLOCK.
    let lock = b"<?xml version=\"1.0\"?><D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>";
    let r = dav(&addr, Some("alice"), "LOCK", "/dav/~alice/win.txt", &[("Translate", "f")], lock);
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.header("lock-token").unwrap().to_owned();
    assert_eq!(get(&addr, "alice", "/dav/~alice/win.txt").body, b"");
    let if_token = format!("({token})");
    let r = dav(&addr, Some("alice"), "PUT", "/dav/~alice/win.txt", &[("If", &if_token), ("Translate", "f")], b"doc");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(dav(&addr, Some("alice"), "UNLOCK", "/dav/~alice/win.txt", &[("Lock-Token", &token)], b"").status, 204);
    assert_eq!(get(&addr, "alice", "/dav/~alice/win.txt").body, b"doc");

    // macOS metadata files are stored like any file (Finder fails a copy whose ._ file is
    // refused) and listed.
    assert_eq!(dav(&addr, Some("alice"), "PUT", "/dav/~alice/._finder.bin", &[], b"\0\x05\x16\x07").status, 201);
    assert_eq!(dav(&addr, Some("alice"), "PUT", "/dav/~alice/.DS_Store", &[], b"Bud1").status, 201);
    let list = dav(&addr, Some("alice"), "PROPFIND", "/dav/~alice/", &[("Depth", "1")], b"").text();
    assert!(list.contains("/dav/~alice/._finder.bin") && list.contains("/dav/~alice/.DS_Store"), "{list}");
}

/// A PUT of `data` that sends `sent` bytes and keeps the connection open.
fn stalled_put(addr: &str, user: &str, path: &str, data: &[u8], sent: usize) -> TcpStream {
    let mut s = open_put(addr, user, path, &[("Content-Length", &data.len().to_string())]);
    // In 4 MiB steps with pauses, as a real link delivers: the server commits as it goes.
    for piece in data[..sent].chunks(4 << 20) {
        s.write_all(piece).unwrap();
        s.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    s
}

#[test]
fn a_server_killed_or_stopped_mid_put_keeps_what_it_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    Users::add(&data_dir, &["alice"]);
    let mut srv = Server::start_auth(&data_dir, &["--commit-every", "1M", "--shutdown-grace", "1s"]);
    let old = test_data(50_000, 8);
    assert_eq!(dav(&srv.addr, Some("alice"), "PUT", "/dav/~alice/k.bin", &[], &old).status, 201);
    let data = test_data(24 << 20, 9);

    // kill -9 while 12 MiB of 24 have arrived: the bytes committed survive, nothing else.
    let sent = 12 << 20;
    let conn = stalled_put(&srv.addr, "alice", "/dav/~alice/k.bin", &data, sent);
    wait_for(20, "a commit during the PUT", || {
        progress(&srv.addr, "alice", "/dav/~alice/k.bin").first().is_some_and(|p| p.1 >= 4 << 20)
    });
    srv.kill9();
    drop(conn);
    srv.restart();
    let kept = progress(&srv.addr, "alice", "/dav/~alice/k.bin")[0].1 as usize;
    assert!(kept >= 4 << 20 && kept <= sent, "kept {kept} of {sent} sent");
    let r = get(&srv.addr, "alice", "/dav/~alice/k.bin");
    assert_eq!(sha256_hex(&r.body), sha256_hex(&old), "the old file is served until the new one is whole");

    // SIGTERM while the rest streams: the drain keeps every byte that arrived.
    let sent2 = kept + (6 << 20);
    let range = format!("bytes {kept}-{}/{}", data.len() - 1, data.len());
    let rest = (data.len() - kept).to_string();
    let mut s =
        open_put(&srv.addr, "alice", "/dav/~alice/k.bin", &[("Content-Range", &range), ("Content-Length", &rest)]);
    s.write_all(&data[kept..sent2]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(srv.terminate(), "a clean exit after the drain");
    drop(s);
    srv.restart();
    let kept2 = progress(&srv.addr, "alice", "/dav/~alice/k.bin")[0].1 as usize;
    assert_eq!(kept2, sent2, "a stop keeps every byte that arrived");
    let range = format!("bytes {kept2}-{}/{}", data.len() - 1, data.len());
    let r = dav(&srv.addr, Some("alice"), "PUT", "/dav/~alice/k.bin", &[("Content-Range", &range)], &data[kept2..]);
    assert!(matches!(r.status, 201 | 204), "{} {}", r.status, r.text());
    assert_eq!(sha256_hex(&get(&srv.addr, "alice", "/dav/~alice/k.bin").body), sha256_hex(&data));
    eprintln!("kill -9 with {sent} bytes sent: {kept} kept, {} sent again; SIGTERM: all kept", sent - kept);
}
