//! The HBONE client: pooled mTLS HTTP/2 connections to peer proxies, one CONNECT stream per tunnel.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::spiffe::SpiffeId;
use mesh_identity::store::CertificateStore;
use mesh_identity::tls::{HBONE_ALPN, WorkloadCertificate, client_config, peer_spiffe_id};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{Instrument, Span, debug, debug_span, trace, warn};

use super::error::ClientError;
use super::guard::{FloodLimit, Guard, Tripped, random_mask};
use super::keepalive;
use super::socket::{ConnectTcpError, SocketBuffers, SocketFactory, SocketOptions, connect_tcp_from, connect_tcp_with};
use super::stream::{HboneStream, OnDrop};
use super::trace::random_traceparent;
use super::tunnels::{Direction, Tunnels};
use crate::baggage::Baggage;
use crate::connect::ConnectRequest;
use crate::double::DoubleHbonePlan;
use crate::pool::{Checkout, ConnId, Pool, PoolConfig, PoolKey};
use crate::settings::H2Settings;
use crate::status::read_response;

/// How long a TCP connect or TLS handshake may take (ztunnel's connection timeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// HTTP/2 settings (ztunnel's by default).
    pub settings: H2Settings,
    /// Pool limits: 100 streams per connection, 5 minutes idle.
    pub pool: PoolConfig,
    /// How long the TCP connect, and each TLS handshake, may take: 10 s.
    pub connect_timeout: Duration,
    /// Bind each connection to the original source: the IP of the CONNECT's `forwarded` `for=`, which is also
    /// part of the pool key. Off by default; a source IP that is not the node's own needs `CAP_NET_ADMIN` (see
    /// [`connect_tcp`](super::connect_tcp)).
    pub original_source: bool,
    /// Bind every connection to this local IP (a waypoint's own Pod address, say), so that the peer sees
    /// connections come from it. With `original_source`, a CONNECT naming a source takes precedence.
    pub local_ip: Option<IpAddr>,
    /// The firewall mark (`SO_MARK`, Linux, needs `CAP_NET_ADMIN`) of every connection, so that redirection
    /// rules let the proxy's own traffic pass.
    pub mark: Option<u32>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            settings: H2Settings::default(),
            pool: PoolConfig::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            original_source: false,
            local_ip: None,
            mark: None,
        }
    }
}

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
    /// The identity the peer proxy presented (verified during the handshake); through a gateway, the
    /// destination's.
    pub peer: SpiffeId,
    /// The destination's `baggage` from the 200 response, if it sent any.
    pub peer_baggage: Option<Baggage>,
    /// The pooled connection carrying it (through a gateway, the pooled connection to the gateway).
    pub connection: ConnId,
    /// Through a gateway (double HBONE): the identity the gateway presented.
    pub gateway: Option<SpiffeId>,
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
    /// Whether a task is closing idle connections.
    reaper: bool,
}

/// Where a client's certificates come from.
enum Credentials {
    /// One certificate, fixed for the client's life.
    Fixed { own: WorkloadCertificate, bundles: Arc<TrustBundleSet> },
    /// The store's certificate of the source identity at each new connection.
    Store { store: CertificateStore, identity: SpiffeId },
}

impl Credentials {
    /// The identity tunnels are opened as unless another is named.
    fn identity(&self) -> &SpiffeId {
        match self {
            Credentials::Fixed { own, .. } => own.spiffe_id(),
            Credentials::Store { identity, .. } => identity,
        }
    }

    /// The TLS configuration of a new connection as `source`, accepting a server with one of `expected`.
    fn tls_config(
        &self,
        source: &SpiffeId,
        expected: impl IntoIterator<Item = SpiffeId>,
    ) -> Result<tokio_rustls::rustls::ClientConfig, ClientError> {
        match self {
            Credentials::Fixed { own, bundles } => {
                if own.spiffe_id() != source {
                    return Err(ClientError::NoCertificate { identity: source.clone() });
                }
                Ok(client_config(own, Arc::clone(bundles), expected)?)
            }
            Credentials::Store { store, .. } => {
                // Fail closed, and say why: without a certificate the server would refuse the handshake.
                if store.get(source).is_none() {
                    return Err(ClientError::NoCertificate { identity: source.clone() });
                }
                Ok(store.client_config(source, expected)?)
            }
        }
    }
}

struct Inner {
    credentials: Credentials,
    config: ClientConfig,
    /// Makes the sockets of some sources' connections.
    sockets: RwLock<Option<Arc<dyn SocketFactory>>>,
    /// Where opened tunnels are listed.
    tunnels: RwLock<Tunnels>,
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every change is a single call on it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(self: &Arc<Self>, id: ConnId) {
        let mut state = self.state();
        if let Err(error) = state.pool.release(id, now()) {
            trace!(%error, "stream released after its connection left the pool");
        }
        if state.pool.streams(id) == Some(0) {
            self.ensure_reaper(&mut state);
        }
    }

    fn forget(&self, id: ConnId, why: &str) {
        let mut state = self.state();
        if state.pool.broken(id).is_ok() {
            debug!(connection = %id, why, "HBONE connection left the pool");
        }
        state.slots.remove(&id);
    }

    /// Closes the connections idle for the pool's idle timeout; says when next to look.
    fn expire(state: &mut State) -> Option<Instant> {
        let expired = state.pool.expire(now());
        for id in &expired.close {
            // The slot held the last request handle: dropping it lets h2 send GOAWAY and close.
            debug!(connection = %id, "closing idle HBONE connection");
            state.slots.remove(id);
        }
        expired.next_deadline.map(Instant::from_std)
    }

    /// Starts the task that closes idle connections, called when one has just gone idle, unless the task runs.
    /// Both this and the task's exit happen under the state lock, so an idle connection always has a reaper.
    fn ensure_reaper(self: &Arc<Self>, state: &mut State) {
        if state.reaper {
            return;
        }
        // Streams can be dropped outside a runtime (after it shut down); there is nothing to reap then.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        state.reaper = true;
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let deadline = {
                    let Some(inner) = weak.upgrade() else { return };
                    let mut state = inner.state();
                    match Self::expire(&mut state) {
                        Some(deadline) => deadline,
                        None => {
                            state.reaper = false;
                            return;
                        }
                    }
                };
                tokio::time::sleep_until(deadline).await;
            }
        });
    }
}

/// The pool's time: tokio's clock (so a test that pauses time moves pool expiry with it), as the pure pool
/// takes it.
fn now() -> std::time::Instant {
    Instant::now().into_std()
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
///
/// Connections idle for the pool's idle timeout are closed by a background task on the tokio runtime of the
/// tunnel that last left them idle; it runs only while there is an idle connection.
#[derive(Clone)]
pub struct HboneClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HboneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneClient")
            .field("identity", self.inner.credentials.identity())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl HboneClient {
    /// A client presenting `own` and verifying peers against `bundles`, with ztunnel's settings.
    pub fn new(own: WorkloadCertificate, bundles: Arc<TrustBundleSet>) -> Self {
        Self::with_config(own, bundles, ClientConfig::default())
    }

    /// A client with explicit HTTP/2 settings, pool limits, timeouts and source binding.
    pub fn with_config(own: WorkloadCertificate, bundles: Arc<TrustBundleSet>, config: ClientConfig) -> Self {
        Self::with_credentials(Credentials::Fixed { own, bundles }, config)
    }

    /// A client taking its certificates from `store` at each new connection, so a renewal reaches the next
    /// connection without dropping the pool (established connections keep theirs), and verifying peers
    /// against the store's trust bundles as they are at each handshake. Tunnels are opened as `identity`
    /// by [`Self::connect`], or as any identity of the store by [`Self::connect_as`] (a node proxy, for its
    /// local workloads); the pool is keyed by source identity.
    pub fn from_store(store: CertificateStore, identity: SpiffeId) -> Self {
        Self::from_store_with_config(store, identity, ClientConfig::default())
    }

    /// [`Self::from_store`] with explicit HTTP/2 settings, pool limits, timeouts and source binding.
    pub fn from_store_with_config(store: CertificateStore, identity: SpiffeId, config: ClientConfig) -> Self {
        Self::with_credentials(Credentials::Store { store, identity }, config)
    }

    fn with_credentials(credentials: Credentials, config: ClientConfig) -> Self {
        let state = Mutex::new(State { pool: Pool::new(config.pool), slots: HashMap::new(), reaper: false });
        HboneClient {
            inner: Arc::new(Inner {
                credentials,
                config,
                sockets: RwLock::default(),
                tunnels: RwLock::default(),
                state,
            }),
        }
    }

    /// Has `factory` make the socket of each connection from a source it knows (see [`SocketFactory`]). Clones
    /// of the client share the change.
    pub fn with_socket_factory(self, factory: Arc<dyn SocketFactory>) -> Self {
        *self.inner.sockets.write().unwrap_or_else(PoisonError::into_inner) = Some(factory);
        self
    }

    /// Lists the tunnels opened from now on in `tunnels` (which a server may share), rather than in a registry
    /// of its own. Clones of the client share the change.
    pub fn with_tunnels(self, tunnels: Tunnels) -> Self {
        *self.inner.tunnels.write().unwrap_or_else(PoisonError::into_inner) = tunnels;
        self
    }

    /// The registry listing the tunnels this client opened and has open.
    pub fn tunnels(&self) -> Tunnels {
        self.inner.tunnels.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Closes pooled connections idle for the pool's idle timeout now; returns when one next expires. The
    /// background task does this on its own; this is for callers that want it at a time of their choosing.
    pub fn expire_idle(&self) -> Option<Instant> {
        Inner::expire(&mut self.inner.state())
    }

    /// Connections in the pool (established or being established).
    pub fn pooled_connections(&self) -> usize {
        self.inner.state().pool.len()
    }

    /// Opens a tunnel to `destination` with `request` (a `traceparent` is added when it has none), as the
    /// client's identity.
    pub async fn connect(&self, destination: &Destination, request: ConnectRequest) -> Result<Tunnel, ClientError> {
        let source = self.inner.credentials.identity().clone();
        self.connect_as(&source, destination, request).await
    }

    /// Opens a tunnel as `source`: with a client [from a store](Self::from_store), any identity the store
    /// holds a certificate for; with a fixed certificate, only its own ([`ClientError::NoCertificate`]
    /// otherwise).
    pub async fn connect_as(
        &self,
        source: &SpiffeId,
        destination: &Destination,
        request: ConnectRequest,
    ) -> Result<Tunnel, ClientError> {
        let target = request.authority.clone();
        let mut tunnel = self.open(source, destination, request).await?;
        let registration = self.tunnels().register(Direction::Outbound, tunnel.peer.clone(), target);
        tunnel.stream = tunnel.stream.with_registration(registration);
        Ok(tunnel)
    }

    /// Opens a tunnel, unlisted.
    async fn open(
        &self,
        source: &SpiffeId,
        destination: &Destination,
        mut request: ConnectRequest,
    ) -> Result<Tunnel, ClientError> {
        self.inner.config.settings.validate()?;
        if request.traceparent.is_none() {
            request.traceparent = Some(random_traceparent());
        }
        let http_request = request.to_request()?;
        let source_ip =
            request.forwarded.as_ref().and_then(|f| f.for_node).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |n| n.ip());
        let key = PoolKey {
            source_identity: source.clone(),
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

    /// Opens a tunnel through a network gateway (double HBONE): an outer tunnel to the gateway, pooled as any
    /// other, and inside it a second mTLS handshake with the destination and the inner CONNECT. The inner
    /// connection carries this one tunnel and closes with it.
    ///
    /// Errors of the inner hop come wrapped in [`ClientError::Inner`].
    pub async fn connect_double(&self, plan: &DoubleHbonePlan) -> Result<Tunnel, ClientError> {
        let gateway = Destination { address: plan.gateway, identities: plan.outer.expected_identities.clone() };
        let mut inner_request = plan.inner.request.clone();
        if inner_request.traceparent.is_none() {
            inner_request.traceparent = Some(random_traceparent());
        }
        let http_request = inner_request.to_request()?;
        let mut outer_request = plan.outer.request.clone();
        outer_request.traceparent = outer_request.traceparent.or(inner_request.traceparent);
        let outer = self.open(self.inner.credentials.identity(), &gateway, outer_request).await?;
        let destination = plan.inner.request.authority.to_string();
        let wrap = |source: ClientError| ClientError::Inner {
            gateway: plan.gateway,
            destination: destination.clone(),
            source: Box::new(source),
        };
        let (tls, peer) = self
            .handshake(
                self.inner.credentials.identity(),
                plan.gateway,
                outer.stream,
                plan.inner.expected_identities.iter().cloned(),
            )
            .await
            .map_err(wrap)?;
        // One stream: the destination's limits do not matter, and there is no pool to tell.
        let (sender, connection, _) = self.h2_handshake(tls, 1, plan.gateway).await.map_err(wrap)?;
        let span = debug_span!("hbone_inner", gateway = %plan.gateway, %destination);
        self.drive(connection, span, |why| debug!(why, "inner HBONE connection ended"));
        let (send, recv, peer_baggage) = send_connect(sender, http_request, plan.gateway).await.map_err(wrap)?;
        trace!(gateway = %outer.peer, %peer, "double HBONE tunnel open");
        let registration =
            self.tunnels().register(Direction::Outbound, peer.clone(), plan.inner.request.authority.clone());
        Ok(Tunnel {
            stream: HboneStream::new(send, recv, None).with_registration(registration),
            peer,
            peer_baggage,
            connection: outer.connection,
            gateway: Some(outer.peer),
        })
    }

    /// A connection with a stream slot reserved on it.
    async fn checkout(&self, key: &PoolKey, destination: &Destination) -> Result<(ConnId, Ready), ClientError> {
        let (checkout, slot) = {
            let mut state = self.inner.state();
            Inner::expire(&mut state);
            let checkout = state.pool.checkout(key, now());
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
                let source_ip = Some(key.source_ip)
                    .filter(|ip| self.inner.config.original_source && !ip.is_unspecified())
                    .or(self.inner.config.local_ip);
                let dialled = self.dial(id, destination, &key.source_identity, source_ip).await;
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
                if state.pool.connected(id, Some(peer_max_streams), now()).is_ok() {
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
    async fn dial(
        &self,
        id: ConnId,
        destination: &Destination,
        source: &SpiffeId,
        source_ip: Option<IpAddr>,
    ) -> Result<(Ready, u32), ClientError> {
        let address = destination.address;
        debug!(connection = %id, %address, ?source_ip, "opening HBONE connection");
        // h2 reads the connection as frames come, whatever its streams' readers do: the kernel's autotuning
        // sizes its buffers to the path.
        let timeout = self.inner.config.connect_timeout;
        let options = SocketOptions { buffers: SocketBuffers::AUTOTUNED, mark: self.inner.config.mark };
        let factory = self.inner.sockets.read().unwrap_or_else(PoisonError::into_inner).clone();
        let made = source_ip.zip(factory).and_then(|(ip, f)| f.tcp_socket(ip, address));
        let connected = match made {
            Some(Ok(socket)) => connect_tcp_from(socket, address, timeout, options).await,
            Some(Err(error)) => Err(ConnectTcpError::Bind { source_ip: source_ip.unwrap_or(address.ip()), error }),
            None => connect_tcp_with(address, source_ip, timeout, options).await,
        };
        let tcp = connected.map_err(|e| match e {
            ConnectTcpError::Timeout { after, .. } => ClientError::Timeout { step: "TCP connect", address, after },
            ConnectTcpError::Connect { error, .. } => ClientError::Connect { address, source: error },
            bind => ClientError::Bind(bind),
        })?;
        let (tls, peer) = self.handshake(source, address, tcp, destination.identities.iter().cloned()).await?;
        let pool_max = self.inner.config.pool.max_streams_per_connection;
        let (sender, connection, peer_max_streams) = self.h2_handshake(tls, pool_max, address).await?;
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        self.drive(connection, debug_span!("hbone_connection", connection = %id, %address), move |why| {
            if let Some(inner) = inner.upgrade() {
                inner.forget(id, &why);
            }
        });
        debug!(connection = %id, %address, %peer, peer_max_streams, "HBONE connection established");
        Ok((Ready { sender, peer }, peer_max_streams))
    }

    /// The mTLS handshake over `io`, expecting one of `identities`; returns the stream and the peer's identity.
    async fn handshake<IO>(
        &self,
        source: &SpiffeId,
        address: SocketAddr,
        io: IO,
        identities: impl IntoIterator<Item = SpiffeId>,
    ) -> Result<(TlsStream<IO>, SpiffeId), ClientError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.inner.credentials.tls_config(source, identities)?;
        let connector = TlsConnector::from(Arc::new(config));
        let limit = self.inner.config.connect_timeout;
        // HBONE sends no SNI; rustls sends none for an IP address.
        let tls = tokio::time::timeout(limit, connector.connect(ServerName::IpAddress(address.ip().into()), io))
            .await
            .map_err(|_| ClientError::Timeout { step: "TLS handshake", address, after: limit })?
            .map_err(|source| ClientError::Handshake { address, source })?;
        let (_, session) = tls.get_ref();
        if session.alpn_protocol() != Some(HBONE_ALPN) {
            return Err(ClientError::NoH2 { address });
        }
        let peer = peer_spiffe_id(session)?;
        Ok((tls, peer))
    }

    /// The HTTP/2 handshake with the configured settings, sending at most `max_streams` at once, over `io`
    /// guarded against control frame floods and with unpredictable PING payloads.
    async fn h2_handshake<IO>(
        &self,
        io: IO,
        max_streams: u32,
        address: SocketAddr,
    ) -> Result<(SendRequest<Bytes>, Guarded<IO>, u32), ClientError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let mask = random_mask().map_err(|source| ClientError::Handshake { address, source })?;
        let (io, flooded) = Guard::client(io, FloodLimit::DEFAULT, mask);
        let s = &self.inner.config.settings;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(s.stream_window)
            .initial_connection_window_size(s.connection_window)
            .max_frame_size(s.max_frame_size)
            .initial_max_send_streams(max_streams as usize)
            .max_header_list_size(s.client_max_header_list)
            .max_send_buffer_size(s.client_max_send_buffer as usize)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|source| ClientError::H2 { address, source })?;
        let peer_max_streams = u32::try_from(connection.max_concurrent_send_streams()).unwrap_or(u32::MAX);
        Ok((sender, Guarded { connection, flooded }, peer_max_streams))
    }

    /// Drives an HTTP/2 connection, with PING keepalive, until it ends; then tells `ended` why.
    fn drive<IO>(&self, guarded: Guarded<IO>, span: Span, ended: impl FnOnce(String) + Send + 'static)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Guarded { mut connection, flooded } = guarded;
        let s = &self.inner.config.settings;
        let (dead_tx, dead_rx) = oneshot::channel();
        if let Some(ping_pong) = connection.ping_pong() {
            tokio::spawn(keepalive::run(ping_pong, s.keepalive_interval, s.keepalive_timeout, dead_tx));
        }
        tokio::spawn(
            async move {
                let why = tokio::select! {
                    result = connection => match result {
                        Ok(()) => "closed".to_owned(),
                        Err(error) => {
                            warn!(%error, "HBONE connection failed");
                            format!("failed: {error}")
                        }
                    },
                    Ok(reason) = dead_rx => {
                        warn!(%reason, "HBONE keepalive failed; closing the connection");
                        reason
                    }
                    frames = flooded.wait() => {
                        // h2 offers clients no GOAWAY of their own: the connection is dropped.
                        warn!(frames, "HBONE server sent control frames over the limit; closing the connection");
                        format!("control frames over the limit: {frames}")
                    }
                };
                ended(why);
            }
            .instrument(span),
        );
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
        let (send, recv, peer_baggage) = send_connect(sender, request, address).await?;
        trace!(connection = %id, %peer, "HBONE tunnel open");
        Ok(Tunnel {
            stream: HboneStream::new(send, recv, Some(guard)),
            peer,
            peer_baggage,
            connection: id,
            gateway: None,
        })
    }
}

/// An HTTP/2 client connection over a guarded IO, and the guard's flood signal.
struct Guarded<IO> {
    connection: h2::client::Connection<Guard<IO>, Bytes>,
    flooded: Arc<Tripped>,
}

/// Sends a CONNECT and reads the answer: the stream's halves and the destination's baggage, or the refusal.
async fn send_connect(
    sender: SendRequest<Bytes>,
    request: http::Request<()>,
    address: SocketAddr,
) -> Result<(SendStream<Bytes>, RecvStream, Option<Baggage>), ClientError> {
    let h2_error = |source| ClientError::H2 { address, source };
    let mut sender = sender.ready().await.map_err(h2_error)?;
    let (response, send) = sender.send_request(request, false).map_err(h2_error)?;
    let response = response.await.map_err(h2_error)?;
    let peer_baggage = read_response(&response)?;
    Ok((send, response.into_body(), peer_baggage))
}
