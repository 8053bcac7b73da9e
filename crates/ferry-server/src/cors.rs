//! CORS, so that browser apps on other origins (Uppy, tus-js-client in someone's page) can
//! upload to and download from ferry, as they can with tusd.
//!
//! - A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before
//!   authentication (browsers send it without credentials), for every tus, download and API
//!   method and the headers they use. A tus `OPTIONS` without that header is tus discovery
//!   and goes on to the router.
//! - Every answer to a request with an `Origin` carries `Access-Control-Allow-Origin` and
//!   `Access-Control-Expose-Headers` (so a page can read `Location`, `Upload-Offset`, …).
//! - Without `cors_origins` any origin is allowed (`*`), which browsers honour only for
//!   requests that carry their credentials in a header (a bearer token or Basic): a page on
//!   another origin cannot ride on the web UI's session cookie. Listed origins are echoed
//!   with `Access-Control-Allow-Credentials: true`, so their pages may use the cookie (with
//!   the CSRF header, see `web_session.rs`); other origins get no CORS headers at all.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

const ALLOW_METHODS: &str = "GET, HEAD, POST, PATCH, PUT, DELETE, OPTIONS";

const ALLOW_HEADERS: &str = "Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, \
    Upload-Offset, Upload-Defer-Length, Upload-Concat, Upload-Checksum, Upload-Complete, \
    Upload-Draft-Interop-Version, X-HTTP-Method-Override, X-Requested-With, X-Ferry-CSRF, Range, \
    If-Range, If-Match, If-None-Match, If-Modified-Since, Repr-Digest, Want-Repr-Digest, Content-Digest, Trailer";

const EXPOSE_HEADERS: &str = "Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, \
    Upload-Defer-Length, Upload-Concat, Upload-Checksum, Upload-Complete, Upload-Limit, Tus-Resumable, \
    Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, ETag, Last-Modified, Content-Range, \
    Content-Length, Accept-Ranges, Repr-Digest";

/// How long a browser may cache a preflight's answer.
const MAX_AGE: &str = "86400";

/// What CORS allows for one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginAccess {
    /// Header credentials only (`Access-Control-Allow-Origin: *`).
    Any,
    /// A listed origin: echoed, with cookies.
    Listed,
    /// Not allowed: no CORS headers.
    Refused,
}

/// What `origin` may do under `cors_origins`.
/// `*` in the list stands for every other origin with header credentials only (never
/// with the cookie: a page that may use the cookie may read the CSRF token too).
pub fn access(cors_origins: &[String], origin: &str) -> OriginAccess {
    if cors_origins.iter().any(|o| o != "*" && o.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        OriginAccess::Listed
    } else if cors_origins.is_empty() || cors_origins.iter().any(|o| o == "*") {
        OriginAccess::Any
    } else {
        OriginAccess::Refused
    }
}

/// The CORS middleware (outside authentication).
pub async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else { return next.run(req).await };
    let allowed = access(&state.config.cors_origins, origin.to_str().unwrap_or(""));
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        if allow(h, &origin, allowed) {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if allow(h, &origin, allowed) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
    resp
}

/// Sets the allow-origin headers; false when the origin gets none.
fn allow(h: &mut HeaderMap, origin: &HeaderValue, allowed: OriginAccess) -> bool {
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    match allowed {
        OriginAccess::Any => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            true
        }
        OriginAccess::Listed => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            true
        }
        OriginAccess::Refused => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(access(&[], "https://a.example"), OriginAccess::Any);
        let listed = vec!["https://a.example".to_owned()];
        assert_eq!(access(&listed, "https://a.example"), OriginAccess::Listed);
        assert_eq!(access(&listed, "https://A.example"), OriginAccess::Listed);
        assert_eq!(access(&listed, "https://b.example"), OriginAccess::Refused);
        assert_eq!(access(&listed, "https://a.example.evil"), OriginAccess::Refused);
        let both = vec!["https://a.example".to_owned(), "*".to_owned()];
        assert_eq!(access(&both, "https://b.example"), OriginAccess::Any);
        assert_eq!(access(&both, "https://a.example"), OriginAccess::Listed);
    }
}
