//! File descriptors: the server raises its soft `RLIMIT_NOFILE` to the hard limit at start,
//! and serves at most as many connections as leave a reserve of descriptors for the
//! database, the staging files being written and the listener. A connection past that gets
//! `503 Service Unavailable` with `Retry-After` on arrival, so uploads already running never
//! fail halfway for want of a descriptor.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft limit to the hard one; returns the limit now in force (`None`:
/// unlimited).
pub(crate) fn raise() -> Option<u64> {
    let now = getrlimit(Resource::Nofile);
    if now.current != now.maximum {
        let raised = Rlimit { current: now.maximum, maximum: now.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the file-descriptor limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Staging files open at once when the limit is not known (an `AppState` built by hand).
pub(crate) const DEFAULT_OPEN_STAGING: usize = 256;

/// Descriptors kept out of the connections' share: a quarter of the limit, at least 32.
fn reserve(limit: u64) -> u64 {
    (limit / 4).max(32)
}

/// Connections that fit under `limit` descriptors, keeping the reserve free.
pub(crate) fn connections_for(limit: Option<u64>, configured: usize) -> usize {
    let Some(limit) = limit else { return configured };
    let fit = usize::try_from(limit.saturating_sub(reserve(limit))).unwrap_or(usize::MAX);
    configured.min(fit).max(1)
}

/// Staging files that may be open at once: half the reserve (the rest is for the
/// database, connections being turned away, downloads' files and placement), at most 1,024.
pub(crate) fn open_staging_for(limit: Option<u64>) -> usize {
    limit.map_or(1024, |l| usize::try_from(reserve(l) / 2).unwrap_or(1024).clamp(8, 1024))
}

/// Connections past the cap answered at once (each holds a descriptor for a moment).
pub(crate) const TURNING_AWAY: usize = 16;

/// What a connection past the cap is told before it is closed.
pub(crate) const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 53\r\nConnection: close\r\n\r\n\
the server is at its connection limit; retry shortly\n";

/// Answers a connection past the cap with [`BUSY_RESPONSE`] and closes it. What the client
/// already sent is read away for a moment first, so closing does not reset the connection
/// before the answer is read.
pub(crate) async fn turn_away(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let short = std::time::Duration::from_millis(200);
    if tokio::time::timeout(short, stream.write_all(BUSY_RESPONSE)).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ =
        tokio::time::timeout(short, async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_a_reserve_of_descriptors() {
        assert_eq!(connections_for(Some(1024), 10_000), 768);
        assert_eq!(connections_for(Some(100), 10_000), 68);
        assert_eq!(connections_for(Some(1 << 20), 10_000), 10_000);
        assert_eq!(connections_for(None, 10_000), 10_000);
        assert_eq!(open_staging_for(Some(1024)), 128);
        assert_eq!(open_staging_for(Some(20_000)), 1024);
        let text = String::from_utf8_lossy(BUSY_RESPONSE);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        assert_eq!(body.len(), 53, "Content-Length matches the body {body:?}");
    }
}
