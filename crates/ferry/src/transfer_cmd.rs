//! `ferry upload` and `ferry download`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ferry_client::{ChunkSize, ClientError, Downloader, RetryPolicy, UploadOptions, Uploader, Url, http_client};
use ferry_core::ChecksumAlgorithm;
use indicatif::HumanBytes;
use tokio_util::sync::CancellationToken;

use crate::progress_ui::ProgressView;
use crate::session::ServerArg;

/// Flags of `ferry upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Files to upload (folders with -r)
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArg,
    /// Remote folder to put them in: relative to your home (default: your home), or from
    /// the tree root with a leading /
    #[arg(long, value_name = "REMOTE_DIR")]
    dir: Option<String>,
    /// Upload folders with everything in them (DIR puts the folder itself into --dir, DIR/
    /// its contents, as rsync); a re-run skips files already there (same size and SHA-256)
    #[arg(short, long)]
    recursive: bool,
    /// Files moving at once in a folder transfer
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
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
    /// A full URL, or a remote path: relative to your home (photos/big.iso), from the tree
    /// root with a leading / (/team/x.iso), or 'bob's home as '~bob/x'
    source: String,
    /// Where to write (default: the file's name, in the current folder; an existing folder,
    /// or a name ending in /, means "into this folder"; missing folders are made)
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArg,
    /// Download a remote folder with everything in it into OUT/NAME (default ./NAME);
    /// files already there with the same SHA-256 are kept
    #[arg(short, long)]
    recursive: bool,
    /// Files moving at once in a folder transfer
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
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

pub use crate::session::token_for;

/// Retries, each one announced on stderr ("retrying 3/8 in 4 s") unless --quiet (also with
/// --json: the notices stay off stdout).
pub fn retry(max_attempts: u32) -> RetryPolicy {
    let on_retry: Option<ferry_client::RetryFn> = (!crate::session::quiet()).then(|| {
        Arc::new(|n: u32, max: u32, wait: std::time::Duration, why: &ClientError| {
            eprintln!("ferry: {why}; retrying {n}/{max} in {:.0} s", wait.as_secs_f64().max(1.0));
        }) as ferry_client::RetryFn
    });
    RetryPolicy { max_attempts, on_retry, ..RetryPolicy::default() }
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

/// Uploads each file (and, with -r, each folder); stops at the first failed argument (the
/// rest would fail the same way or can be retried by running the command again, which
/// skips nothing already done).
pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let s = crate::session::connect(&args.server.server).await?;
    let cancel = ctrl_c_token();
    let dest = s.remote(args.dir.as_deref().unwrap_or("~"))?;
    let quiet = args.json || crate::session::quiet();
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
    let (http, server, retries) = (s.http.clone(), s.server.clone(), args.retries);
    let make: Arc<dyn Fn() -> Result<Uploader, ClientError> + Send + Sync> = {
        let cancel = cancel.clone();
        Arc::new(move || {
            Ok(Uploader::new(http.clone(), &server)?
                .with_cancel(cancel.clone())
                .with_retry(retry(retries))
                .with_options(options.clone()))
        })
    };
    for file in &args.files {
        if file.is_dir() {
            if !args.recursive {
                return Err(ClientError::Rejected {
                    status: 0,
                    reason: format!("{} is a folder; upload folders with -r", file.display()),
                }
                .into());
            }
            crate::folder_cmd::upload_folder(&s, file, &dest, usize::from(args.jobs), args.json, make.clone()).await?;
            continue;
        }
        let label =
            file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.display().to_string());
        let (view, progress) = ProgressView::new(&label, quiet);
        let mut uploader = make()?;
        if let Some(p) = progress {
            uploader = uploader.with_progress(p);
        }
        let result = uploader.upload(file, Some(&format!("/{dest}"))).await;
        view.finish();
        let outcome = result.with_context(|| format!("upload of {} stopped", file.display()))?;
        let remote = format!("/{}{label}", if dest.is_empty() { String::new() } else { format!("{dest}/") });
        if args.json {
            let v = serde_json::json!({
                "file": outcome.path, "remote": remote, "url": outcome.url, "size": outcome.size,
                "resumed_from": outcome.resumed_from, "sent": outcome.sent, "parts": outcome.parts,
                "sha256": outcome.sha256, "verified": outcome.verified, "deduplicated": outcome.deduplicated,
            });
            println!("{v}");
        } else if !crate::session::quiet() {
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
            eprintln!(
                "uploaded {} → {remote} ({}{resumed}) {check} {}",
                file.display(),
                HumanBytes(outcome.size),
                outcome.sha256
            );
        }
    }
    Ok(())
}

/// Where a download of `name` goes: OUT, into OUT when it is a folder (or ends in `/`),
/// else the name in the current folder. Missing parent folders are made.
fn output_path(output: Option<&PathBuf>, name: &str) -> Result<PathBuf, ClientError> {
    let out = match output {
        Some(o) if o.is_dir() || o.as_os_str().to_string_lossy().ends_with('/') => o.join(name),
        Some(o) => o.clone(),
        None => PathBuf::from(name),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::create_dir_all(parent).map_err(|e| ClientError::local(parent, e))?;
    }
    Ok(out)
}

/// The last segment of a URL path, decoded, if it can name a local file.
fn url_file_name(url: &Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back())
        .map(|s| String::from_utf8_lossy(&ferry_core::path::percent_decode(s)).into_owned())
        .filter(|s| !s.is_empty() && !s.contains('/') && s != ".." && s != ".")
        .unwrap_or_else(|| "download".into())
}

/// Downloads one file (or, with -r, a folder).
pub async fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let cancel = ctrl_c_token();
    let quiet = args.json || crate::session::quiet();
    let is_url = args.source.starts_with("http://") || args.source.starts_with("https://");
    let (http, url, session) = if is_url {
        let url = Url::parse(&args.source)
            .map_err(|e| ClientError::Rejected { status: 0, reason: format!("bad URL {:?}: {e}", args.source) })?;
        (http_client(token_for(url.as_str()).as_deref())?, url, None)
    } else {
        let s = crate::session::connect(&args.server.server).await?;
        let tree = s.remote(&args.source)?;
        (s.http.clone(), s.files_url(&tree)?, Some((s, tree)))
    };
    let (retries, max, connections, force, rate) =
        (args.retries, args.max_streams, args.connections, args.force, args.limit_rate);
    let make: Arc<dyn Fn() -> Result<Downloader, ClientError> + Send + Sync> = {
        let (http, cancel) = (http.clone(), cancel.clone());
        Arc::new(move || {
            let mut d = Downloader::new(http.clone())
                .with_cancel(cancel.clone())
                .with_retry(retry(retries))
                .with_max_connections(usize::from(max))
                .with_force(force);
            if let Some(n) = connections {
                d = d.with_connections(usize::from(n));
            }
            if let Some(r) = rate {
                d = d.with_limit_rate(r);
            }
            Ok(d)
        })
    };
    if args.recursive {
        let Some((s, tree)) = &session else {
            return Err(ClientError::Rejected { status: 0, reason: "-r needs a remote path, not a URL".into() }.into());
        };
        let name = tree.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("files");
        let out = match &args.output {
            Some(o) => o.join(name),
            None => PathBuf::from(name),
        };
        return crate::folder_cmd::download_folder(s, tree, &out, usize::from(args.jobs), args.json, make).await;
    }
    let out = output_path(args.output.as_ref(), &url_file_name(&url))?;
    let label = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (view, progress) = ProgressView::new(&label, quiet);
    let mut downloader = make()?;
    if let Some(p) = progress {
        downloader = downloader.with_progress(p);
    }
    let result = downloader.download(&url, &out).await;
    view.finish();
    let o = match (result, &session) {
        (Err(ClientError::Rejected { status: 404, .. }), Some((_, tree))) => {
            return Err(ClientError::Rejected { status: 404, reason: format!("no such file: /{tree}") }.into());
        }
        (r, _) => r.with_context(|| format!("download of {} stopped", args.source))?,
    };
    if args.json {
        let v = serde_json::json!({
            "file": o.path, "size": o.size, "resumed_from": o.resumed_from, "fetched": o.fetched,
            "sha256": o.sha256, "verified": o.verified, "restarted": o.restarted,
            "already_there": o.already_there,
        });
        println!("{v}");
    } else if !crate::session::quiet() {
        let check = if o.verified { "verified sha256" } else { "sha256 (server sent no digest)" };
        let what = if o.already_there { "already there, nothing fetched:" } else { "downloaded" };
        eprintln!("{what} {} ({}) {check} {}", o.path.display(), HumanBytes(o.size), o.sha256);
    }
    Ok(())
}
