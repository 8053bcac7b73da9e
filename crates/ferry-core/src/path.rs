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
    #[error("path is too long (at most 4096 bytes, 255 per name)")]
    TooLong,
}

impl TreePath {
    /// The tree root.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses a `/`-separated relative path. Empty and `.` components are dropped, so
    /// `a//./b` is `a/b`; an empty string is the root.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.len() > 4096 {
            return Err(PathError::TooLong);
        }
        if s.starts_with('/') {
            return Err(PathError::Absolute(s.to_owned()));
        }
        if s.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(PathError::BadCharacter(s.to_owned()));
        }
        let mut components = Vec::new();
        for part in s.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(PathError::ParentDir(s.to_owned())),
                name if name.len() > 255 => return Err(PathError::TooLong),
                name => components.push(name.to_owned()),
            }
        }
        Ok(Self { components })
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
    }
}
