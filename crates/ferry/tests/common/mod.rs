//! Shared fixtures for the black-box tests: the real `ferry` binary on a free loopback
//! port, a raw HTTP/1.1 client (so tests control every header and can cut bodies), a
//! throttling TCP proxy, and deterministic test data.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Path of the binary under test.
pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// A running `ferry serve`, killed on drop.
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub data: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Starts a server without accounts (`--no-auth`) on a free port with data in `data`.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec!["--no-auth".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(data, args)
    }

    /// Starts a server with accounts on a fixed address.
    pub fn start_on_auth(listen: &str, data: &Path) -> Server {
        Self::spawn(data, vec!["--listen".into(), listen.into()])
    }

    /// Starts a server with accounts on (the default of `ferry serve`).
    pub fn start_auth(data: &Path, extra: &[&str]) -> Server {
        Self::spawn(data, extra.iter().map(|s| s.to_string()).collect())
    }

    /// Starts a server on a fixed address (to restart "the same server" under a client).
    pub fn start_on(listen: &str, data: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec!["--no-auth".into(), "--listen".into(), listen.into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(data, args)
    }

    /// Starts a server with accounts whose log (stderr) goes to `log`.
    pub fn start_auth_logged(data: &Path, log: &Path) -> Server {
        let mut s = Self::spawn_with(data, Vec::new(), Stdio::from(std::fs::File::create(log).expect("log file")));
        s.args.clear();
        s
    }

    /// Starts a server without accounts whose file-descriptor limit (soft and hard) is
    /// `nofile`.
    pub fn start_with_fd_limit(data: &Path, nofile: u64) -> Server {
        Self::spawn_in(data, vec!["--no-auth".into()], Stdio::inherit(), Some(nofile))
    }

    fn spawn(data: &Path, args: Vec<String>) -> Server {
        Self::spawn_with(data, args, Stdio::inherit())
    }

    fn spawn_with(data: &Path, args: Vec<String>, stderr: Stdio) -> Server {
        Self::spawn_in(data, args, stderr, None)
    }

    fn spawn_in(data: &Path, args: Vec<String>, stderr: Stdio, nofile: Option<u64>) -> Server {
        let listen_given = args.iter().any(|a| a == "--listen");
        let mut cmd = match nofile {
            None => Command::new(ferry_bin()),
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), ferry_bin()]);
                c
            }
        };
        cmd.arg("serve");
        if !listen_given {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .arg("--data")
            .arg(data)
            .args(&args)
            .env("RUST_LOG", std::env::var("FERRY_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn ferry serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("read banner");
        // Keep draining stdout so the server never writes into a closed pipe.
        thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
            .to_owned();
        Server { child, addr, data: data.to_path_buf(), args }
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        signal(self.child.id(), "TERM");
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Starts again on the same data with the same flags (on a new port).
    pub fn restart(&mut self) {
        self.kill9();
        let next = Self::spawn(&self.data, self.args.clone());
        *self = next;
    }

    /// The staging file of an upload.
    pub fn staging_file(&self, id: &str) -> PathBuf {
        self.data.join("staging").join(format!("{id}.part"))
    }

    /// A file in the served tree.
    pub fn tree_file(&self, rel: &str) -> PathBuf {
        self.data.join("files").join(rel)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn offset(&self) -> Option<u64> {
        self.header("upload-offset").and_then(|v| v.parse().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a whole `Connection: close` response.
pub fn read_response(stream: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no response head in {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    Resp { status, headers, body: raw[split + 4..].to_vec() }
}

/// One request over a fresh connection. `Content-Length` is added for a non-empty body
/// unless the headers already set `Content-Length` or `Transfer-Encoding`.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let has_len = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding"));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len && (!body.is_empty() || method == "PATCH" || method == "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

/// A tus request (adds `Tus-Resumable: 1.0.0`).
pub fn tus(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut h = vec![("Tus-Resumable", "1.0.0")];
    h.extend_from_slice(headers);
    request(addr, method, path, &h, body)
}

/// Creates an upload and returns its path (`/tus/ID`).
pub fn create(addr: &str, headers: &[(&str, &str)]) -> String {
    let r = tus(addr, "POST", "/tus/", headers, b"");
    assert_eq!(r.status, 201, "create failed: {} {}", r.status, r.text());
    r.header("location").expect("Location").to_owned()
}

/// PATCHes `body` at `offset`.
pub fn patch(addr: &str, path: &str, offset: u64, body: &[u8], extra: &[(&str, &str)]) -> Resp {
    let off = offset.to_string();
    let mut h = vec![("Content-Type", "application/offset+octet-stream"), ("Upload-Offset", off.as_str())];
    h.extend_from_slice(extra);
    tus(addr, "PATCH", path, &h, body)
}

/// HEAD's `Upload-Offset`.
pub fn head_offset(addr: &str, path: &str) -> Option<u64> {
    tus(addr, "HEAD", path, &[], b"").offset()
}

/// `Upload-Metadata` for pairs.
pub fn metadata(pairs: &[(&str, &[u8])]) -> String {
    use base64::Engine;
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Opens a PATCH and sends the head plus `first` bytes of the body, leaving the
/// connection open (the caller decides whether to finish, stall or cut it).
pub fn open_patch(
    addr: &str,
    path: &str,
    offset: u64,
    content_length: u64,
    first: &[u8],
    extra: &[(&str, &str)],
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {content_length}\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(first).expect("write body");
    stream.flush().ok();
    stream
}

/// Cuts a connection hard (RST-free close of both directions).
pub fn cut(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

/// Waits until `f` is true (polling), panicking after `secs`.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..secs * 20 {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for hundreds of MB.
pub fn test_data(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP proxy in front of `upstream` that can throttle both directions (bytes/second;
/// 0 = unlimited). Used to make transfers slow enough to interrupt.
pub struct Proxy {
    pub addr: String,
    pub rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: &str, rate: u64) -> Proxy {
        Proxy::start_far(upstream, rate, Duration::ZERO)
    }

    /// A proxy that also holds every read for `delay` before passing it on, so a request's
    /// round trip takes at least twice that (a far server), and each connection is limited
    /// to `rate` on its own (like one loss-limited TCP stream on a long link).
    pub fn start_far(upstream: &str, rate: u64, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let rate = Arc::new(AtomicU64::new(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let conns: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let (r, s, c) = (rate.clone(), stop.clone(), conns.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                    c.lock().unwrap().extend([a, b]);
                }
                for (mut from, mut to) in
                    [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
                {
                    let r = r.clone();
                    thread::spawn(move || {
                        let mut buf = vec![0u8; 16 << 10];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            thread::sleep(delay);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            let rate = r.load(Ordering::Relaxed);
                            if rate > 0 {
                                thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                        let _ = from.shutdown(Shutdown::Read);
                    });
                }
            }
        });
        Proxy { addr, rate, stop, conns }
    }

    /// Cuts every connection open through the proxy (new ones still work).
    pub fn kill_all(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        for c in conns.iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
        let n = conns.len() / 2;
        conns.clear();
        n
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// A `ferry` client command with its own state directory.
pub fn client(state: &Path) -> Command {
    let mut c = Command::new(ferry_bin());
    c.env("FERRY_STATE_DIR", state).env("RUST_LOG", "warn").env_remove("FERRY_SERVER");
    c
}

/// The only upload URL remembered in a client state directory, once there is one.
pub fn remembered_upload(state: &Path) -> Option<String> {
    let dir = std::fs::read_dir(state.join("uploads")).ok()?;
    for entry in dir.flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
            return v["url"].as_str().map(str::to_owned);
        }
    }
    None
}

/// Accounts for black-box tests: `ferry user add` on the data dir, and one CLI
/// environment (config and state directories) per user.
pub struct Users {
    pub dir: PathBuf,
}

impl Users {
    pub fn add(data: &Path, names: &[&str]) {
        for n in names {
            Self::add_one(data, n, &[]);
        }
    }

    /// A user with a quota (`--quota 2M`), password `{name}-pw`.
    pub fn add_with_quota(data: &Path, name: &str, quota: &str) {
        Self::add_one(data, name, &["--quota", quota]);
    }

    fn add_one(data: &Path, name: &str, extra: &[&str]) {
        std::fs::create_dir_all(data).unwrap();
        let mut c = Command::new(ferry_bin())
            .args(["user", "add", name, "--password-stdin"])
            .args(extra)
            .arg("--data")
            .arg(data)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(c.stdin.take().unwrap(), "{name}-pw").unwrap();
        assert!(c.wait().unwrap().success());
    }

    /// `ferry` as `user` (own config and state dirs) against `server`.
    pub fn cli(&self, user: &str, server: &str) -> Command {
        let mut c = client(&self.dir.join(format!("state-{user}")));
        c.env("FERRY_CONFIG_DIR", self.dir.join(format!("cfg-{user}"))).env("FERRY_SERVER", server);
        c
    }

    pub fn login(&self, user: &str, server: &str) {
        let mut c = self
            .cli(user, server)
            .args(["login", "--user", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(c.stdin.take().unwrap(), "{user}-pw").unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// `Authorization` for a user added by [`Users`] (password `{user}-pw`).
pub fn basic_auth(user: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-pw")))
}

/// The last JSON object a command printed on stdout.
pub fn json_of(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON on stdout: {text:?}\nstderr: {}", String::from_utf8_lossy(&out.stderr)))
}
