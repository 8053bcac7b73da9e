//! Client-supplied paths, confined to the served tree.

use std::fmt;
use std::path::PathBuf;

/// A relative path inside the served tree, made only of normal components.
///
/// Construction rejects everything that could leave the tree or confuse a filesystem:
/// `..`, absolute paths, NUL, backslashes and control characters. Symlinks are a property
/// of the filesystem, not of the name; the store checks them when it resolves a path.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TreePath {
    components: Vec<String>,
}

/// Why a client-supplied path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Starts with `/`.
    #[error("path {0:?} is absolute; give a path relative to the tree")]
    Absolute(String),
    /// Contains a `..` component.
    #[error("path {0:?} climbs out of the tree with \"..\"")]
    ParentDir(String),
    /// Contains NUL, a backslash or another control character.
    #[error("path {0:?} contains a NUL, backslash or control character")]
    BadCharacter(String),
    /// Too long overall or in one component.
    #[error("path is too long (at most 1024 bytes, 255 per name)")]
    TooLong,
    /// More nested folders than allowed.
    #[error("path is nested too deeply (at most {MAX_DEPTH} levels)")]
    TooDeep,
    /// A name that would be confused with ferry's own files or misread by people:
    /// ferry's temporary prefix, or invisible direction overrides.
    #[error("path {0:?} contains a reserved name or an invisible direction-override character")]
    ReservedName(String),
}

/// Longest path accepted (bytes), well under PATH_MAX once a tree's root is in front.
pub const MAX_LEN: usize = 1024;
/// Deepest path accepted (components): bounds the filesystem work one request can cause.
pub const MAX_DEPTH: usize = 32;
/// Prefix of ferry's temporary files in the tree; no client name may start with it.
pub const TEMP_PREFIX: &str = ".ferry-tmp-";

/// Characters that reorder or hide text when shown (bidi controls, zero-width marks).
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

impl TreePath {
    /// The tree root.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses a `/`-separated relative path. Empty and `.` components are dropped, so
    /// `a//./b` is `a/b`; an empty string is the root.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.len() > MAX_LEN {
            return Err(PathError::TooLong);
        }
        if s.starts_with('/') {
            return Err(PathError::Absolute(s.to_owned()));
        }
        if s.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(PathError::BadCharacter(s.to_owned()));
        }
        if s.chars().any(is_deceptive) {
            return Err(PathError::ReservedName(s.escape_default().to_string()));
        }
        let mut components = Vec::new();
        for part in s.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(PathError::ParentDir(s.to_owned())),
                name if name.len() > 255 => return Err(PathError::TooLong),
                name if name.starts_with(TEMP_PREFIX) => return Err(PathError::ReservedName(s.to_owned())),
                name => components.push(name.to_owned()),
            }
            if components.len() > MAX_DEPTH {
                return Err(PathError::TooDeep);
            }
        }
        Ok(Self { components })
    }

    /// `self/child`, refused when the result is longer or deeper than a parsed path may be.
    pub fn checked_join(&self, child: &TreePath) -> Result<TreePath, PathError> {
        let joined = self.join(child);
        if joined.components.len() > MAX_DEPTH {
            return Err(PathError::TooDeep);
        }
        if joined.to_string().len() > MAX_LEN {
            return Err(PathError::TooLong);
        }
        Ok(joined)
    }

    /// Parses a path taken from a URL whose leading `/` belongs to the route.
    pub fn parse_url_path(s: &str) -> Result<Self, PathError> {
        Self::parse(s.trim_start_matches('/'))
    }

    /// `self/child`, where `child` is another confined path.
    pub fn join(&self, child: &TreePath) -> TreePath {
        let mut components = self.components.clone();
        components.extend(child.components.iter().cloned());
        Self { components }
    }

    /// True for the tree root.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The parent path (the root's parent is the root).
    pub fn parent(&self) -> TreePath {
        let mut components = self.components.clone();
        components.pop();
        Self { components }
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &TreePath) -> bool {
        self.components.starts_with(&other.components)
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.components.iter().map(String::as_str)
    }

    /// The path relative to a tree directory on disk.
    pub fn to_relative_path_buf(&self) -> PathBuf {
        self.components.iter().collect()
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.components.join("/"))
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreePath({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_harmless_forms() {
        assert_eq!(TreePath::parse("a//./b/").unwrap().to_string(), "a/b");
        assert!(TreePath::parse("").unwrap().is_root());
        assert_eq!(TreePath::parse_url_path("/x/y.bin").unwrap().file_name(), Some("y.bin"));
        assert_eq!(TreePath::parse("a/b").unwrap().parent().to_string(), "a");
        assert_eq!(TreePath::parse("..a/b..").unwrap().to_string(), "..a/b..");
    }

    #[test]
    fn confines_untrusted_names() {
        assert!(matches!(TreePath::parse("../etc/passwd"), Err(PathError::ParentDir(_))));
        assert!(matches!(TreePath::parse("a/../../b"), Err(PathError::ParentDir(_))));
        assert!(matches!(TreePath::parse("/etc/passwd"), Err(PathError::Absolute(_))));
        assert!(matches!(TreePath::parse("a\0b"), Err(PathError::BadCharacter(_))));
        assert!(matches!(TreePath::parse("..\\..\\windows"), Err(PathError::BadCharacter(_))));
        assert!(matches!(TreePath::parse("a\r\nb"), Err(PathError::BadCharacter(_))));
        assert_eq!(TreePath::parse(&"n".repeat(256)), Err(PathError::TooLong));
        assert_eq!(TreePath::parse(&"d/".repeat(MAX_DEPTH + 1)), Err(PathError::TooDeep));
        assert!(TreePath::parse(&"d/".repeat(MAX_DEPTH)).is_ok());
        assert!(matches!(TreePath::parse("a/.ferry-tmp-1"), Err(PathError::ReservedName(_))));
        assert!(matches!(TreePath::parse("invoice\u{202E}fdp.exe"), Err(PathError::ReservedName(_))));
        let deep = TreePath::parse(&"d/".repeat(20)).unwrap();
        assert_eq!(deep.checked_join(&deep), Err(PathError::TooDeep));
    }
}

/// Decodes the `%XX` escapes of a URL path (other bytes, and malformed escapes, as they are).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod percent_tests {
    #[test]
    fn escapes_decode_and_malformed_ones_stay() {
        assert_eq!(super::percent_decode("a%20b%C3%BC%2"), b"a b\xC3\xBC%2");
        assert_eq!(super::percent_decode("%zz%41"), b"%zzA");
    }
}
