//! The web UI's session: an API token kept in an `HttpOnly; SameSite=Strict` cookie, so the
//! page's scripts never hold it and the browser's own downloads (links, Range resumes) are
//! authenticated.
//!
//! `POST /api/login` with `"cookie": true` sets the cookie and answers a CSRF token instead
//! of the token itself; `GET /api/me` repeats the CSRF token for a page that was reloaded.
//! A request authenticated by the cookie (and by nothing in its headers) is refused when it
//! changes anything (every method but GET, HEAD and OPTIONS; tus's method override counts)
//! unless it carries `X-Ferry-CSRF` with that token, and whatever its method when its
//! `Origin` is neither the server's own nor one listed in `cors_origins`. The CSRF token is
//! derived from the session token (SHA-256 with a fixed label), so nothing is stored for it
//! and a logout or a new password ends both.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use sha2::{Digest as _, Sha256};

use crate::{ApiError, AppState};

/// The cookie's name.
pub const COOKIE: &str = "ferry_session";
/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-ferry-csrf";
/// How long the browser keeps the cookie (the token lives until logout or a new password).
const MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// The request's session token from its cookie, if any.
pub fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token that goes with a session token.
pub fn csrf_for(token: &str) -> String {
    let digest = Sha256::new().chain_update(b"ferry-csrf\0").chain_update(token.as_bytes()).finalize();
    ferry_core::digest::to_hex(&digest[..16])
}

/// `Set-Cookie` for a new session (`Secure` when the server speaks HTTPS).
pub fn set_cookie(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECS}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("ferry_session=; Path=/; Max-Age=0"))
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("ferry_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The cookie session of a request (inserted by authentication when the cookie was what
/// identified the caller).
#[derive(Debug, Clone)]
pub struct CookieSession {
    /// The session token.
    pub token: String,
}

/// Whether a cookie-authenticated request may go on (see the module documentation).
pub fn check(state: &AppState, headers: &HeaderMap, method: &Method, token: &str) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !own_origin(state, headers, origin)
        && crate::cors::access(&state.config.cors_origins, origin) != crate::cors::OriginAccess::Listed
    {
        return Err(ApiError::Forbidden(format!(
            "the session cookie is not accepted from pages on {origin}; send a bearer token instead"
        )));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !constant_time_eq(given.as_bytes(), csrf_for(token).as_bytes()) {
        return Err(ApiError::Forbidden(
            "a change made with the session cookie needs the X-Ferry-CSRF header from the login".into(),
        ));
    }
    Ok(())
}

/// Whether `origin` is the server's own: the `Host` the request was sent to (or, behind a
/// proxy, `X-Forwarded-Host`), whatever the scheme.
fn own_origin(state: &AppState, headers: &HeaderMap, origin: &str) -> bool {
    let Some(host) = origin.split_once("://").map(|(_, h)| h) else { return false };
    let forwarded = state.config.behind_proxy.then(|| headers.get("x-forwarded-host")).flatten();
    forwarded
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| h.eq_ignore_ascii_case(host))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; ferry_session=fy_abc ; b=2"));
        assert_eq!(token(&h).as_deref(), Some("fy_abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("xferry_session=fy_abc"));
        assert_eq!(token(&h), None);
        assert_eq!(csrf_for("fy_abc"), csrf_for("fy_abc"));
        assert_ne!(csrf_for("fy_abc"), csrf_for("fy_abd"));
        assert_eq!(csrf_for("fy_abc").len(), 32);
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
