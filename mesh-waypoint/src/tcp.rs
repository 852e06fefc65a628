//! Plain TCP through the waypoint: the L4 attributes of the same policies (Envoy's network RBAC filter), then
//! the bytes relayed to an endpoint over its own tunnel. A denial, or a failed onward hop, closes the tunnel.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use mesh_hbone::transport::{HboneStream, relay};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::Error;
use crate::proxy::{Downstream, Proxy, access, labels};
use crate::served;
use crate::upstream::{Dial, UpstreamError};

/// The client side of a tunnel: an HBONE stream, or (Istio's sandwich binding) a plain connection from the
/// node proxy that began with a PROXY protocol header.
#[derive(Debug)]
pub(crate) enum Downlink {
    /// A CONNECT stream.
    Tunnel(HboneStream),
    /// A connection past its PROXY header.
    Proxied(TcpStream),
}

impl Downlink {
    /// Relays bytes both ways with `upstream` until both sides are done; returns how it ended and the bytes
    /// (to the client, from the client) the client side carried, `first` (read before the relay) included.
    async fn relay<U: AsyncRead + AsyncWrite + Unpin + ?Sized>(
        &mut self,
        upstream: &mut U,
        first: usize,
    ) -> (io::Result<()>, u64, u64) {
        match self {
            Downlink::Tunnel(stream) => {
                let relayed = relay(stream, upstream).await.map(drop);
                // The tunnel's own counts include the first bytes, read before the relay, and survive an error.
                let (sent, received) = stream.handle().map_or((0, 0), |h| (h.bytes_sent(), h.bytes_received()));
                (relayed, sent, received)
            }
            Downlink::Proxied(stream) => match tokio::io::copy_bidirectional(stream, upstream).await {
                Ok((from_client, to_client)) => (Ok(()), to_client, from_client + first as u64),
                Err(e) => (Err(e), 0, first as u64),
            },
        }
    }
}

impl AsyncRead for Downlink {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Downlink::Tunnel(s) => Pin::new(s).poll_read(cx, buf),
            Downlink::Proxied(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Downlink {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Downlink::Tunnel(s) => Pin::new(s).poll_write(cx, buf),
            Downlink::Proxied(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Downlink::Tunnel(s) => Pin::new(s).poll_flush(cx),
            Downlink::Proxied(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Downlink::Tunnel(s) => Pin::new(s).poll_shutdown(cx),
            Downlink::Proxied(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Serves a TCP tunnel whose first bytes, already read, are `first`. The policy is checked against the
/// endpoint the bytes then go to: `pinned` (the one a check before the tunnel opened chose) while it is still
/// an endpoint, else the next.
pub(crate) async fn serve(
    proxy: Arc<Proxy>,
    down: Arc<Downstream>,
    mut stream: Downlink,
    first: Bytes,
    pinned: Option<(std::net::IpAddr, u16)>,
) {
    let started = Instant::now();
    let decided = {
        let snapshot = proxy.state.snapshot();
        served::resolve(&snapshot, &proxy.gateway, down.authority).map(|served| {
            let ep = served.pick_pinned(&proxy.next_endpoint, pinned);
            let decision = snapshot.authorize_tcp_at_waypoint(&down.connection(served.target(&ep)));
            let endpoint = (Dial::from(&ep), SocketAddr::new(ep.ip, ep.port));
            (decision, endpoint, labels(&snapshot, &down, &served, &ep, "tcp"))
        })
    };
    let (decision, endpoint, labels) = match decided {
        Ok(d) => d,
        Err(why) => {
            let error = Error::NotServed(why.to_string());
            let mut line = access(&down, None);
            line.error = Some(&error);
            line.emit("connection failed");
            return;
        }
    };
    let policy = decision.policy.as_ref().map(ToString::to_string);
    let log = |error: Option<&Error>, sent: u64, received: u64| {
        let mut line = access(&down, Some(&endpoint));
        line.decision = Some(if decision.allowed { "allow" } else { "deny" });
        line.policy = policy.as_deref();
        line.reason = Some(&decision);
        line.bytes_sent = received;
        line.bytes_recv = sent;
        line.duration = started.elapsed();
        line.error = error.map(|e| e as &dyn std::fmt::Display);
        let message = match error {
            None => "connection complete",
            Some(e) if e.response_flags() == mesh_runtime::metrics::ResponseFlags::Denied => "connection denied",
            Some(_) => "connection failed",
        };
        line.emit(message);
    };
    let refused = |error: Error| {
        proxy.metrics.tcp.refused(&labels.clone().with_flags(error.response_flags()));
        log(Some(&error), 0, first.len() as u64);
    };
    if !decision.allowed {
        refused(Error::Denied { reason: decision.to_string(), policy: policy.clone() });
        return;
    }
    let mut upstream = match proxy.upstreams.connect(&endpoint.0, down.source_ip).await {
        Ok(io) => io,
        Err(e) => {
            refused(upstream_error(&e));
            return;
        }
    };
    if !first.is_empty()
        && let Err(e) = upstream.write_all(&first).await
    {
        refused(Error::UpstreamReset(e.to_string()));
        return;
    }
    proxy.metrics.tcp.opened(&labels);
    let (relayed, sent, received) = stream.relay(&mut upstream, first.len()).await;
    proxy.metrics.tcp.closed(&labels, received, sent);
    let error = relayed.err().map(|e| Error::UpstreamReset(e.to_string()));
    log(error.as_ref(), sent, received);
}

/// The error of a failed onward hop.
pub(crate) fn upstream_error(e: &UpstreamError) -> Error {
    match e {
        UpstreamError::Refused { .. } => Error::UpstreamRefused(e.to_string()),
        UpstreamError::Failed { .. } => Error::UpstreamFailed(e.to_string()),
    }
}
