//! What the waypoint tests share: a CA written in Istio's plug-in layout, the waypoint binary started on it,
//! a destination node proxy (an HBONE server that applies the L4 policy of the same manifests) in front of a
//! small HTTP backend and a TCP echo, a client node proxy (an HBONE client with the client's identity), an
//! identity provider signing real ES256 tokens, and an HTTPS server for its JWKS. Every address is on
//! loopback: each test uses its own 127.77.<n>.0/24, so that Pod IPs in the manifests are real addresses.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_hbone::transport::{
    ClientConfig, Destination, HboneClient, HboneServer, HboneStream, InboundRequest, WorkloadIdentities,
};
use mesh_hbone::{ConnectRequest, Forwarded, Rejection};
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::rotation::Jitter;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::store::CertificateStore;
use mesh_policy::Mesh;
use mesh_policy::proxy::Connection;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::UnixTime;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The issuer of the test tokens.
pub const ISSUER: &str = "https://issuer.payments.test";
/// The audience the ledger's RequestAuthentication requires.
pub const AUDIENCE: &str = "api://payments-ledger";
/// The ledger Service port (HTTP).
pub const LEDGER_PORT: u16 = 8080;
/// The ledger database Service port (TCP).
pub const DB_PORT: u16 = 5432;

/// Fails the test if `f` takes longer than 60 s.
pub async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("test timed out")
}

/// The addresses of one test: 127.77.<n>.x.
#[derive(Debug, Clone, Copy)]
pub struct Net(pub u8);

impl Net {
    pub fn ip(&self, host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 77, self.0, host))
    }
    /// The waypoint Pod.
    pub fn waypoint(&self) -> IpAddr {
        self.ip(1)
    }
    /// The ledger Pod.
    pub fn ledger(&self) -> IpAddr {
        self.ip(10)
    }
    /// The accounts Pod (the client).
    pub fn accounts(&self) -> IpAddr {
        self.ip(20)
    }
    /// The probe Pod (another client).
    pub fn probe(&self) -> IpAddr {
        self.ip(21)
    }
    /// The issuer's HTTPS server.
    pub fn issuer(&self) -> IpAddr {
        self.ip(30)
    }
    /// The ledger Service VIP (not a local address: only the CONNECT authority carries it).
    pub fn ledger_vip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 96, self.0, 20))
    }
    /// A Service VIP in a namespace without the waypoint.
    pub fn shop_vip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 96, self.0, 30))
    }
}

/// A free port on `ip`.
pub fn free_port(ip: IpAddr) -> u16 {
    let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The cluster objects: the payments namespace on the waypoint, its Gateway and Pods, the ledger Services, and
/// a shop namespace without a waypoint.
pub fn cluster_yaml(net: Net) -> String {
    let (n, wp, ledger, accounts, probe) = (net.0, net.waypoint(), net.ledger(), net.accounts(), net.probe());
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: payments
  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: payments-waypoint}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: payments-waypoint, namespace: payments, labels: {{istio.io/waypoint-for: service}}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: payments-waypoint-0, namespace: payments, labels: {{gateway.networking.k8s.io/gateway-name: payments-waypoint}}}}
spec: {{serviceAccountName: payments-waypoint, nodeName: node-a}}
status: {{phase: Running, podIP: {wp}}}
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
  containers:
  - name: ledger
    ports: [{{name: http, containerPort: 8080}}, {{name: db, containerPort: 5432}}]
status: {{phase: Running, podIP: {ledger}}}
---
apiVersion: v1
kind: Service
metadata: {{name: ledger, namespace: payments}}
spec:
  clusterIP: 10.96.{n}.20
  selector: {{app: ledger}}
  ports:
  - {{name: http, port: 8080, targetPort: http}}
  - {{name: tcp-db, port: 5432, targetPort: db}}
---
apiVersion: v1
kind: Service
metadata: {{name: cart, namespace: shop}}
spec:
  clusterIP: 10.96.{n}.30
  selector: {{app: cart}}
  ports: [{{name: http, port: 8080}}]
"#
    )
}

/// Where the JWKS of the RequestAuthentication comes from.
pub enum JwksFrom<'a> {
    /// Inline.
    Inline(&'a str),
    /// A URI.
    Uri(&'a str),
}

/// The ledger's policies, as the payments guide has them: the ztunnel L4 ALLOW (for accounts and, when
/// `l4_allows_waypoint`, the waypoint), the RequestAuthentication, the DENY without a request principal, the
/// ALLOW for accounts' scoped debit; and for the database port an ALLOW for accounts.
pub fn policies_yaml(jwks: JwksFrom<'_>, l4_allows_waypoint: bool) -> String {
    let jwks_line = match jwks {
        JwksFrom::Inline(doc) => format!("jwks: '{doc}'"),
        JwksFrom::Uri(uri) => format!("jwksUri: {uri}"),
    };
    let waypoint = if l4_allows_waypoint { r#", "cluster.local/ns/payments/sa/payments-waypoint""# } else { "" };
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: payments-default-deny, namespace: payments}}
spec: {{}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ledger-allow-l4, namespace: payments}}
spec:
  selector: {{matchLabels: {{app: ledger}}}}
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/payments/sa/accounts"{waypoint}]}}}}]
    to: [{{operation: {{ports: ["8080", "5432"]}}}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ledger-jwt, namespace: payments}}
spec:
  targetRefs: [{{kind: Service, group: "", name: ledger}}]
  jwtRules:
  - issuer: {ISSUER}
    {jwks_line}
    audiences: ["{AUDIENCE}"]
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ledger-require-jwt, namespace: payments}}
spec:
  targetRefs: [{{kind: Service, group: "", name: ledger}}]
  action: DENY
  rules:
  - from: [{{source: {{notRequestPrincipals: ["*"]}}}}]
    to: [{{operation: {{ports: ["8080"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ledger-debit-allow, namespace: payments}}
spec:
  targetRefs: [{{kind: Service, group: "", name: ledger}}]
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/payments/sa/accounts"]}}}}]
    to: [{{operation: {{methods: ["POST"], paths: ["/ledger/v1/debit"]}}}}]
    when: [{{key: "request.auth.claims[scp]", values: ["ledger.debit"]}}]
  - from: [{{source: {{principals: ["cluster.local/ns/payments/sa/accounts"]}}}}]
    to: [{{operation: {{ports: ["5432"]}}}}]
"#
    )
}

/// An identity provider: a P-256 key, its JWKS, and tokens signed with it.
pub struct Idp {
    key: EcdsaKeyPair,
    kid: &'static str,
}

impl Idp {
    pub fn new(kid: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Idp { key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(), kid }
    }

    pub fn jwks(&self) -> String {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                         "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}]})
        .to_string()
    }

    pub fn sign(&self, claims: Value) -> String {
        let header = B64.encode(json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}).to_string());
        let payload = B64.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let sig = self.key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// A token for accounts with `scopes`, valid for an hour (or expired an hour ago).
    pub fn token(&self, scopes: &[&str], expired: bool) -> String {
        let now = mesh_runtime::unix_now();
        let (iat, exp) = if expired { (now - 7200, now - 3600) } else { (now, now + 3600) };
        self.sign(json!({"iss": ISSUER, "sub": "accounts", "aud": AUDIENCE, "scp": scopes, "iat": iat, "exp": exp}))
    }
}

/// The mesh CA, written to a directory in the plug-in layout for the waypoint to load.
pub struct Pki {
    pub ca: LocalCa,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = LocalCa::new_root(td, &CaOptions::default(), UnixTime::now()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        mesh_runtime::ca::write_dir(&ca, &dir.path().join("ca")).unwrap();
        Pki { ca, dir }
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// A store holding a certificate for `ns/sa`; its SPIFFE ID.
    pub fn identity(&self, ns: &str, sa: &str) -> (CertificateStore, SpiffeId) {
        let store = CertificateStore::new([self.ca.trust_bundle().clone()].into_iter().collect());
        let id = IstioIdentity::new(self.ca.trust_domain(), ns, sa).unwrap();
        store.issue(&self.ca, &id, UnixTime::now(), Jitter::None).unwrap();
        (store, id.spiffe_id().clone())
    }

    pub fn waypoint_id() -> SpiffeId {
        SpiffeId::new("spiffe://cluster.local/ns/payments/sa/payments-waypoint").unwrap()
    }
}

/// A running waypoint process; killed when dropped.
pub struct Waypoint {
    child: Child,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub readiness: SocketAddr,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Drop for Waypoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Waypoint {
    /// Starts the waypoint on `config` (a directory), with the CA of `pki`, on `net`'s waypoint address.
    pub async fn start(net: Net, pki: &Pki, config: &Path, hbone_port: u16, extra: &[&str]) -> Waypoint {
        let ip = net.waypoint();
        let addr = |port: u16| SocketAddr::new(ip, port);
        // Four distinct free ports: each is held until all are chosen, so none is picked twice.
        let held: Vec<std::net::TcpListener> =
            (0..4).map(|_| std::net::TcpListener::bind(SocketAddr::new(ip, 0)).unwrap()).collect();
        let port = |i: usize| held[i].local_addr().unwrap().port();
        let (inbound, admin, metrics, readiness) = (addr(port(0)), addr(port(1)), addr(port(2)), addr(port(3)));
        drop(held);
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("waypoint.log");
        let child = Command::new(env!("CARGO_BIN_EXE_mesh-waypoint"))
            .arg("--config")
            .arg(config)
            .args(["--gateway", "payments/payments-waypoint"])
            .arg("--ca-dir")
            .arg(pki.ca_dir())
            .args(["--inbound-addr", &inbound.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--readiness-addr", &readiness.to_string()])
            .args(["--hbone-port", &hbone_port.to_string()])
            .args(["--reload-interval", "100ms", "--drain-timeout", "1s", "--connect-timeout", "2s"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut waypoint = Waypoint { child, inbound, admin, metrics, readiness, log, _logdir: logdir };
        waypoint.wait_ready().await;
        waypoint
    }

    /// Polls readiness, at most 15 s.
    async fn wait_ready(&mut self) {
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the waypoint exited with {status}:\n{}", self.logs());
            }
            if let Ok((StatusCode::OK, _)) = get(self.readiness, "/healthz/ready").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the waypoint did not become ready:\n{}", self.logs());
    }

    /// The process's resident memory, in KiB (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An admin page as JSON.
    pub async fn admin_json(&self, path: &str) -> Value {
        let (status, body) = get(self.admin, path).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits (at most 10 s) until the JWKS at `uri` was fetched, or failed once; returns its status.
    pub async fn wait_jwks(&self, uri: &str, success: bool) -> Value {
        for _ in 0..200 {
            let all = self.admin_json("/jwks").await;
            let status = &all[uri];
            let done = if success { !status["last_success"].is_null() } else { !status["last_error"].is_null() };
            if done {
                return status.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("JWKS {uri} not {}:\n{}", if success { "fetched" } else { "failed" }, self.logs());
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Sends SIGTERM and waits (at most 10 s) for the process to exit; its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the waypoint did not stop on SIGTERM:\n{}", self.logs());
    }
}

/// A plain HTTP/1.1 GET; the status and body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let request = Request::get(path).header("host", addr.to_string()).body(String::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// What the destination node proxy saw of one tunnel.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The tunnel's peer identity.
    pub peer: String,
    /// The CONNECT authority.
    pub target: SocketAddr,
    /// Its `forwarded: for=`.
    pub forwarded_for: Option<IpAddr>,
    /// The address the tunnel's connection came from.
    pub peer_addr: IpAddr,
    /// Whether its L4 policy allowed it.
    pub allowed: bool,
}

/// The destination's node proxy: answers HBONE at the ledger Pod's IP with the ledger's identity, applies the
/// L4 policy of `manifests` to the peer (the waypoint), and relays port 8080 to the HTTP backend and 5432 to a
/// TCP echo.
pub struct NodeProxy {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The HTTP backend behind it.
    pub backend: SocketAddr,
}

impl NodeProxy {
    pub async fn start(net: Net, pki: &Pki, manifests: &str) -> NodeProxy {
        let (store, ledger_id) = pki.identity("payments", "ledger");
        let identities = WorkloadIdentities::new(store, [pki.ca.trust_domain().clone()]).unwrap();
        identities.insert(net.ledger(), &ledger_id).unwrap();
        let server = HboneServer::with_identity(identities);
        let listener = TcpListener::bind(SocketAddr::new(net.ledger(), 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut mesh = Mesh::default();
        mesh.apply_yaml(manifests).unwrap();
        let snapshot = mesh.snapshot();
        let http_backend = http_backend().await;
        let echo = tcp_echo().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let handler = move |request: InboundRequest| {
            let snapshot = Arc::clone(&snapshot);
            let record = Arc::clone(&record);
            async move {
                let cluster = snapshot.cluster();
                let peer = IstioIdentity::from_spiffe_id(request.peer.clone()).unwrap();
                let workload = cluster.workload_by_ip(request.target.ip()).unwrap();
                let target = snapshot.workload_target(workload, request.target.port()).unwrap();
                let connection = Connection::new(target).with_peer(&peer).with_source_ip(request.source_ip());
                let decision = snapshot.authorize_connection(&connection);
                record.lock().unwrap().push(Seen {
                    peer: request.peer.to_string(),
                    target: request.target,
                    forwarded_for: request.claimed_source(),
                    peer_addr: request.source_ip(),
                    allowed: decision.allowed,
                });
                if !decision.allowed {
                    return Err(Rejection::Denied { reason: decision.to_string() });
                }
                let upstream = if request.target.port() == DB_PORT { echo } else { http_backend };
                TcpStream::connect(upstream)
                    .await
                    .map_err(|e| Rejection::UpstreamConnect { target: upstream, reason: e.to_string() })
            }
        };
        tokio::spawn(async move { server.serve(listener, handler).await });
        NodeProxy { port, seen, backend: http_backend }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An HTTP backend answering every request with JSON: its method, path and headers. A gRPC request (content
/// type `application/grpc`) gets the JSON as its message and `grpc-status: 0` in trailers.
pub async fn http_backend() -> SocketAddr {
    http_backend_at("127.0.0.1:0".parse().unwrap()).await
}

/// The same backend, at `addr`.
pub async fn http_backend_at(addr: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let headers: BTreeMap<String, String> = request
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let grpc = headers.get("content-type").is_some_and(|t| t.starts_with("application/grpc"));
                    let body = json!({"method": request.method().as_str(), "path": request.uri().path(),
                                      "version": format!("{:?}", request.version()), "headers": headers});
                    let trailers = grpc.then(|| {
                        let mut t = HeaderMap::new();
                        t.insert("grpc-status", "0".parse().unwrap());
                        Ok::<_, Infallible>(t)
                    });
                    let mut response = Response::new(
                        Full::new(Bytes::from(body.to_string())).with_trailers(std::future::ready(trailers)),
                    );
                    if grpc {
                        response.headers_mut().insert("content-type", "application/grpc".parse().unwrap());
                    }
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A TCP echo server.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A client's node proxy: opens tunnels to the waypoint as the client's identity.
pub struct ClientProxy {
    pub client: HboneClient,
    pub waypoint: Destination,
    pub source: IpAddr,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON (the backend's echo).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl ClientProxy {
    pub fn new(pki: &Pki, sa: &str, source: IpAddr, waypoint: &Waypoint) -> Self {
        let (store, id) = pki.identity("payments", sa);
        // A node proxy dials from the client Pod's own address, as Istio's in-pod mode does.
        let config = ClientConfig { local_ip: Some(source), ..ClientConfig::default() };
        ClientProxy {
            client: HboneClient::from_store_with_config(store, id, config),
            waypoint: Destination { address: waypoint.inbound, identities: vec![Pki::waypoint_id()] },
            source,
        }
    }

    /// Opens a tunnel to `authority`.
    pub async fn tunnel(&self, authority: SocketAddr) -> Result<HboneStream, mesh_hbone::transport::ClientError> {
        let request = ConnectRequest::new(authority).with_forwarded(Forwarded::for_source(self.source));
        let tunnel = self.client.connect(&self.waypoint, request).await?;
        assert_eq!(tunnel.peer, Pki::waypoint_id(), "the waypoint presents its Gateway's identity");
        Ok(tunnel.stream)
    }

    /// Sends one HTTP/1.1 request through the waypoint to `authority`.
    pub async fn http1(&self, authority: SocketAddr, request: Request<String>) -> Answer {
        let stream = self.tunnel(authority).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        read(sender.send_request(request).await.unwrap()).await
    }

    /// Sends one HTTP/2 request through the waypoint to `authority`.
    pub async fn http2(&self, authority: SocketAddr, request: Request<String>) -> Answer {
        let stream = self.tunnel(authority).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        read(sender.send_request(request).await.unwrap()).await
    }
}

/// Sends one HTTP/1.1 request over `stream`.
pub async fn http1_over<S>(stream: S, request: Request<String>) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    read(sender.send_request(request).await.unwrap()).await
}

async fn read(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let mut headers = parts.headers;
    if let Some(trailers) = collected.trailers() {
        headers.extend(trailers.clone());
    }
    Answer { status: parts.status, headers, body: String::from_utf8_lossy(&collected.to_bytes()).into_owned() }
}

/// A POST to the ledger's debit endpoint, with `token` if given.
pub fn debit(method: &str, token: Option<&str>) -> Request<String> {
    let mut request = Request::builder().method(method).uri("/ledger/v1/debit").header("host", "ledger.payments");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body("{\"amount\": 5}".to_owned()).unwrap()
}

/// The configuration directory of a test: cluster.yaml and policies.yaml.
pub fn config_dir(net: Net, policies: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), cluster_yaml(net)).unwrap();
    std::fs::write(dir.path().join("policies.yaml"), policies).unwrap();
    dir
}
