//! Open tunnels as their owner sees them: a [`TunnelHandle`] per tunnel, inbound and outbound, with its peer,
//! target, byte counts and opening time, and a way to close it; [`Tunnels`], the registry a server and a client
//! share with their owner, to list open tunnels and close those a new policy denies; and [`TunnelObserver`],
//! called as tunnels open and close, for metrics in whatever library the owner uses.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

use mesh_identity::spiffe::SpiffeId;
use tokio::time::Instant;

use crate::authority::HboneAddress;

/// Which way a tunnel goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Accepted by an [`HboneServer`](super::HboneServer).
    Inbound,
    /// Opened by an [`HboneClient`](super::HboneClient).
    Outbound,
}

/// One open tunnel, as its owner sees it. Cheap to clone; clones are the same tunnel, and stay readable after it
/// closed (the counts are then final).
#[derive(Clone)]
pub struct TunnelHandle {
    inner: Arc<State>,
}

struct State {
    id: u64,
    direction: Direction,
    peer: SpiffeId,
    target: HboneAddress,
    opened: Instant,
    sent: AtomicU64,
    received: AtomicU64,
    closed: AtomicBool,
    /// The tasks waiting on the tunnel's stream (reading, writing), to wake when it is closed from outside.
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl fmt::Debug for TunnelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelHandle")
            .field("id", &self.id())
            .field("direction", &self.direction())
            .field("peer", self.peer())
            .field("target", self.target())
            .field("bytes_sent", &self.bytes_sent())
            .field("bytes_received", &self.bytes_received())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl TunnelHandle {
    /// A number unique among the tunnels of its registry.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Inbound (accepted by a server) or outbound (opened by a client).
    pub fn direction(&self) -> Direction {
        self.inner.direction
    }

    /// The identity of the proxy at the other end, verified in the handshake: the client proxy of an inbound
    /// tunnel, the destination of an outbound one.
    pub fn peer(&self) -> &SpiffeId {
        &self.inner.peer
    }

    /// Where the tunnel goes: for an inbound tunnel, the target the server resolved; for an outbound one, the
    /// CONNECT authority.
    pub fn target(&self) -> &HboneAddress {
        &self.inner.target
    }

    /// When the tunnel opened, on tokio's clock.
    pub fn opened(&self) -> Instant {
        self.inner.opened
    }

    /// Bytes sent into the tunnel so far (DATA payload handed to HTTP/2).
    pub fn bytes_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Bytes received from the tunnel so far (DATA payload taken from HTTP/2).
    pub fn bytes_received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Closes the tunnel both ways: the stream is reset (RST_STREAM CANCEL, which the peer reads as an
    /// error), and reads and writes of it fail from then on, which ends a relay and closes its other stream.
    /// Takes effect at once for a task waiting on the stream (a relay always is), otherwise at its next use.
    pub fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let wakers = std::mem::take(&mut *self.wakers());
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    fn wakers(&self) -> MutexGuard<'_, [Option<Waker>; 2]> {
        // A list of wakers is consistent whatever panicked while it was held.
        self.inner.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn count_sent(&self, n: usize) {
        self.inner.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_received(&self, n: usize) {
        self.inner.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Wakes `cx`'s task when the tunnel is closed, in place of the task last waiting on the same `side` of
    /// the stream; true if it already is closed (then the caller acts now).
    pub(crate) fn watch_close(&self, cx: &Context<'_>, side: Side) -> bool {
        if self.is_closed() {
            return true;
        }
        {
            let mut wakers = self.wakers();
            let slot = &mut wakers[side as usize];
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        // Closed between the check and the registration: `close` may have taken the list before this waker.
        self.is_closed()
    }
}

/// Which side of a stream a task waits on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Read = 0,
    Write = 1,
}

/// Told as tunnels open and close, for the owner's metrics and logs. Both methods do nothing by default; they
/// run on the task opening or ending the tunnel, so keep them short.
pub trait TunnelObserver: Send + Sync + 'static {
    /// A tunnel opened (after the 200).
    fn opened(&self, tunnel: &TunnelHandle) {
        let _ = tunnel;
    }

    /// A tunnel's stream was dropped; its counts are final.
    fn closed(&self, tunnel: &TunnelHandle) {
        let _ = tunnel;
    }
}

/// An observer the owner keeps a reference to (to read what it gathered) observes as itself.
impl<T: TunnelObserver> TunnelObserver for Arc<T> {
    fn opened(&self, tunnel: &TunnelHandle) {
        T::opened(self, tunnel);
    }

    fn closed(&self, tunnel: &TunnelHandle) {
        T::closed(self, tunnel);
    }
}

/// The open tunnels of the servers and clients that share it, to list and close. Cheap to clone; clones are
/// the same registry. A tunnel is listed from its 200 until its stream is dropped.
#[derive(Clone, Default)]
pub struct Tunnels {
    inner: Arc<Registry>,
}

#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, TunnelHandle>>,
    observer: Option<Arc<dyn TunnelObserver>>,
}

impl fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnels").field("open", &self.len()).finish_non_exhaustive()
    }
}

impl Tunnels {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry telling `observer` as tunnels open and close.
    pub fn with_observer(observer: impl TunnelObserver) -> Self {
        Tunnels { inner: Arc::new(Registry { observer: Some(Arc::new(observer)), ..Registry::default() }) }
    }

    fn open(&self) -> MutexGuard<'_, BTreeMap<u64, TunnelHandle>> {
        // The map is consistent whatever panicked while it was held: every change is one insert or remove.
        self.inner.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open tunnels, oldest first.
    pub fn list(&self) -> Vec<TunnelHandle> {
        self.open().values().cloned().collect()
    }

    /// How many tunnels are open.
    pub fn len(&self) -> usize {
        self.open().len()
    }

    /// Whether no tunnel is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every open tunnel for which `deny` is true (after a policy change, say); returns how many.
    pub fn close_where(&self, mut deny: impl FnMut(&TunnelHandle) -> bool) -> usize {
        let denied: Vec<TunnelHandle> = self.list().into_iter().filter(|t| deny(t)).collect();
        for tunnel in &denied {
            tunnel.close();
        }
        denied.len()
    }

    /// Lists a tunnel that just opened; it leaves the list when the returned registration is dropped.
    pub(crate) fn register(&self, direction: Direction, peer: SpiffeId, target: HboneAddress) -> Registration {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let state = State {
            id,
            direction,
            peer,
            target,
            opened: Instant::now(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            wakers: Mutex::new([None, None]),
        };
        let handle = TunnelHandle { inner: Arc::new(state) };
        self.open().insert(id, handle.clone());
        if let Some(observer) = &self.inner.observer {
            observer.opened(&handle);
        }
        Registration { handle, tunnels: self.clone() }
    }
}

/// A tunnel's place in its registry, held by its stream.
pub(crate) struct Registration {
    pub(crate) handle: TunnelHandle,
    tunnels: Tunnels,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tunnels.open().remove(&self.handle.id());
        if let Some(observer) = &self.tunnels.inner.observer {
            observer.closed(&self.handle);
        }
    }
}
