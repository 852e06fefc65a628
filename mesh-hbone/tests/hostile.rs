//! The HBONE server against hostile peers on loopback: each test reproduces an attack, in a bounded number of
//! steps, and checks the limit that stops it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use mesh_hbone::settings::H2Settings;
use mesh_hbone::status::RejectionKind;
use mesh_hbone::transport::{
    ClientConfig, ClientError, Destination, HboneClient, HboneServer, HboneStream, InboundRequest, ServerLimits,
    SocketBuffers, TakeOver, TunnelReset, relay,
};
use mesh_hbone::{ConnectRequest, Rejection};
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
use mesh_identity::tls::{WorkloadCertificate, client_config, server_config};
use rustls_pki_types::{ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

mod common;

use common::{Mesh, echo_server, pattern, with_timeout};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const PRIORITY: u8 = 0x2;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const ACK: u8 = 0x1;
/// The payload h2 puts in every PING it sends for keepalive: public, so a peer can acknowledge it blindly.
const H2_USER_PING: [u8; 8] = [0x3b, 0x7c, 0xdb, 0x7a, 0x0b, 0x87, 0x16, 0xb4];
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn server(mesh: &Mesh, limits: ServerLimits) -> HboneServer {
    HboneServer::new(&mesh.workload("server"), Arc::clone(&mesh.bundles), [mesh.ca.trust_domain().clone()])
        .unwrap()
        .with_limits(limits)
}

async fn serve<H: mesh_hbone::transport::Handler>(server: HboneServer, handler: H) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, handler).await });
    addr
}

/// Accepts one TCP connection on a fresh listener and serves it; the task ends when the server is done with it.
async fn serve_one<H: mesh_hbone::transport::Handler>(
    server: HboneServer,
    handler: H,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = server.serve_connection(tcp, Arc::new(handler)).await;
    });
    (addr, served)
}

fn destination(addr: SocketAddr) -> Destination {
    Destination { address: addr, identities: vec![Mesh::id("server")] }
}

/// A TLS connection to the server as an authenticated client, with nothing sent over it yet.
async fn raw_tls(mesh: &Mesh, addr: SocketAddr) -> TlsStream<TcpStream> {
    tls_as(mesh, &mesh.workload("client"), addr).await.unwrap()
}

async fn tls_as(mesh: &Mesh, own: &WorkloadCertificate, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
    let config = client_config(own, Arc::clone(&mesh.bundles), [Mesh::id("server")]).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config)).connect(ServerName::IpAddress(addr.ip().into()), tcp).await
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// Reads frames until a GOAWAY (its error code) or the end of the connection (`None`).
async fn goaway_code<S: AsyncRead + Unpin>(stream: &mut S) -> Option<u32> {
    loop {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await.ok()?;
        if head[3] == GOAWAY {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
    }
}

/// A handler whose upstream connect never completes (a backend that does not answer), counting the connects
/// in flight.
#[derive(Clone, Default)]
struct Hanging {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    started: Option<mpsc::UnboundedSender<()>>,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hanging {
    fn handler(&self) -> impl mesh_hbone::transport::Handler<Upstream = TcpStream> {
        let this = self.clone();
        move |_: InboundRequest| {
            let this = this.clone();
            async move {
                let now = this.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                this.most.fetch_max(now, Ordering::SeqCst);
                let _guard = InFlight(Arc::clone(&this.in_flight));
                if let Some(started) = &this.started {
                    let _ = started.send(());
                }
                std::future::pending::<Result<TcpStream, Rejection>>().await
            }
        }
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 5 s");
}

#[tokio::test]
async fn a_reset_connect_cancels_its_upstream_connect() {
    with_timeout(async {
        let mesh = Mesh::new();
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let hanging = Hanging { started: Some(started_tx), ..Hanging::default() };
        let addr = serve(server(&mesh, ServerLimits::default()), hanging.handler()).await;
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let target: SocketAddr = format!("127.0.0.1:{}", addr.port() + 1).parse().unwrap();
        let dest = destination(addr);
        // Rapid reset of CONNECTs whose upstream hangs: each is reset once its handler runs.
        for _ in 0..300 {
            tokio::select! {
                _ = client.connect(&dest, ConnectRequest::new(target)) => panic!("the connect hangs"),
                _ = started.recv() => {}
            }
        }
        eventually("every cancelled handler dropped", || hanging.in_flight.load(Ordering::SeqCst) == 0).await;
        // Each reset cancels its handler before long (a couple may overlap); without cancelling, all 300 hang.
        let most = hanging.most.load(Ordering::SeqCst);
        assert!(most <= 10, "{most} handlers piled up");
        assert_eq!(client.pooled_connections(), 1, "all of it on one connection");
    })
    .await;
}

#[tokio::test]
async fn upstream_connects_in_flight_are_bounded_per_connection_and_in_total() {
    with_timeout(async {
        let mesh = Mesh::new();
        let hanging = Hanging::default();
        let limits = ServerLimits { max_connects_per_connection: 3, max_connects: 5, ..ServerLimits::default() };
        let addr = serve(server(&mesh, limits), hanging.handler()).await;
        let target: SocketAddr = format!("127.0.0.1:{}", addr.port() + 1).parse().unwrap();
        let status = |client: HboneClient| async move {
            let error = client.connect(&destination(addr), ConnectRequest::new(target)).await.unwrap_err();
            error.refused().map(|r| (r.status, r.kind))
        };
        let first = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let pending: Vec<_> = (0..3)
            .map(|_| {
                let client = first.clone();
                tokio::spawn(async move { client.connect(&destination(addr), ConnectRequest::new(target)).await })
            })
            .collect();
        eventually("three connects in flight", || hanging.in_flight.load(Ordering::SeqCst) == 3).await;
        let busy = Some((StatusCode::SERVICE_UNAVAILABLE, Some(RejectionKind::Unavailable)));
        assert_eq!(status(first.clone()).await, busy, "a fourth on the same connection");
        // Another connection has its own three, but only two are left of the total.
        let second = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let more: Vec<_> = (0..2)
            .map(|_| {
                let client = second.clone();
                tokio::spawn(async move { client.connect(&destination(addr), ConnectRequest::new(target)).await })
            })
            .collect();
        eventually("five connects in flight", || hanging.in_flight.load(Ordering::SeqCst) == 5).await;
        assert_eq!(status(second.clone()).await, busy, "the sixth across connections");
        assert_eq!(hanging.most.load(Ordering::SeqCst), 5);
        for task in pending.into_iter().chain(more) {
            task.abort();
        }
        // The aborted clients reset their CONNECTs, which frees the slots.
        eventually("slots freed by the resets", || hanging.in_flight.load(Ordering::SeqCst) == 0).await;
    })
    .await;
}

#[tokio::test]
async fn a_handler_that_does_not_decide_in_time_gets_503() {
    with_timeout(async {
        let mesh = Mesh::new();
        let hanging = Hanging::default();
        let limits = ServerLimits { handler_timeout: Duration::from_millis(200), ..ServerLimits::default() };
        let addr = serve(server(&mesh, limits), hanging.handler()).await;
        let target: SocketAddr = format!("127.0.0.1:{}", addr.port() + 1).parse().unwrap();
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let error = client.connect(&destination(addr), ConnectRequest::new(target)).await.unwrap_err();
        assert_eq!(error.refused().map(|r| r.status), Some(StatusCode::SERVICE_UNAVAILABLE), "{error}");
        assert_eq!(hanging.in_flight.load(Ordering::SeqCst), 0, "the handler was dropped");
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_stops_after_the_tls_handshake_is_closed() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let limits = ServerLimits { preface_timeout: Duration::from_millis(300), ..ServerLimits::default() };
        let (addr, served) = serve_one(server(&mesh, limits), move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        let mut tls = raw_tls(&mesh, addr).await;
        // No HTTP/2 preface: the server gives up and closes, well before the default 10 s.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await.expect("still open");
        tokio::time::timeout(Duration::from_secs(5), served).await.expect("the server still serves it").unwrap();
    })
    .await;
}

/// An IO whose reads can be stopped, as a peer that stops reading its socket.
struct Gate<T> {
    io: T,
    open: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
}

#[derive(Clone)]
struct GateHandle {
    open: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl GateHandle {
    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }
}

fn gate<T>(io: T) -> (Gate<T>, GateHandle) {
    let open = Arc::new(AtomicBool::new(true));
    let waker = Arc::new(Mutex::new(None));
    (Gate { io, open: Arc::clone(&open), waker: Arc::clone(&waker) }, GateHandle { open, waker })
}

impl<T: AsyncRead + Unpin> AsyncRead for Gate<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.open.load(Ordering::SeqCst) {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if !self.open.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gate<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An upstream that sends `each` bytes of [`pattern`] to every connection, then closes. It starts sending
/// 300 ms after the connection, once the test's client has stopped reading.
async fn source(each: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data = Bytes::from(pattern(each));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = socket.write_all(&data).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// The client stops reading its socket for 1.5 s: the server buffers at least half of `budget` and never
/// more. Reading again, the client gets every byte of every stream, in order, and the budget is given back.
async fn stall_then_read_all(
    hbone: &HboneServer,
    reading: &GateHandle,
    bodies: &mut [(h2::SendStream<Bytes>, h2::RecvStream)],
    each: usize,
    budget: u64,
) {
    reading.close();
    let mut most = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        most = most.max(hbone.buffered_bytes());
    }
    assert!(most <= budget, "{most} bytes buffered for a peer that does not read");
    assert!(most >= budget / 2, "the stalled tunnels use the budget ({most} bytes)");
    reading.open();
    let expected = pattern(each);
    for (_, body) in bodies.iter_mut() {
        let mut got = Vec::with_capacity(each);
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert!(got == expected, "{} bytes of {each}", got.len());
    }
    eventually("the budget given back", || hbone.buffered_bytes() == 0).await;
}

/// An HTTP/2 client over `io` that advertises the largest windows, as a slow reader does to make the server
/// buffer; returns the CONNECT streams' bodies for `targets`.
async fn greedy_client<T>(io: T, targets: &[SocketAddr]) -> Vec<(h2::SendStream<Bytes>, h2::RecvStream)>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(i32::MAX as u32)
        .initial_connection_window_size(i32::MAX as u32)
        .handshake::<_, Bytes>(io)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut bodies = Vec::new();
    for target in targets {
        let mut sender = sender.clone().ready().await.unwrap();
        let request = ConnectRequest::new(*target).to_request().unwrap();
        let (response, send) = sender.send_request(request, false).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        bodies.push((send, response.into_body()));
    }
    bodies
}

#[tokio::test]
async fn a_slow_reader_is_held_to_the_send_budget() {
    with_timeout(async {
        let mesh = Mesh::new();
        const STREAMS: usize = 8;
        const EACH: usize = 4 * 1024 * 1024;
        const BUDGET: u64 = 1024 * 1024;
        let upstream = source(EACH).await;
        let limits = ServerLimits { send_budget_per_connection: BUDGET, ..ServerLimits::default() };
        let hbone = server(&mesh, limits);
        let (addr, _served) = serve_one(hbone.clone(), |request: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(request.target).await.unwrap())
        })
        .await;
        let (io, reading) = gate(raw_tls(&mesh, addr).await);
        let mut bodies = greedy_client(io, &[upstream; STREAMS]).await;
        // The client stops reading its socket: without a budget each stream would fill h2's 400 KiB send
        // buffer, 3.2 MiB in all.
        stall_then_read_all(&hbone, &reading, &mut bodies, EACH, BUDGET).await;
    })
    .await;
}

/// The same slow reader, with a handler that serves the tunnels itself ([`TakeOver`]) instead of relaying:
/// its writes are held to the same budget.
#[tokio::test]
async fn a_handler_serving_the_tunnel_is_held_to_the_send_budget() {
    with_timeout(async {
        let mesh = Mesh::new();
        const STREAMS: usize = 8;
        const EACH: usize = 4 * 1024 * 1024;
        const BUDGET: u64 = 1024 * 1024;
        let limits = ServerLimits { send_budget_per_connection: BUDGET, ..ServerLimits::default() };
        let hbone = server(&mesh, limits);
        let (addr, _served) = serve_one(hbone.clone(), |_request: InboundRequest| async move {
            Ok::<_, Rejection>(TakeOver(|mut stream: HboneStream| async move {
                // Once the test's client has stopped reading.
                tokio::time::sleep(Duration::from_millis(300)).await;
                stream.write_all(&pattern(EACH)).await.unwrap();
                stream.shutdown().await.unwrap();
            }))
        })
        .await;
        let (io, reading) = gate(raw_tls(&mesh, addr).await);
        let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut bodies = greedy_client(io, &[target; STREAMS]).await;
        stall_then_read_all(&hbone, &reading, &mut bodies, EACH, BUDGET).await;
    })
    .await;
}

/// An upstream that sends [`pattern`] bytes to every connection as fast as the connection takes them, up to
/// `each`, starting 300 ms after the connection (once the test's client has stopped reading).
async fn firehose(each: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let chunk = Bytes::from(pattern(16 * 1024));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut sent = 0;
                while sent < each {
                    let Ok(n) = socket.write(&chunk).await else { return };
                    sent += n;
                }
            });
        }
    });
    addr
}

/// A peer that opens tunnels to upstreams that keep sending, and reads its connection 5 ms in every 100 ms:
/// each relay stops reading its upstream once the send budget is spent, and what the upstream sends next
/// waits in the server's upstream socket. That socket's receive buffer, left to autotuning, grows with the
/// bursts the relay reads (to `tcp_rmem`'s maximum, 6 MiB or more), for every tunnel; with
/// `ServerLimits::upstream_buffers` it stays at its size, even for a handler that connects with a plain
/// `TcpStream::connect`, as the `hbone_peer` example does.
#[tokio::test]
async fn a_slow_reader_cannot_make_stalled_upstreams_pin_kernel_memory() {
    with_timeout(async {
        let mesh = Mesh::new();
        const STREAMS: usize = 16;
        const EACH: usize = 16 * 1024 * 1024;
        const BUDGET: u64 = 1024 * 1024;
        const RECV: usize = 64 * 1024;
        let upstream = firehose(EACH).await;
        let buffers = SocketBuffers { recv: Some(RECV as u32), ..SocketBuffers::UPSTREAM };
        let limits =
            ServerLimits { send_budget_per_connection: BUDGET, upstream_buffers: buffers, ..ServerLimits::default() };
        let hbone = server(&mesh, limits);
        // The handler keeps a second descriptor of each upstream socket, to look into its receive queue.
        let upstreams = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&upstreams);
        let (addr, _served) = serve_one(hbone.clone(), move |request: InboundRequest| {
            let kept = Arc::clone(&kept);
            async move {
                let tcp = TcpStream::connect(request.target).await.unwrap().into_std().unwrap();
                kept.lock().unwrap().push(tcp.try_clone().unwrap());
                Ok::<_, Rejection>(TcpStream::from_std(tcp).unwrap())
            }
        })
        .await;
        let (io, reading) = gate(raw_tls(&mesh, addr).await);
        let bodies = greedy_client(io, &[upstream; STREAMS]).await;
        reading.close();
        let delivered = Arc::new(AtomicU64::new(0));
        for (_, mut body) in bodies {
            let delivered = Arc::clone(&delivered);
            tokio::spawn(async move {
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    delivered.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            });
        }
        let mut most_buffered = 0;
        for _ in 0..20 {
            reading.open();
            tokio::time::sleep(Duration::from_millis(5)).await;
            reading.close();
            tokio::time::sleep(Duration::from_millis(100)).await;
            most_buffered = most_buffered.max(hbone.buffered_bytes());
        }
        // Stalled: what each upstream socket holds, unread (peeked through the second descriptor).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut peeked = vec![std::mem::MaybeUninit::<u8>::uninit(); EACH];
        let upstreams = upstreams.lock().unwrap();
        assert_eq!(upstreams.len(), STREAMS);
        let queued: Vec<usize> =
            upstreams.iter().map(|tcp| socket2::SockRef::from(tcp).peek(&mut peeked).unwrap_or(0)).collect();
        // Linux doubles SO_RCVBUF for its own overhead, and admits one more loopback segment (64 KiB) past it.
        let most = queued.iter().copied().max().unwrap();
        assert!(most <= 2 * RECV + 64 * 1024, "an upstream socket holds {most} bytes unread: {queued:?}");
        assert!(delivered.load(Ordering::SeqCst) > 0, "the peer read some");
        assert!(most_buffered <= BUDGET, "{most_buffered} bytes in send buffers");
        for tcp in upstreams.iter() {
            assert_eq!(socket2::SockRef::from(tcp).recv_buffer_size().unwrap(), 2 * RECV);
        }
    })
    .await;
}

fn keepalive(interval_ms: u64, timeout_ms: u64) -> H2Settings {
    H2Settings {
        keepalive_interval: Duration::from_millis(interval_ms),
        keepalive_timeout: Duration::from_millis(timeout_ms),
        ..H2Settings::default()
    }
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_even_if_the_goaway_cannot_be_sent() {
    with_timeout(async {
        let mesh = Mesh::new();
        let upstream = source(16 * 1024 * 1024).await;
        let limits = ServerLimits { shutdown_timeout: Duration::from_millis(300), ..ServerLimits::default() };
        // The first PING goes out 600 ms in, once the upstreams (which start at 300 ms) have filled the socket.
        let hbone = server(&mesh, limits).with_settings(keepalive(600, 300)).unwrap();
        let (addr, served) = serve_one(hbone, |request: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(request.target).await.unwrap())
        })
        .await;
        let (io, reading) = gate(raw_tls(&mesh, addr).await);
        let _bodies = greedy_client(io, &[upstream; 4]).await;
        // Not reading: socket buffers fill, PINGs go unanswered, and the GOAWAY has nowhere to go.
        reading.close();
        tokio::time::timeout(Duration::from_secs(10), served).await.expect("the connection is still held").unwrap();
    })
    .await;
}

#[tokio::test]
async fn blind_ping_acks_do_not_keep_a_connection_alive() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let hbone = server(&mesh, ServerLimits::default()).with_settings(keepalive(100, 200)).unwrap();
        let (addr, served) = serve_one(hbone, move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        let mut tls = raw_tls(&mesh, addr).await;
        tls.write_all(PREFACE).await.unwrap();
        tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        tls.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        // Never reads; acknowledges h2's well-known keepalive payload every 20 ms, for at most 5 s.
        let blind = async {
            for _ in 0..250 {
                if tls.write_all(&frame(PING, ACK, 0, &H2_USER_PING)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            () = blind => panic!("blind PING ACKs kept the connection open for 5 s"),
            done = served => done.unwrap(),
        }
    })
    .await;
}

#[tokio::test]
async fn keepalive_holds_with_a_peer_that_reads() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let hbone = server(&mesh, ServerLimits::default()).with_settings(keepalive(50, 1000)).unwrap();
        let addr = serve(hbone, move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let tunnel = client.connect(&destination(addr), ConnectRequest::new(echo)).await.unwrap();
        let (mut r, mut w) = tokio::io::split(tunnel.stream);
        // 20 keepalive rounds, each PING masked on the way out and its echo unmasked on the way in.
        for round in 0..10u8 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            w.write_all(&[round]).await.unwrap();
            let mut back = [0u8];
            r.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [round]);
        }
    })
    .await;
}

#[tokio::test]
async fn control_frame_floods_end_in_enhance_your_calm() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let limits =
            ServerLimits { control_frames_per_second: 100, control_frame_burst: 500, ..ServerLimits::default() };
        let addr = serve(server(&mesh, limits), move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        let floods: [(&str, Vec<u8>); 4] = [
            ("PING", frame(PING, 0, 0, &[1; 8])),
            ("SETTINGS", frame(SETTINGS, 0, 0, &[])),
            ("WINDOW_UPDATE", frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes())),
            ("PRIORITY", frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 16])),
        ];
        for (name, one) in floods {
            let tls = raw_tls(&mesh, addr).await;
            let mut burst = PREFACE.to_vec();
            burst.extend(frame(SETTINGS, 0, 0, &[]));
            for _ in 0..2_000 {
                burst.extend_from_slice(&one);
            }
            let (mut r, mut w) = tokio::io::split(tls);
            let writer = tokio::spawn(async move {
                let _ = w.write_all(&burst).await;
            });
            assert_eq!(goaway_code(&mut r).await, Some(ENHANCE_YOUR_CALM), "{name} flood");
            writer.abort();
        }
        // Below the rate, the same frames are fine: a connection that sends a few of each still tunnels.
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let tunnel = client.connect(&destination(addr), ConnectRequest::new(echo)).await.unwrap();
        assert_eq!(common::round_trip(tunnel.stream, b"calm".to_vec()).await, b"calm");
    })
    .await;
}

/// A SETTINGS payload of `n` settings of an identifier HTTP/2 does not define (which a receiver ignores).
fn unknown_settings(n: usize) -> Vec<u8> {
    (0..n).flat_map(|_| [0xf0, 0x0f, 0, 0, 0, 0]).collect()
}

/// Frames of 1 MiB cost the server as much to decrypt and parse as thousands of small ones, within the frame
/// count: a SETTINGS frame of 174,762 settings (the most the 1 MiB maximum frame size holds) is refused from
/// its header, and frames of a type HTTP/2 does not define, 64 KiB each, run out the bytes allowed.
#[tokio::test]
async fn large_control_frames_end_in_enhance_your_calm() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let addr = serve(server(&mesh, ServerLimits::default()), move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        let floods: [(&str, Vec<u8>, usize); 2] = [
            ("1 MiB SETTINGS", frame(SETTINGS, 0, 0, &unknown_settings(174_762)), 8),
            ("64 KiB frames of an unknown type", frame(0xfa, 0, 0, &[0; 64 * 1024]), 200),
        ];
        for (name, one, count) in floods {
            let tls = raw_tls(&mesh, addr).await;
            let (mut r, mut w) = tokio::io::split(tls);
            let writer = tokio::spawn(async move {
                let _ = w.write_all(PREFACE).await;
                let _ = w.write_all(&frame(SETTINGS, 0, 0, &[])).await;
                for _ in 0..count {
                    if w.write_all(&one).await.is_err() {
                        return;
                    }
                }
            });
            let started = tokio::time::Instant::now();
            let code = tokio::time::timeout(Duration::from_secs(3), goaway_code(&mut r)).await;
            assert_eq!(code, Ok(Some(ENHANCE_YOUR_CALM)), "{name}: not cut off within 3 s");
            // 1 MiB of burst, then 256 KiB a second: the unknown frames are cut off after about 1.3 MiB.
            assert!(started.elapsed() < Duration::from_secs(2), "{name}: cut off after {:?}", started.elapsed());
            writer.abort();
        }
    })
    .await;
}

/// A peer that sends small control frames for 2 s, below the rates but beyond both bursts (so only the
/// refill keeps it within them), gets every SETTINGS and PING acknowledged and no GOAWAY.
#[tokio::test]
async fn small_control_frames_within_the_limits_are_served() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let limits = ServerLimits {
            control_frames_per_second: 1_000,
            control_frame_burst: 200,
            control_frame_bytes_per_second: 16 * 1024,
            control_frame_byte_burst: 4 * 1024,
            ..ServerLimits::default()
        };
        let (addr, _served) = serve_one(server(&mesh, limits), move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        let (mut r, mut w) = tokio::io::split(raw_tls(&mesh, addr).await);
        // Counts the SETTINGS ACKs and PING ACKs the server sends, and any GOAWAY.
        let acks = Arc::new(Mutex::new((0usize, 0usize, None)));
        let counted = Arc::clone(&acks);
        tokio::spawn(async move {
            loop {
                let mut head = [0u8; 9];
                if r.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0; len];
                if r.read_exact(&mut payload).await.is_err() {
                    return;
                }
                let mut acks = counted.lock().unwrap();
                match (head[3], head[4] & ACK) {
                    (SETTINGS, ACK) => acks.0 += 1,
                    (PING, ACK) => acks.1 += 1,
                    (GOAWAY, _) => acks.2 = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
                    _ => {}
                }
            }
        });
        // Six settings, as a client's first SETTINGS has.
        let settings: Vec<u8> = [(1u16, 4096u32), (2, 0), (3, 100), (4, 65_535), (5, 16_384), (6, 16_384)]
            .iter()
            .flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes()))
            .collect();
        w.write_all(PREFACE).await.unwrap();
        w.write_all(&frame(SETTINGS, 0, 0, &settings)).await.unwrap();
        // Every 20 ms, 92 bytes in 4 frames: 200 frames and 4.6 KB a second, 400 frames and 9.2 KB in all.
        const ROUNDS: usize = 100;
        for round in 0..ROUNDS {
            let mut frames = frame(SETTINGS, 0, 0, &settings);
            frames.extend(frame(PING, 0, 0, &(2 * round as u64).to_be_bytes()));
            frames.extend(frame(PING, 0, 0, &(2 * round as u64 + 1).to_be_bytes()));
            frames.extend(frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()));
            w.write_all(&frames).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eventually("every SETTINGS and PING acknowledged", || {
            let acks = acks.lock().unwrap();
            acks.2.is_some() || (acks.0, acks.1) == (ROUNDS + 1, 2 * ROUNDS)
        })
        .await;
        let acks = acks.lock().unwrap();
        assert_eq!(acks.2, None, "GOAWAY");
        assert_eq!((acks.0, acks.1), (ROUNDS + 1, 2 * ROUNDS));
    })
    .await;
}

/// A client refuses an oversized SETTINGS frame from a server as a server does from a client.
#[tokio::test]
async fn a_client_drops_a_connection_sent_an_oversized_settings_frame() {
    with_timeout(async {
        let mesh = Mesh::new();
        let addr = hostile_server(&mesh, frame(SETTINGS, 0, 0, &unknown_settings(174_762)), 1).await;
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let dest = destination(addr);
        // The server never answers the CONNECT; keepalive would end the wait only after 20 s.
        let waited = tokio::time::timeout(Duration::from_secs(5), client.connect(&dest, ConnectRequest::new(target)));
        let error = waited.await.expect("the oversized SETTINGS frame was taken").unwrap_err();
        assert!(matches!(error, ClientError::H2 { .. }), "{error}");
    })
    .await;
}

/// An upstream that sends `bytes` of [`pattern`] and then resets its connection (RST, not FIN).
async fn failing_upstream(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                socket.write_all(&pattern(bytes)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                socket.set_zero_linger().unwrap();
                drop(socket);
            });
        }
    });
    addr
}

fn reset_reason(error: &io::Error) -> Option<h2::Reason> {
    error.get_ref()?.downcast_ref::<TunnelReset>().map(|reset| reset.reason)
}

#[tokio::test]
async fn an_upstream_failure_is_an_error_at_the_client_not_an_end_of_stream() {
    with_timeout(async {
        let mesh = Mesh::new();
        let upstream = failing_upstream(10_000).await;
        let addr = serve(server(&mesh, ServerLimits::default()), |request: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(request.target).await.unwrap())
        })
        .await;
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let mut tunnel = client.connect(&destination(addr), ConnectRequest::new(upstream)).await.unwrap().stream;
        let mut got = Vec::new();
        let error = tunnel.read_to_end(&mut got).await.expect_err("a truncated transfer read as complete");
        assert!(got.len() <= 10_000);
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        assert_eq!(reset_reason(&error), Some(h2::Reason::CONNECT_ERROR), "{error}");

        // A client proxy relaying the tunnel to its workload gets the same error from `relay`.
        let mut tunnel = client.connect(&destination(addr), ConnectRequest::new(upstream)).await.unwrap().stream;
        let (mut proxy_side, mut workload) = tokio::io::duplex(64 * 1024);
        let relaying = tokio::spawn(async move { relay(&mut tunnel, &mut proxy_side).await });
        let mut seen = Vec::new();
        let _ = workload.read_to_end(&mut seen).await;
        let error = relaying.await.unwrap().expect_err("relay reported a truncated tunnel as done");
        assert_eq!(reset_reason(&error), Some(h2::Reason::CONNECT_ERROR), "{error}");
    })
    .await;
}

#[tokio::test]
async fn refused_handshakes_get_an_alert_naming_the_reason() {
    with_timeout(async {
        // A CA from three hours ago, so that it can have issued a certificate that has expired since.
        let hours_ago = |h: u64| UnixTime::since_unix_epoch(Duration::from_secs(UnixTime::now().as_secs() - h * 3600));
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = LocalCa::new_root(td, &CaOptions::default(), hours_ago(3)).unwrap();
        let bundles = Arc::new([ca.trust_bundle().clone()].into_iter().collect());
        let mesh = Mesh { ca, bundles };
        let echo = echo_server().await;
        let addr = serve(server(&mesh, ServerLimits::default()), move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        // The server verifies the client's certificate after the client has finished its side of the TLS 1.3
        // handshake: the alert arrives on the client's first read.
        async fn alert(mesh: &Mesh, own: &WorkloadCertificate, addr: SocketAddr) -> String {
            let error = match tls_as(mesh, own, addr).await {
                Err(error) => error,
                Ok(mut tls) => {
                    tls.write_all(PREFACE).await.unwrap();
                    let mut buf = [0u8; 64];
                    tls.read(&mut buf).await.expect_err("a refused client can read nothing")
                }
            };
            error.to_string()
        }
        let issue = |ca: &LocalCa, ttl_h: u64, at: UnixTime| {
            let id = IstioIdentity::new(ca.trust_domain(), "default", "client").unwrap();
            let svid = ca.issue(&id, Duration::from_secs(ttl_h * 3600), at).unwrap();
            WorkloadCertificate::from_pem(&svid.cert_chain_pem(), &svid.private_key_pem().unwrap()).unwrap()
        };
        let expired = issue(&mesh.ca, 1, hours_ago(2));
        let message = alert(&mesh, &expired, addr).await;
        assert!(message.contains("received fatal alert: CertificateExpired"), "expired: {message}");
        // Another CA with the same name: its signature on the client's certificate does not verify.
        let stranger = Mesh::new();
        let message = alert(&mesh, &stranger.workload("client"), addr).await;
        assert!(message.contains("received fatal alert: DecryptError"), "another CA: {message}");
        // A trust domain the server does not accept.
        let elsewhere =
            LocalCa::new_root(TrustDomain::new("elsewhere.example").unwrap(), &CaOptions::default(), hours_ago(1))
                .unwrap();
        let message = alert(&mesh, &issue(&elsewhere, 1, UnixTime::now()), addr).await;
        assert!(message.contains("received fatal alert: CertificateUnknown"), "another trust domain: {message}");
        // And a client the server accepts still gets through.
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let tunnel = client.connect(&destination(addr), ConnectRequest::new(echo)).await.unwrap();
        assert_eq!(common::round_trip(tunnel.stream, b"trusted".to_vec()).await, b"trusted");
    })
    .await;
}

/// A hostile HBONE server: on each connection, completes TLS, sends SETTINGS and then `frames` (in a loop
/// `rounds` times, 20 ms apart), never reads anything, and never closes.
async fn hostile_server(mesh: &Mesh, frames: Vec<u8>, rounds: usize) -> SocketAddr {
    let config =
        server_config(&mesh.workload("server"), Arc::clone(&mesh.bundles), [mesh.ca.trust_domain().clone()]).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frames = Bytes::from(frames);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, frames) = (acceptor.clone(), frames.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                // Lets the client finish its side of the handshake first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tls.write_all(&frame(SETTINGS, 0, 0, &[])).await;
                for _ in 0..rounds {
                    if tls.write_all(&frames).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // Holds the connection open, unread, until the test ends.
                std::future::pending::<()>().await;
                drop(tls);
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_client_is_not_kept_alive_by_blind_ping_acks() {
    with_timeout(async {
        let mesh = Mesh::new();
        let addr = hostile_server(&mesh, frame(PING, ACK, 0, &H2_USER_PING), 250).await;
        let config = ClientConfig { settings: keepalive(100, 200), ..ClientConfig::default() };
        let client = HboneClient::with_config(mesh.workload("client"), Arc::clone(&mesh.bundles), config);
        // The server never answers the CONNECT; only the keepalive can end the wait.
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let dest = destination(addr);
        let waited = tokio::time::timeout(Duration::from_secs(5), client.connect(&dest, ConnectRequest::new(target)));
        let error = waited.await.expect("blind PING ACKs kept the connection alive").unwrap_err();
        assert!(matches!(error, ClientError::H2 { .. }), "{error}");
    })
    .await;
}

#[tokio::test]
async fn a_client_drops_a_connection_flooded_with_control_frames() {
    with_timeout(async {
        let mesh = Mesh::new();
        let flood: Vec<u8> = (0..2_000).flat_map(|_| frame(PING, 0, 0, &[7; 8])).collect();
        let addr = hostile_server(&mesh, flood, 100).await;
        let client = HboneClient::new(mesh.workload("client"), Arc::clone(&mesh.bundles));
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let dest = destination(addr);
        let waited = tokio::time::timeout(Duration::from_secs(10), client.connect(&dest, ConnectRequest::new(target)));
        let error = waited.await.expect("the flood was not stopped").unwrap_err();
        assert!(matches!(error, ClientError::H2 { .. }), "{error}");
    })
    .await;
}

#[tokio::test]
async fn an_idle_peer_that_ignores_the_goaway_is_dropped() {
    with_timeout(async {
        let mesh = Mesh::new();
        let echo = echo_server().await;
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(200),
            shutdown_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let (addr, served) = serve_one(server(&mesh, limits), move |_: InboundRequest| async move {
            Ok::<_, Rejection>(TcpStream::connect(echo).await.unwrap())
        })
        .await;
        let mut tls = raw_tls(&mesh, addr).await;
        tls.write_all(PREFACE).await.unwrap();
        tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        tls.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        // Opens no stream, then neither reads nor closes: the GOAWAY's PING is never acknowledged, so h2 alone
        // would wait for ever (keepalive only speaks after 10 s).
        tokio::time::timeout(Duration::from_secs(5), served).await.expect("the idle connection is still held").unwrap();
        drop(tls);
    })
    .await;
}
