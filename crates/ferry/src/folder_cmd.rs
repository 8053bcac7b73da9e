//! Whole folders: `ferry upload -r DIR`, `ferry download -r REMOTE_DIR` and
//! `ferry send --to bob DIR` (through the relay).
//!
//! The structure is kept (empty folders too); symbolic links are not followed but skipped
//! and named, as rsync does without `-l`. Several files move at once, under one aggregate
//! progress bar naming the current file. A re-run resumes the folder as a whole: a file
//! already at the other side with the same size and SHA-256 is skipped, an interrupted
//! one resumes from its saved state. One file's failure does not stop the others; the
//! command then exits with that failure's code.
//!
//! Naming, as rsync: `DIR` puts the folder itself into the destination, `DIR/` (trailing
//! slash) puts its contents there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_client::{ClientError, Downloader, Progress, ProgressFn, Uploader};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::files_cmd::{Entry, Remote, stat};
use crate::session::{self, Session};

/// A local folder's content, relative paths with `/`.
#[derive(Debug, Default)]
pub struct LocalTree {
    /// Files and their sizes.
    pub files: Vec<(String, u64)>,
    /// Folders with nothing in them (they are made explicitly).
    pub empty_dirs: Vec<String>,
    /// Symbolic links and other non-regular files left out.
    pub skipped: Vec<String>,
}

/// Walks `root` without following links.
pub fn walk_local(root: &Path) -> Result<LocalTree, ClientError> {
    let mut tree = LocalTree::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| ClientError::local(&dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| ClientError::local(&dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        if entries.is_empty() && !rel.is_empty() {
            tree.empty_dirs.push(rel.clone());
        }
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let meta = std::fs::symlink_metadata(e.path()).map_err(|err| ClientError::local(e.path(), err))?;
            if meta.is_dir() {
                stack.push((e.path(), child));
            } else if meta.is_file() {
                tree.files.push((child, meta.len()));
            } else {
                tree.skipped.push(child);
            }
        }
    }
    tree.files.sort();
    Ok(tree)
}

/// A remote folder's files (relative path → entry) and folders, one listing per folder.
pub async fn walk_remote(s: &Session, base: &str) -> Result<(Vec<(String, Entry)>, Vec<String>), ClientError> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let path = if rel.is_empty() { base.to_owned() } else { format!("{base}/{rel}") };
        let listing = match stat(s, &path).await? {
            Remote::Folder(l) => l,
            Remote::Missing if rel.is_empty() => return Ok((files, dirs)),
            Remote::Missing => continue,
            Remote::File(_) => {
                return Err(ClientError::Rejected { status: 0, reason: format!("/{path} is a file, not a folder") });
            }
        };
        if !rel.is_empty() {
            dirs.push(rel.clone());
        }
        for e in listing.entries {
            // Names come from the server: never a path.
            if e.name.is_empty() || e.name == "." || e.name == ".." || e.name.contains(['/', '\\', '\0']) {
                continue;
            }
            let child = if rel.is_empty() { e.name.clone() } else { format!("{rel}/{}", e.name) };
            if e.is_dir() {
                stack.push(child);
            } else {
                files.push((child, e));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((files, dirs))
}

/// One aggregate progress display for many files.
struct Aggregate {
    bar: Option<ProgressBar>,
    total_files: usize,
    finished_bytes: AtomicU64,
    finished_files: AtomicUsize,
    in_flight: Mutex<HashMap<usize, (String, u64)>>,
    last_line: Mutex<Instant>,
    quiet: bool,
}

impl Aggregate {
    fn new(total_bytes: u64, total_files: usize, quiet: bool) -> Arc<Self> {
        let bar = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = ProgressBar::new(total_bytes);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Arc::new(Self {
            bar,
            total_files,
            finished_bytes: AtomicU64::new(0),
            finished_files: AtomicUsize::new(0),
            in_flight: Mutex::default(),
            last_line: Mutex::new(Instant::now()),
            quiet,
        })
    }

    fn update(&self) {
        let (current, moving) = {
            let f = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let current = f.values().map(|(n, _)| n.as_str()).min().unwrap_or("").to_owned();
            (current, f.values().map(|(_, d)| d).sum::<u64>())
        };
        let done = self.finished_bytes.load(Relaxed) + moving;
        let files = format!("{}/{} files", self.finished_files.load(Relaxed), self.total_files);
        if let Some(b) = &self.bar {
            b.set_prefix(files);
            b.set_position(done);
            b.set_message(current);
        } else if !self.quiet {
            let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                eprintln!("{files}, {} done; now {current}", HumanBytes(done));
            }
        }
    }

    fn progress_of(self: &Arc<Self>, idx: usize, name: &str) -> ProgressFn {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(idx, (name.to_owned(), 0));
        let me = self.clone();
        Arc::new(move |p: Progress| {
            if let Some(e) = me.in_flight.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&idx) {
                e.1 = p.done;
            }
            me.update();
        })
    }

    fn file_done(&self, idx: usize, size: u64) {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&idx);
        self.finished_bytes.fetch_add(size, Relaxed);
        self.finished_files.fetch_add(1, Relaxed);
        self.update();
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The remote folder a local folder goes into, rsync's way (`DIR/` = its contents).
pub fn remote_base(given_dir: &Path, dest: &str) -> String {
    let contents = given_dir.as_os_str().to_string_lossy().ends_with('/');
    let name = given_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match (contents || name.is_empty(), dest.is_empty()) {
        (true, _) => dest.to_owned(),
        (false, true) => name,
        (false, false) => format!("{dest}/{name}"),
    }
}

/// One file's transfer, as the tasks report it.
struct Moved {
    /// Already at the other side: nothing moved.
    skipped: bool,
    /// Bytes put on the wire.
    bytes: u64,
    /// Its `--json` line.
    report: serde_json::Value,
}

/// Waits for every file's task and counts what they did; failures are shown as they come
/// (the first one decides the exit code).
async fn collect(mut set: JoinSet<anyhow::Result<Moved>>, agg: &Aggregate, json: bool) -> Tally {
    let mut tally = Tally::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(m)) => {
                if m.skipped {
                    tally.skipped += 1;
                } else {
                    tally.done += 1;
                    tally.bytes += m.bytes;
                }
                if json {
                    println!("{}", m.report);
                }
            }
            Ok(Err(e)) => {
                if !json {
                    agg.println(&format!("ferry: {}", crate::exit::message(&e)));
                }
                tally.failed.push(e);
            }
            Err(e) => tally.failed.push(anyhow::anyhow!("a transfer task failed: {e}")),
        }
    }
    agg.finish();
    tally
}

/// What a folder transfer did.
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    skipped: usize,
    failed: Vec<anyhow::Error>,
    bytes: u64,
}

/// Uploads the folder `dir` into the remote folder `dest_tree` (a tree path).
pub async fn upload_folder(
    s: &Session,
    dir: &Path,
    dest_tree: &str,
    jobs: usize,
    json: bool,
    make_uploader: Arc<dyn Fn() -> Result<Uploader, ClientError> + Send + Sync>,
) -> anyhow::Result<()> {
    let base = remote_base(dir, dest_tree);
    let local = walk_local(dir)?;
    let quiet = json || session::quiet();
    announce_skipped(dir, &local, quiet);
    let (remote_files, _) = walk_remote(s, &base).await?;
    let remote: HashMap<String, Entry> = remote_files.into_iter().collect();
    for d in &local.empty_dirs {
        let body = serde_json::json!({ "path": format!("{base}/{d}"), "parents": true });
        let resp =
            s.http.post(s.api("api/files/mkdir")?).json(&body).send().await.map_err(|e| ferry_client::network(&e))?;
        if !resp.status().is_success() {
            return Err(
                anyhow::Error::new(ferry_client::refusal(resp).await).context(format!("cannot make /{base}/{d}"))
            );
        }
    }
    let total: u64 = local.files.iter().map(|(_, n)| n).sum();
    let agg = Aggregate::new(total, local.files.len(), quiet);
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = JoinSet::new();
    for (idx, (rel, size)) in local.files.iter().cloned().enumerate() {
        let path = dir.join(&rel);
        let (remote_dir, name) = match rel.rsplit_once('/') {
            Some((parent, name)) => (format!("/{base}/{parent}"), name.to_owned()),
            None => (format!("/{base}"), rel.clone()),
        };
        let there = remote.get(&rel).filter(|e| e.size == size).and_then(|e| e.sha256.clone());
        let (agg, slots, make) = (agg.clone(), slots.clone(), make_uploader.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            // Already there, same size and SHA-256: nothing to send.
            if let Some(sha) = there {
                let local_sha = hash_file(&path).await?;
                if local_sha == sha {
                    agg.file_done(idx, size);
                    let report = serde_json::json!({ "file": path, "remote": format!("{remote_dir}/{name}"), "sha256": sha, "sent": 0, "skipped": true });
                    return Ok::<_, anyhow::Error>(Moved { skipped: true, bytes: 0, report });
                }
            }
            let up = make()?.with_progress(agg.progress_of(idx, &rel));
            let outcome = up.upload(&path, Some(&remote_dir)).await;
            agg.file_done(idx, size);
            let o = outcome?;
            let report = serde_json::json!({ "file": path, "remote": format!("{remote_dir}/{name}"), "sha256": o.sha256, "sent": o.sent, "skipped": false });
            Ok(Moved { skipped: false, bytes: o.sent, report })
        });
    }
    let tally = collect(set, &agg, json).await;
    summary("uploaded", &format!("/{base}/"), &local.files.len(), tally, local.skipped.len(), started, json)
}

/// Makes an [`Uploader`] for one relay item with its extra metadata.
pub type MakeRelayUploader = Arc<dyn Fn(Vec<(&'static str, String)>) -> Result<Uploader, ClientError> + Send + Sync>;

/// Sends the folder `dir` through the relay to `to`: one item per file, named by its path
/// (rsync's way: `DIR` is the folder itself, `DIR/` its contents), an empty folder as an
/// item of its own. `sent` is what went to the same recipients before (item name → size
/// and SHA-256 hex); such a file, unchanged, is skipped.
pub async fn send_folder(
    dir: &Path,
    to: &str,
    sent: HashMap<String, (u64, String)>,
    jobs: usize,
    json: bool,
    make_uploader: MakeRelayUploader,
) -> anyhow::Result<()> {
    let base = remote_base(dir, "");
    let local = walk_local(dir)?;
    let quiet = json || session::quiet();
    announce_skipped(dir, &local, quiet);
    let within = |rel: &str| if base.is_empty() { rel.to_owned() } else { format!("{base}/{rel}") };
    // An empty folder travels as an empty stand-in file of its name (a `folder` item).
    let stand_ins =
        ferry_client::StateDir::default_location().path().join("folders").join(std::process::id().to_string());
    // (item name, file uploaded, local path shown, size, an empty folder)
    let mut items: Vec<(String, PathBuf, PathBuf, u64, bool)> =
        local.files.iter().map(|(rel, size)| (within(rel), dir.join(rel), dir.join(rel), *size, false)).collect();
    for (i, d) in local.empty_dirs.iter().enumerate() {
        let leaf = d.rsplit('/').next().unwrap_or(d);
        let stand_in = stand_ins.join(i.to_string()).join(leaf);
        let parent = stand_in.parent().unwrap_or(&stand_ins);
        std::fs::create_dir_all(parent).map_err(|e| ClientError::local(parent, e))?;
        std::fs::write(&stand_in, b"").map_err(|e| ClientError::local(&stand_in, e))?;
        items.push((within(d), stand_in, dir.join(d), 0, true));
    }
    let total: u64 = items.iter().map(|i| i.3).sum();
    let agg = Aggregate::new(total, items.len(), quiet);
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = JoinSet::new();
    for (idx, (name, path, shown, size, is_dir)) in items.iter().cloned().enumerate() {
        let before = sent.get(&name).filter(|(n, _)| *n == size).map(|(_, sha)| sha.clone());
        let (agg, slots, make, to) = (agg.clone(), slots.clone(), make_uploader.clone(), to.to_owned());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            if let Some(sha) = before
                && hash_file(&path).await? == sha
            {
                agg.file_done(idx, size);
                let report = serde_json::json!({ "file": shown, "name": name, "to": to, "sha256": sha, "sent": 0, "skipped": true });
                return Ok::<_, anyhow::Error>(Moved { skipped: true, bytes: 0, report });
            }
            let mut metadata = Vec::new();
            if let Some((folder, _)) = name.rsplit_once('/') {
                metadata.push(("relay_folder", folder.to_owned()));
            }
            if is_dir {
                metadata.push(("relay_kind", "folder".to_owned()));
            }
            let up = make(metadata)?.with_progress(agg.progress_of(idx, &name));
            let outcome = up.upload(&path, None).await;
            agg.file_done(idx, size);
            let o = outcome?;
            let id = o.url.rsplit('/').next().unwrap_or("").to_owned();
            let report = serde_json::json!({
                "file": shown, "name": name, "to": to, "id": id,
                "size": size, "sha256": o.sha256, "sent": o.sent, "deduplicated": o.deduplicated, "skipped": false,
            });
            Ok(Moved { skipped: false, bytes: o.sent, report })
        });
    }
    let tally = collect(set, &agg, json).await;
    let _ = std::fs::remove_dir_all(&stand_ins);
    let what = if base.is_empty() { format!("{} to {to}", dir.display()) } else { format!("{base}/ to {to}") };
    summary("sent", &what, &items.len(), tally, local.skipped.len(), started, json)
}

/// Names what a folder walk left out (links and special files), unless quiet.
fn announce_skipped(dir: &Path, local: &LocalTree, quiet: bool) {
    for l in &local.skipped {
        if !quiet {
            eprintln!("skipping {} (not a regular file; links are not followed)", dir.join(l).display());
        }
    }
}

async fn hash_file(path: &Path) -> Result<String, ClientError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        let mut f = std::fs::File::open(&p).map_err(|e| ClientError::local(&p, e))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| ClientError::local(&p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(ferry_core::digest::to_hex(h.finalize().as_slice()))
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("hashing failed: {e}")))?
}

fn summary(
    what: &str,
    dest: &str,
    files: &usize,
    t: Tally,
    skipped_links: usize,
    started: Instant,
    json: bool,
) -> anyhow::Result<()> {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    if json {
        let v = serde_json::json!({
            "folder": dest, "files": files, "transferred": t.done, "skipped": t.skipped,
            "failed": t.failed.len(), "not_regular": skipped_links, "bytes": t.bytes,
            "seconds": (secs * 1000.0).round() / 1000.0,
        });
        println!("{v}");
    } else if !session::quiet() {
        let links =
            if skipped_links > 0 { format!(", {skipped_links} links/special files skipped") } else { String::new() };
        eprintln!(
            "{what} {dest}: {} of {files} files ({}), {} already there{links}, {} failed; {:.0} files/s",
            t.done,
            HumanBytes(t.bytes),
            t.skipped,
            t.failed.len(),
            (t.done + t.skipped) as f64 / secs
        );
    }
    let n = t.failed.len();
    match t.failed.into_iter().next() {
        None => Ok(()),
        Some(first) => {
            Err(first.context(format!("{n} of {files} files failed (run the same command again to retry them)")))
        }
    }
}

/// Downloads the remote folder `src_tree` into the local folder `out`.
pub async fn download_folder(
    s: &Session,
    src_tree: &str,
    out: &Path,
    jobs: usize,
    json: bool,
    make_downloader: Arc<dyn Fn() -> Result<Downloader, ClientError> + Send + Sync>,
) -> anyhow::Result<()> {
    let (files, dirs) = walk_remote(s, src_tree).await?;
    if files.is_empty() && dirs.is_empty() && matches!(stat(s, src_tree).await?, Remote::Missing) {
        return Err(ClientError::Rejected { status: 404, reason: format!("no such folder: /{src_tree}") }.into());
    }
    let quiet = json || session::quiet();
    std::fs::create_dir_all(out).map_err(|e| ClientError::local(out, e))?;
    for d in &dirs {
        let p = out.join(d);
        std::fs::create_dir_all(&p).map_err(|e| ClientError::local(&p, e))?;
    }
    let total: u64 = files.iter().map(|(_, e)| e.size).sum();
    let agg = Aggregate::new(total, files.len(), quiet);
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = JoinSet::new();
    for (idx, (rel, e)) in files.iter().cloned().enumerate() {
        let remote = format!("/{src_tree}/{rel}");
        let url = s.files_url(&remote)?;
        let dest: PathBuf = out.join(&rel);
        let (agg, slots, make) = (agg.clone(), slots.clone(), make_downloader.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let d = make()?.with_progress(agg.progress_of(idx, &rel));
            let outcome = d.download(&url, &dest).await;
            agg.file_done(idx, e.size);
            let o = outcome?;
            let report = serde_json::json!({ "file": o.path, "remote": remote, "sha256": o.sha256, "verified": o.verified, "skipped": o.already_there });
            Ok::<_, anyhow::Error>(Moved { skipped: o.already_there, bytes: o.fetched, report })
        });
    }
    let tally = collect(set, &agg, json).await;
    summary("downloaded", &out.display().to_string(), &files.len(), tally, 0, started, json)
}
