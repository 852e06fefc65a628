//! Serde mirrors of the cluster objects the model reads: `Namespace`, `Service`, `Pod` (core), `ServiceEntry`,
//! `WorkloadEntry` (`networking.istio.io`), `Gateway` and `GatewayClass` (`gateway.networking.k8s.io`).
//!
//! Only the fields the model reads are declared. Unknown fields are ignored, because these objects are large and
//! vary by Kubernetes and Istio version (`kubectl get -o yaml` output loads as it is); a declared field with the
//! wrong type is an error naming it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata` of a cluster object, as far as the model reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace; `default` when absent (namespaced kinds).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The prefix the name was generated from (a Pod of a controller).
    #[serde(default)]
    pub generate_name: Option<String>,
    /// The objects that own this one (a Pod's ReplicaSet, Job, StatefulSet, ...).
    #[serde(default)]
    pub owner_references: Vec<OwnerReference>,
}

/// One of `metadata.ownerReferences`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// The owner's API version.
    #[serde(default)]
    pub api_version: String,
    /// The owner's kind.
    #[serde(default)]
    pub kind: String,
    /// The owner's name.
    #[serde(default)]
    pub name: String,
    /// Whether the owner is the managing controller.
    #[serde(default)]
    pub controller: Option<bool>,
}

/// A cluster object: `apiVersion`, `kind`, `metadata` and the kind's `spec` / `status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S, T = serde::de::IgnoredAny> {
    /// Metadata.
    #[serde(default)]
    pub metadata: Meta,
    /// The spec.
    #[serde(default)]
    pub spec: S,
    /// The status, where the model reads it.
    #[serde(default)]
    pub status: T,
}

/// A core `Namespace`: only its labels matter.
pub type NamespaceObject = Object<serde::de::IgnoredAny>;
/// A core `Service`.
pub type ServiceObject = Object<ServiceSpec>;
/// A core `Pod`.
pub type PodObject = Object<PodSpec, PodStatus>;
/// An Istio `ServiceEntry`.
pub type ServiceEntryObject = Object<ServiceEntrySpec>;
/// An Istio `WorkloadEntry`.
pub type WorkloadEntryObject = Object<WorkloadEntrySpec>;
/// A Gateway API `Gateway`.
pub type GatewayObject = Object<GatewaySpec, GatewayStatus>;
/// A Gateway API `GatewayClass`: only its labels matter (`istio.io/waypoint-for`).
pub type GatewayClassObject = Object<serde::de::IgnoredAny>;

/// `Service.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pods with all these labels (in the Service's namespace) are its endpoints; absent: none are.
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// The virtual IP, or `None` for a headless Service.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Every virtual IP (dual stack).
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
}

/// A port of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// The Service port.
    pub port: u16,
    /// The workload port: a number, or the name of a container port; absent: `port`.
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    /// `TCP` (default), `UDP`, `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The application protocol, e.g. `http`, `kubernetes.io/h2c`.
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// Kubernetes' `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(u16),
    /// A name.
    String(String),
}

/// `Pod.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The service account; `default` when absent.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`.
    #[serde(default)]
    pub service_account: Option<String>,
    /// The node the Pod runs on.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Whether the Pod uses the node's network (never captured by a node proxy).
    #[serde(default)]
    pub host_network: Option<bool>,
    /// Containers, for their named ports.
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// A container, as far as its ports go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

/// A container port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Name, which a Service's `targetPort` may refer to.
    #[serde(default)]
    pub name: Option<String>,
    /// The port.
    pub container_port: u16,
}

/// `Pod.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// The primary IP.
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    /// Every IP (dual stack).
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    /// `Pending`, `Running`, `Succeeded`, `Failed`: a Pod that has ended holds no address.
    #[serde(default)]
    pub phase: Option<String>,
}

/// An entry of `podIPs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PodIp {
    /// The address.
    pub ip: String,
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// Host names (a leading `*.` is a wildcard).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDR ranges.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServiceEntryPort>,
    /// `MESH_EXTERNAL` (default) or `MESH_INTERNAL`.
    #[serde(default)]
    pub location: Option<String>,
    /// `NONE`, `STATIC`, `DNS`, `DNS_ROUND_ROBIN`.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Endpoints given inline.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntrySpec>,
    /// Pods and WorkloadEntries (in the same namespace) with these labels are endpoints.
    #[serde(default)]
    pub workload_selector: Option<Labels>,
}

/// A port of a ServiceEntry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    /// The port.
    pub number: u16,
    /// `HTTP`, `HTTPS`, `GRPC`, `HTTP2`, `TCP`, `TLS`, ...
    #[serde(default)]
    pub protocol: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// The endpoints' port; absent: `number`.
    #[serde(default)]
    pub target_port: Option<u16>,
}

/// `{labels: {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Labels {
    /// The labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `WorkloadEntry.spec`, and an inline endpoint of a ServiceEntry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    /// The address (an IP; host names are not resolved here).
    #[serde(default)]
    pub address: Option<String>,
    /// Port name to port.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The service account; `default` when absent.
    #[serde(default)]
    pub service_account: Option<String>,
    /// The network.
    #[serde(default)]
    pub network: Option<String>,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The class; waypoints are of class `istio-waypoint`.
    #[serde(default)]
    pub gateway_class_name: String,
    /// Listeners; a waypoint has an `HBONE` listener on 15008.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Requested addresses.
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
}

/// `Gateway.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses assigned.
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
}

/// A Gateway address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GatewayAddress {
    /// `IPAddress` (default) or `Hostname`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The address.
    pub value: String,
}

/// A Gateway listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `HBONE` for a waypoint's listener.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Which namespaces may use the listener.
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `allowedRoutes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AllowedRoutes {
    /// `namespaces`.
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteNamespaces {
    /// `Same` (default), `All` or `Selector`.
    #[serde(default)]
    pub from: Option<String>,
    /// The namespaces admitted with `Selector`.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Every label here must be present with this value.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Every expression must hold.
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// An expression of a label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LabelSelectorRequirement {
    /// The label.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    /// The values for `In` / `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether a set of labels is selected. An unknown operator selects nothing (fail closed).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}
