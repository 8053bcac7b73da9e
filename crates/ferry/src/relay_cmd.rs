//! The offline-file relay from the command line: `ferry send`, `inbox`, `receive`,
//! `decline`, `outbox`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ferry_client::{ClientError, Downloader, RelayClient, RelayItem, UploadOptions, Uploader, http_client};
use indicatif::HumanBytes;
use tokio_util::sync::CancellationToken;

use crate::progress_ui::ProgressView;
use crate::transfer_cmd::{ctrl_c_token as ctrl_c, token_for};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Flags of `ferry send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipients, comma-separated (they need not be online)
    #[arg(long, required = true, value_delimiter = ',')]
    to: Vec<String>,
    /// Files to send
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Server URL
    #[arg(long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Print one JSON object per file
    #[arg(long)]
    json: bool,
    /// How: `direct` straight to the recipient's client (peer to peer, through the server's
    /// relay when no direct path exists), `server` stored on the server until they fetch
    /// it, `auto` direct when they are online, else stored
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    via: Via,
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
    #[arg(long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Keep running and show new items the moment they arrive
    #[arg(long)]
    watch: bool,
    /// With --watch: receive every new item into this folder as it arrives
    #[arg(long, value_name = "DIR", requires = "watch")]
    receive_into: Option<PathBuf>,
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
    #[arg(long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
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
    #[arg(long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
}

/// Flags of `ferry outbox`.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// Server URL
    #[arg(long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
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

/// Uploads each file into the relay for the recipients.
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
    for file in &args.files {
        if args.via != Via::Server && args.to.len() == 1 {
            match crate::p2p_cmd::send_direct(&http, &args.server, &to, file, &cancel).await {
                Ok(Some(d)) => {
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "file": file, "to": to, "via": d.via, "size": d.size, "resumed_chunks": d.skipped,
                                "direct_after_ms": d.direct_after.map(|t| t.as_millis() as u64),
                            })
                        );
                    } else {
                        eprintln!(
                            "sent {} ({}) to {to} {} (verified by their client)",
                            file.display(),
                            HumanBytes(d.size),
                            d.via
                        );
                    }
                    continue;
                }
                Ok(None) if args.via == Via::Direct => bail!("{to} is not online for direct transfers"),
                Ok(None) => {}
                Err(e) if args.via == Via::Direct => {
                    return Err(e.context(format!("sending {} directly stopped", file.display())));
                }
                Err(e) => eprintln!("ferry: direct transfer to {to} failed ({e:#}); sending through the server"),
            }
        }
        let label = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (view, progress) = ProgressView::new(&label, args.json);
        let options = UploadOptions { relay_to: Some(to.clone()), ..UploadOptions::default() };
        let mut up = Uploader::new(http.clone(), &args.server)?.with_cancel(cancel.clone()).with_options(options);
        if let Some(p) = progress {
            up = up.with_progress(p);
        }
        let r = up.upload(file, None).await;
        view.finish();
        let o = r.with_context(|| format!("sending {} stopped", file.display()))?;
        let id = o.url.rsplit('/').next().unwrap_or("").to_owned();
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "file": o.path, "id": id, "to": to, "size": o.size, "sha256": o.sha256 })
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

fn show_item(i: &RelayItem, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "id": i.id, "from": i.from, "name": i.name, "size": i.size, "sha256": i.sha256, "state": i.state })
        );
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
        for i in client.inbox().await? {
            show_item(&i, args.json);
        }
        return Ok(());
    }
    let cancel = ctrl_c();
    // Direct transfers arrive alongside (when the server offers them and there is a folder).
    let _direct = args.receive_into.clone().map(|dir| {
        let (http, server, json, cancel) = (client_http(&args.server), args.server.clone(), args.json, cancel.clone());
        tokio::spawn(async move {
            let Ok(http) = http else { return };
            if let Err(e) = crate::p2p_cmd::receive_into(http, server, dir, json, cancel).await {
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
                show_item(&i, args.json);
                if let Some(dir) = &args.receive_into {
                    receive_one(&client, &args.server, &i, dir, args.json, (None, false), &cancel).await?;
                }
            }
        }
        // Watch until an item arrives (the listing at the top of the loop then shows it).
        let watch = client.watch(|ev| ev.kind != "item");
        let r = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
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
    let name =
        std::path::Path::new(&item.name).file_name().map(|n| n.to_owned()).unwrap_or_else(|| item.id.clone().into());
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join(name);
    let (view, progress) = ProgressView::new(&item.name, json);
    let mut d = Downloader::new(http_client(token_for(server).as_deref())?).with_cancel(cancel.clone());
    if let Some(rate) = limit_rate {
        d = d.with_limit_rate(rate);
    }
    d = d.with_force(force);
    if let Some(p) = progress {
        d = d.with_progress(p);
    }
    let r = d.download(&client.content_url(&item.id)?, &out).await;
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
        args.ids
            .iter()
            .map(|id| {
                waiting.iter().find(|i| &i.id == id).ok_or_else(|| {
                    anyhow::anyhow!(ClientError::Rejected { status: 404, reason: format!("no waiting item {id}") })
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let cancel = ctrl_c();
    for item in chosen {
        receive_one(&client, &args.server, item, &args.output, args.json, (args.limit_rate, args.force), &cancel)
            .await?;
    }
    Ok(())
}

/// Declines items.
pub async fn decline(args: DeclineArgs) -> anyhow::Result<()> {
    let client = relay(&args.server)?;
    for id in &args.ids {
        client.decline(id).await.with_context(|| format!("declining {id}"))?;
        eprintln!("declined {id}");
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
