//! A small HBONE peer for interop testing against other HTTP/2 implementations
//! (`mesh-hbone/tests/interop` drives it from Python's `h2` and `ssl`).
//!
//! ```text
//! hbone_peer certs DIR                       write a root CA and two workload SVIDs into DIR
//! hbone_peer server ADDR DIR [OPTION...]     serve HBONE on ADDR with DIR's server SVID
//!     --deny-port PORT                       answer 401 to CONNECTs for PORT
//!     --service HOST:PORT=TARGET_PORT        serve HOST:PORT (double HBONE's inner hop) from TARGET_PORT
//!     --deny-network NETWORK                 answer 401 to CONNECTs from NETWORK (x-forwarded-network)
//! hbone_peer client ADDR DIR TARGET          tunnel stdin to TARGET through the HBONE server at ADDR
//! hbone_peer double GATEWAY DIR HOST:PORT NETWORK
//!                                            tunnel stdin to HOST:PORT through the gateway at GATEWAY
//! ```
//!
//! `certs` writes `root-cert.pem` and, for each of `server` and `client`, `DIR/<name>/cert-chain.pem` (leaf first)
//! and `DIR/<name>/key.pem`. The identities are `spiffe://cluster.local/ns/interop/sa/<name>`.
//!
//! `server` prints the address it is bound to as the first line of stdout, then accepts clients of the
//! `cluster.local` trust domain. Each CONNECT is answered by connecting to its target over TCP: 401 for the
//! `--deny-port` port or the `--deny-network` network (standing in for an authorization policy), 503 when nothing
//! listens there. It stops when stdin closes.
//!
//! `client` expects the server to present the `server` identity, sends all of stdin through the tunnel, half-closes
//! and prints what comes back until the far end closes. A refused CONNECT prints `refused: <status>` on stderr
//! and exits with status 2. A tunnel cut short (the server reset it, e.g. with CONNECT_ERROR because its
//! upstream failed) prints `hbone_peer: HBONE tunnel cut short, ...` on stderr and exits with status 3: what was printed is not
//! the whole transfer. `double` does the same through a gateway (double HBONE), expecting the `server`
//! identity from both the gateway and the destination, and naming NETWORK as the source network; a refusal by
//! the destination prints `refused by destination: <status>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mesh_hbone::double::{DoubleHbonePlan, DoubleHboneTarget};
use mesh_hbone::status::InboundRules;
use mesh_hbone::transport::{
    ClientError, Destination, HboneClient, HboneServer, HboneStream, InboundRequest, TunnelReset,
};
use mesh_hbone::{ConnectRequest, Rejection};
use mesh_identity::bundle::{TrustBundle, TrustBundleSet};
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::tls::WorkloadCertificate;
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const TRUST_DOMAIN: &str = "cluster.local";
const NAMESPACE: &str = "interop";
const USAGE: &str = "usage: hbone_peer certs DIR | server ADDR DIR [--deny-port PORT] [--service HOST:PORT=TARGET_PORT] \
                     [--deny-network NETWORK] | client ADDR DIR TARGET | double GATEWAY DIR HOST:PORT NETWORK";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["certs", dir] => certs(Path::new(dir)),
        ["server", addr, dir, options @ ..] => match ServerOptions::parse(options) {
            Ok(options) => runtime.block_on(server(addr, Path::new(dir), options)),
            Err(error) => Err(error),
        },
        ["client", addr, dir, target] => runtime.block_on(client(addr, Path::new(dir), target)),
        ["double", gateway, dir, destination, network] => {
            runtime.block_on(double(gateway, Path::new(dir), destination, network))
        }
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hbone_peer: {error}");
            ExitCode::FAILURE
        }
    }
}

fn spiffe_id(name: &str) -> SpiffeId {
    SpiffeId::new(&format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{name}")).expect("a valid SPIFFE ID")
}

/// A root CA, valid from now, and an SVID for `server` and `client` (24 hours each).
fn certs(dir: &Path) -> Result<ExitCode> {
    let now = UnixTime::now();
    let ca = LocalCa::new_root(TrustDomain::new(TRUST_DOMAIN)?, &CaOptions::default(), now)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("root-cert.pem"), ca.trust_bundle().to_pem())?;
    for name in ["server", "client"] {
        let identity = IstioIdentity::new(ca.trust_domain(), NAMESPACE, name)?;
        let svid = ca.issue(&identity, Duration::from_secs(24 * 3600), now)?;
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join("cert-chain.pem"), svid.cert_chain_pem())?;
        std::fs::write(sub.join("key.pem"), svid.private_key_pem().ok_or("the CA kept no key")?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The SVID of `name` and the trust bundle from `dir`.
fn load(dir: &Path, name: &str) -> Result<(WorkloadCertificate, Arc<TrustBundleSet>)> {
    let read = |path: PathBuf| std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()));
    let own = WorkloadCertificate::from_pem(
        &read(dir.join(name).join("cert-chain.pem"))?,
        &read(dir.join(name).join("key.pem"))?,
    )?;
    let bundle = TrustBundle::from_pem(TrustDomain::new(TRUST_DOMAIN)?, &read(dir.join("root-cert.pem"))?)?;
    Ok((own, Arc::new([bundle].into_iter().collect())))
}

/// What `server` is told on its command line.
#[derive(Default)]
struct ServerOptions {
    deny_port: Option<u16>,
    deny_network: Option<String>,
    rules: InboundRules,
}

impl ServerOptions {
    fn parse(args: &[&str]) -> Result<Self> {
        let mut options = ServerOptions::default();
        let mut args = args.iter();
        while let Some(option) = args.next() {
            let value = args.next().ok_or_else(|| format!("{option} needs a value; {USAGE}"))?;
            match *option {
                "--deny-port" => options.deny_port = Some(value.parse().map_err(|_| format!("bad port {value}"))?),
                "--deny-network" => options.deny_network = Some((*value).to_owned()),
                "--service" => {
                    let bad = || format!("bad service {value}: expected HOST:PORT=TARGET_PORT");
                    let (service, target) = value.split_once('=').ok_or_else(bad)?;
                    let (host, port) = service.rsplit_once(':').ok_or_else(bad)?;
                    let (port, target) = (port.parse().map_err(|_| bad())?, target.parse().map_err(|_| bad())?);
                    options.rules = std::mem::take(&mut options.rules).with_service(host, port, target);
                }
                _ => return Err(format!("unknown option {option}; {USAGE}").into()),
            }
        }
        Ok(options)
    }
}

async fn server(addr: &str, dir: &Path, options: ServerOptions) -> Result<ExitCode> {
    let (own, bundles) = load(dir, "server")?;
    let ServerOptions { deny_port, deny_network, rules } = options;
    let server = HboneServer::new(&own, bundles, [TrustDomain::new(TRUST_DOMAIN)?])?.with_rules(rules);
    let listener = TcpListener::bind(addr).await?;
    println!("{}", listener.local_addr()?);
    let deny_network = Arc::new(deny_network);
    let handler = move |request: InboundRequest| {
        let deny_network = Arc::clone(&deny_network);
        async move {
            if Some(request.target.port()) == deny_port {
                return Err(Rejection::Denied { reason: format!("--deny-port {}", request.target.port()) });
            }
            if deny_network.is_some() && request.request.origin_network == *deny_network {
                return Err(Rejection::Denied { reason: format!("--deny-network {deny_network:?}") });
            }
            TcpStream::connect(request.target)
                .await
                .map_err(|e| Rejection::UpstreamConnect { target: request.target, reason: e.to_string() })
        }
    };
    // Serve until stdin closes, so that the server cannot outlive whoever started it.
    let until_stdin_closes = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    tokio::select! {
        served = server.serve(listener, handler) => served?,
        () = until_stdin_closes => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn client(addr: &str, dir: &Path, target: &str) -> Result<ExitCode> {
    let (own, bundles) = load(dir, "client")?;
    let client = HboneClient::new(own, bundles);
    let destination = Destination { address: addr.parse()?, identities: vec![spiffe_id("server")] };
    let target: SocketAddr = target.parse()?;
    match client.connect(&destination, ConnectRequest::new(target)).await {
        Ok(tunnel) => pipe(tunnel.stream).await,
        Err(error) => refused(error),
    }
}

async fn double(gateway: &str, dir: &Path, destination: &str, network: &str) -> Result<ExitCode> {
    let (own, bundles) = load(dir, "client")?;
    let client = HboneClient::new(own, bundles);
    let (host, port) = destination.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let target = DoubleHboneTarget {
        gateway: gateway.parse()?,
        gateway_identities: vec![spiffe_id("server")],
        host: host.to_owned(),
        port: port.parse()?,
        destination_identities: vec![spiffe_id("server")],
        source_network: network.to_owned(),
    };
    let plan = DoubleHbonePlan::new(target, None, None, None)?;
    match client.connect_double(&plan).await {
        Ok(tunnel) => pipe(tunnel.stream).await,
        Err(error) => refused(error),
    }
}

/// A refusal is reported on stderr with exit status 2; other errors fail.
fn refused(error: ClientError) -> Result<ExitCode> {
    let Some(refused) = error.refused() else { return Err(error.into()) };
    let by = if matches!(error, ClientError::Inner { .. }) { " by destination" } else { "" };
    eprintln!("refused{by}: {}", refused.status.as_u16());
    Ok(ExitCode::from(2))
}

/// Sends stdin through the tunnel, half-closes, and prints what comes back until the far end closes. A tunnel
/// reset before its end is reported on stderr with exit status 3.
async fn pipe(stream: HboneStream) -> Result<ExitCode> {
    let (mut from_tunnel, mut to_tunnel) = tokio::io::split(stream);
    let send = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut to_tunnel).await?;
        to_tunnel.shutdown().await
    };
    let receive = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut from_tunnel, &mut stdout).await?;
        stdout.flush().await
    };
    match tokio::try_join!(send, receive) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => match error.get_ref().and_then(|e| e.downcast_ref::<TunnelReset>()) {
            Some(reset) => {
                eprintln!("hbone_peer: {reset}");
                Ok(ExitCode::from(3))
            }
            None => Err(error.into()),
        },
    }
}
