//! `ferry upload` and `ferry download`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ferry_client::{ClientError, Downloader, RetryPolicy, Uploader, Url, http_client};
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
}

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, ..RetryPolicy::default() }
}

/// A token cancelled by Ctrl-C, so transfers stop cleanly and can resume.
fn ctrl_c_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

/// Uploads each file; stops at the first failure (the rest would fail the same way or can
/// be retried by running the command again, which skips nothing already done).
pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let cancel = ctrl_c_token();
    let http = http_client()?;
    for file in &args.files {
        let label =
            file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.display().to_string());
        let (view, progress) = ProgressView::new(&label, args.json);
        let mut uploader =
            Uploader::new(http.clone(), &args.server)?.with_cancel(cancel.clone()).with_retry(retry(args.retries));
        if let Some(p) = progress {
            uploader = uploader.with_progress(p);
        }
        let result = uploader.upload(file, args.dir.as_deref()).await;
        view.finish();
        let outcome = result.with_context(|| format!("upload of {} stopped", file.display()))?;
        if args.json {
            let v = serde_json::json!({
                "file": outcome.path, "url": outcome.url, "size": outcome.size,
                "resumed_from": outcome.resumed_from, "sent": outcome.sent,
                "sha256": outcome.sha256, "verified": outcome.verified,
            });
            println!("{v}");
        } else {
            let resumed = if outcome.resumed_from > 0 {
                format!(", resumed at {}", HumanBytes(outcome.resumed_from))
            } else {
                String::new()
            };
            let check = if outcome.verified { "verified sha256" } else { "sha256" };
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
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads one file.
pub async fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let (url, out) = resolve(&args)?;
    let cancel = ctrl_c_token();
    let label = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (view, progress) = ProgressView::new(&label, args.json);
    let mut downloader = Downloader::new(http_client()?).with_cancel(cancel).with_retry(retry(args.retries));
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
        });
        println!("{v}");
    } else {
        let check = if o.verified { "verified sha256" } else { "sha256 (server sent no digest)" };
        eprintln!("downloaded {} ({}) {check} {}", o.path.display(), HumanBytes(o.size), o.sha256);
    }
    Ok(())
}
