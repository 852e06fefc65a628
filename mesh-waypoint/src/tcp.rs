//! Plain TCP through the waypoint: the L4 attributes of the same policies (Envoy's network RBAC filter), then
//! the bytes relayed to an endpoint over its own tunnel. A denial, or a failed onward hop, closes the tunnel.

use std::sync::Arc;

use bytes::Bytes;
use mesh_hbone::transport::{HboneStream, relay};
use tokio::io::AsyncWriteExt;
use tracing::info;

use crate::proxy::{Downstream, Proxy, labels};
use crate::served;
use crate::upstream::Endpoint;

/// Serves a TCP tunnel whose first bytes, already read, are `first`. The policy is checked against the
/// endpoint the bytes then go to: `pinned` (the one a check before the tunnel opened chose) while it is still
/// an endpoint, else the next.
pub(crate) async fn serve(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    mut stream: HboneStream,
    first: Bytes,
    pinned: Option<(std::net::IpAddr, u16)>,
) {
    let decided = {
        let snapshot = proxy.state.snapshot();
        served::resolve(&snapshot, &proxy.gateway, down.authority).map(|served| {
            let ep = served.pick_pinned(&proxy.next_endpoint, pinned);
            let decision = snapshot.authorize_tcp_at_waypoint(&down.connection(served.target(&ep)));
            (decision, Endpoint::from(&ep), labels(&snapshot, &down, &served, &ep, "tcp"))
        })
    };
    let (decision, endpoint, mut labels) = match decided {
        Ok(d) => d,
        Err(why) => {
            info!(target: "access", authority = %down.authority, peer = %down.peer_id, protocol = "tcp", reason = %why, "connection not served");
            return;
        }
    };
    let log = |outcome: &str, error: Option<String>| {
        info!(
            target: "access", authority = %down.authority, peer = %down.peer_id, source = %down.source_ip,
            protocol = "tcp", endpoint = %endpoint.name, rbac = if decision.allowed { "allowed" } else { "denied" },
            policy = decision.policy.as_deref().unwrap_or("-"), rule = ?decision.rule, decision = %decision,
            upstream_error = error.as_deref().unwrap_or("-"), "{outcome}"
        );
    };
    proxy.metrics.tcp_opened(&labels);
    if !decision.allowed {
        log("connection denied", None);
        labels.response_flags = "RBAC";
        proxy.metrics.tcp_closed(&labels, 0, first.len() as u64);
        return;
    }
    let mut upstream = match proxy.upstreams.connect(&endpoint, down.source_ip).await {
        Ok(io) => io,
        Err(e) => {
            log("connection failed", Some(e.to_string()));
            labels.response_flags = "UF";
            proxy.metrics.tcp_closed(&labels, 0, first.len() as u64);
            return;
        }
    };
    if !first.is_empty()
        && let Err(e) = upstream.write_all(&first).await
    {
        log("connection failed", Some(e.to_string()));
        labels.response_flags = "UF";
        proxy.metrics.tcp_closed(&labels, 0, first.len() as u64);
        return;
    }
    log("connection", None);
    let _ = relay(&mut stream, &mut upstream).await;
    // The tunnel's own counts include the first bytes, read before the relay, and survive a relay error.
    let (sent, received) = stream.handle().map_or((0, 0), |h| (h.bytes_sent(), h.bytes_received()));
    proxy.metrics.tcp_closed(&labels, sent, received);
}
