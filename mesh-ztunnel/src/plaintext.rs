//! Inbound plaintext (15006): connections to a local workload that did not come over HBONE, redirected here
//! by iptables. PeerAuthentication decides first (STRICT refuses them before any policy is looked at), then
//! L4 policy with no peer identity. A reload that turns the workload STRICT, or denies the connection, closes
//! it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_hbone::transport::original_dst;
use mesh_policy::Snapshot;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tracing::info;

use crate::inbound::{Allowed, Denied, local_target, settle};
use crate::metrics::{Peers, ResponseFlags};
use crate::node::{Node, side};
use crate::outbound::reset_on_close;
use mesh_runtime::shutdown::Shutdown;

/// Accepts redirected plaintext connections until shutdown.
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: Shutdown) {
    mesh_runtime::listen::accept_until(listener, &shutdown, |stream, peer| handle(Arc::clone(&node), stream, peer))
        .await;
}

/// Whether `snapshot` lets plaintext from `source_ip` reach the local workload at `target`: PeerAuthentication
/// first (STRICT refuses it before any policy is read), then L4 policy with no peer identity, in one call
/// ([`Snapshot::authorize_plaintext`]).
pub fn verdict(node: &Node, snapshot: &Snapshot, target: SocketAddr, source_ip: IpAddr) -> Result<Allowed, Denied> {
    let workload_target = local_target(node, snapshot, target)?;
    settle(&snapshot.authorize_plaintext(&workload_target, source_ip))
}

async fn handle(node: Arc<Node>, mut stream: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let target = match original_dst(&stream) {
        Ok(target) if Some(target) != stream.local_addr().ok() => target,
        _ => {
            info!(src.addr = %peer, "plaintext inbound refused: the connection was not redirected, so its destination is unknown");
            return;
        }
    };
    // Registered before the decision: a configuration that lands from now on reaches this connection.
    let registration = node.live.register(target, None, peer.ip(), node.connections.track());
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let Some((_, workload)) = node.local_workload(cluster, target.ip()) else {
        info!(src.addr = %peer, dst.addr = %target, "plaintext inbound refused: no workload of this node has the address");
        reset_on_close(&stream);
        return;
    };
    let source = cluster.workload_by_ip(peer.ip()).and_then(|w| cluster.workload(w));
    let peers =
        Peers { source: side(source, None), destination: side(Some(workload), None), service: None, mtls: false };
    let workload_name = workload.id.to_string();
    let verdict = verdict(&node, &snapshot, target, peer.ip());
    drop(snapshot);
    let allowed = match verdict {
        Ok(allowed) => allowed,
        Err(denied) => {
            node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
            info!(direction = "inbound", protocol = "plaintext", src.addr = %peer, dst.addr = %target, dst.workload = %workload_name, decision = "deny", reason = %denied.reason, "connection denied");
            reset_on_close(&stream);
            return;
        }
    };
    let mut upstream = match node.connect(target, Duration::from_secs(5)).await {
        Ok(u) => u,
        Err(e) => {
            node.metrics.refused(&peers.labels("destination", ResponseFlags::ConnectFailure));
            info!(src.addr = %peer, dst.addr = %target, error = %e, "plaintext inbound: the workload refused the connection");
            reset_on_close(&stream);
            return;
        }
    };
    if registration.is_closed() {
        // A configuration that arrived while the workload was being connected to refuses it.
        node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
        info!(direction = "inbound", protocol = "plaintext", src.addr = %peer, dst.addr = %target, decision = "deny", "connection denied by the configuration that arrived while it was being connected");
        reset_on_close(&stream);
        reset_on_close(&upstream);
        return;
    }
    let labels = peers.labels("destination", ResponseFlags::None);
    node.metrics.opened(&labels);
    let (received, sent, error) = tokio::select! {
        copied = copy_bidirectional(&mut stream, &mut upstream) => match copied {
            Ok((received, sent)) => (received, sent, String::new()),
            Err(e) => (0, 0, e.to_string()),
        },
        why = registration.closed() => (0, 0, why.as_str().to_owned()),
    };
    if !error.is_empty() {
        // Cut short: both ends see a reset, never a clean end.
        reset_on_close(&stream);
        reset_on_close(&upstream);
    }
    node.metrics.closed(&labels, received, sent);
    info!(direction = "inbound", protocol = "plaintext", src.addr = %peer, dst.addr = %target, dst.workload = %workload_name,
        decision = "allow", policy = %allowed.policy, bytes_received = received, bytes_sent = sent,
        duration_ms = started.elapsed().as_millis() as u64, %error, "connection closed");
}
