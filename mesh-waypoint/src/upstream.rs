//! The onward hop: a connection to the chosen endpoint, over HBONE to its node proxy with the waypoint's own
//! identity (the destination's node proxy applies its L4 policy to the waypoint, not to the client), or plain
//! TCP to an endpoint outside the mesh. The original client's address goes along in `forwarded: for=`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mesh_hbone::transport::{Destination, HboneClient, connect_tcp};
use mesh_hbone::{ConnectRequest, Forwarded};
use mesh_identity::spiffe::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite};

/// A stream to an endpoint.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// How to reach the [`Endpoint`](crate::served::Endpoint) chosen for a request or connection: its address and
/// identity, owned, so that the onward hop (and the pooled connection) outlives the snapshot it was chosen
/// from.
#[derive(Debug, Clone)]
pub(crate) struct Dial {
    /// `namespace/name` of its workload.
    pub(crate) name: String,
    /// Its workload's own name (a Pod's), as access logs give it.
    pub(crate) workload: String,
    /// Its namespace.
    pub(crate) namespace: String,
    /// Its address.
    pub(crate) ip: IpAddr,
    /// The workload port.
    pub(crate) port: u16,
    /// Its identity (`spiffe://...`) when it is in the mesh (its node proxy speaks HBONE); `None` otherwise.
    pub(crate) identity: Option<String>,
}

/// Why the onward hop failed; the client gets `503`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The endpoint's node proxy answered the CONNECT with an error: its L4 policy refused the waypoint.
    #[error(
        "the node proxy of {endpoint} ({node}) refused the waypoint's tunnel with {status}: its L4 policy does not \
         allow the waypoint's identity {waypoint} (an AuthorizationPolicy on the workload must allow it, as well \
         as the clients)"
    )]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// Its node proxy's HBONE address.
        node: SocketAddr,
        /// The status it answered.
        status: http::StatusCode,
        /// The waypoint's identity.
        waypoint: String,
    },
    /// The connection could not be made.
    #[error("connecting to {endpoint} at {address} failed: {reason}")]
    Failed {
        /// The endpoint.
        endpoint: String,
        /// Where.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// How the waypoint reaches endpoints.
#[derive(Debug)]
pub(crate) struct Upstreams {
    /// The HBONE client, with the waypoint's certificate.
    pub(crate) client: HboneClient,
    /// The waypoint's identity.
    pub(crate) identity: SpiffeId,
    /// The port node proxies accept HBONE on.
    pub(crate) hbone_port: u16,
    /// The connect timeout for plain TCP.
    pub(crate) connect_timeout: Duration,
    /// The waypoint's own address, which onward connections leave from (none: the kernel's choice).
    pub(crate) local_ip: Option<IpAddr>,
    /// HBONE to endpoints' node proxies, or plain TCP for the waypoint Pod's own node proxy to tunnel.
    pub(crate) onward: crate::Onward,
}

impl Upstreams {
    /// Connects to `endpoint` for a client at `source`.
    pub(crate) async fn connect(&self, endpoint: &Dial, source: IpAddr) -> Result<Box<dyn Io>, UpstreamError> {
        let target = SocketAddr::new(endpoint.ip, endpoint.port);
        let identity = endpoint.identity.as_ref().filter(|_| self.onward == crate::Onward::Hbone);
        let Some(identity) = identity else {
            let tcp = connect_tcp(target, self.local_ip, self.connect_timeout).await.map_err(|e| {
                UpstreamError::Failed { endpoint: endpoint.name.clone(), address: target, reason: e.to_string() }
            })?;
            return Ok(Box::new(tcp));
        };
        let node = SocketAddr::new(endpoint.ip, self.hbone_port);
        let failed = |reason: String| UpstreamError::Failed { endpoint: endpoint.name.clone(), address: node, reason };
        let expected = SpiffeId::new(identity).map_err(|e| failed(format!("endpoint identity {identity}: {e}")))?;
        let destination = Destination { address: node, identities: vec![expected] };
        let request = ConnectRequest::new(target).with_forwarded(Forwarded::for_source(source));
        match self.client.connect(&destination, request).await {
            Ok(tunnel) => Ok(Box::new(tunnel.stream)),
            Err(e) => match e.refused() {
                Some(refused) => Err(UpstreamError::Refused {
                    endpoint: endpoint.name.clone(),
                    node,
                    status: refused.status,
                    waypoint: self.identity.to_string(),
                }),
                None => Err(failed(e.to_string())),
            },
        }
    }
}
