//! Inbound HBONE (15008): the destination workload's certificate answers the handshake, L4 policy decides at
//! the ztunnel enforcement point (a denial answers the CONNECT with 401, as Istio's ztunnel does), and an
//! allowed tunnel is relayed to the local workload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_hbone::Rejection;
use mesh_hbone::transport::{HboneStream, InboundRequest, TakeOver, connect_tcp, relay};
use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::proxy::Connection;
use tracing::info;

use crate::live::{Closer, Entry};
use crate::metrics::{Peers, ResponseFlags};
use crate::node::{Node, side};

/// How long the connect to the local workload may take.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);

/// Decides on one CONNECT.
pub async fn handle(
    node: Arc<Node>,
    request: InboundRequest,
) -> Result<
    TakeOver<impl FnOnce(HboneStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static>,
    Rejection,
> {
    let started = Instant::now();
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let source_ip = request.original_source();
    let peer_id = request.peer.to_string();
    let source_workload = cluster.workload_by_ip(source_ip).and_then(|w| cluster.workload(w));
    let Some((id, workload)) = node.local_workload(cluster, request.target.ip()) else {
        info!(dst.addr = %request.target, src.identity = %peer_id, "inbound refused: no workload of this node has the address");
        return Err(Rejection::UpstreamConnect {
            target: request.target,
            reason: "no workload of this node has this address".into(),
        });
    };
    let mut peers = Peers {
        source: side(source_workload, Some(peer_id.clone())),
        destination: side(Some(workload), None),
        service: None,
        mtls: true,
    };
    let peer = IstioIdentity::from_spiffe_id(request.peer.clone()).ok();
    let decision = match (snapshot.workload_target(id, request.target.port()), &peer) {
        (Some(target), Some(peer)) => {
            let connection = Connection::new(target).with_peer(peer).with_source_ip(source_ip);
            snapshot.authorize_connection(&connection)
        }
        _ => {
            node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
            info!(dst.addr = %request.target, src.identity = %peer_id, "inbound denied: the peer's identity is not an Istio identity");
            return Err(Rejection::Denied { reason: format!("{peer_id} is not an Istio workload identity") });
        }
    };
    if !decision.allowed {
        node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
        info!(
            direction = "inbound", dst.addr = %request.target, dst.workload = %workload.id, src.addr = %source_ip,
            src.identity = %peer_id, decision = "deny", policy = decision.policy.as_ref().map(ToString::to_string).unwrap_or_default(),
            reason = %decision, "connection denied"
        );
        return Err(Rejection::Denied { reason: decision.to_string() });
    }
    let upstream = match connect_tcp(request.target, None, UPSTREAM_CONNECT).await {
        Ok(upstream) => upstream,
        Err(e) => {
            node.metrics.refused(&peers.labels("destination", ResponseFlags::ConnectFailure));
            info!(dst.addr = %request.target, src.identity = %peer_id, error = %e, "inbound: the workload refused the connection");
            return Err(Rejection::UpstreamConnect { target: request.target, reason: e.to_string() });
        }
    };
    peers.destination.principal = Some(format!("spiffe://{}", workload.principal));
    let labels = peers.labels("destination", ResponseFlags::None);
    node.metrics.opened(&labels);
    let policy = decision.policy.as_ref().map(ToString::to_string).unwrap_or_default();
    let reason = decision.to_string();
    let target = request.target;
    let workload_name = workload.id.to_string();
    Ok(TakeOver(move |mut tunnel: HboneStream| -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut upstream = upstream;
            let _registration = tunnel
                .handle()
                .cloned()
                .map(|handle| node.live.register(Entry { target, peer, source_ip, closer: Closer::Tunnel(handle) }));
            let result = relay(&mut tunnel, &mut upstream).await;
            let (received, sent) = result
                .as_ref()
                .copied()
                .unwrap_or_else(|_| tunnel.handle().map_or((0, 0), |h| (h.bytes_received(), h.bytes_sent())));
            node.metrics.closed(&labels, received, sent);
            info!(
                direction = "inbound", dst.addr = %target, dst.workload = %workload_name, src.addr = %source_ip,
                src.identity = %peer_id, decision = "allow", %policy, %reason, bytes_received = received,
                bytes_sent = sent, duration_ms = started.elapsed().as_millis() as u64,
                error = result.err().map(|e| e.to_string()).unwrap_or_default(), "connection closed"
            );
        })
    }))
}
