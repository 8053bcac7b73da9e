//! The offline-file relay from the command line: `ferry send`, `inbox`, `receive`,
//! `decline`, `outbox`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ferry_client::{ClientError, Downloader, RelayClient, RelayItem, UploadOptions, Uploader, http_client};
use indicatif::HumanBytes;
use tokio_util::sync::CancellationToken;

use crate::p2p_cmd::{DirectResult, Outgoing};
use crate::progress_ui::ProgressView;
use crate::transfer_cmd::{ctrl_c_token as ctrl_c, token_for};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Flags of `ferry send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipients, comma-separated (they need not be online)
    #[arg(long, required = true, value_delimiter = ',')]
    to: Vec<String>,
    /// Files and folders to send (a folder goes whole, through the server: `DIR` arrives
    /// as the folder DIR, `DIR/` as its contents; empty folders are kept, links skipped)
    #[arg(required_unless_present = "text")]
    files: Vec<PathBuf>,
    /// Send a short text message instead (at most 64 KiB); the command returns once the
    /// recipient's client acknowledged it (direct) or the server holds it for them
    #[arg(long, conflicts_with = "files")]
    text: Option<String>,
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Print one JSON object per file
    #[arg(long)]
    json: bool,
    /// How: `direct` straight to the recipient's client (peer to peer, through the server's
    /// relay when no direct path exists), `server` stored on the server until they fetch
    /// it, `auto` direct when they are online, else stored
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    via: Via,
    /// Cap the rate, e.g. 10M (bytes per second), on whichever path
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_size)]
    limit_rate: Option<u64>,
    /// Upload even when the server already holds the content (by default a file you
    /// uploaded before is sent without its bytes, after a proof that you have it; that
    /// costs one read of the file to hash it)
    #[arg(long)]
    no_dedup: bool,
    /// Files of a folder sent at once
    #[arg(short = 'j', long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

/// The path `ferry send` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Direct when the recipient is online, else through the server's store.
    Auto,
    /// Only peer to peer (fails when the recipient is not online).
    Direct,
    /// Only through the server's store.
    Server,
}

/// Flags of `ferry inbox`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Keep running and show new items the moment they arrive
    #[arg(long)]
    watch: bool,
    /// With --watch: receive every new item into this folder as it arrives
    #[arg(long, value_name = "DIR", requires = "watch")]
    receive_into: Option<PathBuf>,
    /// With --receive-into: ask before taking each direct transfer (a line on standard
    /// input: y to accept, anything else declines)
    #[arg(long, requires = "receive_into")]
    ask: bool,
    /// Print JSON (one object per line with --watch)
    #[arg(long)]
    json: bool,
    /// With --watch: how long the event stream may stay silent before reconnecting
    /// [default: three of the server's heartbeats]
    #[arg(long, value_parser = crate::units::parse_duration, requires = "watch")]
    silence_limit: Option<std::time::Duration>,
}

/// Flags of `ferry receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Item ids to receive (see `ferry inbox`)
    ids: Vec<String>,
    /// Receive every waiting item
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// Folder to receive into
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Print one JSON object per item
    #[arg(long)]
    json: bool,
    /// Cap the download rate, e.g. 10M (bytes per second)
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_size)]
    limit_rate: Option<u64>,
    /// Replace a file of the same name in the folder when its content differs
    #[arg(long)]
    force: bool,
}

/// Flags of `ferry decline`.
#[derive(Debug, Args)]
pub struct DeclineArgs {
    /// Item ids to decline
    #[arg(required = true)]
    ids: Vec<String>,
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
}

/// Flags of `ferry outbox`.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

fn client_http(server: &str) -> anyhow::Result<reqwest::Client> {
    Ok(http_client(token_for(server).as_deref())?)
}

fn relay(server: &str) -> anyhow::Result<RelayClient> {
    Ok(RelayClient::new(http_client(token_for(server).as_deref())?, server)?)
}

/// Sends each file (or the text) to the recipients: straight to the recipient's client when
/// it is online (`--via auto|direct`), else through the server's store.
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let to = args.to.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(",");
    if to.is_empty() {
        bail!("--to names no recipient");
    }
    let http = http_client(token_for(&args.server).as_deref())?;
    let cancel = ctrl_c();
    if args.via == Via::Direct && args.to.len() != 1 {
        bail!("--via direct sends to one recipient at a time");
    }
    if let Some(text) = &args.text {
        if text.len() as u64 > MAX_TEXT {
            bail!(
                "a message is at most {} (this one is {}); send a file instead",
                HumanBytes(MAX_TEXT),
                HumanBytes(text.len() as u64)
            );
        }
        return send_text(&args, &http, &to, text, &cancel).await;
    }
    for file in &args.files {
        if file.is_dir() {
            if args.via == Via::Direct {
                return Err(ClientError::Rejected {
                    status: 0,
                    reason: format!(
                        "{} is a folder: folders go through the server (drop --via direct)",
                        file.display()
                    ),
                }
                .into());
            }
            send_folder(&args, &http, &to, file, &cancel).await?;
            continue;
        }
        let mut rest = None;
        let mut lost = 0u64;
        if args.via != Via::Server && args.to.len() == 1 {
            match crate::p2p_cmd::send_direct(
                &http,
                &args.server,
                &to,
                Outgoing::File(file),
                (args.json, args.limit_rate),
                &cancel,
            )
            .await
            {
                Ok(DirectResult::Sent(d)) => {
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "file": file, "to": to, "via": d.via, "paths": d.paths, "path_changes_ms": d.path_changes_ms, "size": d.size,
                                "quic_lost_bytes": d.quic_lost,
                                "resumed_chunks": d.skipped, "resent_bytes": d.resent, "connections": d.attempts,
                                "direct_after_ms": d.direct_after.map(|t| t.as_millis() as u64),
                            })
                        );
                    } else {
                        eprintln!(
                            "sent {} ({}) to {to} {} (verified by their client)",
                            file.display(),
                            HumanBytes(d.size),
                            d.paths.join(" → ")
                        );
                    }
                    continue;
                }
                Ok(DirectResult::Declined) => bail!("{to} declined {}", file.display()),
                Ok(DirectResult::Offline) if args.via == Via::Direct => {
                    bail!("{to} is not online for direct transfers")
                }
                Ok(DirectResult::Offline) => {}
                Ok(DirectResult::Gone { confirmed, size, .. }) if args.via == Via::Direct => bail!(
                    "{to} went offline after {} of {} arrived; run the same command again to resume",
                    HumanBytes(confirmed),
                    HumanBytes(size)
                ),
                Ok(DirectResult::Gone { confirmed, written, size, sha256 }) => {
                    lost = written.saturating_sub(confirmed);
                    if !args.json {
                        eprintln!(
                            "ferry: {to} went offline after {} of {} arrived; the rest goes through the server",
                            HumanBytes(confirmed),
                            HumanBytes(size)
                        );
                    }
                    if confirmed > 0 {
                        rest = Some((confirmed, size, sha256));
                    }
                }
                Err(e) if args.via == Via::Direct => {
                    return Err(e.context(format!("sending {} directly stopped", file.display())));
                }
                Err(e) => eprintln!("ferry: direct transfer to {to} failed ({e:#}); sending through the server"),
            }
        }
        let (source, metadata, offset) = match &rest {
            Some((offset, size, sha256)) => {
                let c = ferry_store::Continuation { offset: *offset, size: *size, sha256: *sha256 };
                let hex = ferry_core::digest::to_hex(sha256);
                (rest_file(file, *offset, &hex)?, vec![("relay_continues", c.encode())], *offset)
            }
            None => (file.clone(), Vec::new(), 0),
        };
        let o = upload_for(&args, &http, &to, &source, metadata, &cancel).await?;
        if offset > 0 {
            let _ = std::fs::remove_dir_all(source.parent().unwrap_or(&source));
        }
        let id = o.url.rsplit('/').next().unwrap_or("").to_owned();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "file": file, "id": id, "to": to, "size": offset + o.size, "sha256": o.sha256,
                    "via": if offset > 0 { "direct+server" } else { "server" }, "direct_bytes": offset, "server_bytes": o.size,
                    "resent_bytes": lost + o.sent.saturating_sub(o.size.saturating_sub(o.resumed_from)),
                    "sent": o.sent, "deduplicated": o.deduplicated,
                })
            );
        } else if offset > 0 {
            eprintln!(
                "sent the rest of {} ({} from byte {offset}) to {to} as item {id}; their client finishes the file when they come online",
                file.display(),
                HumanBytes(o.size)
            );
        } else if o.deduplicated {
            eprintln!(
                "sent {} ({}) to {to} as item {id} without uploading it (the server had its content); they get it when they come online",
                file.display(),
                HumanBytes(o.size)
            );
        } else {
            eprintln!(
                "sent {} ({}) to {to} as item {id}; they get it when they come online",
                file.display(),
                HumanBytes(o.size)
            );
        }
    }
    Ok(())
}

/// A copy of `file` from `offset` on, under the client's state folder with the file's name
/// (the upload names the item after it); kept between runs so a second run resumes.
fn rest_file(file: &std::path::Path, offset: u64, sha_hex: &str) -> anyhow::Result<PathBuf> {
    use std::io::{Seek, SeekFrom};
    let name = file.file_name().ok_or_else(|| anyhow::anyhow!("{} has no file name", file.display()))?;
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    let stamp = format!("{}-{offset}", &sha_hex[..16.min(sha_hex.len())]);
    let dir = ferry_client::StateDir::default_location().path().join("p2p-rest").join(stamp);
    let out = dir.join(name);
    if std::fs::metadata(&out).is_ok_and(|m| m.len() == size - offset) {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(".partial");
    let mut src = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    src.seek(SeekFrom::Start(offset))?;
    let mut dst = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::io::copy(&mut std::io::Read::take(src, size - offset), &mut dst)?; // copy_file_range
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// Sends the folder `dir` whole through the server; a re-run skips what an earlier run
/// sent to the same recipients (same path, size and SHA-256, still in the outbox).
async fn send_folder(
    args: &SendArgs,
    http: &reqwest::Client,
    to: &str,
    dir: &std::path::Path,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let recipients: Vec<&str> = to.split(',').collect();
    let mut sent = std::collections::HashMap::new();
    for i in relay(&args.server)?.outbox().await? {
        if recipients.iter().all(|r| i.recipients.iter().any(|x| x.user == *r)) {
            sent.insert(i.name, (i.size, i.sha256));
        }
    }
    let (http, server, to) = (http.clone(), args.server.clone(), to.to_owned());
    let options = UploadOptions {
        relay_to: Some(to.clone()),
        limit_rate: args.limit_rate,
        dedup: !args.no_dedup,
        ..UploadOptions::default()
    };
    let cancel = cancel.clone();
    let make = std::sync::Arc::new(move |relay_metadata| {
        let options = UploadOptions { relay_metadata, ..options.clone() };
        Ok(Uploader::new(http.clone(), &server)?.with_cancel(cancel.clone()).with_options(options))
    });
    crate::folder_cmd::send_folder(dir, &to, sent, args.jobs.into(), args.json, make).await
}

/// Uploads `source` into the relay for `to`, with a progress bar saying so.
async fn upload_for(
    args: &SendArgs,
    http: &reqwest::Client,
    to: &str,
    source: &std::path::Path,
    relay_metadata: Vec<(&'static str, String)>,
    cancel: &CancellationToken,
) -> anyhow::Result<ferry_client::UploadOutcome> {
    let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (view, progress) = ProgressView::new(&format!("{name} → {to} [server]"), args.json);
    let options = UploadOptions {
        relay_to: Some(to.to_owned()),
        relay_metadata,
        limit_rate: args.limit_rate,
        dedup: !args.no_dedup,
        ..UploadOptions::default()
    };
    let mut up = Uploader::new(http.clone(), &args.server)?.with_cancel(cancel.clone()).with_options(options);
    if let Some(p) = progress {
        up = up.with_progress(p);
    }
    let r = up.upload(source, None).await;
    view.finish();
    r.with_context(|| format!("sending {} stopped", source.display()))
}

/// Longest text message, bytes of UTF-8 (the server's bound too).
const MAX_TEXT: u64 = 64 << 10;

/// `ferry send --text`: direct with an ACK from the recipient's client when it is online,
/// else held by the server (the outbox shows `delivered` once they read it).
async fn send_text(
    args: &SendArgs,
    http: &reqwest::Client,
    to: &str,
    text: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if args.via != Via::Server && args.to.len() == 1 {
        match crate::p2p_cmd::send_direct(http, &args.server, to, Outgoing::Text(text), (true, None), cancel).await {
            Ok(DirectResult::Sent(d)) => {
                if args.json {
                    println!("{}", serde_json::json!({ "to": to, "via": d.via, "acknowledged": true }));
                } else {
                    eprintln!("{to}'s client showed the message ({})", d.via);
                }
                return Ok(());
            }
            Ok(DirectResult::Declined) => bail!("{to} declined the message"),
            Ok(_) if args.via == Via::Direct => bail!("{to} is not online for direct messages"),
            Ok(_) => {}
            Err(e) if args.via == Via::Direct => return Err(e.context("the message was not delivered")),
            Err(e) => eprintln!("ferry: direct message to {to} failed ({e:#}); sending through the server"),
        }
    }
    let dir = ferry_client::StateDir::default_location().path().join("messages");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(format!("message-{}.txt", std::process::id()));
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    let r = upload_for(args, http, to, &file, vec![("relay_kind", "text".into())], cancel).await;
    let _ = std::fs::remove_file(&file);
    let o = r?;
    let id = o.url.rsplit('/').next().unwrap_or("").to_owned();
    if args.json {
        println!("{}", serde_json::json!({ "to": to, "via": "server", "id": id, "acknowledged": false }));
    } else {
        eprintln!("{to} is offline: the server holds the message (item {id}); `ferry outbox` shows when they read it");
    }
    Ok(())
}

/// Shows a text item and acknowledges it (read means delivered).
async fn read_message(client: &RelayClient, server: &str, i: &RelayItem, json: bool) -> anyhow::Result<()> {
    let http = http_client(token_for(server).as_deref())?;
    let resp = http.get(client.content_url(&i.id)?).send().await?.error_for_status()?;
    let bytes = resp.bytes().await?;
    if bytes.len() as u64 > MAX_TEXT {
        bail!("message {} is larger than a message may be", i.id);
    }
    let sha: String = {
        use sha2::Digest as _;
        ferry_core::digest::to_hex(&sha2::Sha256::digest(&bytes))
    };
    if sha != i.sha256 {
        bail!("message {} arrived damaged (SHA-256 {sha}, expected {})", i.id, i.sha256);
    }
    let text = String::from_utf8_lossy(&bytes);
    if json {
        println!("{}", serde_json::json!({ "id": i.id, "from": i.from, "message": text, "via": "server" }));
    } else {
        println!("{}  message from {}: {text}", i.id, i.from);
    }
    client.ack(&i.id, &sha).await.with_context(|| format!("acknowledging message {}", i.id))?;
    Ok(())
}

fn show_item(i: &RelayItem, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "id": i.id, "from": i.from, "name": i.name, "kind": i.kind, "size": i.size, "sha256": i.sha256, "state": i.state })
        );
    } else if i.kind == "folder" {
        println!("{}  {:<12} {:>10}  {}/", i.id, i.from, "-", i.name);
    } else {
        println!("{}  {:<12} {:>10}  {}", i.id, i.from, HumanBytes(i.size).to_string(), i.name);
    }
}

/// Lists waiting items, or watches for new ones.
pub async fn inbox(args: InboxArgs) -> anyhow::Result<()> {
    let mut client = relay(&args.server)?;
    if let Some(limit) = args.silence_limit {
        client = client.with_silence_limit(limit);
    }
    if !args.watch {
        let waiting = client.inbox().await?;
        if !args.json {
            if waiting.is_empty() {
                eprintln!("nothing waiting for you");
            } else {
                println!("{:<26}  {:<12} {:>10}  NAME", "ID", "FROM", "SIZE");
            }
        }
        for i in waiting {
            if i.kind == "text" {
                read_message(&client, &args.server, &i, args.json).await?;
            } else {
                show_item(&i, args.json);
            }
        }
        return Ok(());
    }
    let cancel = ctrl_c();
    // Direct transfers arrive alongside (when the server offers them and there is a folder).
    let ask = args.ask;
    let direct = args.receive_into.clone().map(|dir| {
        let (http, server, json, cancel) = (client_http(&args.server), args.server.clone(), args.json, cancel.clone());
        tokio::spawn(async move {
            let Ok(http) = http else { return };
            if let Err(e) = crate::p2p_cmd::receive_into(http, server, dir, (json, ask), cancel).await {
                eprintln!("ferry: direct transfers unavailable: {e:#}");
            }
        })
    });
    let mut seen: Vec<String> = Vec::new();
    loop {
        // What waited while we were away first, then whatever the event stream brings.
        for i in client.inbox().await? {
            if !seen.contains(&i.id) {
                seen.push(i.id.clone());
                if i.kind == "text" {
                    read_message(&client, &args.server, &i, args.json).await?;
                    continue;
                }
                show_item(&i, args.json);
                if let Some(dir) = &args.receive_into {
                    receive_one(&client, &args.server, &i, dir, args.json, (None, false), &cancel).await?;
                }
            }
        }
        // Watch until an item arrives (the listing at the top of the loop then shows it).
        let watch = client.watch(|ev| ev.kind != "item");
        let r = tokio::select! {
            () = cancel.cancelled() => {
                // Direct transfers in progress record what arrived and tell their senders.
                if let Some(d) = direct {
                    let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
                }
                return Ok(());
            }
            r = watch => r,
        };
        if let Err(e) = r {
            eprintln!("ferry: event stream lost ({e}); reconnecting");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

async fn receive_one(
    client: &RelayClient,
    server: &str,
    item: &RelayItem,
    dir: &std::path::Path,
    json: bool,
    (limit_rate, force): (Option<u64>, bool),
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = local_target(dir, &item.name, &item.id)?;
    if item.kind == "folder" {
        match std::fs::symlink_metadata(&out) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("cannot receive the folder {}: {} is a file", item.name, out.display()),
            Err(_) => std::fs::create_dir(&out).with_context(|| format!("cannot create {}", out.display()))?,
        }
        client.ack(&item.id, &item.sha256).await.with_context(|| format!("acknowledging {}", item.name))?;
        if json {
            println!("{}", serde_json::json!({ "id": item.id, "folder": out, "size": 0 }));
        } else {
            eprintln!("received the folder {}/ from {}", out.display(), item.from);
        }
        return Ok(());
    }
    let dir = out.parent().unwrap_or(dir);
    let (view, progress) = ProgressView::new(&format!("{} ← {} [server]", item.name, item.from), json);
    let mut d = Downloader::new(http_client(token_for(server).as_deref())?).with_cancel(cancel.clone());
    if let Some(rate) = limit_rate {
        d = d.with_limit_rate(rate);
    }
    d = d.with_force(force);
    if let Some(p) = progress {
        d = d.with_progress(p);
    }
    let url = client.content_url(&item.id)?;
    if let Some(c) = &item.continues {
        // The rest of a direct transfer: its first part is here already.
        let name = out.file_name().and_then(|n| n.to_str()).unwrap_or(&item.name).to_owned();
        let r = crate::p2p_cmd::finish_continuation(&d, &url, dir, &name, c).await;
        view.finish();
        let (path, rest_sha) = r?;
        if rest_sha != item.sha256 {
            bail!("the rest of {} arrived with SHA-256 {rest_sha}, expected {}", item.name, item.sha256);
        }
        client.ack(&item.id, &rest_sha).await.with_context(|| format!("acknowledging {}", item.name))?;
        if json {
            println!(
                "{}",
                serde_json::json!({ "id": item.id, "file": path, "size": c.size, "sha256": c.sha256, "resumed_from": c.offset, "fetched": item.size, "via": "direct+server" })
            );
        } else {
            eprintln!(
                "received {} from {} ({}; the first {} directly earlier) verified sha256 {}",
                path.display(),
                item.from,
                HumanBytes(c.size),
                HumanBytes(c.offset),
                c.sha256
            );
        }
        return Ok(());
    }
    let r = d.download(&url, &out).await;
    view.finish();
    let o = r.with_context(|| format!("receiving {} stopped", item.name))?;
    if o.sha256 != item.sha256 {
        return Err(ClientError::Verification(format!(
            "{} arrived with SHA-256 {}, expected {}",
            item.name, o.sha256, item.sha256
        ))
        .into());
    }
    client.ack(&item.id, &o.sha256).await.with_context(|| format!("acknowledging {}", item.name))?;
    // A direct transfer of the same file that broke off before any of it was confirmed
    // leaves its partial file here: the whole file came this way instead.
    if let Some(name) = o.path.file_name().and_then(|n| n.to_str())
        && let Some((_, sha)) = ferry_p2p::transfer::partial_of(dir, name)
        && ferry_core::digest::to_hex(&sha) == o.sha256
    {
        ferry_p2p::transfer::discard_partial(dir, name);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "id": item.id, "file": o.path, "size": o.size, "sha256": o.sha256, "resumed_from": o.resumed_from, "fetched": o.fetched })
        );
    } else {
        eprintln!(
            "received {} from {} ({}) verified sha256 {}",
            o.path.display(),
            item.from,
            HumanBytes(o.size),
            o.sha256
        );
    }
    Ok(())
}

/// Where item `name` goes in `dir`: its path (a file of a folder sent whole) confined to
/// `dir`, the folders on the way made. Never through a symbolic link, so a sender cannot
/// aim a file at wherever a link in the receiving folder points; a name that is no
/// confined path at all becomes the item's id.
fn local_target(dir: &std::path::Path, name: &str, id: &str) -> anyhow::Result<PathBuf> {
    let rel = ferry_core::TreePath::parse(name).ok().filter(|p| !p.is_root()).map(|p| p.to_string());
    let rel = rel.unwrap_or_else(|| id.to_owned());
    let parts: Vec<&str> = rel.split('/').collect();
    let mut at = dir.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!(
                    "not receiving {name}: {} is a symbolic link, and ferry does not write through links",
                    at.display()
                )
            }
            Ok(m) if !last && !m.is_dir() => bail!("cannot receive {name}: {} is a file, not a folder", at.display()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !last => {
                std::fs::create_dir(&at).with_context(|| format!("cannot create {}", at.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ClientError::local(&at, e).into()),
        }
    }
    Ok(at)
}

/// Downloads items (resumable, verified), then acknowledges each.
pub async fn receive(args: ReceiveArgs) -> anyhow::Result<()> {
    let client = relay(&args.server)?;
    let waiting = client.inbox().await?;
    let chosen: Vec<&RelayItem> = if args.all {
        waiting.iter().collect()
    } else {
        if args.ids.is_empty() {
            bail!("name the items to receive (see `ferry inbox`), or use --all");
        }
        args.ids.iter().map(|id| by_prefix(&waiting, id)).collect::<Result<_, _>>()?
    };
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let cancel = ctrl_c();
    for item in chosen {
        receive_one(&client, &args.server, item, &args.output, args.json, (args.limit_rate, args.force), &cancel)
            .await?;
    }
    Ok(())
}

fn by_prefix<'a>(waiting: &'a [RelayItem], prefix: &str) -> Result<&'a RelayItem, ClientError> {
    crate::session::by_prefix(waiting, prefix, |i| &i.id, ("waiting item", "waiting items"))
}

/// Declines items.
pub async fn decline(args: DeclineArgs) -> anyhow::Result<()> {
    let client = relay(&args.server)?;
    let waiting = client.inbox().await?;
    for id in &args.ids {
        let item = by_prefix(&waiting, id)?;
        client.decline(&item.id).await.with_context(|| format!("declining {}", item.id))?;
        eprintln!("declined {} ({} from {})", item.id, item.name, item.from);
    }
    Ok(())
}

/// Shows what was sent and where each copy stands.
pub async fn outbox(args: OutboxArgs) -> anyhow::Result<()> {
    let client = relay(&args.server)?;
    for i in client.outbox().await? {
        if args.json {
            let recipients: Vec<_> = i
                .recipients
                .iter()
                .map(
                    |r| serde_json::json!({ "user": r.user, "state": r.state, "updated": r.updated, "bytes": r.bytes }),
                )
                .collect();
            println!("{}", serde_json::json!({ "id": i.id, "name": i.name, "size": i.size, "recipients": recipients }));
        } else {
            let states: Vec<String> = i
                .recipients
                .iter()
                .map(|r| match r.state.as_str() {
                    "downloading" if i.size > 0 => format!("{}: downloading {}%", r.user, r.bytes * 100 / i.size),
                    _ => format!("{}: {}", r.user, r.state),
                })
                .collect();
            println!("{}  {:>10}  {}  [{}]", i.id, HumanBytes(i.size).to_string(), i.name, states.join(", "));
        }
    }
    Ok(())
}
