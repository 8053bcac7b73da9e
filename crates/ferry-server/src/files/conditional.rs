//! Validators and conditional requests for downloads (RFC 9110 §8.8, §13).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;

/// The validators of one file version.
#[derive(Debug, Clone)]
pub struct Validators {
    /// Strong entity tag, quoted.
    pub etag: String,
    /// Modification time, truncated to whole seconds.
    pub last_modified: SystemTime,
    /// Whether Last-Modified is a strong validator (at least 1 s before now, RFC 9110 §8.8.2.2).
    pub date_is_strong: bool,
}

impl Validators {
    /// Validators for a file: the ETag is the SHA-256 when known, else size and mtime.
    pub fn new(size: u64, modified: SystemTime, sha256: Option<&[u8; 32]>) -> Self {
        let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        let etag = match sha256 {
            Some(sha) => format!("\"{}\"", ferry_core::digest::to_hex(sha)),
            None => format!("\"{size:x}-{:x}\"", since.as_nanos()),
        };
        let last_modified = UNIX_EPOCH + Duration::from_secs(since.as_secs());
        let date_is_strong = SystemTime::now().duration_since(modified).is_ok_and(|d| d >= Duration::from_secs(1));
        Self { etag, last_modified, date_is_strong }
    }
}

/// What the preconditions say.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the request.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

/// Does an `If-Match`/`If-None-Match` list match `etag`? Strong comparison refuses weak tags.
fn list_matches(list: &str, etag: &str, weak_compare: bool) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    list.split(',').map(str::trim).any(|tag| {
        let (weak, opaque) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        opaque == etag && (weak_compare || !weak)
    })
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since in the
/// order RFC 9110 §13.2.2 gives, for a GET or HEAD.
pub fn evaluate(h: &HeaderMap, v: &Validators) -> Precondition {
    if let Some(im) = header(h, "if-match") {
        if !list_matches(im, &v.etag, false) {
            return Precondition::Failed;
        }
    } else if let Some(since) = header(h, "if-unmodified-since").and_then(parse_date)
        && v.last_modified > since
    {
        return Precondition::Failed;
    }
    if let Some(inm) = header(h, "if-none-match") {
        if list_matches(inm, &v.etag, true) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = header(h, "if-modified-since").and_then(parse_date)
        && v.last_modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a Range may be honoured given `If-Range` (absent: yes). A strong ETag must match
/// exactly; a date counts only when Last-Modified is strong and equal.
pub fn if_range_allows(h: &HeaderMap, v: &Validators) -> bool {
    let Some(ir) = header(h, "if-range") else { return true };
    let ir = ir.trim();
    if ir.starts_with('"') || ir.starts_with("W/") {
        return ir == v.etag;
    }
    match parse_date(ir) {
        Some(date) => v.date_is_strong && date == v.last_modified,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn old() -> Validators {
        Validators::new(10, UNIX_EPOCH + Duration::from_secs(1_000_000), None)
    }

    #[test]
    fn if_none_match_and_if_match() {
        let v = old();
        assert_eq!(evaluate(&hm(&[("if-none-match", &v.etag)]), &v), Precondition::NotModified);
        assert_eq!(evaluate(&hm(&[("if-none-match", &format!("W/{}", v.etag))]), &v), Precondition::NotModified);
        assert_eq!(evaluate(&hm(&[("if-none-match", "\"other\"")]), &v), Precondition::Proceed);
        assert_eq!(evaluate(&hm(&[("if-match", "\"other\"")]), &v), Precondition::Failed);
        assert_eq!(
            evaluate(&hm(&[("if-match", &format!("W/{}", v.etag))]), &v),
            Precondition::Failed,
            "strong compare"
        );
        assert_eq!(evaluate(&hm(&[("if-match", "*")]), &v), Precondition::Proceed);
    }

    #[test]
    fn dates() {
        let v = old();
        let lm = httpdate::fmt_http_date(v.last_modified);
        assert_eq!(evaluate(&hm(&[("if-modified-since", &lm)]), &v), Precondition::NotModified);
        let earlier = httpdate::fmt_http_date(v.last_modified - Duration::from_secs(5));
        assert_eq!(evaluate(&hm(&[("if-unmodified-since", &earlier)]), &v), Precondition::Failed);
        assert_eq!(evaluate(&hm(&[("if-modified-since", &earlier)]), &v), Precondition::Proceed);
    }

    #[test]
    fn if_range() {
        let v = old();
        assert!(if_range_allows(&hm(&[]), &v));
        assert!(if_range_allows(&hm(&[("if-range", &v.etag)]), &v));
        assert!(!if_range_allows(&hm(&[("if-range", "\"nope\"")]), &v));
        assert!(!if_range_allows(&hm(&[("if-range", &format!("W/{}", v.etag))]), &v), "weak never matches");
        assert!(if_range_allows(&hm(&[("if-range", &httpdate::fmt_http_date(v.last_modified))]), &v));
        let fresh = Validators::new(10, SystemTime::now(), None);
        let date = httpdate::fmt_http_date(fresh.last_modified);
        assert!(!if_range_allows(&hm(&[("if-range", &date)]), &fresh), "a just-modified date is weak");
    }
}
