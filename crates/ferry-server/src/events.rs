//! Push and presence.
//!
//! `GET /api/events` is a Server-Sent Events stream per logged-in user: a `hello` event
//! naming the heartbeat interval, then `item` and `delivery` events, with a heartbeat
//! comment whenever the stream is idle for one interval. A watching client reports
//! itself with `POST /api/presence` every interval; a user counts as online while the last
//! report (or stream opening) is under three intervals old, so an offline peer is noticed
//! within three missed heartbeats even when its TCP connection never closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

use crate::auth::{Credential, Identity};
use crate::{ApiError, AppState};

/// The event hub.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<(i64, &'static str, String)>,
    /// With a shared database: events go out through it (see `cluster.rs`).
    published: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
    last_seen: Mutex<HashMap<i64, Instant>>,
    /// Bumped when a credential is revoked here, so open streams re-check theirs at once.
    pub(crate) revocations: tokio::sync::watch::Sender<u64>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            published: std::sync::OnceLock::new(),
            last_seen: Mutex::default(),
            revocations: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Events {
    /// Sends `kind` with JSON `data` to every open stream of `user`.
    /// With a shared database the event goes to every node, which delivers it to its own
    /// streams.
    pub fn notify(&self, user: i64, kind: &'static str, data: serde_json::Value) {
        match self.published.get() {
            Some(out) => {
                let _ = out.send(serde_json::json!({ "user": user, "kind": kind, "data": data }).to_string());
            }
            None => {
                let _ = self.tx.send((user, kind, data.to_string()));
            }
        }
    }

    /// Sends events out through `out` from now on (a shared database).
    pub(crate) fn publish_through(&self, out: tokio::sync::mpsc::UnboundedSender<String>) {
        let _ = self.published.set(out);
    }

    /// Delivers an event published by any node to this node's streams (a presence report
    /// to this node's presence table).
    pub(crate) fn deliver_published(&self, payload: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else { return };
        let Some(user) = v["user"].as_i64() else { return };
        let kind = match v["kind"].as_str() {
            Some("item") => "item",
            Some("delivery") => "delivery",
            Some("presence") => return self.mark_seen(user),
            _ => return,
        };
        let _ = self.tx.send((user, kind, v["data"].to_string()));
    }

    /// `user` is online now: here, and (with a shared database) on every node.
    pub(crate) fn seen(&self, user: i64) {
        self.mark_seen(user);
        if let Some(out) = self.published.get() {
            let _ = out.send(serde_json::json!({ "user": user, "kind": "presence" }).to_string());
        }
    }

    fn mark_seen(&self, user: i64) {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).insert(user, Instant::now());
    }

    /// How long ago `user` last reported, if ever.
    pub fn last_seen(&self, user: i64) -> Option<Duration> {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).get(&user).map(Instant::elapsed)
    }
}

fn stream_for(
    events: &Events,
    user: i64,
    heartbeat: Duration,
) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    events.seen(user);
    let hello =
        Event::default().event("hello").data(serde_json::json!({ "heartbeat": heartbeat.as_secs_f64() }).to_string());
    let rx = events.tx.subscribe();
    let first = stream::once(async move { Ok(hello) });
    let rest = stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok((u, kind, data)) if u == user => return Some((Ok(Event::default().event(kind).data(data)), rx)),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures_util::StreamExt::chain(first, rest)
}

fn user(who: &Identity) -> Result<i64, ApiError> {
    who.user_id().ok_or_else(|| ApiError::bad("events need an account (the server runs without accounts)"))
}

/// `GET /api/events`. The stream ends when the server drains (the watcher reconnects to
/// its successor) and when the credential that opened it stops being valid (logout, a new
/// password, the user removed): checked at every heartbeat and at once on a logout here.
pub async fn events(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    credential: Option<Extension<Credential>>,
) -> Result<Response, ApiError> {
    let me = user(&who)?;
    let beat = state.config.heartbeat;
    let revoked = {
        let (state, mut revocations) = (state.clone(), state.events.revocations.subscribe());
        async move {
            let Some(Extension(credential)) = credential else { return std::future::pending().await };
            loop {
                tokio::select! {
                    _ = revocations.changed() => {}
                    () = tokio::time::sleep(beat) => {}
                }
                if !credential.still_valid(&state).await {
                    return;
                }
            }
        }
    };
    let until = {
        let draining = state.draining.clone();
        async move {
            tokio::select! {
                () = draining.cancelled() => {}
                () = revoked => {}
            }
        }
    };
    let stream = futures_util::StreamExt::take_until(stream_for(state.events.as_ref(), me, beat), until);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(beat).text("heartbeat")).into_response())
}

/// `POST /api/presence`: "I am still here".
pub async fn report(State(state): State<AppState>, Extension(who): Extension<Identity>) -> Result<Response, ApiError> {
    state.events.seen(user(&who)?);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/presence/{user}`: whether a user is online (reported within three heartbeats),
/// and the endpoint of their client that takes direct transfers, if any.
/// A name nobody has is answered like a user who never came online, so the route cannot
/// be used to find out which names exist.
pub async fn presence(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    user(&who)?;
    let ago = state.meta.user_by_name(&name).await?.and_then(|(u, _)| state.events.last_seen(u.id));
    let online = ago.is_some_and(|a| a < state.config.heartbeat * 3);
    // The endpoint of the client that takes direct transfers, while one is registered here.
    let endpoint = state.p2p.as_ref().and_then(|n| n.registry.endpoint_of(&name)).map(|id| id.to_string());
    Ok(Json(serde_json::json!({
        "user": name, "online": online, "last_seen_secs": ago.map(|a| a.as_secs()), "endpoint_id": endpoint,
    }))
    .into_response())
}
