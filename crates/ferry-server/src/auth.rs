//! Accounts on every route: who is asking, and what they may touch.
//!
//! [`ROUTE_RULES`] gives every route an explicit access rule; the [`authenticate`]
//! middleware refuses any request whose route has no rule (fail closed), lets public routes
//! through, and for the rest requires `Authorization: Bearer <token>` (or HTTP Basic with a
//! password or a token, for curl and aria2). The resulting [`Identity`] travels in the
//! request's extensions; handlers ask it whether a tree path may be read or written and
//! whether an upload is the caller's own.
//!
//! Tree layout with accounts: each user's home is the top-level folder `~name`; other
//! top-level folders are shared folders, readable (and, with a write grant, writable) by the
//! users they are granted to. Admins may touch everything. `ferry serve --no-auth` turns all
//! of this off for a trusted LAN: every request is [`Identity::Open`].

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ferry_core::TreePath;
use ferry_store::{Grant, User};
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A logged-in user (ownership and tree permissions are checked by the handler).
    User,
}

/// One route: methods (`*` for any), a path pattern (`{x}` one segment, `{*x}` the rest)
/// and its rule.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    /// Methods, `|`-separated, or `*`.
    pub methods: &'static str,
    /// Path pattern.
    pub path: &'static str,
    /// Access rule.
    pub access: Access,
    /// What it does (the OpenAPI summary).
    pub summary: &'static str,
}

const fn rule(methods: &'static str, path: &'static str, access: Access, summary: &'static str) -> RouteRule {
    RouteRule { methods, path, access, summary }
}

/// The methods WebDAV answers (RFC 4918's, SabreDAV's PATCH, IT Hit's REPORT and CANCELUPLOAD).
pub const DAV_METHODS: &str =
    "OPTIONS|GET|HEAD|PUT|PATCH|DELETE|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|LOCK|UNLOCK|REPORT|CANCELUPLOAD";

/// Every route the server answers, with its access rule. A request matching none is
/// refused with 404, so a route added without a rule cannot be reached.
pub const ROUTE_RULES: &[RouteRule] = &[
    rule("GET|HEAD", "/", Access::Public, "The web app (log in, browse, upload, send and receive)"),
    rule("GET|HEAD", "/ui/{*file}", Access::Public, "The web app's scripts, styles and vendored libraries"),
    rule("GET|HEAD", "/healthz", Access::Public, "Liveness"),
    rule("GET|HEAD", "/readyz", Access::Public, "Readiness: the database and the byte storage answer"),
    rule(
        "GET",
        "/metrics",
        Access::Public,
        "Prometheus metrics (admins only, unless the server runs with --metrics-public)",
    ),
    rule("POST", "/api/login", Access::Public, "Log in with a password; returns an API token"),
    rule("GET", "/api/openapi.json", Access::Public, "This document"),
    rule("GET", "/api/me", Access::User, "The caller: name, home, quota, usage, shared folders"),
    rule("DELETE", "/api/tokens/current", Access::User, "Revoke the token this request carries (log out)"),
    rule(
        "GET",
        "/api/events",
        Access::User,
        "Server-Sent Events for the caller (new relay items, delivery changes), with heartbeats",
    ),
    rule("POST", "/api/presence", Access::User, "Report that the caller is online (every heartbeat while watching)"),
    rule("GET", "/api/presence/{user}", Access::User, "Whether a user is online (reported within three heartbeats)"),
    rule("GET", "/api/relay/inbox", Access::User, "Relay items waiting for the caller"),
    rule("GET", "/api/relay/outbox", Access::User, "Relay items the caller sent, with every recipient's state"),
    rule(
        "GET|HEAD",
        "/api/relay/items/{id}/content",
        Access::User,
        "A relay item's bytes (Range, If-Range, Repr-Digest)",
    ),
    rule("POST", "/api/relay/items/{id}/ack", Access::User, "Acknowledge a verified copy by its SHA-256"),
    rule("POST", "/api/relay/items/{id}/decline", Access::User, "Decline a relay item"),
    rule("GET", "/api/p2p", Access::User, "Peer-to-peer: the embedded relay's ports and certificate"),
    rule(
        "POST",
        "/api/p2p/endpoint",
        Access::User,
        "Peer-to-peer: register the caller's endpoint (signed with its key; receive: true when it takes transfers); renew with every heartbeat",
    ),
    rule(
        "DELETE",
        "/api/p2p/endpoint",
        Access::User,
        "Peer-to-peer: the caller's client goes offline for direct transfers",
    ),
    rule("GET", "/api/p2p/peers/{user}", Access::User, "Peer-to-peer: a user's endpoint while their client is online"),
    rule("GET", "/api/p2p/endpoints/{id}", Access::User, "Peer-to-peer: whose client an online endpoint is"),
    rule(
        "DELETE",
        "/api/p2p/endpoints/{id}",
        Access::User,
        "Peer-to-peer: the caller's client with that endpoint goes offline for direct transfers",
    ),
    rule(
        "POST",
        "/api/files/move",
        Access::User,
        "Move or rename a file or folder: {from, to, overwrite} (tree paths)",
    ),
    rule("POST", "/api/files/mkdir", Access::User, "Make a folder: {path, parents} (a tree path)"),
    rule("GET", "/api/uploads", Access::User, "The caller's unfinished uploads (cancel one with DELETE /tus/{id})"),
    rule("GET|POST", "/api/users", Access::User, "Admins: list users, add one {name, password, admin, quota}"),
    rule("DELETE", "/api/users/{name}", Access::User, "Admins: remove a user (their files stay)"),
    rule(
        "PUT",
        "/api/users/{name}/password",
        Access::User,
        "Admins: set a password {password} (revokes the user's tokens)",
    ),
    rule("POST", "/api/users/{name}/grants", Access::User, "Admins: share a folder {path, write}"),
    rule("POST", "/api/dedup", Access::User, "Instant upload: ask for a proof-of-possession challenge"),
    rule(
        "POST",
        "/api/dedup/{challenge}",
        Access::User,
        "Instant upload: answer the challenge; the server places its copy",
    ),
    rule("OPTIONS", "/tus", Access::Public, "tus capabilities"),
    rule("OPTIONS", "/tus/", Access::Public, "tus capabilities"),
    rule("OPTIONS", "/tus/{id}", Access::Public, "tus capabilities"),
    rule("POST", "/tus", Access::User, "tus: create an upload (creation, creation-with-upload, concatenation)"),
    rule("POST", "/tus/", Access::User, "tus: create an upload (creation, creation-with-upload, concatenation)"),
    rule(
        "HEAD|PATCH|DELETE|POST|GET|PUT",
        "/tus/{id}",
        Access::User,
        "tus: offset (HEAD), append (PATCH), terminate (DELETE); POST with X-HTTP-Method-Override",
    ),
    rule("GET|HEAD", "/files", Access::User, "The tree root (JSON listing)"),
    rule("GET|HEAD", "/files/", Access::User, "The tree root (JSON listing)"),
    rule(
        "GET|HEAD|DELETE",
        "/files/{*path}",
        Access::User,
        "Download a file (Range, If-Range, Repr-Digest), list a folder, or remove either (DELETE, ?recursive=true for a folder)",
    ),
    rule(DAV_METHODS, "/dav", Access::User, "WebDAV: the tree root"),
    rule(DAV_METHODS, "/dav/", Access::User, "WebDAV: the tree root"),
    rule(
        DAV_METHODS,
        "/dav/{*path}",
        Access::User,
        "WebDAV class 1 and 2 with resumable uploads (Content-Range PUT, SabreDAV PATCH, upload-progress REPORT, CANCELUPLOAD)",
    ),
];

impl RouteRule {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let method_ok = self.methods == "*" || self.methods.split('|').any(|m| m == method.as_str());
        method_ok && path_matches(self.path, path)
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    if let Some(prefix) = pattern.split("{*").next().filter(|_| pattern.contains("{*")) {
        return path.starts_with(prefix) && path.len() > prefix.len();
    }
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
}

/// The rule for a request, if any.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static RouteRule> {
    ROUTE_RULES.iter().find(|r| r.matches(method, path))
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Accounts are off (`--no-auth`): everything is allowed.
    Open,
    /// Nobody logged in, on a public route.
    Anonymous,
    /// A user, with their shared-folder grants.
    User(User, Vec<Grant>),
}

impl Identity {
    /// The user's id, for ownership.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Self::User(u, _) => Some(u.id),
            _ => None,
        }
    }

    /// An admin (or accounts are off): may touch everything.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Open) || matches!(self, Self::User(u, _) if u.admin)
    }

    /// Where the user's relative paths start: `~name`, or the tree root without accounts.
    pub fn home(&self) -> TreePath {
        match self {
            Self::User(u, _) => TreePath::parse(&format!("~{}", u.name)).unwrap_or_default(),
            _ => TreePath::root(),
        }
    }

    fn allowed(&self, path: &TreePath, write: bool) -> bool {
        if self.is_admin() {
            return true;
        }
        let Self::User(u, grants) = self else { return false };
        let mut parts = path.components();
        let Some(top) = parts.next() else { return !write };
        if top == format!("~{}", u.name) {
            return true;
        }
        let text = path.to_string();
        grants.iter().any(|g| (text == g.path || text.starts_with(&format!("{}/", g.path))) && (g.write || !write))
    }

    /// May this identity read `path` (the tree root lists only what it may read)?
    pub fn may_read(&self, path: &TreePath) -> bool {
        self.allowed(path, false)
    }

    /// May it write `path`?
    pub fn may_write(&self, path: &TreePath) -> bool {
        self.allowed(path, true)
    }

    /// May it act on an upload created by `owner`?
    pub fn owns(&self, owner: Option<i64>) -> bool {
        self.is_admin() || (owner.is_some() && owner == self.user_id())
    }

    /// The user's quota, if limited.
    pub fn quota(&self) -> Option<(i64, u64)> {
        match self {
            Self::User(u, _) if !u.admin => u.quota.map(|q| (u.id, q)),
            _ => None,
        }
    }
}

/// An argon2id hash of a password, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| ApiError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Whether `password` matches a stored PHC hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Checks `password` for a user who may not exist: an unknown user costs the same argon2id
/// verification as a known one (against a fixed dummy hash), so timing does not tell
/// which names exist. `memory` is the argon2 working memory, reused from one check to the
/// next (a fresh 19 MiB per check was kept by the allocator, thread after thread).
pub fn verify_login_in(password: &str, hash: Option<&str>, memory: &mut Vec<argon2::Block>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match hash {
        Some(h) => verify_in(password, h, memory),
        None => {
            let dummy = DUMMY.get_or_init(|| hash_password("ferry dummy password").unwrap_or_default());
            let _ = verify_in(password, dummy, memory);
            false
        }
    }
}

/// Verifies `password` against a PHC argon2 hash using `memory` as the working memory.
fn verify_in(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::Output;
    use argon2::{Algorithm, Params, Version};
    /// Hashes asking for more than 256 MiB are refused rather than computed.
    const MAX_BLOCKS: usize = 256 << 10;
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let (Ok(params), Ok(algorithm)) = (Params::try_from(&parsed), Algorithm::try_from(parsed.algorithm)) else {
        return false;
    };
    let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && Output::new(&out).is_ok_and(|o| o == expected) // constant-time comparison
}

/// A fresh API token and the SHA-256 the server stores.
pub fn new_token() -> (String, [u8; 32]) {
    let token = format!("fy_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let sha = Sha256::digest(token.as_bytes()).into();
    (token, sha)
}

/// The SHA-256 of a presented token.
pub fn token_sha(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The bearer token of a request, if it carries one.
pub fn bearer(req: &Request) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// What a request proved itself with, kept so that long-lived responses (event streams)
/// can check it is still valid: a token (revoked by logout or a new password) or a
/// password (changed, or the user removed).
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token, by its SHA-256.
    Token([u8; 32]),
    /// A password, by the user's name and the hash it matched.
    Password {
        /// The user's name.
        name: String,
        /// The stored hash the password matched.
        hash: String,
    },
}

impl Credential {
    /// Whether the credential would still let its user in.
    pub async fn still_valid(&self, state: &AppState) -> bool {
        match self {
            Credential::Token(sha) => state.meta.user_by_token(sha).await.is_ok_and(|u| u.is_some()),
            Credential::Password { name, hash } => {
                state.meta.user_by_name(name).await.is_ok_and(|u| u.is_some_and(|(_, h)| &h == hash))
            }
        }
    }
}

/// The client's address, when the server knows it (not in in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

async fn identify(
    state: &AppState,
    auth: Option<String>,
    client: ClientAddr,
) -> Result<Option<(User, Credential)>, ApiError> {
    let Some(auth) = auth else { return Ok(None) };
    if let Some(token) = auth.strip_prefix("Bearer ") {
        let sha = token_sha(token.trim());
        return Ok(state.meta.user_by_token(&sha).await?.map(|u| (u, Credential::Token(sha))));
    }
    if let Some(b64) = auth.strip_prefix("Basic ") {
        let Some((name, secret)) = STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())))
        else {
            return Ok(None);
        };
        if secret.starts_with("fy_") {
            let sha = token_sha(&secret);
            return Ok(state
                .meta
                .user_by_token(&sha)
                .await?
                .filter(|u| u.name == name)
                .map(|u| (u, Credential::Token(sha))));
        }
        let found = state.meta.user_by_name(&name).await?;
        let hash = found.as_ref().map(|(_, h)| h.as_str());
        let ok = state.passwords.check(&name, &secret, hash, client.0).await?;
        return Ok(found.filter(|_| ok).map(|(user, hash)| (user, Credential::Password { name, hash })));
    }
    Ok(None)
}

/// Applies [`ROUTE_RULES`] and attaches the caller's [`Identity`].
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // The tus routes act on `X-HTTP-Method-Override`, so their rule is the overriding
    // method's: an OPTIONS that means POST needs what a POST needs.
    let method =
        if req.uri().path().starts_with("/tus") { crate::tus::effective_method(&req) } else { req.method().clone() };
    let Some(rule) = rule_for(&method, req.uri().path()) else {
        return ApiError::NotFound("no such route".into()).into_response();
    };
    let client =
        ClientAddr(req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()));
    req.extensions_mut().insert(client);
    let identity = if !state.config.auth {
        Identity::Open
    } else {
        let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // The web UI's cookie counts only when the headers carry no credentials.
        let cookie = if auth.is_none() { crate::web_session::token(req.headers()) } else { None };
        let auth = auth.or_else(|| cookie.as_ref().map(|t| format!("Bearer {t}")));
        match identify(&state, auth, client).await {
            Err(e) => return e.into_response(),
            Ok(Some((user, credential))) => match state.meta.grants(user.id).await {
                Ok(grants) => {
                    if let Some(token) = cookie {
                        if let Err(e) = crate::web_session::check(&state, req.headers(), &method, &token) {
                            return e.into_response();
                        }
                        req.extensions_mut().insert(crate::web_session::CookieSession { token });
                    }
                    req.extensions_mut().insert(credential);
                    Identity::User(user, grants)
                }
                Err(e) => return ApiError::from(e).into_response(),
            },
            Ok(None) if rule.access == Access::Public => Identity::Anonymous,
            Ok(None) => {
                let mut resp = ApiError::Unauthorized.into_response();
                // The web UI handles its own logins: no browser password dialog for it.
                if !req.headers().contains_key("x-requested-with") {
                    resp.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"ferry\", Basic realm=\"ferry\""),
                    );
                }
                return resp;
            }
        }
    };
    let user = match &identity {
        Identity::User(u, _) => Some(crate::logging::LoggedUser(u.name.clone())),
        _ => None,
    };
    req.extensions_mut().insert(identity);
    let mut resp = next.run(req).await;
    if let Some(user) = user {
        resp.extensions_mut().insert(user);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_cost_a_verification_and_never_pass() {
        let hash = hash_password("right").unwrap();
        let mut memory = Vec::new();
        assert!(verify_login_in("right", Some(&hash), &mut memory));
        assert!(!verify_login_in("wrong", Some(&hash), &mut memory));
        assert!(!verify_login_in("right", None, &mut memory));
        assert!(verify_login_in("right", Some(&hash), &mut memory), "the memory is reused");
        assert!(!verify_login_in("ferry dummy password", None, &mut memory), "the dummy hash never lets anyone in");
    }

    #[test]
    fn patterns() {
        assert!(path_matches("/tus/{id}", "/tus/abc"));
        assert!(!path_matches("/tus/{id}", "/tus/abc/def"));
        assert!(!path_matches("/tus/{id}", "/tus/"));
        assert!(path_matches("/files/{*path}", "/files/a/b"));
        assert!(!path_matches("/files/{*path}", "/files/"));
        assert_eq!(rule_for(&Method::GET, "/healthz").map(|r| r.access), Some(Access::Public));
        assert_eq!(rule_for(&Method::PATCH, "/tus/x").map(|r| r.access), Some(Access::User));
        assert!(rule_for(&Method::GET, "/secret").is_none(), "unlisted routes have no rule");
    }

    #[test]
    fn tree_permissions() {
        let alice = User { id: 1, name: "alice".into(), admin: false, quota: None };
        let id = Identity::User(alice, vec![Grant { path: "team".into(), write: false }]);
        let p = |s: &str| TreePath::parse(s).unwrap();
        assert!(id.may_write(&p("~alice/x")));
        assert!(!id.may_read(&p("~bob/x")));
        assert!(id.may_read(&p("team/doc")) && !id.may_write(&p("team/doc")));
        assert!(!id.may_read(&p("teammate/doc")), "a grant covers its folder, not a name prefix");
        assert!(id.owns(Some(1)) && !id.owns(Some(2)) && !id.owns(None));
        assert!(Identity::Open.may_write(&p("anything")));
    }

    #[test]
    fn passwords_and_tokens() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h) && !verify_password("nope", &h));
        let (t, sha) = new_token();
        assert!(t.starts_with("fy_") && token_sha(&t) == sha);
    }
}
