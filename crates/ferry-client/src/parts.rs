//! The part engine behind [`crate::Uploader`]: one loop per part (re-sync, send a chunk,
//! adapt, retry), sequential uploads hashed as they stream, and parallel uploads joined by a
//! final upload created up front.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_core::digest::to_hex;
use reqwest::Url;
use tokio::sync::Semaphore;

use crate::chunking::Chunker;
use crate::hashing::RewindableSha;
use crate::patch_body::Activity;
use crate::ramp::{Ramp, START, step_rate};
use crate::rate::RateLimiter;
use crate::state_dir::{PartRecord, UploadRecord};
use crate::{ClientError, Uploader};

/// One range of the file going to one tus upload.
pub(crate) struct Part {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) url: Mutex<Option<Url>>,
    pub(crate) concat_partial: bool,
    /// Bytes of this part the server holds (last known).
    pub(crate) confirmed: AtomicU64,
    /// The PATCH in flight, for progress.
    pub(crate) activity: Mutex<Option<Arc<Activity>>>,
    /// Bytes the last failed PATCH had handed over (for the chunker).
    pub(crate) last_delivered: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) resumed_from: Mutex<Option<u64>>,
}

impl Part {
    pub(crate) fn new(start: u64, end: u64, url: Option<Url>, concat_partial: bool) -> Self {
        Self {
            start,
            end,
            url: Mutex::new(url),
            concat_partial,
            confirmed: AtomicU64::new(0),
            activity: Mutex::new(None),
            last_delivered: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            resumed_from: Mutex::new(None),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }

    pub(crate) fn url(&self) -> Option<Url> {
        self.url.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Bytes the PATCH in flight has handed to its connection.
    fn in_flight(&self) -> u64 {
        let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        activity.as_ref().map_or(0, |a| a.sent.load(Ordering::Relaxed))
    }

    /// Bytes handed to the connections so far (finished PATCHes and the one in flight).
    pub(crate) fn on_wire(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) + self.in_flight()
    }

    pub(crate) fn shown(&self) -> u64 {
        (self.confirmed.load(Ordering::Relaxed) + self.in_flight()).min(self.len())
    }
}

/// How one part ended.
pub(crate) struct PartDone {
    pub(crate) server_sha: Option<[u8; 32]>,
}

/// `Upload-Metadata` naming where the file goes.
pub(crate) fn file_metadata(
    name: &str,
    remote_dir: Option<&str>,
    sha: Option<&[u8; 32]>,
    options: &crate::UploadOptions,
) -> String {
    let mut md = format!("filename {}", STANDARD.encode(name.as_bytes()));
    if let Some(to) = &options.relay_to {
        md.push_str(&format!(",relay_to {}", STANDARD.encode(to.as_bytes())));
        for (key, value) in &options.relay_metadata {
            md.push_str(&format!(",{key} {}", STANDARD.encode(value.as_bytes())));
        }
    }
    if let Some(dir) = remote_dir {
        md.push_str(&format!(",dir {}", STANDARD.encode(dir.as_bytes())));
    }
    if let Some(sha) = sha {
        md.push_str(&format!(",sha256 {}", STANDARD.encode(to_hex(sha).as_bytes())));
    }
    md
}

/// SHA-256 of a whole file, in one pass off the async threads.
pub(crate) async fn hash_file(file: Arc<File>, size: u64, path: &Path) -> Result<[u8; 32], ClientError> {
    crate::hashing::sha256_of_file(file, size, path).await
}

pub(crate) struct HeadStatus {
    pub(crate) offset: u64,
    pub(crate) length: Option<u64>,
    pub(crate) sha: Option<[u8; 32]>,
}

/// Everything the upload of one file shares between its parts.
pub(crate) struct Ctx<'a> {
    pub(crate) up: &'a Uploader,
    pub(crate) path: &'a Path,
    pub(crate) file: Arc<File>,
    pub(crate) size: u64,
    pub(crate) name: &'a str,
    pub(crate) remote_dir: Option<&'a str>,
    pub(crate) fingerprint: &'a str,
    pub(crate) parts: Vec<Arc<Part>>,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    pub(crate) final_url: Mutex<Option<Url>>,
    /// Round trip to the server, when it was measured for this run.
    pub(crate) rtt: Option<std::time::Duration>,
    /// A part had to be created again (its upload was gone), so an existing final upload
    /// names a dead part: join with a new final upload.
    pub(crate) recreated: AtomicBool,
}

impl Ctx<'_> {
    pub(crate) fn save_record(&self) {
        let concat = self.parts.len() > 1 || self.parts[0].concat_partial;
        let rec = UploadRecord {
            url: if concat { String::new() } else { self.parts[0].url().map(|u| u.to_string()).unwrap_or_default() },
            path: self.path.display().to_string(),
            size: self.size,
            parts: if concat {
                self.parts
                    .iter()
                    .map(|p| PartRecord {
                        url: p.url().map(|u| u.to_string()).unwrap_or_default(),
                        start: p.start,
                        end: p.end,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            final_url: self.final_url.lock().ok().and_then(|u| u.as_ref().map(|u| u.to_string())).unwrap_or_default(),
        };
        if let Err(e) = self.up.state.save_upload(self.fingerprint, &rec) {
            tracing::warn!(error = %e, "could not save the resume record; an interrupted upload will start over");
        }
    }

    /// One tus upload for the whole file, hashed as it streams.
    pub(crate) async fn sequential(&self) -> Result<(String, [u8; 32], bool), ClientError> {
        let part = self.parts[0].clone();
        let sha = Arc::new(Mutex::new(RewindableSha::default()));
        let done = self.run_part(&part, Some(sha.clone())).await?;
        let local = {
            let mut h = sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
            let mut f = File::open(self.path).map_err(|e| ClientError::local(self.path, e))?;
            h.seek(&mut f, self.size).map_err(|e| ClientError::local(self.path, e))?;
            h.digest()
        };
        let verified = match done.server_sha {
            Some(s) if s != local => {
                return Err(ClientError::Verification(format!(
                    "the server stored SHA-256 {} but the file has {}",
                    to_hex(&s),
                    to_hex(&local)
                )));
            }
            Some(_) => true,
            None => false,
        };
        Ok((part.url().map(|u| u.to_string()).unwrap_or_default(), local, verified))
    }

    /// Partial uploads in parallel. The parts are created first and joined at once by a
    /// final upload (concatenation-unfinished), which lets a ferry server write them in
    /// place, so joining costs no copy. Each part is hashed as it streams and checked by the
    /// server (`Repr-Digest` trailer) before it counts; the whole file is hashed by one
    /// concurrent pass and compared with the finished final upload's digest.
    pub(crate) async fn parallel(&self) -> Result<(String, [u8; 32], bool), ClientError> {
        // All at once (a round trip each would add up on a far server), recorded together.
        let missing = self.parts.iter().filter(|p| p.url().is_none());
        futures_util::future::try_join_all(missing.map(|p| self.with_retries(|| self.post_part(p)))).await?;
        self.save_record();
        let concat = format!(
            "final;{}",
            self.parts.iter().filter_map(|p| p.url()).map(|u| u.path().to_owned()).collect::<Vec<_>>().join(" ")
        );
        let mut final_url = self.final_url.lock().ok().and_then(|u| u.clone());
        if let Some(u) = &final_url
            && self.with_retries(|| self.up.head_final(u)).await?.is_none()
        {
            final_url = None; // gone (expired or failed): make a new one below
        }
        let mut join_later = false;
        if final_url.is_none() {
            let headers = [
                ("Upload-Concat", concat.clone()),
                ("Upload-Metadata", file_metadata(self.name, self.remote_dir, None, &self.up.options)),
            ];
            match self.with_retries(|| self.up.post(&headers)).await {
                Ok(u) => final_url = Some(u),
                // A server without concatenation-unfinished: join after the parts are done.
                Err(ClientError::Rejected { status: 400, .. }) => join_later = true,
                Err(e) => return Err(e),
            }
            *self.final_url.lock().unwrap_or_else(|p| p.into_inner()) = final_url.clone();
            self.save_record();
        }

        let shas: Vec<_> =
            self.parts.iter().map(|p| Arc::new(Mutex::new(RewindableSha::starting_at(p.start)))).collect();
        let hashing = hash_file(self.file.clone(), self.size, self.path);
        // Parts run in order, as many at once as the gate lets through: all of them when the
        // count was given, else a count that grows while the rate keeps rising.
        let ramp = match self.up.options.parallel {
            Some(_) => Ramp::new(self.parts.len(), self.parts.len()),
            None => Ramp::new(START, self.parts.len().min(self.up.options.max_parallel)),
        };
        let ramp = match self.rtt {
            Some(rtt) => ramp.with_rtt(rtt),
            None => ramp,
        };
        let gate = Semaphore::new(ramp.streams());
        // Every part runs to its own end: on Ctrl-C each one ends its PATCH cleanly and waits
        // for the server to keep it, so none may be dropped because another stopped first.
        let sends = futures_util::future::join_all(self.parts.iter().zip(&shas).map(|(p, sha)| {
            let gate = &gate;
            async move {
                let _turn = gate.acquire().await.map_err(|_| ClientError::Interrupted)?;
                self.run_part(p, Some(sha.clone())).await
            }
        }));
        let sends = async {
            let mut sends = std::pin::pin!(sends);
            let all = tokio::select! {
                all = &mut sends => all,
                never = self.adapt(ramp, &gate) => match never {},
            };
            all.into_iter().collect::<Result<Vec<_>, _>>()
        };
        let (sha, done) = futures_util::future::try_join(hashing, sends).await?;
        for ((part, part_sha), d) in self.parts.iter().zip(&shas).zip(&done) {
            let local = {
                let mut h = part_sha.lock().map_err(|_| ClientError::Protocol("hash state poisoned".into()))?;
                let mut f = File::open(self.path).map_err(|e| ClientError::local(self.path, e))?;
                h.seek(&mut f, part.end).map_err(|e| ClientError::local(self.path, e))?;
                h.digest()
            };
            if d.server_sha.is_some_and(|s| s != local) {
                return Err(ClientError::Verification(format!(
                    "the server stored different bytes for the part at {}",
                    part.start
                )));
            }
        }
        let final_url = match final_url {
            Some(u) if !join_later && !self.recreated.load(Ordering::Relaxed) => u,
            _ => {
                // The parts as they are now (one may have been created again).
                let concat = format!(
                    "final;{}",
                    self.parts
                        .iter()
                        .filter_map(|p| p.url())
                        .map(|u| u.path().to_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let headers = [
                    ("Upload-Concat", concat),
                    ("Upload-Metadata", file_metadata(self.name, self.remote_dir, Some(&sha), &self.up.options)),
                ];
                self.with_retries(|| self.up.post(&headers)).await?
            }
        };
        // The server joins the parts as the last one completes; confirm, and compare digests.
        for attempt in 0..50 {
            match self.with_retries(|| self.up.head_final(&final_url)).await? {
                Some(status) if status.length == Some(self.size) && status.offset == self.size => {
                    return match status.sha {
                        Some(s) if s != sha => Err(ClientError::Verification(format!(
                            "the server joined the parts into SHA-256 {} but the file has {}",
                            to_hex(&s),
                            to_hex(&sha)
                        ))),
                        server => Ok((final_url.to_string(), sha, server.is_some())),
                    };
                }
                Some(_) if attempt < 49 => tokio::time::sleep(Duration::from_millis(200)).await,
                Some(_) => break,
                None => {
                    return Err(ClientError::Rejected {
                        status: 410,
                        reason: "the final upload failed on the server".into(),
                    });
                }
            }
        }
        Err(ClientError::Unreachable("the server did not finish joining the parts; run again to resume".into()))
    }

    /// Step by step, judges the rate the parts achieved and opens the gate wider (or takes
    /// back the last widening) as the ramp says; runs until dropped. The rate counts the
    /// bytes handed to the connections: PATCH bodies read small blocks on a slow link
    /// ([`Chunker::block`]), and a new connection's buffers fill during the warm-up before
    /// each measurement, so that stays close to what the link delivers.
    async fn adapt(&self, mut ramp: Ramp, gate: &Semaphore) -> std::convert::Infallible {
        let on_wire = || self.parts.iter().map(|p| p.on_wire()).sum::<u64>();
        // Turns given back but still held by running parts: taken as they come back, so
        // this loop never waits for them.
        let mut owed = 0usize;
        loop {
            if ramp.fixed() {
                return std::future::pending().await;
            }
            let rate = step_rate(on_wire).await;
            owed -= gate.forget_permits(owed);
            let before = ramp.streams();
            let next = ramp.observe(rate);
            tracing::debug!(rate_mb_s = rate / 1e6, streams = before, next, "upload streams");
            if next > before {
                let repaid = owed.min(next - before);
                owed -= repaid;
                gate.add_permits(next - before - repaid);
            } else if next < before {
                // Parts running keep their turn; the next ones wait for fewer.
                owed += before - next;
                owed -= gate.forget_permits(owed);
            }
        }
    }

    pub(crate) async fn with_retries<T, F, Fut>(&self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut attempts = 0;
        loop {
            match f().await {
                Err(e) if e.is_retryable() && attempts < self.up.retry.max_attempts => {
                    attempts += 1;
                    self.backoff(attempts, &e).await?;
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn backoff(&self, attempt: u32, e: &ClientError) -> Result<(), ClientError> {
        let delay = self.up.retry.announce(attempt, e);
        tracing::info!(error = %e, attempt, delay_ms = delay.as_millis() as u64, "retrying");
        tokio::select! {
            () = self.up.cancel.cancelled() => Err(ClientError::Interrupted),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Creates the tus upload of a part and records it for a resume.
    pub(crate) async fn create(&self, part: &Part) -> Result<Url, ClientError> {
        let url = self.post_part(part).await?;
        self.save_record();
        Ok(url)
    }

    /// Creates the tus upload of a part.
    async fn post_part(&self, part: &Part) -> Result<Url, ClientError> {
        let mut headers = vec![("Upload-Length", part.len().to_string())];
        if part.concat_partial {
            headers.push(("Upload-Concat", "partial".to_owned()));
        } else {
            headers.push(("Upload-Metadata", file_metadata(self.name, self.remote_dir, None, &self.up.options)));
        }
        let url = self.up.post(&headers).await?;
        *part.url.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.clone());
        Ok(url)
    }

    /// Drives one part to completion: re-sync, send a chunk, adapt, retry.
    pub(crate) async fn run_part(
        &self,
        part: &Part,
        sha: Option<Arc<Mutex<RewindableSha>>>,
    ) -> Result<PartDone, ClientError> {
        let mut chunker = Chunker::new(self.up.options.chunk, self.parts.len());
        let mut attempts = 0u32;
        let mut last_offset = None;
        loop {
            if self.up.cancel.is_cancelled() {
                return Err(ClientError::Interrupted);
            }
            let result = self.part_step(part, &sha, &mut chunker).await;
            // The retry budget counts attempts without progress.
            let now = part.confirmed.load(Ordering::Relaxed);
            if last_offset != Some(now) {
                attempts = 0;
            }
            last_offset = Some(now);
            match result {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {}
                Err(e) if e.is_retryable() && attempts < self.up.retry.max_attempts => {
                    attempts += 1;
                    chunker.failed(part.last_delivered.load(Ordering::Relaxed));
                    tracing::debug!(next = ?chunker.plan(u64::MAX), "chunk failed");
                    self.backoff(attempts, &e).await?;
                }
                Err(ClientError::Unreachable(msg)) => {
                    return Err(ClientError::Unreachable(format!(
                        "{msg} (gave up after {attempts} retries without progress; run again to resume)"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
