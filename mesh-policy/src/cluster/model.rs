//! [`Cluster`]: workloads, services and waypoints, resolved from the cluster objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::FxHashMap;

use super::ClusterObject;
use super::labels::{self, Addressed, WaypointFor};
use super::objects::{self, IntOrString, LabelSelector};
use super::validate::{is_headless, looks_like_hostname};
use crate::config::MeshConfig;
use crate::request::ServiceKind;
use crate::resource::{Kind, ResourceId};

/// Index of a workload in its [`Cluster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId(pub(crate) usize);

/// Index of a Service or ServiceEntry in its [`Cluster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub(crate) usize);

/// A waypoint Gateway's id (`Gateway namespace/name`).
pub type WaypointId = ResourceId;

/// What a workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadKind {
    /// A Pod.
    Pod,
    /// A WorkloadEntry.
    WorkloadEntry,
    /// An endpoint written inline in a ServiceEntry.
    ServiceEntryEndpoint,
}

/// A workload: a Pod, a WorkloadEntry or an inline ServiceEntry endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Workload {
    /// `Pod namespace/name`, `WorkloadEntry namespace/name`, or `ServiceEntry namespace/name[i]`.
    pub id: ResourceId,
    /// What it is.
    pub kind: WorkloadKind,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    pub service_account: String,
    /// Its identity as a principal: `<trust domain>/ns/<namespace>/sa/<service account>`.
    pub principal: String,
    /// The node it runs on (`spec.nodeName`).
    pub node: Option<String>,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// Named container ports.
    pub named_ports: BTreeMap<String, u16>,
    /// Whether a node proxy captures its traffic (ambient mode).
    pub enrolled: bool,
    /// The waypoint of traffic addressed to the workload's own IP.
    pub waypoint: WaypointBinding,
    /// The Gateway whose deployment this Pod belongs to (`gateway.networking.k8s.io/gateway-name`).
    pub gateway: Option<String>,
    /// The workload's name as Istio's telemetry names it (`source_workload`, `destination_workload`): a Pod's
    /// Deployment, CronJob or other controller, else the Pod itself; a WorkloadEntry's or ServiceEntry's name.
    pub workload_name: String,
    /// The policies istiod attached to the workload by selector (`WorkloadSelector` scope), for a workload of
    /// istiod's form ([`crate::xds`]); empty for Kubernetes objects, whose selectors the index matches.
    pub authorization_policies: Vec<ResourceId>,
    /// For a workload of istiod's form: each service it is an endpoint of (`namespace/hostname`), with the
    /// workload port of each service port.
    pub service_ports: BTreeMap<String, BTreeMap<u16, u16>>,
}

impl Workload {
    /// `namespace/name`.
    pub fn qualified(&self) -> &str {
        self.id.qualified()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.id.namespace()
    }
}

/// A port of a Service or ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServicePort {
    /// The port clients use.
    pub port: u16,
    /// Its name.
    pub name: Option<String>,
    /// The workload port.
    pub target: TargetPort,
    /// `TCP`, `HTTP`, ...
    pub protocol: Option<String>,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// Where a service port goes on a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port (a Pod that does not name it is not an endpoint for this port).
    Name(String),
}

/// A Service or ServiceEntry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceView {
    /// `Service namespace/name` or `ServiceEntry namespace/name`.
    pub id: ResourceId,
    /// Host names: `<name>.<namespace>.svc.<cluster domain>` for a Service, `hosts` for a ServiceEntry.
    pub hosts: Vec<String>,
    /// Virtual IPs (ranges for a ServiceEntry's CIDR addresses).
    pub vips: Vec<IpNet>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// The object's own labels.
    pub labels: BTreeMap<String, String>,
    /// The Service's selector, or the ServiceEntry's `workloadSelector`.
    pub selector: Option<BTreeMap<String, String>>,
    /// Endpoints: selected workloads with an address, and a ServiceEntry's inline endpoints.
    pub endpoints: Vec<WorkloadId>,
    /// The waypoint of traffic addressed to the service.
    pub waypoint: WaypointBinding,
    /// Whether traffic from ingress gateways goes through that waypoint too (`istio.io/ingress-use-waypoint`).
    pub ingress: IngressWaypoint,
    /// ServiceEntry `location: MESH_EXTERNAL` (the default for ServiceEntries).
    pub external: bool,
}

/// Whether ingress gateways send a service's traffic through its waypoint, and the label that decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngressWaypoint {
    /// Through the waypoint (when the service has one); otherwise straight to the endpoints.
    pub use_waypoint: bool,
    /// The Service, ServiceEntry or Namespace whose `istio.io/ingress-use-waypoint` label decided, with its value;
    /// `None` when neither carries it.
    pub label: Option<WaypointLabel>,
}

impl IngressWaypoint {
    /// Read as istiod's `ingressUseWaypointFromLabels` (`pilot/pkg/serviceregistry/ambient/services.go`) reads
    /// it: the service's own label when it has one, whatever its value, else its namespace's; the value parsed
    /// with Go's `strconv.ParseBool` (`1`, `t`, `T`, `true`, `True`, `TRUE` are true), anything else false
    /// (istiod logs it and does not fall back to the namespace's label).
    fn from_labels(
        on: &ResourceId,
        own: &BTreeMap<String, String>,
        namespace_labels: &BTreeMap<String, String>,
    ) -> Self {
        let label = match own.get(labels::INGRESS_USE_WAYPOINT) {
            Some(v) => WaypointLabel { on: on.clone(), value: v.clone() },
            None => match namespace_labels.get(labels::INGRESS_USE_WAYPOINT) {
                Some(v) => WaypointLabel { on: ResourceId::new(Kind::Namespace, "", on.namespace()), value: v.clone() },
                None => return IngressWaypoint::default(),
            },
        };
        IngressWaypoint {
            use_waypoint: crate::compile::fields::parse_bool(&label.value) == Some(true),
            label: Some(label),
        }
    }
}

impl ServiceView {
    /// Service or ServiceEntry.
    pub fn kind(&self) -> ServiceKind {
        if self.id.kind() == Kind::ServiceEntry { ServiceKind::ServiceEntry } else { ServiceKind::Service }
    }

    /// The port entry for a service port.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The workload port that a connection to service port `port` reaches on `workload`; `None` when the port
    /// is not the service's, or names a container port the workload does not have.
    pub fn target_port(&self, port: u16, workload: &Workload) -> Option<u16> {
        let p = self.port(port)?;
        if !workload.service_ports.is_empty()
            && let Some(host) = self.hosts.first()
            && let Some(&target) = workload
                .service_ports
                .iter()
                .find(|(key, _)| key.split_once('/') == Some((self.id.namespace(), host.as_str())))
                .and_then(|(_, ports)| ports.get(&port))
            && target != 0
        {
            return Some(target);
        }
        if workload.kind == WorkloadKind::ServiceEntryEndpoint || workload.kind == WorkloadKind::WorkloadEntry {
            // WorkloadEntry / inline endpoint `ports` map a port name to the endpoint's port.
            if let Some(mapped) = p.name.as_ref().and_then(|n| workload.named_ports.get(n)) {
                return Some(*mapped);
            }
        }
        match &p.target {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(name) => workload.named_ports.get(name).copied(),
        }
    }
}

/// Why a label names a waypoint that traffic does not use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unusable {
    /// No Gateway has that namespace and name.
    NoSuchGateway,
    /// The Gateway is not of the waypoint class.
    NotAWaypoint {
        /// Its class.
        class: String,
    },
    /// The waypoint does not serve this kind of traffic (`istio.io/waypoint-for`).
    NotFor {
        /// What it serves.
        waypoint_for: WaypointFor,
    },
    /// The waypoint's HBONE listener does not admit this namespace (`allowedRoutes`).
    NotAdmitted,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::NoSuchGateway => f.write_str("no such Gateway"),
            Unusable::NotAWaypoint { class } => write!(f, "the Gateway is of class {class:?}, not a waypoint"),
            Unusable::NotFor { waypoint_for } => {
                write!(f, "the waypoint serves {} traffic ({})", waypoint_for.as_str(), labels::WAYPOINT_FOR)
            }
            Unusable::NotAdmitted => f.write_str("the waypoint's HBONE listener does not admit this namespace"),
        }
    }
}

/// The object whose label decided (`istio.io/use-waypoint`, or `istio.io/ingress-use-waypoint` in
/// [`IngressWaypoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaypointLabel {
    /// The Namespace, Service, ServiceEntry or Pod carrying the label.
    pub on: ResourceId,
    /// The label's value.
    pub value: String,
}

/// Which waypoint, if any, traffic to a service or workload goes through, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaypointBinding {
    /// No label applies.
    #[default]
    None,
    /// `istio.io/use-waypoint: none`.
    OptedOut(WaypointLabel),
    /// Traffic goes through this waypoint.
    Uses {
        /// The waypoint Gateway.
        waypoint: WaypointId,
        /// The label that named it.
        label: WaypointLabel,
    },
    /// A label names a waypoint that traffic cannot use, so it goes directly (as Istio routes it).
    Unusable {
        /// The Gateway named.
        waypoint: WaypointId,
        /// The label that named it.
        label: WaypointLabel,
        /// Why it is not used.
        why: Unusable,
    },
}

impl WaypointBinding {
    /// The waypoint traffic goes through.
    pub fn waypoint(&self) -> Option<&WaypointId> {
        match self {
            WaypointBinding::Uses { waypoint, .. } => Some(waypoint),
            _ => None,
        }
    }
}

/// A waypoint: a Gateway of the waypoint class.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Waypoint {
    /// `Gateway namespace/name`.
    pub id: WaypointId,
    /// What it serves.
    pub waypoint_for: WaypointFor,
    /// The service account its deployment runs as.
    pub service_account: String,
    /// Its identity as a principal.
    pub principal: String,
    /// Its addresses (`status.addresses`, else `spec.addresses`).
    pub addresses: Vec<IpAddr>,
    /// The Pods of its deployment.
    pub workloads: Vec<WorkloadId>,
    /// How a third-party waypoint's own node proxy delivers tunnels to it (the
    /// `ambient.istio.io/waypoint-inbound-binding` annotation); `None` for Istio's own waypoints, which
    /// terminate HBONE themselves.
    pub binding: Option<InboundBinding>,
    admits: Admits,
}

/// A third-party waypoint's inbound binding, as istiod's `makeInboundBinding` reads the annotation (the
/// Gateway's, else its GatewayClass's): `PROXY` or `NONE`, and the port when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundBinding {
    /// `PROXY`: the node proxy opens each delivered connection with a PROXY protocol v2 header carrying the
    /// client's identity (the "sandwich"); `NONE`: plain bytes.
    pub proxy_protocol: bool,
    /// The waypoint Pod's port the node proxy delivers to (`15088` in `PROXY/15088`); `None` when not given.
    pub port: Option<u16>,
}

impl InboundBinding {
    /// Parses `PROXY`, `PROXY/15088`, `NONE`, ...; `None` for anything else, which istiod ignores with a
    /// warning.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('/');
        let protocol = parts.next()?;
        let port = match parts.next() {
            Some(port) => Some(port.parse::<u16>().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        let proxy_protocol = match protocol {
            "PROXY" => true,
            "NONE" => false,
            _ => return None,
        };
        Some(InboundBinding { proxy_protocol, port })
    }
}

/// The namespaces a waypoint's HBONE listener admits (`allowedRoutes.namespaces`), as istiod's
/// `makeAllowedRoutes` / `makeWaypointSelector` read them (`pilot/pkg/serviceregistry/ambient/waypoints.go`).
#[derive(Debug, Clone)]
enum Admits {
    /// `Same` (the default, also for no HBONE listener on 15008 and a `from` istiod does not know).
    Same,
    /// `All`.
    All,
    /// `Selector`: the namespaces whose labels it selects, the waypoint's own included only if selected.
    Selector(LabelSelector),
    /// `Selector` without a selector: istiod's `LabelSelectorAsSelector(nil)` selects nothing.
    Nothing,
}

impl Waypoint {
    /// Whether the waypoint's HBONE listener admits users from `namespace` (with these labels), as istiod's
    /// `Waypoint.AllowsAttachmentFromNamespace` decides: a selector is matched against the waypoint's own
    /// namespace too.
    pub fn admits(&self, namespace: &str, namespace_labels: &BTreeMap<String, String>) -> bool {
        match &self.admits {
            Admits::Same => namespace == self.id.namespace(),
            Admits::All => true,
            Admits::Selector(s) => s.matches(namespace_labels),
            Admits::Nothing => false,
        }
    }
}

/// The cluster: workloads, services and waypoints, with lookups by address and name.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    cluster_domain: String,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    workloads: Vec<Workload>,
    services: Vec<ServiceView>,
    waypoints: BTreeMap<WaypointId, Waypoint>,
    gateways: BTreeMap<ResourceId, String>,
    /// The `istio.io/dataplane-mode` label of Gateways that carry one, which their Pods inherit.
    gateway_modes: BTreeMap<ResourceId, String>,
    by_ip: FxHashMap<IpAddr, WorkloadId>,
    by_vip: FxHashMap<IpAddr, ServiceId>,
    vip_ranges: Vec<(IpNet, ServiceId)>,
    by_host: FxHashMap<String, ServiceId>,
    wildcard_hosts: Vec<(String, ServiceId)>,
    by_name: BTreeMap<ResourceId, ServiceId>,
    /// namespace → name → (Service, ServiceEntry): lookups by name without building an id.
    by_namespace: FxHashMap<Box<str>, NamesInNamespace>,
    workload_by_id: BTreeMap<ResourceId, WorkloadId>,
    objects: usize,
}

const NO_LABELS: &BTreeMap<String, String> = &BTreeMap::new();

/// The workloads of istiod's form while a [`Cluster`] is built.
#[derive(Default)]
struct XdsIndex<'a> {
    /// By uid.
    uids: FxHashMap<&'a str, WorkloadId>,
    /// By each service they name (`namespace/hostname`).
    naming: FxHashMap<&'a str, Vec<WorkloadId>>,
    /// How tunnels reach those that are third-party waypoints (`applicationTunnel`).
    tunnels: FxHashMap<WorkloadId, InboundBinding>,
}

impl<'a> XdsIndex<'a> {
    fn add(&mut self, id: WorkloadId, w: &'a crate::xds::Workload) {
        self.uids.insert(&w.uid, id);
        for key in w.services.keys() {
            self.naming.entry(key).or_default().push(id);
        }
        if let Some(t) = &w.application_tunnel {
            let proxy_protocol = t.protocol == crate::xds::TunnelProtocol::PROXY;
            self.tunnels.insert(id, InboundBinding { proxy_protocol, port: t.port });
        }
    }
}

/// A namespace's services by name: the Service and the ServiceEntry of that name.
type NamesInNamespace = FxHashMap<Box<str>, [Option<ServiceId>; 2]>;

fn namespace_of(meta: &objects::Meta) -> &str {
    meta.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default")
}

fn name_of(meta: &objects::Meta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn parse_ips<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for v in values {
        if let Ok(ip) = v.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

impl Cluster {
    /// Builds the model from cluster objects (validated with [`ClusterObject::validate`]; fields that are not
    /// addresses are left out of address lookups).
    pub fn build<'a>(objects: impl IntoIterator<Item = &'a ClusterObject>, config: &MeshConfig) -> Self {
        let mut c = Cluster { cluster_domain: config.cluster_domain.clone(), ..Cluster::default() };
        let objects: Vec<&ClusterObject> = objects.into_iter().collect();
        c.objects = objects.len();
        for o in &objects {
            if let ClusterObject::Namespace(n) = o {
                c.namespaces.insert(name_of(&n.metadata).to_owned(), n.metadata.labels.clone());
            }
        }
        let mut classes = BTreeMap::new();
        for o in &objects {
            if let ClusterObject::GatewayClass(gc) = o {
                classes.insert(name_of(&gc.metadata), &gc.metadata);
            }
        }
        for o in &objects {
            if let ClusterObject::Gateway(g) = o {
                let class = classes.get(g.spec.gateway_class_name.as_str()).copied();
                c.add_gateway(g, class, config);
            }
        }
        // Workloads of istiod's form: by uid, by the services they name, and how tunnels reach those that are
        // third-party waypoints; the waypoints istiod names, bound once everything is in.
        let mut xds = XdsIndex::default();
        let mut xds_waypoints = Vec::new();
        for o in &objects {
            match o {
                ClusterObject::XdsWorkload(m, w) => {
                    let id = c.add_xds_workload(m, w, config);
                    xds.add(id, w);
                    if let Some(wp) = &w.waypoint {
                        xds_waypoints.push((Err(id), wp));
                    }
                }
                ClusterObject::Pod(p) => c.add_pod(p, config),
                ClusterObject::WorkloadEntry(we) => {
                    let ns = namespace_of(&we.metadata);
                    let id = ResourceId::new(Kind::WorkloadEntry, ns, name_of(&we.metadata));
                    let labels = merged(&we.metadata.labels, &we.spec.labels);
                    c.add_entry(id, WorkloadKind::WorkloadEntry, &we.spec, labels, config);
                }
                _ => {}
            }
        }
        for o in &objects {
            match o {
                ClusterObject::Service(s) => c.add_service(s),
                ClusterObject::ServiceEntry(se) => c.add_service_entry(se, config),
                ClusterObject::XdsService(m, s) => {
                    let id = c.add_xds_service(m, s, &xds);
                    if let Some(wp) = &s.waypoint {
                        xds_waypoints.push((Ok(id), wp));
                    }
                }
                _ => {}
            }
        }
        // Waypoint Pods: the deployment of each waypoint.
        for (i, w) in c.workloads.iter().enumerate() {
            if let Some(gw) = &w.gateway
                && let Some(wp) = c.waypoints.get_mut(&ResourceId::new(Kind::Gateway, w.namespace(), gw))
            {
                wp.workloads.push(WorkloadId(i));
            }
        }
        c.bind_waypoints();
        for (on, waypoint) in xds_waypoints {
            c.bind_xds_waypoint(on, waypoint, &xds.tunnels, config);
        }
        c
    }

    fn add_xds_workload(&mut self, meta: &objects::Meta, w: &crate::xds::Workload, config: &MeshConfig) -> WorkloadId {
        use crate::xds::{InboundProtocol, NetworkMode};
        let ns = namespace_of(meta);
        let service_account = if w.service_account.is_empty() { "default" } else { &w.service_account };
        let trust_domain = if w.trust_domain.is_empty() { &config.trust_domain } else { &w.trust_domain };
        let mut labels = BTreeMap::new();
        for (key, value) in [
            ("service.istio.io/canonical-name", &w.canonical_name),
            ("service.istio.io/canonical-revision", &w.canonical_revision),
        ] {
            if !value.is_empty() {
                labels.insert(key.to_owned(), value.clone());
            }
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in &w.workload_ips {
            let ip = ip.to_canonical();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let id = WorkloadId(self.workloads.len());
        self.push_workload(Workload {
            id: ResourceId::new(crate::xds::workload_kind(w), ns, name_of(meta)),
            kind: match crate::xds::workload_kind(w) {
                Kind::WorkloadEntry => WorkloadKind::WorkloadEntry,
                Kind::ServiceEntry => WorkloadKind::ServiceEntryEndpoint,
                _ => WorkloadKind::Pod,
            },
            labels,
            principal: format!("{trust_domain}/ns/{ns}/sa/{service_account}"),
            service_account: service_account.to_owned(),
            node: Some(w.node.clone()).filter(|n| !n.is_empty()),
            ips,
            named_ports: BTreeMap::new(),
            enrolled: w.protocol == InboundProtocol::HBONE && w.network_mode == NetworkMode::Standard,
            waypoint: WaypointBinding::None,
            gateway: None,
            workload_name: if w.workload_name.is_empty() { name_of(meta).to_owned() } else { w.workload_name.clone() },
            authorization_policies: w
                .authorization_policies
                .iter()
                .filter_map(|p| p.split_once('/'))
                .map(|(ns, name)| ResourceId::new(Kind::AuthorizationPolicy, ns, name))
                .collect(),
            service_ports: w
                .services
                .iter()
                .map(|(key, ports)| (key.clone(), ports.iter().map(|p| (p.service_port, p.target_port)).collect()))
                .collect(),
        });
        id
    }

    fn add_xds_service(&mut self, meta: &objects::Meta, s: &crate::xds::Service, xds: &XdsIndex<'_>) -> ServiceId {
        let key = s.key();
        let mut endpoints: Vec<WorkloadId> = Vec::new();
        // Endpoints as the config dump lists them, their port mappings kept on the workload.
        for (uid, e) in &s.endpoints {
            let Some(&id) = xds.uids.get(e.workload_uid.as_str()).or_else(|| xds.uids.get(uid.as_str())) else {
                continue;
            };
            let ports = self.workloads[id.0].service_ports.entry(key.clone()).or_default();
            for (port, target) in &e.port {
                ports.entry(*port).or_insert(*target);
            }
            endpoints.push(id);
        }
        // Endpoints as xDS gives them: the workloads that name the service.
        endpoints.extend(xds.naming.get(key.as_str()).into_iter().flatten());
        endpoints.sort();
        endpoints.dedup();
        let vips = s
            .vips
            .iter()
            .filter_map(|v| crate::xds::network_ip(v).map(IpNet::from))
            .chain(s.cidr_vips.iter().filter_map(|v| crate::xds::network_cidr(v)))
            .collect();
        let ports = s
            .ports
            .iter()
            .map(|(port, target)| ServicePort {
                port: *port,
                name: None,
                target: TargetPort::Number(if *target == 0 { *port } else { *target }),
                protocol: None,
                app_protocol: None,
            })
            .collect();
        let id = ServiceId(self.services.len());
        self.push_service(ServiceView {
            id: ResourceId::new(crate::xds::service_kind(s), namespace_of(meta), name_of(meta)),
            hosts: vec![s.hostname.clone()],
            vips,
            ports,
            labels: BTreeMap::new(),
            selector: None,
            endpoints,
            waypoint: WaypointBinding::None,
            ingress: IngressWaypoint::default(),
            external: false,
        });
        id
    }

    /// Binds a workload (`Err`) or service (`Ok`) of istiod's form to the waypoint istiod named for it: the
    /// Service at that host name or address is the waypoint's (its Gateway has the Service's name). A waypoint
    /// that is not in the model stays named, so traffic fails rather than bypassing it.
    fn bind_xds_waypoint(
        &mut self,
        on: Result<ServiceId, WorkloadId>,
        address: &crate::xds::GatewayAddress,
        tunnels: &FxHashMap<WorkloadId, InboundBinding>,
        config: &MeshConfig,
    ) {
        use crate::xds::GatewayDestination;
        let service = match &address.destination {
            GatewayDestination::Hostname { hostname, .. } => self.by_host.get(&hostname.to_ascii_lowercase()).copied(),
            GatewayDestination::Address(_) => address.destination.ip().and_then(|ip| self.by_vip.get(&ip).copied()),
        };
        let waypoint = match (service, &address.destination) {
            (Some(sid), _) => {
                let s = &self.services[sid.0];
                ResourceId::new(Kind::Gateway, s.id.namespace(), s.id.name())
            }
            (None, GatewayDestination::Hostname { namespace, hostname }) => {
                ResourceId::new(Kind::Gateway, namespace, hostname.split('.').next().unwrap_or(hostname))
            }
            (None, GatewayDestination::Address(a)) => ResourceId::new(Kind::Gateway, "", a),
        };
        if let Some(sid) = service
            && !self.waypoints.contains_key(&waypoint)
        {
            let s = &self.services[sid.0];
            let first = s.endpoints.first().and_then(|w| self.workloads.get(w.0));
            let service_account = first.map_or_else(|| s.id.name().to_owned(), |w| w.service_account.clone());
            let principal = first.map_or_else(
                || format!("{}/ns/{}/sa/{service_account}", config.trust_domain, s.id.namespace()),
                |w| w.principal.clone(),
            );
            let binding = s.endpoints.iter().find_map(|w| tunnels.get(w).copied());
            let wp = Waypoint {
                id: waypoint.clone(),
                waypoint_for: WaypointFor::All,
                service_account,
                principal,
                addresses: s.vips.iter().filter(|n| n.prefix_len() == n.max_prefix_len()).map(IpNet::addr).collect(),
                workloads: s.endpoints.clone(),
                binding,
                admits: Admits::All,
            };
            self.waypoints.insert(waypoint.clone(), wp);
        }
        let (object, binding) = match on {
            Ok(sid) => (self.services[sid.0].id.clone(), &mut self.services[sid.0].waypoint),
            Err(wid) => (self.workloads[wid.0].id.clone(), &mut self.workloads[wid.0].waypoint),
        };
        let label = WaypointLabel { on: object, value: waypoint.name().to_owned() };
        *binding = WaypointBinding::Uses { waypoint, label };
    }

    fn add_gateway(&mut self, g: &objects::GatewayObject, class: Option<&objects::Meta>, config: &MeshConfig) {
        let class_labels = class.map_or(NO_LABELS, |c| &c.labels);
        let ns = namespace_of(&g.metadata);
        let name = name_of(&g.metadata);
        let id = ResourceId::new(Kind::Gateway, ns, name);
        self.gateways.insert(id.clone(), g.spec.gateway_class_name.clone());
        if let Some(mode) = g.metadata.labels.get(labels::DATAPLANE_MODE) {
            self.gateway_modes.insert(id.clone(), mode.clone());
        }
        // istiod's makeInboundBinding: the Gateway's annotation, else its GatewayClass's; an invalid value is
        // ignored, as istiod ignores it.
        let binding = g
            .metadata
            .annotations
            .get(labels::WAYPOINT_INBOUND_BINDING)
            .or_else(|| class.and_then(|c| c.annotations.get(labels::WAYPOINT_INBOUND_BINDING)))
            .and_then(|v| InboundBinding::parse(v));
        // Istio's own class, or a third-party waypoint class that declares how tunnels reach it.
        if g.spec.gateway_class_name != config.waypoint_gateway_class && binding.is_none() {
            return;
        }
        let service_account =
            g.metadata.annotations.get(labels::GATEWAY_SERVICE_ACCOUNT).cloned().unwrap_or_else(|| name.to_owned());
        // istiod's makeAllowedRoutes: the listener on the binding's port, else the HBONE listener on port 15008,
        // else `Same`.
        let bound =
            binding.and_then(|b| b.port).and_then(|port| g.spec.listeners.iter().find(|l| l.port == Some(port)));
        let listener = bound.or_else(|| {
            g.spec.listeners.iter().find(|l| l.protocol.as_deref() == Some("HBONE") && l.port == Some(15008))
        });
        let admits = match listener.and_then(|l| l.allowed_routes.as_ref()).and_then(|r| r.namespaces.as_ref()) {
            None => Admits::Same,
            Some(n) => match (n.from.as_deref(), &n.selector) {
                (Some("All"), _) => Admits::All,
                (Some("Selector"), Some(s)) => Admits::Selector(s.clone()),
                (Some("Selector"), None) => Admits::Nothing,
                // `Same`, absent, or a value istiod does not know (its default case).
                _ => Admits::Same,
            },
        };
        let status = g.status.addresses.iter();
        let addresses = if g.status.addresses.is_empty() { g.spec.addresses.iter() } else { status };
        let addresses =
            parse_ips(addresses.filter(|a| a.kind.as_deref().unwrap_or("IPAddress") == "IPAddress").map(|a| &*a.value));
        let waypoint = Waypoint {
            principal: format!("{}/ns/{ns}/sa/{service_account}", config.trust_domain),
            id: id.clone(),
            // istiod's gatewayToWaypointTransform: the Gateway's label, else its GatewayClass's, else `service`.
            waypoint_for: WaypointFor::parse(
                g.metadata
                    .labels
                    .get(labels::WAYPOINT_FOR)
                    .or_else(|| class_labels.get(labels::WAYPOINT_FOR))
                    .map(String::as_str),
            ),
            service_account,
            addresses,
            workloads: Vec::new(),
            binding,
            admits,
        };
        self.waypoints.insert(id, waypoint);
    }

    fn enrolled(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        match labels.get(labels::DATAPLANE_MODE).map(String::as_str) {
            Some("none") => false,
            Some("ambient") => true,
            _ => self.namespace_labels(namespace).get(labels::DATAPLANE_MODE).map(String::as_str) == Some("ambient"),
        }
    }

    /// Whether a Pod of Gateway `gateway` is in ambient mode. A waypoint's Pods never are (its deployment labels
    /// them `istio.io/dataplane-mode: none`). Another gateway's deployment gets the label its Gateway carries,
    /// else `none` (`setLabelOverrides` in `pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go`); the
    /// Pod's own label, when the manifest shows it, is what the CNI then reads.
    fn gateway_pod_enrolled(&self, namespace: &str, gateway: &str, pod_labels: &BTreeMap<String, String>) -> bool {
        let id = ResourceId::new(Kind::Gateway, namespace, gateway);
        if let Some(waypoint) = self.waypoints.get(&id) {
            // Istio's waypoints speak HBONE themselves; a third-party waypoint is an ambient workload, reached
            // through its own node proxy, enrolled as any Pod is.
            return waypoint.binding.is_some() && self.enrolled(namespace, pod_labels);
        }
        let mode = pod_labels.get(labels::DATAPLANE_MODE).or_else(|| self.gateway_modes.get(&id));
        let mut labels = pod_labels.clone();
        labels.insert(labels::DATAPLANE_MODE.to_owned(), mode.map_or("none", String::as_str).to_owned());
        self.enrolled(namespace, &labels)
    }

    fn push_workload(&mut self, w: Workload) {
        let id = WorkloadId(self.workloads.len());
        for ip in &w.ips {
            self.by_ip.entry(*ip).or_insert(id);
        }
        self.workload_by_id.insert(w.id.clone(), id);
        self.workloads.push(w);
    }

    fn add_pod(&mut self, p: &objects::PodObject, config: &MeshConfig) {
        let ns = namespace_of(&p.metadata);
        let ended = matches!(p.status.phase.as_deref(), Some("Succeeded" | "Failed"));
        let ips = if ended {
            Vec::new()
        } else {
            parse_ips(p.status.pod_ip.iter().map(String::as_str).chain(p.status.pod_ips.iter().map(|i| &*i.ip)))
        };
        let service_account = p
            .spec
            .service_account_name
            .clone()
            .or_else(|| p.spec.service_account.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let labels = p.metadata.labels.clone();
        let gateway = labels.get(labels::GATEWAY_NAME).cloned();
        let enrolled = !p.spec.host_network.unwrap_or(false)
            && match &gateway {
                None => self.enrolled(ns, &labels),
                Some(gw) => self.gateway_pod_enrolled(ns, gw, &labels),
            };
        let named_ports = p
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .filter_map(|cp| cp.name.clone().map(|n| (n, cp.container_port)))
            .collect();
        self.push_workload(Workload {
            workload_name: deployment_name(&p.metadata),
            id: ResourceId::new(Kind::Pod, ns, name_of(&p.metadata)),
            kind: WorkloadKind::Pod,
            principal: format!("{}/ns/{ns}/sa/{service_account}", config.trust_domain),
            service_account,
            labels,
            node: p.spec.node_name.clone().filter(|n| !n.is_empty()),
            ips,
            named_ports,
            enrolled,
            waypoint: WaypointBinding::None,
            gateway,
            authorization_policies: Vec::new(),
            service_ports: BTreeMap::new(),
        });
    }

    fn add_entry(
        &mut self,
        id: ResourceId,
        kind: WorkloadKind,
        spec: &objects::WorkloadEntrySpec,
        labels: BTreeMap<String, String>,
        config: &MeshConfig,
    ) -> WorkloadId {
        let ns = id.namespace().to_owned();
        let service_account =
            spec.service_account.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into());
        let ips = parse_ips(spec.address.iter().map(String::as_str).filter(|a| !looks_like_hostname(a)));
        let enrolled = self.enrolled(&ns, &labels) && kind == WorkloadKind::WorkloadEntry
            || labels.get(labels::DATAPLANE_MODE).map(String::as_str) == Some("ambient");
        let workload_name = match id.name().split_once('[') {
            // A ServiceEntry's inline endpoint: the ServiceEntry.
            Some((entry, _)) if kind == WorkloadKind::ServiceEntryEndpoint => entry.to_owned(),
            _ => id.name().to_owned(),
        };
        let w = Workload {
            workload_name,
            id,
            kind,
            principal: format!("{}/ns/{ns}/sa/{service_account}", config.trust_domain),
            service_account,
            labels,
            node: None,
            ips,
            named_ports: spec.ports.clone(),
            enrolled,
            waypoint: WaypointBinding::None,
            gateway: None,
            authorization_policies: Vec::new(),
            service_ports: BTreeMap::new(),
        };
        let id = WorkloadId(self.workloads.len());
        self.push_workload(w);
        id
    }

    fn selected(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Vec<WorkloadId> {
        if selector.is_empty() {
            return Vec::new();
        }
        self.workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                w.kind != WorkloadKind::ServiceEntryEndpoint
                    && w.namespace() == namespace
                    && !w.ips.is_empty()
                    && selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
            })
            .map(|(i, _)| WorkloadId(i))
            .collect()
    }

    fn push_service(&mut self, s: ServiceView) {
        let id = ServiceId(self.services.len());
        for host in &s.hosts {
            let host = host.to_ascii_lowercase();
            match host.strip_prefix('*') {
                Some(suffix) => self.wildcard_hosts.push((suffix.to_owned(), id)),
                None => {
                    self.by_host.entry(host).or_insert(id);
                }
            }
        }
        for net in &s.vips {
            if net.prefix_len() == net.max_prefix_len() {
                self.by_vip.entry(net.addr()).or_insert(id);
            } else {
                self.vip_ranges.push((*net, id));
            }
        }
        self.by_name.insert(s.id.clone(), id);
        let slot = usize::from(s.kind() == ServiceKind::ServiceEntry);
        let names = self.by_namespace.entry(s.id.namespace().into()).or_default();
        names.entry(s.id.name().into()).or_default()[slot] = Some(id);
        self.services.push(s);
    }

    fn add_service(&mut self, s: &objects::ServiceObject) {
        let ns = namespace_of(&s.metadata);
        let name = name_of(&s.metadata);
        let vips = parse_ips(
            s.spec.cluster_ip.iter().chain(&s.spec.cluster_ips).map(String::as_str).filter(|v| !is_headless(v)),
        );
        let ports = s
            .spec
            .ports
            .iter()
            .map(|p| ServicePort {
                port: p.port,
                name: p.name.clone(),
                target: match &p.target_port {
                    None => TargetPort::Number(p.port),
                    Some(IntOrString::Int(n)) => TargetPort::Number(*n),
                    Some(IntOrString::String(s)) => match s.parse::<u16>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s.clone()),
                    },
                },
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let endpoints = s.spec.selector.as_ref().map(|sel| self.selected(ns, sel)).unwrap_or_default();
        let service = ServiceView {
            id: ResourceId::new(Kind::Service, ns, name),
            hosts: vec![format!("{name}.{ns}.svc.{}", self.cluster_domain)],
            vips: vips.into_iter().map(IpNet::from).collect(),
            ports,
            labels: s.metadata.labels.clone(),
            selector: s.spec.selector.clone(),
            endpoints,
            waypoint: WaypointBinding::None,
            ingress: IngressWaypoint::default(),
            external: false,
        };
        self.push_service(service);
    }

    fn add_service_entry(&mut self, se: &objects::ServiceEntryObject, config: &MeshConfig) {
        let ns = namespace_of(&se.metadata);
        let name = name_of(&se.metadata);
        let id = ResourceId::new(Kind::ServiceEntry, ns, name);
        let selector = se.spec.workload_selector.as_ref().map(|s| s.labels.clone());
        let mut endpoints = selector.as_ref().map(|sel| self.selected(ns, sel)).unwrap_or_default();
        for (i, e) in se.spec.endpoints.iter().enumerate() {
            let wid = ResourceId::new(Kind::ServiceEntry, ns, &format!("{name}[{i}]"));
            let labels = e.labels.clone();
            endpoints.push(self.add_entry(wid, WorkloadKind::ServiceEntryEndpoint, e, labels, config));
        }
        let vips = se
            .spec
            .addresses
            .iter()
            .filter_map(|a| a.parse::<IpNet>().ok().or_else(|| a.parse::<IpAddr>().ok().map(IpNet::from)))
            .collect();
        let ports = se
            .spec
            .ports
            .iter()
            .map(|p| ServicePort {
                port: p.number,
                name: p.name.clone(),
                target: TargetPort::Number(p.target_port.unwrap_or(p.number)),
                protocol: p.protocol.clone(),
                app_protocol: None,
            })
            .collect();
        let service = ServiceView {
            id,
            hosts: se.spec.hosts.clone(),
            vips,
            ports,
            labels: se.metadata.labels.clone(),
            selector,
            endpoints,
            waypoint: WaypointBinding::None,
            ingress: IngressWaypoint::default(),
            external: se.spec.location.as_deref() != Some("MESH_INTERNAL"),
        };
        self.push_service(service);
    }

    fn bind_waypoints(&mut self) {
        for i in 0..self.services.len() {
            let s = &self.services[i];
            let binding = if self.is_gateway_service(s) {
                WaypointBinding::None
            } else {
                self.binding(&s.id, &s.labels, Addressed::Service)
            };
            let ingress = IngressWaypoint::from_labels(&s.id, &s.labels, self.namespace_labels(s.id.namespace()));
            self.services[i].waypoint = binding;
            self.services[i].ingress = ingress;
        }
        for i in 0..self.workloads.len() {
            let w = &self.workloads[i];
            let binding = if w.gateway.is_some() {
                WaypointBinding::None
            } else {
                self.binding(&w.id, &w.labels, Addressed::Workload)
            };
            self.workloads[i].waypoint = binding;
        }
    }
}

impl Cluster {
    /// Whether a Service is one istiod never gives a waypoint (`fetchWaypointForService` in
    /// `pilot/pkg/serviceregistry/ambient/waypoints.go`): a waypoint's or an east-west gateway's own Service,
    /// which istiod labels `gateway.istio.io/managed: istio.io-mesh-controller` or
    /// `istio.io-eastwest-controller`. A Service written without that label but naming a waypoint of the model
    /// in `gateway.networking.k8s.io/gateway-name` is the waypoint's own Service too. Any other Service, an
    /// ingress gateway's included, gets a waypoint as usual.
    fn is_gateway_service(&self, s: &ServiceView) -> bool {
        if matches!(
            s.labels.get(labels::GATEWAY_MANAGED).map(String::as_str),
            Some(labels::MANAGED_BY_MESH_CONTROLLER | labels::MANAGED_BY_EASTWEST_CONTROLLER)
        ) {
            return true;
        }
        s.labels
            .get(labels::GATEWAY_NAME)
            .is_some_and(|gw| self.waypoints.contains_key(&ResourceId::new(Kind::Gateway, s.id.namespace(), gw)))
    }

    /// The waypoint binding of an object, from its own labels or its namespace's.
    fn binding(&self, on: &ResourceId, own: &BTreeMap<String, String>, addressed: Addressed) -> WaypointBinding {
        let namespace = on.namespace();
        let ns_labels = self.namespace_labels(namespace);
        let (label, waypoint_ns, object_level) = match own.get(labels::USE_WAYPOINT) {
            Some(v) => {
                (WaypointLabel { on: on.clone(), value: v.clone() }, own.get(labels::USE_WAYPOINT_NAMESPACE), true)
            }
            None => match ns_labels.get(labels::USE_WAYPOINT) {
                Some(v) => (
                    WaypointLabel { on: ResourceId::new(Kind::Namespace, "", namespace), value: v.clone() },
                    ns_labels.get(labels::USE_WAYPOINT_NAMESPACE),
                    false,
                ),
                None => return WaypointBinding::None,
            },
        };
        if label.value == "none" {
            return WaypointBinding::OptedOut(label);
        }
        // As istiod's GetUseWaypoint: the namespace label, when present, is taken as written; an empty one names
        // no Gateway, so traffic goes directly.
        let waypoint_ns = waypoint_ns.map_or(namespace, String::as_str);
        let waypoint = ResourceId::new(Kind::Gateway, waypoint_ns, &label.value);
        let why = match self.waypoints.get(&waypoint) {
            None => match self.gateways.get(&waypoint) {
                Some(class) => Unusable::NotAWaypoint { class: class.clone() },
                None => Unusable::NoSuchGateway,
            },
            Some(w) if !w.waypoint_for.serves(addressed) => {
                // A namespace's waypoint that does not serve this kind of traffic simply is not used for it.
                if !object_level {
                    return WaypointBinding::None;
                }
                Unusable::NotFor { waypoint_for: w.waypoint_for }
            }
            Some(w) if !w.admits(namespace, ns_labels) => Unusable::NotAdmitted,
            Some(_) => return WaypointBinding::Uses { waypoint, label },
        };
        WaypointBinding::Unusable { waypoint, label, why }
    }

    /// The labels of a namespace (none for a namespace the manifests do not define).
    pub fn namespace_labels(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.namespaces.get(namespace).unwrap_or(NO_LABELS)
    }

    /// Whether the manifests define no cluster object at all.
    pub fn is_empty(&self) -> bool {
        self.objects == 0
    }

    /// The cluster domain (`cluster.local`).
    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    /// Every workload.
    pub fn workloads(&self) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.workloads.iter().enumerate().map(|(i, w)| (WorkloadId(i), w))
    }

    /// A workload.
    pub fn workload(&self, id: WorkloadId) -> Option<&Workload> {
        self.workloads.get(id.0)
    }

    /// The workload with this id (`Pod namespace/name`, ...).
    pub fn workload_named(&self, id: &ResourceId) -> Option<WorkloadId> {
        self.workload_by_id.get(id).copied()
    }

    /// The workload that has this address.
    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<WorkloadId> {
        self.by_ip.get(&ip.to_canonical()).copied()
    }

    /// Every Service and ServiceEntry.
    pub fn services(&self) -> impl Iterator<Item = (ServiceId, &ServiceView)> {
        self.services.iter().enumerate().map(|(i, s)| (ServiceId(i), s))
    }

    /// A Service or ServiceEntry.
    pub fn service(&self, id: ServiceId) -> Option<&ServiceView> {
        self.services.get(id.0)
    }

    /// The Service (`Service namespace/name`) or ServiceEntry (`ServiceEntry namespace/name`) with this id.
    pub fn service_named(&self, id: &ResourceId) -> Option<ServiceId> {
        self.by_name.get(id).copied()
    }

    /// The Service (or ServiceEntry) `name` of `namespace`.
    pub fn service_in(&self, namespace: &str, name: &str, kind: ServiceKind) -> Option<ServiceId> {
        let slot = usize::from(kind == ServiceKind::ServiceEntry);
        self.by_namespace.get(namespace)?.get(name)?[slot]
    }

    /// The Service or ServiceEntry with this virtual IP.
    pub fn service_by_vip(&self, ip: IpAddr) -> Option<ServiceId> {
        let ip = ip.to_canonical();
        self.by_vip.get(&ip).copied().or_else(|| self.vip_ranges.iter().find(|(n, _)| n.contains(&ip)).map(|(_, s)| *s))
    }

    /// The Service or ServiceEntry with this fully qualified host name (ServiceEntry wildcards included).
    pub fn service_by_host(&self, host: &str) -> Option<ServiceId> {
        let host = host.to_ascii_lowercase();
        self.by_host.get(&host).copied().or_else(|| {
            self.wildcard_hosts
                .iter()
                .filter(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                .max_by_key(|(suffix, _)| suffix.len())
                .map(|(_, s)| *s)
        })
    }

    /// Every waypoint.
    pub fn waypoints(&self) -> impl Iterator<Item = &Waypoint> {
        self.waypoints.values()
    }

    /// A waypoint.
    pub fn waypoint(&self, id: &WaypointId) -> Option<&Waypoint> {
        self.waypoints.get(id)
    }

    /// Every Gateway, waypoint or not, with its class.
    pub fn gateways(&self) -> impl Iterator<Item = (&ResourceId, &str)> {
        self.gateways.iter().map(|(id, class)| (id, class.as_str()))
    }

    /// The namespaces the manifests define, with their labels.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, String>)> {
        self.namespaces.iter().map(|(n, l)| (n.as_str(), l))
    }

    /// Whether a namespace is in ambient mode.
    pub fn namespace_enrolled(&self, namespace: &str) -> bool {
        self.namespace_labels(namespace).get(labels::DATAPLANE_MODE).map(String::as_str) == Some("ambient")
    }
}

fn merged(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = a.clone();
    out.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The name of the workload a Pod belongs to, as istiod's `GetDeployMetaFromPod` (`pkg/kube`) works it out for
/// the workload name ztunnel and waypoints report: a
/// Pod whose name was generated and that has a controller takes the controller's name; a ReplicaSet named
/// `<deployment>-<pod-template-hash>` (or an Argo Rollout's `rollouts-pod-template-hash`) gives the
/// Deployment's; an OpenShift ReplicationController its `deploymentconfig` label; a Job named
/// `<cronjob>-<8 to 10 digits>` the CronJob's. Anything else is the Pod's own name.
fn deployment_name(meta: &objects::Meta) -> String {
    let own = || name_of(meta).to_owned();
    if meta.generate_name.as_deref().is_none_or(str::is_empty) {
        return own();
    }
    let Some(controller) =
        meta.owner_references.iter().find(|r| r.controller == Some(true)).filter(|r| !r.name.is_empty())
    else {
        return own();
    };
    let hash_suffix = |label: &str| {
        meta.labels
            .get(label)
            .filter(|hash| !hash.is_empty())
            .and_then(|hash| controller.name.strip_suffix(hash.as_str()))
            .and_then(|rest| rest.strip_suffix('-'))
    };
    match controller.kind.as_str() {
        "ReplicaSet" => hash_suffix("pod-template-hash")
            .or_else(|| hash_suffix("rollouts-pod-template-hash"))
            .unwrap_or(&controller.name)
            .to_owned(),
        "ReplicationController" if meta.labels.get("deploymentconfig").is_some_and(|d| !d.is_empty()) => {
            meta.labels.get("deploymentconfig").cloned().unwrap_or_default()
        }
        "Job" => match controller.name.rsplit_once('-') {
            Some((cronjob, stamp))
                if !cronjob.is_empty()
                    && (8..=10).contains(&stamp.len())
                    && stamp.bytes().all(|b| b.is_ascii_digit()) =>
            {
                cronjob.to_owned()
            }
            _ => controller.name.clone(),
        },
        _ => controller.name.clone(),
    }
}

#[cfg(test)]
mod workload_name_tests {
    use super::*;

    fn meta(generate: &str, kind: &str, owner: &str, labels: &[(&str, &str)]) -> objects::Meta {
        objects::Meta {
            name: Some("pod-x1y2z".into()),
            generate_name: Some(generate.into()).filter(|g: &String| !g.is_empty()),
            owner_references: vec![objects::OwnerReference {
                kind: kind.into(),
                name: owner.into(),
                controller: Some(true),
                ..objects::OwnerReference::default()
            }],
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..objects::Meta::default()
        }
    }

    #[test]
    fn a_pod_is_named_by_its_controller_as_istiod_names_it() {
        let cases = [
            (meta("ledger-7d9f8-", "ReplicaSet", "ledger-7d9f8", &[("pod-template-hash", "7d9f8")]), "ledger"),
            (meta("r-", "ReplicaSet", "r-abc", &[("rollouts-pod-template-hash", "abc")]), "r"),
            (meta("rs-", "ReplicaSet", "plain-rs", &[]), "plain-rs"),
            (meta("db-", "StatefulSet", "db", &[]), "db"),
            (meta("n-", "DaemonSet", "node-agent", &[]), "node-agent"),
            (meta("rc-", "ReplicationController", "app-3", &[("deploymentconfig", "app")]), "app"),
            (meta("j-", "Job", "report-28485120", &[]), "report"),
            (meta("j-", "Job", "migrate-1234567", &[]), "migrate-1234567"),
            (meta("j-", "Job", "backfill", &[]), "backfill"),
            // A name not generated, or no controller: the Pod's own name.
            (meta("", "ReplicaSet", "ledger-7d9f8", &[("pod-template-hash", "7d9f8")]), "pod-x1y2z"),
        ];
        for (meta, expected) in cases {
            assert_eq!(deployment_name(&meta), expected, "{meta:?}");
        }
        let mut not_controller = meta("a-", "ReplicaSet", "a-1", &[("pod-template-hash", "1")]);
        not_controller.owner_references[0].controller = None;
        assert_eq!(deployment_name(&not_controller), "pod-x1y2z");
    }
}
