//! What a node proxy and a waypoint compose from the transport: certificates from a `CertificateStore` chosen
//! per dialled address, waypoint-style targets, handlers that serve inside the tunnel, and tunnel handles.
//! Real certificates from a `LocalCa`, real sockets on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mesh_hbone::status::InboundRules;
use mesh_hbone::transport::{
    ClientError, Destination, Direction, HboneClient, HboneServer, HboneStream, InboundRequest, TakeOver, TunnelHandle,
    TunnelObserver, TunnelReset, Tunnels, WorkloadIdentities,
};
use mesh_hbone::{ConnectRequest, HboneAddress, Rejection};
use mesh_identity::bundle::{TrustBundle, TrustBundleSet};
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::rotation::Jitter;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::store::CertificateStore;
use mesh_identity::tls::WorkloadCertificate;
use rustls_pki_types::ServerName;
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
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

/// Reads what a stream carries until it fails; returns the error (none if it ended cleanly).
async fn read_until_error(stream: &mut (impl AsyncRead + Unpin)) -> Option<std::io::Error> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return None,
            Ok(_) => {}
            Err(error) => return Some(error),
        }
    }
}

/// Counts the tunnels opened and closed, and the bytes of the closed ones, as a metrics library would.
#[derive(Default)]
struct Counting {
    opened: AtomicU64,
    closed: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl TunnelObserver for Counting {
    fn opened(&self, _tunnel: &TunnelHandle) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self, tunnel: &TunnelHandle) {
        self.bytes_sent.fetch_add(tunnel.bytes_sent(), Ordering::SeqCst);
        self.bytes_received.fetch_add(tunnel.bytes_received(), Ordering::SeqCst);
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A server whose handler connects to `app`, listing its tunnels in `tunnels`; returns its address.
async fn relaying_server(node: &Node, server_id: &SpiffeId, tunnels: Tunnels) -> SocketAddr {
    let config = Arc::new(node.store.server_config(server_id, [node.td()]).unwrap());
    let server = HboneServer::with_identity(config).with_tunnels(tunnels);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, |r: InboundRequest| connect_upstream(r.target)).await });
    addr
}

/// Closing an inbound tunnel by its handle (as a new policy would) ends both directions at once: the client
/// reads a reset, the upstream connection is closed. The handles' counts match the bytes sent, and the
/// observer sees the tunnel open and close with those counts. Closing an outbound tunnel does the same from
/// the client's side.
#[tokio::test]
async fn closing_a_tunnel_by_its_handle_ends_both_directions() {
    with_timeout(async {
        let node = Node::new();
        let (server_id, client_id) = (node.workload("server"), node.workload("client"));
        let counting = Arc::new(Counting::default());
        let inbound = Tunnels::with_observer(Arc::clone(&counting));
        let hbone = relaying_server(&node, &server_id, inbound.clone()).await;
        let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_addr = app.local_addr().unwrap();
        let client = HboneClient::from_store(node.store.clone(), client_id.clone());
        let dest = Destination { address: hbone, identities: vec![server_id.clone()] };

        for close_inbound in [true, false] {
            let mut tunnel = client.connect(&dest, ConnectRequest::new(app_addr)).await.unwrap();
            let (mut upstream, _) = app.accept().await.unwrap();
            // 100 KiB each way.
            let (to_app, to_client) = (pattern(100 * 1024), pattern(100 * 1024 + 7));
            tunnel.stream.write_all(&to_app).await.unwrap();
            let mut got = vec![0; to_app.len()];
            upstream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, to_app);
            upstream.write_all(&to_client).await.unwrap();
            let mut got = vec![0; to_client.len()];
            tunnel.stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, to_client);

            let outbound = tunnel.stream.handle().unwrap().clone();
            assert_eq!(outbound.direction(), Direction::Outbound);
            assert_eq!(outbound.peer(), &server_id);
            assert_eq!(outbound.target(), &HboneAddress::Socket(app_addr));
            assert_eq!(
                (outbound.bytes_sent(), outbound.bytes_received()),
                (to_app.len() as u64, to_client.len() as u64)
            );
            assert_eq!(client.tunnels().list().len(), 1);
            let open = inbound.list();
            assert_eq!(open.len(), 1);
            let handle = &open[0];
            assert_eq!(handle.direction(), Direction::Inbound);
            assert_eq!(handle.peer(), &client_id);
            assert_eq!(handle.target(), &HboneAddress::Socket(app_addr));
            assert!(handle.opened() <= tokio::time::Instant::now());
            assert_eq!((handle.bytes_received(), handle.bytes_sent()), (to_app.len() as u64, to_client.len() as u64));

            if close_inbound {
                // The policy now denies this client: close its tunnels.
                assert_eq!(inbound.close_where(|t| t.peer() == &client_id), 1);
                let error = read_until_error(&mut tunnel.stream).await.expect("the client reads a reset");
                let reset = error.get_ref().and_then(|e| e.downcast_ref::<TunnelReset>()).expect("a TunnelReset");
                assert_eq!(reset.reason, h2::Reason::CANCEL);
            } else {
                outbound.close();
                let error = read_until_error(&mut tunnel.stream).await.expect("reading a closed tunnel fails");
                assert_eq!(error.kind(), std::io::ErrorKind::ConnectionAborted);
                assert!(tunnel.stream.write_all(b"more").await.is_err(), "writing a closed tunnel fails");
            }
            // The upstream connection is closed by the server's relay, whichever end closed the tunnel.
            let mut rest = Vec::new();
            let _ = upstream.read_to_end(&mut rest).await;
            assert!(rest.is_empty());
            drop(tunnel);
            // The registries forget closed tunnels as their streams go.
            while !inbound.is_empty() || !client.tunnels().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(counting.opened.load(Ordering::SeqCst), 2);
        assert_eq!(counting.closed.load(Ordering::SeqCst), 2);
        assert_eq!(counting.bytes_received.load(Ordering::SeqCst), 2 * 100 * 1024);
        assert_eq!(counting.bytes_sent.load(Ordering::SeqCst), 2 * (100 * 1024 + 7));
    })
    .await;
}

/// The body of an HTTP response, read to its end.
async fn body_text(mut body: hyper::body::Incoming) -> String {
    use hyper::body::Body;
    let mut text = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.unwrap().into_data() {
            text.extend_from_slice(&data);
        }
    }
    String::from_utf8(text).unwrap()
}

/// A waypoint: one identity whatever address it is dialled at, any target accepted, and HTTP served inside
/// the tunnel by the handler (hyper, HTTP/1.1 or HTTP/2 as the client speaks). The handler sees the VIP the
/// client asked for.
#[tokio::test]
async fn a_waypoint_serves_http_inside_the_tunnel() {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    with_timeout(async {
        let node = Node::new();
        let (waypoint_id, client_id) = (node.workload("waypoint"), node.workload("client"));
        let config = Arc::new(node.store.server_config(&waypoint_id, [node.td()]).unwrap());
        let server = HboneServer::with_identity(config).with_rules(InboundRules::default().any_target());
        let handler = |request: InboundRequest| async move {
            let vip = request.target;
            if vip.port() != 80 {
                return Err(Rejection::Denied { reason: "only port 80 is served here".into() });
            }
            Ok(TakeOver(move |stream: HboneStream| async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| async move {
                    let text = format!("{vip} {} {:?}", req.uri().path(), req.version());
                    Ok::<_, std::convert::Infallible>(http::Response::new(text))
                });
                let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(error) = served {
                    panic!("HTTP inside the tunnel failed: {error}");
                }
            }))
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let waypoint = listener.local_addr().unwrap();
        let tunnels = server.tunnels().clone();
        tokio::spawn(async move { server.serve(listener, handler).await });

        let client = HboneClient::from_store(node.store.clone(), client_id);
        let dest = Destination { address: waypoint, identities: vec![waypoint_id.clone()] };
        let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();

        // HTTP/1.1, two requests on one tunnel.
        let tunnel = client.connect(&dest, ConnectRequest::new(vip)).await.unwrap();
        assert_eq!(tunnel.peer, waypoint_id);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tunnel.stream)).await.unwrap();
        tokio::spawn(connection);
        for path in ["/reviews/1", "/reviews/2"] {
            let request = http::Request::get(path).header("host", "reviews").body(String::new()).unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::OK);
            assert_eq!(body_text(response.into_body()).await, format!("{vip} {path} HTTP/1.1"));
        }
        assert_eq!(tunnels.len(), 1);
        assert_eq!(tunnels.list()[0].target(), &HboneAddress::Socket(vip));

        // HTTP/2 on another tunnel, two requests at once.
        let tunnel = client.connect(&dest, ConnectRequest::new(vip)).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tunnel.stream)).await.unwrap();
        tokio::spawn(connection);
        let ask = |path: &'static str| {
            let mut sender = sender.clone();
            async move {
                let request = http::Request::get(format!("http://reviews{path}")).body(String::new()).unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.version(), http::Version::HTTP_2);
                body_text(response.into_body()).await
            }
        };
        let (a, b) = tokio::join!(ask("/a"), ask("/b"));
        assert_eq!((a.as_str(), b.as_str()), ("10.96.0.10:80 /a HTTP/2.0", "10.96.0.10:80 /b HTTP/2.0"));

        // The handler still refuses what it does not serve.
        let refused = client.connect(&dest, ConnectRequest::new("10.96.0.10:443".parse::<SocketAddr>().unwrap())).await;
        assert_eq!(refused.unwrap_err().refused().map(|r| r.status), Some(http::StatusCode::UNAUTHORIZED));
    })
    .await;
}

/// The alert of a server that refused the client's certificate: in TLS 1.3 the client has finished its side
/// of the handshake by then, so the alert arrives with the HTTP/2 handshake.
fn refused_certificate(error: &ClientError) -> String {
    match error {
        ClientError::Handshake { .. } | ClientError::H2 { .. } => error.to_string(),
        other => panic!("not a refused certificate: {other}"),
    }
}

/// The leaf certificate a server presents to a new TLS connection made with `config`.
async fn presented_leaf(address: SocketAddr, config: tokio_rustls::rustls::ClientConfig) -> Vec<u8> {
    let tcp = TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector.connect(ServerName::IpAddress(address.ip().into()), tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A tunnel carries data across three rotations: both sides' certificates renewed from the same root; a new
/// root, trusted beside the old one for the overlap, with both certificates renewed from it; then the old
/// root dropped. After each, new connections present the new certificates (and, once the old root is gone,
/// succeed only because both do), while the first tunnel keeps echoing. A client whose certificate has
/// expired is refused.
#[tokio::test]
async fn a_tunnel_carries_data_across_rotations() {
    with_timeout(async {
        let now = UnixTime::now();
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca1 = LocalCa::new_root(td.clone(), &CaOptions::default(), now).unwrap();
        let bundles = |cas: &[&LocalCa]| {
            let roots = cas.iter().map(|ca| ca.root_certificate().clone());
            [TrustBundle::from_der(td.clone(), roots).unwrap()].into_iter().collect::<TrustBundleSet>()
        };
        let (server_store, client_store) =
            (CertificateStore::new(bundles(&[&ca1])), CertificateStore::new(bundles(&[&ca1])));
        let server_identity = IstioIdentity::new(&td, "default", "server").unwrap();
        let client_identity = IstioIdentity::new(&td, "default", "client").unwrap();
        let (server_id, client_id) = (server_identity.spiffe_id().clone(), client_identity.spiffe_id().clone());
        server_store.issue(&ca1, &server_identity, now, Jitter::None).unwrap();
        client_store.issue(&ca1, &client_identity, now, Jitter::None).unwrap();

        let echo = echo_server().await;
        let config = Arc::new(server_store.server_config(&server_id, [td.clone()]).unwrap());
        let server = HboneServer::with_identity(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hbone = listener.local_addr().unwrap();
        tokio::spawn(async move { server.serve(listener, |r: InboundRequest| connect_upstream(r.target)).await });
        let dest = Destination { address: hbone, identities: vec![server_id.clone()] };

        // The long-lived tunnel: echoes 16 KiB chunks until told to stop.
        let client = HboneClient::from_store(client_store.clone(), client_id.clone());
        let tunnel = client.connect(&dest, ConnectRequest::new(echo)).await.unwrap();
        let pooled = tunnel.connection;
        let rounds = Arc::new(AtomicU64::new(0));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let pump = tokio::spawn({
            let rounds = Arc::clone(&rounds);
            async move {
                let mut stream = tunnel.stream;
                let chunk = pattern(16 * 1024);
                let mut back = vec![0; chunk.len()];
                while !*stop_rx.borrow_and_update() {
                    stream.write_all(&chunk).await.unwrap();
                    stream.read_exact(&mut back).await.unwrap();
                    assert_eq!(back, chunk);
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
                stream.shutdown().await.unwrap();
                assert!(read_until_error(&mut stream).await.is_none(), "the tunnel ends cleanly");
            }
        });
        let progress = || async {
            let start = rounds.load(Ordering::SeqCst);
            while rounds.load(Ordering::SeqCst) < start + 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        // A new connection (a fresh pool) works, and the server presents its current certificate.
        let check_new_connections = || async {
            let fresh = HboneClient::from_store(client_store.clone(), client_id.clone());
            let tunnel = fresh.connect(&dest, ConnectRequest::new(echo)).await.unwrap();
            assert_eq!(round_trip(tunnel.stream, pattern(5000)).await, pattern(5000));
            let config = client_store.client_config(&client_id, [server_id.clone()]).unwrap();
            let leaf = server_store.get(&server_id).unwrap().leaf().unwrap().to_vec();
            assert_eq!(presented_leaf(hbone, config).await, leaf, "the server presents its renewed certificate");
        };
        let leaves = || {
            (
                server_store.get(&server_id).unwrap().leaf().unwrap().clone(),
                client_store.get(&client_id).unwrap().leaf().unwrap().clone(),
            )
        };
        progress().await;
        check_new_connections().await;

        // 1: both certificates renewed from the same root.
        let before = leaves();
        assert_eq!(server_store.renew_all(&ca1, now, |_| Jitter::None).renewed, std::slice::from_ref(&server_id));
        assert_eq!(client_store.renew_all(&ca1, now, |_| Jitter::None).renewed, std::slice::from_ref(&client_id));
        let after = leaves();
        assert!(before.0 != after.0 && before.1 != after.1);
        progress().await;
        check_new_connections().await;

        // 2: a new root, trusted beside the old one; both certificates renewed from it.
        let ca2 = LocalCa::new_root(td.clone(), &CaOptions::default(), now).unwrap();
        server_store.replace_trust_bundles(bundles(&[&ca1, &ca2]));
        client_store.replace_trust_bundles(bundles(&[&ca1, &ca2]));
        server_store.renew_all(&ca2, now, |_| Jitter::None);
        client_store.renew_all(&ca2, now, |_| Jitter::None);
        progress().await;
        check_new_connections().await;

        // 3: the old root dropped. New connections still work: both sides present certificates of the new root.
        server_store.replace_trust_bundles(bundles(&[&ca2]));
        client_store.replace_trust_bundles(bundles(&[&ca2]));
        progress().await;
        check_new_connections().await;
        // A client still on the old root is refused now.
        let old_svid = ca1.issue(&client_identity, Duration::from_secs(3600), now).unwrap();
        let old = HboneClient::new(WorkloadCertificate::try_from(old_svid).unwrap(), Arc::new(bundles(&[&ca2])));
        let error = old.connect(&dest, ConnectRequest::new(echo)).await.unwrap_err();
        // Its root has the new root's name but not its key: the signature does not verify.
        assert!(refused_certificate(&error).contains("DecryptError"), "{error}");

        // A client whose certificate (from the trusted root) has expired is refused.
        let hour = Duration::from_secs(3600);
        let earlier = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() - 3 * 3600));
        let ca3 = LocalCa::new_root(td.clone(), &CaOptions::default(), earlier).unwrap();
        server_store.replace_trust_bundles(bundles(&[&ca2, &ca3]));
        let expired_svid = ca3.issue(&client_identity, hour, earlier).unwrap();
        let expired =
            HboneClient::new(WorkloadCertificate::try_from(expired_svid).unwrap(), Arc::new(bundles(&[&ca2, &ca3])));
        let error = expired.connect(&dest, ConnectRequest::new(echo)).await.unwrap_err();
        assert!(refused_certificate(&error).contains("CertificateExpired"), "{error}");
        // The same root's current certificate is accepted (with the server's root trusted too): the refusal
        // was the expiry.
        let valid_svid = ca3.issue(&client_identity, hour, now).unwrap();
        let trusted = Arc::new(bundles(&[&ca2, &ca3]));
        let valid = HboneClient::new(WorkloadCertificate::try_from(valid_svid).unwrap(), trusted);
        let tunnel = valid.connect(&dest, ConnectRequest::new(echo)).await.unwrap();
        assert_eq!(round_trip(tunnel.stream, pattern(100)).await, pattern(100));

        // The first tunnel kept working throughout, on the connection made before any rotation, and that
        // connection is still pooled: the rotations did not drop the pool.
        progress().await;
        let again = client.connect(&dest, ConnectRequest::new(echo)).await.unwrap();
        assert_eq!(again.connection, pooled);
        assert_eq!(round_trip(again.stream, pattern(3000)).await, pattern(3000));
        stop_tx.send_replace(true);
        pump.await.unwrap();
        assert!(rounds.load(Ordering::SeqCst) >= 15);
    })
    .await;
}
