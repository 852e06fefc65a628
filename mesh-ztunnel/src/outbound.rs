//! Outbound: a local workload's connection, from SOCKS5 or iptables capture, to where the cluster model says
//! it goes. The destination is resolved (Service VIP, host name, Pod IP) and routed: through the
//! destination's waypoint when it has one for that kind of address, else to an endpoint's node proxy, over an
//! HBONE tunnel opened with the source workload's identity. Destinations outside the mesh get plain TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_hbone::Forwarded;
use mesh_hbone::transport::{Destination, HboneStream, relay};
use mesh_hbone::{ConnectRequest, HboneAddress};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId};
use mesh_policy::cluster::{Cluster, ResolveError, Resolved, Workload};
use mesh_runtime::access::Direction;
use mesh_runtime::metrics::{Reporter, ResponseFlags};
use tokio::io::copy_bidirectional;
use tokio::net::TcpStream;

use crate::Error;
use crate::metrics::Peers;
use crate::node::{Node, side};

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dialled {
    /// An address.
    Addr(SocketAddr),
    /// A host name and port (SOCKS5 with a domain name).
    Host(String, u16),
}

impl std::fmt::Display for Dialled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dialled::Addr(a) => write!(f, "{a}"),
            Dialled::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Makes dropping `stream` send a reset rather than a FIN: a refused connection reads as refused.
pub(crate) fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Where the connection goes, decided before any byte is sent.
enum Plan {
    /// Through an HBONE tunnel.
    Hbone { destination: Destination, authority: SocketAddr },
    /// Plain TCP (outside the mesh).
    Passthrough(Dialled),
}

/// Proxies `client` (a local workload at `source_ip`) to `dialled`. `ready` is called once the upstream
/// side is open (or with the error), before any byte is relayed: SOCKS5 answers the client then.
///
/// A connection cut short (the tunnel reset by the peer, the upstream failing, the drain deadline) reaches
/// the client as a reset, never as a clean end: a cut stream must not read as a complete one.
pub(crate) async fn proxy<F, Fut>(node: Arc<Node>, mut client: TcpStream, source_ip: IpAddr, dialled: Dialled, ready: F)
where
    F: FnOnce(Result<(), u8>, TcpStream) -> Fut,
    Fut: Future<Output = Option<TcpStream>>,
{
    let started = Instant::now();
    let tracked = node.connections.track();
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let source = node.local_workload(cluster, source_ip).map(|(_, w)| w);
    let mut peers = Peers { source: side(source, None), mtls: true, ..Peers::default() };
    let planned = match source {
        None => Err(Error::UnknownSource(source_ip)),
        Some(source) => Box::pin(plan(&node, cluster, source, &dialled, &mut peers)).await,
    };
    let opened = match planned {
        Ok(Plan::Hbone { destination, authority }) => {
            let source = source.and_then(|w| IstioIdentity::parse_principal(&w.principal).ok());
            // Boxed, as every step before the relay: a tunnel's task then holds only the relay's state.
            Box::pin(open_tunnel(
                &node,
                source.as_ref().map(IstioIdentity::spiffe_id),
                &destination,
                authority,
                source_ip,
            ))
            .await
            .map(|t| (Upstream::Tunnel(Box::new(t)), destination.address.to_string(), Some(authority)))
        }
        Ok(Plan::Passthrough(target)) => {
            peers.mtls = false;
            Box::pin(passthrough(&node, &target, source_ip))
                .await
                .map(|s| (Upstream::Plain(s), target.to_string(), None))
        }
        Err(e) => Err(e),
    };
    let (mut upstream, peer_addr, authority) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            node.metrics.tcp.refused(&peers.labels(Reporter::Source, e.response_flags()));
            {
                let mut line = peers.access(Direction::Outbound, &source_ip, &dialled);
                line.error = Some(&e);
                if e.is_denial() {
                    line.decision = Some("deny");
                    line.emit("connection denied");
                } else {
                    line.emit("connection failed");
                }
            }
            let _ = Box::pin(ready(Err(e.socks5_reply()), client)).await;
            return;
        }
    };
    // A long connection must not keep an old configuration alive.
    drop(snapshot);
    let Some(client_back) = Box::pin(ready(Ok(()), client)).await else { return };
    client = client_back;
    let labels = peers.labels(Reporter::Source, ResponseFlags::None);
    node.metrics.tcp.opened(&labels);
    let relayed = async {
        match &mut upstream {
            Upstream::Tunnel(tunnel) => {
                relay(tunnel, &mut client).await.map(|(from_peer, to_peer)| (to_peer, from_peer))
            }
            Upstream::Plain(stream) => copy_bidirectional(&mut client, stream).await,
        }
    };
    let result = tokio::select! {
        result = relayed => result,
        () = tracked.closing() => Err(std::io::Error::other(crate::Closed::Drained.as_str())),
    };
    let (received, sent) = match (&result, &upstream) {
        (Ok(moved), _) => *moved,
        (Err(_), Upstream::Tunnel(tunnel)) => tunnel.handle().map_or((0, 0), |h| (h.bytes_sent(), h.bytes_received())),
        (Err(_), Upstream::Plain(_)) => (0, 0),
    };
    if result.is_err() {
        // Cut short: the client sees a reset; dropping the tunnel resets it at the far end too.
        reset_on_close(&client);
        if let Upstream::Plain(stream) = &upstream {
            reset_on_close(stream);
        }
    }
    node.metrics.tcp.closed(&labels, received, sent);
    let mut line = peers.access(Direction::Outbound, &source_ip, &peer_addr);
    line.hbone_addr = authority.as_ref().map(|a| a as &dyn std::fmt::Display);
    line.bytes_sent = received;
    line.bytes_recv = sent;
    line.duration = started.elapsed();
    line.error = result.as_ref().err().map(|e| e as &dyn std::fmt::Display);
    line.emit("connection complete");
}

enum Upstream {
    Tunnel(Box<HboneStream>),
    Plain(TcpStream),
}

async fn plan(
    node: &Node,
    cluster: &Cluster,
    source: &Workload,
    dialled: &Dialled,
    peers: &mut Peers,
) -> Result<Plan, Error> {
    let resolved = match dialled {
        Dialled::Addr(addr) => cluster.resolve_addr(*addr),
        Dialled::Host(host, port) => cluster.resolve(&format!("{host}:{port}"), Some(source.namespace())),
    };
    let resolved = match resolved {
        Ok(r) => r,
        // Not in the model: outside the mesh.
        Err(ResolveError::UnknownAddress(_) | ResolveError::UnknownHost(_)) => {
            return Ok(Plan::Passthrough(dialled.clone()));
        }
        Err(e) => return Err(Error::Unreachable(e.to_string())),
    };
    let route = cluster.route(resolved, Some(source)).map_err(|e| Error::Unreachable(e.to_string()))?;
    if let Some(s) = route.service {
        peers.service = Some((
            s.hosts.first().cloned().unwrap_or_else(|| s.id.name().to_owned()),
            s.id.name().to_owned(),
            s.id.namespace().to_owned(),
        ));
    }
    // The address the tunnel is for: what the client dialled, with a host name replaced by the service VIP.
    let dialled_addr = match (dialled, resolved) {
        (Dialled::Addr(a), _) => Some(*a),
        (Dialled::Host(..), Resolved::Service { port, .. }) => {
            route.service.and_then(|s| s.vips.first()).map(|v| SocketAddr::new(v.addr(), port))
        }
        (Dialled::Host(..), _) => None,
    };
    if let Some(waypoint) = route.waypoint {
        let ip = waypoint
            .workloads
            .iter()
            .find_map(|&w| cluster.workload(w)?.ips.first().copied())
            .or_else(|| waypoint.addresses.first().copied())
            .ok_or_else(|| Error::Unreachable(format!("waypoint {} has no address", waypoint.id)))?;
        let authority = match dialled_addr {
            Some(a) => a,
            None => route
                .endpoints
                .first()
                .and_then(|&(w, port)| Some(SocketAddr::new(*cluster.workload(w)?.ips.first()?, port)))
                .ok_or_else(|| Error::Unreachable(format!("{dialled} has no address to send to the waypoint")))?,
        };
        peers.destination.principal = Some(format!("spiffe://{}", waypoint.principal));
        return Ok(Plan::Hbone {
            destination: Destination {
                address: SocketAddr::new(ip, node.hbone_port()),
                identities: spiffe(&waypoint.principal),
            },
            authority,
        });
    }
    if route.endpoints.is_empty() {
        // A ServiceEntry outside the mesh with no waypoint.
        return Ok(Plan::Passthrough(dialled.clone()));
    }
    let (endpoint, port) = route.endpoints[node.pick(route.endpoints.len())];
    let w = cluster.workload(endpoint).ok_or_else(|| Error::Unreachable("endpoint vanished".into()))?;
    let ip = *w.ips.first().ok_or_else(|| Error::Unreachable(format!("{} has no IP", w.id)))?;
    peers.destination = side(Some(w), None);
    if !w.enrolled {
        return Ok(Plan::Passthrough(Dialled::Addr(SocketAddr::new(ip, port))));
    }
    Ok(Plan::Hbone {
        destination: Destination { address: SocketAddr::new(ip, node.hbone_port()), identities: spiffe(&w.principal) },
        authority: SocketAddr::new(ip, port),
    })
}

fn spiffe(principal: &str) -> Vec<SpiffeId> {
    IstioIdentity::parse_principal(principal).map(|i| vec![i.spiffe_id().clone()]).unwrap_or_default()
}

/// How long a workload's connection waits for a certificate still being asked of the CA.
const CERTIFICATE_WAIT: Duration = Duration::from_secs(5);

async fn open_tunnel(
    node: &Node,
    source: Option<&SpiffeId>,
    destination: &Destination,
    authority: SocketAddr,
    source_ip: IpAddr,
) -> Result<HboneStream, Error> {
    let source = source.ok_or(Error::UnknownSource(source_ip))?;
    // A workload's first connection may come before its certificate does (a remote CA answers in the
    // background): it waits for it a little, as Istio's ztunnel does, rather than failing at once.
    node.pki.wait_for(source, CERTIFICATE_WAIT).await;
    let request = ConnectRequest::new(HboneAddress::from(authority)).with_forwarded(Forwarded::for_source(source_ip));
    match node.client.connect_as(source, destination, request).await {
        Ok(tunnel) => Ok(tunnel.stream),
        Err(e) => {
            let denied = e.refused().is_some_and(|r| r.status == http::StatusCode::UNAUTHORIZED);
            match e.refused() {
                Some(_) => Err(Error::Refused { peer: destination.address.to_string(), reason: e.to_string(), denied }),
                None => Err(Error::Unreachable(e.to_string())),
            }
        }
    }
}

async fn passthrough(node: &Node, target: &Dialled, source_ip: IpAddr) -> Result<TcpStream, Error> {
    let addr = match target {
        Dialled::Addr(a) => *a,
        Dialled::Host(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Error::Unreachable(format!("{host} does not resolve")))?,
    };
    node.connect_from(Some(source_ip), addr, Duration::from_secs(10))
        .await
        .map_err(|e| Error::Connect { target: addr, reason: e.to_string() })
}
