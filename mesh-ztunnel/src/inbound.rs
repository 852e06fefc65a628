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
use tracing::info;

use crate::live::Closed;
use crate::metrics::{Peers, ResponseFlags};
use crate::node::{Node, side};
use crate::outbound::reset_on_close;

/// How long the connect to the local workload may take.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);

/// A connection the configuration allows: the policy that decided and why.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// `namespace/name` of the deciding policy, empty when none applied.
    pub policy: String,
    /// Why it is allowed.
    pub reason: String,
}

/// A connection the configuration refuses.
#[derive(Debug, Clone)]
pub struct Denied {
    /// Why.
    pub reason: String,
    /// `namespace/name` of the deciding policy, if one decided.
    pub policy: Option<String>,
}

/// The local workload at `target`, as a policy target for its port.
pub(crate) fn local_target<'s>(node: &Node, snapshot: &'s Snapshot, target: SocketAddr) -> Result<Target<'s>, Denied> {
    node.local_workload(snapshot.cluster(), target.ip())
        .and_then(|(id, _)| snapshot.workload_target(id, target.port()))
        .ok_or_else(|| Denied { reason: "the destination is no workload of this node".into(), policy: None })
}

/// A decision as the access log and the live re-check use it.
pub(crate) fn settle(decision: &Decision) -> Result<Allowed, Denied> {
    let policy = decision.policy.as_ref().map(ToString::to_string);
    if decision.allowed {
        Ok(Allowed { policy: policy.unwrap_or_default(), reason: decision.to_string() })
    } else {
        Err(Denied { reason: decision.to_string(), policy })
    }
}

/// Whether `snapshot` allows `peer`, connecting from `source_ip`, to reach the local workload at `target`.
pub fn verdict(
    node: &Node,
    snapshot: &Snapshot,
    target: SocketAddr,
    peer: &IstioIdentity,
    source_ip: IpAddr,
) -> Result<Allowed, Denied> {
    let workload_target = local_target(node, snapshot, target)?;
    settle(&snapshot.authorize_connection(&Connection::new(workload_target).with_peer(peer).with_source_ip(source_ip)))
}

/// How a relay ended.
enum Ended {
    /// The relay finished, cleanly or not.
    Relayed(std::io::Result<(u64, u64)>),
    /// A new configuration denies the connection, or the drain deadline passed.
    Closed(Closed),
}

/// Decides on one CONNECT.
pub async fn handle(
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
    let Ok(peer) = IstioIdentity::from_spiffe_id(request.peer.clone()) else {
        let peers = Peers { source: side(None, Some(peer_id.clone())), mtls: true, ..Peers::default() };
        node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
        info!(dst.addr = %target, src.addr = %source_ip, src.identity = %peer_id, "inbound denied: the peer's identity is not an Istio identity");
        return Err(Rejection::Denied { reason: format!("{peer_id} is not an Istio workload identity") });
    };
    // Registered before the decision: a configuration that lands from now on reaches this connection.
    let registration = node.live.register(target, Some(peer.clone()), source_ip, node.connections.track());
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let source_workload = cluster.workload_by_ip(source_ip).and_then(|w| cluster.workload(w));
    let Some((_, workload)) = node.local_workload(cluster, target.ip()) else {
        info!(dst.addr = %target, src.addr = %source_ip, src.identity = %peer_id, "inbound refused: no workload of this node has the address");
        return Err(Rejection::UpstreamConnect { target, reason: "no workload of this node has this address".into() });
    };
    let mut peers = Peers {
        source: side(source_workload, Some(peer_id.clone())),
        destination: side(Some(workload), None),
        service: None,
        mtls: true,
    };
    let workload_name = workload.id.to_string();
    let principal = format!("spiffe://{}", workload.principal);
    let allowed = match verdict(&node, &snapshot, target, &peer, source_ip) {
        Ok(allowed) => allowed,
        Err(denied) => {
            node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
            info!(
                direction = "inbound", dst.addr = %target, dst.workload = %workload_name, src.addr = %source_ip,
                src.claimed_addr = %claimed.map_or_else(String::new, |ip| ip.to_string()), src.identity = %peer_id, decision = "deny",
                policy = denied.policy.as_deref().unwrap_or_default(), reason = %denied.reason, "connection denied"
            );
            return Err(Rejection::Denied { reason: denied.reason });
        }
    };
    drop(snapshot);
    let upstream = match node.connect(target, UPSTREAM_CONNECT).await {
        Ok(upstream) => upstream,
        Err(e) => {
            node.metrics.refused(&peers.labels("destination", ResponseFlags::ConnectFailure));
            info!(dst.addr = %target, src.addr = %source_ip, src.identity = %peer_id, error = %e, "inbound: the workload refused the connection");
            return Err(Rejection::UpstreamConnect { target, reason: e.to_string() });
        }
    };
    if registration.is_closed() {
        // A configuration that arrived while the workload was being connected to denies it.
        reset_on_close(&upstream);
        node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
        info!(direction = "inbound", dst.addr = %target, src.addr = %source_ip, src.identity = %peer_id, decision = "deny", "connection denied by the configuration that arrived while it was being connected");
        return Err(Rejection::Denied { reason: "denied by the configuration in force".into() });
    }
    peers.destination.principal = Some(principal);
    let labels = peers.labels("destination", ResponseFlags::None);
    Ok(TakeOver(move |mut tunnel: HboneStream| -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut upstream = upstream;
            node.metrics.opened(&labels);
            let ended = tokio::select! {
                relayed = relay(&mut tunnel, &mut upstream) => Ended::Relayed(relayed),
                why = registration.closed() => Ended::Closed(why),
            };
            let counted = tunnel.handle().map_or((0, 0), |h| (h.bytes_received(), h.bytes_sent()));
            let (received, sent, error) = match ended {
                Ended::Relayed(Ok((received, sent))) => (received, sent, String::new()),
                Ended::Relayed(Err(e)) => (counted.0, counted.1, e.to_string()),
                Ended::Closed(why) => (counted.0, counted.1, why.as_str().to_owned()),
            };
            if !error.is_empty() {
                // Cut short: the workload sees a reset, never a clean end; dropping the tunnel resets it too.
                reset_on_close(&upstream);
            }
            drop(tunnel);
            node.metrics.closed(&labels, received, sent);
            info!(
                direction = "inbound", dst.addr = %target, dst.workload = %workload_name, src.addr = %source_ip,
                src.claimed_addr = %claimed.map_or_else(String::new, |ip| ip.to_string()), src.identity = %peer_id, decision = "allow", policy = %allowed.policy,
                reason = %allowed.reason, bytes_received = received, bytes_sent = sent,
                duration_ms = started.elapsed().as_millis() as u64, %error, "connection closed"
            );
        })
    }))
}
