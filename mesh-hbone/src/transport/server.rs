//! The HBONE server: mTLS HTTP/2 connections from peer proxies, each CONNECT validated with the core's rules
//! and handed to a caller-supplied handler for its upstream.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::spiffe::{SpiffeId, TrustDomain};
use mesh_identity::tls::{WorkloadCertificate, peer_spiffe_id, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::budget::{Ledger, SendBudget, StreamAccount};
use super::error::ServerError;
use super::guard::{FloodLimit, Guard, random_mask};
use super::identity::ServerIdentity;
use super::keepalive;
use super::socket::SocketBuffers;
use super::stream::HboneStream;
use super::tunnels::{Direction, Tunnels};
use super::upstream::Upstream;
use crate::authority::HboneAddress;
use crate::baggage::Baggage;
use crate::connect::ConnectRequest;
use crate::settings::H2Settings;
use crate::status::{InboundRules, Rejection, accept_response, canonical, validate};

/// How long a connection waits for the certificate of the identity it reached while that is being issued.
const CERTIFICATE_WAIT: Duration = Duration::from_secs(5);

/// Limits on what a connecting peer controls, beyond the HTTP/2 settings. The README lists each with the attack
/// it bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long the TLS handshake may take: 10 s.
    pub handshake_timeout: Duration,
    /// How long the client may take, once TLS is up, to send the HTTP/2 preface and complete the HTTP/2
    /// handshake: 10 s. Keepalive and the idle timeout only start after it.
    pub preface_timeout: Duration,
    /// How long the server gives a connection it ends (keepalive failure, flood, idle, or a peer that has gone
    /// away) to take its GOAWAY and close, before dropping it: 5 s. A peer that stops reading cannot hold a
    /// connection open by not taking the GOAWAY.
    pub shutdown_timeout: Duration,
    /// How long a connection may carry no stream before it is closed (GOAWAY): 5 minutes.
    pub idle_timeout: Duration,
    /// Most connections served at once, handshakes included: 16,384. At the limit [`HboneServer::serve`] stops
    /// accepting (new clients wait in the listen backlog) until a connection closes.
    pub max_connections: usize,
    /// How long the [`Handler`] may take to decide on a CONNECT, its upstream connect included: 10 s (ztunnel's
    /// connect timeout). Past it the handler is dropped (cancelling its connect) and the CONNECT gets 503.
    pub handler_timeout: Duration,
    /// Most CONNECTs one connection may have being decided by the handler (upstream connects in flight) at
    /// once: 100 (a ztunnel client puts at most 100 streams on a connection). Beyond it a CONNECT gets 503
    /// ([`Rejection::Overloaded`]) at once. A CONNECT the client resets is cancelled, its connect with it.
    pub max_connects_per_connection: usize,
    /// Most CONNECTs being decided at once across all connections: 1,024. Beyond it, 503 as above. Keep it
    /// well under the process's file descriptor limit.
    pub max_connects: usize,
    /// Most bytes one connection's tunnels may have reserved or waiting in HTTP/2 send buffers, not yet
    /// written to the peer: 16 MiB. At the limit the relays stop reading from their upstreams until the peer
    /// reads.
    pub send_budget_per_connection: u64,
    /// The same across all connections: 1 GiB. At the limit every relay waits for room before reading from
    /// its upstream.
    pub send_budget: u64,
    /// Control frames (SETTINGS, PING, PRIORITY, WINDOW_UPDATE, GOAWAY, unknown types) a connection may send
    /// per second, sustained: 5,000. A connection above it (after a burst of [`Self::control_frame_burst`]) is
    /// closed with GOAWAY ENHANCE_YOUR_CALM.
    pub control_frames_per_second: u32,
    /// The burst of control frames allowed above the sustained rate: 10,000.
    pub control_frame_burst: u32,
    /// Bytes of control frames (headers included) a connection may send per second, sustained: 256 KiB. A
    /// connection above it (after a burst of [`Self::control_frame_byte_burst`]) is closed with GOAWAY
    /// ENHANCE_YOUR_CALM. Small frames meet [`Self::control_frames_per_second`] first (5,000 PINGs a second are
    /// 85 KB); this bounds the large ones, which cost as much to decrypt and parse as their size.
    pub control_frame_bytes_per_second: u32,
    /// The burst of control frame bytes allowed above the sustained rate, and so the largest control frame a
    /// connection may send: 1 MiB.
    pub control_frame_byte_burst: u32,
    /// Most settings (6 bytes each) in one SETTINGS frame: 32, four times the settings HTTP/2 and its
    /// extensions define. A larger SETTINGS frame is refused from its header, before its payload is read:
    /// GOAWAY ENHANCE_YOUR_CALM, and the connection is closed.
    pub max_settings_per_frame: u32,
    /// The kernel buffers of each upstream socket: 256 KiB to receive, 256 KiB to send
    /// ([`SocketBuffers::UPSTREAM`]). Applied to every upstream a [`Handler`] returns as a tokio `TcpStream`,
    /// however it connected; [`connect_tcp`](super::connect_tcp) sets the same before connecting, which also
    /// covers upstreams a [`TakeOver`](super::TakeOver) relays itself. Setting a size turns the kernel's
    /// autotuning off for that buffer: a tunnel whose peer does not read then holds at most the receive
    /// buffer of kernel memory for what its upstream keeps sending (doubled by Linux), rather than
    /// `net.ipv4.tcp_rmem`'s maximum. [`SocketBuffers::AUTOTUNED`] leaves upstreams as the handler made them.
    pub upstream_buffers: SocketBuffers,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            handshake_timeout: Duration::from_secs(10),
            preface_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            max_connections: 16_384,
            handler_timeout: Duration::from_secs(10),
            max_connects_per_connection: 100,
            max_connects: 1_024,
            send_budget_per_connection: 16 * 1024 * 1024,
            send_budget: 1024 * 1024 * 1024,
            control_frames_per_second: FloodLimit::DEFAULT.per_second,
            control_frame_burst: FloodLimit::DEFAULT.burst,
            control_frame_bytes_per_second: FloodLimit::DEFAULT.bytes_per_second,
            control_frame_byte_burst: FloodLimit::DEFAULT.byte_burst,
            max_settings_per_frame: FloodLimit::DEFAULT.max_settings,
            upstream_buffers: SocketBuffers::UPSTREAM,
        }
    }
}

/// A CONNECT that passed validation, for the handler to decide on.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// The SPIFFE ID the client proxy presented (verified during the handshake).
    pub peer: SpiffeId,
    /// The client proxy's address.
    pub peer_addr: SocketAddr,
    /// The local address the connection arrived on.
    pub dialled: SocketAddr,
    /// Where to connect upstream.
    pub target: SocketAddr,
    /// The CONNECT (malformed optional headers left out).
    pub request: ConnectRequest,
    /// All request headers, as received.
    pub headers: HeaderMap,
}

impl InboundRequest {
    /// The source IP policies match (`source.ip`, `ipBlocks`): the TCP peer address of the connection, which
    /// is what the connection proves. A node proxy that keeps the original source dials from the workload's
    /// own address, so this is the workload's IP; a waypoint's or gateway's tunnel comes from the waypoint's.
    pub fn source_ip(&self) -> IpAddr {
        self.peer_addr.ip()
    }

    /// The source the peer claims in the CONNECT's `forwarded` `for=`: what it writes, not what it proves.
    /// Fit for logs, never for policy.
    pub fn claimed_source(&self) -> Option<IpAddr> {
        self.request.forwarded.as_ref().and_then(|f| f.for_node).map(|node| node.ip())
    }
}

/// Decides on each validated CONNECT: applies policy and connects upstream, returning the upstream stream to
/// relay to, a [`TakeOver`](super::TakeOver) to serve the tunnel itself, or the [`Rejection`] to answer with.
/// Any `Fn(InboundRequest) -> impl Future<Output = Result<U, Rejection>>` is one, for an [`Upstream`] `U` such
/// as a `TcpStream`.
pub trait Handler: Send + Sync + 'static {
    /// Where the tunnel goes: a stream to relay to, or the handler itself.
    type Upstream: Upstream;
    /// The decision, with the upstream connected.
    type Future: Future<Output = Result<Self::Upstream, Rejection>> + Send + 'static;

    /// Decides on `request`.
    fn call(&self, request: InboundRequest) -> Self::Future;
}

impl<F, Fut, U> Handler for F
where
    F: Fn(InboundRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<U, Rejection>> + Send + 'static,
    U: Upstream,
{
    type Upstream = U;
    type Future = Fut;

    fn call(&self, request: InboundRequest) -> Fut {
        self(request)
    }
}

/// Serves HBONE. Cheap to clone.
#[derive(Clone)]
pub struct HboneServer {
    identity: Arc<dyn ServerIdentity>,
    settings: H2Settings,
    limits: ServerLimits,
    rules: Arc<InboundRules>,
    baggage: Option<Arc<Baggage>>,
    /// Where accepted tunnels are listed.
    tunnels: Tunnels,
    /// What all connections share under [`ServerLimits`].
    shared: Arc<Shared>,
}

/// Budgets shared by every connection of a server.
#[derive(Debug)]
struct Shared {
    connects: Arc<Semaphore>,
    send_budget: Arc<SendBudget>,
}

impl Shared {
    fn new(limits: &ServerLimits) -> Self {
        Shared {
            connects: Arc::new(Semaphore::new(permits(limits.max_connects))),
            send_budget: Arc::new(SendBudget::new(limits.send_budget)),
        }
    }
}

/// A semaphore size within what tokio allows, and at least 1.
fn permits(limit: usize) -> usize {
    limit.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize))
}

impl std::fmt::Debug for HboneServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneServer")
            .field("settings", &self.settings)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HboneServer {
    /// A server presenting `own`, accepting clients from the `accepted` trust domains, with ztunnel's settings
    /// and the default [`InboundRules`].
    pub fn new(
        own: &WorkloadCertificate,
        bundles: Arc<TrustBundleSet>,
        accepted: impl IntoIterator<Item = TrustDomain>,
    ) -> Result<Self, ServerError> {
        let config = server_config(own, bundles, accepted)?;
        Ok(Self::with_identity(Arc::new(config)))
    }

    /// A server choosing its TLS configuration per connection by the local address dialled (see
    /// [`ServerIdentity`]): [`WorkloadIdentities`](super::WorkloadIdentities) for a node proxy, one
    /// `Arc<rustls::ServerConfig>` (such as [`CertificateStore::server_config`] makes) for a waypoint. With
    /// ztunnel's settings and the default [`InboundRules`].
    ///
    /// [`CertificateStore::server_config`]: mesh_identity::store::CertificateStore::server_config
    pub fn with_identity(identity: impl ServerIdentity) -> Self {
        let limits = ServerLimits::default();
        HboneServer {
            identity: Arc::new(identity),
            settings: H2Settings::default(),
            limits,
            rules: Arc::new(InboundRules::default()),
            baggage: None,
            tunnels: Tunnels::new(),
            shared: Arc::new(Shared::new(&limits)),
        }
    }

    /// Lists accepted tunnels in `tunnels` (which a client may share), rather than in a registry of its own.
    pub fn with_tunnels(mut self, tunnels: Tunnels) -> Self {
        self.tunnels = tunnels;
        self
    }

    /// The registry listing the tunnels this server accepted and has open.
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// Uses these HTTP/2 settings.
    pub fn with_settings(mut self, settings: H2Settings) -> Result<Self, ServerError> {
        settings.validate()?;
        self.settings = settings;
        Ok(self)
    }

    /// Uses these limits (with fresh server-wide budgets: call it before serving).
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self.shared = Arc::new(Shared::new(&limits));
        self
    }

    /// Validates CONNECTs against these rules.
    pub fn with_rules(mut self, rules: InboundRules) -> Self {
        self.rules = Arc::new(rules);
        self
    }

    /// Sends this `baggage` (the destination's) in every 200.
    pub fn with_baggage(mut self, baggage: Baggage) -> Self {
        self.baggage = Some(Arc::new(baggage));
        self
    }

    /// Bytes this server's tunnels hold for their peers (reserved for a read from an upstream, or waiting in
    /// an HTTP/2 send buffer), across all connections: at most [`ServerLimits::send_budget`].
    pub fn buffered_bytes(&self) -> u64 {
        self.shared.send_budget.used()
    }

    /// Accepts connections, at most [`ServerLimits::max_connections`] at once, serving each on its own task.
    ///
    /// An accept error that concerns one connection (aborted, reset) is skipped; running out of file
    /// descriptors or memory pauses accepting for a second, as the connections already open may free some.
    /// Returns only when the listener itself fails. [`Self::serve_until`] also stops on a signal, draining.
    pub async fn serve<H: Handler>(&self, listener: TcpListener, handler: H) -> Result<(), ServerError> {
        self.serve_until(listener, handler, std::future::pending(), Duration::ZERO).await.map(|_| ())
    }

    /// Serves as [`Self::serve`] until `shutdown` completes, then drains: the listener is closed, every
    /// connection is sent GOAWAY (tunnels in flight go on, new CONNECTs go elsewhere), and connections still
    /// open after `drain` are closed, resetting their tunnels. Returns once every connection has closed.
    pub async fn serve_until<H: Handler>(
        &self,
        listener: TcpListener,
        handler: H,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) -> Result<Drained, ServerError> {
        let total = permits(self.limits.max_connections);
        let slots = Arc::new(Semaphore::new(total));
        let (phase_tx, phase) = watch::channel(Phase::Serving);
        {
            // Dropped at the end of this block, closing the listener: new clients are refused from then on.
            let accepting = self.accept(listener, Arc::new(handler), &slots, phase);
            tokio::select! {
                failed = accepting => return failed.map(|()| Drained::default()),
                () = shutdown => {}
            }
        }
        let open = total - slots.available_permits();
        info!(open, ?drain, "HBONE server shutting down; draining connections");
        phase_tx.send_replace(Phase::Draining);
        // `total` fits in u32: it was clamped above.
        let all = u32::try_from(total).unwrap_or(u32::MAX);
        if tokio::time::timeout(drain, slots.acquire_many(all)).await.is_ok() {
            info!("HBONE server drained");
            return Ok(Drained { cut_off: 0 });
        }
        let cut_off = total - slots.available_permits();
        warn!(cut_off, ?drain, "HBONE drain deadline passed; closing the remaining connections");
        phase_tx.send_replace(Phase::Stopped);
        let _ = slots.acquire_many(all).await;
        Ok(Drained { cut_off })
    }

    /// The accept loop: runs until the listener fails.
    async fn accept<H: Handler>(
        &self,
        listener: TcpListener,
        handler: Arc<H>,
        slots: &Arc<Semaphore>,
        phase: watch::Receiver<Phase>,
    ) -> Result<(), ServerError> {
        let max = self.limits.max_connections;
        loop {
            let slot = match Arc::clone(slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    warn!(max_connections = max, "HBONE connection limit reached; not accepting until one closes");
                    match Arc::clone(slots).acquire_owned().await {
                        Ok(slot) => slot,
                        // Not reachable: the semaphore is never closed.
                        Err(_) => return Ok(()),
                    }
                }
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => match accept_error(&error) {
                    AcceptError::Skip => {
                        debug!(%error, "accept failed for one connection");
                        continue;
                    }
                    AcceptError::Pause => {
                        warn!(%error, "cannot accept HBONE connections for now; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    AcceptError::Fatal => return Err(error.into()),
                },
            };
            let server = self.clone();
            let handler = Arc::clone(&handler);
            let phase = phase.clone();
            tokio::spawn(async move {
                if let Err(error) = server.serve_connection_in(tcp, handler, phase).await {
                    warn!(%peer, %error, "HBONE connection ended with an error");
                }
                drop(slot);
            });
        }
    }

    /// Serves one accepted TCP connection: mTLS, then HTTP/2 until the peer closes, goes idle or stops
    /// answering PINGs.
    pub async fn serve_connection<H: Handler>(&self, tcp: TcpStream, handler: Arc<H>) -> Result<(), ServerError> {
        // No sender: the connection is never asked to drain.
        let (_, phase) = watch::channel(Phase::Serving);
        self.serve_connection_in(tcp, handler, phase).await
    }

    /// Serves a connection until it ends, or the server's phase reaches [`Phase::Stopped`].
    async fn serve_connection_in<H: Handler>(
        &self,
        tcp: TcpStream,
        handler: Arc<H>,
        phase: watch::Receiver<Phase>,
    ) -> Result<(), ServerError> {
        let mut stopped = phase.clone();
        tokio::select! {
            served = self.run_connection(tcp, handler, phase) => served,
            // Dropping the connection closes it; its streams end with an error, resetting their tunnels.
            () = reached(&mut stopped, Phase::Stopped) => Ok(()),
        }
    }

    async fn run_connection<H: Handler>(
        &self,
        tcp: TcpStream,
        handler: Arc<H>,
        mut phase: watch::Receiver<Phase>,
    ) -> Result<(), ServerError> {
        let peer_addr = tcp.peer_addr()?;
        let dialled = tcp.local_addr()?;
        // No identity at the dialled address: refused before TLS (dropping the socket closes it).
        let Some(config) = self.identity.server_config(SocketAddr::new(canonical(dialled.ip()), dialled.port())) else {
            return Err(ServerError::NoIdentity { peer: peer_addr, dialled });
        };
        let acceptor = TlsAcceptor::from(config);
        let _ = tcp.set_nodelay(true);
        let handshake = self.limits.handshake_timeout;
        // A certificate still being issued: the client's hello waits in the socket meanwhile.
        let local = SocketAddr::new(canonical(dialled.ip()), dialled.port());
        let wait_until = tokio::time::Instant::now() + handshake.min(CERTIFICATE_WAIT);
        while !self.identity.has_certificate(local) && tokio::time::Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp).into_fallible()).await {
            Err(_) => {
                let reason = format!("timed out after {handshake:?}");
                return Err(ServerError::Handshake { peer: peer_addr, reason });
            }
            Ok(Err((error, tcp))) => {
                linger(tcp).await;
                return Err(ServerError::Handshake { peer: peer_addr, reason: error.to_string() });
            }
            Ok(Ok(tls)) => tls,
        };
        let peer = peer_spiffe_id(tls.get_ref().1)?;
        debug!(%peer_addr, %peer, "HBONE connection accepted");

        let limits = &self.limits;
        let ledger = Arc::new(Ledger::new(Arc::clone(&self.shared.send_budget), limits.send_budget_per_connection));
        let flood = FloodLimit {
            per_second: limits.control_frames_per_second,
            burst: limits.control_frame_burst,
            bytes_per_second: limits.control_frame_bytes_per_second,
            byte_burst: limits.control_frame_byte_burst,
            max_settings: limits.max_settings_per_frame,
        };
        let (io, flooded) = Guard::server(tls, flood, random_mask()?, Arc::clone(&ledger));
        let s = &self.settings;
        let h2_error = |source| ServerError::H2 { peer: peer_addr, source };
        let preface = limits.preface_timeout;
        let mut connection = tokio::time::timeout(
            preface,
            h2::server::Builder::new()
                .initial_window_size(s.stream_window)
                .initial_connection_window_size(s.connection_window)
                .max_frame_size(s.max_frame_size)
                .max_header_list_size(s.server_max_header_list)
                .max_send_buffer_size(s.server_max_send_buffer as usize)
                .max_concurrent_streams(s.server_max_concurrent_streams)
                .handshake::<_, Bytes>(io),
        )
        .await
        .map_err(|_| ServerError::Preface { peer: peer_addr, after: preface })?
        .map_err(h2_error)?;

        let (dead_tx, mut dead_rx) = oneshot::channel();
        if let Some(ping_pong) = connection.ping_pong() {
            tokio::spawn(keepalive::run(ping_pong, s.keepalive_interval, s.keepalive_timeout, dead_tx));
        }
        let context = ConnectionContext {
            peer,
            peer_addr,
            dialled,
            active: Arc::new(AtomicUsize::new(0)),
            connects: Arc::new(Semaphore::new(permits(limits.max_connects_per_connection))),
            ledger,
        };
        let idle_timeout = limits.idle_timeout;
        let mut idle = Box::pin(tokio::time::sleep(idle_timeout));
        // Armed when the server itself sends GOAWAY for an idle connection: a peer that does not take it (does
        // not read) is dropped then.
        let mut give_up = Box::pin(tokio::time::sleep(Duration::MAX));
        let mut giving_up = false;
        // Once GOAWAY is sent, streams the client opened before it saw the GOAWAY are still served: accepting
        // goes on until h2 reports the connection done.
        let mut closing = false;
        loop {
            tokio::select! {
                next = connection.accept() => {
                    let Some(next) = next else { break };
                    let (request, respond) = next.map_err(h2_error)?;
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    tokio::spawn(self.clone().serve_stream(context.clone(), request, respond, Arc::clone(&handler)));
                }
                Ok(reason) = &mut dead_rx => {
                    warn!(%peer_addr, peer = %context.peer, %reason, "HBONE keepalive failed; closing the connection");
                    connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                    break;
                }
                frames = flooded.wait() => {
                    warn!(%peer_addr, peer = %context.peer, frames, "HBONE control frames over the limit; closing the connection");
                    connection.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    break;
                }
                () = reached(&mut phase, Phase::Draining), if !closing => {
                    debug!(%peer_addr, peer = %context.peer, "draining HBONE connection");
                    connection.graceful_shutdown();
                    closing = true;
                }
                () = idle.as_mut(), if !closing => {
                    if context.active.load(Ordering::Acquire) == 0 {
                        info!(%peer_addr, peer = %context.peer, ?idle_timeout, "closing idle HBONE connection");
                        connection.graceful_shutdown();
                        closing = true;
                        giving_up = true;
                        give_up.as_mut().reset(tokio::time::Instant::now() + limits.shutdown_timeout);
                    } else {
                        idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    }
                }
                () = give_up.as_mut(), if giving_up => {
                    if context.active.load(Ordering::Acquire) == 0 {
                        debug!(%peer_addr, peer = %context.peer, "idle HBONE connection did not close after GOAWAY; dropping it");
                        break;
                    }
                    // Tunnels the client opened before it saw the GOAWAY: keepalive watches over them.
                    giving_up = false;
                }
            }
        }
        // Let the GOAWAY go out, within the deadline: a peer that does not read cannot hold the connection.
        let shutdown = limits.shutdown_timeout;
        match tokio::time::timeout(shutdown, std::future::poll_fn(|cx| connection.poll_closed(cx))).await {
            Ok(closed) => closed.map_err(h2_error),
            Err(_) => {
                debug!(%peer_addr, ?shutdown, "HBONE connection did not close in time; dropping it");
                Ok(())
            }
        }
    }

    async fn serve_stream<H: Handler>(
        self,
        context: ConnectionContext,
        request: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
        handler: Arc<H>,
    ) {
        let _active = Active::new(&context.active);
        let (parts, recv) = request.into_parts();
        let ConnectionContext { peer, peer_addr, dialled, .. } = &context;
        let (peer_addr, dialled) = (*peer_addr, *dialled);
        let refuse = |mut respond: h2::server::SendResponse<Bytes>, rejection: Rejection| {
            info!(%peer_addr, %peer, status = rejection.status().as_u16(), %rejection, "HBONE CONNECT refused");
            if let Err(error) = respond.send_response(rejection.response(), true) {
                debug!(%error, "could not send the refusal");
            }
        };
        let accepted = match validate(&parts.method, &parts.uri, &parts.headers, dialled, &self.rules) {
            Ok(accepted) => accepted,
            Err(rejection) => return refuse(respond, rejection),
        };
        for issue in &accepted.header_issues {
            debug!(%peer_addr, %issue, "ignoring malformed CONNECT header");
        }
        let target = accepted.target;
        let limits = &self.limits;
        // Upstream connects in flight: bounded per connection and in total, since a reset stream frees its
        // HTTP/2 concurrency slot at once.
        let Ok(_connect) = Arc::clone(&context.connects).try_acquire_owned() else {
            let limit = limits.max_connects_per_connection as u64;
            return refuse(respond, Rejection::Overloaded { which: "upstream connects per connection", limit });
        };
        let Ok(_connect_total) = Arc::clone(&self.shared.connects).try_acquire_owned() else {
            let limit = limits.max_connects as u64;
            return refuse(respond, Rejection::Overloaded { which: "upstream connects", limit });
        };
        let inbound = InboundRequest {
            peer: peer.clone(),
            peer_addr,
            dialled,
            target,
            request: accepted.request,
            headers: parts.headers,
        };
        let deadline = limits.handler_timeout;
        let decided = tokio::select! {
            // The client reset the CONNECT: drop the handler, and with it the connect it is making.
            reset = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                debug!(%peer_addr, %target, ?reset, "CONNECT reset by the client; handler cancelled");
                return;
            }
            decided = tokio::time::timeout(deadline, handler.call(inbound)) => decided,
        };
        let upstream = match decided {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(rejection)) => return refuse(respond, rejection),
            Err(_) => {
                let reason = format!("no decision within {deadline:?}");
                return refuse(respond, Rejection::UpstreamConnect { target, reason });
            }
        };
        drop((_connect, _connect_total));
        fix_buffers(&upstream, limits.upstream_buffers);
        let response = match accept_response(self.baggage.as_deref()) {
            Ok(response) => response,
            Err(error) => {
                warn!(%error, "configured baggage is invalid; answering 200 without it");
                let mut response = http::Response::new(());
                *response.status_mut() = http::StatusCode::OK;
                response
            }
        };
        let send = match respond.send_response(response, false) {
            Ok(send) => send,
            Err(error) => {
                debug!(%peer_addr, %error, "client went away before the tunnel opened");
                return;
            }
        };
        debug!(%peer_addr, %peer, %target, "HBONE tunnel open");
        let account = StreamAccount::new(Arc::clone(&context.ledger), send.stream_id().as_u32());
        let registration = self.tunnels.register(Direction::Inbound, peer.clone(), HboneAddress::Socket(target));
        let tunnel = HboneStream::new(send, recv, None).with_account(account).with_registration(registration);
        upstream.serve(tunnel).await;
    }
}

/// Sets the buffer sizes of an upstream that is a TCP socket (other upstreams are left as they are).
fn fix_buffers(upstream: &dyn std::any::Any, buffers: SocketBuffers) {
    if let Some(tcp) = upstream.downcast_ref::<TcpStream>()
        && let Err(error) = buffers.apply(socket2::SockRef::from(tcp))
    {
        debug!(%error, "cannot set the upstream socket's buffer sizes");
    }
}

/// How long a refused client's connection is kept half-closed after the alert.
const LINGER: Duration = Duration::from_secs(1);

/// After a refused handshake, whose alert rustls has written: half-closes, then reads and discards what the
/// client still sends (its Finished, its HTTP/2 preface) for at most [`LINGER`] and 64 KiB. Closing with unread
/// bytes would send a TCP reset, and a reset can make the client's kernel discard the alert before the
/// client reads it; the client then sees a bare EOF instead of the reason.
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Connections still open at the drain deadline, and closed then.
    pub cut_off: usize,
}

/// Where a server is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// GOAWAY sent: streams in flight finish, new ones are refused.
    Draining,
    /// Past the drain deadline: connections close now.
    Stopped,
}

/// Completes once the phase is `at_least`; never, if the server is gone without getting there.
async fn reached(phase: &mut watch::Receiver<Phase>, at_least: Phase) {
    if phase.wait_for(|p| *p >= at_least).await.is_err() {
        std::future::pending::<()>().await;
    }
}

enum AcceptError {
    /// The error concerns one connection only.
    Skip,
    /// The process is out of a resource that closing connections frees.
    Pause,
    /// The listener is broken.
    Fatal,
}

fn accept_error(error: &io::Error) -> AcceptError {
    // EMFILE, ENFILE and ENOMEM have these numbers on Linux and the BSDs.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOMEM: i32 = 12;
    match error.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => {
            AcceptError::Skip
        }
        io::ErrorKind::OutOfMemory => AcceptError::Pause,
        _ if matches!(error.raw_os_error(), Some(EMFILE | ENFILE | ENOMEM)) => AcceptError::Pause,
        _ => AcceptError::Fatal,
    }
}

/// What the streams of one connection share.
#[derive(Clone)]
struct ConnectionContext {
    peer: SpiffeId,
    peer_addr: SocketAddr,
    dialled: SocketAddr,
    /// Streams being served.
    active: Arc<AtomicUsize>,
    /// Upstream connects in flight on this connection.
    connects: Arc<Semaphore>,
    /// What this connection's tunnels hold in send buffers.
    ledger: Arc<Ledger>,
}

/// Counts a stream as active while it lives.
struct Active(Arc<AtomicUsize>);

impl Active {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Active(Arc::clone(count))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
