//! Response bodies for downloads: file regions streamed with bounded memory, and
//! `multipart/byteranges`.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use ferry_core::ByteRange;
use ferry_store::BlobRead;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;

/// Bytes read per step; about this much of a file is in memory per response.
const READ_CHUNK: u64 = 2 << 20;

/// Streams `len` bytes of `blob` from `start`, a bounded step at a time, off the async
/// threads. When `stop` fires (the server drains for a restart) the body breaks off: a
/// download loses nothing by that, its client resumes from the bytes it has.
pub fn region(
    blob: Arc<dyn BlobRead>,
    start: u64,
    len: u64,
    stop: CancellationToken,
) -> BoxStream<'static, io::Result<Bytes>> {
    stream::try_unfold((blob, start, len), move |(blob, pos, left)| {
        let stop = stop.clone();
        async move {
            if left == 0 {
                return Ok(None);
            }
            if stop.is_cancelled() {
                return Err(io::Error::other("the server is restarting; resume the download"));
            }
            let n = left.min(READ_CHUNK);
            let b = blob.clone();
            let buf = tokio::task::spawn_blocking(move || b.read_vec(pos, n as usize))
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
            Ok(Some((Bytes::from(buf), (blob, pos + n, left - n))))
        }
    })
    .boxed()
}

/// A `multipart/byteranges` body for `ranges` of a `total`-byte file, and its exact length.
pub fn multipart(
    file: Arc<dyn BlobRead>,
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
