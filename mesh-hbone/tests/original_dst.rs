//! `original_dst` on connections that iptables really redirected: in a fresh network namespace (loopback only)
//! with `REDIRECT` rules in the nat table's OUTPUT chain. Needs root, `ip`, `iptables` and `ip6tables`; without
//! them the test says why and does nothing.
//!
//! The test re-runs its own binary inside the namespace (`ip netns exec`), where the child connects to a
//! redirected port and checks what `original_dst` reports on the accepted side.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use mesh_hbone::transport::original_dst;
use tokio::net::{TcpListener, TcpStream};

/// Set in the child that runs inside the namespace.
const IN_NAMESPACE: &str = "MESH_HBONE_ORIGINAL_DST_NETNS";
/// The port the workload dials and the proxy's capture port.
const DIALLED: u16 = 8080;
const CAPTURE: u16 = 15001;
const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn redirected_connections_report_the_dialled_address() {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return in_namespace();
    }
    if let Some(reason) = missing_prerequisite() {
        println!("skipped: {reason}");
        return;
    }
    let name = format!("mesh-odst-{}", std::process::id());
    let Some(namespace) = Namespace::create(&name) else {
        println!("skipped: `ip netns add {name}` failed (no permission to create network namespaces here)");
        return;
    };
    namespace.run("ip", &["link", "set", "lo", "up"]);
    for (tool, loopback) in [("iptables", "127.0.0.1"), ("ip6tables", "::1")] {
        let (dialled, capture) = (DIALLED.to_string(), CAPTURE.to_string());
        let rule = ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", loopback, "--dport", &dialled];
        namespace.run(tool, &[&rule[..], &["-j", "REDIRECT", "--to-ports", &capture]].concat());
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(exe)
        .args(["--exact", "redirected_connections_report_the_dialled_address", "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // The child ran the checks (and did not skip or filter itself out).
    assert!(stdout.contains("checked in namespace"), "{stdout}");
}

/// Inside the namespace: a capture listener per family, one redirected and one direct connection each.
fn in_namespace() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        for loopback in ["127.0.0.1", "::1"] {
            let at = |port: u16| SocketAddr::new(loopback.parse().unwrap(), port);
            let capture = TcpListener::bind(at(CAPTURE)).await.unwrap();

            // The workload dials DIALLED; the rule sends it to the capture port, which recovers DIALLED.
            let (accepted, client) = accept_from(&capture, at(DIALLED)).await;
            assert_eq!(client.peer_addr().unwrap(), at(DIALLED), "the client still sees the address it dialled");
            assert_eq!(accepted.local_addr().unwrap(), at(CAPTURE));
            assert_eq!(original_dst(&accepted).unwrap(), at(DIALLED));

            // A connection to the capture port itself is tracked but not translated.
            let (accepted, _client) = accept_from(&capture, at(CAPTURE)).await;
            assert_eq!(original_dst(&accepted).unwrap(), at(CAPTURE));
        }
    });
    println!("checked in namespace");
}

async fn accept_from(listener: &TcpListener, dial: SocketAddr) -> (TcpStream, TcpStream) {
    let (client, accepted) =
        tokio::time::timeout(LIMIT, async { tokio::join!(TcpStream::connect(dial), listener.accept()) })
            .await
            .expect("connect and accept in time");
    (accepted.unwrap().0, client.unwrap())
}

/// What is missing to run the test, if anything.
fn missing_prerequisite() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("not running as root (network namespaces and iptables rules need it)".into());
    }
    for (tool, arg) in [("ip", "-V"), ("iptables", "--version"), ("ip6tables", "--version")] {
        let ran = Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !ran.is_ok_and(|s| s.success()) {
            return Some(format!("`{tool}` is not available"));
        }
    }
    None
}

/// A network namespace, deleted on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create(name: &str) -> Option<Self> {
        let status = Command::new("ip").args(["netns", "add", name]).stderr(Stdio::null()).status().ok()?;
        status.success().then(|| Namespace { name: name.to_owned() })
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = Command::new("ip").args(["netns", "exec", &self.name, tool]).args(args).output().unwrap();
        assert!(output.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
