//! istiod's form of the mesh: the workloads, services and L4 authorizations istiod computes for node proxies
//! (the workload API's `istio.workload.Workload`, `istio.workload.Service` and `istio.security.Authorization`),
//! as Istio's ztunnel holds them.
//!
//! These types read and write the JSON shape of Istio ztunnel's `/config_dump` (what `istioctl ztunnel-config
//! all -o json` prints): a document with `workloads`, `services` and `policies` at its top level loads into a
//! [`crate::Mesh`] beside (or instead of) Kubernetes objects, so the same snapshot, checks and traces run
//! against what a running node proxy holds. A node proxy fed by istiod's delta xDS builds the same [`State`].
//!
//! The semantics are ztunnel's (`src/rbac.rs`, `src/state.rs` of istio/ztunnel): an authorization's rules
//! match when any rule does; a rule when every clause does; a clause when any of its matches does (a clause
//! without matches holds, a match without fields never does); a match when every field holds. Policies apply to
//! a workload by scope: `Global` to every workload, `Namespace` to the workloads of its namespace,
//! `WorkloadSelector` to the workloads that name it in `authorizationPolicies`.
//!
//! Where ztunnel is lenient and leniency could widen access, this reading is strict: an empty string match, a
//! port outside 1–65535 and a prefix length beyond the address are errors naming the field, and a workload that
//! names a policy the state does not hold is denied every connection until the policy arrives (ztunnel skips
//! the unknown name, which would drop a DENY policy in flight).
//!
//! ```
//! use mesh_identity::spiffe::IstioIdentity;
//! use mesh_policy::{Mesh, proxy::Connection};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dump = r#"{
//!   "workloads": [{"uid": "Kubernetes//Pod/ledger/ledger-0", "name": "ledger-0", "namespace": "ledger",
//!                  "workloadIps": ["10.0.0.7"], "protocol": "HBONE", "serviceAccount": "ledger",
//!                  "trustDomain": "cluster.local", "node": "node-a",
//!                  "authorizationPolicies": ["ledger/from-accounts"]}],
//!   "services": [],
//!   "policies": [{"name": "from-accounts", "namespace": "ledger", "scope": "WorkloadSelector",
//!                 "action": "Allow", "dryRun": false,
//!                 "rules": [[[{"principals": [{"Exact": "cluster.local/ns/accounts/sa/accounts"}]}]]]}]
//! }"#;
//! let mut mesh = Mesh::default();
//! mesh.apply_yaml(dump)?;
//! let snapshot = mesh.snapshot();
//! let ledger = snapshot.cluster().workload_by_ip("10.0.0.7".parse()?).ok_or("no workload")?;
//! let target = snapshot.workload_target(ledger, 8080).ok_or("no target")?;
//! let accounts = IstioIdentity::parse_principal("cluster.local/ns/accounts/sa/accounts")?;
//! let web = IstioIdentity::parse_principal("cluster.local/ns/web/sa/web")?;
//! let from = |peer| Connection::new(target).with_peer(peer).with_source_ip("10.0.0.9".parse().unwrap());
//! assert!(snapshot.authorize_connection(&from(&accounts)).allowed);
//! assert!(!snapshot.authorize_connection(&from(&web)).allowed);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::resource::Kind;

/// What a node proxy holds from istiod: workloads, services and authorizations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Workloads (Pods, WorkloadEntries, ServiceEntry endpoints).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Services (Services and ServiceEntries).
    #[serde(default)]
    pub services: Vec<Service>,
    /// L4 authorizations.
    #[serde(default)]
    pub policies: Vec<Authorization>,
}

/// A workload as istiod describes it to node proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// The unique id, e.g. `Kubernetes//Pod/ledger/ledger-0`.
    #[serde(default)]
    pub uid: String,
    /// The Pod's (or entry's) name.
    #[serde(default)]
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its addresses.
    #[serde(default)]
    pub workload_ips: Vec<IpAddr>,
    /// `HBONE` when a node proxy captures its traffic (ambient mode), `TCP` otherwise.
    #[serde(default)]
    pub protocol: InboundProtocol,
    /// Its identity's trust domain (empty: the mesh's).
    #[serde(default)]
    pub trust_domain: String,
    /// Its identity's service account (empty: `default`).
    #[serde(default)]
    pub service_account: String,
    /// The network it is on.
    #[serde(default)]
    pub network: String,
    /// The waypoint traffic addressed to the workload goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<GatewayAddress>,
    /// The node it runs on.
    #[serde(default)]
    pub node: String,
    /// Its controller's name (`destination_workload` in telemetry).
    #[serde(default)]
    pub workload_name: String,
    /// `deployment`, `cronjob`, `pod`, `job`.
    #[serde(default)]
    pub workload_type: String,
    /// `service.istio.io/canonical-name`.
    #[serde(default)]
    pub canonical_name: String,
    /// `service.istio.io/canonical-revision`.
    #[serde(default)]
    pub canonical_revision: String,
    /// How tunnels are delivered to it when it is a third-party waypoint (PROXY protocol on a port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_tunnel: Option<ApplicationTunnel>,
    /// The `WorkloadSelector` authorizations that select it, as `namespace/name`.
    #[serde(default)]
    pub authorization_policies: Vec<String>,
    /// The services it is an endpoint of, `namespace/hostname`, with each service port's target port on this
    /// workload. ztunnel's config dump writes only the names here (the ports are in the service's
    /// `endpoints`); both forms are read.
    #[serde(default, deserialize_with = "services_of_workload")]
    pub services: BTreeMap<String, Vec<PortMapping>>,
    /// `Healthy` or `Unhealthy`.
    #[serde(default)]
    pub status: HealthStatus,
    /// The cluster it is in.
    #[serde(default)]
    pub cluster_id: String,
    /// `Standard` or `HostNetwork` (never captured).
    #[serde(default)]
    pub network_mode: NetworkMode,
}

/// A service port and the port it reaches on a workload (`0`: the service's own target port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The port clients use.
    pub service_port: u16,
    /// The workload's port.
    pub target_port: u16,
}

/// How a workload's inbound traffic arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum InboundProtocol {
    /// Plain TCP: not in ambient mode.
    #[default]
    TCP,
    /// HBONE: a node proxy captures it.
    HBONE,
}

/// `Healthy` or `Unhealthy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthStatus {
    /// Serving.
    #[default]
    Healthy,
    /// Not ready.
    Unhealthy,
}

/// Whether a workload has its own network namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// Its own network.
    #[default]
    Standard,
    /// The node's network: never captured.
    HostNetwork,
}

/// How a node proxy delivers tunnels to a workload that is a third-party waypoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationTunnel {
    /// `NONE` or `PROXY` (PROXY protocol v2 with the client's identity).
    pub protocol: TunnelProtocol,
    /// The port (absent: the connection's own port).
    #[serde(default)]
    pub port: Option<u16>,
}

/// An application tunnel's protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum TunnelProtocol {
    /// Plain bytes.
    #[default]
    NONE,
    /// PROXY protocol v2.
    PROXY,
}

/// Where a waypoint is: a service's host name, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    /// The waypoint's service or address.
    pub destination: GatewayDestination,
    /// Its HBONE port.
    #[serde(default = "hbone_port")]
    pub hbone_mtls_port: u16,
}

fn hbone_port() -> u16 {
    15008
}

/// A waypoint's service (`namespace`, `hostname`) or address (`network/ip`). Istio's ztunnel writes both as
/// one string, `namespace/hostname` or `network/ip`: the part after the first `/` is an address or a host
/// name. An object `{"namespace", "hostname"}` is read too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayDestination {
    /// The waypoint's Service.
    Hostname {
        /// Its namespace.
        namespace: String,
        /// Its host name.
        hostname: String,
    },
    /// An address, `network/ip` (the network may be empty: `/10.0.0.1`).
    Address(String),
}

impl Serialize for GatewayDestination {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GatewayDestination::Hostname { namespace, hostname } => {
                serializer.collect_str(&format_args!("{namespace}/{hostname}"))
            }
            GatewayDestination::Address(address) => serializer.serialize_str(address),
        }
    }
}

impl<'de> Deserialize<'de> for GatewayDestination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Hostname { namespace: String, hostname: String },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Hostname { namespace, hostname } => GatewayDestination::Hostname { namespace, hostname },
            Raw::Text(text) => match text.split_once('/') {
                Some((_, ip)) if ip.parse::<IpAddr>().is_ok() => GatewayDestination::Address(text),
                Some((namespace, hostname)) if !namespace.is_empty() && !hostname.is_empty() => {
                    GatewayDestination::Hostname { namespace: namespace.to_owned(), hostname: hostname.to_owned() }
                }
                // Neither form: kept as an address, which validation refuses naming the field.
                _ => GatewayDestination::Address(text),
            },
        })
    }
}

impl GatewayDestination {
    /// The address of an `Address` destination.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            GatewayDestination::Address(a) => network_ip(a),
            GatewayDestination::Hostname { .. } => None,
        }
    }
}

/// A service as istiod describes it to node proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// The Service's (or ServiceEntry's) name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its host name, e.g. `ledger.ledger.svc.cluster.local`.
    pub hostname: String,
    /// Virtual IPs, `network/ip`.
    #[serde(default)]
    pub vips: Vec<String>,
    /// Virtual IP ranges (a ServiceEntry's CIDR addresses), `network/cidr`.
    #[serde(default)]
    pub cidr_vips: Vec<String>,
    /// Service port → target port (`0`: per endpoint).
    #[serde(default, deserialize_with = "port_map")]
    pub ports: BTreeMap<u16, u16>,
    /// Endpoints by workload uid, with their port mapping (ztunnel's config dump; a proxy fed by xDS learns
    /// endpoints from [`Workload::services`]).
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The waypoint traffic addressed to the service goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<GatewayAddress>,
    /// Identities the endpoints may present besides their own.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

/// An endpoint of a service in ztunnel's config dump.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The workload's uid.
    pub workload_uid: String,
    /// Service port → the workload's port.
    #[serde(default, deserialize_with = "port_map")]
    pub port: BTreeMap<u16, u16>,
    /// `Healthy` or `Unhealthy`.
    #[serde(default)]
    pub status: HealthStatus,
}

impl Service {
    /// `namespace/hostname`: how workloads name the service, and its xDS resource name.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.hostname)
    }
}

/// An L4 authorization as istiod sends it to node proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// The AuthorizationPolicy's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Which workloads it applies to.
    pub scope: Scope,
    /// `Allow` or `Deny`.
    pub action: Action,
    /// Rules: any rule; in a rule every clause; in a clause any match.
    #[serde(default)]
    pub rules: Vec<Vec<Vec<Match>>>,
    /// Evaluated for logs only, never enforced.
    #[serde(default)]
    pub dry_run: bool,
}

impl Authorization {
    /// `namespace/name`: how workloads name it, and its xDS resource name.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Which workloads an authorization applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Every workload of the mesh (a root-namespace policy without selector).
    Global,
    /// Every workload of its namespace.
    Namespace,
    /// The workloads that name it in `authorizationPolicies`.
    WorkloadSelector,
}

/// What a matching authorization does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// One match of a clause: every field that is set must hold; within a field, any value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// The namespace of the peer's identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<StringMatch>,
    /// Not these namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<StringMatch>,
    /// The peer's namespace and service account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountMatch>,
    /// Not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<ServiceAccountMatch>,
    /// The peer's identity without `spiffe://`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<StringMatch>,
    /// Not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<StringMatch>,
    /// The peer's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<IpNet>,
    /// Not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_source_ips: Vec<IpNet>,
    /// The destination address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ips: Vec<IpNet>,
    /// Not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ips: Vec<IpNet>,
    /// The destination port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<u16>,
    /// Not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ports: Vec<u16>,
}

/// A string match of the workload API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Any non-empty value.
    Presence(),
}

/// A peer's namespace and service account, in any trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    /// The namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
}

/// A map of ports, its keys numbers or (as JSON writes them) strings of digits.
fn port_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, u16>, D::Error> {
    #[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
    #[serde(untagged)]
    enum Key {
        Number(u16),
        Text(String),
    }
    let raw = BTreeMap::<Key, u16>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match k {
            Key::Number(n) => Ok((n, v)),
            Key::Text(t) => t
                .parse::<u16>()
                .map(|n| (n, v))
                .map_err(|_| serde::de::Error::custom(format!("port {t:?} is not a number 0-65535"))),
        })
        .collect()
}

fn services_of_workload<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<PortMapping>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Named {
        Text(String),
        Parts { namespace: String, hostname: String },
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Map(BTreeMap<String, Vec<PortMapping>>),
        List(Vec<Named>),
    }
    Ok(match Form::deserialize(d)? {
        Form::Map(m) => m,
        Form::List(names) => names
            .into_iter()
            .map(|n| match n {
                Named::Text(t) => (t, Vec::new()),
                Named::Parts { namespace, hostname } => (format!("{namespace}/{hostname}"), Vec::new()),
            })
            .collect(),
    })
}

/// Every field of a workload that cannot be used, each naming the field.
pub fn validate_workload(w: &Workload) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if w.uid.is_empty() {
        errors.push(FieldError::new("uid", "must be set"));
    }
    if w.namespace.is_empty() {
        errors.push(FieldError::new("namespace", "must be set"));
    }
    for (key, ports) in &w.services {
        if !key.contains('/') {
            errors.push(FieldError::new(format!("services[{key}]"), "must be namespace/hostname"));
        }
        for (i, p) in ports.iter().enumerate() {
            if p.service_port == 0 {
                errors.push(FieldError::new(format!("services[{key}].ports[{i}].servicePort"), "must be 1-65535"));
            }
        }
    }
    for (i, p) in w.authorization_policies.iter().enumerate() {
        if p.split_once('/').is_none_or(|(ns, name)| ns.is_empty() || name.is_empty()) {
            errors.push(FieldError::new(format!("authorizationPolicies[{i}]"), "must be namespace/name"));
        }
    }
    if let Some(t) = &w.application_tunnel
        && t.port == Some(0)
    {
        errors.push(FieldError::new("applicationTunnel.port", "must be 1-65535"));
    }
    waypoint_errors(w.waypoint.as_ref(), &mut errors);
    errors
}

/// Every field of a service that cannot be used, each naming the field.
pub fn validate_service(s: &Service) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, value) in [("name", &s.name), ("namespace", &s.namespace), ("hostname", &s.hostname)] {
        if value.is_empty() {
            errors.push(FieldError::new(field, "must be set"));
        }
    }
    for (i, v) in s.vips.iter().enumerate() {
        if network_ip(v).is_none() {
            errors.push(FieldError::new(format!("vips[{i}]"), format!("{v:?} is not network/ip")));
        }
    }
    for (i, v) in s.cidr_vips.iter().enumerate() {
        if network_cidr(v).is_none() {
            errors.push(FieldError::new(format!("cidrVips[{i}]"), format!("{v:?} is not network/cidr")));
        }
    }
    if s.ports.contains_key(&0) {
        errors.push(FieldError::new("ports", "service port 0"));
    }
    waypoint_errors(s.waypoint.as_ref(), &mut errors);
    errors
}

fn waypoint_errors(w: Option<&GatewayAddress>, errors: &mut Vec<FieldError>) {
    let Some(w) = w else { return };
    match &w.destination {
        GatewayDestination::Hostname { namespace, hostname } if namespace.is_empty() || hostname.is_empty() => {
            errors.push(FieldError::new("waypoint.destination", "namespace and hostname must be set"))
        }
        GatewayDestination::Address(a) if w.destination.ip().is_none() => {
            errors.push(FieldError::new("waypoint.destination", format!("{a:?} is not network/ip")))
        }
        _ => {}
    }
    if w.hbone_mtls_port == 0 {
        errors.push(FieldError::new("waypoint.hboneMtlsPort", "must be 1-65535"));
    }
}

/// `network/ip` (or a bare ip).
pub(crate) fn network_ip(v: &str) -> Option<IpAddr> {
    v.rsplit_once('/').map_or(v, |(_, ip)| ip).parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// `network/cidr` (or a bare cidr).
pub(crate) fn network_cidr(v: &str) -> Option<IpNet> {
    // The network may itself contain no `/`; the CIDR has exactly one.
    let mut parts = v.rsplitn(3, '/');
    let len = parts.next()?;
    let ip = parts.next()?;
    format!("{ip}/{len}").parse().ok()
}

/// Every field of an authorization that cannot be enforced as written, each naming the field.
pub fn validate_authorization(a: &Authorization) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, value) in [("name", &a.name), ("namespace", &a.namespace)] {
        if value.is_empty() {
            errors.push(FieldError::new(field, "must be set"));
        }
    }
    for (r, rule) in a.rules.iter().enumerate() {
        for (c, clause) in rule.iter().enumerate() {
            for (m, mat) in clause.iter().enumerate() {
                let at = |field: &str| format!("rules[{r}][{c}][{m}].{field}");
                for (field, values) in [
                    ("namespaces", &mat.namespaces),
                    ("notNamespaces", &mat.not_namespaces),
                    ("principals", &mat.principals),
                    ("notPrincipals", &mat.not_principals),
                ] {
                    for (i, v) in values.iter().enumerate() {
                        let empty = match v {
                            StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::Suffix(s) => s.is_empty(),
                            StringMatch::Presence() => false,
                        };
                        if empty {
                            errors.push(FieldError::new(at(&format!("{field}[{i}]")), "an empty string match"));
                        }
                    }
                }
                for (field, ports) in
                    [("destinationPorts", &mat.destination_ports), ("notDestinationPorts", &mat.not_destination_ports)]
                {
                    if ports.contains(&0) {
                        errors.push(FieldError::new(at(field), "port 0"));
                    }
                }
                for (field, sas) in
                    [("serviceAccounts", &mat.service_accounts), ("notServiceAccounts", &mat.not_service_accounts)]
                {
                    for (i, sa) in sas.iter().enumerate() {
                        if sa.namespace.is_empty() || sa.service_account.is_empty() {
                            errors.push(FieldError::new(
                                at(&format!("{field}[{i}]")),
                                "namespace and serviceAccount must be set",
                            ));
                        }
                    }
                }
            }
        }
    }
    errors
}

/// The kind a workload's uid names (`<cluster>/<group>/<Kind>/<namespace>/<name>...`): WorkloadEntry, a
/// ServiceEntry's endpoint, else a Pod.
pub(crate) fn workload_kind(w: &Workload) -> Kind {
    match uid_parts(&w.uid) {
        Some(("WorkloadEntry", _)) => Kind::WorkloadEntry,
        Some(("ServiceEntry", _)) => Kind::ServiceEntry,
        _ => Kind::Pod,
    }
}

/// A workload's name as the model names it: what its uid names after the kind and namespace (a ServiceEntry
/// endpoint's `entry/address`), else its name.
pub(crate) fn workload_name(w: &Workload) -> String {
    match uid_parts(&w.uid) {
        Some((_, rest)) if !rest.is_empty() => rest.to_owned(),
        _ if !w.name.is_empty() => w.name.clone(),
        _ => w.uid.clone(),
    }
}

/// `(kind, name...)` of a uid `<cluster>/<group>/<Kind>/<namespace>/<name...>`.
fn uid_parts(uid: &str) -> Option<(&str, &str)> {
    let mut parts = uid.splitn(5, '/');
    let (_cluster, _group, kind, _ns, rest) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((kind, rest))
}

/// Service for a host name `<name>.<namespace>.svc.<domain>`, else ServiceEntry.
pub(crate) fn service_kind(s: &Service) -> Kind {
    let service_host = format!("{}.{}.svc.", s.name, s.namespace);
    if s.hostname.starts_with(&service_host) { Kind::Service } else { Kind::ServiceEntry }
}

/// The cluster objects of a state's workloads and services, named as the model names them.
pub(crate) fn objects(state: &State) -> Vec<crate::cluster::ClusterObject> {
    use crate::cluster::{ClusterObject, objects::Meta};
    let meta = |namespace: &str, name: String| Meta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        ..Meta::default()
    };
    let workloads = state
        .workloads
        .iter()
        .map(|w| ClusterObject::XdsWorkload(meta(&w.namespace, workload_name(w)), Box::new(w.clone())));
    let services = state
        .services
        .iter()
        .map(|s| ClusterObject::XdsService(meta(&s.namespace, s.name.clone()), Box::new(s.clone())));
    workloads.chain(services).collect()
}
