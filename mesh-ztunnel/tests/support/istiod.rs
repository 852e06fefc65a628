//! A scripted istiod on a real socket: delta ADS (workloads, services, authorizations held by type, sent whole
//! on each new stream, each change pushed to every open stream) and Istio's certificate service signing with
//! the test's CA, over plaintext or TLS.
#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_identity::ca::LocalCa;
use mesh_identity::spiffe::IstioIdentity;
use mesh_xds::proto::ca::istio_certificate_service_server::{IstioCertificateService, IstioCertificateServiceServer};
use mesh_xds::proto::ca::{IstioCertificateRequest, IstioCertificateResponse};
use mesh_xds::proto::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use mesh_xds::proto::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use mesh_xds::proto::{security, workload};
use mesh_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};
use prost::Message;
use rustls_pki_types::UnixTime;
use tokio::sync::mpsc;

use super::{Result, Setup};

type Response = std::result::Result<DeltaDiscoveryResponse, tonic::Status>;
type Responses = Pin<Box<dyn tokio_stream::Stream<Item = Response> + Send>>;

/// A scripted istiod: it holds resources by type, sends them all on each new stream (one response per type),
/// and pushes each change to every open stream.
#[derive(Clone, Default)]
pub struct Istiod {
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
    pub fn set(&self, type_index: usize, resource: Resource) -> Result {
        let mut all = self.resources.lock().map_err(|_| "poisoned")?;
        all[type_index].retain(|r| r.name != resource.name);
        all[type_index].push(resource.clone());
        for stream in self.streams.lock().map_err(|_| "poisoned")?.iter() {
            let _ = stream.send(Ok(response(TYPES[type_index], vec![resource.clone()], Vec::new())));
        }
        Ok(())
    }

    pub fn stop(&self) -> Result {
        for stream in self.streams.lock().map_err(|_| "poisoned")?.drain(..) {
            let _ = stream.send(Err(tonic::Status::unavailable("istiod going away")));
        }
        Ok(())
    }
}

/// A scripted istiod CA: it signs with the test's CA for the identity named in `ImpersonatedIdentity`, after
/// checking the credentials, and records what it was asked; it can be told to refuse, or to sign for another
/// identity than the one asked for.
#[derive(Clone)]
pub struct IstiodCa {
    ca: Arc<LocalCa>,
    token: Option<String>,
    pub asked: Arc<Mutex<Vec<(String, i64)>>>,
    /// Requests to refuse before answering again.
    pub refuse: Arc<std::sync::atomic::AtomicUsize>,
    /// Sign for this identity whatever is asked.
    pub impostor: Arc<Mutex<Option<String>>>,
}

impl IstiodCa {
    /// Signs with `setup`'s CA.
    pub fn new(setup: &Setup, token: Option<&str>) -> Result<Self> {
        let ca = LocalCa::from_plugin_pem(setup.ca.trust_domain().clone(), &setup.ca.to_plugin_pem())?;
        Ok(IstiodCa {
            ca: Arc::new(ca),
            token: token.map(str::to_owned),
            asked: Arc::default(),
            refuse: Arc::default(),
            impostor: Arc::default(),
        })
    }

    pub fn asked_for(&self, identity: &str) -> usize {
        self.asked.lock().map_or(0, |asked| asked.iter().filter(|(id, _)| id == identity).count())
    }
}

#[tonic::async_trait]
impl IstioCertificateService for IstiodCa {
    async fn create_certificate(
        &self,
        request: tonic::Request<IstioCertificateRequest>,
    ) -> std::result::Result<tonic::Response<IstioCertificateResponse>, tonic::Status> {
        let header = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(token) = &self.token
            && header("authorization") != Some(format!("Bearer {token}"))
        {
            return Err(tonic::Status::unauthenticated("no valid token"));
        }
        if header("clusterid").as_deref() != Some("Kubernetes") {
            return Err(tonic::Status::unauthenticated("no cluster id"));
        }
        let request = request.into_inner();
        let impersonated = request
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get("ImpersonatedIdentity"))
            .and_then(|v| match &v.kind {
                Some(prost_types::value::Kind::StringValue(id)) => Some(id.clone()),
                _ => None,
            })
            .ok_or_else(|| tonic::Status::invalid_argument("node mode needs ImpersonatedIdentity"))?;
        self.asked
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?
            .push((impersonated.clone(), request.validity_duration));
        if self
            .refuse
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .is_ok()
        {
            return Err(tonic::Status::unavailable("CA scripted to refuse"));
        }
        let signed_for = self.impostor.lock().map_err(|_| tonic::Status::internal("poisoned"))?.clone();
        let identity = IstioIdentity::parse(signed_for.as_deref().unwrap_or(&impersonated))
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let ttl = Duration::from_secs(u64::try_from(request.validity_duration).unwrap_or(0));
        let issued = self
            .ca
            .issue_for_csr_pem(&request.csr, &identity, ttl, UnixTime::now())
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        Ok(tonic::Response::new(IstioCertificateResponse {
            cert_chain: vec![issued.cert_chain_pem(), issued.root_cert_pem()],
        }))
    }
}

/// Serves `istiod` and `ca` on a loopback port; returns `http://` and the server task.
pub fn serve(
    runtime: &tokio::runtime::Runtime,
    istiod: &Istiod,
    ca: &IstiodCa,
) -> Result<(String, tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>)> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(istiod.clone()))
            .add_service(IstioCertificateServiceServer::new(ca.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok((url, server))
}

pub fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

pub fn address(name: &str, a: workload::address::Type) -> Resource {
    let any = prost_types::Any {
        type_url: ADDRESS_TYPE.into(),
        value: workload::Address { r#type: Some(a) }.encode_to_vec(),
    };
    Resource { name: name.into(), version: "1".into(), resource: Some(any), ..Default::default() }
}

pub fn pod(name: &str, sa: &str, node: &str, ip: IpAddr, services: &[(&str, u32, u32)]) -> Resource {
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

pub fn authorization(name: &str, action: security::Action, principal: &str) -> Resource {
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

/// A root, and a certificate for `ip` (and istiod's host name) signed by it, as a control plane serves TLS.
pub struct ServingTls {
    /// The root, PEM: what `XDS_ROOT_CA` and `CA_ROOT_CA` name.
    pub root_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl ServingTls {
    pub fn new(ip: IpAddr) -> Result<Self> {
        let root_key = rcgen::KeyPair::generate()?;
        let mut root = rcgen::CertificateParams::new(Vec::<String>::new())?;
        root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root.distinguished_name.push(rcgen::DnType::CommonName, "test control plane root");
        root.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let root_cert = root.self_signed(&root_key)?;
        let issuer = rcgen::Issuer::from_ca_cert_der(root_cert.der(), &root_key)?;
        let key = rcgen::KeyPair::generate()?;
        let mut server = rcgen::CertificateParams::new(vec!["istiod.istio-system.svc".to_owned()])?;
        server.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        let cert = server.signed_by(&key, &issuer)?;
        Ok(ServingTls { root_pem: root_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Serves `istiod` and `ca` over TLS on `ip`, port `port` (0: any); returns `https://ip:port` and the server
/// task.
pub fn serve_tls(
    runtime: &tokio::runtime::Runtime,
    istiod: &Istiod,
    ca: &IstiodCa,
    tls: &ServingTls,
    ip: IpAddr,
    port: u16,
) -> Result<(String, tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>)> {
    let listener = runtime.block_on(tokio::net::TcpListener::bind((ip, port)))?;
    let url = format!("https://{}", listener.local_addr()?);
    let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
    let server = tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?
        .add_service(AggregatedDiscoveryServiceServer::new(istiod.clone()))
        .add_service(IstioCertificateServiceServer::new(ca.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    Ok((url, runtime.spawn(server)))
}

impl Istiod {
    /// Removes `name` of type `type_index` and tells every open stream.
    pub fn remove(&self, type_index: usize, name: &str) -> Result {
        let mut all = self.resources.lock().map_err(|_| "poisoned")?;
        all[type_index].retain(|r| r.name != name);
        for stream in self.streams.lock().map_err(|_| "poisoned")?.iter() {
            let _ = stream.send(Ok(response(TYPES[type_index], Vec::new(), vec![name.to_owned()])));
        }
        Ok(())
    }
}
