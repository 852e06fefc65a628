//! Accepting tunnels: each CONNECT's authority is resolved in the configuration in force; a destination this
//! waypoint does not serve is refused with `503`, a port declared TCP is checked against policy before the
//! tunnel opens (a denial is a `401` refusal, as at a node proxy); then the tunnel is served as HTTP or TCP.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use mesh_hbone::Rejection;
use mesh_hbone::transport::{HboneStream, InboundRequest, TakeOver};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId};
use mesh_policy::Snapshot;
use mesh_policy::proxy::Connection;
use mesh_policy::resource::ResourceId;
use mesh_runtime::access::{AccessLog, Direction, Peer};
use mesh_runtime::metrics::{Reporter, ServiceName, Side, TcpLabels};
use mesh_runtime::state::MeshState;

use crate::Error;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::protocol::{self, Prefixed, Protocol};
use crate::served::{self, Endpoint, Served};
use crate::tcp::Downlink;
use crate::upstream::{Dial, Upstreams};
use crate::{http, tcp};

/// What every tunnel shares.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// The configuration in force.
    pub(crate) state: Arc<MeshState>,
    /// This waypoint's Gateway.
    pub(crate) gateway: ResourceId,
    /// The onward hop.
    pub(crate) upstreams: Upstreams,
    /// Request metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// The JWKS fetcher (told about unknown key ids).
    pub(crate) jwks: Arc<Jwks>,
    /// The round-robin counter over endpoints.
    pub(crate) next_endpoint: AtomicUsize,
    /// HTTP connections to endpoints, kept.
    pub(crate) pool: crate::pool::Pool,
}

/// The client side of a tunnel.
#[derive(Debug)]
pub(crate) struct Downstream {
    /// The client node proxy's verified identity.
    pub(crate) peer_id: SpiffeId,
    /// The same, as an Istio identity (`None` if it is not of the `ns/<ns>/sa/<sa>` form: no principal then).
    pub(crate) peer: Option<IstioIdentity>,
    /// The client's address: the TCP peer of the tunnel's connection (the client Pod's, as its node proxy
    /// dials from it). What the peer writes in `forwarded` is not trusted for policy.
    pub(crate) source_ip: IpAddr,
    /// The address the client dialled (the CONNECT authority).
    pub(crate) authority: SocketAddr,
}

/// What a tunnel is served by.
pub(crate) type Serve = Box<dyn FnOnce(HboneStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

impl Downstream {
    /// The connection as policies see it, to `target`.
    pub(crate) fn connection<'a>(&'a self, target: mesh_policy::proxy::Target<'a>) -> Connection<'a> {
        let connection = Connection::new(target).with_source_ip(self.source_ip);
        match &self.peer {
            Some(peer) => connection.with_peer(peer),
            None => connection,
        }
    }
}

/// The metric labels of a request (`request_protocol` `http`, `grpc`) or connection (`tcp`) to `served` at
/// `ep`.
pub(crate) fn labels(
    snapshot: &Snapshot,
    down: &Downstream,
    served: &Served<'_>,
    ep: &Endpoint<'_>,
    request_protocol: &'static str,
) -> TcpLabels {
    let cluster = snapshot.cluster();
    let client = cluster.workload_by_ip(down.source_ip).and_then(|id| cluster.workload(id));
    let source_principal = down.peer_id.to_string();
    let destination_principal = ep.workload.enrolled.then(|| format!("spiffe://{}", ep.workload.principal));
    let source = Side {
        workload: client.map(served::workload_name),
        namespace: client.map(|w| w.namespace()),
        principal: Some(&source_principal),
        app: client.and_then(|w| w.labels.get("app")).map(String::as_str),
    };
    let destination = Side {
        workload: Some(served::workload_name(ep.workload)),
        namespace: Some(ep.workload.namespace()),
        principal: destination_principal.as_deref(),
        app: ep.workload.labels.get("app").map(String::as_str),
    };
    let service = served.service.map(|s| ServiceName {
        host: s.hosts.first().map_or("unknown", String::as_str),
        name: s.id.name(),
        namespace: s.id.namespace(),
    });
    let mut labels = TcpLabels::new(Reporter::Waypoint, source, destination, service);
    labels.request_protocol = request_protocol;
    labels
}

/// The access-log line of a tunnel (or request in it) from `down`, to `endpoint` when one was chosen.
pub(crate) fn access<'a>(down: &'a Downstream, endpoint: Option<&'a (Dial, std::net::SocketAddr)>) -> AccessLog<'a> {
    let src = Peer { addr: Some(&down.source_ip), identity: Some(&down.peer_id), ..Peer::default() };
    let dst = match endpoint {
        Some((dial, addr)) => Peer {
            addr: Some(addr),
            workload: Some(&dial.workload),
            namespace: Some(&dial.namespace),
            identity: dial.identity.as_ref().map(|i| i as &dyn std::fmt::Display),
        },
        None => Peer::default(),
    };
    let mut line = AccessLog::new(Direction::Inbound, src, dst);
    line.hbone_addr = Some(&down.authority);
    line
}

/// How a tunnel is to be served once admitted: what its port carries, and for a declared TCP port the
/// endpoint the check chose.
pub(crate) type Admitted = (Protocol, Option<(IpAddr, u16)>);

impl Proxy {
    /// Decides on a CONNECT.
    pub(crate) fn accept(self: &Arc<Self>, request: InboundRequest) -> Result<TakeOver<Serve>, Rejection> {
        let down = Downstream {
            peer: IstioIdentity::from_spiffe_id(request.peer.clone()).ok(),
            peer_id: request.peer.clone(),
            source_ip: request.source_ip(),
            authority: request.target,
        };
        let (protocol, pinned) = self.admit(&down).map_err(|e| e.rejection(down.authority))?;
        let me = Arc::clone(self);
        let serve: Serve = Box::new(move |stream| Box::pin(me.serve(down, protocol, Downlink::Tunnel(stream), pinned)));
        Ok(TakeOver(serve))
    }

    /// Whether this waypoint serves what `down` is addressed to, and, for a declared TCP port, whether policy
    /// allows it (decided now, against the endpoint the bytes will then go to). A refusal is logged here.
    pub(crate) fn admit(&self, down: &Downstream) -> Result<Admitted, Error> {
        let snapshot = self.state.snapshot();
        let served = match served::resolve(&snapshot, &self.gateway, down.authority) {
            Ok(served) => served,
            Err(why) => {
                let error = Error::NotServed(why.to_string());
                let mut line = access(down, None);
                line.error = Some(&error);
                line.emit("tunnel refused");
                return Err(error);
            }
        };
        let pinned =
            if served.protocol == Protocol::Tcp { Some(self.check_tcp(&snapshot, &served, down)?) } else { None };
        Ok((served.protocol, pinned))
    }

    /// A declared TCP port: the policy decides before the tunnel opens, for the endpoint chosen (returned, so
    /// that the connection goes there).
    fn check_tcp(
        &self,
        snapshot: &mesh_policy::Snapshot,
        served: &Served<'_>,
        down: &Downstream,
    ) -> Result<(IpAddr, u16), Error> {
        let ep = served.pick(&self.next_endpoint);
        let decision = snapshot.authorize_tcp_at_waypoint(&down.connection(served.target(&ep)));
        if decision.allowed {
            return Ok((ep.ip, ep.port));
        }
        let policy = decision.policy.as_ref().map(ToString::to_string);
        let error = Error::Denied { reason: decision.to_string(), policy };
        self.metrics.tcp.refused(&labels(snapshot, down, served, &ep, "tcp").with_flags(error.response_flags()));
        let endpoint = (Dial::from(&ep), SocketAddr::new(ep.ip, ep.port));
        let mut line = access(down, Some(&endpoint));
        line.decision = Some("deny");
        line.policy = decision.policy.as_deref();
        line.reason = Some(&decision);
        line.error = Some(&error);
        line.emit("connection denied");
        Err(error)
    }

    /// Serves an admitted tunnel, whichever way it arrived.
    pub(crate) async fn serve(
        self: Arc<Self>,
        down: Downstream,
        protocol: Protocol,
        mut stream: Downlink,
        pinned: Option<(IpAddr, u16)>,
    ) {
        let down = Arc::new(down);
        match protocol {
            Protocol::Http => http::serve(self, down, stream).await,
            Protocol::Tcp => tcp::serve(self, down, stream, bytes::Bytes::new(), pinned).await,
            Protocol::Detect => match protocol::detect(&mut stream).await {
                (true, first) => http::serve(self, down, Prefixed::new(first, stream)).await,
                (false, first) => tcp::serve(self, down, stream, first, None).await,
            },
        }
    }
}
