//! HTTP connections to endpoints, kept for the next request: one tunnel carries many requests, as Envoy keeps
//! its upstream connections. A connection is reused only for the same endpoint, the same endpoint identity,
//! the same original client address (the tunnel's `forwarded: for=` names it) and the same HTTP version.
//! HTTP/2 connections are shared by concurrent requests; an HTTP/1.1 connection serves one request at a time
//! and goes back to the pool once its response is done. A connection the peer closed (the destination's node
//! proxy closes tunnels its policy no longer allows) is dropped; a request that could not be written to a
//! pooled connection is sent on a new one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::reply::Body;
use crate::upstream::{Endpoint, UpstreamError, Upstreams};

/// Idle HTTP/1.1 connections kept per key.
const MAX_IDLE: usize = 32;

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

/// The kept connections.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<Key, Vec<Sender>>>,
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
        let senders = idle.get_mut(key)?;
        senders.retain(|s| !s.closed());
        let found = match senders.iter().position(Sender::usable)? {
            // An HTTP/2 connection stays in the pool for others.
            i if key.h2 => match &senders[i] {
                Sender::H2(s) => Sender::H2(s.clone()),
                Sender::H1(_) => return None,
            },
            i => senders.swap_remove(i),
        };
        Some(found)
    }

    fn checkin(&self, key: Key, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let senders = idle.entry(key.clone()).or_default();
        if key.h2 {
            // One shared connection per key.
            if !senders.iter().any(Sender::usable) {
                senders.clear();
                senders.push(sender);
            }
        } else if senders.len() < MAX_IDLE {
            senders.push(sender);
        }
    }

    /// Sends `request` to `endpoint` for a client at `source`, on a kept connection or a new one.
    pub(crate) async fn send(
        &self,
        upstreams: &Upstreams,
        endpoint: &Endpoint,
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
