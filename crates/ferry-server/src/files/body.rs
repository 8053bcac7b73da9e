//! Response bodies for downloads: file regions streamed with bounded memory, and
//! `multipart/byteranges`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use ferry_core::ByteRange;
use futures_util::stream::{self, BoxStream, StreamExt};

/// Bytes read per step; at most this much of a file is in memory per response.
const READ_CHUNK: u64 = 1 << 20;

/// Streams `len` bytes of `file` from `start`.
pub fn region(file: Arc<File>, start: u64, len: u64) -> BoxStream<'static, io::Result<Bytes>> {
    stream::try_unfold((file, start, len), |(file, pos, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let n = left.min(READ_CHUNK) as usize;
        let f = file.clone();
        let buf = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut buf = vec![0u8; n];
            let mut filled = 0;
            while filled < n {
                match f.read_at(&mut buf[filled..], pos + filled as u64)? {
                    0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")),
                    r => filled += r,
                }
            }
            Ok(buf)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Some((Bytes::from(buf), (file, pos + n as u64, left - n as u64))))
    })
    .boxed()
}

/// A `multipart/byteranges` body for `ranges` of a `total`-byte file, and its exact length.
pub fn multipart(file: Arc<File>, ranges: &[ByteRange], total: u64, boundary: &str) -> (Body, u64) {
    let mut pieces: Vec<(Bytes, Option<ByteRange>)> = Vec::new();
    let mut length = 0u64;
    for r in ranges {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: {}\r\n\r\n",
            r.content_range(total)
        );
        length += head.len() as u64 + r.len();
        pieces.push((Bytes::from(head), Some(*r)));
    }
    let tail = format!("\r\n--{boundary}--\r\n");
    length += tail.len() as u64;
    pieces.push((Bytes::from(tail), None));
    let body = stream::iter(pieces).flat_map(move |(head, range)| {
        let head = stream::once(async move { Ok::<_, io::Error>(head) });
        match range {
            Some(r) => head.chain(region(file.clone(), r.start, r.len())).boxed(),
            None => head.boxed(),
        }
    });
    (Body::from_stream(body), length)
}
