//! The HBONE client: pooled mTLS HTTP/2 connections to peer proxies, one CONNECT stream per tunnel.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::spiffe::SpiffeId;
use mesh_identity::tls::{HBONE_ALPN, WorkloadCertificate, client_config, peer_spiffe_id};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{debug, trace, warn};

use super::error::ClientError;
use super::keepalive;
use super::stream::{HboneStream, OnDrop};
use super::trace::random_traceparent;
use crate::baggage::Baggage;
use crate::connect::ConnectRequest;
use crate::pool::{Checkout, ConnId, Pool, PoolConfig, PoolKey};
use crate::settings::H2Settings;
use crate::status::read_response;

/// How long a TCP connect or TLS handshake may take (ztunnel's connection timeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a tunnel goes: the peer proxy's HBONE address and whom it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The address to dial (normally the destination workload's IP, port 15008).
    pub address: SocketAddr,
    /// The SPIFFE IDs the peer may present.
    pub identities: Vec<SpiffeId>,
}

/// An open tunnel.
#[derive(Debug)]
pub struct Tunnel {
    /// The bytes.
    pub stream: HboneStream,
    /// The identity the peer proxy presented (verified during the handshake).
    pub peer: SpiffeId,
    /// The destination's `baggage` from the 200 response, if it sent any.
    pub peer_baggage: Option<Baggage>,
    /// The pooled connection carrying it.
    pub connection: ConnId,
}

#[derive(Clone)]
struct Ready {
    sender: SendRequest<Bytes>,
    peer: SpiffeId,
}

type Outcome = Option<Result<Ready, String>>;

enum Slot {
    Pending(watch::Receiver<Outcome>),
    Ready(Ready),
}

struct State {
    pool: Pool,
    slots: HashMap<ConnId, Slot>,
}

struct Inner {
    own: WorkloadCertificate,
    bundles: Arc<TrustBundleSet>,
    settings: H2Settings,
    connect_timeout: Duration,
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every change is a single call on it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, id: ConnId) {
        let mut state = self.state();
        if let Err(error) = state.pool.release(id, Instant::now()) {
            trace!(%error, "stream released after its connection left the pool");
        }
    }

    fn forget(&self, id: ConnId, why: &str) {
        let mut state = self.state();
        if state.pool.broken(id).is_ok() {
            debug!(connection = %id, why, "HBONE connection left the pool");
        }
        state.slots.remove(&id);
    }
}

/// Takes a connection that was being established out of the pool when its dial is abandoned.
struct Abandon {
    inner: Weak<Inner>,
    id: ConnId,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(inner) = self.inner.upgrade() {
            let mut state = inner.state();
            let _ = state.pool.connect_failed(self.id);
            // The dropped dial also dropped its watch sender, which tells joined checkouts it was cancelled.
            state.slots.remove(&self.id);
        }
    }
}

/// Opens HBONE tunnels, pooling connections as ztunnel does. Cheap to clone.
#[derive(Clone)]
pub struct HboneClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HboneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneClient").field("identity", self.inner.own.spiffe_id()).finish_non_exhaustive()
    }
}

impl HboneClient {
    /// A client presenting `own` and verifying peers against `bundles`, with ztunnel's settings.
    pub fn new(own: WorkloadCertificate, bundles: Arc<TrustBundleSet>) -> Self {
        Self::with_config(own, bundles, H2Settings::default(), PoolConfig::default(), DEFAULT_CONNECT_TIMEOUT)
    }

    /// A client with explicit HTTP/2 settings, pool limits and connect timeout.
    pub fn with_config(
        own: WorkloadCertificate,
        bundles: Arc<TrustBundleSet>,
        settings: H2Settings,
        pool: PoolConfig,
        connect_timeout: Duration,
    ) -> Self {
        let state = Mutex::new(State { pool: Pool::new(pool), slots: HashMap::new() });
        HboneClient { inner: Arc::new(Inner { own, bundles, settings, connect_timeout, state }) }
    }

    /// Closes pooled connections idle for the pool's idle timeout; returns when to call again. [`Self::connect`]
    /// does this too.
    pub fn expire_idle(&self) -> Option<Instant> {
        let mut state = self.inner.state();
        let expired = state.pool.expire(Instant::now());
        for id in &expired.close {
            debug!(connection = %id, "closing idle HBONE connection");
            state.slots.remove(id);
        }
        expired.next_deadline
    }

    /// Connections in the pool (established or being established).
    pub fn pooled_connections(&self) -> usize {
        self.inner.state().pool.len()
    }

    /// Opens a tunnel to `destination` with `request` (a `traceparent` is added when it has none).
    pub async fn connect(&self, destination: &Destination, mut request: ConnectRequest) -> Result<Tunnel, ClientError> {
        self.inner.settings.validate()?;
        if request.traceparent.is_none() {
            request.traceparent = Some(random_traceparent());
        }
        let http_request = request.to_request()?;
        let source_ip =
            request.forwarded.as_ref().and_then(|f| f.for_node).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |n| n.ip());
        let key = PoolKey {
            source_identity: self.inner.own.spiffe_id().clone(),
            destination_identities: destination.identities.clone(),
            destination: destination.address,
            source_ip,
        };
        // One retry: a pooled connection may turn out to be closing (GOAWAY) when the stream is opened.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (id, ready) = self.checkout(&key, destination).await?;
            match self.send(id, ready, http_request.clone(), destination.address).await {
                Err(ClientError::H2 { source, .. }) if attempts < 2 => {
                    // No tunnel byte has moved yet, so opening the CONNECT elsewhere is safe.
                    debug!(connection = %id, error = %source, "pooled connection unusable, retrying on another");
                    self.inner.forget(id, "stream could not be opened");
                }
                result => return result,
            }
        }
    }

    /// A connection with a stream slot reserved on it.
    async fn checkout(&self, key: &PoolKey, destination: &Destination) -> Result<(ConnId, Ready), ClientError> {
        self.expire_idle();
        let (checkout, slot) = {
            let mut state = self.inner.state();
            let checkout = state.pool.checkout(key, Instant::now());
            let slot = match checkout {
                Checkout::Connect(id) => {
                    let (tx, rx) = watch::channel(None);
                    state.slots.insert(id, Slot::Pending(rx));
                    Err(tx)
                }
                Checkout::Join(id) | Checkout::Reuse(id) => match state.slots.get(&id) {
                    Some(Slot::Ready(ready)) => Ok(Ok(ready.clone())),
                    Some(Slot::Pending(rx)) => Ok(Err(rx.clone())),
                    None => {
                        // Not reachable: the pool and the slots change together under the lock.
                        let _ = state.pool.connect_failed(id);
                        return Err(ClientError::SharedConnectFailed {
                            address: destination.address,
                            reason: format!("{id} vanished from the pool"),
                        });
                    }
                },
            };
            (checkout, slot)
        };
        let id = checkout.id();
        match slot {
            Ok(Ok(ready)) => {
                trace!(connection = %id, "reusing pooled HBONE connection");
                Ok((id, ready))
            }
            Ok(Err(mut rx)) => {
                debug!(connection = %id, "joining HBONE connection being established");
                let outcome = rx.wait_for(Option::is_some).await.map(|o| o.clone()).ok().flatten();
                match outcome {
                    Some(Ok(ready)) => Ok((id, ready)),
                    Some(Err(reason)) => Err(ClientError::SharedConnectFailed { address: destination.address, reason }),
                    None => Err(ClientError::SharedConnectFailed {
                        address: destination.address,
                        reason: "the connecting task was cancelled".into(),
                    }),
                }
            }
            Err(tx) => {
                // If this future is dropped mid-dial, the connection must not stay "being established" forever.
                let mut abandon = Abandon { inner: Arc::downgrade(&self.inner), id, armed: true };
                let dialled = self.dial(id, destination).await;
                abandon.armed = false;
                self.finish_dial(id, dialled, tx)
            }
        }
    }

    /// Records the outcome of a dial in the pool and tells the checkouts that joined it.
    fn finish_dial(
        &self,
        id: ConnId,
        dialled: Result<(Ready, u32), ClientError>,
        tx: watch::Sender<Outcome>,
    ) -> Result<(ConnId, Ready), ClientError> {
        match dialled {
            Ok((ready, peer_max_streams)) => {
                let mut state = self.inner.state();
                if state.pool.connected(id, Some(peer_max_streams), Instant::now()).is_ok() {
                    state.slots.insert(id, Slot::Ready(ready.clone()));
                }
                drop(state);
                let _ = tx.send(Some(Ok(ready.clone())));
                Ok((id, ready))
            }
            Err(error) => {
                {
                    let mut state = self.inner.state();
                    let _ = state.pool.connect_failed(id);
                    state.slots.remove(&id);
                }
                let _ = tx.send(Some(Err(error.to_string())));
                Err(error)
            }
        }
    }

    /// TCP, mTLS and the HTTP/2 handshake; spawns the connection's driver.
    async fn dial(&self, id: ConnId, destination: &Destination) -> Result<(Ready, u32), ClientError> {
        let address = destination.address;
        let limit = self.inner.connect_timeout;
        debug!(connection = %id, %address, "opening HBONE connection");
        let config =
            client_config(&self.inner.own, Arc::clone(&self.inner.bundles), destination.identities.iter().cloned())?;
        let tcp = tokio::time::timeout(limit, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Timeout { step: "TCP connect", address, after: limit })?
            .map_err(|source| ClientError::Connect { address, source })?;
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(Arc::new(config));
        let tls = tokio::time::timeout(limit, connector.connect(ServerName::IpAddress(address.ip().into()), tcp))
            .await
            .map_err(|_| ClientError::Timeout { step: "TLS handshake", address, after: limit })?
            .map_err(|source| ClientError::Handshake { address, source })?;
        let (_, session) = tls.get_ref();
        if session.alpn_protocol() != Some(HBONE_ALPN) {
            return Err(ClientError::NoH2 { address });
        }
        let peer = peer_spiffe_id(session)?;

        let s = &self.inner.settings;
        let pool_max = self.inner.state().pool.config().max_streams_per_connection;
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(s.stream_window)
            .initial_connection_window_size(s.connection_window)
            .max_frame_size(s.max_frame_size)
            .initial_max_send_streams(pool_max as usize)
            .max_header_list_size(s.client_max_header_list)
            .max_send_buffer_size(s.client_max_send_buffer as usize)
            .enable_push(false)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|source| ClientError::H2 { address, source })?;
        let peer_max_streams = u32::try_from(connection.max_concurrent_send_streams()).unwrap_or(u32::MAX);

        let (dead_tx, dead_rx) = oneshot::channel();
        if let Some(ping_pong) = connection.ping_pong() {
            tokio::spawn(keepalive::run(ping_pong, s.keepalive_interval, s.keepalive_timeout, dead_tx));
        }
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let why = tokio::select! {
                result = connection => match result {
                    Ok(()) => "closed".to_owned(),
                    Err(error) => {
                        warn!(connection = %id, %error, "HBONE connection failed");
                        format!("failed: {error}")
                    }
                },
                Ok(reason) = dead_rx => {
                    warn!(connection = %id, %reason, "HBONE keepalive failed; closing the connection");
                    reason
                }
            };
            if let Some(inner) = inner.upgrade() {
                inner.forget(id, &why);
            }
        });
        debug!(connection = %id, %address, %peer, peer_max_streams, "HBONE connection established");
        Ok((Ready { sender, peer }, peer_max_streams))
    }

    /// Sends the CONNECT on a reserved slot and waits for the response.
    async fn send(
        &self,
        id: ConnId,
        ready: Ready,
        request: http::Request<()>,
        address: SocketAddr,
    ) -> Result<Tunnel, ClientError> {
        // Frees the slot however this ends: with the stream when it is returned, here otherwise.
        let weak = Arc::downgrade(&self.inner);
        let guard = OnDrop::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.release(id);
            }
        });
        let Ready { sender, peer } = ready;
        let h2_error = |source| ClientError::H2 { address, source };
        let mut sender = sender.ready().await.map_err(h2_error)?;
        let (response, send) = sender.send_request(request, false).map_err(h2_error)?;
        let response = response.await.map_err(h2_error)?;
        let peer_baggage = read_response(&response)?;
        let recv = response.into_body();
        trace!(connection = %id, %peer, "HBONE tunnel open");
        Ok(Tunnel { stream: HboneStream::new(send, recv, Some(guard)), peer, peer_baggage, connection: id })
    }
}
