//! Identity of a resource: its kind, namespace and name.

use std::fmt;
use std::sync::Arc;

/// The kinds this crate evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy,
    /// `security.istio.io` RequestAuthentication.
    RequestAuthentication,
    /// `security.istio.io` PeerAuthentication.
    PeerAuthentication,
}

impl Kind {
    /// The kind as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::PeerAuthentication => "PeerAuthentication",
        }
    }

    /// The kind named `name`, if this crate evaluates it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "AuthorizationPolicy" => Some(Kind::AuthorizationPolicy),
            "RequestAuthentication" => Some(Kind::RequestAuthentication),
            "PeerAuthentication" => Some(Kind::PeerAuthentication),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind namespace/name` of a resource. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    kind: Kind,
    /// `namespace/name`, the form decisions report.
    qualified: Arc<str>,
    slash: usize,
}

impl ResourceId {
    /// The id of `kind` `namespace/name`.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ResourceId { kind, qualified: format!("{namespace}/{name}").into(), slash: namespace.len() }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.qualified[..self.slash]
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.qualified[self.slash + 1..]
    }

    /// `namespace/name`, shared.
    pub fn qualified(&self) -> &Arc<str> {
        &self.qualified
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.qualified)
    }
}
