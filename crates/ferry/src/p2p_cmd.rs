//! Direct transfers from the command line: `ferry send --via auto|direct|server` and the
//! receiving side of `ferry inbox --watch --receive-into DIR`.
//!
//! Both sides bind an iroh endpoint that knows only the server's embedded relay (its port
//! and certificate come from `GET /api/p2p`; its host is the server's), and the receiver
//! registers its endpoint with every heartbeat. A sender finds the recipient's endpoint with
//! `GET /api/p2p/peers/NAME`; iroh then connects directly when it can, else through the
//! relay. `FERRY_P2P_PATHS=relay|loopback` restricts the paths (labs and tests).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use ferry_p2p::endpoint::{self, PathKind, Paths};
use ferry_p2p::{ALPN, EndpointId, RelayInfo, SecretKey};
use tokio_util::sync::CancellationToken;

/// How often a receiver renews its registration (the server forgets it after three misses
/// of its heartbeat, 10 s by default).
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long a sender waits for a direct path before it starts over the relay.
const DIRECT_GRACE: Duration = Duration::from_millis(1500);
/// How long a sender waits for a connection to the recipient.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    Ok(Some(RelayInfo { url, quic_port, cert_der }))
}

async fn my_name(http: &reqwest::Client, server: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = http.get(base(server)?.join("api/me")?).send().await?.error_for_status()?.json().await?;
    v["user"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("log in first (ferry login)"))
}

async fn register(http: &reqwest::Client, server: &str, key: &SecretKey, user: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "endpoint_id": key.public().to_string(),
        "signature": ferry_p2p::registry::sign_registration(key, user),
    });
    let resp = http.post(base(server)?.join("api/p2p/endpoint")?).json(&body).send().await?;
    if !resp.status().is_success() {
        bail!("the server refused the endpoint: {}", resp.text().await.unwrap_or_default().trim());
    }
    Ok(())
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

/// How a direct send ended.
#[derive(Debug)]
pub struct DirectSent {
    /// The path the bytes took at the end.
    pub via: &'static str,
    /// File size.
    pub size: u64,
    /// Chunks the recipient held already (a resumed transfer).
    pub skipped: u64,
    /// How long after connecting a direct path was in use (`None`: relayed at the start).
    pub direct_after: Option<Duration>,
}

/// Sends `file` straight to `to`'s client. `Ok(None)` when `to` is not online for direct
/// transfers (or the server has no relay).
pub async fn send_direct(
    http: &reqwest::Client,
    server: &str,
    to: &str,
    file: &Path,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<DirectSent>> {
    let Some(relay) = relay_info(http, server).await? else { return Ok(None) };
    let Some(peer) = peer_of(http, server, to).await? else { return Ok(None) };
    let me = my_name(http, server).await?;
    let key = SecretKey::generate();
    let ep = endpoint::bind(&relay, Some(key.clone()), paths()).await?;
    register(http, server, &key, &me).await?; // the relay admits registered endpoints only
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, ep.connect(endpoint::peer_addr(peer, &relay), ALPN))
        .await
        .map_err(|_| anyhow!("{to}'s client did not answer within {} s", CONNECT_TIMEOUT.as_secs()))?
        .with_context(|| format!("cannot connect to {to}'s client"))?;
    // Every connection starts relayed; hole punching usually finds a direct path within
    // tens of milliseconds: give it a moment, so the bulk goes direct from the start.
    let direct_after = endpoint::wait_for_direct(&conn, DIRECT_GRACE).await;
    let name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow!("the file has no usable name"))?;
    let size = std::fs::metadata(file)?.len();
    let sent = tokio::select! {
        () = cancel.cancelled() => bail!("stopped; run the same command again to resume"),
        r = ferry_p2p::transfer::send(&conn, file, name, &|_| {}) => r?,
    };
    let via = match endpoint::path_kind(&conn) {
        PathKind::Direct => "direct",
        _ => "relay",
    };
    conn.close(0u32.into(), b"done");
    ep.close().await;
    Ok(Some(DirectSent { via, size, skipped: sent.skipped, direct_after }))
}

/// Receives direct transfers into `dir` until `cancel`: binds an endpoint, keeps it
/// registered, and takes every incoming file (resuming earlier attempts of the same file).
pub async fn receive_into(
    http: reqwest::Client,
    server: String,
    dir: PathBuf,
    json: bool,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let Some(relay) = relay_info(&http, &server).await? else { return Ok(()) };
    let me = my_name(&http, &server).await?;
    let key = SecretKey::generate();
    let ep = endpoint::bind(&relay, Some(key.clone()), paths()).await?;
    register(&http, &server, &key, &me).await?;
    let renew = {
        let (http, server, key, me, cancel) = (http.clone(), server.clone(), key.clone(), me.clone(), cancel.clone());
        tokio::spawn(async move {
            while !cancel.is_cancelled() {
                tokio::time::sleep(RENEW_EVERY).await;
                if let Err(e) = register(&http, &server, &key, &me).await {
                    eprintln!("ferry: could not renew the direct-transfer registration: {e}");
                }
            }
        })
    };
    loop {
        let incoming = tokio::select! {
            () = cancel.cancelled() => break,
            i = ep.accept() => match i { Some(i) => i, None => break },
        };
        let dir = dir.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => return eprintln!("ferry: an incoming connection failed: {e}"),
            };
            let from = conn.remote_id().fmt_short().to_string();
            match ferry_p2p::transfer::receive(&conn, &dir, &|_, _| true, &|_| {}).await {
                Ok(r) => {
                    let via = if endpoint::path_kind(&conn) == PathKind::Direct { "direct" } else { "relay" };
                    let sha: String = r.sha256.iter().map(|b| format!("{b:02x}")).collect();
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "received": r.path, "size": r.size, "sha256": sha, "via": via, "resumed_from": r.resumed_from })
                        );
                    } else {
                        eprintln!("received {} ({} bytes, {via}) from peer {from}", r.path.display(), r.size);
                    }
                }
                Err(e) => {
                    eprintln!("ferry: a direct transfer from peer {from} stopped ({e}); it resumes when sent again")
                }
            }
        });
    }
    renew.abort();
    ep.close().await;
    Ok(())
}
