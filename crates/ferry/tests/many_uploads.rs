//! Issue 12: many concurrent slow uploads against a server with few file descriptors.
//! Every upload either completes or is turned away (503 with Retry-After) before any of
//! its bytes is accepted; none fails halfway. (Timings and memory are in bench/, C1.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const CLIENTS: usize = 2_000;
const SIZE: usize = 4096;

/// One HTTP/1.1 response: status and headers (the body, if any, is read and dropped).
fn response(st: &mut TcpStream) -> Result<(u16, String), String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match st.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(format!("connection closed after {:?}", String::from_utf8_lossy(&head))),
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&head))),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    st.read_exact(&mut body).map_err(|e| e.to_string())?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| head.clone())?;
    Ok((status, head))
}

#[derive(Debug)]
enum Outcome {
    Completed,
    TurnedAway,
    Failed(String),
}

/// Creates an upload, then trickles its bytes in one PATCH over about three seconds.
fn slow_upload(addr: &str) -> Outcome {
    let Ok(mut st) = TcpStream::connect(addr) else { return Outcome::Failed("connect failed".into()) };
    st.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let create = format!(
        "POST /tus/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {SIZE}\r\nContent-Length: 0\r\n\r\n"
    );
    // A connection turned away may be closed before the request is written.
    let _ = st.write_all(create.as_bytes());
    let (status, head) = match response(&mut st) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("create: {e}")),
    };
    match status {
        201 => {}
        503 if head.contains("Retry-After") => return Outcome::TurnedAway,
        _ => return Outcome::Failed(format!("create answered {head:?}")),
    }
    let loc = head
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap()
        .trim()
        .to_owned();
    let patch = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
    );
    if st.write_all(patch.as_bytes()).is_err() {
        return Outcome::Failed("PATCH head not sent".into());
    }
    for piece in vec![7u8; SIZE].chunks(SIZE / 8) {
        std::thread::sleep(Duration::from_millis(400));
        if let Err(e) = st.write_all(piece) {
            return Outcome::Failed(format!("PATCH body: {e}"));
        }
    }
    match response(&mut st) {
        Ok((204, _)) => Outcome::Completed,
        Ok((_, head)) => Outcome::Failed(format!("PATCH answered {head:?}")),
        Err(e) => Outcome::Failed(format!("PATCH: {e}")),
    }
}

#[test]
fn slow_uploads_past_the_descriptor_limit_are_turned_away_never_broken() {
    // This process needs a socket per client too.
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let want = Some(lim.maximum.unwrap_or(u64::MAX).min(8192));
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit { current: want, maximum: lim.maximum },
    );
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_fd_limit(&tmp.path().join("data"), 1024);
    let outcomes: Vec<Outcome> = (0..CLIENTS)
        .map(|_| {
            let addr = s.addr.clone();
            std::thread::Builder::new().stack_size(128 << 10).spawn(move || slow_upload(&addr)).unwrap()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let completed = outcomes.iter().filter(|o| matches!(o, Outcome::Completed)).count();
    let away = outcomes.iter().filter(|o| matches!(o, Outcome::TurnedAway)).count();
    let failed: Vec<&str> =
        outcomes.iter().filter_map(|o| if let Outcome::Failed(why) = o { Some(why.as_str()) } else { None }).collect();
    eprintln!("{CLIENTS} slow uploads, 1024 descriptors: {completed} completed, {away} turned away (503)");
    assert!(failed.is_empty(), "{} failed halfway, e.g. {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert!(completed >= 500, "most of the connection cap is used: {completed}");
    assert!(away > 0, "with 1024 descriptors not all 2,000 fit at once");
    let placed = std::fs::read_dir(tmp.path().join("data/files")).unwrap().count();
    assert_eq!(placed, completed, "every completed upload is in the tree, nothing else");
    assert_eq!(request(&s.addr, "GET", "/healthz", &[], b"").status, 200);
}
