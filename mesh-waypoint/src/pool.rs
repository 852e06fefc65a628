//! HTTP connections to endpoints, kept for the next request: one tunnel carries many requests, as Envoy keeps
//! its upstream connections. A connection is reused only for the same endpoint, the same endpoint identity,
//! the same original client address (the tunnel's `forwarded: for=` names it) and the same HTTP version.
//! HTTP/2 connections are shared by concurrent requests; an HTTP/1.1 connection serves one request at a time
//! and goes back to the pool once its response is done. A connection the peer closed (the destination's node
//! proxy closes tunnels its policy no longer allows) is dropped; a request that could not be written to a
//! pooled connection is sent on a new one.
//!
//! The pool is bounded whatever peers send: a connection idle for [`IDLE_TIMEOUT`] is closed, at most
//! [`MAX_IDLE`] HTTP/1.1 connections are kept per key and [`MAX_POOLED`] in all (past that the connection
//! idle longest is closed), and keys left without connections are removed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::reply::Body;
use crate::upstream::{Dial, UpstreamError, Upstreams};

/// Idle HTTP/1.1 connections kept per key.
pub(crate) const MAX_IDLE: usize = 32;
/// Connections kept in all.
pub(crate) const MAX_POOLED: usize = 1024;
/// How long an unused connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The onward hop could not be opened.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// HTTP with the endpoint failed.
    #[error("HTTP with {endpoint} failed: {source}")]
    Http {
        /// The endpoint.
        endpoint: String,
        /// What hyper said.
        source: hyper::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    ip: IpAddr,
    port: u16,
    identity: Option<String>,
    source: IpAddr,
    h2: bool,
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Sender {
    fn closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    fn usable(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready() && !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }

    async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, (hyper::Error, Option<Request<Body>>)> {
        let result = match self {
            Sender::H1(s) => s.try_send_request(request).await,
            Sender::H2(s) => s.try_send_request(request).await,
        };
        result.map_err(|mut e| {
            let message = e.take_message();
            (e.into_error(), message)
        })
    }
}

/// A kept connection and when it was last put back.
struct Kept {
    sender: Sender,
    since: Instant,
}

/// The kept connections.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<Key, Vec<Kept>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Pool").field("keys", &idle.len()).finish()
    }
}

impl Pool {
    fn checkout(&self, key: &Key) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let senders = idle.get_mut(key)?;
        senders.retain(|k| !k.sender.closed() && now.duration_since(k.since) < IDLE_TIMEOUT);
        let found = match senders.iter().position(|k| k.sender.usable()) {
            // An HTTP/2 connection stays in the pool for others.
            Some(i) if key.h2 => match &senders[i].sender {
                Sender::H2(s) => Some(Sender::H2(s.clone())),
                Sender::H1(_) => None,
            },
            Some(i) => Some(senders.swap_remove(i).sender),
            None => None,
        };
        if senders.is_empty() {
            idle.remove(key);
        }
        found
    }

    fn checkin(&self, key: Key, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Expired and closed connections go first, and the keys they leave empty.
        idle.retain(|_, kept| {
            kept.retain(|k| !k.sender.closed() && now.duration_since(k.since) < IDLE_TIMEOUT);
            !kept.is_empty()
        });
        let senders = idle.entry(key.clone()).or_default();
        if key.h2 {
            // One shared connection per key; a use refreshes it.
            match senders.iter_mut().find(|k| k.sender.usable()) {
                Some(kept) => kept.since = now,
                None => {
                    senders.clear();
                    senders.push(Kept { sender, since: now });
                }
            }
        } else if senders.len() < MAX_IDLE {
            senders.push(Kept { sender, since: now });
        }
        // The bound in all: close the connections idle longest.
        let mut total: usize = idle.values().map(Vec::len).sum();
        while total > MAX_POOLED {
            let oldest = idle
                .iter()
                .flat_map(|(key, kept)| kept.iter().enumerate().map(move |(i, k)| (k.since, key.clone(), i)))
                .min_by_key(|(since, _, _)| *since);
            let Some((_, key, i)) = oldest else { break };
            if let Some(kept) = idle.get_mut(&key) {
                kept.swap_remove(i);
                if kept.is_empty() {
                    idle.remove(&key);
                }
            }
            total -= 1;
        }
    }

    /// How many connections are kept, and under how many keys.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        (idle.values().map(Vec::len).sum(), idle.len())
    }

    /// Sends `request` to `endpoint` for a client at `source`, on a kept connection or a new one.
    pub(crate) async fn send(
        &self,
        upstreams: &Upstreams,
        endpoint: &Dial,
        source: IpAddr,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let h2 = request.version() == Version::HTTP_2;
        let key = Key { ip: endpoint.ip, port: endpoint.port, identity: endpoint.identity.clone(), source, h2 };
        let http = |source: hyper::Error| SendError::Http { endpoint: endpoint.name.clone(), source };
        let mut request = request;
        if let Some(mut sender) = self.checkout(&key) {
            match sender.send(request).await {
                Ok(response) => {
                    self.checkin(key, sender);
                    return Ok(response);
                }
                // Not written: the connection went away meanwhile. Try a new one.
                Err((_, Some(unsent))) => request = unsent,
                Err((error, None)) => return Err(http(error)),
            }
        }
        let io = TokioIo::new(upstreams.connect(endpoint, source).await?);
        let mut sender = if h2 {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await.map_err(http)?;
            tokio::spawn(connection);
            Sender::H2(sender)
        } else {
            let (sender, connection) = http1::handshake(io).await.map_err(http)?;
            tokio::spawn(connection);
            Sender::H1(sender)
        };
        let response = sender.send(request).await.map_err(|(error, _)| http(error))?;
        self.checkin(key, sender);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;

    use super::*;

    /// An HTTP/1.1 connection to an in-memory server.
    async fn connection() -> Sender {
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let service = service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service).await;
        });
        let Ok((sender, conn)) = http1::handshake::<_, Body>(TokioIo::new(client)).await else {
            unreachable!("an in-memory handshake does not fail")
        };
        tokio::spawn(conn);
        Sender::H1(sender)
    }

    fn key(source: u8) -> Key {
        Key {
            ip: IpAddr::from([127, 0, 0, 1]),
            port: 80,
            identity: None,
            source: IpAddr::from([127, 0, 1, source]),
            h2: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire_and_their_keys_go() {
        let pool = Pool::default();
        pool.checkin(key(1), connection().await);
        assert_eq!(pool.size(), (1, 1));
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        assert!(pool.checkout(&key(1)).is_none(), "an expired connection is not handed out");
        assert_eq!(pool.size(), (0, 0), "its key is gone");
        // Expired connections under other keys go at the next check-in.
        pool.checkin(key(2), connection().await);
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        pool.checkin(key(3), connection().await);
        assert_eq!(pool.size(), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_is_bounded_whatever_clients_send() {
        let pool = Pool::default();
        // One key per client address, as many clients as a peer likes.
        for i in 0..(MAX_POOLED + 10) {
            let source = u8::try_from(i % 250).unwrap_or(0);
            let mut k = key(source);
            k.port = u16::try_from(i / 250 + 1).unwrap_or(1);
            pool.checkin(k, connection().await);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(pool.size().0, MAX_POOLED);
        // The oldest went first: the first key's connection is gone, the newest is kept.
        let mut first = key(0);
        first.port = 1;
        assert!(pool.checkout(&first).is_none());
    }
}
