//! Upload identifiers.

use std::fmt;

/// The identifier of one tus upload: 32 lowercase hex digits (128 random bits).
///
/// Parsing accepts nothing else, so an id taken from a URL can never name a path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn random() -> Self {
        let bits: u128 = rand::random();
        Self(format!("{bits:032x}"))
    }

    /// Parses an id, accepting only 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_and_differ() {
        let a = UploadId::random();
        let b = UploadId::random();
        assert_ne!(a, b);
        assert_eq!(UploadId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn rejects_anything_but_32_hex() {
        for bad in ["", "../../etc/passwd", "ABCDEF0123456789abcdef0123456789", "0123", &"a".repeat(33)] {
            assert_eq!(UploadId::parse(bad), None, "{bad}");
        }
    }
}
