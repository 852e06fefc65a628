//! Double HBONE over loopback: a client reaches a destination on "another network" through a gateway. The
//! gateway terminates the outer tunnel and forwards its bytes to the destination's HBONE port; the client's
//! second mTLS handshake and CONNECT run end to end with the destination, inside the outer tunnel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use mesh_hbone::double::{DoubleHbonePlan, DoubleHboneTarget};
use mesh_hbone::status::InboundRules;
use mesh_hbone::transport::{ClientError, HboneClient, HboneServer, InboundRequest, connect_tcp};
use mesh_hbone::{HboneAddress, Rejection};
use mesh_identity::spiffe::SpiffeId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

mod common;

use common::{Mesh, echo_server, pattern, round_trip, with_timeout};

const HOST: &str = "reviews.default.svc.cluster.local";
const SERVICE_PORT: u16 = 9080;
/// The destination's handler denies tunnels from this network.
const DENIED_NETWORK: &str = "network-denied";

/// What a server's handler saw.
#[derive(Debug)]
struct Seen {
    peer: SpiffeId,
    authority: HboneAddress,
    origin_network: Option<String>,
}

fn seen(request: &InboundRequest) -> Seen {
    Seen {
        peer: request.peer.clone(),
        authority: request.request.authority.clone(),
        origin_network: request.request.origin_network.clone(),
    }
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

struct Networks {
    mesh: Mesh,
    gateway: SocketAddr,
    client: HboneClient,
    at_gateway: mpsc::UnboundedReceiver<Seen>,
    at_destination: mpsc::UnboundedReceiver<Seen>,
}

/// The destination's HBONE server (serving `HOST:SERVICE_PORT` from a local echo server) and a gateway
/// that forwards tunnels for `HOST` to it.
async fn networks() -> Networks {
    let mesh = Mesh::new();
    let td = mesh.ca.trust_domain().clone();
    let echo = echo_server().await;

    let (destination_tx, at_destination) = mpsc::unbounded_channel();
    let destination = HboneServer::new(&mesh.workload("reviews"), Arc::clone(&mesh.bundles), [td.clone()])
        .unwrap()
        .with_rules(InboundRules::default().with_service(HOST, SERVICE_PORT, echo.port()));
    let (listener, destination_addr) = listen().await;
    tokio::spawn(async move {
        destination
            .serve(listener, move |request: InboundRequest| {
                let tx = destination_tx.clone();
                async move {
                    let _ = tx.send(seen(&request));
                    if request.request.origin_network.as_deref() == Some(DENIED_NETWORK) {
                        return Err(Rejection::Denied { reason: "default/deny-remote: DENY rule 0 matched".into() });
                    }
                    connect_tcp(request.target, None, Duration::from_secs(5))
                        .await
                        .map_err(|e| Rejection::UpstreamConnect { target: request.target, reason: e.to_string() })
                }
            })
            .await
    });

    // The gateway knows HOST:SERVICE_PORT lives behind the destination's HBONE address; it forwards the outer
    // tunnel's bytes there as they are, without terminating the inner mTLS.
    let (gateway_tx, at_gateway) = mpsc::unbounded_channel();
    let gateway = HboneServer::new(&mesh.workload("eastwest"), Arc::clone(&mesh.bundles), [td])
        .unwrap()
        .with_rules(InboundRules::default().with_service(HOST, SERVICE_PORT, SERVICE_PORT));
    let (listener, gateway_addr) = listen().await;
    tokio::spawn(async move {
        gateway
            .serve(listener, move |request: InboundRequest| {
                let tx = gateway_tx.clone();
                async move {
                    let _ = tx.send(seen(&request));
                    TcpStream::connect(destination_addr)
                        .await
                        .map_err(|e| Rejection::UpstreamConnect { target: destination_addr, reason: e.to_string() })
                }
            })
            .await
    });

    let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
    Networks { mesh, gateway: gateway_addr, client, at_gateway, at_destination }
}

fn plan(gateway: SocketAddr, host: &str, destination_sa: &str, network: &str) -> DoubleHbonePlan {
    let target = DoubleHboneTarget {
        gateway,
        gateway_identities: vec![Mesh::id("eastwest")],
        host: host.into(),
        port: SERVICE_PORT,
        destination_identities: vec![Mesh::id(destination_sa)],
        source_network: network.into(),
    };
    DoubleHbonePlan::new(target, None, None, None).unwrap()
}

#[tokio::test]
async fn tunnels_through_the_gateway_end_to_end() {
    with_timeout(async {
        let mut n = networks().await;
        let tunnel = n.client.connect_double(&plan(n.gateway, HOST, "reviews", "network-a")).await.unwrap();
        assert_eq!(tunnel.peer, Mesh::id("reviews"), "the inner handshake was with the destination");
        assert_eq!(tunnel.gateway, Some(Mesh::id("eastwest")));
        // Larger than a stream window, so flow control turns over on both tunnels.
        let data = pattern(5 * 1024 * 1024);
        let back = round_trip(tunnel.stream, data.clone()).await;
        assert!(back == data, "{} bytes came back for {}", back.len(), data.len());

        let at_gateway = n.at_gateway.recv().await.unwrap();
        assert_eq!(at_gateway.peer, Mesh::id("client"));
        assert_eq!(at_gateway.authority, HboneAddress::host(HOST, SERVICE_PORT).unwrap());
        assert_eq!(at_gateway.origin_network, None, "only the inner CONNECT names the source network");
        let at_destination = n.at_destination.recv().await.unwrap();
        assert_eq!(at_destination.peer, Mesh::id("client"), "the destination sees the client, not the gateway");
        assert_eq!(at_destination.authority, HboneAddress::host(HOST, SERVICE_PORT).unwrap());
        assert_eq!(at_destination.origin_network.as_deref(), Some("network-a"));
    })
    .await;
}

#[tokio::test]
async fn the_outer_connection_to_the_gateway_is_pooled() {
    with_timeout(async {
        let n = networks().await;
        let plan = plan(n.gateway, HOST, "reviews", "network-a");
        let (a, b) = tokio::join!(n.client.connect_double(&plan), n.client.connect_double(&plan));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.connection, b.connection, "both inner connections ride one pooled gateway connection");
        assert_eq!(n.client.pooled_connections(), 1);
        let (x, y) = tokio::join!(round_trip(a.stream, b"first".to_vec()), round_trip(b.stream, b"second".to_vec()));
        assert_eq!((x.as_slice(), y.as_slice()), (&b"first"[..], &b"second"[..]));
    })
    .await;
}

#[tokio::test]
async fn the_destination_identity_is_verified_through_the_gateway() {
    with_timeout(async {
        let n = networks().await;
        let error = n.client.connect_double(&plan(n.gateway, HOST, "ratings", "network-a")).await.unwrap_err();
        let ClientError::Inner { source, gateway, destination } = &error else {
            panic!("expected an inner-hop error, got {error}");
        };
        assert!(matches!(**source, ClientError::Handshake { .. }), "{error}");
        assert_eq!(*gateway, n.gateway);
        assert_eq!(destination, &format!("{HOST}:{SERVICE_PORT}"));
        assert!(error.to_string().contains("spiffe://cluster.local/ns/default/sa/reviews"), "{error}");
    })
    .await;
}

#[tokio::test]
async fn refusals_say_which_hop_refused() {
    with_timeout(async {
        let n = networks().await;
        // The destination's policy denies the source network: 401 on the inner CONNECT.
        let error = n.client.connect_double(&plan(n.gateway, HOST, "reviews", DENIED_NETWORK)).await.unwrap_err();
        assert!(matches!(error, ClientError::Inner { .. }), "{error}");
        assert_eq!(error.refused().map(|r| r.status), Some(StatusCode::UNAUTHORIZED));
        // The gateway serves no such host: 503 on the outer CONNECT.
        let error = n
            .client
            .connect_double(&plan(n.gateway, "ratings.default.svc.cluster.local", "reviews", "network-a"))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Refused(_)), "{error}");
        assert_eq!(error.refused().map(|r| r.status), Some(StatusCode::SERVICE_UNAVAILABLE));
        // The gateway's identity is checked on the outer hop.
        let mut wrong_gateway = plan(n.gateway, HOST, "reviews", "network-a");
        wrong_gateway.outer.expected_identities = vec![Mesh::id("reviews")];
        let error = n.client.connect_double(&wrong_gateway).await.unwrap_err();
        assert!(matches!(error, ClientError::Handshake { .. }), "{error}");
        let _ = &n.mesh;
    })
    .await;
}
