//! The transparent outbound listener (15001): connections a local workload made to any address, redirected
//! here by iptables (`REDIRECT` or `TPROXY`); the original destination is read from `SO_ORIGINAL_DST` (or,
//! with TPROXY, is the local address of the accepted socket).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mesh_hbone::transport::original_dst;
use tokio::net::{TcpListener, TcpStream};

use crate::node::Node;
use crate::outbound::{self, Dialled};
use mesh_runtime::shutdown::Shutdown;

/// Accepts redirected outbound connections until shutdown. The source workload is the one whose address the
/// connection comes from; on a Pod's own listener (in-pod mode, `pod`) it is that Pod, whichever of its
/// interfaces the connection left from.
pub(crate) async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: Shutdown, pod: Option<String>) {
    // A connection that reaches the listener's own port was not redirected.
    let own_port = listener.local_addr().map_or(0, |a| a.port());
    mesh_runtime::listen::accept_until(listener, &shutdown, |stream, peer| {
        let source_ip = pod.as_deref().and_then(|uid| node.pods.address(uid)).unwrap_or(peer.ip());
        handle(Arc::clone(&node), stream, peer, source_ip, own_port)
    })
    .await;
}

async fn handle(node: Arc<Node>, stream: TcpStream, peer: SocketAddr, source_ip: IpAddr, own_port: u16) {
    // REDIRECT: SO_ORIGINAL_DST. TPROXY: the socket's own local address is the destination.
    let redirected = |a: &SocketAddr| a.port() != own_port;
    let target = original_dst(&stream).ok().filter(redirected).or_else(|| stream.local_addr().ok().filter(redirected));
    let Some(target) = target else {
        let error = crate::Error::NotRedirected;
        let mut line = mesh_runtime::access::AccessLog::new(
            mesh_runtime::access::Direction::Outbound,
            mesh_runtime::access::Peer { addr: Some(&peer), ..Default::default() },
            mesh_runtime::access::Peer::default(),
        );
        line.error = Some(&error);
        line.emit("connection failed");
        return;
    };
    outbound::proxy(node, stream, source_ip, Dialled::Addr(target), |result, stream: TcpStream| async move {
        match result {
            Ok(()) => Some(stream),
            Err(_) => {
                // Reset, so the workload sees its connection refused rather than closed.
                outbound::reset_on_close(&stream);
                None
            }
        }
    })
    .await;
}
