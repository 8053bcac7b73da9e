//! `ferry upload` and `ferry download`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ferry_client::{
    ChunkSize, ClientError, Credentials, Downloader, RetryPolicy, UploadOptions, Uploader, Url, http_client,
};
use ferry_core::ChecksumAlgorithm;
use indicatif::HumanBytes;
use tokio_util::sync::CancellationToken;

use crate::progress_ui::ProgressView;

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Flags of `ferry upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Files to upload
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Server URL
    #[arg(long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Folder in the server's tree to put the files in (default: the top)
    #[arg(long)]
    dir: Option<String>,
    /// Print one JSON object per file on stdout instead of progress and text
    #[arg(long)]
    json: bool,
    /// Retries without progress before giving up (a re-run still resumes)
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// Send each file as N partial uploads over N connections, joined on the server
    /// [default: adapt — one upload to a server under 5 ms away; to a farther one, parts of
    /// at least 1 MiB (at most --max-streams) sent by 4 streams, doubled while the rate
    /// keeps rising]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: Option<u16>,
    /// Most streams an adaptive transfer opens to the server
    #[arg(long, value_name = "N", env = "FERRY_MAX_STREAMS", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    max_streams: u16,
    /// Bytes per PATCH: "auto" (each PATCH ends after ~1.5 s, once it sent what the last
    /// one carried in that time at most 32 MiB shared by the parts, so a server crash or
    /// restart costs at most that much; smaller after failures), or a fixed size such as 8M
    #[arg(long, value_name = "auto|SIZE", default_value = "auto", value_parser = parse_chunk_size)]
    chunk_size: ChunkSize,
    /// Checksum sent with every PATCH: crc32c, sha1, sha256, md5 or none
    #[arg(long, default_value = "crc32c", value_parser = parse_checksum)]
    checksum: ChecksumArg,
    /// Cap the upload rate, e.g. 10M (bytes per second)
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_size)]
    limit_rate: Option<u64>,
    /// Replace a file of the same name in the tree when its content differs (an identical
    /// one is kept and nothing is sent)
    #[arg(long)]
    overwrite: bool,
    /// Hash first and let the server place its own copy if it has the same content
    /// (it asks for proof that this file is really here first)
    #[arg(long)]
    dedup: bool,
    /// Give up on a connection that makes no progress for this long, and retry
    #[arg(long, default_value = "60s", value_parser = crate::units::parse_duration)]
    stall_timeout: std::time::Duration,
}

fn parse_chunk_size(s: &str) -> Result<ChunkSize, String> {
    match s {
        "auto" => Ok(ChunkSize::Auto),
        other => crate::units::parse_size(other).and_then(|n| {
            if n == 0 { Err("the chunk size must be at least 1 byte".into()) } else { Ok(ChunkSize::Fixed(n)) }
        }),
    }
}

/// `--checksum`: an algorithm or none.
#[derive(Debug, Clone, Copy)]
struct ChecksumArg(Option<ChecksumAlgorithm>);

fn parse_checksum(s: &str) -> Result<ChecksumArg, String> {
    if s == "none" {
        return Ok(ChecksumArg(None));
    }
    ChecksumAlgorithm::parse(s)
        .map(|a| ChecksumArg(Some(a)))
        .ok_or_else(|| format!("{s:?} is not one of crc32c, sha1, sha256, md5, none"))
}

/// Flags of `ferry download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// A full URL, or a path in the server's tree (e.g. photos/big.iso)
    source: String,
    /// Where to write (default: the file's name, in the current folder; a folder means
    /// "into this folder")
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Server URL, used when SOURCE is a path
    #[arg(long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Print a JSON object on stdout instead of progress and text
    #[arg(long)]
    json: bool,
    /// Retries without progress before giving up (a re-run still resumes)
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// Fetch over N connections at once, splitting the remaining ranges as connections
    /// free up (works with any server that supports Range) [default: adapt — one
    /// connection to a server under 5 ms away; to a farther one, 4, doubled while the rate
    /// keeps rising, up to --max-streams]
    #[arg(short = 'j', long = "connections", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    connections: Option<u16>,
    /// Most connections an adaptive download opens to the server
    #[arg(long, value_name = "N", env = "FERRY_MAX_STREAMS", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    max_streams: u16,
    /// Replace OUT when it exists with content other than the server's file (an identical
    /// OUT is kept and nothing is fetched)
    #[arg(long)]
    force: bool,
    /// Cap the download rate, e.g. 10M (bytes per second)
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_size)]
    limit_rate: Option<u64>,
}

/// The token to send to `server`: `$FERRY_TOKEN`, else the one `ferry login` saved.
pub fn token_for(server: &str) -> Option<String> {
    if let Ok(t) = std::env::var("FERRY_TOKEN") {
        return Some(t);
    }
    Url::parse(server).ok().and_then(|u| Credentials::default_location().token_for(&u))
}

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, ..RetryPolicy::default() }
}

/// A token cancelled by Ctrl-C (SIGINT) or SIGTERM, so transfers pause cleanly and a
/// re-run resumes them.
pub fn ctrl_c_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            () = terminated => {}
        }
        t.cancel();
    });
    token
}

/// Uploads each file; stops at the first failure (the rest would fail the same way or can
/// be retried by running the command again, which skips nothing already done).
pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let cancel = ctrl_c_token();
    let http = http_client(token_for(&args.server).as_deref())?;
    for file in &args.files {
        let label =
            file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.display().to_string());
        let (view, progress) = ProgressView::new(&label, args.json);
        let options = UploadOptions {
            parallel: args.parallel.map(usize::from),
            max_parallel: usize::from(args.max_streams),
            chunk: args.chunk_size,
            checksum: args.checksum.0,
            limit_rate: args.limit_rate,
            stall_timeout: args.stall_timeout,
            dedup: args.dedup,
            relay_to: None,
            relay_metadata: Vec::new(),
            overwrite: args.overwrite,
        };
        let mut uploader = Uploader::new(http.clone(), &args.server)?
            .with_cancel(cancel.clone())
            .with_retry(retry(args.retries))
            .with_options(options);
        if let Some(p) = progress {
            uploader = uploader.with_progress(p);
        }
        let result = uploader.upload(file, args.dir.as_deref()).await;
        view.finish();
        let outcome = result.with_context(|| format!("upload of {} stopped", file.display()))?;
        if args.json {
            let v = serde_json::json!({
                "file": outcome.path, "url": outcome.url, "size": outcome.size,
                "resumed_from": outcome.resumed_from, "sent": outcome.sent, "parts": outcome.parts,
                "sha256": outcome.sha256, "verified": outcome.verified, "deduplicated": outcome.deduplicated,
            });
            println!("{v}");
        } else {
            let resumed = if outcome.resumed_from > 0 {
                format!(", resumed at {}", HumanBytes(outcome.resumed_from))
            } else {
                String::new()
            };
            let check = match (outcome.deduplicated, outcome.verified) {
                (true, _) => "already on the server, nothing sent; sha256",
                (false, true) => "verified sha256",
                (false, false) => "sha256",
            };
            eprintln!("uploaded {} ({}{resumed}) {check} {}", file.display(), HumanBytes(outcome.size), outcome.sha256);
        }
    }
    Ok(())
}

/// Resolves SOURCE to a URL and OUT to a file path.
fn resolve(args: &DownloadArgs) -> anyhow::Result<(Url, PathBuf)> {
    let url = if args.source.starts_with("http://") || args.source.starts_with("https://") {
        Url::parse(&args.source)
            .map_err(|e| ClientError::Rejected { status: 0, reason: format!("bad URL {:?}: {e}", args.source) })?
    } else {
        let mut url = Url::parse(&args.server).map_err(|e| ClientError::Rejected {
            status: 0,
            reason: format!("bad server URL {:?}: {e}", args.server),
        })?;
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| ClientError::Rejected { status: 0, reason: "server URL cannot have a path".into() })?;
            segs.pop_if_empty().push("files");
            for s in args.source.split('/').filter(|s| !s.is_empty()) {
                segs.push(s);
            }
        }
        url
    };
    let last: Option<String> = url.path_segments().and_then(|mut s| s.next_back()).map(percent_decode);
    let name = last
        .filter(|s| !s.is_empty())
        .filter(|s| !s.contains('/') && s != ".." && s != ".")
        .unwrap_or_else(|| "download".into());
    let out = match &args.output {
        Some(o) if o.is_dir() => o.join(&name),
        Some(o) => o.clone(),
        None => PathBuf::from(&name),
    };
    Ok((url, out))
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&ferry_core::path::percent_decode(s)).into_owned()
}

/// Downloads one file.
pub async fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let (url, out) = resolve(&args)?;
    let cancel = ctrl_c_token();
    let label = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (view, progress) = ProgressView::new(&label, args.json);
    let mut downloader = Downloader::new(http_client(token_for(url.as_str()).as_deref())?)
        .with_cancel(cancel)
        .with_retry(retry(args.retries))
        .with_max_connections(usize::from(args.max_streams))
        .with_force(args.force);
    if let Some(n) = args.connections {
        downloader = downloader.with_connections(usize::from(n));
    }
    if let Some(rate) = args.limit_rate {
        downloader = downloader.with_limit_rate(rate);
    }
    if let Some(p) = progress {
        downloader = downloader.with_progress(p);
    }
    let result = downloader.download(&url, &out).await;
    view.finish();
    let o = result.with_context(|| format!("download of {url} stopped"))?;
    if args.json {
        let v = serde_json::json!({
            "file": o.path, "size": o.size, "resumed_from": o.resumed_from, "fetched": o.fetched,
            "sha256": o.sha256, "verified": o.verified, "restarted": o.restarted,
            "already_there": o.already_there,
        });
        println!("{v}");
    } else {
        let check = if o.verified { "verified sha256" } else { "sha256 (server sent no digest)" };
        let what = if o.already_there { "already there, nothing fetched:" } else { "downloaded" };
        eprintln!("{what} {} ({}) {check} {}", o.path.display(), HumanBytes(o.size), o.sha256);
    }
    Ok(())
}
