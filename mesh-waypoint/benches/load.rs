//! A load generator for the waypoint binary on loopback: client node proxy → waypoint → destination node proxy
//! → backend, with the payments policies and a cached JWT, against the same path with no policy for the
//! service, and against the backend direct, in the same run. Prints requests/s, p50 and p99 latency and the
//! ratios, and the waypoint's resident memory after the load.
//!
//! `cargo bench -p mesh-waypoint --bench load` (bounded: a few thousand requests per round, at most 20 s each).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connections (each one tunnel, requests in sequence on it).
const CONCURRENCY: usize = 8;

/// The size of a run: full under `cargo bench`, a quick pass under `cargo test` (which runs benches once).
#[derive(Clone, Copy)]
struct Size {
    /// Requests per round.
    requests: usize,
    /// Rounds per path, interleaved.
    rounds: usize,
    /// Iterations of the policy step.
    policy_iterations: u32,
}

fn size() -> Size {
    if std::env::args().any(|a| a == "--bench") {
        Size { requests: 4000, rounds: 6, policy_iterations: 50_000 }
    } else {
        Size { requests: 80, rounds: 1, policy_iterations: 100 }
    }
}
/// The longest one round may take.
const ROUND_LIMIT: Duration = Duration::from_secs(20);

/// Where a round sends its requests.
enum Path<'a> {
    /// Through the waypoint.
    Waypoint(&'a ClientProxy, SocketAddr),
    /// Straight to the backend.
    Direct(SocketAddr),
}

/// One round: requests/s and every latency.
async fn round(path: &Path<'_>, token: &str, requests: usize) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let io: Box<dyn IoStream> = match path {
            Path::Waypoint(client, authority) => Box::new(client.tunnel(*authority).await.unwrap()),
            Path::Direct(addr) => Box::new(TcpStream::connect(addr).await.unwrap()),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
        tokio::spawn(connection);
        let token = token.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests / CONCURRENCY);
            for _ in 0..requests / CONCURRENCY {
                if started.elapsed() > ROUND_LIMIT {
                    break;
                }
                let request = debit("POST", Some(&token));
                let t = Instant::now();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, all)
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> IoStream for T {}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// The L4 policy only: the waypoint applies nothing to the ledger.
fn no_waypoint_policy() -> String {
    policies_yaml(JwksFrom::Inline("{}"), true)
        .split("\n---\n")
        .filter(|doc| doc.contains("ledger-allow-l4") || doc.contains("payments-default-deny"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The policy step alone, in process: µs per `authorize_request` (RequestAuthentication with the token in the
/// verified-token cache, then AuthorizationPolicy) for a request to the ledger, with the manifests `policies`.
fn policy_step(net: Net, policies: &str, token: &str, iterations: u32) -> f64 {
    use mesh_identity::spiffe::IstioIdentity;
    use mesh_policy::proxy::{Connection, HttpView, Request as PolicyRequest, Target};

    let mut mesh = mesh_policy::Mesh::default();
    mesh.apply_yaml(&format!("{}---\n{policies}", cluster_yaml(net))).unwrap();
    let snapshot = mesh.snapshot();
    let cluster = snapshot.cluster();
    let ledger = cluster.workload(cluster.workload_by_ip(net.ledger()).unwrap()).unwrap();
    let peer = IstioIdentity::parse_principal("cluster.local/ns/payments/sa/accounts").unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers.insert("host", "ledger.payments".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let now = mesh_runtime::unix_now();
    let started = Instant::now();
    for _ in 0..iterations {
        let target = Target::new("payments", &ledger.labels)
            .with_service("ledger")
            .with_waypoint("payments", "payments-waypoint")
            .with_ip(net.ledger())
            .with_port(LEDGER_PORT);
        let connection = Connection::new(target).with_peer(&peer).with_source_ip(net.accounts());
        let view =
            HttpView { method: "POST", path: "/ledger/v1/debit", host: Some("ledger.payments"), headers: &headers };
        let decision = snapshot.authorize_request(&PolicyRequest::new(connection, view), now).unwrap();
        assert!(decision.allowed);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let size = size();
    runtime.block_on(async {
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let token = idp.token(&["ledger.debit"], false);
        let with_policy = policies_yaml(JwksFrom::Inline(&idp.jwks()), true);
        let without = no_waypoint_policy();
        let mut setups = Vec::new();
        for (net, policies) in [(Net(40), &with_policy), (Net(41), &without)] {
            let config = config_dir(net, policies);
            let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
            let waypoint = Waypoint::start(net, &pki, config.path(), node.port, &[]).await;
            let client = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
            setups.push((config, node, waypoint, client, SocketAddr::new(net.ledger_vip(), LEDGER_PORT)));
        }
        let direct = setups[0].1.backend;
        // Warm up each path (connections, caches), then interleave the rounds.
        let paths = [
            ("waypoint, policy + cached JWT", Path::Waypoint(&setups[0].3, setups[0].4)),
            ("waypoint, no policy", Path::Waypoint(&setups[1].3, setups[1].4)),
            ("backend direct", Path::Direct(direct)),
        ];
        for (_, path) in &paths {
            round(path, &token, size.requests).await;
        }
        let mut results: Vec<(f64, Vec<Duration>)> = paths.iter().map(|_| (0.0, Vec::new())).collect();
        for _ in 0..size.rounds {
            for (i, (_, path)) in paths.iter().enumerate() {
                let (rate, latencies) = round(path, &token, size.requests).await;
                results[i].0 += rate / size.rounds as f64;
                results[i].1.extend(latencies);
            }
        }
        let baseline = results[1].0;
        if size.rounds == 1 {
            println!("(a quick pass under cargo test, to check the generator works: not a measurement)");
        }
        println!(
            "{CONCURRENCY} connections, {} rounds of {} HTTP/1.1 POSTs each, on loopback",
            size.rounds, size.requests
        );
        println!("{:<32} {:>10} {:>10} {:>10} {:>14}", "path", "req/s", "p50 µs", "p99 µs", "req/s ratio");
        for (i, (name, _)) in paths.iter().enumerate() {
            let (rate, latencies) = &mut results[i];
            latencies.sort();
            println!(
                "{name:<32} {rate:>10.0} {:>10} {:>10} {:>14.3}",
                percentile(latencies, 0.5).as_micros(),
                percentile(latencies, 0.99).as_micros(),
                *rate / baseline
            );
        }
        let (p50_on, p50_off) = (percentile(&results[0].1, 0.5), percentile(&results[1].1, 0.5));
        println!(
            "policy + JWT vs no policy: p50 ratio {:.3} (difference {} µs per request)",
            p50_on.as_secs_f64() / p50_off.as_secs_f64(),
            p50_on.as_micros() as i128 - p50_off.as_micros() as i128
        );
        let (on, off) = (policy_step(Net(40), &with_policy, &token, size.policy_iterations),
            policy_step(Net(41), &without, &token, size.policy_iterations),);
        println!(
            "policy step in process: {on:.2} µs with policy + cached JWT, {off:.2} µs with none (ratio {:.2}, +{:.2} µs)",
            on / off,
            on - off
        );
        for (name, setup) in ["policy + cached JWT", "no policy"].iter().zip(&setups) {
            println!("waypoint RSS after the load ({name}): {} KiB", setup.2.rss_kib().unwrap_or(0));
        }
    });
}
