//! A file as a manifest of fixed-size chunks, each with its BLAKE3 hash (and the whole file's
//! SHA-256, ferry's name for content everywhere), so either side of a
//! peer-to-peer transfer can verify every chunk it holds the moment it arrives and resume
//! from exactly what it verified — whichever path the bytes took (direct, relayed, or stored
//! on the server), and however often that path changed.
//!
//! [`Manifest`] is what the sender announces (its [`Manifest::id`] names the transfer);
//! [`Assembly`] is the receiver's record of which chunks it holds, verified. A peer that
//! lies (sizes that do not add up, a chunk that does not hash to its entry, an index past
//! the end) is caught here, before a byte is written where it does not belong.

use sha2::{Digest, Sha256};

/// Smallest chunk a manifest may use.
pub const MIN_CHUNK: u32 = 16 << 10;
/// Largest chunk a manifest may use (also bounds one message's memory).
pub const MAX_CHUNK: u32 = 16 << 20;
/// Most chunks one manifest may list (2 MiB of hashes).
pub const MAX_CHUNKS: u64 = 1 << 16;

/// Why a manifest or a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The manifest's fields contradict each other or exceed the limits.
    #[error("invalid manifest: {0}")]
    BadManifest(&'static str),
    /// An index past the last chunk.
    #[error("no chunk {index}: the file has {count}")]
    NoSuchChunk {
        /// The index asked for.
        index: u64,
        /// How many chunks there are.
        count: u64,
    },
    /// A chunk of the wrong length.
    #[error("chunk {index} has {got} bytes, not {want}")]
    WrongLength {
        /// The chunk.
        index: u64,
        /// Its length.
        got: usize,
        /// The length the manifest gives it.
        want: u64,
    },
    /// A chunk whose SHA-256 is not the manifest's: corrupted or forged; fetch it again.
    #[error("chunk {0} does not match its SHA-256; it was dropped and is wanted again")]
    Corrupt(u64),
}

/// The chunk size ferry uses for a file of `size` bytes: 1 MiB, or more so that the file
/// has at most [`MAX_CHUNKS`] chunks.
pub fn chunk_size_for(size: u64) -> u32 {
    let at_least = size.div_ceil(MAX_CHUNKS).next_power_of_two();
    at_least.clamp(1 << 20, u64::from(MAX_CHUNK)) as u32
}

/// How many chunks of `chunk_size` a file of `size` bytes has.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size.max(1)))
}

/// A file's size, chunk size, every chunk's BLAKE3 and the whole file's SHA-256. (BLAKE3
/// for chunks: several times faster than SHA-256 even with SHA instructions, and a chunk
/// hash is computed on both sides of every transfer.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// File size in bytes.
    pub size: u64,
    /// Chunk size in bytes (the last chunk may be shorter).
    pub chunk_size: u32,
    /// BLAKE3 of each chunk, in order.
    pub hashes: Vec<[u8; 32]>,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
}

/// The encoded header: size, chunk size, whole-file SHA-256.
const HEADER: usize = 8 + 4 + 32;

impl Manifest {
    /// Reads `source` to its end once, hashing each chunk and the whole.
    pub fn build(mut source: impl std::io::Read, chunk_size: u32) -> std::io::Result<Self> {
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(std::io::Error::other("chunk size out of bounds"));
        }
        let mut whole = Sha256::new();
        let mut hashes = Vec::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; chunk_size as usize];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                match source.read(&mut buf[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            whole.update(&buf[..filled]);
            hashes.push(*blake3::hash(&buf[..filled]).as_bytes());
            size += filled as u64;
            if hashes.len() as u64 > MAX_CHUNKS {
                return Err(std::io::Error::other("too many chunks for this chunk size"));
            }
            if filled < buf.len() {
                break;
            }
        }
        Ok(Self { size, chunk_size, hashes, sha256: whole.finalize().into() })
    }

    /// How many chunks.
    pub fn count(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Offset and length of chunk `index`.
    pub fn chunk(&self, index: u64) -> Result<(u64, u64), ChunkError> {
        if index >= self.count() {
            return Err(ChunkError::NoSuchChunk { index, count: self.count() });
        }
        let start = index * u64::from(self.chunk_size);
        Ok((start, (self.size - start).min(u64::from(self.chunk_size))))
    }

    /// Checks one chunk's bytes against the manifest.
    pub fn verify(&self, index: u64, data: &[u8]) -> Result<(), ChunkError> {
        let (_, want) = self.chunk(index)?;
        if data.len() as u64 != want {
            return Err(ChunkError::WrongLength { index, got: data.len(), want });
        }
        if blake3::hash(data).as_bytes() != &self.hashes[index as usize] {
            return Err(ChunkError::Corrupt(index));
        }
        Ok(())
    }

    /// The transfer's name: the SHA-256 of the encoded manifest.
    pub fn id(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// `size (u64 BE) | chunk_size (u32 BE) | sha256 | hashes…`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 32 * self.hashes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.sha256);
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
        out
    }

    /// Decodes and checks a manifest from a peer: the chunk size within bounds, exactly as
    /// many hashes as the size and chunk size call for, at most [`MAX_CHUNKS`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ChunkError> {
        if bytes.len() < HEADER {
            return Err(ChunkError::BadManifest("truncated header"));
        }
        let size = u64::from_be_bytes(bytes[0..8].try_into().map_err(|_| ChunkError::BadManifest("size"))?);
        let chunk_size =
            u32::from_be_bytes(bytes[8..12].try_into().map_err(|_| ChunkError::BadManifest("chunk size"))?);
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(ChunkError::BadManifest("chunk size out of bounds"));
        }
        let count = chunk_count(size, chunk_size);
        if count > MAX_CHUNKS {
            return Err(ChunkError::BadManifest("too many chunks"));
        }
        let rest = &bytes[HEADER..];
        if rest.len() as u64 != count * 32 {
            return Err(ChunkError::BadManifest("the hashes do not match the size"));
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&bytes[12..HEADER]);
        let hashes = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self { size, chunk_size, hashes, sha256 })
    }

    /// Decodes a manifest at the start of `bytes` (something else follows it, as in a
    /// receiver's saved state); returns it and the bytes after it.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, &[u8]), ChunkError> {
        let head = bytes.get(..HEADER).ok_or(ChunkError::BadManifest("truncated header"))?;
        let size = u64::from_be_bytes(head[0..8].try_into().map_err(|_| ChunkError::BadManifest("size"))?);
        let chunk_size = u32::from_be_bytes(head[8..12].try_into().map_err(|_| ChunkError::BadManifest("chunk size"))?);
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(ChunkError::BadManifest("chunk size out of bounds"));
        }
        let count = chunk_count(size, chunk_size).min(MAX_CHUNKS + 1) as usize;
        let end = HEADER + 32 * count;
        let encoded = bytes.get(..end).ok_or(ChunkError::BadManifest("the hashes do not match the size"))?;
        Ok((Self::decode(encoded)?, &bytes[end..]))
    }
}

/// What [`Assembly::accept`] made of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// New and verified: write it at its offset.
    New,
    /// Held already (a duplicate, e.g. re-sent after a path change): ignore it.
    Duplicate,
}

/// The receiver's side: which chunks it holds, each verified when it arrived.
#[derive(Debug, Clone)]
pub struct Assembly {
    manifest: Manifest,
    have: Vec<bool>,
    /// Chunks held.
    held: u64,
    /// Bytes held (kept as chunks arrive: progress asks for it with every chunk).
    held_bytes: u64,
}

impl Assembly {
    /// Nothing held yet.
    pub fn new(manifest: Manifest) -> Self {
        let have = vec![false; manifest.hashes.len()];
        Self { manifest, have, held: 0, held_bytes: 0 }
    }

    /// Resumes with the chunks `held` (as saved earlier; the caller re-verified them or
    /// trusts its own durable record).
    pub fn resume(manifest: Manifest, held: impl IntoIterator<Item = u64>) -> Self {
        let mut a = Self::new(manifest);
        for i in held {
            a.mark(i);
        }
        a
    }

    /// Records chunk `index` as held without checking it (it was verified where it
    /// arrived); an index past the end is ignored.
    pub fn mark(&mut self, index: u64) {
        if let Some(slot) = self.have.get_mut(index as usize)
            && !*slot
        {
            *slot = true;
            self.held += 1;
            self.held_bytes += self.manifest.chunk(index).map_or(0, |(_, len)| len);
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Takes a chunk from the peer, verified against the manifest. Errors name what is
    /// wrong; a corrupt chunk stays wanted.
    pub fn accept(&mut self, index: u64, data: &[u8]) -> Result<Accepted, ChunkError> {
        self.manifest.verify(index, data)?;
        let slot = &mut self.have[index as usize];
        if *slot {
            return Ok(Accepted::Duplicate);
        }
        *slot = true;
        self.held += 1;
        self.held_bytes += data.len() as u64;
        Ok(Accepted::New)
    }

    /// Whether chunk `index` is held.
    pub fn has(&self, index: u64) -> bool {
        self.have.get(index as usize).copied().unwrap_or(false)
    }

    /// The chunks still wanted, in order.
    pub fn missing(&self) -> impl Iterator<Item = u64> + '_ {
        self.have.iter().enumerate().filter(|(_, h)| !**h).map(|(i, _)| i as u64)
    }

    /// Bytes held from the start without a gap: where a sequential resume begins.
    pub fn contiguous_bytes(&self) -> u64 {
        match self.have.iter().position(|h| !*h) {
            Some(i) => i as u64 * u64::from(self.manifest.chunk_size),
            None => self.manifest.size,
        }
    }

    /// Bytes held in all.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Whether every chunk is held.
    pub fn is_complete(&self) -> bool {
        self.held == self.manifest.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn manifest(len: usize, chunk: u32) -> (Vec<u8>, Manifest) {
        let d = data(len);
        let m = Manifest::build(&d[..], chunk).unwrap();
        (d, m)
    }

    fn piece(d: &[u8], m: &Manifest, i: u64) -> Vec<u8> {
        let (start, len) = m.chunk(i).unwrap();
        d[start as usize..(start + len) as usize].to_vec()
    }

    #[test]
    fn a_manifest_describes_every_chunk_and_the_whole() {
        let (d, m) = manifest(100_000, MIN_CHUNK);
        assert_eq!((m.size, m.count()), (100_000, 7));
        assert_eq!(m.chunk(6).unwrap(), (6 * 16384, 100_000 - 6 * 16384), "the last chunk is short");
        assert_eq!(m.sha256, <[u8; 32]>::from(Sha256::digest(&d)));
        for i in 0..m.count() {
            m.verify(i, &piece(&d, &m, i)).unwrap();
        }
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(Manifest::build(&b""[..], MIN_CHUNK).unwrap().count(), 0, "an empty file has no chunks");
        assert_ne!(m.id(), manifest(100_001, MIN_CHUNK).1.id());
    }

    #[test]
    fn corrupt_short_long_and_unknown_chunks_are_refused_and_stay_wanted() {
        let (d, m) = manifest(50_000, MIN_CHUNK);
        let mut a = Assembly::new(m.clone());
        let mut bad = piece(&d, &m, 1);
        bad[10] ^= 1;
        assert_eq!(a.accept(1, &bad), Err(ChunkError::Corrupt(1)));
        assert_eq!(a.accept(1, &bad[1..]), Err(ChunkError::WrongLength { index: 1, got: 16383, want: 16384 }));
        assert_eq!(a.accept(9, &bad), Err(ChunkError::NoSuchChunk { index: 9, count: 4 }));
        assert!(!a.has(1) && a.missing().collect::<Vec<_>>() == vec![0, 1, 2, 3], "still wanted");
        assert_eq!(a.accept(1, &piece(&d, &m, 1)), Ok(Accepted::New), "re-fetched, it passes");
    }

    #[test]
    fn duplicated_and_reordered_chunks_assemble_once() {
        let (d, m) = manifest(70_000, MIN_CHUNK);
        let mut a = Assembly::new(m.clone());
        for i in [3, 0, 3, 2, 0] {
            let first = !a.has(i);
            let got = a.accept(i, &piece(&d, &m, i)).unwrap();
            assert_eq!(got, if first { Accepted::New } else { Accepted::Duplicate }, "chunk {i}");
        }
        assert_eq!(a.contiguous_bytes(), 16384, "only chunk 0 starts a gapless prefix");
        assert_eq!(a.missing().collect::<Vec<_>>(), vec![1, 4]);
        assert!(!a.is_complete());
        for i in [4, 1] {
            a.accept(i, &piece(&d, &m, i)).unwrap();
        }
        assert!(a.is_complete());
        assert_eq!((a.contiguous_bytes(), a.held_bytes()), (70_000, 70_000));
        let resumed = Assembly::resume(m, [0, 1, 1, 99]);
        assert_eq!((resumed.contiguous_bytes(), resumed.missing().count()), (32768, 3), "99 is ignored");
    }

    #[test]
    fn a_peer_lying_about_sizes_is_refused_before_anything_is_allocated() {
        let (_, m) = manifest(100_000, MIN_CHUNK);
        let mut lie = m.encode();
        lie[0..8].copy_from_slice(&(1u64 << 20).to_be_bytes()); // 1 MiB (64 chunks) with 7 hashes
        assert_eq!(Manifest::decode(&lie), Err(ChunkError::BadManifest("the hashes do not match the size")));
        let mut lie = m.encode();
        lie[0..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(Manifest::decode(&lie), Err(ChunkError::BadManifest("too many chunks")));
        let mut lie = m.encode();
        lie[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(Manifest::decode(&lie), Err(ChunkError::BadManifest("chunk size out of bounds")));
        assert_eq!(Manifest::decode(&m.encode()[..20]), Err(ChunkError::BadManifest("truncated header")));
        let mut extra = m.encode();
        extra.extend_from_slice(&[0; 32]);
        assert!(Manifest::decode(&extra).is_err(), "a hash too many");
    }

    #[test]
    fn chunk_sizes_keep_the_manifest_small() {
        assert_eq!(chunk_size_for(0), 1 << 20);
        assert_eq!(chunk_size_for(10 << 30), 1 << 20, "10 GiB: 10,240 chunks of 1 MiB");
        assert_eq!(chunk_size_for(1 << 40), 16 << 20, "1 TiB: 16 MiB chunks");
        assert!(chunk_count(1 << 40, chunk_size_for(1 << 40)) <= MAX_CHUNKS);
    }
}
