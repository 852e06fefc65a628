//! Connection pooling as a pure state machine: which HBONE connection carries the next stream.
//!
//! As ztunnel pools: connections are keyed by (source identity, destination identities, destination address,
//! source IP); a connection carries at most 100 concurrent streams (or fewer, if the peer's
//! SETTINGS_MAX_CONCURRENT_STREAMS says so), then another is opened; a connection being established is shared,
//! so a second checkout for the same key joins it instead of opening another; a connection with no streams
//! for 5 minutes is released.
//!
//! Nothing here does IO or reads a clock: the caller passes `now` and carries out the answers: dial for
//! [`Checkout::Connect`], wait for that dial for [`Checkout::Join`], open a stream for [`Checkout::Reuse`], and
//! close what [`Pool::expire`] lists, by the deadline it gives.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mesh_identity::spiffe::SpiffeId;

/// ztunnel's streams-per-connection limit.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// ztunnel's idle release timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What a pooled connection is for: connections are shared only between streams with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// The identity the source presents.
    pub source_identity: SpiffeId,
    /// The identities the destination may present.
    pub destination_identities: Vec<SpiffeId>,
    /// The address dialled.
    pub destination: SocketAddr,
    /// The source IP (connections may be bound to the original source).
    pub source_ip: IpAddr,
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})->{}[", self.source_ip, self.source_identity, self.destination)?;
        for (i, id) in self.destination_identities.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}")?;
        }
        f.write_str("]")
    }
}

/// A pooled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Pool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most concurrent streams per connection: 100.
    pub max_streams_per_connection: u32,
    /// How long a connection without streams is kept: 5 minutes.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Which connection carries a new stream. In every case a stream slot is reserved on it: give it back with
/// [`Pool::release`] when the stream ends (or could not be opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkout {
    /// Open the stream on this established connection.
    Reuse(ConnId),
    /// This connection is being established: wait for [`Pool::connected`] or [`Pool::connect_failed`].
    Join(ConnId),
    /// Establish this new connection, then report [`Pool::connected`] or [`Pool::connect_failed`].
    Connect(ConnId),
}

impl Checkout {
    /// The connection.
    pub fn id(self) -> ConnId {
        match self {
            Checkout::Reuse(id) | Checkout::Join(id) | Checkout::Connect(id) => id,
        }
    }
}

/// What [`Pool::expire`] asks the caller to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expired {
    /// Close these idle connections; they have left the pool.
    pub close: Vec<ConnId>,
    /// Call [`Pool::expire`] again by then.
    pub next_deadline: Option<Instant>,
}

/// A pool operation named a connection the pool does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The connection was closed, failed or never existed.
    #[error("{0} is not in the pool (already closed, failed or expired)")]
    UnknownConnection(ConnId),
    /// The connection is already established.
    #[error("{0} is already established")]
    AlreadyConnected(ConnId),
    /// A stream was released that was never reserved.
    #[error("{0} has no stream to release")]
    NoStream(ConnId),
}

#[derive(Debug, Clone)]
struct Conn {
    key: PoolKey,
    established: bool,
    /// Streams allowed at once: the pool's limit, lowered to the peer's once known.
    capacity: u32,
    /// Streams reserved (open, being opened, or waiting for the connection).
    streams: u32,
    /// Since when the connection has had no stream.
    idle_since: Option<Instant>,
}

/// The pool.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    config: PoolConfig,
    conns: BTreeMap<ConnId, Conn>,
    by_key: HashMap<PoolKey, Vec<ConnId>>,
    next_id: u64,
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Pool { config, ..Pool::default() }
    }

    /// The limits.
    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// Picks the connection for a new stream to `key`: an established one with room (oldest first), else one
    /// being established with room, else a new one.
    pub fn checkout(&mut self, key: &PoolKey, now: Instant) -> Checkout {
        let ids = self.by_key.get(key).map(Vec::as_slice).unwrap_or_default();
        let with_room = |established: bool| {
            ids.iter()
                .copied()
                .find(|id| self.conns.get(id).is_some_and(|c| c.established == established && c.streams < c.capacity))
        };
        let choice = match (with_room(true), with_room(false)) {
            (Some(id), _) => Checkout::Reuse(id),
            (None, Some(id)) => Checkout::Join(id),
            (None, None) => {
                let id = ConnId(self.next_id);
                self.next_id += 1;
                let conn = Conn {
                    key: key.clone(),
                    established: false,
                    capacity: self.config.max_streams_per_connection,
                    streams: 0,
                    idle_since: Some(now),
                };
                self.conns.insert(id, conn);
                self.by_key.entry(key.clone()).or_default().push(id);
                Checkout::Connect(id)
            }
        };
        if let Some(conn) = self.conns.get_mut(&choice.id()) {
            conn.streams += 1;
            conn.idle_since = None;
        }
        choice
    }

    /// The connection is established; `peer_max_streams` is the peer's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub fn connected(&mut self, id: ConnId, peer_max_streams: Option<u32>, now: Instant) -> Result<(), PoolError> {
        let conn = self.conns.get_mut(&id).ok_or(PoolError::UnknownConnection(id))?;
        if conn.established {
            return Err(PoolError::AlreadyConnected(id));
        }
        conn.established = true;
        if let Some(peer) = peer_max_streams {
            conn.capacity = conn.capacity.min(peer);
        }
        if conn.streams == 0 {
            conn.idle_since = Some(now);
        }
        Ok(())
    }

    /// Establishing the connection failed: it leaves the pool. Returns how many stream slots were reserved on
    /// it (the connecting checkout and every joined one), all of which fail.
    pub fn connect_failed(&mut self, id: ConnId) -> Result<u32, PoolError> {
        let conn = self.remove(id)?;
        Ok(conn.streams)
    }

    /// A stream on the connection ended (or could not be opened).
    pub fn release(&mut self, id: ConnId, now: Instant) -> Result<(), PoolError> {
        let conn = self.conns.get_mut(&id).ok_or(PoolError::UnknownConnection(id))?;
        conn.streams = conn.streams.checked_sub(1).ok_or(PoolError::NoStream(id))?;
        if conn.streams == 0 {
            conn.idle_since = Some(now);
        }
        Ok(())
    }

    /// The connection broke (GOAWAY, I/O error, keepalive timeout): it leaves the pool at once.
    pub fn broken(&mut self, id: ConnId) -> Result<(), PoolError> {
        self.remove(id).map(|_| ())
    }

    /// Removes connections idle for the idle timeout, and says when to call again.
    pub fn expire(&mut self, now: Instant) -> Expired {
        let timeout = self.config.idle_timeout;
        let close: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.established && c.idle_since.is_some_and(|since| now.saturating_duration_since(since) >= timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &close {
            let _ = self.remove(*id);
        }
        Expired { close, next_deadline: self.next_deadline() }
    }

    /// When the next idle connection expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter(|c| c.established)
            .filter_map(|c| c.idle_since)
            .min()
            .map(|since| since + self.config.idle_timeout)
    }

    /// Streams reserved on a connection.
    pub fn streams(&self, id: ConnId) -> Option<u32> {
        self.conns.get(&id).map(|c| c.streams)
    }

    /// The key of a connection.
    pub fn key(&self, id: ConnId) -> Option<&PoolKey> {
        self.conns.get(&id).map(|c| &c.key)
    }

    /// Whether the connection is established.
    pub fn is_established(&self, id: ConnId) -> Option<bool> {
        self.conns.get(&id).map(|c| c.established)
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn remove(&mut self, id: ConnId) -> Result<Conn, PoolError> {
        let conn = self.conns.remove(&id).ok_or(PoolError::UnknownConnection(id))?;
        if let Some(ids) = self.by_key.get_mut(&conn.key) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_key.remove(&conn.key);
            }
        }
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtual clock: `at(s)` is `s` seconds after the start.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, secs: u64) -> Instant {
            self.0 + Duration::from_secs(secs)
        }
    }

    /// The client's pool against a peer proxy that advertises `max_concurrent_streams` and counts what it sees.
    struct Harness {
        pool: Pool,
        peer_max_streams: Option<u32>,
        peer_connections: u32,
        peer_streams: BTreeMap<ConnId, u32>,
        clock: Clock,
    }

    impl Harness {
        fn new(peer_max_streams: Option<u32>) -> Self {
            Harness {
                pool: Pool::new(PoolConfig::default()),
                peer_max_streams,
                peer_connections: 0,
                peer_streams: BTreeMap::new(),
                clock: Clock(Instant::now()),
            }
        }

        /// Opens a stream as the transport would: dial on Connect, open on Reuse, leave Join pending.
        fn open(&mut self, key: &PoolKey, secs: u64) -> Checkout {
            let now = self.clock.at(secs);
            let checkout = self.pool.checkout(key, now);
            match checkout {
                Checkout::Connect(id) => {
                    self.peer_connections += 1;
                    self.pool.connected(id, self.peer_max_streams, now).unwrap();
                    *self.peer_streams.entry(id).or_default() += 1;
                }
                Checkout::Reuse(id) => *self.peer_streams.entry(id).or_default() += 1,
                Checkout::Join(_) => {}
            }
            checkout
        }

        fn close(&mut self, id: ConnId, secs: u64) {
            self.pool.release(id, self.clock.at(secs)).unwrap();
            if let Some(n) = self.peer_streams.get_mut(&id) {
                *n -= 1;
            }
        }
    }

    fn key(source_ip: &str) -> PoolKey {
        PoolKey {
            source_identity: SpiffeId::new("spiffe://cluster.local/ns/default/sa/sleep").unwrap(),
            destination_identities: vec![SpiffeId::new("spiffe://cluster.local/ns/default/sa/httpbin").unwrap()],
            destination: "10.0.0.2:15008".parse().unwrap(),
            source_ip: source_ip.parse().unwrap(),
        }
    }

    #[test]
    fn pending_connections_are_shared() {
        let mut pool = Pool::new(PoolConfig::default());
        let clock = Clock(Instant::now());
        let k = key("10.0.0.1");
        let first = pool.checkout(&k, clock.at(0));
        assert!(matches!(first, Checkout::Connect(_)));
        assert_eq!(pool.checkout(&k, clock.at(0)), Checkout::Join(first.id()));
        assert_eq!(pool.checkout(&k, clock.at(0)), Checkout::Join(first.id()));
        assert_eq!(pool.streams(first.id()), Some(3));
        pool.connected(first.id(), Some(200), clock.at(1)).unwrap();
        assert_eq!(pool.checkout(&k, clock.at(1)), Checkout::Reuse(first.id()));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn a_hundred_streams_then_another_connection() {
        let mut h = Harness::new(Some(200));
        let k = key("10.0.0.1");
        let first = h.open(&k, 0).id();
        for _ in 1..100 {
            assert_eq!(h.open(&k, 0), Checkout::Reuse(first));
        }
        let second = h.open(&k, 0);
        assert!(matches!(second, Checkout::Connect(id) if id != first));
        assert_eq!(h.peer_connections, 2);
        assert_eq!(h.peer_streams[&first], 100);
        // A stream ends on the first: it has room again and, being older, is preferred.
        h.close(first, 1);
        assert_eq!(h.open(&k, 2), Checkout::Reuse(first));
    }

    #[test]
    fn the_peer_can_lower_the_limit() {
        let mut h = Harness::new(Some(10));
        let k = key("10.0.0.1");
        let first = h.open(&k, 0).id();
        for _ in 1..10 {
            assert_eq!(h.open(&k, 0), Checkout::Reuse(first));
        }
        assert!(matches!(h.open(&k, 0), Checkout::Connect(id) if id != first));
        assert!(h.peer_streams.values().all(|n| *n <= 10));
    }

    #[test]
    fn keys_do_not_share() {
        let mut h = Harness::new(None);
        let a = h.open(&key("10.0.0.1"), 0).id();
        let b = h.open(&key("10.0.0.9"), 0).id();
        assert_ne!(a, b);
        let mut other_dest = key("10.0.0.1");
        other_dest.destination = "10.0.0.3:15008".parse().unwrap();
        assert!(matches!(h.open(&other_dest, 0), Checkout::Connect(_)));
        let mut other_ids = key("10.0.0.1");
        other_ids.destination_identities.push(SpiffeId::new("spiffe://cluster.local/ns/default/sa/other").unwrap());
        assert!(matches!(h.open(&other_ids, 0), Checkout::Connect(_)));
        assert_eq!(h.peer_connections, 4);
        assert_eq!(h.pool.key(a).map(|k| k.source_ip), Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn idle_connections_are_released_after_five_minutes() {
        let mut h = Harness::new(None);
        let k = key("10.0.0.1");
        let id = h.open(&k, 0).id();
        assert_eq!(h.pool.next_deadline(), None, "a busy connection has no deadline");
        h.close(id, 10);
        assert_eq!(h.pool.next_deadline(), Some(h.clock.at(310)));
        let early = h.pool.expire(h.clock.at(309));
        assert!(early.close.is_empty());
        assert_eq!(early.next_deadline, Some(h.clock.at(310)));
        // Reused before the deadline: idleness starts over from its next release.
        assert_eq!(h.open(&k, 200), Checkout::Reuse(id));
        h.close(id, 250);
        assert!(h.pool.expire(h.clock.at(310)).close.is_empty());
        let done = h.pool.expire(h.clock.at(550));
        assert_eq!(done, Expired { close: vec![id], next_deadline: None });
        assert!(h.pool.is_empty());
        assert!(matches!(h.open(&k, 600), Checkout::Connect(new) if new != id));
    }

    #[test]
    fn connecting_connections_never_expire() {
        let mut pool = Pool::new(PoolConfig::default());
        let clock = Clock(Instant::now());
        let id = pool.checkout(&key("10.0.0.1"), clock.at(0)).id();
        assert!(pool.expire(clock.at(10_000)).close.is_empty());
        assert_eq!(pool.is_established(id), Some(false));
    }

    #[test]
    fn failed_connects_fail_their_joiners() {
        let mut pool = Pool::new(PoolConfig::default());
        let clock = Clock(Instant::now());
        let k = key("10.0.0.1");
        let id = pool.checkout(&k, clock.at(0)).id();
        assert_eq!(pool.checkout(&k, clock.at(0)), Checkout::Join(id));
        assert_eq!(pool.connect_failed(id), Ok(2));
        assert_eq!(pool.connected(id, None, clock.at(1)), Err(PoolError::UnknownConnection(id)));
        assert!(matches!(pool.checkout(&k, clock.at(1)), Checkout::Connect(new) if new != id));
    }

    #[test]
    fn broken_connections_are_not_reused() {
        let mut h = Harness::new(None);
        let k = key("10.0.0.1");
        let id = h.open(&k, 0).id();
        h.pool.broken(id).unwrap();
        assert_eq!(h.pool.release(id, h.clock.at(1)), Err(PoolError::UnknownConnection(id)));
        assert!(matches!(h.open(&k, 1), Checkout::Connect(new) if new != id));
    }

    #[test]
    fn misuse_is_reported() {
        let mut pool = Pool::new(PoolConfig::default());
        let clock = Clock(Instant::now());
        let id = pool.checkout(&key("10.0.0.1"), clock.at(0)).id();
        pool.connected(id, None, clock.at(0)).unwrap();
        assert_eq!(pool.connected(id, None, clock.at(0)), Err(PoolError::AlreadyConnected(id)));
        pool.release(id, clock.at(0)).unwrap();
        assert_eq!(pool.release(id, clock.at(0)), Err(PoolError::NoStream(id)));
        assert_eq!(
            key("10.0.0.1").to_string(),
            "10.0.0.1(spiffe://cluster.local/ns/default/sa/sleep)->10.0.0.2:15008[spiffe://cluster.local/ns/default/sa/httpbin]"
        );
    }
}
