//! tus 1.0 header values: versions, extensions, offsets and lengths, concatenation.

use crate::UploadId;

/// The protocol version ferry speaks.
pub const TUS_VERSION: &str = "1.0.0";

/// Every tus extension ferry implements, in the order advertised in `Tus-Extension`.
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,checksum,checksum-trailer,expiration,concatenation,concatenation-unfinished";

/// The `Content-Type` a PATCH (or a POST carrying data) must have.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The largest value tus lets an offset or length take (it must fit an i64).
pub const MAX_TUS_INTEGER: u64 = i64::MAX as u64;

/// Parses `Upload-Offset`/`Upload-Length`: ASCII digits only (no sign, no exponent,
/// no spaces), at most `i64::MAX`.
pub fn parse_tus_integer(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|v| *v <= MAX_TUS_INTEGER)
}

/// The value of an `Upload-Concat` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadConcat {
    /// `partial`: this upload is a part of a later final upload.
    Partial,
    /// `final;<url> <url>…`: this upload is the concatenation of the listed partial uploads.
    Final(Vec<UploadId>),
}

/// Why an `Upload-Concat` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConcatError {
    /// Neither `partial` nor `final;…`.
    #[error("Upload-Concat must be \"partial\" or \"final;<url> …\"")]
    Malformed,
    /// A `final` header listing no uploads.
    #[error("Upload-Concat final lists no partial uploads")]
    Empty,
    /// A listed URL does not name an upload of this server.
    #[error("Upload-Concat names {0:?}, which is not an upload URL of this server")]
    NotAnUpload(String),
}

impl UploadConcat {
    /// Parses the header. Each URL of a final upload may be absolute or relative; its
    /// last path segment must be an upload id.
    pub fn parse(s: &str) -> Result<Self, ConcatError> {
        let s = s.trim();
        if s == "partial" {
            return Ok(Self::Partial);
        }
        let Some(list) = s.strip_prefix("final;") else {
            return Err(ConcatError::Malformed);
        };
        let ids = list
            .split_ascii_whitespace()
            .map(|url| {
                let last = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                UploadId::parse(last).ok_or_else(|| ConcatError::NotAnUpload(url.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(ConcatError::Empty);
        }
        Ok(Self::Final(ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tus_integers_are_strict() {
        assert_eq!(parse_tus_integer("0"), Some(0));
        assert_eq!(parse_tus_integer("9223372036854775807"), Some(i64::MAX as u64));
        for bad in ["", "-1", "+5", "1e3", "1.5", " 1", "abc", "9223372036854775808", "99999999999999999999"] {
            assert_eq!(parse_tus_integer(bad), None, "{bad}");
        }
    }

    #[test]
    fn concat_header() {
        let a = UploadId::random();
        let b = UploadId::random();
        assert_eq!(UploadConcat::parse("partial"), Ok(UploadConcat::Partial));
        let hdr = format!("final;/tus/{a} http://h:1/tus/{b}");
        assert_eq!(UploadConcat::parse(&hdr), Ok(UploadConcat::Final(vec![a.clone(), b])));
        let twice = format!("final;/tus/{a} /tus/{a}");
        assert_eq!(UploadConcat::parse(&twice).map(|c| matches!(c, UploadConcat::Final(v) if v.len() == 2)), Ok(true));
        assert_eq!(UploadConcat::parse("final;"), Err(ConcatError::Empty));
        assert_eq!(UploadConcat::parse("whole"), Err(ConcatError::Malformed));
        assert!(matches!(UploadConcat::parse("final;/tus/../../etc"), Err(ConcatError::NotAnUpload(_))));
    }
}
