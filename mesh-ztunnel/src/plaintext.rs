//! Inbound plaintext (15006): connections to a local workload that did not come over HBONE, redirected here
//! by iptables. PeerAuthentication decides first (STRICT refuses them before any policy is looked at), then
//! L4 policy with no peer identity.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_hbone::transport::{connect_tcp, original_dst};
use mesh_policy::MtlsMode;
use mesh_policy::proxy::Connection;
use mesh_policy::request::Destination;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tracing::info;

use crate::live::{Closer, Entry};
use crate::metrics::{Peers, ResponseFlags};
use crate::node::{Node, side};
use mesh_runtime::shutdown::Shutdown;

/// Accepts redirected plaintext connections until shutdown.
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: Shutdown) {
    mesh_runtime::listen::accept_until(listener, &shutdown, |stream, peer| {
        handle(Arc::clone(&node), stream, peer, shutdown.clone())
    })
    .await;
}

async fn handle(node: Arc<Node>, mut stream: TcpStream, peer: SocketAddr, shutdown: Shutdown) {
    let started = Instant::now();
    let target = match original_dst(&stream) {
        Ok(target) if Some(target) != stream.local_addr().ok() => target,
        _ => {
            info!(src.addr = %peer, "plaintext inbound refused: the connection was not redirected, so its destination is unknown");
            return;
        }
    };
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let Some((id, workload)) = node.local_workload(cluster, target.ip()) else {
        info!(src.addr = %peer, dst.addr = %target, "plaintext inbound refused: no workload of this node has the address");
        return;
    };
    let source = cluster.workload_by_ip(peer.ip()).and_then(|w| cluster.workload(w));
    let peers =
        Peers { source: side(source, None), destination: side(Some(workload), None), service: None, mtls: false };
    let destination = Destination {
        namespace: workload.namespace().to_owned(),
        workload_labels: workload.labels.clone(),
        ip: Some(target.ip()),
        port: Some(target.port()),
        ..Destination::default()
    };
    let mtls = snapshot.effective_mtls(&destination);
    let decision = snapshot
        .workload_target(id, target.port())
        .map(|t| snapshot.authorize_connection(&Connection::new(t).with_source_ip(peer.ip())));
    let refusal = if mtls.mode == MtlsMode::Strict {
        let by = mtls.policy.as_ref().map_or_else(|| "the mesh default".to_owned(), ToString::to_string);
        Some(format!("mTLS mode STRICT ({by}) refuses plaintext"))
    } else {
        match &decision {
            Some(d) if d.allowed => None,
            Some(d) => Some(d.to_string()),
            None => Some("no such workload port".to_owned()),
        }
    };
    if let Some(reason) = refusal {
        node.metrics.refused(&peers.labels("destination", ResponseFlags::Denied));
        info!(direction = "inbound", protocol = "plaintext", src.addr = %peer, dst.addr = %target, dst.workload = %workload.id, decision = "deny", %reason, "connection denied");
        crate::outbound::reset_on_close(&stream);
        return;
    }
    let mut upstream = match connect_tcp(target, None, Duration::from_secs(5)).await {
        Ok(u) => u,
        Err(e) => {
            info!(src.addr = %peer, dst.addr = %target, error = %e, "plaintext inbound: the workload refused the connection");
            return;
        }
    };
    let labels = peers.labels("destination", ResponseFlags::None);
    node.metrics.opened(&labels);
    let close = Arc::new(Notify::new());
    let _registration = node.live.register(Entry {
        target,
        peer: None,
        source_ip: peer.ip(),
        closer: Closer::Plain(Arc::clone(&close)),
    });
    let (received, sent) = tokio::select! {
        copied = copy_bidirectional(&mut stream, &mut upstream) => copied.unwrap_or((0, 0)),
        () = close.notified() => {
            crate::outbound::reset_on_close(&stream);
            (0, 0)
        }
        () = async { shutdown.wait().await; tokio::time::sleep(Duration::from_secs(5)).await } => (0, 0),
    };
    node.metrics.closed(&labels, received, sent);
    info!(direction = "inbound", protocol = "plaintext", src.addr = %peer, dst.addr = %target, dst.workload = %workload.id,
        decision = "allow", bytes_received = received, bytes_sent = sent, duration_ms = started.elapsed().as_millis() as u64,
        "connection closed");
}
