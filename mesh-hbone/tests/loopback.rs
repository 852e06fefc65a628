//! HBONE over real loopback TCP: an HBONE server whose handler connects to a local TCP echo server, and a
//! client that tunnels bytes through it. Certificates come from a `LocalCa`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use mesh_hbone::pool::PoolConfig;
use mesh_hbone::status::{InboundRules, RejectionKind};
use mesh_hbone::transport::{
    ClientConfig, ClientError, Destination, Drained, HboneClient, HboneServer, InboundRequest, ServerLimits,
    connect_tcp, relay,
};
use mesh_hbone::{Baggage, ConnectRequest, Forwarded, H2Settings, HboneAddress, Rejection, WorkloadKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::{Mesh, echo_server, pattern, round_trip, with_timeout};

/// The handler's authorization policy denies tunnels to this port.
const DENIED_PORT: u16 = 9999;

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

#[tokio::test]
async fn tunnels_bytes_through_and_back() {
    with_timeout(async {
        let s = setup().await;
        let tunnel = s.client.connect(&destination(s.hbone, "server"), request(s.echo)).await.unwrap();
        assert_eq!(tunnel.peer, Mesh::id("server"));
        let baggage = tunnel.peer_baggage.clone().unwrap();
        assert_eq!(baggage.workload, Some((WorkloadKind::Deployment, "echo".into())));
        // More than a stream window (4 MiB), so flow control has to turn over.
        let data = pattern(6 * 1024 * 1024);
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

#[tokio::test]
async fn idle_connections_are_closed_in_the_background() {
    with_timeout(async {
        let s = setup().await;
        let config = ClientConfig {
            pool: PoolConfig { idle_timeout: Duration::from_millis(100), ..PoolConfig::default() },
            ..ClientConfig::default()
        };
        let client = HboneClient::with_config(s.mesh.workload("client"), Arc::clone(&s.mesh.bundles), config);
        let dest = destination(s.hbone, "server");
        let first = client.connect(&dest, request(s.echo)).await.unwrap();
        assert_eq!(round_trip(first.stream, b"once".to_vec()).await, b"once");
        assert_eq!(client.pooled_connections(), 1);
        // Nothing calls into the client from here on: only its reaper can empty the pool.
        let mut waited = Duration::ZERO;
        while client.pooled_connections() > 0 {
            assert!(waited < Duration::from_secs(10), "the idle connection was never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        assert!(waited >= Duration::from_millis(60), "closed before the idle timeout: {waited:?}");
        let second = client.connect(&dest, request(s.echo)).await.unwrap();
        assert_ne!(second.connection, first.connection, "a new connection after the idle one closed");
        assert_eq!(round_trip(second.stream, b"again".to_vec()).await, b"again");
    })
    .await;
}

/// Pool expiry runs on tokio's clock: with time paused, advancing it past the pool's idle timeout (and no
/// other timer: keepalive and the server's idle timeout are an hour away) closes the idle connection.
#[tokio::test]
async fn pool_expiry_follows_a_paused_clock() {
    let mesh = Mesh::new();
    let echo = echo_server().await;
    let hour = Duration::from_secs(3600);
    let settings = H2Settings { keepalive_interval: hour, ..H2Settings::default() };
    let server =
        HboneServer::new(&mesh.workload("server"), Arc::clone(&mesh.bundles), [mesh.ca.trust_domain().clone()])
            .unwrap()
            .with_settings(settings)
            .unwrap()
            .with_limits(ServerLimits { idle_timeout: hour, ..ServerLimits::default() });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hbone = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, handler).await });
    let config = ClientConfig {
        settings,
        pool: PoolConfig { idle_timeout: Duration::from_secs(60), ..PoolConfig::default() },
        ..ClientConfig::default()
    };
    let client = HboneClient::with_config(mesh.workload("client"), Arc::clone(&mesh.bundles), config);
    let dest = destination(hbone, "server");
    let first = with_timeout(async {
        let first = client.connect(&dest, request(echo)).await.unwrap();
        let id = first.connection;
        assert_eq!(round_trip(first.stream, b"once".to_vec()).await, b"once");
        id
    })
    .await;
    assert_eq!(client.pooled_connections(), 1);

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(client.expire_idle().is_some(), "still pooled a second before the idle timeout");
    assert_eq!(client.pooled_connections(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    // The reaper sleeps on the same clock: it closes the connection without a call into the client.
    for _ in 0..100 {
        if client.pooled_connections() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(client.pooled_connections(), 0, "expired on the paused clock");
    tokio::time::resume();

    with_timeout(async {
        let second = client.connect(&dest, request(echo)).await.unwrap();
        assert_ne!(second.connection, first, "a new connection after the idle one expired");
        assert_eq!(round_trip(second.stream, b"again".to_vec()).await, b"again");
    })
    .await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_source_is_the_connection_s_peer_whatever_forwarded_claims() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let server =
            HboneServer::new(&mesh.workload("server"), Arc::clone(&mesh.bundles), [mesh.ca.trust_domain().clone()])
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hbone = listener.local_addr().unwrap();
        tokio::spawn(async move {
            server
                .serve(listener, move |inbound: InboundRequest| {
                    let seen_tx = seen_tx.clone();
                    async move {
                        let _ = seen_tx.send((inbound.source_ip(), inbound.claimed_source()));
                        connect_tcp(inbound.target, None, Duration::from_secs(5))
                            .await
                            .map_err(|e| Rejection::UpstreamConnect { target: inbound.target, reason: e.to_string() })
                    }
                })
                .await
        });
        // All of 127.0.0.0/8 is this host's on Linux, so no CAP_NET_ADMIN is needed to bind 127.0.0.x.
        let claimed: SocketAddr = "127.0.0.7:40000".parse().unwrap();
        let cases: [(ClientConfig, &str, std::net::IpAddr); 3] = [
            // A peer that writes another address in `forwarded` is still judged by the address it dials from.
            (ClientConfig::default(), "a lying peer", "127.0.0.1".parse().unwrap()),
            // Original-source binding: the connection leaves from the workload's address.
            (ClientConfig { original_source: true, ..ClientConfig::default() }, "original source", claimed.ip()),
            // A fixed local address (a waypoint dialling from its own Pod address).
            (
                ClientConfig { local_ip: Some("127.0.0.8".parse().unwrap()), ..ClientConfig::default() },
                "a fixed local IP",
                "127.0.0.8".parse().unwrap(),
            ),
        ];
        for (config, case, expected) in cases {
            let client = HboneClient::with_config(mesh.workload("client"), Arc::clone(&mesh.bundles), config);
            let tunnel = client
                .connect(
                    &destination(hbone, "server"),
                    ConnectRequest::new(echo).with_forwarded(Forwarded::for_source(claimed)),
                )
                .await
                .unwrap();
            assert_eq!(round_trip(tunnel.stream, b"hello".to_vec()).await, b"hello");
            let (source, claimed_source) = seen_rx.recv().await.unwrap();
            assert_eq!(source, expected, "{case}: the source is the connection's peer address");
            assert_eq!(claimed_source, Some(claimed.ip()), "{case}: the claim is kept apart");
        }
    })
    .await;
}

#[tokio::test]
async fn the_connection_limit_holds_back_accepts() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let limits = ServerLimits { max_connections: 1, ..ServerLimits::default() };
        let server =
            HboneServer::new(&mesh.workload("server"), Arc::clone(&mesh.bundles), [mesh.ca.trust_domain().clone()])
                .unwrap()
                .with_limits(limits);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hbone = listener.local_addr().unwrap();
        tokio::spawn(async move { server.serve(listener, handler).await });
        let dest = destination(hbone, "server");

        let first = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let held = first.connect(&dest, request(echo)).await.unwrap();
        // A second client needs a second connection: it waits in the listen backlog, unanswered.
        let second = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let waiting = tokio::time::timeout(Duration::from_millis(300), second.connect(&dest, request(echo))).await;
        assert!(waiting.is_err(), "a second connection was served beyond the limit");
        // The first connection closes with its client and last tunnel; the second client gets in.
        drop(held);
        drop(first);
        let tunnel = second.connect(&dest, request(echo)).await.unwrap();
        assert_eq!(round_trip(tunnel.stream, b"admitted".to_vec()).await, b"admitted");
    })
    .await;
}

#[tokio::test]
async fn a_client_proxy_relays_a_workload_connection() {
    with_timeout(async {
        let s = setup().await;
        let mut tunnel = s.client.connect(&destination(s.hbone, "server"), request(s.echo)).await.unwrap().stream;
        // The workload's connection, as the client proxy holds it; small buffers so both directions block.
        let (mut proxy_side, workload) = tokio::io::duplex(8 * 1024);
        let relaying = tokio::spawn(async move { relay(&mut tunnel, &mut proxy_side).await });
        let data = pattern(3 * 1024 * 1024 + 17);
        let (mut r, mut w) = tokio::io::split(workload);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        assert!(back == data, "{} bytes came back for {}", back.len(), data.len());
        let (to_workload, from_workload) = relaying.await.unwrap().unwrap();
        assert_eq!((to_workload, from_workload), (data.len() as u64, data.len() as u64));
    })
    .await;
}

/// A server on loopback that stops when `stop` fires, draining for `drain`.
async fn stoppable_server(
    mesh: &Mesh,
    drain: Duration,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Drained>) {
    let server =
        HboneServer::new(&mesh.workload("server"), Arc::clone(&mesh.bundles), [mesh.ca.trust_domain().clone()])
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        server.serve_until(listener, handler, shutdown, drain).await.unwrap()
    });
    (addr, stop, serving)
}

#[tokio::test]
async fn shutdown_lets_tunnels_in_flight_finish() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let (hbone, stop, serving) = stoppable_server(&mesh, Duration::from_secs(20)).await;
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let dest = destination(hbone, "server");
        let tunnel = client.connect(&dest, request(echo)).await.unwrap();
        let (mut r, mut w) = tokio::io::split(tunnel.stream);
        let mut buf = [0; 6];
        w.write_all(b"before").await.unwrap();
        r.read_exact(&mut buf).await.unwrap();

        stop.send(()).unwrap();
        // The listener closes and the connection gets GOAWAY: a new tunnel finds nowhere to go.
        let mut attempts = 0;
        while client.connect(&dest, request(echo)).await.is_ok() {
            attempts += 1;
            assert!(attempts < 50, "new tunnels are still accepted while draining");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!serving.is_finished(), "the server must wait for the tunnel in flight");
        // The tunnel in flight still works, both ways, to its end.
        w.write_all(b"during").await.unwrap();
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"during");
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop((r, w));
        assert_eq!(serving.await.unwrap(), Drained { cut_off: 0 });
    })
    .await;
}

#[tokio::test]
async fn the_drain_deadline_cuts_off_what_is_left() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let (hbone, stop, serving) = stoppable_server(&mesh, Duration::from_millis(200)).await;
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let tunnel = client.connect(&destination(hbone, "server"), request(echo)).await.unwrap();
        let (mut r, _w) = tokio::io::split(tunnel.stream);
        stop.send(()).unwrap();
        assert_eq!(serving.await.unwrap(), Drained { cut_off: 1 });
        // The tunnel that outlived the deadline is gone.
        let mut rest = Vec::new();
        assert!(r.read_to_end(&mut rest).await.is_err() || rest.is_empty());
    })
    .await;
}
