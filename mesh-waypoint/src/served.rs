//! What a tunnel is addressed to, in the cluster model: a Service (or ServiceEntry) port by its VIP, or a
//! workload by its own IP. The waypoint serves only destinations whose waypoint binding names its Gateway
//! (which already accounts for `istio.io/waypoint-for`); anything else is refused. [`resolve`] turns a CONNECT
//! authority into a [`Served`] destination, whose endpoints are [`Endpoint`]s borrowed from the snapshot;
//! the one chosen becomes an owned [`Dial`] for the onward hop.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use mesh_policy::Snapshot;
use mesh_policy::cluster::{Resolved, ServiceView, Waypoint, Workload, WorkloadId};
use mesh_policy::proxy::Target;
use mesh_policy::request::ServiceKind;
use mesh_policy::resource::ResourceId;

use crate::protocol::{self, Protocol};
use crate::upstream::Dial;

/// Why the waypoint does not serve an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotServed {
    /// The model has no such address, or the service no such port.
    #[error("{0}")]
    Unknown(String),
    /// The destination uses another waypoint, or none.
    #[error("{what} does not use this waypoint ({binding})")]
    OtherWaypoint {
        /// The Service or Pod.
        what: String,
        /// The waypoint it uses.
        binding: String,
    },
    /// The Gateway is not (or no longer) in the configuration.
    #[error("the configuration defines no waypoint Gateway {0}")]
    NoGateway(String),
    /// Nowhere to send it.
    #[error("{0} has no endpoint for the port")]
    NoEndpoints(String),
}

/// A destination this waypoint serves, resolved from a CONNECT authority and borrowed from one snapshot.
#[derive(Debug)]
pub(crate) struct Served<'s> {
    /// The Service or ServiceEntry addressed, if a VIP was.
    pub(crate) service: Option<&'s ServiceView>,
    /// The port dialled.
    pub(crate) port: u16,
    /// The endpoints with the workload port each is reached on (one, the workload itself, when a Pod IP was
    /// addressed).
    pub(crate) endpoints: Vec<(&'s Workload, u16)>,
    /// This waypoint.
    pub(crate) waypoint: &'s Waypoint,
    /// What the port carries.
    pub(crate) protocol: Protocol,
}

/// An endpoint chosen for one request or connection, borrowed from the snapshot it was chosen from: what
/// policy and metrics read. The onward hop connects to its [`Dial`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint<'s> {
    /// Its workload.
    pub(crate) workload: &'s Workload,
    /// Its address.
    pub(crate) ip: IpAddr,
    /// The workload port.
    pub(crate) port: u16,
}

/// Resolves `authority` in `snapshot` for the waypoint `me`.
pub(crate) fn resolve<'s>(
    snapshot: &'s Snapshot,
    me: &ResourceId,
    authority: SocketAddr,
) -> Result<Served<'s>, NotServed> {
    let cluster = snapshot.cluster();
    let waypoint = cluster.waypoint(me).ok_or_else(|| NotServed::NoGateway(me.qualified().to_string()))?;
    let resolved = cluster.resolve_addr(authority).map_err(|e| NotServed::Unknown(e.to_string()))?;
    let binding_of = |b: &mesh_policy::cluster::WaypointBinding| match b.waypoint() {
        Some(w) => format!("it uses {}", w.qualified()),
        None => "it uses no waypoint".to_owned(),
    };
    let (service, protocol) = match resolved {
        Resolved::Service { service, port } => {
            let s = cluster.service(service).ok_or_else(|| NotServed::Unknown(format!("{authority}")))?;
            if s.waypoint.waypoint() != Some(me) {
                return Err(NotServed::OtherWaypoint { what: s.id.to_string(), binding: binding_of(&s.waypoint) });
            }
            (Some(s), protocol::declared(s.port(port)))
        }
        Resolved::Workload { workload, .. } => {
            let w = cluster.workload(workload).ok_or_else(|| NotServed::Unknown(format!("{authority}")))?;
            if w.waypoint.waypoint() != Some(me) {
                return Err(NotServed::OtherWaypoint { what: w.id.to_string(), binding: binding_of(&w.waypoint) });
            }
            (None, Protocol::Detect)
        }
        _ => return Err(NotServed::Unknown(format!("{authority}"))),
    };
    let route = cluster.route(resolved, None).map_err(|e| NotServed::Unknown(e.to_string()))?;
    let endpoints: Vec<(&Workload, u16)> = route
        .endpoints
        .iter()
        .filter_map(|&(id, port): &(WorkloadId, u16)| Some((cluster.workload(id)?, port)))
        .filter(|(w, _)| !w.ips.is_empty())
        .collect();
    if endpoints.is_empty() {
        let what = service.map_or_else(|| authority.to_string(), |s| s.id.to_string());
        return Err(NotServed::NoEndpoints(what));
    }
    Ok(Served { service, port: authority.port(), endpoints, waypoint, protocol })
}

impl<'s> Served<'s> {
    /// The next endpoint, round-robin by `counter`.
    pub(crate) fn pick(&self, counter: &AtomicUsize) -> Endpoint<'s> {
        let i = counter.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let (workload, port) = self.endpoints[i];
        // `resolve` keeps only endpoints with an address.
        let ip = workload.ips.first().copied().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Endpoint { workload, ip, port }
    }

    /// The endpoint at `pinned` (address and workload port) when it is still one of this destination's, else
    /// the next one: a connection decided against an endpoint is relayed to that endpoint.
    pub(crate) fn pick_pinned(&self, counter: &AtomicUsize, pinned: Option<(IpAddr, u16)>) -> Endpoint<'s> {
        let found = pinned.and_then(|(ip, port)| {
            self.endpoints
                .iter()
                .find(|(w, p)| *p == port && w.ips.first() == Some(&ip))
                .map(|&(workload, port)| Endpoint { workload, ip, port })
        });
        found.unwrap_or_else(|| self.pick(counter))
    }

    /// The namespace of the destination: the service's, else the workload's.
    pub(crate) fn namespace(&self) -> &'s str {
        match self.service {
            Some(s) => s.id.namespace(),
            None => self.endpoints.first().map_or("", |(w, _)| w.namespace()),
        }
    }

    /// The policy target of a request to `endpoint`: the namespace, the service addressed (for `targetRefs`),
    /// this waypoint (for policies on its Gateway), the endpoint's labels and address, the port dialled.
    pub(crate) fn target(&self, endpoint: &Endpoint<'s>) -> Target<'s> {
        let mut target = Target::new(self.namespace(), &endpoint.workload.labels)
            .with_waypoint(self.waypoint.id.namespace(), self.waypoint.id.name())
            .with_ip(endpoint.ip)
            .with_port(self.port);
        if let Some(s) = self.service {
            target = match s.kind() {
                ServiceKind::Service => target.with_service(s.id.name()),
                ServiceKind::ServiceEntry => target.with_service_entry(s.id.name()),
            };
        }
        target
    }
}

impl From<&Endpoint<'_>> for Dial {
    /// How to reach the endpoint, owned: it outlives the snapshot it was chosen from.
    fn from(view: &Endpoint<'_>) -> Self {
        Dial {
            name: view.workload.qualified().to_owned(),
            workload: view.workload.id.name().to_owned(),
            namespace: view.workload.namespace().to_owned(),
            ip: view.ip,
            port: view.port,
            identity: view.workload.enrolled.then(|| format!("spiffe://{}", view.workload.principal)),
        }
    }
}

/// The name of a workload as metrics label it: its Deployment (or other controller), as Istio's telemetry
/// names it.
pub(crate) fn workload_name(w: &Workload) -> &str {
    &w.workload_name
}
