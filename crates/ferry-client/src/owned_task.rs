//! A spawned task with an owner: dropping the [`OwnedTask`] aborts it, so nothing outlives
//! the work it belongs to (a PATCH in flight, a presence reporter, a progress ticker).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

/// A task aborted when this handle is dropped; awaiting it yields the task's output.
#[derive(Debug)]
pub(crate) struct OwnedTask<T>(JoinHandle<T>);

impl<T: Send + 'static> OwnedTask<T> {
    /// Spawns `f` on the runtime.
    pub(crate) fn spawn(f: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(f))
    }
}

impl<T> Future for OwnedTask<T> {
    /// `None` when the task panicked or was aborted.
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        Pin::new(&mut self.0).poll(cx).map(Result::ok)
    }
}

impl<T> Drop for OwnedTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
