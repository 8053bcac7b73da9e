//! Managing remote files: `ferry ls`, `rm`, `mv`, `mkdir`, `uploads`, `whoami`.

use clap::Args;
use ferry_client::{ClientError, Credentials};
use indicatif::HumanBytes;
use serde::Deserialize;

use crate::session::{self, ServerArg, Session, format_age, format_time};

/// Flags of `ferry ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Remote folder or file [default: your home]
    path: Option<String>,
    /// Long listing: type, size, modification time (UTC), and the SHA-256 with --sha
    #[arg(short, long)]
    long: bool,
    /// Show each file's SHA-256 (in the long listing)
    #[arg(long)]
    sha: bool,
    /// Print the server's JSON listing
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Flags of `ferry rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remote files or folders
    #[arg(required = true)]
    paths: Vec<String>,
    /// Remove folders with everything in them
    #[arg(short, long)]
    recursive: bool,
    /// Print one JSON object per removed path
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Flags of `ferry mv`.
#[derive(Debug, Args)]
pub struct MvArgs {
    /// What to move
    from: String,
    /// Where: a new name, or an existing folder to move it into
    to: String,
    /// Replace what is at the destination
    #[arg(long)]
    overwrite: bool,
    /// Print a JSON object
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Flags of `ferry mkdir`.
#[derive(Debug, Args)]
pub struct MkdirArgs {
    /// Remote folders to make
    #[arg(required = true)]
    paths: Vec<String>,
    /// Make missing parents too; an existing folder is fine
    #[arg(short, long)]
    parents: bool,
    /// Print one JSON object per folder
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Flags of `ferry uploads`.
#[derive(Debug, Args)]
pub struct UploadsArgs {
    /// Cancel these unfinished uploads (ids or unique prefixes, as listed); their bytes are
    /// freed on the server
    #[arg(long, value_name = "ID")]
    cancel: Vec<String>,
    /// Cancel all of your unfinished uploads
    #[arg(long, conflicts_with = "cancel")]
    cancel_all: bool,
    /// Print the list as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Flags of `ferry whoami`.
#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Print a JSON object
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// A folder listing as `/files/` answers it.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct Listing {
    /// The folder's tree path, with a leading `/`.
    pub path: String,
    /// Its entries.
    pub entries: Vec<Entry>,
}

/// One entry of a listing.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// `file` or `dir`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes (files).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// The SHA-256, when the server knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Entry {
    /// A folder.
    pub fn is_dir(&self) -> bool {
        self.kind == "dir"
    }
}

/// What is at a remote path.
pub enum Remote {
    /// A folder and its listing.
    Folder(Listing),
    /// A file: size, modification time, SHA-256 if known.
    File(Entry),
    /// Nothing.
    Missing,
}

fn network(e: reqwest::Error) -> ClientError {
    ferry_client::network(&e)
}

/// Looks at a tree path: a folder's listing, a file's size and digest, or nothing.
pub async fn stat(s: &Session, tree_path: &str) -> Result<Remote, ClientError> {
    let resp = s.http.head(s.files_url(tree_path)?).send().await.map_err(network)?;
    match resp.status().as_u16() {
        404 => return Ok(Remote::Missing),
        200 => {}
        _ => return Err(ferry_client::refusal(resp).await),
    }
    let json = resp.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        let resp = s.http.get(s.files_url(tree_path)?).send().await.map_err(network)?;
        if !resp.status().is_success() {
            return Err(ferry_client::refusal(resp).await);
        }
        let listing: Listing =
            resp.json().await.map_err(|e| ClientError::Protocol(format!("the folder listing is not JSON: {e}")))?;
        return Ok(Remote::Folder(listing));
    }
    let h = resp.headers();
    let size = h.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mtime = h.get("last-modified").and_then(|v| v.to_str().ok()).and_then(httpdate_parse).unwrap_or(0);
    let sha256 = h
        .get("repr-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(ferry_core::digest::parse_repr_digest_sha256)
        .map(|d| ferry_core::digest::to_hex(&d));
    let name = tree_path.rsplit('/').next().unwrap_or(tree_path).to_owned();
    Ok(Remote::File(Entry { name, kind: "file".into(), size, mtime, sha256 }))
}

fn httpdate_parse(v: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(v).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs() as i64)
}

/// `ferry ls`.
pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let s = session::connect(&args.server.server).await?;
    let path = s.remote(args.path.as_deref().unwrap_or("~"))?;
    let listing = match stat(&s, &path).await? {
        Remote::Missing => {
            return Err(
                ClientError::Rejected { status: 404, reason: format!("no such file or folder: /{path}") }.into()
            );
        }
        Remote::File(e) => Listing { path: format!("/{path}"), entries: vec![e] },
        Remote::Folder(l) => l,
    };
    if args.json {
        let mut v = serde_json::to_value(&listing)?;
        if path == s.me.home && !path.is_empty() {
            v["used"] = serde_json::json!(s.me.used);
            v["quota"] = serde_json::json!(s.me.quota);
        }
        println!("{v}");
        return Ok(());
    }
    if path == s.me.home && !path.is_empty() && !session::quiet() {
        eprintln!("{}", usage_line(&s.me));
    }
    for e in &listing.entries {
        let name = if e.is_dir() { format!("{}/", e.name) } else { e.name.clone() };
        if args.long {
            let size = if e.is_dir() { "-".to_owned() } else { HumanBytes(e.size).to_string() };
            let sha = if args.sha { format!("  {}", e.sha256.as_deref().unwrap_or("-")) } else { String::new() };
            println!("{:<4} {:>11}  {}{sha}  {name}", e.kind, size, format_time(e.mtime));
        } else {
            println!("{name}");
        }
    }
    Ok(())
}

fn usage_line(me: &session::Me) -> String {
    let used = HumanBytes(me.used.unwrap_or(0));
    match me.quota {
        Some(q) => format!("/{}: {used} used of {} ({:.0}%)", me.home, HumanBytes(q), pct(me.used.unwrap_or(0), q)),
        None => format!("/{}: {used} used (no quota)", me.home),
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 100.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// `ferry rm`.
pub async fn rm(args: RmArgs) -> anyhow::Result<()> {
    let s = session::connect(&args.server.server).await?;
    for given in &args.paths {
        let path = s.remote(given)?;
        let mut url = s.files_url(&path)?;
        if args.recursive {
            url.set_query(Some("recursive=true"));
        }
        let resp = s.http.delete(url).send().await.map_err(network)?;
        if !resp.status().is_success() {
            return Err(ferry_client::refusal(resp).await.into());
        }
        report(args.json, serde_json::json!({ "removed": format!("/{path}") }), &format!("removed /{path}"));
    }
    Ok(())
}

/// Prints a result: JSON on stdout, or a line on stderr unless --quiet.
fn report(json: bool, v: serde_json::Value, text: &str) {
    if json {
        println!("{v}");
    } else if !session::quiet() {
        eprintln!("{text}");
    }
}

async fn post_json(s: &Session, route: &str, body: serde_json::Value) -> Result<(), ClientError> {
    let resp = s.http.post(s.api(route)?).json(&body).send().await.map_err(network)?;
    if resp.status().is_success() { Ok(()) } else { Err(ferry_client::refusal(resp).await) }
}

/// `ferry mv`.
pub async fn mv(args: MvArgs) -> anyhow::Result<()> {
    let s = session::connect(&args.server.server).await?;
    let from = s.remote(&args.from)?;
    let mut to = s.remote(&args.to)?;
    // Like mv: into an existing folder (or a path written with a trailing slash).
    let into = args.to.ends_with('/') || matches!(stat(&s, &to).await?, Remote::Folder(_));
    if into {
        let name = from.rsplit('/').next().unwrap_or(&from);
        to = if to.is_empty() { name.to_owned() } else { format!("{to}/{name}") };
    }
    let body = serde_json::json!({ "from": from, "to": to, "overwrite": args.overwrite });
    post_json(&s, "api/files/move", body).await?;
    report(
        args.json,
        serde_json::json!({ "from": format!("/{from}"), "to": format!("/{to}") }),
        &format!("moved /{from} → /{to}"),
    );
    Ok(())
}

/// `ferry mkdir`.
pub async fn mkdir(args: MkdirArgs) -> anyhow::Result<()> {
    let s = session::connect(&args.server.server).await?;
    for given in &args.paths {
        let path = s.remote(given)?;
        let body = serde_json::json!({ "path": path, "parents": args.parents });
        post_json(&s, "api/files/mkdir", body).await?;
        report(args.json, serde_json::json!({ "made": format!("/{path}") }), &format!("made /{path}/"));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct Unfinished {
    id: String,
    kind: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    length: Option<u64>,
    offset: u64,
    created_at: i64,
    expires_at: Option<i64>,
    #[serde(default)]
    parts: Vec<String>,
}

async fn unfinished(s: &Session) -> Result<Vec<Unfinished>, ClientError> {
    #[derive(Deserialize)]
    struct List {
        uploads: Vec<Unfinished>,
    }
    let resp = s.http.get(s.api("api/uploads")?).send().await.map_err(network)?;
    if !resp.status().is_success() {
        return Err(ferry_client::refusal(resp).await);
    }
    let list: List =
        resp.json().await.map_err(|e| ClientError::Protocol(format!("the upload list is not JSON: {e}")))?;
    Ok(list.uploads)
}

/// The uploads a user thinks of: single ones and parallel ones (a final upload with its
/// parts' bytes counted), parts not listed on their own.
fn user_view(all: &[Unfinished]) -> Vec<Unfinished> {
    let in_final: std::collections::HashSet<&str> =
        all.iter().flat_map(|u| u.parts.iter().map(String::as_str)).collect();
    all.iter()
        .filter(|u| !in_final.contains(u.id.as_str()))
        .map(|u| {
            let mut u = u.clone();
            if u.kind == "final" {
                u.offset = all.iter().filter(|p| u.parts.contains(&p.id)).map(|p| p.offset).sum();
            }
            u
        })
        .collect()
}

/// `ferry uploads`.
pub async fn uploads(args: UploadsArgs) -> anyhow::Result<()> {
    let s = session::connect(&args.server.server).await?;
    let all = unfinished(&s).await?;
    let shown = user_view(&all);
    if args.cancel.is_empty() && !args.cancel_all {
        if args.json {
            println!("{}", serde_json::json!({ "uploads": shown }));
            return Ok(());
        }
        if shown.is_empty() {
            eprintln!("no unfinished uploads");
            return Ok(());
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        println!("{:<12} {:>10} {:>6} {:>8} {:>10}  DESTINATION", "ID", "SIZE", "DONE", "AGE", "EXPIRES IN");
        for u in &shown {
            let size = u.length.map_or("?".to_owned(), |l| HumanBytes(l).to_string());
            let done = u.length.map_or("-".to_owned(), |l| format!("{:.0}%", pct(u.offset, l)));
            let expires = u.expires_at.map_or("-".to_owned(), |t| format_age(t - now));
            let dest = u.path.clone().or_else(|| u.filename.clone()).unwrap_or_else(|| "-".into());
            println!(
                "{:<12} {:>10} {:>6} {:>8} {:>10}  {dest}",
                &u.id[..u.id.len().min(12)],
                size,
                done,
                format_age(now - u.created_at),
                expires
            );
        }
        return Ok(());
    }
    let targets: Vec<&Unfinished> = if args.cancel_all {
        shown.iter().collect()
    } else {
        args.cancel
            .iter()
            .map(|p| session::by_prefix(&shown, p, |u| &u.id, ("unfinished upload", "uploads")))
            .collect::<Result<_, _>>()?
    };
    for u in targets {
        // A parallel upload: its final upload and every part.
        for id in std::iter::once(&u.id).chain(&u.parts) {
            let url = s.api(&format!("tus/{id}"))?;
            let resp = s.http.delete(url).header("Tus-Resumable", "1.0.0").send().await.map_err(network)?;
            if !resp.status().is_success() && resp.status() != reqwest::StatusCode::NOT_FOUND {
                return Err(
                    anyhow::Error::new(ferry_client::refusal(resp).await).context(format!("cannot cancel upload {id}"))
                );
            }
        }
        let dest = u.path.clone().unwrap_or_default();
        report(
            args.json,
            serde_json::json!({ "cancelled": u.id, "path": u.path }),
            &format!("cancelled {} {dest}", u.id),
        );
    }
    Ok(())
}

/// `ferry whoami`.
pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<()> {
    let s = session::connect(&args.server.server).await?;
    let logins = Credentials::default_location().logins(&s.url);
    let origin = s.url.origin().ascii_serialization();
    if args.json {
        let v = serde_json::json!({
            "server": origin, "user": s.me.user, "admin": s.me.admin, "home": format!("/{}", s.me.home),
            "used": s.me.used, "quota": s.me.quota,
            "shared": s.me.shared.iter().map(|f| serde_json::json!({ "path": format!("/{}", f.path), "write": f.write })).collect::<Vec<_>>(),
            "saved_logins": logins.tokens.keys().filter(|k| !k.is_empty()).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    match &s.me.user {
        Some(u) => println!("{u} on {origin}{}", if s.me.admin { " (admin)" } else { "" }),
        None => println!("nobody on {origin}: the server runs without accounts"),
    }
    if s.me.user.is_some() {
        println!("{}", usage_line(&s.me));
    }
    for f in &s.me.shared {
        println!("shared: /{} ({})", f.path, if f.write { "read and write" } else { "read only" });
    }
    let others: Vec<&String> =
        logins.tokens.keys().filter(|k| !k.is_empty() && Some(*k) != s.me.user.as_ref()).collect();
    if !others.is_empty() {
        let names: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
        println!("other saved logins here: {} (pick one with --user NAME)", names.join(", "));
    }
    Ok(())
}
