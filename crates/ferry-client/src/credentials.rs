//! API tokens kept by the client, per server, in the platform config directory
//! (`~/.config/ferry/credentials.json` on Linux, or `$FERRY_CONFIG_DIR`), mode 0600.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use reqwest::Url;

/// The credentials file.
#[derive(Debug, Clone)]
pub struct Credentials {
    path: PathBuf,
}

/// The key a server's token is stored under: its origin.
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

    fn load(&self) -> BTreeMap<String, String> {
        fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn store(&self, map: &BTreeMap<String, String>) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(map).map_err(io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(tmp, &self.path)
    }

    /// The token saved for the server of `url`.
    pub fn token_for(&self, url: &Url) -> Option<String> {
        self.load().remove(&origin(url))
    }

    /// Saves a token for the server of `url`.
    pub fn save(&self, url: &Url, token: &str) -> io::Result<()> {
        let mut map = self.load();
        map.insert(origin(url), token.to_owned());
        self.store(&map)
    }

    /// Forgets the token for the server of `url`; returns it.
    pub fn forget(&self, url: &Url) -> io::Result<Option<String>> {
        let mut map = self.load();
        let old = map.remove(&origin(url));
        self.store(&map)?;
        Ok(old)
    }
}
