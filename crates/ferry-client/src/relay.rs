//! Client side of the offline-file relay: list what waits (inbox) or what was sent
//! (outbox), fetch an item (resumable, verified), acknowledge or decline it, and watch the
//! server's event stream.

use futures_util::StreamExt;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::ClientError;
use crate::error::{from_status, network};

/// A relayed file as the server lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct RelayItem {
    /// Item id.
    pub id: String,
    /// Sender.
    pub from: String,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// My delivery's state (inbox).
    #[serde(default)]
    pub state: Option<String>,
    /// Every recipient's state (outbox).
    #[serde(default)]
    pub recipients: Vec<RecipientState>,
    /// Created (Unix seconds).
    pub created: i64,
    /// Expires (Unix seconds).
    pub expires: i64,
    /// `file` or `text` (a message: the content is its UTF-8 text).
    #[serde(default = "file_kind")]
    pub kind: String,
    /// Set when the item is the rest of a direct transfer this user's client began.
    #[serde(default)]
    pub continues: Option<Continues>,
}

fn file_kind() -> String {
    "file".into()
}

/// The whole file an item is the rest of: its bytes from `offset` on.
#[derive(Debug, Clone, Deserialize)]
pub struct Continues {
    /// Where the item's bytes begin in the whole file.
    pub offset: u64,
    /// The whole file's size.
    pub size: u64,
    /// The whole file's SHA-256 (hex).
    pub sha256: String,
}

/// One recipient's delivery, as the sender sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct RecipientState {
    /// The recipient.
    pub user: String,
    /// waiting, downloading, delivered, declined or expired.
    pub state: String,
    /// When it last changed (Unix seconds).
    pub updated: i64,
    /// Bytes that have reached the recipient (while downloading; the size once delivered).
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Deserialize)]
struct Items {
    items: Vec<RelayItem>,
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct ServerEvent {
    /// Its kind (`item`, `delivery`, `hello`).
    pub kind: String,
    /// Its JSON data.
    pub data: serde_json::Value,
}

/// A relay client for one server.
#[derive(Debug, Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    base: Url,
    silence_limit: Option<std::time::Duration>,
}

impl RelayClient {
    /// A client for the server at `server`.
    pub fn new(http: reqwest::Client, server: &str) -> Result<Self, ClientError> {
        let base = Url::parse(server)
            .map_err(|e| ClientError::Rejected { status: 0, reason: format!("bad server URL {server:?}: {e}") })?;
        Ok(Self { http, base, silence_limit: None })
    }

    /// How long the event stream may stay silent before it counts as dead (by default three
    /// of the heartbeats the server announces).
    pub fn with_silence_limit(mut self, limit: std::time::Duration) -> Self {
        self.silence_limit = Some(limit);
        self
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn items(&self, path: &str) -> Result<Vec<RelayItem>, ClientError> {
        let resp = self.http.get(self.url(path)?).send().await.map_err(|e| network(&e))?;
        if !resp.status().is_success() {
            return Err(from_status(resp).await);
        }
        Ok(resp.json::<Items>().await.map_err(|e| ClientError::Protocol(e.to_string()))?.items)
    }

    /// Items waiting for me.
    pub async fn inbox(&self) -> Result<Vec<RelayItem>, ClientError> {
        self.items("api/relay/inbox").await
    }

    /// Items I sent, with each recipient's state.
    pub async fn outbox(&self) -> Result<Vec<RelayItem>, ClientError> {
        self.items("api/relay/outbox").await
    }

    /// Where an item's bytes are (Range and `Repr-Digest` supported).
    pub fn content_url(&self, id: &str) -> Result<Url, ClientError> {
        self.url(&format!("api/relay/items/{id}/content"))
    }

    /// POSTs an idempotent state change, retrying while the server is unreachable or
    /// restarting.
    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), ClientError> {
        let retry = crate::RetryPolicy::default();
        let mut attempt = 0;
        loop {
            let r = match self.http.post(self.url(path)?).json(&body).send().await {
                Err(e) => Err(network(&e)),
                Ok(resp) if resp.status() == StatusCode::NO_CONTENT || resp.status().is_success() => Ok(()),
                Ok(resp) => Err(from_status(resp).await),
            };
            match r {
                Err(e) if e.is_retryable() && attempt < retry.max_attempts => {
                    attempt += 1;
                    tokio::time::sleep(retry.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Tells the server I hold a verified copy (the server checks the hash).
    pub async fn ack(&self, id: &str, sha256: &str) -> Result<(), ClientError> {
        self.post(&format!("api/relay/items/{id}/ack"), serde_json::json!({ "sha256": sha256 })).await
    }

    /// Declines an item.
    pub async fn decline(&self, id: &str) -> Result<(), ClientError> {
        self.post(&format!("api/relay/items/{id}/decline"), serde_json::json!({})).await
    }

    /// Follows the event stream, calling `on_event` for each event until it returns false
    /// or the stream ends (the caller reconnects).
    pub async fn watch(&self, mut on_event: impl FnMut(ServerEvent) -> bool) -> Result<(), ClientError> {
        let resp = self
            .http
            .get(self.url("api/events")?)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| network(&e))?;
        if !resp.status().is_success() {
            return Err(from_status(resp).await);
        }
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        let (mut kind, mut data) = (String::new(), String::new());
        let mut limit = self.silence_limit.unwrap_or(std::time::Duration::from_secs(30));
        let mut reporter: Option<crate::owned_task::OwnedTask<()>> = None;
        loop {
            // Three missed heartbeats mean the connection (or the server) is gone, even if
            // TCP has not noticed.
            let next = tokio::time::timeout(limit, stream.next()).await.map_err(|_| {
                ClientError::Unreachable(format!("no heartbeat from the server for {:.0} s", limit.as_secs_f64()))
            })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| network(&e))?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(nl) = buf.find('\n') {
                let line = buf[..nl].trim_end_matches('\r').to_owned();
                buf.drain(..=nl);
                if line.is_empty() {
                    if !kind.is_empty() || !data.is_empty() {
                        let ev = ServerEvent {
                            kind: std::mem::take(&mut kind),
                            data: serde_json::from_str(&std::mem::take(&mut data)).unwrap_or(serde_json::Value::Null),
                        };
                        // The server names its heartbeat: report presence at that pace, and
                        // give up on the stream after three silent intervals.
                        if ev.kind == "hello"
                            && let Some(beat) = ev.data["heartbeat"].as_f64().filter(|b| *b > 0.0)
                        {
                            let beat = std::time::Duration::from_secs_f64(beat);
                            if self.silence_limit.is_none() {
                                limit = beat * 3;
                            }
                            if reporter.is_none() {
                                let (http, url) = (self.http.clone(), self.url("api/presence")?);
                                reporter = Some(crate::owned_task::OwnedTask::spawn(async move {
                                    loop {
                                        let _ = http.post(url.clone()).send().await;
                                        tokio::time::sleep(beat).await;
                                    }
                                }));
                            }
                        }
                        if !on_event(ev) {
                            return Ok(());
                        }
                    }
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A stand-in event stream that sends one event and then falls silent, like a server
    /// behind a connection that died without closing.
    fn silent_server() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: hello\ndata: {}\n\n");
            std::thread::sleep(std::time::Duration::from_secs(5));
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_silent_event_stream_counts_as_dead() {
        let client = RelayClient::new(crate::http_client(None).unwrap(), &silent_server())
            .unwrap()
            .with_silence_limit(std::time::Duration::from_millis(500));
        assert!(client.silence_limit.is_some());
        let mut kinds = Vec::new();
        let started = std::time::Instant::now();
        let r = client
            .watch(|ev| {
                kinds.push(ev.kind);
                true
            })
            .await;
        assert_eq!(kinds, vec!["hello".to_owned()]);
        assert!(matches!(r, Err(ClientError::Unreachable(m)) if m.contains("no heartbeat")));
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "gave up long before the server spoke again");
    }
}
