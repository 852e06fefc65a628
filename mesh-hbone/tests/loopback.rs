//! HBONE over real loopback TCP: an HBONE server whose handler connects to a local TCP echo server, and a
//! client that tunnels bytes through it. Certificates come from a `LocalCa`, valid now (rustls checks them
//! against the system clock).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use mesh_hbone::status::{InboundRules, RejectionKind};
use mesh_hbone::transport::{ClientError, Destination, HboneClient, HboneServer, InboundRequest};
use mesh_hbone::{Baggage, ConnectRequest, Forwarded, HboneAddress, Rejection, WorkloadKind};
use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::tls::WorkloadCertificate;
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DAY: Duration = Duration::from_secs(86_400);
/// The handler's authorization policy denies tunnels to this port.
const DENIED_PORT: u16 = 9999;

struct Mesh {
    ca: LocalCa,
    bundles: Arc<TrustBundleSet>,
}

impl Mesh {
    fn new() -> Self {
        let now = UnixTime::now();
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = LocalCa::new_root(td, &CaOptions::default(), now).unwrap();
        let bundles = Arc::new([ca.trust_bundle().clone()].into_iter().collect());
        Mesh { ca, bundles }
    }

    fn workload(&self, sa: &str) -> WorkloadCertificate {
        let id = IstioIdentity::new(self.ca.trust_domain(), "default", sa).unwrap();
        let svid = self.ca.issue(&id, DAY, UnixTime::now()).unwrap();
        WorkloadCertificate::from_pem(&svid.cert_chain_pem(), &svid.private_key_pem().unwrap()).unwrap()
    }

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new(&format!("spiffe://cluster.local/ns/default/sa/{sa}")).unwrap()
    }
}

/// A TCP echo server on loopback.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// The handler: deny [`DENIED_PORT`], otherwise connect to the target.
async fn handler(request: InboundRequest) -> Result<TcpStream, Rejection> {
    assert_eq!(request.peer, Mesh::id("client"));
    if request.target.port() == DENIED_PORT {
        return Err(Rejection::Denied { reason: "default/deny-9999: DENY rule 0 matched".into() });
    }
    TcpStream::connect(request.target)
        .await
        .map_err(|e| Rejection::UpstreamConnect { target: request.target, reason: e.to_string() })
}

/// An HBONE server on loopback.
async fn hbone_server(mesh: &Mesh) -> SocketAddr {
    let own = mesh.workload("server");
    let destination_baggage = Baggage {
        namespace: Some("default".into()),
        workload: Some((WorkloadKind::Deployment, "echo".into())),
        ..Baggage::default()
    };
    let server = HboneServer::new(&own, Arc::clone(&mesh.bundles), [mesh.ca.trust_domain().clone()])
        .unwrap()
        .with_rules(InboundRules::default())
        .with_baggage(destination_baggage);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, handler).await });
    addr
}

struct Setup {
    mesh: Mesh,
    echo: SocketAddr,
    hbone: SocketAddr,
    client: HboneClient,
}

async fn setup() -> Setup {
    let mesh = Mesh::new();
    let echo = echo_server().await;
    let hbone = hbone_server(&mesh).await;
    let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
    Setup { mesh, echo, hbone, client }
}

fn destination(hbone: SocketAddr, sa: &str) -> Destination {
    Destination { address: hbone, identities: vec![Mesh::id(sa)] }
}

fn request(target: SocketAddr) -> ConnectRequest {
    ConnectRequest::new(target).with_forwarded(Forwarded::for_source("127.0.0.1:40000".parse::<SocketAddr>().unwrap()))
}

/// Writes `data` while reading the echo, then half-closes and reads to the end.
async fn round_trip(stream: mesh_hbone::transport::HboneStream, data: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let reader = async move {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) = tokio::join!(writer, reader);
    back
}

async fn with_timeout<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("test timed out")
}

#[tokio::test]
async fn tunnels_bytes_through_and_back() {
    with_timeout(async {
        let s = setup().await;
        let tunnel = s.client.connect(&destination(s.hbone, "server"), request(s.echo)).await.unwrap();
        assert_eq!(tunnel.peer, Mesh::id("server"));
        let baggage = tunnel.peer_baggage.clone().unwrap();
        assert_eq!(baggage.workload, Some((WorkloadKind::Deployment, "echo".into())));
        // More than a stream window (4 MiB), so flow control has to turn over.
        let data: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let back = round_trip(tunnel.stream, data.clone()).await;
        assert_eq!(back.len(), data.len());
        assert!(back == data);
    })
    .await;
}

#[tokio::test]
async fn tunnels_share_a_pooled_connection() {
    with_timeout(async {
        let s = setup().await;
        let dest = destination(s.hbone, "server");
        let (a, b) = tokio::join!(s.client.connect(&dest, request(s.echo)), s.client.connect(&dest, request(s.echo)));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.connection, b.connection, "the second checkout joined the connection being established");
        assert_eq!(s.client.pooled_connections(), 1);
        let (x, y) = tokio::join!(round_trip(a.stream, b"first".to_vec()), round_trip(b.stream, b"second".to_vec()));
        assert_eq!((x.as_slice(), y.as_slice()), (&b"first"[..], &b"second"[..]));
        let c = s.client.connect(&dest, request(s.echo)).await.unwrap();
        assert_eq!(c.connection, a.connection, "reused after the first two closed");
    })
    .await;
}

#[tokio::test]
async fn policy_denial_is_401_at_the_client() {
    with_timeout(async {
        let s = setup().await;
        let target: SocketAddr = format!("127.0.0.1:{DENIED_PORT}").parse().unwrap();
        let error = s.client.connect(&destination(s.hbone, "server"), request(target)).await.unwrap_err();
        let refused = error.refused().copied().unwrap_or_else(|| panic!("expected a refusal, got {error}"));
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.kind, Some(RejectionKind::Unauthorized));
    })
    .await;
}

#[tokio::test]
async fn server_rules_give_400_and_503() {
    with_timeout(async {
        let s = setup().await;
        let dest = destination(s.hbone, "server");
        let status = |result: Result<_, ClientError>| result.unwrap_err().refused().map(|r| r.status);
        // The authority names an IP other than the one dialled.
        let elsewhere: SocketAddr = "127.0.0.2:80".parse().unwrap();
        assert_eq!(status(s.client.connect(&dest, request(elsewhere)).await), Some(StatusCode::BAD_REQUEST));
        // A proxy port: a self-call.
        let own_port: SocketAddr = "127.0.0.1:15008".parse().unwrap();
        assert_eq!(status(s.client.connect(&dest, request(own_port)).await), Some(StatusCode::SERVICE_UNAVAILABLE));
        // Nothing listens upstream.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        assert_eq!(status(s.client.connect(&dest, request(closed)).await), Some(StatusCode::SERVICE_UNAVAILABLE));
        // An unknown hostname.
        let host = ConnectRequest::new(HboneAddress::host("nowhere.default.svc.cluster.local", 80).unwrap());
        assert_eq!(status(s.client.connect(&dest, host).await), Some(StatusCode::SERVICE_UNAVAILABLE));
        // The connection survived every refusal.
        let tunnel = s.client.connect(&dest, request(s.echo)).await.unwrap();
        assert_eq!(round_trip(tunnel.stream, b"still here".to_vec()).await, b"still here");
    })
    .await;
}

#[tokio::test]
async fn wrong_server_identity_fails_the_handshake() {
    with_timeout(async {
        let s = setup().await;
        let error = s.client.connect(&destination(s.hbone, "not-the-server"), request(s.echo)).await.unwrap_err();
        assert!(matches!(error, ClientError::Handshake { .. }), "{error}");
        assert!(error.to_string().contains("spiffe://cluster.local/ns/default/sa/server"), "{error}");
        assert_eq!(s.client.pooled_connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn clients_from_another_ca_are_refused() {
    with_timeout(async {
        let s = setup().await;
        let stranger = Mesh::new();
        // Trusts the real server's CA, but presents a certificate the server's CA never issued.
        let bundles = Arc::new([s.mesh.ca.trust_bundle().clone()].into_iter().collect());
        let client = HboneClient::new(stranger.workload("client"), bundles);
        let error = client.connect(&destination(s.hbone, "server"), request(s.echo)).await.unwrap_err();
        assert!(
            matches!(error, ClientError::Handshake { .. } | ClientError::H2 { .. }),
            "the server must reject the client certificate: {error}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_abandoned_dial_leaves_the_pool() {
    with_timeout(async {
        let s = setup().await;
        // Accepts TCP but never answers the TLS handshake.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(silent.accept().await.unwrap().0);
            }
        });
        let dest = destination(silent_addr, "server");
        let attempt = tokio::time::timeout(Duration::from_millis(200), s.client.connect(&dest, request(s.echo))).await;
        assert!(attempt.is_err(), "the handshake cannot finish");
        assert_eq!(s.client.pooled_connections(), 0, "the cancelled dial must not stay pending");
    })
    .await;
}
