//! Push to online users: `GET /api/events` is a Server-Sent Events stream per logged-in
//! user, with a heartbeat comment every [`HEARTBEAT`]; the hub also knows who is online
//! (has at least one open stream).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

use crate::auth::Identity;
use crate::{ApiError, AppState};

/// How often an idle stream carries a heartbeat; a client that misses three may assume the
/// connection is dead and reconnect.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// The event hub.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<(i64, &'static str, String)>,
    online: Arc<Mutex<HashMap<i64, usize>>>,
}

impl Default for Events {
    fn default() -> Self {
        Self { tx: broadcast::channel(1024).0, online: Arc::default() }
    }
}

impl Events {
    /// Sends `kind` with JSON `data` to every open stream of `user`.
    pub fn notify(&self, user: i64, kind: &'static str, data: serde_json::Value) {
        let _ = self.tx.send((user, kind, data.to_string()));
    }

    /// Whether `user` has an open event stream.
    pub fn is_online(&self, user: i64) -> bool {
        self.online.lock().unwrap_or_else(|p| p.into_inner()).get(&user).is_some_and(|n| *n > 0)
    }
}

/// Counts a stream as "online" for as long as it lives.
struct Presence {
    user: i64,
    online: Arc<Mutex<HashMap<i64, usize>>>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let mut map = self.online.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
    }
}

fn stream_for(events: &Events, user: i64) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    *events.online.lock().unwrap_or_else(|p| p.into_inner()).entry(user).or_default() += 1;
    let presence = Presence { user, online: events.online.clone() };
    let hello = Event::default().event("hello").data("{}");
    let rx = events.tx.subscribe();
    let first = stream::once(async move { Ok(hello) });
    let rest = stream::unfold((rx, presence), |(mut rx, presence)| async move {
        loop {
            match rx.recv().await {
                Ok((u, kind, data)) if u == presence.user => {
                    return Some((Ok(Event::default().event(kind).data(data)), (rx, presence)));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures_util::StreamExt::chain(first, rest)
}

/// `GET /api/events`.
pub async fn events(State(state): State<AppState>, Extension(who): Extension<Identity>) -> Result<Response, ApiError> {
    let user =
        who.user_id().ok_or_else(|| ApiError::bad("events need an account (the server runs without accounts)"))?;
    Ok(Sse::new(stream_for(state.events.as_ref(), user))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response())
}
