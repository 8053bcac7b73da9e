//! The served tree: finished files, confined paths, atomic placement.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ferry_core::TreePath;

use crate::StoreError;
use crate::blobs::{DirEntry, FileStat};
use crate::staging::sync_dir;

/// Prefix of ferry's temporary names inside the tree; hidden from listings, refused in
/// client paths.
use ferry_core::path::TEMP_PREFIX;

/// A number no other placement of this process uses, for temporary names.
fn next_temp_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The directory ferry serves and places finished uploads into.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
}

/// What a file's metadata says, as the store reports it.
pub(crate) fn stat_of(meta: &fs::Metadata) -> FileStat {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let version = modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    FileStat { is_dir: meta.is_dir(), size: if meta.is_dir() { 0 } else { meta.len() }, modified, version }
}

impl Tree {
    /// Opens (creating if needed) the tree rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root: root.canonicalize()? })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves an existing path, refusing one that a symlink leads out of the tree.
    pub fn resolve(&self, path: &TreePath) -> Result<PathBuf, StoreError> {
        let joined = self.root.join(path.to_relative_path_buf());
        let real = joined.canonicalize()?;
        if !real.starts_with(&self.root) {
            return Err(StoreError::Escapes(path.to_string()));
        }
        Ok(real)
    }

    /// Where `path` really is in the tree once symlinks are followed: the canonical location
    /// of its deepest existing ancestor, plus the names below that do not exist yet. Access
    /// is decided on this, so a link cannot lead into a folder the caller may not use.
    pub fn real_tree_path(&self, path: &TreePath) -> Result<TreePath, StoreError> {
        let names: Vec<&str> = path.components().collect();
        let mut existing = 0;
        let mut cur = self.root.clone();
        for name in &names {
            cur.push(name);
            if fs::symlink_metadata(&cur).is_err() {
                break;
            }
            existing += 1;
        }
        let base: PathBuf = names[..existing].iter().collect();
        let real = self.root.join(base).canonicalize()?;
        let escapes = || StoreError::Escapes(path.to_string());
        let rel = real.strip_prefix(&self.root).map_err(|_| escapes())?.to_str().ok_or_else(escapes)?;
        let mut out = TreePath::parse(rel).map_err(|_| escapes())?;
        for name in &names[existing..] {
            out = out.join(&TreePath::parse(name).map_err(|_| escapes())?);
        }
        Ok(out)
    }

    /// Lists a directory (hiding ferry's temporary files), sorted by name.
    pub fn list(&self, dir: &Path) -> Result<Vec<DirEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            // A name that is not UTF-8 could be listed but never asked for by URL (a
            // lossy rendering names another file): skip it, like everything unreachable.
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            // Follow symlinks for the type, but only list what stays inside the tree.
            let Ok(real) = entry.path().canonicalize() else { continue };
            if !real.starts_with(&self.root) {
                continue;
            }
            let link = entry.file_type()?.is_symlink();
            out.push(DirEntry { name, stat: stat_of(&fs::metadata(&real)?), link });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Checks, without changing anything, that a file could be placed at `dest`: no parent
    /// is a file or leads out of the tree, and `dest` is not a directory.
    pub fn check_placeable(&self, dest: &TreePath) -> Result<(), StoreError> {
        if dest.is_root() {
            return Err(StoreError::Conflict("an upload needs a file name".into()));
        }
        let names: Vec<&str> = dest.components().collect();
        let mut cur = self.root.clone();
        for (i, name) in names.iter().enumerate() {
            cur.push(name);
            match fs::symlink_metadata(&cur) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
                Ok(_) => {
                    let real = cur.canonicalize()?;
                    if !real.starts_with(&self.root) {
                        return Err(StoreError::Escapes(dest.to_string()));
                    }
                    let last = i + 1 == names.len();
                    if !last && !real.is_dir() {
                        return Err(StoreError::Conflict(format!(
                            "{} is a file, not a directory",
                            names[..=i].join("/")
                        )));
                    }
                    if last && real.is_dir() {
                        return Err(StoreError::Conflict(format!("{dest} is a directory in the tree")));
                    }
                    cur = real;
                }
            }
        }
        Ok(())
    }

    /// Moves the finished file `src` to `dest` in one atomic step, creating parent
    /// directories. A file already at `dest` is replaced only by the complete new one.
    /// Returns the final path on disk.
    pub fn place(&self, src: &Path, dest: &TreePath) -> Result<PathBuf, StoreError> {
        self.check_placeable(dest)?;
        let mut parent = self.root.clone();
        for name in dest.parent().components() {
            parent.push(name);
            match fs::create_dir(&parent) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
                Ok(()) => sync_dir(parent.parent().unwrap_or(&self.root))?,
            }
            parent = parent.canonicalize()?;
            if !parent.starts_with(&self.root) {
                return Err(StoreError::Escapes(dest.to_string()));
            }
        }
        let target = parent.join(dest.file_name().unwrap_or_default());
        match fs::rename(src, &target) {
            Ok(()) => {}
            // Staging on another filesystem than the tree (`--root` elsewhere): copy to a
            // durable temporary beside the target, then rename.
            Err(e) if e.raw_os_error() == Some(18) => {
                let tmp = parent.join(format!("{TEMP_PREFIX}{}-{}", std::process::id(), next_temp_number()));
                fs::copy(src, &tmp)?;
                fs::File::open(&tmp)?.sync_all()?;
                fs::rename(&tmp, &target)?;
                fs::remove_file(src)?;
            }
            Err(e) => return Err(e.into()),
        }
        sync_dir(&parent)?;
        Ok(target)
    }
}

impl Tree {
    /// Where the entry `path` itself is on disk, without following a final link: its
    /// parent resolved (and confined), plus its name. Not for the root.
    fn entry(&self, path: &TreePath) -> Result<(PathBuf, PathBuf), StoreError> {
        let name = path.file_name().ok_or_else(|| StoreError::Conflict("the tree root cannot be changed".into()))?;
        let parent = self.resolve(&path.parent())?;
        if !parent.is_dir() {
            return Err(StoreError::Conflict(format!("{} is a file, not a directory", path.parent())));
        }
        let at = parent.join(name);
        Ok((parent, at))
    }

    /// See [`crate::TreeBlobs::make_dir`].
    pub fn make_dir(&self, path: &TreePath, parents: bool) -> Result<(), StoreError> {
        if path.is_root() {
            return Err(StoreError::Conflict("the tree root exists".into()));
        }
        if parents {
            let mut cur = TreePath::root();
            for name in path.parent().components() {
                cur = cur.join(&TreePath::parse(name).map_err(|e| StoreError::Storage(e.to_string()))?);
                let (parent, at) = self.entry(&cur)?;
                match fs::create_dir(&at) {
                    Ok(()) => sync_dir(&parent)?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let (parent, at) = self.entry(path)?;
        match fs::create_dir(&at) {
            Ok(()) => Ok(sync_dir(&parent)?),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Conflict(format!("{path} exists"))),
            Err(e) => Err(e.into()),
        }
    }

    /// See [`crate::TreeBlobs::remove_path`].
    pub fn remove_path(&self, path: &TreePath, recursive: bool) -> Result<(), StoreError> {
        let (parent, at) = self.entry(path)?;
        let meta = fs::symlink_metadata(&at)?;
        let done = if !meta.is_dir() {
            fs::remove_file(&at)
        } else if recursive {
            fs::remove_dir_all(&at)
        } else {
            fs::remove_dir(&at)
        };
        match done {
            Ok(()) => Ok(sync_dir(&parent)?),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                Err(StoreError::Conflict(format!("{path} is a directory that is not empty")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// See [`crate::TreeBlobs::move_path`].
    pub fn move_path(&self, from: &TreePath, to: &TreePath, overwrite: bool) -> Result<(), StoreError> {
        if to.starts_with(from) {
            return Err(StoreError::Conflict(format!("cannot move {from} into itself")));
        }
        let (from_parent, src) = self.entry(from)?;
        let is_dir = fs::symlink_metadata(&src)?.is_dir();
        let (to_parent, dst) = self.entry(to)?;
        match fs::symlink_metadata(&dst) {
            Ok(_) if !overwrite => return Err(StoreError::Conflict(format!("{to} exists"))),
            Ok(m) if m.is_dir() != is_dir => {
                return Err(StoreError::Conflict(format!("{to} exists and is not the same kind of thing")));
            }
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dst)?,
            _ => {}
        }
        fs::rename(&src, &dst)?;
        sync_dir(&to_parent)?;
        if to_parent != from_parent {
            sync_dir(&from_parent)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_creates_parents_and_replaces_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = Tree::open(tmp.path().join("files")).unwrap();
        let src = tmp.path().join("a.part");
        fs::write(&src, b"one").unwrap();
        let dest = TreePath::parse("x/y/a.txt").unwrap();
        let placed = tree.place(&src, &dest).unwrap();
        assert_eq!(fs::read(&placed).unwrap(), b"one");
        fs::write(&src, b"two").unwrap();
        tree.place(&src, &dest).unwrap();
        assert_eq!(fs::read(tree.resolve(&dest).unwrap()).unwrap(), b"two");
        let names: Vec<_> = tree.list(&tree.resolve(&TreePath::parse("x/y").unwrap()).unwrap()).unwrap();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn symlinks_out_of_the_tree_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"s").unwrap();
        let tree = Tree::open(tmp.path().join("files")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.root.join("link")).unwrap();
        let p = TreePath::parse("link/secret").unwrap();
        assert!(matches!(tree.resolve(&p), Err(StoreError::Escapes(_))));
        assert!(matches!(tree.check_placeable(&TreePath::parse("link/new").unwrap()), Err(StoreError::Escapes(_))));
        assert!(tree.list(&tree.root).unwrap().is_empty(), "escaping link is not listed");
        // Managing the tree never reaches through the link either.
        let t = |s: &str| TreePath::parse(s).unwrap();
        assert!(matches!(tree.make_dir(&t("link/new"), false), Err(StoreError::Escapes(_))));
        assert!(matches!(tree.make_dir(&t("link/a/b"), true), Err(StoreError::Escapes(_))));
        assert!(matches!(tree.remove_path(&t("link/secret"), false), Err(StoreError::Escapes(_))));
        assert!(matches!(tree.move_path(&t("link/secret"), &t("mine"), false), Err(StoreError::Escapes(_))));
        fs::create_dir(tree.root.join("d")).unwrap();
        assert!(matches!(tree.move_path(&t("d"), &t("link/d"), false), Err(StoreError::Escapes(_))));
        // Removing the link removes the link, not what it points to.
        tree.remove_path(&t("link"), true).unwrap();
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"s");
    }

    #[test]
    fn names_that_are_not_utf8_are_not_listed() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let tree = Tree::open(tmp.path().join("files")).unwrap();
        fs::write(tree.root.join(std::ffi::OsStr::from_bytes(b"bad\xff.bin")), b"x").unwrap();
        fs::write(tree.root.join("good.bin"), b"x").unwrap();
        let names: Vec<String> = tree.list(&tree.root).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["good.bin".to_owned()]);
    }

    #[test]
    fn the_real_path_follows_links_inside_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = Tree::open(tmp.path().join("files")).unwrap();
        fs::create_dir_all(tree.root.join("~alice/docs")).unwrap();
        fs::create_dir(tree.root.join("team")).unwrap();
        std::os::unix::fs::symlink("../~alice", tree.root.join("team/shortcut")).unwrap();
        let real = |p: &str| tree.real_tree_path(&TreePath::parse(p).unwrap()).unwrap().to_string();
        assert_eq!(real("team/shortcut/docs/new.txt"), "~alice/docs/new.txt");
        assert_eq!(real("team/plain/new.txt"), "team/plain/new.txt");
    }

    #[test]
    fn conflicts_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = Tree::open(tmp.path().join("files")).unwrap();
        fs::create_dir(tree.root.join("d")).unwrap();
        fs::write(tree.root.join("f"), b"").unwrap();
        assert!(matches!(tree.check_placeable(&TreePath::parse("d").unwrap()), Err(StoreError::Conflict(_))));
        assert!(matches!(tree.check_placeable(&TreePath::parse("f/x").unwrap()), Err(StoreError::Conflict(_))));
        assert!(tree.check_placeable(&TreePath::parse("d/new/x").unwrap()).is_ok());
    }
}
