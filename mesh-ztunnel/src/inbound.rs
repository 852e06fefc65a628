//! Inbound HBONE (15008): the destination workload's certificate answers the handshake, L4 policy decides at
//! the ztunnel enforcement point (a denial answers the CONNECT with 401, as Istio's ztunnel does), and an
//! allowed tunnel is relayed to the local workload.
//!
//! The source address policies match (`ipBlocks`, `source.ip`) is the TCP peer address of the HBONE
//! connection: what the connection proves. The `forwarded: for=` a peer writes in its CONNECT is only logged,
//! as what it claims.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_hbone::Rejection;
use mesh_hbone::transport::{HboneStream, InboundRequest, TakeOver, relay};
use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::Decision;
use mesh_policy::Snapshot;
use mesh_policy::proxy::{Connection, Target};
use mesh_runtime::access::Direction;
use mesh_runtime::metrics::{Reporter, ResponseFlags};

use crate::Error;
use crate::live::Closed;
use crate::metrics::Peers;
use crate::node::{Node, side};
use crate::outbound::reset_on_close;

/// How long the connect to the local workload may take.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);

/// A connection the configuration allows: the policy that decided and why.
#[derive(Debug, Clone)]
pub(crate) struct Allowed {
    /// `namespace/name` of the deciding policy, empty when none applied.
    pub(crate) policy: String,
    /// Why it is allowed.
    pub(crate) reason: String,
}

impl Allowed {
    /// Gives the decision, the deciding policy and the reason on `line`.
    pub(crate) fn explain<'a>(&'a self, line: &mut mesh_runtime::access::AccessLog<'a>) {
        line.decision = Some("allow");
        line.policy = Some(self.policy.as_str()).filter(|p| !p.is_empty());
        line.reason = Some(&self.reason);
    }
}

/// The local workload at `target`, as a policy target for its port.
pub(crate) fn local_target<'s>(node: &Node, snapshot: &'s Snapshot, target: SocketAddr) -> Result<Target<'s>, Error> {
    node.local_workload(snapshot.cluster(), target.ip())
        .and_then(|(id, _)| snapshot.workload_target(id, target.port()))
        .ok_or(Error::NotLocal(target))
}

/// A decision as the access log and the live re-check use it.
pub(crate) fn settle(decision: &Decision) -> Result<Allowed, Error> {
    let policy = decision.policy.as_ref().map(ToString::to_string);
    if decision.allowed {
        Ok(Allowed { policy: policy.unwrap_or_default(), reason: decision.to_string() })
    } else {
        Err(Error::Denied { reason: decision.to_string(), policy })
    }
}

/// Whether `snapshot` allows `peer`, connecting from `source_ip`, to reach the local workload at `target`.
pub(crate) fn verdict(
    node: &Node,
    snapshot: &Snapshot,
    target: SocketAddr,
    peer: &IstioIdentity,
    source_ip: IpAddr,
) -> Result<Allowed, Error> {
    let workload_target = local_target(node, snapshot, target)?;
    settle(&snapshot.authorize_connection(&Connection::new(workload_target).with_peer(peer).with_source_ip(source_ip)))
}

/// Records a refused CONNECT (metrics and access log) and turns it into the answer.
fn refuse(
    node: &Node,
    peers: &Peers,
    source_ip: IpAddr,
    claimed: Option<IpAddr>,
    target: SocketAddr,
    error: &Error,
) -> Rejection {
    node.metrics.tcp.refused(&peers.labels(Reporter::Destination, error.response_flags()));
    let mut line = peers.access(Direction::Inbound, &source_ip, &target);
    line.claimed_addr = claimed.filter(|c| *c != source_ip);
    line.hbone_addr = Some(&target);
    line.error = Some(error);
    let (policy, reason) = match error {
        Error::Denied { policy, reason } => (policy.as_deref(), reason as &dyn std::fmt::Display),
        other => (None, other as &dyn std::fmt::Display),
    };
    if error.is_denial() {
        line.decision = Some("deny");
        line.policy = policy;
        line.reason = Some(reason);
        line.emit("connection denied");
    } else {
        line.emit("connection failed");
    }
    error.rejection(target)
}

/// Decides on one CONNECT.
pub(crate) async fn handle(
    node: Arc<Node>,
    request: InboundRequest,
) -> Result<
    TakeOver<impl FnOnce(HboneStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static>,
    Rejection,
> {
    let started = Instant::now();
    let source_ip = request.source_ip();
    let claimed = request.claimed_source();
    let target = request.target;
    let peer_id = request.peer.to_string();
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let source_workload = cluster.workload_by_ip(source_ip).and_then(|w| cluster.workload(w));
    let workload = node.local_workload(cluster, target.ip()).map(|(_, w)| w);
    let mut peers = Peers {
        source: side(source_workload, Some(peer_id.clone())),
        destination: side(workload, None),
        service: None,
        mtls: true,
    };
    let Ok(peer) = IstioIdentity::from_spiffe_id(request.peer.clone()) else {
        return Err(refuse(&node, &peers, source_ip, claimed, target, &Error::NotIstioIdentity(peer_id)));
    };
    // Registered before the decision: a configuration that lands from now on reaches this connection.
    let registration = node.live.register(target, Some(peer.clone()), source_ip, node.connections.track());
    let allowed = match verdict(&node, &snapshot, target, &peer, source_ip) {
        Ok(allowed) => allowed,
        Err(error) => return Err(refuse(&node, &peers, source_ip, claimed, target, &error)),
    };
    let destination_principal = workload.map(|w| format!("spiffe://{}", w.principal));
    drop(snapshot);
    let upstream = match node.connect(target, UPSTREAM_CONNECT).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let error = Error::Connect { target, reason: e.to_string() };
            return Err(refuse(&node, &peers, source_ip, claimed, target, &error));
        }
    };
    if registration.is_closed() {
        // A configuration that arrived while the workload was being connected to denies it.
        reset_on_close(&upstream);
        return Err(refuse(&node, &peers, source_ip, claimed, target, &Error::Closed(Closed::Denied)));
    }
    if peers.destination.principal.is_none() {
        peers.destination.principal = destination_principal;
    }
    let labels = peers.labels(Reporter::Destination, ResponseFlags::None);
    // What the access line names is looked up again when the tunnel ends: a tunnel holds only its labels.
    let peer_id = peers.source.principal.take().unwrap_or_default();
    drop(peers);
    Ok(TakeOver(move |mut tunnel: HboneStream| -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut upstream = upstream;
            node.metrics.tcp.opened(&labels);
            let ended = tokio::select! {
                relayed = relay(&mut tunnel, &mut upstream) => relayed.map_err(|e| Error::Connect { target, reason: e.to_string() }),
                why = registration.closed() => Err(Error::Closed(why)),
            };
            let counted = tunnel.handle().map_or((0, 0), |h| (h.bytes_received(), h.bytes_sent()));
            let (received, sent) = match &ended {
                Ok(moved) => *moved,
                Err(_) => counted,
            };
            if ended.is_err() {
                // Cut short: the workload sees a reset, never a clean end; dropping the tunnel resets it too.
                reset_on_close(&upstream);
            }
            drop(tunnel);
            node.metrics.tcp.closed(&labels, received, sent);
            let snapshot = node.state.snapshot();
            let cluster = snapshot.cluster();
            let source_workload = cluster.workload_by_ip(source_ip).and_then(|w| cluster.workload(w));
            let workload = node.local_workload(cluster, target.ip()).map(|(_, w)| w);
            let mut peers = Peers {
                source: side(source_workload, Some(peer_id)),
                destination: side(workload, None),
                service: None,
                mtls: true,
            };
            if peers.destination.principal.is_none() {
                peers.destination.principal = Some(labels.destination_principal.clone());
            }
            let mut line = peers.access(Direction::Inbound, &source_ip, &target);
            line.claimed_addr = claimed.filter(|c| *c != source_ip);
            line.hbone_addr = Some(&target);
            allowed.explain(&mut line);
            line.bytes_sent = received;
            line.bytes_recv = sent;
            line.duration = started.elapsed();
            line.error = ended.as_ref().err().map(|e| e as &dyn std::fmt::Display);
            line.emit("connection complete");
        })
    }))
}
