//! Running node proxies as processes on loopback: a temporary configuration directory, a CA in Istio's
//! plug-in layout, backends standing in for Pods, and a SOCKS5 client bound to a Pod's address.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::rotation::Jitter;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::store::CertificateStore;
use rustls_pki_types::UnixTime;

pub mod inpod;
pub mod istiod;

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A test's address block: 127.<block>.0.0/16. Node proxies at .0.<n>, Pods of node n at .<n>.<x>.
#[derive(Debug, Clone, Copy)]
pub struct Block(pub u8);

impl Block {
    pub fn ip(self, third: u8, fourth: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, self.0, third, fourth))
    }
    pub fn node(self, n: u8) -> IpAddr {
        self.ip(0, n)
    }
}

/// A configuration directory and a CA directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub block: Block,
    pub ca: LocalCa,
}

impl Setup {
    pub fn new(block: u8, config: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("config"))?;
        std::fs::write(dir.path().join("config/mesh.yaml"), config)?;
        let td = TrustDomain::new("cluster.local")?;
        let ca = LocalCa::new_root(td, &CaOptions::default(), UnixTime::now())?;
        let files = ca.to_plugin_pem();
        std::fs::create_dir(dir.path().join("ca"))?;
        for (name, text) in [
            ("ca-cert.pem", &files.ca_cert),
            ("ca-key.pem", &files.ca_key),
            ("root-cert.pem", &files.root_cert),
            ("cert-chain.pem", &files.cert_chain),
        ] {
            std::fs::write(dir.path().join("ca").join(name), text)?;
        }
        Ok(Setup { dir, block: Block(block), ca })
    }

    /// A certificate store holding a certificate of `ns/sa` from the mesh CA, and its SPIFFE ID.
    pub fn identity(&self, ns: &str, sa: &str) -> Result<(CertificateStore, SpiffeId)> {
        let store = CertificateStore::new([self.ca.trust_bundle().clone()].into_iter().collect());
        let id = IstioIdentity::new(self.ca.trust_domain(), ns, sa)?;
        store.issue(&self.ca, &id, UnixTime::now(), Jitter::None)?;
        Ok((store, id.spiffe_id().clone()))
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Rewrites the configuration (the proxies poll every 100 ms).
    pub fn write_config(&self, name: &str, text: &str) -> Result {
        // A new modification time even within the same clock tick: the size changes or the name does.
        std::fs::write(self.config_dir().join(name), text)?;
        Ok(())
    }

    /// Starts the node proxy `name` at 127.<block>.0.<n>, reading the configuration directory.
    pub fn node(&self, name: &str, n: u8, extra: &[&str]) -> Result<NodeProxy> {
        let config = self.config_dir().into_os_string();
        self.node_from(name, n, &["--config".into(), config], extra)
    }

    /// Starts the node proxy `name` at 127.<block>.0.<n>, reading the configuration as `source` says.
    pub fn node_from(&self, name: &str, n: u8, source: &[std::ffi::OsString], extra: &[&str]) -> Result<NodeProxy> {
        let ip = self.block.node(n);
        let log = self.dir.path().join(format!("{name}.log"));
        // A benchmark may compare another build of the proxy in the same run (MESH_ZTUNNEL_BENCH_BIN).
        let binary = std::env::var_os("MESH_ZTUNNEL_BENCH_BIN")
            .filter(|_| cfg!(not(test)) || std::env::var_os("CI").is_none())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_mesh-ztunnel").into());
        // With istiod, or a CA named, certificates come from that CA (the test's double signs with the same CA).
        let remote = source.iter().any(|a| a == "--xds-address" || a == "--ca-address");
        let ca_dir = if remote { None } else { Some(self.ca_dir()) };
        let child = Command::new(binary)
            .args(["--node", name, "--listen-on-workload-ips", "--reload-interval", "100ms"])
            .args(source)
            .args(ca_dir.iter().flat_map(|dir| [std::ffi::OsStr::new("--ca-dir"), dir.as_os_str()]))
            .args(["--socks5-addr", &format!("{ip}:15080")])
            .args(["--outbound-addr", &format!("{ip}:15001")])
            .args(["--admin-addr", &format!("{ip}:15000")])
            .args(["--metrics-addr", &format!("{ip}:15020")])
            .args(["--readiness-addr", &format!("{ip}:15021")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let proxy = NodeProxy { child, ip, log };
        proxy.wait_ready()?;
        Ok(proxy)
    }
}

/// A running node proxy; killed when dropped.
pub struct NodeProxy {
    pub child: Child,
    pub ip: IpAddr,
    pub log: PathBuf,
}

impl NodeProxy {
    pub fn socks5(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 15080)
    }

    pub fn wait_ready(&self) -> Result {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(SocketAddr::new(self.ip, 15021), "/healthz/ready") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("node proxy at {} not ready; log:\n{}", self.ip, self.log_text()).into())
    }

    pub fn admin(&self, path: &str) -> Result<String> {
        Ok(http_get(SocketAddr::new(self.ip, 15000), path)?.1)
    }

    pub fn metrics(&self) -> Result<String> {
        Ok(http_get(SocketAddr::new(self.ip, 15020), "/metrics")?.1)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the admin view says the configuration generation moved past `after`.
    pub fn wait_generation_past(&self, after: u64) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let dump: serde_json::Value = serde_json::from_str(&self.admin("/config_dump")?)?;
            let generation = dump["generation"].as_u64().unwrap_or(0);
            let rejected = dump["reload"]["rejected"].as_u64().unwrap_or(0);
            if generation > after || rejected > 0 {
                return Ok(generation);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the configuration was not reloaded".into())
    }

    pub fn generation(&self) -> Result<u64> {
        let dump: serde_json::Value = serde_json::from_str(&self.admin("/config_dump")?)?;
        Ok(dump["generation"].as_u64().unwrap_or(0))
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) -> Result {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        Ok(())
    }

    /// Waits for the exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the node proxy did not stop".into())
    }

    pub fn readiness(&self) -> Result<u16> {
        Ok(http_get(SocketAddr::new(self.ip, 15021), "/healthz/ready")?.0)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the node proxy did not stop after SIGTERM".into())
    }
}

impl Drop for NodeProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.get(9..12).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// A backend standing in for a Pod: it writes `greeting`, then echoes, on every connection.
pub fn backend(addr: SocketAddr, greeting: &'static str) -> Result {
    let listener = std::net::TcpListener::bind(addr)?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.write_all(greeting.as_bytes());
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Where a SOCKS5 client asks to go.
pub enum To<'a> {
    Addr(SocketAddr),
    Host(&'a str, u16),
}

/// Connects through the SOCKS5 proxy from `source` (a Pod's address). `Err(code)` is the server's reply code.
pub fn socks5(proxy: SocketAddr, source: IpAddr, to: To<'_>) -> Result<std::result::Result<TcpStream, u8>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    // Ports in TIME_WAIT from earlier connections may be reused: without it, after some thousands of
    // connections from one address, choosing a free port for the bind costs the client milliseconds.
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&proxy.into(), Duration::from_secs(2))?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&[5, 1, 0])?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice)?;
    assert_eq!(choice, [5, 0]);
    let mut request = vec![5, 1, 0];
    match to {
        To::Addr(SocketAddr::V4(a)) => {
            request.push(1);
            request.extend(a.ip().octets());
            request.extend(a.port().to_be_bytes());
        }
        To::Addr(SocketAddr::V6(a)) => {
            request.push(4);
            request.extend(a.ip().octets());
            request.extend(a.port().to_be_bytes());
        }
        To::Host(host, port) => {
            request.push(3);
            request.push(u8::try_from(host.len())?);
            request.extend(host.as_bytes());
            request.extend(port.to_be_bytes());
        }
    }
    stream.write_all(&request)?;
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply)?;
    if reply[1] != 0 {
        return Ok(Err(reply[1]));
    }
    Ok(Ok(stream))
}

/// Reads exactly `n` bytes as text.
pub fn read_text(stream: &mut TcpStream, n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf)?;
    Ok(String::from_utf8(buf)?)
}

/// Sends `text` and reads its echo.
pub fn echo(stream: &mut TcpStream, text: &str) -> Result<String> {
    stream.write_all(text.as_bytes())?;
    read_text(stream, text.len())
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A clean end of stream (FIN).
    Eof,
    /// A reset.
    Reset,
    /// Still open after the wait (or data arrived).
    Open,
}

/// How the connection ends within `within`.
pub fn ending_within(stream: &mut TcpStream, within: Duration) -> Ending {
    let _ = stream.set_read_timeout(Some(within));
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => Ending::Eof,
        Ok(_) => Ending::Open,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ending::Open,
        Err(_) => Ending::Reset,
    }
}

/// Whether the connection is closed (EOF or reset) within `within`; data or silence is not a close.
pub fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(within));
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The cluster: `payments` in ambient mode; accounts and probe on node-a, ledger on node-b behind a Service.
pub fn cluster(b: Block) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: payments, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: accounts-0, namespace: payments, labels: {{app: accounts}}}}
spec: {{serviceAccountName: accounts, nodeName: node-a}}
status: {{phase: Running, podIP: {accounts}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: probe, namespace: payments, labels: {{run: probe}}}}
spec: {{serviceAccountName: probe, nodeName: node-a}}
status: {{phase: Running, podIP: {probe}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: ledger-0, namespace: payments, labels: {{app: ledger}}}}
spec:
  serviceAccountName: ledger
  nodeName: node-b
  containers: [{{name: ledger, ports: [{{name: http, containerPort: 8080}}]}}]
status: {{phase: Running, podIP: {ledger}}}
---
apiVersion: v1
kind: Service
metadata: {{name: ledger, namespace: payments}}
spec:
  clusterIP: {vip}
  selector: {{app: ledger}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#,
        accounts = b.ip(1, 10),
        probe = b.ip(1, 40),
        ledger = b.ip(2, 20),
        vip = b.ip(100, 20),
    )
}

pub fn allow(principal: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ledger-allow, namespace: payments}}
spec:
  selector: {{matchLabels: {{app: ledger}}}}
  action: ALLOW
  rules: [{{from: [{{source: {{principals: ["{principal}"]}}}}], to: [{{operation: {{ports: ["8080"]}}}}]}}]
"#
    )
}

pub const ACCOUNTS: &str = "cluster.local/ns/payments/sa/accounts";

/// `/healthz/ready` of `readiness` once its body mentions `needle` (or after 20 s): the status and the body.
pub fn readiness_saying(
    readiness: SocketAddr,
    needle: &str,
) -> std::result::Result<(u16, String), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = http_get(readiness, "/healthz/ready")?;
        if body.contains(needle) || Instant::now() > deadline {
            return Ok((code, body));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
