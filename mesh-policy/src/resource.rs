//! Identity of a resource: its kind, namespace and name.

use std::fmt;
use std::sync::Arc;

/// The kinds this crate reads: the three security kinds it evaluates, and the cluster objects the
/// [`crate::cluster`] model is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy,
    /// `security.istio.io` RequestAuthentication.
    RequestAuthentication,
    /// `security.istio.io` PeerAuthentication.
    PeerAuthentication,
    /// Core `Namespace` (cluster-scoped: its id has no namespace).
    Namespace,
    /// Core `Service`.
    Service,
    /// Core `Pod`.
    Pod,
    /// `networking.istio.io` ServiceEntry.
    ServiceEntry,
    /// `networking.istio.io` WorkloadEntry.
    WorkloadEntry,
    /// `gateway.networking.k8s.io` Gateway (waypoints are Gateways of the waypoint class).
    Gateway,
    /// `gateway.networking.k8s.io` GatewayClass (cluster-scoped: its id has no namespace).
    GatewayClass,
}

impl Kind {
    /// The kind as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::Pod => "Pod",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Gateway => "Gateway",
            Kind::GatewayClass => "GatewayClass",
        }
    }

    /// The security kind named `name` (group `security.istio.io`), if this crate evaluates it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "AuthorizationPolicy" => Some(Kind::AuthorizationPolicy),
            "RequestAuthentication" => Some(Kind::RequestAuthentication),
            "PeerAuthentication" => Some(Kind::PeerAuthentication),
            _ => None,
        }
    }

    /// Whether objects of the kind belong to no namespace (Namespace, GatewayClass).
    pub fn is_cluster_scoped(self) -> bool {
        matches!(self, Kind::Namespace | Kind::GatewayClass)
    }

    /// Whether the kind is one of the three security kinds, rather than a cluster object.
    pub fn is_security(self) -> bool {
        matches!(self, Kind::AuthorizationPolicy | Kind::RequestAuthentication | Kind::PeerAuthentication)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind namespace/name` of a resource (`kind name` for a cluster-scoped one). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    kind: Kind,
    /// `namespace/name`, the form decisions report.
    qualified: Arc<str>,
    slash: usize,
}

impl ResourceId {
    /// The id of `kind` `namespace/name`; an empty `namespace` makes a cluster-scoped id, `name` alone.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        if namespace.is_empty() {
            return ResourceId { kind, qualified: name.into(), slash: usize::MAX };
        }
        ResourceId { kind, qualified: format!("{namespace}/{name}").into(), slash: namespace.len() }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.qualified.get(..self.slash).unwrap_or("")
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.qualified.get(self.slash.saturating_add(1)..).unwrap_or(&self.qualified)
    }

    /// `namespace/name` (`name` when cluster-scoped), shared.
    pub fn qualified(&self) -> &Arc<str> {
        &self.qualified
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.qualified)
    }
}
