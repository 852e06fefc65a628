//! Draining connections in flight: every connection a proxy serves holds a [`Tracked`] from
//! [`Connections::track`]; on shutdown [`Connections::drain`] waits for them to finish on their own until the
//! drain deadline, then tells the rest to close ([`Tracked::closing`]) and waits briefly for them to go.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long connections told to close may take to go after the drain deadline.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The connections in flight. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    open: AtomicUsize,
    idle: Notify,
    close: CancellationToken,
}

/// One connection in flight; the count drops with it.
#[derive(Debug)]
pub struct Tracked {
    inner: Arc<Inner>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections open when the drain started.
    pub at_start: usize,
    /// Connections still open at the deadline, told to close.
    pub closed_at_deadline: usize,
}

impl Connections {
    /// No connections.
    pub fn new() -> Self {
        Connections::default()
    }

    /// Counts a connection until the returned value is dropped.
    pub fn track(&self) -> Tracked {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        Tracked { inner: Arc::clone(&self.inner) }
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Waits until every connection has finished or `timeout` has passed; then tells those left to close and
    /// waits a moment for them to go.
    pub async fn drain(&self, timeout: Duration) -> Drained {
        let at_start = self.open();
        if tokio::time::timeout(timeout, self.idle()).await.is_ok() {
            return Drained { at_start, closed_at_deadline: 0 };
        }
        let closed_at_deadline = self.open();
        self.inner.close.cancel();
        let _ = tokio::time::timeout(CLOSE_GRACE, self.idle()).await;
        Drained { at_start, closed_at_deadline }
    }

    async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Tracked {
    /// Resolves when the drain deadline has passed: the connection must close now (a reset, not a clean end,
    /// as it is cut short).
    pub async fn closing(&self) {
        self.inner.close.cancelled().await;
    }

    /// Whether the drain deadline has passed.
    pub fn is_closing(&self) -> bool {
        self.inner.close.is_cancelled()
    }

    /// A token cancelled at the drain deadline, or earlier by its own holder: one thing for a connection to
    /// wait on when something else (a policy change, say) may close it too.
    pub fn child_token(&self) -> CancellationToken {
        self.inner.close.child_token()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.inner.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_connections_then_closes_the_rest_at_the_deadline() {
        let connections = Connections::new();
        let quick = connections.track();
        let slow = connections.track();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(quick);
        });
        let closed = tokio::spawn(async move {
            slow.closing().await;
            tokio::time::Instant::now()
        });
        let started = tokio::time::Instant::now();
        let drained = connections.drain(Duration::from_secs(5)).await;
        assert_eq!(drained, Drained { at_start: 2, closed_at_deadline: 1 });
        let at = closed.await.ok().map(|t| t - started);
        assert_eq!(at, Some(Duration::from_secs(5)), "the slow connection is told to close at the deadline");
        assert_eq!(connections.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_with_nothing_in_flight_ends_at_once() {
        let connections = Connections::new();
        let started = tokio::time::Instant::now();
        let drained = connections.drain(Duration::from_secs(5)).await;
        assert_eq!(drained, Drained { at_start: 0, closed_at_deadline: 0 });
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
