//! What a node proxy and a waypoint compose from the transport: certificates from a `CertificateStore` chosen
//! per dialled address, waypoint-style targets, handlers that serve inside the tunnel, and tunnel handles.
//! Real certificates from a `LocalCa`, real sockets on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};

use mesh_hbone::transport::{ClientError, Destination, HboneClient, HboneServer, InboundRequest, WorkloadIdentities};
use mesh_hbone::{ConnectRequest, Rejection};
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::rotation::Jitter;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::store::CertificateStore;
use rustls_pki_types::UnixTime;
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::{echo_server, pattern, round_trip, with_timeout};

/// A CA and a store holding certificates it issued.
struct Node {
    ca: LocalCa,
    store: CertificateStore,
}

impl Node {
    fn new() -> Self {
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = LocalCa::new_root(td, &CaOptions::default(), UnixTime::now()).unwrap();
        let store = CertificateStore::new([ca.trust_bundle().clone()].into_iter().collect());
        Node { ca, store }
    }

    fn td(&self) -> TrustDomain {
        self.ca.trust_domain().clone()
    }

    /// Issues and stores a certificate for service account `sa`; returns its SPIFFE ID.
    fn workload(&self, sa: &str) -> SpiffeId {
        let id = IstioIdentity::new(self.ca.trust_domain(), "default", sa).unwrap();
        self.store.issue(&self.ca, &id, UnixTime::now(), Jitter::None).unwrap();
        id.spiffe_id().clone()
    }
}

async fn connect_upstream(target: SocketAddr) -> Result<TcpStream, Rejection> {
    TcpStream::connect(target).await.map_err(|e| Rejection::UpstreamConnect { target, reason: e.to_string() })
}

/// A node proxy answers at 127.0.0.2 and 127.0.0.3 (one listener each, one server), each IP with its own
/// workload's certificate; 127.0.0.4, where it has no workload, is refused before TLS.
#[tokio::test]
async fn each_workload_ip_presents_its_own_certificate() {
    with_timeout(async {
        let node = Node::new();
        let (reviews, ratings) = (node.workload("reviews"), node.workload("ratings"));
        let identities = WorkloadIdentities::new(node.store.clone(), [node.td()]).unwrap();
        let (ip2, ip3, ip4): (IpAddr, IpAddr, IpAddr) =
            ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap(), "127.0.0.4".parse().unwrap());
        identities.insert(ip2, &reviews).unwrap();
        identities.insert(ip3, &ratings).unwrap();
        assert_eq!(identities.identity(ip3), Some(ratings.clone()));
        let server = HboneServer::with_identity(identities.clone());
        let echo = echo_server().await;
        // Each workload's application is the one echo server on 127.0.0.1.
        let handler = move |request: InboundRequest| async move {
            assert_eq!(request.target.ip(), request.dialled.ip(), "a node proxy's target is the dialled IP");
            connect_upstream(SocketAddr::new(echo.ip(), request.target.port())).await
        };
        let mut addrs = Vec::new();
        for ip in [ip2, ip3, ip4] {
            let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let server = server.clone();
            tokio::spawn(async move { server.serve(listener, handler).await });
        }
        let client_id = node.workload("client");
        let client = HboneClient::from_store(node.store.clone(), client_id);
        let echo_at = |hbone: SocketAddr| SocketAddr::new(hbone.ip(), echo.port());
        for (hbone, expected) in [(addrs[0], &reviews), (addrs[1], &ratings)] {
            let dest = Destination { address: hbone, identities: vec![expected.clone()] };
            let tunnel = client.connect(&dest, ConnectRequest::new(echo_at(hbone))).await.unwrap();
            assert_eq!(&tunnel.peer, expected);
            assert_eq!(round_trip(tunnel.stream, pattern(1000)).await, pattern(1000));
        }
        // A source identity the store has no certificate for: refused before dialling.
        let stranger = IstioIdentity::new(&node.td(), "default", "stranger").unwrap().spiffe_id().clone();
        let dest = Destination { address: addrs[0], identities: vec![reviews.clone()] };
        let error = client.connect_as(&stranger, &dest, ConnectRequest::new(echo_at(addrs[0]))).await.unwrap_err();
        assert!(matches!(error, ClientError::NoCertificate { .. }), "{error}");
        // At 127.0.0.2, expecting the workload of 127.0.0.3 fails the handshake: the certificate is reviews'.
        let wrong = Destination { address: addrs[0], identities: vec![ratings.clone()] };
        let error = client.connect(&wrong, ConnectRequest::new(echo_at(addrs[0]))).await.unwrap_err();
        assert!(matches!(error, ClientError::Handshake { .. }), "{error}");
        // No workload at 127.0.0.4: the connection is closed before any TLS.
        let none = Destination { address: addrs[2], identities: vec![reviews.clone()] };
        let error = client.connect(&none, ConnectRequest::new(echo_at(addrs[2]))).await.unwrap_err();
        assert!(matches!(error, ClientError::Handshake { .. }), "{error}");
        // A workload leaving: its IP is refused from then on.
        assert_eq!(identities.remove(ip3), Some(ratings.clone()));
        let gone = Destination { address: addrs[1], identities: vec![ratings.clone()] };
        let client = HboneClient::from_store(node.store.clone(), node.workload("other"));
        assert!(client.connect(&gone, ConnectRequest::new(echo_at(addrs[1]))).await.is_err());
    })
    .await;
}
