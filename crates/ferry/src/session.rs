//! One connection to a ferry server for a command: which saved login it uses, a first
//! request that fails fast and says why (unreachable within ~5 s, token revoked, not
//! logged in), and the remote path model.
//!
//! Remote paths: `docs/a.txt` is in your home (`/~you/docs/a.txt`), `/team/a.txt` starts
//! at the tree root, `~bob/x` is bob's home (quote it: the shell expands `~bob`). A path
//! the shell turned from `~` or `~/x` into your local home directory is taken back as your
//! remote home.

use std::sync::OnceLock;
use std::time::Duration;

use ferry_client::{ClientError, Credentials, Url, http_client};
use serde::Deserialize;

/// The default server.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// How long the first request of a command may take to connect and answer.
const FIRST_ANSWER: Duration = Duration::from_secs(5);

static SELECTED_USER: OnceLock<Option<String>> = OnceLock::new();
static QUIET: OnceLock<bool> = OnceLock::new();

/// Records the global `--user` (or `FERRY_USER`) and `--quiet` (at start, once).
pub fn select(user: Option<String>, quiet: bool) {
    let _ = SELECTED_USER.set(user.filter(|u| !u.is_empty()));
    let _ = QUIET.set(quiet);
}

/// The login chosen with `--user`, if any.
pub fn selected_user() -> Option<&'static str> {
    SELECTED_USER.get().and_then(|u| u.as_deref())
}

/// `--quiet`: no progress, no retry notices, only errors.
pub fn quiet() -> bool {
    QUIET.get().copied().unwrap_or(false)
}

/// The token to send to `server`: `$FERRY_TOKEN`, else the one `ferry login` saved for the
/// selected user (or the server's current login).
pub fn token_for(server: &str) -> Option<String> {
    if let Ok(t) = std::env::var("FERRY_TOKEN") {
        return Some(t);
    }
    Url::parse(server).ok().and_then(|u| Credentials::default_location().token_for(&u, selected_user()))
}

/// Who the server says we are (`GET /api/me`).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Me {
    /// The user (none when the server runs without accounts).
    pub user: Option<String>,
    /// An admin.
    #[serde(default)]
    pub admin: bool,
    /// The home folder as a tree path (`~alice`, or empty without accounts).
    #[serde(default)]
    pub home: String,
    /// The home's quota.
    pub quota: Option<u64>,
    /// Bytes the user holds.
    pub used: Option<u64>,
    /// Shared folders.
    #[serde(default)]
    pub shared: Vec<SharedFolder>,
}

/// A folder shared with the user.
#[derive(Debug, Clone, Deserialize)]
pub struct SharedFolder {
    /// Its tree path.
    pub path: String,
    /// Writable too.
    pub write: bool,
}

/// A command's connection: the server, the HTTP client with the chosen token, and who we are.
#[derive(Debug, Clone)]
pub struct Session {
    /// The server URL as given.
    pub server: String,
    /// The same, parsed.
    pub url: Url,
    /// The HTTP client (the token on every request).
    pub http: reqwest::Client,
    /// Who the server says we are.
    pub me: Me,
}

fn bad_server(server: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Rejected { status: 0, reason: format!("{server:?} is not a server URL ({e})") }
}

/// Parses a server URL (`http://` or `https://`).
pub fn server_url(server: &str) -> Result<Url, ClientError> {
    let url = Url::parse(server).map_err(|e| bad_server(server, e))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_server(server, "use http:// or https://"));
    }
    Ok(url)
}

/// Connects: the first request must answer within ~5 s; a refused or unknown token, or no
/// login where the server needs one, is one clear sentence.
pub async fn connect(server: &str) -> Result<Session, ClientError> {
    let url = server_url(server)?;
    let origin = url.origin().ascii_serialization();
    let token = token_for(server);
    if token.is_none()
        && let Some(user) = selected_user()
    {
        return Err(ClientError::Rejected {
            status: 401,
            reason: format!("not logged in as {user} on {origin}; run `ferry login -s {origin} --user {user}`"),
        });
    }
    let http = http_client(token.as_deref())?;
    let me_url = url.join("api/me").map_err(|e| bad_server(server, e))?;
    let answer = tokio::time::timeout(FIRST_ANSWER, http.get(me_url).send()).await;
    let resp = match answer {
        Err(_) => {
            return Err(ClientError::Unreachable(format!(
                "cannot reach {origin} (no answer within {} s)",
                FIRST_ANSWER.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(ferry_client::network(&e)),
        Ok(Ok(r)) => r,
    };
    let me = match resp.status().as_u16() {
        200 => resp.json::<Me>().await.map_err(|e| {
            ClientError::Protocol(format!("{origin} does not answer like a ferry server (GET /api/me: {e})"))
        })?,
        401 if token.is_some() => {
            let who = selected_user()
                .map(str::to_owned)
                .or_else(|| Some(Credentials::default_location().logins(&url).current).filter(|u| !u.is_empty()));
            let login = match &who {
                Some(u) => format!("ferry login -s {origin} --user {u}"),
                None => format!("ferry login -s {origin}"),
            };
            let whose = who.map(|u| format!(" for {u}")).unwrap_or_default();
            return Err(ClientError::Rejected {
                status: 401,
                reason: format!("your token{whose} on {origin} was revoked or has expired; run `{login}`"),
            });
        }
        401 => {
            return Err(ClientError::Rejected {
                status: 401,
                reason: format!("{origin} needs an account; run `ferry login -s {origin}`"),
            });
        }
        _ => return Err(ferry_client::refusal(resp).await),
    };
    Ok(Session { server: server.to_owned(), url, http, me })
}

impl Session {
    /// The tree path (no leading `/`) a remote path given on the command line names.
    pub fn remote(&self, given: &str) -> Result<String, ClientError> {
        resolve(&self.me.home, given, std::env::var("HOME").ok().as_deref())
    }

    /// The URL of a tree path under `/files/`.
    pub fn files_url(&self, tree_path: &str) -> Result<Url, ClientError> {
        let mut url = self.url.clone();
        {
            let mut segs = url.path_segments_mut().map_err(|()| bad_server(&self.server, "it cannot have a path"))?;
            segs.pop_if_empty().push("files");
            for s in tree_path.split('/').filter(|s| !s.is_empty()) {
                segs.push(s);
            }
        }
        Ok(url)
    }

    /// The URL of an API route (`api/files/move`).
    pub fn api(&self, route: &str) -> Result<Url, ClientError> {
        self.url.join(route).map_err(|e| bad_server(&self.server, e))
    }
}

/// The remote path model (see the module documentation). `local_home`: `$HOME`.
pub fn resolve(home: &str, given: &str, local_home: Option<&str>) -> Result<String, ClientError> {
    let given = match local_home.filter(|h| h.len() > 1) {
        Some(h) if given == h => "~",
        Some(h) => match given.strip_prefix(h).and_then(|r| r.strip_prefix('/')) {
            Some(rest) => return resolve(home, &format!("~/{rest}"), None),
            None => given,
        },
        None => given,
    };
    let joined = if let Some(abs) = given.strip_prefix('/') {
        abs.to_owned()
    } else if given == "~" || given.starts_with("~/") {
        format!("{home}/{}", &given[1..])
    } else if given.starts_with('~') {
        given.to_owned()
    } else {
        format!("{home}/{given}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                return Err(ClientError::Rejected {
                    status: 0,
                    reason: format!("{given:?}: `..` is not allowed in remote paths"),
                });
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_start_at_home_unless_absolute() {
        let r = |g: &str| resolve("~alice", g, Some("/home/al")).unwrap();
        assert_eq!(r("docs/a.txt"), "~alice/docs/a.txt");
        assert_eq!(r("."), "~alice");
        assert_eq!(r("/team/a.txt"), "team/a.txt");
        assert_eq!(r("/"), "");
        assert_eq!(r("~"), "~alice");
        assert_eq!(r("~/x/"), "~alice/x");
        assert_eq!(r("~bob/x"), "~bob/x");
        assert_eq!(r("/home/al"), "~alice", "the shell's expansion of ~");
        assert_eq!(r("/home/al/x"), "~alice/x");
        assert_eq!(r("/home/alx"), "home/alx");
        assert!(resolve("~alice", "a/../../b", None).is_err());
        assert_eq!(resolve("", "docs", None).unwrap(), "docs", "no accounts: the root is home");
    }
}

/// The one item whose id starts with `prefix` (ids may be shortened, as git's); `what` names
/// the kind ("waiting item", plural "waiting items").
pub fn by_prefix<'a, T>(
    items: &'a [T],
    prefix: &str,
    id: impl Fn(&T) -> &str,
    what: (&str, &str),
) -> Result<&'a T, ClientError> {
    let found: Vec<&T> = items.iter().filter(|i| id(i).starts_with(prefix)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(ClientError::Rejected { status: 404, reason: format!("no {} {prefix}", what.0) }),
        _ => Err(ClientError::Rejected {
            status: 0,
            reason: format!("{prefix} names {} {}; give more of the id", found.len(), what.1),
        }),
    }
}

/// `-s/--server`, for every command that talks to a server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArg {
    /// Server URL
    #[arg(short = 's', long = "server", env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
}

/// A Unix time as `YYYY-MM-DD HH:MM` (UTC).
pub fn format_time(unix: i64) -> String {
    ferry_core::utc::format_minute(unix)
}

/// A duration in seconds as "3 h", "2 d", "45 s".
pub fn format_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn dates() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00");
        assert_eq!(super::format_time(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(super::format_age(7200), "2 h");
    }
}
