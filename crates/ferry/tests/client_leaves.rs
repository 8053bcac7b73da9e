//! A client that sends a whole request body and leaves before the answer (a browser page
//! reloaded right then, a client that gave up waiting) still gets its bytes kept: the
//! server finishes the request instead of dropping it with the connection. Found by the web
//! app's reload test: a 64 MiB PATCH sent whole was lost and re-sent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::*;

const BODY: usize = 64 << 20;

/// Sends `head` and `body` on a fresh connection and closes it without reading anything.
fn send_and_leave(addr: &str, head: &str, body: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    drop(s);
}

/// An unfinished upload's committed offset, from `GET /api/uploads` (no lock taken).
fn offset_listed(addr: &str, id: &str) -> Option<u64> {
    let r = request(addr, "GET", "/api/uploads", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    let list = v.get("uploads").unwrap_or(&v).as_array()?.clone();
    list.iter().find(|u| u["id"] == id).and_then(|u| u["offset"].as_u64())
}

#[test]
fn a_patch_sent_whole_is_kept_when_its_client_leaves_before_the_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"), &[]);
    let body = test_data(BODY, 9);
    for round in 0..3 {
        let md = metadata(&[("filename", format!("p{round}.bin").as_bytes())]);
        let url = create(&s.addr, &[("Upload-Length", &(2 * BODY).to_string()), ("Upload-Metadata", &md)]);
        let at = format!("/tus/{}", url.rsplit('/').next().unwrap());
        let head = format!(
            "PATCH {at} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
             Content-Type: application/offset+octet-stream\r\nContent-Length: {BODY}\r\n\r\n",
            s.addr
        );
        send_and_leave(&s.addr, &head, &body);
        // Watched through the uploads list: a HEAD would take the upload over and end the
        // request still reading (as a resuming client's HEAD should).
        let id = at.rsplit('/').next().unwrap().to_owned();
        wait_for(10, "the whole body kept", || offset_listed(&s.addr, &id) == Some(BODY as u64));
    }
}

#[test]
fn a_creation_with_its_body_and_a_webdav_put_are_kept_too() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start(&data, &[]);
    let body = test_data(BODY, 10);
    let md = metadata(&[("filename", b"c.bin")]);
    let head = format!(
        "POST /tus/ HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {BODY}\r\nUpload-Metadata: {md}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {BODY}\r\n\r\n",
        s.addr
    );
    send_and_leave(&s.addr, &head, &body);
    wait_for(10, "the created upload complete and placed", || {
        std::fs::read(data.join("files/c.bin")).is_ok_and(|b| b.len() == BODY && b == body)
    });
    let head = format!("PUT /dav/d.bin HTTP/1.1\r\nHost: {}\r\nContent-Length: {BODY}\r\n\r\n", s.addr);
    send_and_leave(&s.addr, &head, &body);
    wait_for(10, "the PUT placed", || std::fs::read(data.join("files/d.bin")).is_ok_and(|b| b == body));
}
