//! The node proxies' data path against direct TCP, in the same run: two `mesh-ztunnel` processes on loopback
//! (client → SOCKS5 → node proxy → HBONE → node proxy → backend) and the same backend dialled directly.
//!
//! - `throughput`: 8 MiB one way, then a one-byte answer.
//! - `latency`: a 1 KiB request and its 1 KiB echo on an open connection (criterion's median is the p50).
//! - `setup`: a new connection and the backend's first byte.
//! - `setup-during-reload`: `setup` with 10,000 policies in force, quiet, then while the configuration is
//!   rewritten (and the 10,000 policies parsed and compiled again) about three times a second: reloads run off
//!   the threads that carry traffic, so what remains is the CPU they take from it.
//! - Then the proxies' resident memory idle and with 10,000 open tunnels, printed (not a criterion figure).

// A failed setup ends the run with a message: there is nothing to measure.
#![allow(clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use support::{Block, Setup, To, socks5};

const BLOCK: u8 = 40;
const PAYLOAD: usize = 8 << 20;

const CLUSTER: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client-0, namespace: bench, labels: {app: client}}
spec: {serviceAccountName: client, nodeName: node-a}
status: {phase: Running, podIP: 127.40.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: server-0, namespace: bench, labels: {app: server}}
spec: {serviceAccountName: server, nodeName: node-b}
status: {phase: Running, podIP: 127.40.2.20}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: bench}
spec:
  clusterIP: 127.40.100.20
  selector: {app: server}
  ports: [{name: tcp, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: idle-0, namespace: bench, labels: {app: idle}}
spec: {serviceAccountName: server, nodeName: node-b}
status: {phase: Running, podIP: 127.40.2.21}
---
apiVersion: v1
kind: Service
metadata: {name: idle, namespace: bench}
spec:
  clusterIP: 127.40.100.21
  selector: {app: idle}
  ports: [{name: tcp, port: 80, targetPort: 8080}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: server-allow, namespace: bench}
spec:
  selector: {matchLabels: {app: server}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/bench/sa/client"]}}], to: [{operation: {ports: ["8080"]}}]}]
"#;

/// The backend: one greeting byte, then per connection either a sink (a first byte `T`: read PAYLOAD bytes,
/// answer one byte) or an echo.
fn backend(addr: SocketAddr) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                if s.write_all(b"!").is_err() {
                    return;
                }
                let mut buf = vec![0u8; 256 * 1024];
                let mut sinking: Option<usize> = None;
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    match sinking {
                        None if buf[0] == b'T' => sinking = Some(n),
                        None => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                            continue;
                        }
                        Some(ref mut got) => *got += n,
                    }
                    if sinking.is_some_and(|got| got >= PAYLOAD) {
                        if s.write_all(b".").is_err() {
                            return;
                        }
                        sinking = None;
                    }
                }
            });
        }
    });
    Ok(())
}

/// The backend of the memory phase, in a process of its own: 10,000 connections are more descriptors than
/// this process may hold beside its own 10,000 clients.
const IDLE_BACKEND: &str = r#"
import asyncio
async def serve(r, w):
    w.write(b"!")
    try:
        await w.drain()
        while await r.read(65536):
            pass
    except Exception:
        pass
    w.close()
async def main():
    server = await asyncio.start_server(serve, "127.40.2.21", 8080, backlog=4096)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

fn read_one(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    let _ = s.read_exact(&mut b);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let b = Block(BLOCK);
    let setup = match Setup::new(BLOCK, CLUSTER) {
        Ok(s) => s,
        Err(e) => return eprintln!("cannot set up: {e}"),
    };
    let direct = SocketAddr::new(b.ip(2, 20), 8080);
    if let Err(e) = backend(direct) {
        return eprintln!("cannot bind the backend: {e}");
    }
    let raise = ["--drain-timeout", "1s"];
    let (a, node_b) = match (setup.node("node-a", 1, &raise), setup.node("node-b", 2, &raise)) {
        (Ok(a), Ok(nb)) => (a, nb),
        (Err(e), _) | (_, Err(e)) => return eprintln!("cannot start the node proxies: {e}"),
    };
    let source = b.ip(1, 10);
    let proxied = || -> TcpStream {
        let mut s = match socks5(a.socks5(), source, To::Addr(SocketAddr::new(b.ip(100, 20), 80))) {
            Ok(Ok(s)) => s,
            other => panic!("proxied connect failed: {:?}", other.map(|r| r.err())),
        };
        let _ = s.set_nodelay(true);
        read_one(&mut s);
        s
    };
    let plain = || -> TcpStream {
        let mut s = TcpStream::connect(direct).unwrap_or_else(|e| panic!("direct connect failed: {e}"));
        let _ = s.set_nodelay(true);
        read_one(&mut s);
        s
    };

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(4)).sample_size(20);
    let chunk = vec![b'T'; 64 * 1024];
    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    for (name, connect) in [("direct", &plain as &dyn Fn() -> TcpStream), ("node-proxies", &proxied)] {
        let mut s = connect();
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let mut sent = 0;
                while sent < PAYLOAD {
                    let n = chunk.len().min(PAYLOAD - sent);
                    if s.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                read_one(&mut s);
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("latency-1KiB");
    let request = vec![b'r'; 1024];
    let mut answer = vec![0u8; 1024];
    for (name, connect) in [("direct", &plain as &dyn Fn() -> TcpStream), ("node-proxies", &proxied)] {
        let mut s = connect();
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let _ = s.write_all(&request);
                let _ = s.read_exact(&mut answer);
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("setup");
    for (name, connect) in [("direct", &plain as &dyn Fn() -> TcpStream), ("node-proxies", &proxied)] {
        group.bench_function(name, |bench| bench.iter(connect));
    }
    group.finish();

    // Memory: idle, then with 10,000 tunnels open (100 when run as a test, by `cargo test --all-targets`).
    let full = std::env::args().any(|a| a == "--bench");
    let tunnels = if full { 10_000 } else { 100 };
    std::thread::sleep(Duration::from_millis(500));
    let (idle_a, idle_b) = (rss_kib(a.child.id()), rss_kib(node_b.child.id()));
    let idle_backend = Command::new("python3").args(["-c", IDLE_BACKEND]).spawn();
    std::thread::sleep(Duration::from_millis(500));
    let mut open = Vec::new();
    for _ in 0..tunnels {
        match socks5(a.socks5(), source, To::Addr(SocketAddr::new(b.ip(100, 21), 80))) {
            Ok(Ok(mut s)) => {
                read_one(&mut s);
                open.push(s);
            }
            _ => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (busy_a, busy_b) = (rss_kib(a.child.id()), rss_kib(node_b.child.id()));
    println!("rss idle: node-a {:.1} MB, node-b {:.1} MB", idle_a as f64 / 1024.0, idle_b as f64 / 1024.0);
    println!(
        "rss with {} open tunnels: node-a {:.1} MB, node-b {:.1} MB",
        open.len(),
        busy_a as f64 / 1024.0,
        busy_b as f64 / 1024.0
    );
    drop(open);
    if let Ok(mut backend) = idle_backend {
        let _ = backend.kill();
        let _ = backend.wait();
    }

    // Setup while 10,000 policies (100 when run as a test) are reloaded again and again.
    let policies = |variant: usize| -> String {
        (0..if full { 10_000 } else { 100 })
            .map(|i| {
                format!(
                    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}, namespace: bench}}\nspec:\n  selector: {{matchLabels: {{app: other{i}}}}}\n  rules: [{{from: [{{source: {{principals: [\"cluster.local/ns/bench/sa/v{variant}\"]}}}}]}}]\n---\n"
                )
            })
            .collect()
    };
    let generation = node_b.generation().unwrap_or(0);
    setup.write_config("many.yaml", &policies(0)).unwrap_or_else(|e| panic!("cannot write policies: {e}"));
    // Both proxies must have loaded them: "quiet" means no reload under way anywhere.
    for node in [&a, &node_b] {
        if let Err(e) = node.wait_generation_past(generation) {
            panic!("the policies were not loaded: {e}");
        }
    }
    let mut group = c.benchmark_group("setup-during-reload");
    group.bench_function("quiet", |bench| bench.iter(proxied));
    let rewriting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let rewriting = std::sync::Arc::clone(&rewriting);
        let dir = setup.config_dir();
        let texts = [policies(1), policies(2)];
        std::thread::spawn(move || {
            let mut i = 0;
            while rewriting.load(std::sync::atomic::Ordering::Relaxed) {
                // Replaced by rename, as operators are told to.
                let tmp = dir.join(".many.yaml.tmp");
                if std::fs::write(&tmp, &texts[i % 2])
                    .and_then(|()| std::fs::rename(&tmp, dir.join("many.yaml")))
                    .is_err()
                {
                    break;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            i
        })
    };
    group.bench_function("reloading", |bench| bench.iter(proxied));
    rewriting.store(false, std::sync::atomic::Ordering::Relaxed);
    let rewrites = writer.join().unwrap_or(0);
    group.finish();
    let reloads = node_b.generation().unwrap_or(0).saturating_sub(generation);
    println!("setup-during-reload: {rewrites} rewrites, node-b reached generation +{reloads}");
    c.final_summary();
}
