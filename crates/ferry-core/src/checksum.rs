//! Per-request checksums (tus `checksum` extension): sha1, md5, sha256, crc32c.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::Digest as _;

/// A checksum algorithm ferry accepts in `Upload-Checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// SHA-1 (mandatory in tus).
    Sha1,
    /// MD5.
    Md5,
    /// SHA-256.
    Sha256,
    /// CRC-32C (Castagnoli), as 4 big-endian bytes.
    Crc32c,
}

/// The value of `Tus-Checksum-Algorithm`.
pub const SUPPORTED_ALGORITHMS: &str = "sha1,md5,sha256,crc32c";

impl ChecksumAlgorithm {
    /// Parses a tus algorithm name; names are lowercase ASCII, so `SHA1` is unknown.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "md5" => Some(Self::Md5),
            "sha256" => Some(Self::Sha256),
            "crc32c" => Some(Self::Crc32c),
            _ => None,
        }
    }

    /// The tus name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Md5 => "md5",
            Self::Sha256 => "sha256",
            Self::Crc32c => "crc32c",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Md5 => 16,
            Self::Sha256 => 32,
            Self::Crc32c => 4,
        }
    }
}

/// A parsed `Upload-Checksum: <algorithm> <base64>` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadChecksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The expected digest bytes.
    pub expected: Vec<u8>,
}

/// Why an `Upload-Checksum` header was refused (all are 400 in tus).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumHeaderError {
    /// Not `<algorithm> <base64>`.
    #[error("Upload-Checksum must be \"<algorithm> <base64 digest>\"")]
    Malformed,
    /// An algorithm ferry does not offer.
    #[error("checksum algorithm {0:?} is not supported (supported: sha1,md5,sha256,crc32c)")]
    Unsupported(String),
    /// A digest that is not base64 or has the wrong length for its algorithm.
    #[error("Upload-Checksum digest is not a base64 {0} digest")]
    BadDigest(&'static str),
}

impl UploadChecksum {
    /// Parses the header value.
    pub fn parse(s: &str) -> Result<Self, ChecksumHeaderError> {
        let mut parts = s.trim().split(' ');
        let (Some(name), Some(b64), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ChecksumHeaderError::Malformed);
        };
        let algorithm =
            ChecksumAlgorithm::parse(name).ok_or_else(|| ChecksumHeaderError::Unsupported(name.to_owned()))?;
        let expected = STANDARD.decode(b64).map_err(|_| ChecksumHeaderError::BadDigest(algorithm.name()))?;
        if expected.len() != algorithm.digest_len() {
            return Err(ChecksumHeaderError::BadDigest(algorithm.name()));
        }
        Ok(Self { algorithm, expected })
    }

    /// Formats the header value for `digest`.
    pub fn format(algorithm: ChecksumAlgorithm, digest: &[u8]) -> String {
        format!("{} {}", algorithm.name(), STANDARD.encode(digest))
    }
}

/// An incremental checksum over bytes as they stream.
#[derive(Clone)]
pub enum Checksummer {
    /// SHA-1 state.
    Sha1(sha1::Sha1),
    /// MD5 state.
    Md5(md5::Md5),
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// CRC-32C state.
    Crc32c(u32),
}

impl std::fmt::Debug for Checksummer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checksummer")
    }
}

impl Checksummer {
    /// A fresh state for `algorithm`.
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Md5 => Self::Md5(md5::Md5::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Crc32c => Self::Crc32c(0),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
        }
    }

    /// The digest bytes.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Crc32c(c) => c.to_be_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(alg: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
        let mut c = Checksummer::new(alg);
        let (a, b) = data.split_at(data.len() / 2);
        c.update(a);
        c.update(b);
        c.finish()
    }

    #[test]
    fn known_digests() {
        // sha1("hello") and crc32c("123456789") = 0xE3069283
        assert_eq!(STANDARD.encode(digest_of(ChecksumAlgorithm::Sha1, b"hello")), "qvTGHdzF6KLavt4PO0gs2a6pQ00=");
        assert_eq!(digest_of(ChecksumAlgorithm::Crc32c, b"123456789"), 0xE306_9283u32.to_be_bytes());
        assert_eq!(STANDARD.encode(digest_of(ChecksumAlgorithm::Md5, b"hello")), "XUFAKrxLKna5cZ2REBfFkg==");
    }

    #[test]
    fn header_parsing() {
        let ok = UploadChecksum::parse("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").unwrap();
        assert_eq!(ok.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(
            UploadChecksum::parse("SHA1 qvTGHdzF6KLavt4PO0gs2a6pQ00="),
            Err(ChecksumHeaderError::Unsupported("SHA1".into()))
        );
        assert_eq!(UploadChecksum::parse("blake9 AAAA"), Err(ChecksumHeaderError::Unsupported("blake9".into())));
        assert_eq!(UploadChecksum::parse("sha1"), Err(ChecksumHeaderError::Malformed));
        assert_eq!(UploadChecksum::parse("sha1 a b"), Err(ChecksumHeaderError::Malformed));
        assert_eq!(UploadChecksum::parse("sha1 !!!"), Err(ChecksumHeaderError::BadDigest("sha1")));
        assert_eq!(
            UploadChecksum::parse("crc32c qvTGHdzF6KLavt4PO0gs2a6pQ00="),
            Err(ChecksumHeaderError::BadDigest("crc32c"))
        );
    }
}
