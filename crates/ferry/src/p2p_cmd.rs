//! Direct transfers from the command line: `ferry send --via auto|direct|server` and the
//! receiving side of `ferry inbox --watch --receive-into DIR`.
//!
//! Both sides bind an iroh endpoint that knows only the server's embedded relay (its port
//! and certificate come from `GET /api/p2p`; its host is the server's), and the receiver
//! registers its endpoint with every heartbeat. A sender finds the recipient's endpoint with
//! `GET /api/p2p/peers/NAME`; iroh then connects directly when it can, else through the
//! relay, and moves between the two as paths come and go (one QUIC connection, several
//! paths). When the connection breaks the sender reconnects and the transfer resumes at the
//! receiver's verified chunks; when the recipient goes offline for good, what its disk
//! confirmed stays there and the rest goes to the server's store as a continuation item,
//! which its client finishes the file with later. `FERRY_P2P_PATHS=relay|loopback`
//! restricts the paths (labs and tests).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use ferry_p2p::endpoint::{self, PathKind, Paths};
use ferry_p2p::transfer::{self, Incoming, Report};
use ferry_p2p::{ALPN, EndpointId, P2pError, RelayInfo, SecretKey};
use indicatif::HumanBytes;
use tokio_util::sync::CancellationToken;

/// How long a sender waits for a direct path before it starts over the relay.
const DIRECT_GRACE: Duration = Duration::from_millis(1500);
/// How often a relayed sender asks for a direct path again.
const PROBE_EVERY: Duration = Duration::from_secs(4);
/// How long a sender waits for a connection to the recipient.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a sender keeps reconnecting to a recipient that stays registered but cannot
/// be reached, with no new byte confirmed, before it counts them as gone.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

fn paths() -> Paths {
    match std::env::var("FERRY_P2P_PATHS").as_deref() {
        Ok("relay") => Paths::RelayOnly,
        Ok("loopback") => Paths::Loopback,
        _ => Paths::Any,
    }
}

fn base(server: &str) -> anyhow::Result<reqwest::Url> {
    reqwest::Url::parse(server).with_context(|| format!("bad server URL {server:?}"))
}

/// The server's relay, or `None` when it runs without one.
async fn relay_info(http: &reqwest::Client, server: &str) -> anyhow::Result<Option<RelayInfo>> {
    Ok(relay_and_renewal(http, server).await?.map(|(r, _)| r))
}

/// The server's relay and how often a registration must be renewed (its heartbeat: it
/// forgets a registration after three), or `None` when it runs without a relay.
async fn relay_and_renewal(http: &reqwest::Client, server: &str) -> anyhow::Result<Option<(RelayInfo, Duration)>> {
    let url = base(server)?.join("api/p2p")?;
    let resp = http.get(url).send().await.with_context(|| format!("cannot reach {server}"))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        bail!("{server} refused peer-to-peer: {}", resp.text().await.unwrap_or_default().trim());
    }
    let v: serde_json::Value = resp.json().await?;
    let host = base(server)?.host_str().ok_or_else(|| anyhow!("the server URL has no host"))?.to_owned();
    let port = v["relay_port"].as_u64().ok_or_else(|| anyhow!("the server named no relay port"))?;
    let url = format!("https://{host}:{port}").parse().map_err(|e| anyhow!("relay URL: {e}"))?;
    let quic_port = v["quic_port"].as_u64().ok_or_else(|| anyhow!("the server named no QUIC port"))? as u16;
    let cert_der = base64::engine::general_purpose::STANDARD
        .decode(v["cert"].as_str().unwrap_or(""))
        .context("the relay certificate is not base64")?;
    let renew = Duration::from_millis(v["renew_ms"].as_u64().unwrap_or(10_000).max(500));
    Ok(Some((RelayInfo { url, quic_port, cert_der }, renew)))
}

async fn my_name(http: &reqwest::Client, server: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = http.get(base(server)?.join("api/me")?).send().await?.error_for_status()?.json().await?;
    v["user"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("log in first (ferry login)"))
}

/// Registers `key`'s endpoint as `user`'s (the relay admits registered endpoints only);
/// `receive` when it takes transfers (senders find it).
async fn register(
    http: &reqwest::Client,
    server: &str,
    key: &SecretKey,
    user: &str,
    receive: bool,
) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "endpoint_id": key.public().to_string(),
        "signature": ferry_p2p::registry::sign_registration(key, user),
        "receive": receive,
    });
    let resp = http.post(base(server)?.join("api/p2p/endpoint")?).json(&body).send().await?;
    if !resp.status().is_success() {
        bail!("the server refused the endpoint: {}", resp.text().await.unwrap_or_default().trim());
    }
    Ok(())
}

async fn unregister(http: &reqwest::Client, server: &str, id: EndpointId) -> anyhow::Result<()> {
    http.delete(base(server)?.join(&format!("api/p2p/endpoints/{id}"))?).send().await?.error_for_status()?;
    Ok(())
}

/// The user whose client `id` is (as the server knows it), else the id's short form.
async fn owner_of(http: &reqwest::Client, server: &str, id: EndpointId) -> String {
    let named = async {
        let url = base(server)?.join(&format!("api/p2p/endpoints/{id}"))?;
        let v: serde_json::Value = http.get(url).send().await?.error_for_status()?.json().await?;
        v["user"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no user"))
    };
    named.await.unwrap_or_else(|_: anyhow::Error| format!("peer {}", id.fmt_short()))
}

async fn peer_of(http: &reqwest::Client, server: &str, user: &str) -> anyhow::Result<Option<EndpointId>> {
    let resp = http.get(base(server)?.join(&format!("api/p2p/peers/{user}"))?).send().await?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let v: serde_json::Value = resp.error_for_status()?.json().await?;
    let id = v["endpoint_id"].as_str().ok_or_else(|| anyhow!("no endpoint id"))?;
    Ok(Some(id.parse().map_err(|_| anyhow!("a bad endpoint id from the server"))?))
}

/// What `ferry send` hands to a peer.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// A file.
    File(&'a Path),
    /// A short text message.
    Text(&'a str),
}

/// How a direct send ended.
#[derive(Debug)]
pub enum DirectResult {
    /// The recipient is not online for direct transfers (or the server has no relay).
    Offline,
    /// Delivered and verified by the recipient's client.
    Sent(DirectSent),
    /// The recipient's client refused it (its user said no).
    Declined,
    /// The recipient went offline during the transfer. Its client holds the file's first
    /// `confirmed` bytes (synced), the file being `size` bytes with SHA-256 `sha256`.
    Gone {
        /// Bytes from the start the recipient's disk holds.
        confirmed: u64,
        /// Bytes of chunks sent directly in all (what went beyond `confirmed` is lost).
        written: u64,
        /// The file's size.
        size: u64,
        /// The file's SHA-256.
        sha256: [u8; 32],
    },
}

/// A finished direct send.
#[derive(Debug)]
pub struct DirectSent {
    /// The path the bytes took at the end.
    pub via: &'static str,
    /// Every path used, in order (`relay`, `direct`), one entry per change.
    pub paths: Vec<&'static str>,
    /// When each of `paths` began, milliseconds after the first connection.
    pub path_changes_ms: Vec<u64>,
    /// Bytes QUIC declared lost and sent again (packets on a path that died, congestion).
    pub quic_lost: u64,
    /// File size (text: its length).
    pub size: u64,
    /// Chunks the recipient held already when the first attempt began (a resumed transfer).
    pub skipped: u64,
    /// Bytes of chunks sent more than once (after a reconnect or a bad chunk).
    pub resent: u64,
    /// Connections it took.
    pub attempts: u32,
    /// How long after connecting a direct path was in use (`None`: relayed at the start).
    pub direct_after: Option<Duration>,
}

fn path_name(kind: PathKind) -> &'static str {
    match kind {
        PathKind::Direct => "direct",
        _ => "relay",
    }
}

/// Sends `what` straight to `to`'s client, reconnecting as paths come and go. `quiet` shows
/// no progress (`--json`); `limit_rate` caps bytes per second.
pub async fn send_direct(
    http: &reqwest::Client,
    server: &str,
    to: &str,
    what: Outgoing<'_>,
    (quiet, limit_rate): (bool, Option<u64>),
    cancel: &CancellationToken,
) -> anyhow::Result<DirectResult> {
    let Some((relay, renew_every)) = relay_and_renewal(http, server).await? else { return Ok(DirectResult::Offline) };
    let Some(mut peer) = peer_of(http, server, to).await? else { return Ok(DirectResult::Offline) };
    let manifest = match what {
        Outgoing::File(f) => Some(transfer::manifest_of(f).await.with_context(|| format!("reading {}", f.display()))?),
        Outgoing::Text(_) => None,
    };
    let me = my_name(http, server).await?;
    let key = SecretKey::generate();
    let ep = endpoint::bind(&relay, Some(key.clone()), paths()).await?;
    register(http, server, &key, &me, false).await?;
    // Renewed while the transfer lasts: a reconnect must find the relay still admitting us.
    let renewal = {
        let (http, server, key, me) = (http.clone(), server.to_owned(), key.clone(), me.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(renew_every).await;
                let _ = register(&http, &server, &key, &me, false).await;
            }
        })
    };
    let label = match what {
        Outgoing::File(f) => format!("{} → {to}", f.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()),
        Outgoing::Text(_) => format!("message → {to}"),
    };
    let (view, progress) = crate::progress_ui::ProgressView::new(&label, quiet || manifest.is_none());
    let report = Report::default();
    let mut out = DirectSent {
        via: "relay",
        paths: Vec::new(),
        path_changes_ms: Vec::new(),
        quic_lost: 0,
        size: manifest.as_ref().map_or(0, |m| m.size),
        skipped: 0,
        resent: 0,
        attempts: 0,
        direct_after: None,
    };
    let mut trouble_since: Option<(Instant, u64)> = None;
    let mut retries_without_progress = 0u32;
    let began = Instant::now();
    let end = loop {
        if cancel.is_cancelled() {
            break Err(anyhow!("stopped; run the same command again to resume"));
        }
        out.attempts += 1;
        let attempt = async {
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, ep.connect(endpoint::peer_addr(peer, &relay), ALPN))
                .await
                .map_err(|_| P2pError::Stream(format!("{to}'s client did not answer")))?
                .map_err(|e| P2pError::Stream(e.to_string()))?;
            // Every connection starts relayed; hole punching usually finds a direct path
            // within tens of milliseconds: give it a moment, so the bulk goes direct.
            let waited = endpoint::wait_for_direct(&conn, DIRECT_GRACE).await;
            if out.attempts == 1 {
                out.direct_after = waited;
            }
            let watch = async {
                let mut last_probe = Instant::now();
                loop {
                    let now = path_name(endpoint::path_kind(&conn));
                    if out.paths.last() != Some(&now) {
                        out.paths.push(now);
                        out.path_changes_ms.push(began.elapsed().as_millis() as u64);
                        view.set_label(&format!("{label} [{now}]"));
                    }
                    // Relayed: keep asking for a direct path (the way back after a loss).
                    if now == "relay" && last_probe.elapsed() >= PROBE_EVERY && paths() != Paths::RelayOnly {
                        last_probe = Instant::now();
                        let (ep, addr) = (ep.clone(), endpoint::peer_addr(peer, &relay));
                        tokio::spawn(async move { endpoint::probe_direct(&ep, addr, Duration::from_secs(3)).await });
                    }
                    if let Some(p) = &progress {
                        p(ferry_client::Progress { done: report.sent.load(Ordering::Relaxed), total: Some(out.size) });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let work = async {
                match (what, &manifest) {
                    (Outgoing::File(f), Some(m)) => {
                        let name = f
                            .file_name()
                            .and_then(|n| n.to_str())
                            .ok_or_else(|| P2pError::Io(format!("{} has no usable name", f.display())))?;
                        transfer::send_with(&conn, f, name, m, &report, limit_rate, &|_, d| d).await.map(Some)
                    }
                    (Outgoing::Text(t), _) => transfer::send_text(&conn, t).await.map(|()| None),
                    (Outgoing::File(_), None) => Err(P2pError::Io("no manifest".into())),
                }
            };
            let r = tokio::select! {
                r = work => r,
                () = watch => Err(P2pError::Stream("unreachable".into())),
                () = cancel.cancelled() => Err(P2pError::Stream("stopped".into())),
            };
            out.via = path_name(endpoint::path_kind(&conn));
            out.quic_lost += conn.stats().lost_bytes;
            conn.close(u32::from(r.is_err()).into(), if r.is_ok() { b"done" } else { b"broken" });
            r
        };
        match attempt.await {
            Ok(sent) => {
                if let Some(s) = sent {
                    out.skipped = s.skipped;
                }
                break Ok(None);
            }
            Err(P2pError::Stream(e) | P2pError::Endpoint(e)) => {
                if cancel.is_cancelled() {
                    break Err(anyhow!("stopped; run the same command again to resume"));
                }
                // A cut connection: resume with the recipient's client while it is there
                // (and gets somewhere), else leave the rest to the server's store.
                // Each stretch without progress is announced once and retried with a
                // growing pause (0.5 s doubling to 4 s), not in a tight loop.
                let confirmed = report.confirmed.load(Ordering::Relaxed);
                let fresh = match trouble_since {
                    Some((_, at)) if at >= confirmed => false,
                    _ => {
                        trouble_since = Some((Instant::now(), confirmed));
                        retries_without_progress = 0;
                        true
                    }
                };
                let since = trouble_since.map_or_else(Instant::now, |(t, _)| t);
                match peer_of(http, server, to).await {
                    Ok(Some(id)) if since.elapsed() < GIVE_UP_AFTER => {
                        if !quiet && fresh {
                            eprintln!("ferry: the connection to {to} broke ({e}); resuming");
                        }
                        peer = id;
                        let pause = Duration::from_millis(500) * (1 << retries_without_progress.min(3));
                        retries_without_progress += 1;
                        tokio::time::sleep(pause).await;
                    }
                    _ => match &manifest {
                        Some(m) => {
                            let written = report.written.load(Ordering::Relaxed);
                            break Ok(Some(DirectResult::Gone { confirmed, written, size: m.size, sha256: m.sha256 }));
                        }
                        None => break Err(anyhow!("{to} went offline before the message arrived ({e})")),
                    },
                }
            }
            Err(P2pError::Declined) => break Ok(Some(DirectResult::Declined)),
            Err(e) => break Err(anyhow!(e)),
        }
    };
    view.finish();
    renewal.abort();
    ep.close().await;
    let _ = unregister(http, server, key.public()).await;
    if let Some(m) = &manifest {
        out.resent = report.resent(m.size);
    }
    Ok(end?.unwrap_or(DirectResult::Sent(out)))
}

/// Receives direct transfers into `dir` until `cancel`: binds an endpoint, keeps it
/// registered, and takes every incoming file (resuming earlier attempts of the same file).
pub async fn receive_into(
    http: reqwest::Client,
    server: String,
    dir: PathBuf,
    (json, ask): (bool, bool),
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let Some((relay, renew_every)) = relay_and_renewal(&http, &server).await? else { return Ok(()) };
    // The folder must be there before anyone is told we take files.
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let me = my_name(&http, &server).await?;
    let key = SecretKey::generate();
    let ep = endpoint::bind(&relay, Some(key.clone()), paths()).await?;
    register(&http, &server, &key, &me, true).await?;
    let renew = {
        let (http, server, key, me, cancel) = (http.clone(), server.clone(), key.clone(), me.clone(), cancel.clone());
        tokio::spawn(async move {
            while !cancel.is_cancelled() {
                tokio::time::sleep(renew_every).await;
                if let Err(e) = register(&http, &server, &key, &me, true).await {
                    eprintln!("ferry: could not renew the direct-transfer registration: {e}");
                }
            }
        })
    };
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let incoming = tokio::select! {
            () = cancel.cancelled() => break,
            i = ep.accept() => match i { Some(i) => i, None => break },
        };
        let (dir, http, server, stop) = (dir.clone(), http.clone(), server.clone(), cancel.clone());
        let task = tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => return eprintln!("ferry: an incoming connection failed: {e}"),
            };
            if conn.alpn() == ferry_p2p::PROBE_ALPN {
                return drop(conn.closed().await); // a sender looking for a direct path
            }
            let from = owner_of(&http, &server, conn.remote_id()).await;
            receive_one(&conn, &dir, &from, (json, ask), &stop).await;
        });
        running.push(task);
        running.retain(|t| !t.is_finished());
    }
    // Transfers in progress save what they hold and tell their senders before we go.
    for t in running {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    renew.abort();
    let _ = unregister(&http, &server, key.public()).await; // offline at once: senders turn to the store
    ep.close().await;
    Ok(())
}

/// Takes one file or message on `conn` from `from`, showing progress with the path in use.
async fn receive_one(
    conn: &ferry_p2p::Connection,
    dir: &Path,
    from: &str,
    (json, ask): (bool, bool),
    stop: &CancellationToken,
) {
    let view: std::sync::OnceLock<(crate::progress_ui::ProgressView, Option<ferry_client::ProgressFn>, String, u64)> =
        std::sync::OnceLock::new();
    let shown_path = std::sync::Mutex::new("");
    let accept = |name: &str, size: u64| {
        if ask && !ask_user(&format!("{from} offers {name} ({}) directly; accept? [y/N] ", HumanBytes(size))) {
            if json {
                println!("{}", serde_json::json!({ "declined": name, "from": from }));
            } else {
                eprintln!("declined {name} from {from}");
            }
            return false;
        }
        let label = format!("{name} ← {from}");
        let (v, p) = crate::progress_ui::ProgressView::new(&label, json);
        let _ = view.set((v, p, label, size));
        true
    };
    let progress = |held: u64| {
        let Some((v, p, label, size)) = view.get() else { return };
        let now = path_name(endpoint::path_kind(conn));
        if let Ok(mut shown) = shown_path.lock()
            && *shown != now
        {
            *shown = now;
            v.set_label(&format!("{label} [{now}]"));
        }
        if let Some(p) = p {
            p(ferry_client::Progress { done: held, total: Some(*size) });
        }
    };
    let show = |text: &str| {
        if json {
            println!("{}", serde_json::json!({ "message": text, "from": from }));
        } else {
            eprintln!("message from {from}: {text}");
        }
    };
    let r = transfer::receive(conn, dir, &accept, &progress, &show, stop).await;
    if let Some((v, ..)) = view.get() {
        v.finish();
    }
    let via = path_name(endpoint::path_kind(conn));
    match r {
        Ok(Incoming::File(r)) => {
            let sha = ferry_core::digest::to_hex(&r.sha256);
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "received": r.path, "from": from, "size": r.size, "sha256": sha, "via": via, "resumed_from": r.resumed_from })
                );
            } else {
                eprintln!(
                    "received {} ({}) from {from} {via}, verified sha256 {sha}",
                    r.path.display(),
                    HumanBytes(r.size)
                );
            }
        }
        Ok(Incoming::Text(_)) => {}
        Err(e) => eprintln!("ferry: a direct transfer from {from} stopped ({e}); it resumes when sent again"),
    }
}

/// Asks on the terminal (one line of standard input; offers are asked one at a time).
fn ask_user(question: &str) -> bool {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    tokio::task::block_in_place(|| {
        let _turn = ONE_AT_A_TIME.lock();
        eprint!("{question}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
    })
}

/// Finishes a file whose first part arrived directly and whose rest waited on the server
/// (`item`, a continuation): downloads the rest next to it, puts the file together and
/// checks the whole SHA-256. The caller acknowledges the item.
pub async fn finish_continuation(
    downloader: &ferry_client::Downloader,
    url: &reqwest::Url,
    dir: &Path,
    name: &str,
    c: &ferry_client::Continues,
) -> anyhow::Result<(PathBuf, String)> {
    let sha =
        ferry_core::digest::parse_sha256_text(&c.sha256).ok_or_else(|| anyhow!("the item names a bad SHA-256"))?;
    let Some((held, expected)) = transfer::partial_of(dir, name) else {
        bail!(
            "{name} is the rest of a direct transfer whose first part is not in {}; ask the sender to send it again",
            dir.display()
        );
    };
    if expected != sha || held < c.offset {
        bail!(
            "the first part of {name} in {} does not match this rest; ask the sender to send it again",
            dir.display()
        );
    }
    let tail = dir.join(format!(".{name}.ferry-p2p.rest"));
    let got = downloader.download(url, &tail).await.with_context(|| format!("receiving the rest of {name} stopped"))?;
    let (dir, name, tail2) = (dir.to_owned(), name.to_owned(), tail.clone());
    let offset = c.offset;
    let done = tokio::task::spawn_blocking(move || transfer::complete_from_tail(&dir, &name, &tail2, offset, &sha))
        .await
        .map_err(|e| anyhow!(e))?;
    let _ = std::fs::remove_file(&tail);
    let done = done?;
    Ok((done.path, got.sha256))
}

/// Flags of `ferry doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Also try a direct path to this user's client (they must be watching their inbox)
    #[arg(long, value_name = "USER")]
    to: Option<String>,
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// `ferry doctor`: the NAT situation seen from this client, and optionally whether a
/// direct path to a user's client comes up.
pub async fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    let http = ferry_client::http_client(crate::transfer_cmd::token_for(&args.server).as_deref())?;
    let server = &args.server;
    let Some(relay) = relay_info(&http, server).await? else {
        bail!("{server} runs without peer-to-peer (--no-p2p): transfers go through its store only");
    };
    let me = my_name(&http, server).await?;
    let key = SecretKey::generate();
    let ep = endpoint::bind(&relay, Some(key.clone()), paths()).await?;
    register(&http, server, &key, &me, false).await?;
    let d = ferry_p2p::doctor::diagnose(&ep, Duration::from_secs(5), paths() == Paths::Any).await;
    let behind_nat = d.reflexive.map(|r| !d.local.iter().any(|l| l.ip() == r.ip()));
    let peer = match &args.to {
        None => None,
        Some(user) => Some(match peer_of(&http, server, user).await? {
            None => (user, Err(anyhow!("{user} is not online for direct transfers"))),
            Some(id) => {
                let r = ferry_p2p::doctor::direct_path_to(&ep, &relay, id, Duration::from_secs(5)).await;
                (user, r.map_err(|e| anyhow!("{user}'s client cannot be reached: {e}")))
            }
        }),
    };
    ep.close().await;
    let _ = unregister(&http, server, key.public()).await;
    let ms = |t: Duration| (t.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    if args.json {
        let peer_json = peer.as_ref().map(|(user, r)| match r {
            Ok((direct, rtt)) => serde_json::json!({
                "user": user, "reachable": true, "direct": direct.is_some(),
                "direct_after_ms": direct.map(ms), "rtt_ms": rtt.map(ms),
            }),
            Err(e) => serde_json::json!({ "user": user, "reachable": false, "error": format!("{e:#}") }),
        });
        println!(
            "{}",
            serde_json::json!({
                "server": server, "relay": relay.url.to_string(), "quic_port": relay.quic_port,
                "local": d.local.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "udp": d.udp, "reflexive": d.reflexive.map(|a| a.to_string()), "behind_nat": behind_nat,
                "symmetric_nat": d.symmetric, "port_mapping": d.port_mapping,
                "relay_latency_ms": d.relay_latency.map(ms), "peer": peer_json,
            })
        );
        return Ok(());
    }
    let local: Vec<String> = d.local.iter().map(ToString::to_string).collect();
    println!("server          {server} (relay {}, address discovery on UDP {})", relay.url, relay.quic_port);
    println!("local           {}", local.join(", "));
    println!("UDP             {}", if d.udp { "works" } else { "blocked: peers reach you through the relay only" });
    match (d.reflexive, behind_nat) {
        (Some(r), Some(true)) => println!("public address  {r} (as the relay sees it: you are behind a NAT)"),
        (Some(r), _) => println!("public address  {r} (no NAT between you and the relay)"),
        (None, _) => println!("public address  unknown (no UDP answer from the relay)"),
    }
    if let Some(sym) = d.symmetric {
        let kind = if sym { "symmetric (a new port per destination)" } else { "endpoint-independent mapping" };
        println!("NAT mapping     {kind}");
    }
    if d.port_mapping.is_empty() {
        println!("port mapping    none offered by the router (UPnP, PCP, NAT-PMP all silent)");
    } else {
        println!("port mapping    {} (direct paths open even behind a strict NAT)", d.port_mapping.join(", "));
    }
    match d.relay_latency {
        Some(t) => println!("relay latency   {} ms", ms(t)),
        None => println!("relay latency   unknown (the relay did not answer its probes)"),
    }
    if let Some((user, r)) = peer {
        match r {
            Ok((Some(after), rtt)) => println!(
                "direct to {user:<5} yes, after {} ms{}",
                ms(after),
                rtt.map(|t| format!(" (round trip {} ms)", ms(t))).unwrap_or_default()
            ),
            Ok((None, _)) => println!("direct to {user:<5} no: transfers go through the relay"),
            Err(e) => println!("direct to {user:<5} {e:#}"),
        }
    }
    Ok(())
}
