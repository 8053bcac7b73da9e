//! Password checks that cannot exhaust the server or be brute-forced at speed.
//!
//! - At most [`CONCURRENT`] argon2id verifications run at once (each takes ~19 MiB and a
//!   core for tens of milliseconds), on that many dedicated threads: the rest wait their
//!   turn. (On the blocking pool every new thread's malloc arena kept its own 19 MiB: 64
//!   concurrent wrong passwords reached 1.3 GB.)
//! - Failures are counted per user name and per client address: after [`MAX_FAILURES`]
//!   within [`WINDOW`], further attempts are answered 429 with `Retry-After` until the
//!   window has passed.
//! - A verified Basic credential is remembered for [`REMEMBER`] (keyed by a SHA-256 of name
//!   and password, and only while the stored hash is unchanged), so curl or aria2 sending
//!   the password on every request do not pay argon2id each time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::ApiError;
use crate::auth::verify_login_in;

/// Verifications running at once.
const CONCURRENT: usize = 2;
/// Failures allowed per user and per address within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The failure-counting window.
const WINDOW: Duration = Duration::from_secs(60);
/// How long a verified credential is remembered.
const REMEMBER: Duration = Duration::from_secs(60);
/// Entries kept in either table before old ones are dropped.
const MAX_ENTRIES: usize = 10_000;

/// The gate every password check goes through.
#[derive(Debug)]
pub struct PasswordGate {
    permits: Semaphore,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Jobs for the verifier threads (they end when this is dropped).
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// A password, the stored hash (if the user exists), and where the answer goes.
type Job = (String, Option<String>, tokio::sync::oneshot::Sender<bool>);

impl Default for PasswordGate {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..CONCURRENT {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("ferry-password-{i}")).spawn(move || {
                let mut memory = Vec::new();
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((password, stored, answer)) = job else { return };
                    let _ = answer.send(verify_login_in(&password, stored.as_deref(), &mut memory));
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password verifier thread");
            }
        }
        Self {
            permits: Semaphore::new(CONCURRENT),
            failures: Mutex::default(),
            verified: Mutex::default(),
            jobs: Mutex::new(tx),
        }
    }
}

impl PasswordGate {
    /// Checks `password` for user `name` (stored hash `stored`, `None` for an unknown user)
    /// from `client`. `Ok(true)` when it matches; 429 while throttled.
    pub async fn check(
        &self,
        name: &str,
        password: &str,
        stored: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<bool, ApiError> {
        let keys = [Some(format!("u:{name}")), client.map(|a| format!("a:{a}"))];
        if let Some(wait) = self.throttled(&keys) {
            return Err(ApiError::TooManyRequests(wait));
        }
        let key: [u8; 32] = Sha256::new().chain_update(name).chain_update([0]).chain_update(password).finalize().into();
        if let Some(stored) = stored
            && self.remembered(&key, stored)
        {
            return Ok(true);
        }
        let ok = {
            let _permit =
                self.permits.acquire().await.map_err(|_| ApiError::Internal("password gate closed".into()))?;
            // Failures may have piled up while this one waited its turn.
            if let Some(wait) = self.throttled(&keys) {
                return Err(ApiError::TooManyRequests(wait));
            }
            let (answer, result) = tokio::sync::oneshot::channel();
            let job = (password.to_owned(), stored.map(str::to_owned), answer);
            let sent = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).send(job);
            sent.map_err(|_| ApiError::Internal("no password verifier is running".into()))?;
            result.await.map_err(|_| ApiError::Internal("the password verifier stopped".into()))?
        };
        if ok {
            if let Some(stored) = stored {
                let mut map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                prune(&mut map, REMEMBER);
                map.insert(key, (stored.to_owned(), Instant::now()));
            }
        } else {
            self.fail(&keys);
        }
        Ok(ok)
    }

    /// Naming other users (relay recipients) is throttled like guessing passwords: after
    /// [`MAX_FAILURES`] unknown names within a minute, the caller gets 429 for a while, so
    /// the list of accounts cannot be walked. Call before looking names up.
    pub(crate) fn may_look_up_names(&self, caller: i64) -> Result<(), ApiError> {
        match self.throttled(&[Some(format!("n:{caller}"))]) {
            Some(wait) => Err(ApiError::TooManyRequests(wait)),
            None => Ok(()),
        }
    }

    /// Counts a name that `caller` gave and that does not exist.
    pub(crate) fn unknown_name(&self, caller: i64) {
        self.fail(&[Some(format!("n:{caller}"))]);
    }

    fn throttled(&self, keys: &[Option<String>]) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .flatten()
            .filter_map(|k| map.get(k))
            .filter(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < WINDOW)
            .map(|(_, since)| WINDOW.saturating_sub(since.elapsed()))
            .max()
    }

    fn fail(&self, keys: &[Option<String>]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut map, WINDOW);
        for k in keys.iter().flatten() {
            let e = map.entry(k.clone()).or_insert((0, Instant::now()));
            if e.1.elapsed() >= WINDOW {
                *e = (0, Instant::now());
            }
            e.0 += 1;
        }
    }

    fn remembered(&self, key: &[u8; 32], stored: &str) -> bool {
        let map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).is_some_and(|(hash, at)| hash == stored && at.elapsed() < REMEMBER)
    }
}

/// Drops entries older than `age` once a table is full (so memory stays bounded).
fn prune<K, V>(map: &mut HashMap<K, (V, Instant)>, age: Duration) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, (_, at)| at.elapsed() < age);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_are_throttled_per_user_and_address_and_successes_remembered() {
        let gate = PasswordGate::default();
        let hash = crate::auth::hash_password("right").unwrap();
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(gate.check("alice", "right", Some(&hash), Some(addr)).await.unwrap());
        assert!(gate.remembered(
            &Sha256::new().chain_update("alice").chain_update([0]).chain_update("right").finalize().into(),
            &hash
        ));
        for _ in 0..MAX_FAILURES {
            assert!(!gate.check("alice", "wrong", Some(&hash), Some(addr)).await.unwrap());
        }
        assert!(matches!(gate.check("alice", "right", Some(&hash), None).await, Err(ApiError::TooManyRequests(_))));
        assert!(
            matches!(gate.check("bob", "x", None, Some(addr)).await, Err(ApiError::TooManyRequests(_))),
            "the address is throttled for every name"
        );
        assert!(!gate.check("carol", "x", None, Some("10.0.0.2".parse().unwrap())).await.unwrap());
    }
}
