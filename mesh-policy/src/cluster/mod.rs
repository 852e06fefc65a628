//! The cluster model: which workloads exist, their addresses and identities, which Services select them, which
//! namespaces and pods are in ambient mode, and which waypoint serves what, resolved from the same Kubernetes
//! YAML as the policies, with the labels Istio reads.
//!
//! Zero-IO: [`Cluster`] is built from parsed objects and answers lookups (by pod IP, service VIP, host name) and
//! the questions a node proxy and a waypoint ask ("which waypoint, if any, does traffic to this address go
//! through?", "which endpoints, on which port?").

pub mod labels;
mod model;
pub mod objects;
mod resolve;
mod route;
mod validate;

pub use labels::{Addressed, WaypointFor};
pub use model::{
    Cluster, InboundBinding, IngressWaypoint, ServiceId, ServicePort, ServiceView, TargetPort, Unusable, Waypoint,
    WaypointBinding, WaypointId, WaypointLabel, Workload, WorkloadId, WorkloadKind,
};
pub use resolve::{ResolveError, Resolved};
pub use route::Route;

use crate::error::FieldError;
use crate::resource::Kind;
use objects::{
    GatewayClassObject, GatewayObject, NamespaceObject, PodObject, ServiceEntryObject, ServiceObject,
    WorkloadEntryObject,
};

/// A cluster object of a kind the model reads.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterObject {
    /// A Namespace.
    Namespace(NamespaceObject),
    /// A Service.
    Service(ServiceObject),
    /// A Pod.
    Pod(PodObject),
    /// A ServiceEntry.
    ServiceEntry(ServiceEntryObject),
    /// A WorkloadEntry.
    WorkloadEntry(WorkloadEntryObject),
    /// A Gateway.
    Gateway(GatewayObject),
    /// A GatewayClass.
    GatewayClass(GatewayClassObject),
    /// A workload as istiod sends it to node proxies ([`crate::xds`]), with its namespace and name (the Pod's,
    /// or the entry's) as metadata.
    XdsWorkload(objects::Meta, Box<crate::xds::Workload>),
    /// A service as istiod sends it to node proxies ([`crate::xds`]), with its namespace and name as metadata.
    XdsService(objects::Meta, Box<crate::xds::Service>),
}

impl ClusterObject {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            ClusterObject::Namespace(_) => Kind::Namespace,
            ClusterObject::Service(_) => Kind::Service,
            ClusterObject::Pod(_) => Kind::Pod,
            ClusterObject::ServiceEntry(_) => Kind::ServiceEntry,
            ClusterObject::WorkloadEntry(_) => Kind::WorkloadEntry,
            ClusterObject::Gateway(_) => Kind::Gateway,
            ClusterObject::GatewayClass(_) => Kind::GatewayClass,
            ClusterObject::XdsWorkload(_, w) => crate::xds::workload_kind(w),
            ClusterObject::XdsService(_, s) => crate::xds::service_kind(s),
        }
    }

    /// The metadata.
    pub fn metadata(&self) -> &objects::Meta {
        match self {
            ClusterObject::Namespace(o) => &o.metadata,
            ClusterObject::Service(o) => &o.metadata,
            ClusterObject::Pod(o) => &o.metadata,
            ClusterObject::ServiceEntry(o) => &o.metadata,
            ClusterObject::WorkloadEntry(o) => &o.metadata,
            ClusterObject::Gateway(o) => &o.metadata,
            ClusterObject::GatewayClass(o) => &o.metadata,
            ClusterObject::XdsWorkload(m, _) | ClusterObject::XdsService(m, _) => m,
        }
    }

    /// Every field of the object that the model cannot read (an address that is not an IP, ...).
    pub fn validate(&self) -> Vec<FieldError> {
        validate::object(self)
    }
}

/// The kind of a cluster object, by API group and kind, when the model reads it.
pub(crate) fn kind_of(group: &str, kind: &str) -> Option<Kind> {
    match (group, kind) {
        ("", "Namespace") => Some(Kind::Namespace),
        ("", "Service") => Some(Kind::Service),
        ("", "Pod") => Some(Kind::Pod),
        ("networking.istio.io", "ServiceEntry") => Some(Kind::ServiceEntry),
        ("networking.istio.io", "WorkloadEntry") => Some(Kind::WorkloadEntry),
        ("gateway.networking.k8s.io", "Gateway") => Some(Kind::Gateway),
        ("gateway.networking.k8s.io", "GatewayClass") => Some(Kind::GatewayClass),
        _ => None,
    }
}
