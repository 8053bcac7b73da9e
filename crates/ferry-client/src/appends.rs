//! The PATCHes of one part: learn the server's offset once (HEAD), then append chunk after
//! chunk on the same connection without asking again.
//!
//! Every PATCH is bounded in time (see [`crate::chunking`]) and ends with its checksum
//! trailer, so a server fault costs at most one. Each costs one round trip (the answer,
//! then the next request): measured on a 40 ms link at 175 Mbit/s, 3 % against a single
//! PATCH. Sending the next PATCH on a second connection before the answer (pipelining)
//! measured worse, 7–13 %: the idle connection's congestion window restarts from scratch
//! (`tcp_slow_start_after_idle`) every time the two swap.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::digest::parse_repr_digest_sha256;
use reqwest::{StatusCode, Url};

use crate::ClientError;
use crate::chunking::Chunker;
use crate::error::{from_status, network};
use crate::hashing::RewindableSha;
use crate::owned_task::OwnedTask;
use crate::parts::{Ctx, HeadStatus, Part, PartDone};
use crate::patch_body::{Activity, PatchBody};
use crate::upload::TUS;

/// One PATCH on its way; its body streams from a task this owns.
struct InFlight {
    activity: Arc<Activity>,
    answer: OwnedTask<Result<reqwest::Response, reqwest::Error>>,
    started: Instant,
}

impl Ctx<'_> {
    /// One round for a part: re-sync, then append until the part is complete (`Some`) or a
    /// PATCH fails (an error: the caller backs off and calls again).
    pub(crate) async fn part_step(
        &self,
        part: &Part,
        sha: &Option<Arc<Mutex<RewindableSha>>>,
        chunker: &mut Chunker,
    ) -> Result<Option<PartDone>, ClientError> {
        let (url, status) = match part.url() {
            Some(u) => match self.up.head(&u).await? {
                Some(s) if s.length == Some(part.len()) => (u, s),
                _ => {
                    self.recreated.store(true, Ordering::Relaxed);
                    (self.create(part).await?, HeadStatus { offset: 0, length: Some(part.len()), sha: None })
                }
            },
            None => (self.create(part).await?, HeadStatus { offset: 0, length: Some(part.len()), sha: None }),
        };
        let offset = status.offset;
        part.confirmed.store(offset, Ordering::Relaxed);
        part.resumed_from.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(offset);
        if offset == part.len() {
            return Ok(Some(PartDone { server_sha: status.sha }));
        }
        if let Some(sha) = sha {
            let mut h = sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
            let mut f = File::open(self.path).map_err(|e| ClientError::local(self.path, e))?;
            h.seek(&mut f, part.start + offset).map_err(|e| ClientError::local(self.path, e))?;
        }

        let mut offset = offset;
        loop {
            let mut flight = self.start_patch(part, &url, offset, sha, chunker);
            let answer = match self.await_answer(part, &mut flight).await {
                Ok(resp) if resp.status() == StatusCode::NO_CONTENT || resp.status() == StatusCode::OK => Ok(resp),
                Ok(resp) => Err(from_status(resp).await),
                Err(e) => Err(e),
            };
            self.settle(part, &flight);
            let resp = answer.inspect_err(|_| {
                part.last_delivered.store(flight.activity.sent.load(Ordering::Relaxed), Ordering::Relaxed);
            })?;
            let new_offset = upload_offset(&resp)
                .ok_or_else(|| ClientError::Protocol("PATCH answer without Upload-Offset".into()))?;
            chunker.succeeded(new_offset.saturating_sub(offset), flight.started.elapsed());
            tracing::debug!(
                bytes = new_offset.saturating_sub(offset),
                elapsed_ms = flight.started.elapsed().as_millis() as u64,
                "chunk sent"
            );
            part.confirmed.store(new_offset, Ordering::Relaxed);
            if new_offset == part.len() {
                let server_sha =
                    resp.headers().get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
                return Ok(Some(PartDone { server_sha }));
            }
            offset = new_offset;
        }
    }

    /// Starts a PATCH of the part from `offset`, sized by the chunker.
    fn start_patch(
        &self,
        part: &Part,
        url: &Url,
        offset: u64,
        sha: &Option<Arc<Mutex<RewindableSha>>>,
        chunker: &Chunker,
    ) -> InFlight {
        let plan = chunker.plan(part.len() - offset);
        let activity = Activity::new();
        *part.activity.lock().unwrap_or_else(|p| p.into_inner()) = Some(activity.clone());
        let body = PatchBody::new(
            self.file.clone(),
            part.start + offset,
            part.start + offset + plan.len,
            self.up.options.checksum,
            sha.as_ref().map(|s| (s.clone(), part.end)),
            self.limiter.clone(),
            activity.clone(),
        )
        .with_soft_end(plan.soft_end)
        .with_block(chunker.block());
        let mut req = self
            .up
            .http
            .patch(url.clone())
            .header("Tus-Resumable", TUS)
            .header("Upload-Offset", offset)
            .header("Content-Type", "application/offset+octet-stream");
        if let Some(t) = body.trailer_names() {
            req = req.header("Trailer", t);
        }
        let send = req.body(reqwest::Body::wrap(body)).send();
        InFlight { activity, answer: OwnedTask::spawn(send), started: Instant::now() }
    }

    /// Waits for the answer to a PATCH. Ctrl-C ends its body cleanly and waits a moment for
    /// the server to say what it kept; a body that makes no progress for the stall timeout
    /// counts as a dead connection.
    async fn await_answer(&self, part: &Part, flight: &mut InFlight) -> Result<reqwest::Response, ClientError> {
        let stall = self.up.options.stall_timeout;
        let activity = flight.activity.clone();
        let watchdog = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if activity.idle() > stall {
                    return;
                }
            }
        };
        let answer = tokio::select! {
            () = self.up.cancel.cancelled() => None,
            () = watchdog => {
                return Err(ClientError::Unreachable(format!(
                    "no progress for {} s; the connection looks dead",
                    stall.as_secs()
                )));
            }
            r = &mut flight.answer => Some(r),
        };
        match answer {
            None => Err(self.pause(part, flight).await),
            Some(Some(Ok(resp))) => Ok(resp),
            Some(Some(Err(e))) => Err(network(&e)),
            Some(None) => Err(ClientError::Protocol("the PATCH task failed".into())),
        }
    }

    /// Ctrl-C: end the body at its next block with its checksum trailer (so the server
    /// keeps what it received) and give the server a moment to say how far it got.
    async fn pause(&self, part: &Part, flight: &mut InFlight) -> ClientError {
        flight.activity.stop.store(true, Ordering::Relaxed);
        if let Ok(Some(Ok(resp))) = tokio::time::timeout(Duration::from_secs(10), &mut flight.answer).await
            && let Some(o) = upload_offset(&resp)
        {
            part.confirmed.store(o, Ordering::Relaxed);
        }
        ClientError::Interrupted
    }

    /// A PATCH is over: count its bytes as sent and stop showing it as in flight.
    fn settle(&self, part: &Part, flight: &InFlight) {
        let mut shown = part.activity.lock().unwrap_or_else(|p| p.into_inner());
        if shown.take_if(|a| Arc::ptr_eq(a, &flight.activity)).is_some() {
            part.sent.fetch_add(flight.activity.sent.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// The `Upload-Offset` of an answer.
fn upload_offset(resp: &reqwest::Response) -> Option<u64> {
    resp.headers().get("upload-offset")?.to_str().ok()?.parse().ok()
}
