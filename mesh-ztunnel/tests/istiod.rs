//! The node proxy configured by istiod (`XDS_ADDRESS`): two node proxies subscribe to a scripted istiod
//! speaking delta ADS on a real socket, carry accounts' connection to the ledger as the Authorization istiod
//! serves allows, refuse it once istiod pushes a DENY, and keep enforcing it, saying so on readiness, once
//! istiod is gone.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_xds::proto::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use mesh_xds::proto::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use mesh_xds::proto::{security, workload};
use mesh_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};
use prost::Message;
use support::{ACCOUNTS, Block, Result, Setup, To, backend, read_text, readiness_saying, socks5};
use tokio::sync::mpsc;

type Response = std::result::Result<DeltaDiscoveryResponse, tonic::Status>;
type Responses = Pin<Box<dyn tokio_stream::Stream<Item = Response> + Send>>;

/// A scripted istiod: it holds resources by type, sends them all on each new stream (one response per type),
/// and pushes each change to every open stream.
#[derive(Clone, Default)]
struct Istiod {
    resources: Arc<Mutex<[Vec<Resource>; 2]>>,
    streams: Arc<Mutex<Vec<mpsc::UnboundedSender<Response>>>>,
}

const TYPES: [&str; 2] = [ADDRESS_TYPE, AUTHORIZATION_TYPE];

#[tonic::async_trait]
impl AggregatedDiscoveryService for Istiod {
    type DeltaAggregatedResourcesStream = Responses;

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> std::result::Result<tonic::Response<Responses>, tonic::Status> {
        let mut incoming = request.into_inner();
        // ACKs and NACKs are read and dropped.
        tokio::spawn(async move { while let Ok(Some(_)) = incoming.message().await {} });
        let (tx, rx) = mpsc::unbounded_channel();
        let resources = self.resources.lock().map_err(|_| tonic::Status::internal("poisoned"))?.clone();
        for (i, type_url) in TYPES.iter().enumerate() {
            let _ = tx.send(Ok(response(type_url, resources[i].clone(), Vec::new())));
        }
        self.streams.lock().map_err(|_| tonic::Status::internal("poisoned"))?.push(tx);
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))))
    }
}

fn response(type_url: &str, resources: Vec<Resource>, removed: Vec<String>) -> DeltaDiscoveryResponse {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string();
    DeltaDiscoveryResponse {
        type_url: type_url.into(),
        resources,
        removed_resources: removed,
        nonce,
        ..Default::default()
    }
}

impl Istiod {
    fn set(&self, type_index: usize, resource: Resource) -> Result {
        let mut all = self.resources.lock().map_err(|_| "poisoned")?;
        all[type_index].retain(|r| r.name != resource.name);
        all[type_index].push(resource.clone());
        for stream in self.streams.lock().map_err(|_| "poisoned")?.iter() {
            let _ = stream.send(Ok(response(TYPES[type_index], vec![resource.clone()], Vec::new())));
        }
        Ok(())
    }

    fn stop(&self) -> Result {
        for stream in self.streams.lock().map_err(|_| "poisoned")?.drain(..) {
            let _ = stream.send(Err(tonic::Status::unavailable("istiod going away")));
        }
        Ok(())
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn address(name: &str, a: workload::address::Type) -> Resource {
    let any = prost_types::Any {
        type_url: ADDRESS_TYPE.into(),
        value: workload::Address { r#type: Some(a) }.encode_to_vec(),
    };
    Resource { name: name.into(), version: "1".into(), resource: Some(any), ..Default::default() }
}

fn pod(name: &str, sa: &str, node: &str, ip: IpAddr, services: &[(&str, u32, u32)]) -> Resource {
    let uid = format!("Kubernetes//Pod/payments/{name}");
    let w = workload::Workload {
        uid: uid.clone(),
        name: name.into(),
        namespace: "payments".into(),
        addresses: vec![octets(ip)],
        tunnel_protocol: workload::TunnelProtocol::Hbone as i32,
        trust_domain: "cluster.local".into(),
        service_account: sa.into(),
        node: node.into(),
        services: services
            .iter()
            .map(|(key, port, target)| {
                let ports = vec![workload::Port { service_port: *port, target_port: *target }];
                (key.to_string(), workload::PortList { ports })
            })
            .collect(),
        ..Default::default()
    };
    address(&uid, workload::address::Type::Workload(w))
}

fn authorization(name: &str, action: security::Action, principal: &str) -> Resource {
    let exact =
        |v: &str| security::StringMatch { match_type: Some(security::string_match::MatchType::Exact(v.into())) };
    let a = security::Authorization {
        name: name.into(),
        namespace: "payments".into(),
        scope: security::Scope::Namespace as i32,
        action: action as i32,
        rules: vec![security::Rule {
            clauses: vec![security::Clause {
                matches: vec![security::Match { principals: vec![exact(principal)], ..Default::default() }],
            }],
        }],
        ..Default::default()
    };
    let any = prost_types::Any { type_url: AUTHORIZATION_TYPE.into(), value: a.encode_to_vec() };
    Resource { name: format!("payments/{name}"), version: "1".into(), resource: Some(any), ..Default::default() }
}

#[test]
fn node_proxies_follow_istiod() -> Result {
    let b = Block(48);
    let setup = Setup::new(48, "")?;
    backend(SocketAddr::new(b.ip(2, 20), 8080), "ledger\n")?;
    let istiod = Istiod::default();
    let key = "payments/ledger.payments.svc.cluster.local";
    istiod.set(0, pod("accounts-0", "accounts", "node-a", b.ip(1, 10), &[]))?;
    istiod.set(0, pod("ledger-0", "ledger", "node-b", b.ip(2, 20), &[(key, 80, 8080)]))?;
    let ledger = workload::Service {
        name: "ledger".into(),
        namespace: "payments".into(),
        hostname: "ledger.payments.svc.cluster.local".into(),
        addresses: vec![workload::NetworkAddress {
            network: String::new(),
            address: octets(b.ip(100, 20)),
            length: None,
        }],
        ports: vec![workload::Port { service_port: 80, target_port: 8080 }],
        ..Default::default()
    };
    istiod.set(0, address(key, workload::address::Type::Service(ledger)))?;
    istiod.set(1, authorization("ledger-allow", security::Action::Allow, ACCOUNTS))?;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(istiod.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let source = ["--xds-address".into(), url.into()];
    let a = setup.node_from("node-a", 1, &source, &[])?;
    let node_b = setup.node_from("node-b", 2, &source, &[])?;
    let connect = || socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)));

    // Allowed by the Authorization istiod serves.
    let mut stream = connect()?.map_err(|code| format!("refused with {code}; node-b log:\n{}", node_b.log_text()))?;
    assert_eq!(read_text(&mut stream, 7)?, "ledger\n");
    drop(stream);
    let dump: serde_json::Value = serde_json::from_str(&node_b.admin("/config_dump")?)?;
    assert!(dump["source"].as_str().is_some_and(|s| s.contains("istiod delta xDS")), "{}", dump["source"]);

    // istiod pushes a DENY for accounts: the next connection is refused.
    let before = node_b.generation()?;
    istiod.set(1, authorization("no-accounts", security::Action::Deny, ACCOUNTS))?;
    node_b.wait_generation_past(before)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let outcome = connect()?;
        if outcome.is_err() || Instant::now() > deadline {
            break outcome.err();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(refused, Some(2), "the DENY istiod pushed applies; node-b log:\n{}", node_b.log_text());

    // istiod goes away: the proxy keeps enforcing what it has, and readiness says why.
    istiod.stop()?;
    server.abort();
    let (code, body) = readiness_saying(SocketAddr::new(node_b.ip, 15021), "configuration source")?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("istiod"), "{body}");
    assert_eq!(connect()?.err(), Some(2), "the DENY is still enforced");
    Ok(())
}
