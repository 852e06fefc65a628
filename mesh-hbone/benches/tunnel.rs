//! HBONE on loopback against plain TCP, in one run so the ratios can be read off one report:
//!
//! - `throughput`: a bulk upload through one HBONE hop (client → HBONE server → TCP sink) vs straight to the
//!   sink over TCP, with 1 and 8 concurrent streams. The 8 HBONE streams share one pooled connection, as
//!   ztunnel's do; the 8 TCP streams are 8 connections. `tcp_relay` goes through a plain TCP relay to the
//!   sink: the extra hop without TLS and HTTP/2, to tell the cost of the hop from the cost of the protocol. `HBONE_BENCH_MIB` sets the bytes moved per iteration
//!   (default 256; 4 when the bench runs once as a test).
//! - `latency_1k`: a 1 KiB request and its 1 KiB echo through an established tunnel vs an established TCP
//!   connection. In bench mode, p50/p99 of single round trips are printed after the group.
//! - `connect`: a new mTLS + HTTP/2 connection and one CONNECT (the server dials the upstream before it
//!   answers 200) vs a TCP connect.
//!
//! Client, server and upstreams share one multi-threaded tokio runtime.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mesh_hbone::ConnectRequest;
use mesh_hbone::Rejection;
use mesh_hbone::transport::{Destination, HboneClient, HboneServer, HboneStream, InboundRequest};
use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::tls::WorkloadCertificate;
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const MIB: usize = 1024 * 1024;
/// What the client hands to each write of a bulk transfer.
const WRITE_CHUNK: usize = 256 * 1024;
const MESSAGE: usize = 1024;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs each benchmark once without it.
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether criterion's name filter (the positional arguments) selects benchmarks of `group`.
fn selected(group: &str) -> bool {
    const SWITCHES: [&str; 9] =
        ["--bench", "--test", "--noplot", "--list", "--exact", "--verbose", "--quiet", "--quick", "--discard-baseline"];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.starts_with("--") {
            // An option other than a switch takes the next argument as its value (unless written with `=`).
            if !SWITCHES.contains(&arg.as_str()) && !arg.contains('=') {
                i += 1;
            }
        } else if !arg.starts_with('-') {
            filters.push(arg.clone());
        }
        i += 1;
    }
    filters.is_empty() || filters.iter().any(|f| group.contains(f.as_str()) || f.starts_with(group))
}

fn transfer_bytes() -> usize {
    let default = if bench_mode() { 256 } else { 4 };
    let mib = std::env::var("HBONE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    mib * MIB
}

struct Fixture {
    rt: Runtime,
    /// Reads to EOF, then closes.
    sink: SocketAddr,
    /// Echoes until EOF.
    echo: SocketAddr,
    /// Reads a big-endian u64 byte count, sends that many bytes, then closes.
    source: SocketAddr,
    /// A plain TCP relay to the sink: the extra hop of HBONE without TLS and HTTP/2.
    relay: SocketAddr,
    hbone: Destination,
    client_cert: WorkloadCertificate,
    bundles: Arc<TrustBundleSet>,
    /// A pooled client whose connection stays warm between iterations.
    client: HboneClient,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let now = UnixTime::now();
    let td = TrustDomain::new("cluster.local").unwrap();
    let ca = LocalCa::new_root(td.clone(), &CaOptions::default(), now).unwrap();
    let bundles: Arc<TrustBundleSet> = Arc::new([ca.trust_bundle().clone()].into_iter().collect());
    let svid = |sa: &str| {
        let svid = ca.issue(&IstioIdentity::new(&td, "bench", sa).unwrap(), Duration::from_secs(86_400), now).unwrap();
        WorkloadCertificate::from_pem(&svid.cert_chain_pem(), &svid.private_key_pem().unwrap()).unwrap()
    };
    let server = HboneServer::new(&svid("server"), Arc::clone(&bundles), [td.clone()]).unwrap();
    let client_cert = svid("client");
    let (sink, echo, source, relay, hbone) = rt.block_on(async {
        let sink = serve_tcp(|mut socket| async move {
            let mut buf = vec![0; WRITE_CHUNK];
            while socket.read(&mut buf).await.unwrap_or(0) > 0 {}
        })
        .await;
        let echo = serve_tcp(|mut socket| async move {
            let (mut r, mut w) = socket.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        })
        .await;
        let source = serve_tcp(|mut socket| async move {
            let mut count = [0u8; 8];
            socket.read_exact(&mut count).await.unwrap();
            let mut left = u64::from_be_bytes(count) as usize;
            let chunk = vec![0xa5; WRITE_CHUNK];
            while left > 0 {
                let n = left.min(WRITE_CHUNK);
                socket.write_all(&chunk[..n]).await.unwrap();
                left -= n;
            }
            socket.shutdown().await.unwrap();
        })
        .await;
        let relay = serve_tcp(move |mut socket| async move {
            let mut upstream = tcp(sink).await;
            let _ = tokio::io::copy_bidirectional_with_sizes(&mut socket, &mut upstream, 64 * 1024, 64 * 1024).await;
        })
        .await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hbone = listener.local_addr().unwrap();
        tokio::spawn(async move { server.serve(listener, upstream).await });
        (sink, echo, source, relay, hbone)
    });
    let id = SpiffeId::new("spiffe://cluster.local/ns/bench/sa/server").unwrap();
    let client = HboneClient::new(client_cert.clone(), Arc::clone(&bundles));
    Fixture {
        rt,
        sink,
        echo,
        source,
        relay,
        hbone: Destination { address: hbone, identities: vec![id] },
        client_cert,
        bundles,
        client,
    }
}

/// The HBONE server's handler: connect to the target.
async fn upstream(request: InboundRequest) -> Result<TcpStream, Rejection> {
    let stream = TcpStream::connect(request.target)
        .await
        .map_err(|e| Rejection::UpstreamConnect { target: request.target, reason: e.to_string() })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn serve_tcp<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { continue };
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve(socket));
        }
    });
    addr
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn hbone(client: &HboneClient, destination: &Destination, target: SocketAddr) -> HboneStream {
    client.connect(destination, ConnectRequest::new(target)).await.unwrap().stream
}

/// Runs `each` `iters` times, one after another, on the runtime; returns how long they all took.
fn timed(rt: &Runtime, iters: u64, mut each: impl AsyncFnMut()) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            each().await;
        }
        start.elapsed()
    })
}

/// Starts `streams` futures from `start`, each on its own task, and waits for all of them.
async fn concurrently<F>(streams: usize, mut start: impl FnMut() -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..streams).map(|_| tokio::spawn(start())).collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Writes `bytes`, half-closes and waits for the far end to close: everything was delivered.
async fn upload<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bytes: usize) {
    let chunk = vec![0x5a; WRITE_CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(WRITE_CHUNK);
        stream.write_all(&chunk[..n]).await.unwrap();
        left -= n;
    }
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
}

/// Asks for `bytes`, reads them to the end, and checks that all came.
async fn download<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bytes: usize) {
    stream.write_all(&(bytes as u64).to_be_bytes()).await.unwrap();
    let mut buf = vec![0; WRITE_CHUNK];
    let mut got = 0;
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, bytes);
}

async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8], response: &mut [u8]) {
    stream.write_all(request).await.unwrap();
    stream.read_exact(response).await.unwrap();
}

fn throughput(c: &mut Criterion, f: &Fixture) {
    let bytes = transfer_bytes();
    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for streams in [1usize, 8] {
        let each = bytes / streams;
        for (name, addr) in [("tcp", f.sink), ("tcp_relay", f.relay)] {
            group.bench_with_input(BenchmarkId::new(name, streams), &streams, |b, &streams| {
                b.iter_custom(|iters| {
                    timed(&f.rt, iters, async || {
                        concurrently(streams, || async move { upload(tcp(addr).await, each).await }).await;
                    })
                });
            });
        }
        group.bench_with_input(BenchmarkId::new("hbone", streams), &streams, |b, &streams| {
            b.iter_custom(|iters| {
                timed(&f.rt, iters, async || {
                    concurrently(streams, || {
                        let (client, destination, sink) = (f.client.clone(), f.hbone.clone(), f.sink);
                        async move { upload(hbone(&client, &destination, sink).await, each).await }
                    })
                    .await;
                })
            });
        });
        let source = f.source;
        group.bench_with_input(BenchmarkId::new("tcp_download", streams), &streams, |b, &streams| {
            b.iter_custom(|iters| {
                timed(&f.rt, iters, async || {
                    concurrently(streams, || async move { download(tcp(source).await, each).await }).await;
                })
            });
        });
        group.bench_with_input(BenchmarkId::new("hbone_download", streams), &streams, |b, &streams| {
            b.iter_custom(|iters| {
                timed(&f.rt, iters, async || {
                    concurrently(streams, || {
                        let (client, destination) = (f.client.clone(), f.hbone.clone());
                        async move { download(hbone(&client, &destination, source).await, each).await }
                    })
                    .await;
                })
            });
        });
    }
    group.finish();
}

fn latency(c: &mut Criterion, f: &Fixture) {
    let request = vec![0xa5; MESSAGE];
    let mut response = vec![0; MESSAGE];
    let mut tcp_stream = f.rt.block_on(tcp(f.echo));
    let mut hbone_stream = f.rt.block_on(hbone(&f.client, &f.hbone, f.echo));
    let mut group = c.benchmark_group("latency_1k");
    group.bench_function("tcp", |b| {
        b.iter_custom(|iters| timed(&f.rt, iters, async || round_trip(&mut tcp_stream, &request, &mut response).await));
    });
    group.bench_function("hbone", |b| {
        b.iter_custom(|iters| {
            timed(&f.rt, iters, async || round_trip(&mut hbone_stream, &request, &mut response).await)
        });
    });
    group.finish();
    if bench_mode() && selected("latency_1k") {
        // Criterion reports the distribution of per-sample means; these are single round trips.
        let tcp_p = f.rt.block_on(percentiles(&mut tcp_stream, &request, &mut response));
        let hbone_p = f.rt.block_on(percentiles(&mut hbone_stream, &request, &mut response));
        for (name, (p50, p99)) in [("tcp", tcp_p), ("hbone", hbone_p)] {
            println!("latency_1k/{name:<5} single round trips: p50 {p50:.1?}  p99 {p99:.1?}");
        }
    }
}

async fn percentiles<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    response: &mut [u8],
) -> (Duration, Duration) {
    let mut times: Vec<Duration> = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let start = Instant::now();
        round_trip(stream, request, response).await;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn connect(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("connect");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tcp", |b| {
        b.iter_custom(|iters| timed(&f.rt, iters, async || drop(tcp(f.echo).await)));
    });
    group.bench_function("hbone", |b| {
        b.iter_custom(|iters| {
            timed(&f.rt, iters, async || {
                // A fresh client has an empty pool: every iteration is TCP + mTLS + HTTP/2 + CONNECT.
                let client = HboneClient::new(f.client_cert.clone(), Arc::clone(&f.bundles));
                drop(hbone(&client, &f.hbone, f.echo).await);
            })
        });
    });
    group.finish();
}

fn main() {
    let fixture = fixture();
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c, &fixture);
    latency(&mut c, &fixture);
    connect(&mut c, &fixture);
    c.final_summary();
}
