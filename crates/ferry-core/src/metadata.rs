//! `Upload-Metadata`: comma-separated `key base64value` pairs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Parsed `Upload-Metadata`, keeping the header text so HEAD can echo it verbatim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadMetadata {
    raw: String,
    pairs: Vec<(String, Vec<u8>)>,
}

/// Why an `Upload-Metadata` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A pair with an empty key (e.g. `,,` or a leading space).
    #[error("Upload-Metadata has an empty key")]
    EmptyKey,
    /// A key with a character tus forbids or a non-ASCII key.
    #[error("Upload-Metadata key {0:?} must be printable ASCII without spaces or commas")]
    BadKey(String),
    /// The same key twice.
    #[error("Upload-Metadata repeats the key {0:?}")]
    DuplicateKey(String),
    /// A value that is not valid base64.
    #[error("Upload-Metadata value of {0:?} is not valid base64")]
    BadBase64(String),
    /// More than one space between key and value, or trailing junk.
    #[error("Upload-Metadata pair {0:?} is not \"key base64value\"")]
    Malformed(String),
}

impl UploadMetadata {
    /// Parses the header strictly: every violation of the tus rules is an error.
    pub fn parse(raw: &str) -> Result<Self, MetadataError> {
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        if raw.trim().is_empty() {
            return Ok(Self::default());
        }
        for item in raw.split(',') {
            let item = item.trim_matches(|c| c == ' ' || c == '\t');
            let mut parts = item.splitn(2, ' ');
            let key = parts.next().unwrap_or("");
            let value = parts.next().unwrap_or("");
            if key.is_empty() {
                return Err(MetadataError::EmptyKey);
            }
            if !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return Err(MetadataError::BadKey(key.to_owned()));
            }
            if value.contains(' ') {
                return Err(MetadataError::Malformed(item.to_owned()));
            }
            if pairs.iter().any(|(k, _)| k == key) {
                return Err(MetadataError::DuplicateKey(key.to_owned()));
            }
            let decoded = STANDARD.decode(value).map_err(|_| MetadataError::BadBase64(key.to_owned()))?;
            pairs.push((key.to_owned(), decoded));
        }
        Ok(Self { raw: raw.trim().to_owned(), pairs })
    }

    /// The header as the client sent it (trimmed), for echoing in HEAD.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The decoded bytes of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    /// The decoded value of `key` if it is UTF-8 text.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// True when no pairs were given.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_empty_values() {
        let m = UploadMetadata::parse("filename d29ybGQucGRm,is_confidential,empty ").unwrap();
        assert_eq!(m.get_str("filename"), Some("world.pdf"));
        assert_eq!(m.get("is_confidential"), Some(&b""[..]));
        assert_eq!(m.get("empty"), Some(&b""[..]));
        assert_eq!(m.get("missing"), None);
        assert_eq!(m.raw(), "filename d29ybGQucGRm,is_confidential,empty");
    }

    #[test]
    fn strict_rejections() {
        assert_eq!(UploadMetadata::parse("a !!!"), Err(MetadataError::BadBase64("a".into())));
        assert_eq!(UploadMetadata::parse("a YQ==,a Yg=="), Err(MetadataError::DuplicateKey("a".into())));
        assert_eq!(UploadMetadata::parse("a YQ==,,b Yg=="), Err(MetadataError::EmptyKey));
        assert!(matches!(UploadMetadata::parse("a YQ== Yg=="), Err(MetadataError::Malformed(_))));
        assert!(matches!(UploadMetadata::parse("ké YQ=="), Err(MetadataError::BadKey(_))));
        assert!(UploadMetadata::parse("").unwrap().is_empty());
    }

    #[test]
    fn values_with_crlf_decode_but_are_bytes() {
        // "a\r\nb" — decoded values are never put into headers by ferry; HEAD echoes the raw form.
        let m = UploadMetadata::parse("x YQ0KYg==").unwrap();
        assert_eq!(m.get("x"), Some(&b"a\r\nb"[..]));
        assert_eq!(m.raw(), "x YQ0KYg==");
    }
}
