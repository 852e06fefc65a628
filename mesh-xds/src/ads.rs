//! The delta ADS client: istiod's workloads, services and L4 authorizations as a configuration source.
//!
//! On each connection the client subscribes to both types by wildcard (one request per type, Address then
//! Authorization, with the node and, after a reconnect, the versions it holds), then applies each response:
//! every resource it can read replaces the one of the same name, the removed names go, and the response is
//! ACKed with its nonce; if any resource cannot be read, the response is NACKed with `<name>: <reason>` for each
//! (the good resources of it still apply, as istiod expects). The whole state is sent to the proxy once every
//! type has had a response, then after each response that changed it. When the stream fails the client
//! reconnects with backoff (20 ms doubling to 10 s) and the proxy keeps enforcing what it has.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mesh_policy::xds::State;
use mesh_runtime::source::{ConfigSource, ConfigUpdate, Document, SourceError, SourceTask};
use prost::Message;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::channel::{ControlPlane, error_chain};
use crate::convert::{self, Address, ResourceError};
use crate::proto::discovery::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node, Status,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use crate::proto::{security, workload};
use crate::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

/// Who the node proxy is, as istiod identifies it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// `INSTANCE_IP`: the proxy Pod's address.
    pub instance_ip: String,
    /// `POD_NAME`.
    pub pod_name: String,
    /// `POD_NAMESPACE`.
    pub pod_namespace: String,
    /// `NODE_NAME`: the Kubernetes node.
    pub node_name: String,
    /// Further metadata (`ISTIO_META_*` without the prefix).
    pub metadata: BTreeMap<String, String>,
}

impl NodeInfo {
    /// The node id: `ztunnel~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`.
    pub fn id(&self) -> String {
        let (ip, pod, ns) = (&self.instance_ip, &self.pod_name, &self.pod_namespace);
        format!("ztunnel~{ip}~{pod}.{ns}~{ns}.svc.cluster.local")
    }

    /// The `Node` message, with the metadata Istio's ztunnel sends.
    pub fn node(&self) -> Node {
        let mut fields = BTreeMap::new();
        let text = |s: &str| prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(s.to_owned())) };
        for (k, v) in [
            ("NAME", &self.pod_name),
            ("NAMESPACE", &self.pod_namespace),
            ("INSTANCE_IPS", &self.instance_ip),
            ("NODE_NAME", &self.node_name),
        ] {
            fields.insert(k.to_owned(), text(v));
        }
        for (k, v) in &self.metadata {
            fields.insert(k.clone(), text(v));
        }
        Node {
            id: self.id(),
            metadata: Some(prost_types::Struct { fields: fields.into_iter().collect() }),
            ..Node::default()
        }
    }
}

/// istiod's delta ADS as a configuration source.
#[derive(Debug, Clone)]
pub struct XdsSource {
    control_plane: ControlPlane,
    node: NodeInfo,
    max_backoff: Duration,
}

impl XdsSource {
    /// Subscribes at `control_plane` as `node`.
    pub fn new(control_plane: ControlPlane, node: NodeInfo) -> Self {
        XdsSource { control_plane, node, max_backoff: Duration::from_secs(10) }
    }

    /// Caps the reconnection backoff (10 s by default).
    pub fn with_max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }
}

/// What the client holds: every resource by name, with its version and the document it is passed on as.
#[derive(Debug, Default)]
struct Held {
    addresses: BTreeMap<String, (String, Document)>,
    authorizations: BTreeMap<String, (String, Document)>,
    /// The types that have had a response since the client started.
    answered: BTreeSet<String>,
}

impl Held {
    fn versions(&self, type_url: &str) -> std::collections::HashMap<String, String> {
        match type_url {
            ADDRESS_TYPE => self.addresses.iter().map(|(n, (v, _))| (n.clone(), v.clone())).collect(),
            _ => self.authorizations.iter().map(|(n, (v, _))| (n.clone(), v.clone())).collect(),
        }
    }

    /// Every resource held, one document each (istiod's form with one entry), so that a change recompiles
    /// only the resources it names.
    fn documents(&self) -> Vec<Document> {
        self.addresses.values().chain(self.authorizations.values()).map(|(_, d)| d.clone()).collect()
    }

    /// Applies a response; the errors of the resources refused.
    fn apply(&mut self, r: &DeltaDiscoveryResponse) -> Vec<ResourceError> {
        let mut errors = Vec::new();
        for name in &r.removed_resources {
            match r.type_url.as_str() {
                ADDRESS_TYPE => drop(self.addresses.remove(name)),
                _ => drop(self.authorizations.remove(name)),
            }
        }
        let mut seen = BTreeSet::new();
        for res in &r.resources {
            if !seen.insert(res.name.as_str()) {
                errors.push(ResourceError { name: res.name.clone(), reason: "named twice in one response".into() });
                continue;
            }
            let Some(any) = &res.resource else {
                errors.push(ResourceError { name: res.name.clone(), reason: "no resource".into() });
                continue;
            };
            if any.type_url != r.type_url {
                errors.push(ResourceError {
                    name: res.name.clone(),
                    reason: format!("a {} in a response of {}", any.type_url, r.type_url),
                });
                continue;
            }
            let decoded = match r.type_url.as_str() {
                ADDRESS_TYPE => workload::Address::decode(any.value.as_slice())
                    .map_err(|e| ResourceError { name: res.name.clone(), reason: e.to_string() })
                    .and_then(|a| convert::address(&res.name, a))
                    .and_then(|a| {
                        let state = match a {
                            Address::Workload(w) => State { workloads: vec![*w], ..State::default() },
                            Address::Service(s) => State { services: vec![*s], ..State::default() },
                        };
                        let document = document("address", &res.name, &state)?;
                        self.addresses.insert(res.name.clone(), (res.version.clone(), document));
                        Ok(())
                    }),
                _ => security::Authorization::decode(any.value.as_slice())
                    .map_err(|e| ResourceError { name: res.name.clone(), reason: e.to_string() })
                    .and_then(|a| convert::authorization(&res.name, a))
                    .and_then(|a| {
                        let state = State { policies: vec![a], ..State::default() };
                        let document = document("authorization", &res.name, &state)?;
                        self.authorizations.insert(res.name.clone(), (res.version.clone(), document));
                        Ok(())
                    }),
            };
            if let Err(e) = decoded {
                errors.push(e);
            }
        }
        errors
    }
}

/// A resource as the document the mesh reads: istiod's form with this one entry, named after the resource.
fn document(kind: &str, name: &str, state: &State) -> Result<Document, ResourceError> {
    let text =
        serde_json::to_string(state).map_err(|e| ResourceError { name: name.to_owned(), reason: e.to_string() })?;
    Ok(Document { name: format!("istiod {kind} {name}"), text })
}

/// The types subscribed to, in the order the requests go out.
const TYPES: [&str; 2] = [ADDRESS_TYPE, AUTHORIZATION_TYPE];

impl ConfigSource for XdsSource {
    fn describe(&self) -> String {
        format!("istiod delta xDS at {} as {}", self.control_plane.url(), self.node.id())
    }

    fn run(self: Box<Self>, updates: mpsc::Sender<ConfigUpdate>) -> SourceTask {
        Box::pin(async move {
            let mut held = Held::default();
            let mut backoff = Duration::from_millis(20);
            loop {
                let outcome = self.session(&mut held, &updates, &mut backoff).await;
                if updates.is_closed() {
                    return;
                }
                let reason = match outcome {
                    Ok(()) => "the server closed the stream".to_owned(),
                    Err(reason) => reason,
                };
                warn!(server = %self.control_plane.url(), %reason, retry_in = ?backoff, "xDS stream lost; the configuration in force stays");
                let unreachable = SourceError::Unreachable {
                    server: format!("istiod at {}", self.control_plane.url()),
                    kind: "delta xDS".into(),
                    reason,
                };
                if updates.send(Err(unreachable)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.max_backoff);
            }
        })
    }
}

impl XdsSource {
    /// One connection: subscribe, then apply responses until the stream ends.
    async fn session(
        &self,
        held: &mut Held,
        updates: &mpsc::Sender<ConfigUpdate>,
        backoff: &mut Duration,
    ) -> Result<(), String> {
        let channel = self.control_plane.connect().await.map_err(|e| e.to_string())?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let (requests, outgoing) = mpsc::channel::<DeltaDiscoveryRequest>(16);
        for type_url in TYPES {
            let initial = DeltaDiscoveryRequest {
                node: Some(self.node.node()),
                type_url: type_url.to_owned(),
                initial_resource_versions: held.versions(type_url),
                ..DeltaDiscoveryRequest::default()
            };
            requests.send(initial).await.map_err(|e| e.to_string())?;
        }
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing));
        self.control_plane.authorize(&mut request).map_err(|e| e.to_string())?;
        let mut responses = client.delta_aggregated_resources(request).await.map_err(|e| status_text(&e))?.into_inner();
        info!(server = %self.control_plane.url(), node = %self.node.id(), "xDS stream open");
        loop {
            let response = match responses.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(e) => return Err(status_text(&e)),
            };
            if !TYPES.contains(&response.type_url.as_str()) {
                // Not subscribed: NACK it, change nothing.
                let nack = nack(&response, format!("type {} is not subscribed to", response.type_url));
                requests.send(nack).await.map_err(|e| e.to_string())?;
                continue;
            }
            *backoff = Duration::from_millis(20);
            let errors = held.apply(&response);
            held.answered.insert(response.type_url.clone());
            let reply = if errors.is_empty() {
                debug!(type_url = %response.type_url, nonce = %response.nonce, resources = response.resources.len(), removed = response.removed_resources.len(), "ACK");
                DeltaDiscoveryRequest {
                    type_url: response.type_url.clone(),
                    response_nonce: response.nonce.clone(),
                    ..DeltaDiscoveryRequest::default()
                }
            } else {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                warn!(type_url = %response.type_url, refused = %text.join("; "), "NACK: resources refused; the others apply");
                nack(&response, text.join("; "))
            };
            requests.send(reply).await.map_err(|e| e.to_string())?;
            if TYPES.iter().all(|t| held.answered.contains(*t)) && updates.send(Ok(held.documents())).await.is_err() {
                return Ok(());
            }
        }
    }
}

fn nack(response: &DeltaDiscoveryResponse, message: String) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        error_detail: Some(Status { code: 0, message, details: Vec::new() }),
        ..DeltaDiscoveryRequest::default()
    }
}

fn status_text(s: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", s.code(), s.message());
    if let Some(source) = std::error::Error::source(s) {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    text
}
