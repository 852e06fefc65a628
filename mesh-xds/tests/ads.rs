//! The delta ADS client against a scripted control plane on a real socket: subscription, ACK and NACK
//! resource by resource, the state sent once both types answered, reconnection with the versions held and
//! removals applied, and hostile input refused without widening.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_policy::Mesh;
use mesh_runtime::source::{ConfigSource, ConfigUpdate};
use mesh_xds::ads::{NodeInfo, XdsSource};
use mesh_xds::proto::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use mesh_xds::proto::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use mesh_xds::proto::{security, workload};
use mesh_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE, ControlPlane};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;

type R = Result<(), Box<dyn std::error::Error>>;
type Response = Result<DeltaDiscoveryResponse, tonic::Status>;
type Responses = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, tonic::Status>> + Send>>;

/// What the control plane saw of one call.
#[derive(Debug)]
struct Seen {
    request: DeltaDiscoveryRequest,
    authorization: Option<String>,
    cluster_id: Option<String>,
}

/// A scripted istiod: every call's requests go to the test, and the test sends the responses of the latest
/// call.
#[derive(Clone, Default)]
struct Istiod {
    seen: Arc<Mutex<Option<mpsc::UnboundedSender<Seen>>>>,
    stream: Arc<Mutex<Option<mpsc::UnboundedSender<Response>>>>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Istiod {
    type DeltaAggregatedResourcesStream = Responses;

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Responses>, tonic::Status> {
        let header = |k: &str| request.metadata().get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (authorization, cluster_id) = (header("authorization"), header("clusterid"));
        let mut incoming = request.into_inner();
        let seen = self.seen.lock().map_err(|_| tonic::Status::internal("poisoned"))?.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = incoming.message().await {
                if let Some(seen) = &seen {
                    let _ = seen.send(Seen {
                        request,
                        authorization: authorization.clone(),
                        cluster_id: cluster_id.clone(),
                    });
                }
            }
        });
        let (tx, rx) = mpsc::unbounded_channel();
        *self.stream.lock().map_err(|_| tonic::Status::internal("poisoned"))? = Some(tx);
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))))
    }
}

impl Istiod {
    fn send(&self, response: DeltaDiscoveryResponse) -> R {
        let stream = self.stream.lock().map_err(|_| "poisoned")?.clone().ok_or("no stream")?;
        stream.send(Ok(response)).map_err(|_| "stream closed")?;
        Ok(())
    }

    /// Ends the current stream with an error, as a restarting istiod does.
    fn drop_stream(&self) -> R {
        let stream = self.stream.lock().map_err(|_| "poisoned")?.take().ok_or("no stream")?;
        let _ = stream.send(Err(tonic::Status::unavailable("istiod restarting")));
        Ok(())
    }
}

async fn start(istiod: Istiod) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(istiod))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Ok(addr)
}

fn any<M: Message>(type_url: &str, m: &M) -> prost_types::Any {
    prost_types::Any { type_url: type_url.to_owned(), value: m.encode_to_vec() }
}

fn pod(name: &str, ip: [u8; 4], policies: &[&str]) -> (String, workload::Address) {
    let uid = format!("Kubernetes//Pod/ledger/{name}");
    let w = workload::Workload {
        uid: uid.clone(),
        name: name.into(),
        namespace: "ledger".into(),
        addresses: vec![ip.to_vec()],
        tunnel_protocol: workload::TunnelProtocol::Hbone as i32,
        trust_domain: "cluster.local".into(),
        service_account: "ledger".into(),
        node: "node-a".into(),
        authorization_policies: policies.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    (uid, workload::Address { r#type: Some(workload::address::Type::Workload(w)) })
}

fn resource(name: &str, version: &str, any: prost_types::Any) -> Resource {
    Resource { name: name.into(), version: version.into(), resource: Some(any), ..Default::default() }
}

fn deny_web() -> security::Authorization {
    security::Authorization {
        name: "no-web".into(),
        namespace: "ledger".into(),
        scope: security::Scope::Namespace as i32,
        action: security::Action::Deny as i32,
        rules: vec![security::Rule {
            clauses: vec![security::Clause {
                matches: vec![security::Match {
                    namespaces: vec![security::StringMatch {
                        match_type: Some(security::string_match::MatchType::Exact("web".into())),
                    }],
                    ..Default::default()
                }],
            }],
        }],
        ..Default::default()
    }
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Result<T, Box<dyn std::error::Error>> {
    Ok(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?.ok_or("closed")?)
}

async fn update(rx: &mut mpsc::Receiver<ConfigUpdate>) -> Result<ConfigUpdate, Box<dyn std::error::Error>> {
    Ok(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?.ok_or("closed")?)
}

/// Whether the state in `update` lets `principal` reach the workload at `ip`.
fn allows(update: &ConfigUpdate, ip: &str, principal: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let docs = update.as_ref().map_err(|e| e.to_string())?;
    let mut mesh = Mesh::default();
    let sources: Vec<mesh_policy::Source<'_>> =
        docs.iter().map(|d| mesh_policy::Source { name: &d.name, text: &d.text }).collect();
    mesh.replace_all(&sources)?;
    let s = mesh.snapshot();
    let id = s.cluster().workload_by_ip(ip.parse()?).ok_or("no workload")?;
    let target = s.workload_target(id, 8080).ok_or("no target")?;
    let peer = mesh_identity::spiffe::IstioIdentity::parse_principal(principal)?;
    Ok(s.authorize_connection(&mesh_policy::proxy::Connection::new(target).with_peer(&peer)).allowed)
}

#[tokio::test]
async fn subscribes_acks_nacks_and_resumes_after_a_restart() -> R {
    let istiod = Istiod::default();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    *istiod.seen.lock().map_err(|_| "poisoned")? = Some(seen_tx);
    let addr = start(istiod.clone()).await?;
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("istio-token");
    std::fs::write(&token, "token-one\n")?;
    let control_plane = ControlPlane {
        address: format!("http://{addr}"),
        root_ca: None,
        token: Some(token.clone()),
        cluster_id: "Kubernetes".into(),
        connect_timeout: Duration::from_secs(2),
    };
    let node = NodeInfo {
        instance_ip: "10.0.0.2".into(),
        pod_name: "ztunnel-abc".into(),
        pod_namespace: "istio-system".into(),
        node_name: "node-a".into(),
        ..NodeInfo::default()
    };
    let (tx, mut updates) = mpsc::channel(16);
    tokio::spawn(Box::new(XdsSource::new(control_plane, node).with_max_backoff(Duration::from_millis(200))).run(tx));

    // One wildcard request per type, Address first, with the node and the credentials.
    let first = next(&mut seen).await?;
    let second = next(&mut seen).await?;
    assert_eq!((first.request.type_url.as_str(), second.request.type_url.as_str()), (ADDRESS_TYPE, AUTHORIZATION_TYPE));
    assert!(first.request.resource_names_subscribe.is_empty() && first.request.initial_resource_versions.is_empty());
    let node = first.request.node.as_ref().ok_or("no node")?;
    assert_eq!(node.id, "ztunnel~10.0.0.2~ztunnel-abc.istio-system~istio-system.svc.cluster.local");
    let meta = node.metadata.as_ref().ok_or("no metadata")?;
    assert!(meta.fields.contains_key("NODE_NAME") && meta.fields.contains_key("INSTANCE_IPS"));
    assert_eq!(first.authorization.as_deref(), Some("Bearer token-one"));
    assert_eq!(first.cluster_id.as_deref(), Some("Kubernetes"));

    // Addresses: one good workload, one with a 3-byte address. The bad one is NACKed by name, the good one kept.
    let (good, good_addr) = pod("ledger-0", [10, 0, 0, 7], &[]);
    let (_, mut bad_addr) = pod("ledger-1", [10, 0, 0, 8], &[]);
    if let Some(workload::address::Type::Workload(w)) = &mut bad_addr.r#type {
        w.addresses = vec![vec![10, 0, 0]];
    }
    istiod.send(DeltaDiscoveryResponse {
        type_url: ADDRESS_TYPE.into(),
        nonce: "n1".into(),
        resources: vec![
            resource(&good, "1", any(ADDRESS_TYPE, &good_addr)),
            resource("Kubernetes//Pod/ledger/ledger-1", "1", any(ADDRESS_TYPE, &bad_addr)),
        ],
        ..Default::default()
    })?;
    let nack = next(&mut seen).await?.request;
    assert_eq!(nack.response_nonce, "n1");
    let detail = nack.error_detail.ok_or("not a NACK")?;
    assert!(
        detail.message.contains("Kubernetes//Pod/ledger/ledger-1") && detail.message.contains("3 bytes"),
        "{}",
        detail.message
    );
    assert!(updates.try_recv().is_err(), "nothing is sent before every type has answered");

    // Authorizations: ACKed; then the state goes out.
    istiod.send(DeltaDiscoveryResponse {
        type_url: AUTHORIZATION_TYPE.into(),
        nonce: "n2".into(),
        resources: vec![resource("ledger/no-web", "1", any(AUTHORIZATION_TYPE, &deny_web()))],
        ..Default::default()
    })?;
    let ack = next(&mut seen).await?.request;
    assert_eq!((ack.response_nonce.as_str(), ack.error_detail.is_none()), ("n2", true));
    let state = update(&mut updates).await?;
    assert!(allows(&state, "10.0.0.7", "cluster.local/ns/accounts/sa/accounts")?);
    assert!(!allows(&state, "10.0.0.7", "cluster.local/ns/web/sa/web")?);

    // istiod restarts: the proxy says so, keeps what it has, reconnects with the versions it holds and a fresh
    // token, and applies the removals the new istiod answers with.
    std::fs::write(&token, "token-two\n")?;
    istiod.drop_stream()?;
    assert!(matches!(update(&mut updates).await?, Err(mesh_runtime::source::SourceError::Unreachable { .. })));
    let first = next(&mut seen).await?;
    assert_eq!(first.request.type_url, ADDRESS_TYPE);
    assert_eq!(first.request.initial_resource_versions.get(&good).map(String::as_str), Some("1"));
    assert_eq!(first.authorization.as_deref(), Some("Bearer token-two"));
    let second = next(&mut seen).await?;
    assert_eq!(second.request.initial_resource_versions.get("ledger/no-web").map(String::as_str), Some("1"));
    istiod.send(DeltaDiscoveryResponse {
        type_url: AUTHORIZATION_TYPE.into(),
        nonce: "n3".into(),
        removed_resources: vec!["ledger/no-web".into()],
        ..Default::default()
    })?;
    let state = update(&mut updates).await?;
    assert!(allows(&state, "10.0.0.7", "cluster.local/ns/web/sa/web")?, "the removed policy no longer applies");
    Ok(())
}

#[tokio::test]
async fn hostile_resources_are_refused_one_by_one_and_never_widen() -> R {
    let istiod = Istiod::default();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    *istiod.seen.lock().map_err(|_| "poisoned")? = Some(seen_tx);
    let addr = start(istiod.clone()).await?;
    let control_plane = ControlPlane {
        address: format!("http://{addr}"),
        root_ca: None,
        token: None,
        cluster_id: "Kubernetes".into(),
        connect_timeout: Duration::from_secs(2),
    };
    let (tx, mut updates) = mpsc::channel(16);
    tokio::spawn(Box::new(XdsSource::new(control_plane, NodeInfo::default())).run(tx));
    next(&mut seen).await?;
    next(&mut seen).await?;
    let (uid, addr_msg) = pod("ledger-0", [10, 0, 0, 7], &["ledger/locked"]);
    istiod.send(DeltaDiscoveryResponse {
        type_url: ADDRESS_TYPE.into(),
        nonce: "a".into(),
        resources: vec![resource(&uid, "1", any(ADDRESS_TYPE, &addr_msg))],
        ..Default::default()
    })?;
    assert!(next(&mut seen).await?.request.error_detail.is_none());
    let mut unknown_action = deny_web();
    unknown_action.name = "locked".into();
    unknown_action.scope = security::Scope::WorkloadSelector as i32;
    unknown_action.action = 7;
    let mut empty_match = deny_web();
    empty_match.name = "empty".into();
    empty_match.rules[0].clauses[0].matches[0].namespaces[0].match_type =
        Some(security::string_match::MatchType::Prefix(String::new()));
    istiod.send(DeltaDiscoveryResponse {
        type_url: AUTHORIZATION_TYPE.into(),
        nonce: "b".into(),
        resources: vec![
            resource("ledger/locked", "1", any(AUTHORIZATION_TYPE, &unknown_action)),
            resource(
                "ledger/garbage",
                "1",
                prost_types::Any { type_url: AUTHORIZATION_TYPE.into(), value: vec![0xff, 0xff, 0xff] },
            ),
            resource("ledger/empty", "1", any(AUTHORIZATION_TYPE, &empty_match)),
            resource("ledger/empty", "1", any(AUTHORIZATION_TYPE, &deny_web())),
        ],
        ..Default::default()
    })?;
    let detail = next(&mut seen).await?.request.error_detail.ok_or("not a NACK")?.message;
    for expected in ["ledger/locked: action: unknown value 7", "ledger/garbage:", "ledger/empty:", "named twice"] {
        assert!(detail.contains(expected), "{expected:?} in {detail}");
    }
    // The workload names a policy that was refused: every connection to it is denied, not allowed.
    let state = update(&mut updates).await?;
    assert!(!allows(&state, "10.0.0.7", "cluster.local/ns/accounts/sa/accounts")?);
    Ok(())
}
