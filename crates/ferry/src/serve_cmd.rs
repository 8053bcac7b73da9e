//! `ferry serve`: flags > `FERRY_*` environment > TOML config file > defaults, merged into
//! one validated [`ServerConfig`].

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use ferry_server::{DedupMode, ServerConfig};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::units::{parse_duration, parse_size};

/// Flags of `ferry serve`. Every flag can also come from the environment (`FERRY_…`) or
/// the config file; flags win over the environment, which wins over the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "FERRY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory: ferry.db, staging/ and files/ (the tree) [default: ./ferry-data]
    #[arg(long, env = "FERRY_DATA")]
    data: Option<PathBuf>,
    /// Serve this existing directory as the tree instead of DATA/files
    #[arg(long, env = "FERRY_ROOT")]
    root: Option<PathBuf>,
    /// Metadata database instead of DATA/ferry.db: postgres://USER[:PASSWORD]@HOST:PORT/DB
    /// (an existing database; ferry creates its tables) or sqlite://PATH
    #[arg(long, env = "FERRY_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// Keep bytes in an S3-compatible store instead of DATA/staging and the tree directory:
    /// s3://BUCKET[/PREFIX]; endpoint, region and keys from the config file (s3_endpoint,
    /// s3_region, s3_access_key_id, s3_secret_access_key) or AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Many nodes can share one PostgreSQL
    /// --database and one bucket.
    #[arg(long, env = "FERRY_BLOBS", value_name = "URL")]
    blobs: Option<String>,
    /// TOML config file (keys: listen, data, root, database, blobs, s3_endpoint, s3_region,
    /// s3_access_key_id, s3_secret_access_key, max_size, upload_ttl, sweep_interval,
    /// network_timeout, behind_proxy, commit_every, auth,
    /// relay_ttl, heartbeat, shutdown_grace, header_timeout, max_connections,
    /// max_open_uploads, max_staging, dedup, dedup_min_size, tls_cert, tls_key)
    #[arg(long, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Largest upload accepted, e.g. 50G [default: 1T]
    #[arg(long, env = "FERRY_MAX_SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// How long an unfinished upload is kept after its last byte, e.g. 24h [default: 24h]
    #[arg(long, env = "FERRY_UPLOAD_TTL", value_parser = parse_duration)]
    upload_ttl: Option<std::time::Duration>,
    /// How often expired uploads are swept away [default: 60s]
    #[arg(long, env = "FERRY_SWEEP_INTERVAL", value_parser = parse_duration)]
    sweep_interval: Option<std::time::Duration>,
    /// Cut a request body that sends nothing for this long, keeping its bytes [default: 60s]
    #[arg(long, env = "FERRY_NETWORK_TIMEOUT", value_parser = parse_duration)]
    network_timeout: Option<std::time::Duration>,
    /// Trust X-Forwarded-Host/-Proto from a reverse proxy when building upload URLs
    #[arg(long, env = "FERRY_BEHIND_PROXY")]
    behind_proxy: bool,
    /// While a long PATCH streams, make its bytes durable and acknowledge them at least
    /// every SIZE (a server crash then loses at most this much progress) [default: 64M]
    #[arg(long, env = "FERRY_COMMIT_EVERY", value_parser = parse_size)]
    commit_every: Option<u64>,
    /// How long a file sent through the relay waits for its recipients [default: 7d]
    #[arg(long, env = "FERRY_RELAY_TTL", value_parser = parse_duration)]
    relay_ttl: Option<std::time::Duration>,
    /// Event-stream heartbeat; a watching client that misses three reports counts as
    /// offline [default: 10s]
    #[arg(long, env = "FERRY_HEARTBEAT", value_parser = parse_duration)]
    heartbeat: Option<std::time::Duration>,
    /// On SIGTERM/SIGINT, let in-flight uploads run this long to their next verified
    /// boundary before stopping them [default: 10s]
    #[arg(long, env = "FERRY_SHUTDOWN_GRACE", value_parser = parse_duration)]
    shutdown_grace: Option<std::time::Duration>,
    /// Close a connection that has not sent a request's whole header within this long
    /// (slow-header attacks) [default: 10s]
    #[arg(long, env = "FERRY_HEADER_TIMEOUT", value_parser = parse_duration)]
    header_timeout: Option<std::time::Duration>,
    /// Connections served at once (and at most 3/4 of the file-descriptor limit); more are
    /// answered 503 with Retry-After [default: 10000]
    #[arg(long, env = "FERRY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Unfinished uploads one user may have at once [default: 1000]
    #[arg(long, env = "FERRY_MAX_OPEN_UPLOADS")]
    max_open_uploads: Option<u64>,
    /// Bytes one user's unfinished uploads may hold, quota or not [default: 1T]
    #[arg(long, env = "FERRY_MAX_STAGING", value_parser = parse_size)]
    max_staging: Option<u64>,
    /// Instant upload (`ferry upload --dedup`) reuses: `user` = only copies the caller may
    /// read, `global` = any copy of at least --dedup-min-size (tells users that some
    /// content exists on the server), `off` [default: user]
    #[arg(long, env = "FERRY_DEDUP")]
    dedup: Option<DedupMode>,
    /// In `global` mode, smaller content is only reused from the caller's own files
    /// [default: 1M]
    #[arg(long, env = "FERRY_DEDUP_MIN_SIZE", value_parser = parse_size)]
    dedup_min_size: Option<u64>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; needs --tls-key
    #[arg(long, env = "FERRY_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, env = "FERRY_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// No accounts: every route open to anyone who can connect (a trusted LAN only)
    #[arg(long, env = "FERRY_NO_AUTH")]
    no_auth: bool,
    /// No peer-to-peer relay: `ferry send` then always goes through the server's store
    #[arg(long, env = "FERRY_NO_P2P")]
    no_p2p: bool,
    /// Answer /metrics to anyone (default: admins only, e.g. Prometheus with a bearer token)
    #[arg(long, env = "FERRY_METRICS_PUBLIC")]
    metrics_public: bool,
    /// A web app's origin (e.g. https://app.example.com) whose pages may call ferry with the
    /// web UI's session cookie; repeat for several. Without any, pages on every origin may
    /// call ferry, but only with a bearer token or Basic credentials (as tusd allows)
    #[arg(long = "cors-origin", value_name = "ORIGIN", env = "FERRY_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// On the first start, print the new admin's password on stdout even when stdout is not
    /// a terminal (it is always written to DATA/admin-password, mode 0600)
    #[arg(long)]
    print_admin_password: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
    root: Option<PathBuf>,
    database: Option<String>,
    blobs: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    max_size: Option<SizeValue>,
    upload_ttl: Option<String>,
    sweep_interval: Option<String>,
    network_timeout: Option<String>,
    behind_proxy: Option<bool>,
    metrics_public: Option<bool>,
    cors_origins: Option<Vec<String>>,
    commit_every: Option<SizeValue>,
    auth: Option<bool>,
    relay_ttl: Option<String>,
    heartbeat: Option<String>,
    shutdown_grace: Option<String>,
    header_timeout: Option<String>,
    max_connections: Option<usize>,
    max_open_uploads: Option<u64>,
    max_staging: Option<SizeValue>,
    dedup: Option<String>,
    dedup_min_size: Option<SizeValue>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

fn file_size(v: Option<SizeValue>, key: &str) -> anyhow::Result<Option<u64>> {
    match v {
        Some(SizeValue::Bytes(n)) => Ok(Some(n)),
        Some(SizeValue::Text(s)) => Ok(Some(parse_size(&s).map_err(|e| anyhow::anyhow!("config {key}: {e}"))?)),
        None => Ok(None),
    }
}

fn file_duration(v: Option<String>, key: &str) -> anyhow::Result<Option<std::time::Duration>> {
    v.map(|s| parse_duration(&s).map_err(|e| anyhow::anyhow!("config {key}: {e}"))).transpose()
}

/// Starts the server and runs until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))?
        }
        None => FileConfig::default(),
    };
    let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let data = args.data.or(file.data).unwrap_or_else(|| PathBuf::from("ferry-data"));
    let mut config = ServerConfig::new(data);
    config.root = args.root.or(file.root);
    config.database = args.database.or(file.database).map(ferry_server::DatabaseUrl);
    config.blobs = args.blobs.or(file.blobs);
    config.s3 = ferry_store::S3Options {
        endpoint: file.s3_endpoint,
        region: file.s3_region,
        access_key_id: file.s3_access_key_id,
        secret_access_key: file.s3_secret_access_key,
    };
    if let Some(b) = &config.blobs
        && !b.starts_with("s3://")
    {
        bail!("--blobs {b:?}: use s3://BUCKET[/PREFIX]");
    }
    if config.blobs.is_some() && config.root.is_some() {
        bail!("--root serves a local directory; it cannot be combined with --blobs (the tree is in the bucket)");
    }
    if let Some(root) = &config.root
        && !root.is_dir()
    {
        bail!("--root {} is not a directory", root.display());
    }
    if let Some(v) = args.max_size.or(file_size(file.max_size, "max_size")?) {
        config.max_size = v;
    }
    if let Some(v) = args.commit_every.or(file_size(file.commit_every, "commit_every")?) {
        config.commit_every_bytes = v.max(1);
    }
    if let Some(v) = args.upload_ttl.or(file_duration(file.upload_ttl, "upload_ttl")?) {
        config.upload_ttl = v;
    }
    if let Some(v) = args.sweep_interval.or(file_duration(file.sweep_interval, "sweep_interval")?) {
        config.sweep_interval = v;
    }
    if let Some(v) = args.network_timeout.or(file_duration(file.network_timeout, "network_timeout")?) {
        config.network_timeout = v;
    }
    config.behind_proxy = args.behind_proxy || file.behind_proxy.unwrap_or(false);
    config.auth = !args.no_auth && file.auth.unwrap_or(true);
    config.p2p = !args.no_p2p;
    config.metrics_public = args.metrics_public || file.metrics_public.unwrap_or(false);
    config.cors_origins =
        if args.cors_origins.is_empty() { file.cors_origins.unwrap_or_default() } else { args.cors_origins };
    if let Some(o) = config.cors_origins.iter().find(|o| !valid_origin(o)) {
        anyhow::bail!(
            "cors origin {o:?} is not an origin like https://app.example.com (scheme, host, optional port; no path)"
        );
    }
    if let Some(v) = args.relay_ttl.or(file_duration(file.relay_ttl, "relay_ttl")?) {
        config.relay_ttl = v;
    }
    if let Some(v) = args.heartbeat.or(file_duration(file.heartbeat, "heartbeat")?) {
        config.heartbeat = v;
    }
    if let Some(v) = args.shutdown_grace.or(file_duration(file.shutdown_grace, "shutdown_grace")?) {
        config.shutdown_grace = v;
    }
    if let Some(v) = args.header_timeout.or(file_duration(file.header_timeout, "header_timeout")?) {
        config.header_timeout = v;
    }
    if let Some(v) = args.max_connections.or(file.max_connections) {
        config.max_connections = v.max(1);
    }
    if let Some(v) = args.max_open_uploads.or(file.max_open_uploads) {
        config.max_open_uploads = v;
    }
    if let Some(v) = args.max_staging.or(file_size(file.max_staging, "max_staging")?) {
        config.max_staging_bytes = v;
    }
    let file_dedup = file.dedup.map(|s| s.parse::<DedupMode>().map_err(|e| anyhow::anyhow!("config dedup: {e}")));
    if let Some(v) = args.dedup.map(Ok).or(file_dedup).transpose()? {
        config.dedup = v;
    }
    if let Some(v) = args.dedup_min_size.or(file_size(file.dedup_min_size, "dedup_min_size")?) {
        config.dedup_min_size = v;
    }
    match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => {
            let files = ferry_server::tls::TlsFiles { cert, key };
            ferry_server::tls::check(&files)?;
            config.tls = Some(files);
        }
        (None, None) => {}
        _ => bail!("TLS needs both a certificate and a key (tls_cert and tls_key)"),
    }
    let scheme = if config.tls.is_some() { "https" } else { "http" };

    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let tree = match &config.blobs {
        Some(url) => format!("{url}/tree"),
        None => config.tree_dir().display().to_string(),
    };
    // The banner goes to stdout (scripts read the address from it); a closed stdout must
    // not stop the server, so write errors are ignored.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ferry serving {scheme}://{addr}  (data: {}, tree: {})", config.data_dir.display(), tree);
    let _ = writeln!(out, "  upload:   ferry upload FILE --server {scheme}://{addr}");
    let _ = writeln!(out, "  download: ferry download PATH --server {scheme}://{addr}");
    let _ = out.flush();
    drop(out);
    if config.auth {
        bootstrap_admin(&config, &format!("{scheme}://{addr}"), args.print_admin_password).await?;
    } else {
        tracing::warn!("accounts are off (--no-auth): anyone who can connect may read and write everything");
    }
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        signals.cancel();
    });
    ferry_server::serve(config, listener, shutdown).await.context("server failed")?;
    Ok(())
}

/// On the first start with accounts, creates `admin` with a random password, writes it to
/// `DATA/admin-password` (mode 0600) and says how to log in. The password itself is
/// printed only to a terminal (or when asked): a service manager's log of stdout must not
/// keep it.
async fn bootstrap_admin(config: &ServerConfig, url: &str, print_password: bool) -> anyhow::Result<()> {
    let data = &config.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let db = ferry_store::open_metadata(config.database.as_ref().map(|d| d.0.as_str()), data)
        .await
        .context("cannot open the database")?;
    if !db.has_users().await? {
        let password = ferry_server::auth::new_token().0.trim_start_matches("fy_").chars().take(20).collect::<String>();
        let hash = ferry_server::auth::hash_password(&password)?;
        let file = data.join("admin-password");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            writeln!(f, "{password}").and_then(|()| f.sync_all())?;
        }
        db.add_user("admin", &hash, true, None).await?;
        let mut out = std::io::stdout().lock();
        if print_password || std::io::IsTerminal::is_terminal(&out) {
            let _ = writeln!(
                out,
                "  first start: created user \"admin\" with password {password}  (also in {})",
                file.display()
            );
        } else {
            let _ = writeln!(
                out,
                "  first start: created user \"admin\"; its password is in {} (mode 0600)",
                file.display()
            );
        }
        let _ = writeln!(out, "  log in:   ferry login --server {url} --user admin");
        match &config.database {
            Some(db) => {
                let _ = writeln!(out, "  add users: ferry user add NAME --database {}", ferry_store::redact(&db.0));
            }
            None => {
                let _ = writeln!(out, "  add users: ferry user add NAME --data {}", data.display());
            }
        }
        let _ = out.flush();
    }
    db.close().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `*`, or `http(s)://host[:port]` with nothing after it (what browsers send as `Origin`).
fn valid_origin(o: &str) -> bool {
    let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
    o == "*" || rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', ' ', '?', '#', '@']))
}
