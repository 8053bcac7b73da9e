//! WebDAV locks kept in the metadata store, so they survive a restart and every node
//! sharing the database sees them. The rules are `dav-server`'s in-memory lock system's
//! (which passes litmus), over rows instead of a tree: a lock on an ancestor counts when it
//! is deep, a lock on the path itself always; a deep check also looks below the path.
//! Lapsed locks are ignored and removed when met.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use ferry_store::{Metadata, StoredLock};
use futures_util::FutureExt;
use xmltree::Element;

/// Most locks one path may carry (shared locks pile up otherwise).
const MAX_LOCKS_PER_PATH: usize = 100;

/// The lock system over the metadata store.
#[derive(Debug, Clone)]
pub(crate) struct StoredLocks {
    meta: Arc<dyn Metadata>,
    /// For this request: whether any lock exists at all (`None` until asked; forgotten on
    /// every change), so a listing of a server without locks asks once, not per entry.
    any: Arc<std::sync::Mutex<Option<bool>>>,
}

/// Serializes this process's check-then-take of locks (two LOCKs racing for one path).
static TAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The tree path of a lock path: its segments joined, without the leading and trailing `/`.
fn key(path: &DavPath) -> String {
    String::from_utf8_lossy(path.as_bytes()).trim_matches('/').to_owned()
}

/// The path and its ancestors, root (`""`) first.
fn levels(key: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut acc = String::new();
    for seg in key.split('/').filter(|s| !s.is_empty()) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(seg);
        out.push(acc.clone());
    }
    out
}

fn to_dav(l: &StoredLock) -> Option<DavLock> {
    let mut path = DavPath::new(&l.url).ok()?;
    path.set_prefix(super::PREFIX).ok()?;
    let owner = l.owner_xml.as_deref().and_then(|x| Element::parse(x.as_bytes()).ok()).map(Box::new);
    Some(DavLock {
        token: l.token.clone(),
        path: Box::new(path),
        principal: l.principal.clone(),
        owner,
        timeout_at: l.timeout_at_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
        timeout: l.timeout_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        shared: l.shared,
        deep: l.deep,
    })
}

fn new_token() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("urn:uuid:{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

impl StoredLocks {
    pub(crate) fn new(meta: Arc<dyn Metadata>) -> Self {
        Self { meta, any: Arc::default() }
    }

    /// Whether any lock is stored (asked once per request until something changes).
    async fn any(&self) -> bool {
        if let Some(any) = *self.any.lock().unwrap_or_else(|e| e.into_inner()) {
            return any;
        }
        let any = self.meta.has_locks().await.unwrap_or(true);
        *self.any.lock().unwrap_or_else(|e| e.into_inner()) = Some(any);
        any
    }

    fn changed(&self) {
        *self.any.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Live locks on exactly `key` (lapsed ones are removed).
    async fn at(&self, key: &str) -> Vec<StoredLock> {
        if !self.any().await {
            return Vec::new();
        }
        let locks = self.meta.locks_at(key).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read WebDAV locks");
            Vec::new()
        });
        self.live(locks).await
    }

    async fn below(&self, key: &str) -> Vec<StoredLock> {
        if !self.any().await {
            return Vec::new();
        }
        let locks = self.meta.locks_below(key).await.unwrap_or_default();
        self.live(locks).await
    }

    async fn live(&self, locks: Vec<StoredLock>) -> Vec<StoredLock> {
        let now = now_ms();
        let mut out = Vec::with_capacity(locks.len());
        for l in locks {
            if l.timeout_at_ms.is_some_and(|t| t < now) {
                let _ = self.meta.remove_lock(&l.token).await;
            } else {
                out.push(l);
            }
        }
        out
    }

    /// Locks on the path and its ancestors that stand in the way (see the module docs).
    async fn check_to_path(&self, key: &str, by: &Submitted<'_>, shared_ok: bool) -> Result<(), StoredLock> {
        let levels = levels(key);
        let last = levels.len() - 1;
        let mut holds = false;
        let mut first_seen: Option<StoredLock> = None;
        for (i, level) in levels.iter().enumerate() {
            for l in self.at(level).await {
                if i < last && !l.deep {
                    continue;
                }
                if by.holds(&l) {
                    holds = true;
                } else {
                    if !l.shared {
                        return Err(l);
                    }
                    if !shared_ok {
                        first_seen.get_or_insert(l);
                    }
                }
            }
        }
        match first_seen {
            Some(l) if !holds => Err(l),
            _ => Ok(()),
        }
    }

    /// Locks on the path and below it that stand in the way.
    async fn check_from_path(&self, key: &str, by: &Submitted<'_>, shared_ok: bool) -> Result<(), StoredLock> {
        let mut all = self.at(key).await;
        all.extend(self.below(key).await);
        for l in all {
            if (!l.shared || !shared_ok) && !by.holds(&l) {
                return Err(l);
            }
        }
        Ok(())
    }

    /// The lock with `token` on the path or an ancestor.
    async fn lookup(&self, key: &str, token: &str) -> Option<StoredLock> {
        for level in levels(key) {
            if let Some(l) = self.at(&level).await.into_iter().find(|l| l.token == token) {
                return Some(l);
            }
        }
        None
    }
}

/// Who asks, with which lock tokens.
struct Submitted<'a> {
    principal: Option<&'a str>,
    /// Any holder of the token will do (dav-server's rule for some checks).
    ignore_principal: bool,
    tokens: &'a [String],
}

impl Submitted<'_> {
    /// Nobody: a new lock's conflicts.
    const NOBODY: Submitted<'static> = Submitted { principal: None, ignore_principal: true, tokens: &[] };

    /// Whether the request holds lock `l`: its token, submitted by its principal.
    fn holds(&self, l: &StoredLock) -> bool {
        self.tokens.contains(&l.token) && (self.ignore_principal || self.principal == l.principal.as_deref())
    }
}

fn refused(l: StoredLock) -> DavLock {
    to_dav(&l).unwrap_or_else(|| DavLock {
        token: l.token,
        path: Box::new(DavPath::from_uri(&http::Uri::from_static("/")).expect("a URI path is a DavPath")),
        principal: l.principal,
        owner: None,
        timeout_at: None,
        timeout: None,
        shared: l.shared,
        deep: l.deep,
    })
}

impl DavLockSystem for StoredLocks {
    fn lock(
        &self,
        path: &DavPath,
        principal: Option<&str>,
        owner: Option<&Element>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> LsFuture<'_, Result<DavLock, DavLock>> {
        let key = key(path);
        let url = path.with_prefix().as_url_string();
        let principal = principal.map(str::to_owned);
        let owner_xml = owner.and_then(serialize);
        let owner_element = owner.cloned().map(Box::new);
        let path = path.clone();
        async move {
            let _one_at_a_time = TAKING.lock().await;
            self.check_to_path(&key, &Submitted::NOBODY, shared).await.map_err(refused)?;
            if deep {
                self.check_from_path(&key, &Submitted::NOBODY, shared).await.map_err(refused)?;
            }
            let here = self.at(&key).await;
            if here.len() >= MAX_LOCKS_PER_PATH {
                return Err(refused(here.into_iter().next().expect("at least one lock")));
            }
            let lock = StoredLock {
                token: new_token(),
                path: key,
                url,
                principal: principal.clone(),
                owner_xml,
                timeout_at_ms: timeout.map(|d| now_ms() + d.as_millis() as i64),
                timeout_ms: timeout.map(|d| d.as_millis() as i64),
                shared,
                deep,
            };
            self.changed();
            if let Err(e) = self.meta.put_lock(&lock).await {
                tracing::warn!(error = %e, "cannot store a WebDAV lock");
                return Err(refused(lock));
            }
            Ok(DavLock {
                token: lock.token,
                path: Box::new(path),
                principal,
                owner: owner_element,
                timeout_at: timeout.map(|d| SystemTime::now() + d),
                timeout,
                shared,
                deep,
            })
        }
        .boxed()
    }

    fn unlock(&self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        let (key, token) = (key(path), token.to_owned());
        async move {
            self.changed();
            match self.lookup(&key, &token).await {
                Some(l) => self.meta.remove_lock(&l.token).await.map(drop).map_err(drop),
                None => Err(()),
            }
        }
        .boxed()
    }

    fn refresh(&self, path: &DavPath, token: &str, timeout: Option<Duration>) -> LsFuture<'_, Result<DavLock, ()>> {
        let (key, token) = (key(path), token.to_owned());
        async move {
            let mut l = self.lookup(&key, &token).await.ok_or(())?;
            l.timeout_at_ms = timeout.map(|d| now_ms() + d.as_millis() as i64);
            l.timeout_ms = timeout.map(|d| d.as_millis() as i64);
            self.meta.put_lock(&l).await.map_err(drop)?;
            to_dav(&l).ok_or(())
        }
        .boxed()
    }

    fn check(
        &self,
        path: &DavPath,
        principal: Option<&str>,
        ignore_principal: bool,
        deep: bool,
        submitted_tokens: &[String],
    ) -> LsFuture<'_, Result<(), DavLock>> {
        let key = key(path);
        let principal = principal.map(str::to_owned);
        let tokens = submitted_tokens.to_vec();
        async move {
            let by = Submitted { principal: principal.as_deref(), ignore_principal, tokens: &tokens };
            self.check_to_path(&key, &by, false).await.map_err(refused)?;
            if deep {
                self.check_from_path(&key, &by, false).await.map_err(refused)?;
            }
            Ok(())
        }
        .boxed()
    }

    fn discover(&self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        let key = key(path);
        async move {
            let mut out = Vec::new();
            for level in levels(&key) {
                out.extend(self.at(&level).await.iter().filter_map(to_dav));
            }
            out
        }
        .boxed()
    }

    fn delete(&self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        let key = key(path);
        async move {
            let mut all = self.at(&key).await;
            all.extend(self.below(&key).await);
            for l in all {
                self.meta.remove_lock(&l.token).await.map_err(drop)?;
            }
            self.changed();
            Ok(())
        }
        .boxed()
    }
}

/// An element as text, every namespace given a prefix (the writer needs one).
fn serialize(element: &Element) -> Option<String> {
    fn prefix_all(e: &mut Element, names: &mut Vec<String>) {
        if let Some(ns) = e.namespace.clone() {
            let prefix = e.prefix.clone().unwrap_or_else(|| {
                let i = names.iter().position(|n| *n == ns).unwrap_or_else(|| {
                    names.push(ns.clone());
                    names.len() - 1
                });
                format!("n{i}")
            });
            e.namespaces.get_or_insert_with(xmltree::Namespace::empty).force_put(prefix.clone(), ns);
            e.prefix = Some(prefix);
        }
        for child in e.children.iter_mut() {
            if let xmltree::XMLNode::Element(c) = child {
                prefix_all(c, names);
            }
        }
    }
    let mut e = element.clone();
    prefix_all(&mut e, &mut Vec::new());
    let mut buf = Vec::new();
    let config = xmltree::EmitterConfig::new().write_document_declaration(false);
    e.write_with_config(&mut buf, config).ok()?;
    String::from_utf8(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_in_a_default_namespace_survive_storage() {
        let lockinfo =
            Element::parse(&b"<lockinfo xmlns='DAV:'><owner>litmus <b xmlns='urn:x'>test</b></owner></lockinfo>"[..])
                .unwrap();
        let mut owner = lockinfo.get_child("owner").unwrap().clone();
        owner.prefix = Some("D".into()); // as dav-server hands it over
        let text = serialize(&owner).expect("serializable");
        let back = Element::parse(text.as_bytes()).unwrap();
        assert_eq!(back.name, "owner");
        assert_eq!(back.namespace.as_deref(), Some("DAV:"));
        assert_eq!(back.get_text().as_deref(), Some("litmus "));
        assert_eq!(back.get_child("b").and_then(|b| b.namespace.clone()).as_deref(), Some("urn:x"));
    }

    #[test]
    fn levels_run_from_the_root() {
        assert_eq!(levels(""), vec![""]);
        assert_eq!(levels("~a/b/c"), vec!["", "~a", "~a/b", "~a/b/c"]);
    }

    #[test]
    fn tokens_look_like_uuid_urns() {
        let t = new_token();
        assert!(t.starts_with("urn:uuid:") && t.len() == 45, "{t}");
        assert_ne!(t, new_token());
    }
}
