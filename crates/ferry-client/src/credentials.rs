//! API tokens kept by the client, per server and user, in the platform config directory
//! (`~/.config/ferry/credentials.json` on Linux, or `$FERRY_CONFIG_DIR`), mode 0600.
//!
//! Each server (by origin) has the tokens of every user logged in there and the one used
//! when no user is named (the last one logged in). A file written by older clients (one
//! token per server) is read as a login of an unnamed user.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use reqwest::Url;
use serde::{Deserialize, Serialize};

/// The credentials file.
#[derive(Debug, Clone)]
pub struct Credentials {
    path: PathBuf,
}

/// The logins saved for one server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerLogins {
    /// The user whose token is used when none is named.
    pub current: String,
    /// Token per user name.
    pub tokens: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Logins(ServerLogins),
    /// One token, from a client before several logins were kept.
    Token(String),
}

/// The user name a token from an older file is kept under.
const UNNAMED: &str = "";

/// The key a server's logins are stored under: its origin.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Credentials {
    /// The default location.
    pub fn default_location() -> Self {
        let dir = std::env::var_os("FERRY_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| {
            directories::ProjectDirs::from("", "", "ferry")
                .map(|d| d.config_dir().to_path_buf())
                .unwrap_or_else(|| PathBuf::from(".ferry-config"))
        });
        Self { path: dir.join("credentials.json") }
    }

    /// Where the file is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn load(&self) -> BTreeMap<String, ServerLogins> {
        let raw: BTreeMap<String, Stored> =
            fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        raw.into_iter()
            .map(|(k, v)| {
                let logins = match v {
                    Stored::Logins(l) => l,
                    Stored::Token(t) => {
                        ServerLogins { current: UNNAMED.into(), tokens: [(UNNAMED.to_owned(), t)].into() }
                    }
                };
                (k, logins)
            })
            .collect()
    }

    fn store(&self, map: &BTreeMap<String, ServerLogins>) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(map).map_err(io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(tmp, &self.path)
    }

    /// The logins saved for the server of `url`.
    pub fn logins(&self, url: &Url) -> ServerLogins {
        self.load().remove(&origin(url)).unwrap_or_default()
    }

    /// The token of `user` (`None`: the current user) on the server of `url`.
    pub fn token_for(&self, url: &Url, user: Option<&str>) -> Option<String> {
        let mut l = self.logins(url);
        let user = user.map_or_else(|| l.current.clone(), str::to_owned);
        l.tokens.remove(&user)
    }

    /// Saves `user`'s token for the server of `url` and makes `user` the current one.
    pub fn save(&self, url: &Url, user: &str, token: &str) -> io::Result<()> {
        let mut map = self.load();
        let l = map.entry(origin(url)).or_default();
        l.tokens.remove(UNNAMED);
        l.tokens.insert(user.to_owned(), token.to_owned());
        l.current = user.to_owned();
        self.store(&map)
    }

    /// Forgets `user`'s (`None`: the current user's) token for the server of `url`;
    /// returns it. Another saved user becomes the current one.
    pub fn forget(&self, url: &Url, user: Option<&str>) -> io::Result<Option<String>> {
        let mut map = self.load();
        let key = origin(url);
        let Some(l) = map.get_mut(&key) else { return Ok(None) };
        let user = user.map_or_else(|| l.current.clone(), str::to_owned);
        let old = l.tokens.remove(&user);
        if l.current == user {
            l.current = l.tokens.keys().next().cloned().unwrap_or_default();
        }
        if l.tokens.is_empty() {
            map.remove(&key);
        }
        self.store(&map)?;
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_users_per_server_and_the_old_format() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials { path: dir.path().join("credentials.json") };
        let a = Url::parse("http://a.example:8080/x").unwrap();
        fs::write(c.path(), r#"{"http://a.example:8080": "fy_old"}"#).unwrap();
        assert_eq!(c.token_for(&a, None).as_deref(), Some("fy_old"));
        c.save(&a, "alice", "fy_a").unwrap();
        c.save(&a, "bob", "fy_b").unwrap();
        assert_eq!(c.token_for(&a, None).as_deref(), Some("fy_b"), "the last login is current");
        assert_eq!(c.token_for(&a, Some("alice")).as_deref(), Some("fy_a"));
        assert_eq!(c.token_for(&a, Some("carol")), None);
        assert_eq!(c.logins(&a).tokens.len(), 2, "the unnamed old token is replaced by named ones");
        assert_eq!(c.forget(&a, None).unwrap().as_deref(), Some("fy_b"));
        assert_eq!(c.token_for(&a, None).as_deref(), Some("fy_a"), "alice is current again");
        assert_eq!(c.forget(&a, Some("alice")).unwrap().as_deref(), Some("fy_a"));
        assert_eq!(c.logins(&a), ServerLogins::default());
    }
}
