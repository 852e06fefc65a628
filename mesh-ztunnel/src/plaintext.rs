//! Inbound plaintext (15006): connections to a local workload that did not come over HBONE, redirected here
//! by iptables. PeerAuthentication decides first (STRICT refuses them before any policy is looked at), then
//! L4 policy with no peer identity. A reload that turns the workload STRICT, or denies the connection, closes
//! it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_hbone::transport::original_dst;
use mesh_policy::Snapshot;
use mesh_runtime::access::Direction;
use mesh_runtime::metrics::{Reporter, ResponseFlags};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

use crate::Error;
use crate::inbound::{Allowed, local_target, settle};
use crate::live::Closed;
use crate::metrics::Peers;
use crate::node::{Node, side};
use crate::outbound::reset_on_close;
use mesh_runtime::shutdown::Shutdown;

/// Accepts redirected plaintext connections until shutdown.
pub(crate) async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: Shutdown) {
    mesh_runtime::listen::accept_until(listener, &shutdown, |stream, peer| handle(Arc::clone(&node), stream, peer))
        .await;
}

/// Whether `snapshot` lets plaintext from `source_ip` reach the local workload at `target`: PeerAuthentication
/// first (STRICT refuses it before any policy is read), then L4 policy with no peer identity, in one call
/// ([`Snapshot::authorize_plaintext`]).
pub(crate) fn verdict(
    node: &Node,
    snapshot: &Snapshot,
    target: SocketAddr,
    source_ip: IpAddr,
) -> Result<Allowed, Error> {
    let workload_target = local_target(node, snapshot, target)?;
    settle(&snapshot.authorize_plaintext(&workload_target, source_ip))
}

/// Records a refused connection (metrics and access log); the client gets a reset.
fn refuse(node: &Node, peers: &Peers, peer: SocketAddr, target: &dyn std::fmt::Display, error: &Error) {
    node.metrics.tcp.refused(&peers.labels(Reporter::Destination, error.response_flags()));
    let mut line = peers.access(Direction::Inbound, &peer, target);
    line.error = Some(error);
    if error.is_denial() {
        match error {
            Error::Denied { policy, reason } => {
                line.policy = policy.as_deref();
                line.reason = Some(reason);
            }
            other => line.reason = Some(other),
        }
        line.decision = Some("deny");
        line.emit("connection denied");
    } else {
        line.emit("connection failed");
    }
}

async fn handle(node: Arc<Node>, mut stream: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let unknown = Peers { mtls: false, ..Peers::default() };
    let target = match original_dst(&stream) {
        Ok(target) if Some(target) != stream.local_addr().ok() => target,
        _ => {
            refuse(&node, &unknown, peer, &"unknown", &Error::NotRedirected);
            return;
        }
    };
    // Registered before the decision: a configuration that lands from now on reaches this connection.
    let registration = node.live.register(target, None, peer.ip(), node.connections.track());
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let workload = node.local_workload(cluster, target.ip()).map(|(_, w)| w);
    let source = cluster.workload_by_ip(peer.ip()).and_then(|w| cluster.workload(w));
    let peers = Peers { source: side(source, None), destination: side(workload, None), service: None, mtls: false };
    let verdict = verdict(&node, &snapshot, target, peer.ip());
    drop(snapshot);
    let allowed = match verdict {
        Ok(allowed) => allowed,
        Err(error) => {
            refuse(&node, &peers, peer, &target, &error);
            reset_on_close(&stream);
            return;
        }
    };
    let mut upstream = match node.connect(target, Duration::from_secs(5)).await {
        Ok(u) => u,
        Err(e) => {
            refuse(&node, &peers, peer, &target, &Error::Connect { target, reason: e.to_string() });
            reset_on_close(&stream);
            return;
        }
    };
    if registration.is_closed() {
        // A configuration that arrived while the workload was being connected to refuses it.
        refuse(&node, &peers, peer, &target, &Error::Closed(Closed::Denied));
        reset_on_close(&stream);
        reset_on_close(&upstream);
        return;
    }
    let labels = peers.labels(Reporter::Destination, ResponseFlags::None);
    node.metrics.tcp.opened(&labels);
    let (received, sent, error) = tokio::select! {
        copied = copy_bidirectional(&mut stream, &mut upstream) => match copied {
            Ok((received, sent)) => (received, sent, None),
            Err(e) => (0, 0, Some(Error::Connect { target, reason: e.to_string() })),
        },
        why = registration.closed() => (0, 0, Some(Error::Closed(why))),
    };
    if error.is_some() {
        // Cut short: both ends see a reset, never a clean end.
        reset_on_close(&stream);
        reset_on_close(&upstream);
    }
    node.metrics.tcp.closed(&labels, received, sent);
    let mut line = peers.access(Direction::Inbound, &peer, &target);
    allowed.explain(&mut line);
    line.bytes_sent = received;
    line.bytes_recv = sent;
    line.duration = started.elapsed();
    line.error = error.as_ref().map(|e| e as &dyn std::fmt::Display);
    line.emit("connection complete");
}
