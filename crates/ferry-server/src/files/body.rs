//! Response bodies for downloads: file regions streamed with bounded memory, and
//! `multipart/byteranges`.

use std::fs::File;
use std::io;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use ferry_core::ByteRange;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;

/// Bytes read per step; about this much of a file is in memory per response.
const READ_CHUNK: u64 = 2 << 20;

/// Streams `len` bytes of `file` from `start`: sequential reads on the response's own file
/// handle into fresh, unzeroed buffers (`read_to_end` into spare capacity), off the async
/// threads. When `stop` fires (the server drains for a restart) the body breaks off: a
/// download loses nothing by that, its client resumes from the bytes it has.
pub fn region(file: Arc<File>, start: u64, len: u64, stop: CancellationToken) -> BoxStream<'static, io::Result<Bytes>> {
    stream::try_unfold((file, start, len, false), move |(file, pos, left, positioned)| {
        let stop = stop.clone();
        async move {
            if left == 0 {
                return Ok(None);
            }
            if stop.is_cancelled() {
                return Err(io::Error::other("the server is restarting; resume the download"));
            }
            let n = left.min(READ_CHUNK);
            let f = file.clone();
            let buf = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
                let mut reader = &*f;
                if !positioned {
                    reader.seek(SeekFrom::Start(pos))?;
                }
                let mut buf = Vec::with_capacity(n as usize);
                reader.take(n).read_to_end(&mut buf)?;
                if (buf.len() as u64) < n {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
                }
                Ok(buf)
            })
            .await
            .map_err(io::Error::other)??;
            Ok(Some((Bytes::from(buf), (file, pos + n, left - n, true))))
        }
    })
    .boxed()
}

/// A `multipart/byteranges` body for `ranges` of a `total`-byte file, and its exact length.
pub fn multipart(
    file: Arc<File>,
    ranges: &[ByteRange],
    total: u64,
    boundary: &str,
    stop: CancellationToken,
) -> (Body, u64) {
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
            Some(r) => head.chain(region(file.clone(), r.start, r.len(), stop.clone())).boxed(),
            None => head.boxed(),
        }
    });
    (Body::from_stream(body), length)
}
