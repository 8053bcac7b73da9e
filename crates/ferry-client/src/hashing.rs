//! A running SHA-256 that can rewind: checkpoints every few MiB, so after a failure the
//! hash is rebuilt from the nearest checkpoint instead of from the start of the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

const CHECKPOINT_EVERY: u64 = 64 << 20;

/// SHA-256 over bytes `base..at` of a local file.
#[derive(Debug, Clone, Default)]
pub(crate) struct RewindableSha {
    current: Sha256,
    base: u64,
    at: u64,
    checkpoints: Vec<(u64, Sha256)>,
}

impl RewindableSha {
    /// A hash of the bytes from `base` on (a part of a file).
    pub fn starting_at(base: u64) -> Self {
        Self { base, at: base, ..Self::default() }
    }

    /// Feeds the bytes that follow `at`.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let next_cp = (self.at / CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY;
            let take = ((next_cp - self.at) as usize).min(data.len());
            self.current.update(&data[..take]);
            self.at += take as u64;
            data = &data[take..];
            if self.at == next_cp {
                self.checkpoints.push((self.at, self.current.clone()));
            }
        }
    }

    /// Bytes covered.
    pub fn position(&self) -> u64 {
        self.at
    }

    /// Moves to `offset`, rewinding to a checkpoint or reading forward from `file`.
    pub fn seek(&mut self, file: &mut File, offset: u64) -> io::Result<()> {
        if offset < self.at {
            self.checkpoints.retain(|(at, _)| *at <= offset);
            match self.checkpoints.last() {
                Some((at, h)) => {
                    self.at = *at;
                    self.current = h.clone();
                }
                None => {
                    self.at = self.base;
                    self.current = Sha256::new();
                }
            }
        }
        if offset > self.at {
            file.seek(SeekFrom::Start(self.at))?;
            let mut left = offset - self.at;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = file.read(&mut buf[..left.min(1 << 20) as usize])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
                }
                self.update(&buf[..n]);
                left -= n as u64;
            }
        }
        Ok(())
    }

    /// The digest of everything covered.
    pub fn digest(&self) -> [u8; 32] {
        self.current.clone().finalize().into()
    }
}

/// SHA-256 of the first `size` bytes of a file, in one pass off the async threads.
pub(crate) async fn sha256_of_file(
    file: std::sync::Arc<File>,
    size: u64,
    path: &std::path::Path,
) -> Result<[u8; 32], crate::ClientError> {
    let r = tokio::task::spawn_blocking(move || -> io::Result<[u8; 32]> {
        use std::os::unix::fs::FileExt;
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 4 << 20];
        let mut pos = 0u64;
        while pos < size {
            let n = ((size - pos) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], pos)?;
            sha.update(&buf[..n]);
            pos += n as u64;
        }
        Ok(sha.finalize().into())
    })
    .await
    .map_err(|e| crate::ClientError::Protocol(e.to_string()))?;
    r.map_err(|e| crate::ClientError::local(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rewinding_gives_the_same_digest() {
        let data: Vec<u8> = (0..(150u32 << 20) / 4).flat_map(|i| i.to_le_bytes()).collect();
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(&data).unwrap();
        let mut h = RewindableSha::default();
        h.update(&data[..100 << 20]);
        h.seek(&mut tmp, 70 << 20).unwrap();
        assert_eq!(h.position(), 70 << 20);
        h.update(&data[70 << 20..]);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(h.digest(), want);
    }
}
