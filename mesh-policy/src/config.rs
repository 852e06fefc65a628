//! Mesh-wide settings that change how policies are read and evaluated.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::model::path::PathNormalization;

/// Mesh-wide settings, as `meshConfig` and istiod's environment set them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    /// The root namespace: its policies without selector apply mesh-wide. Default `istio-system`.
    pub root_namespace: String,
    /// The mesh's trust domain. Default `cluster.local`.
    pub trust_domain: String,
    /// Other trust domains whose identities are the same workloads (`meshConfig.trustDomainAliases`).
    pub trust_domain_aliases: Vec<String>,
    /// Path normalization before waypoint authorization. Default `BASE`.
    pub path_normalization: PathNormalization,
    /// The GatewayClass of waypoints, for policies that target a GatewayClass and for the cluster model's
    /// waypoints. Default `istio-waypoint`.
    pub waypoint_gateway_class: String,
    /// The cluster's DNS domain, for Service host names (`<svc>.<ns>.svc.<domain>`). Default `cluster.local`.
    pub cluster_domain: String,
    /// The largest manifest one apply reads, in bytes. Default [`DEFAULT_MAX_MANIFEST_BYTES`] (3 MiB), the
    /// request body limit of the Kubernetes API server. Every other budget of the YAML reader (nodes, events,
    /// alias expansion) scales with the size of the manifest.
    pub max_manifest_bytes: usize,
}

/// The default [`MeshConfig::max_manifest_bytes`]: 3 MiB, as the Kubernetes API server limits a request body.
pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 3 << 20;

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            path_normalization: PathNormalization::Base,
            waypoint_gateway_class: "istio-waypoint".into(),
            cluster_domain: "cluster.local".into(),
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
        }
    }
}

impl MeshConfig {
    /// The trust domain followed by its aliases.
    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.trust_domain.as_str()).chain(self.trust_domain_aliases.iter().map(String::as_str))
    }
}

impl MeshConfig {
    /// Checks the settings: the trust domain and every alias must be SPIFFE trust domain names (lower-case
    /// letters, digits, `.`, `-`, `_`; not empty, so not `*` either), and the root namespace must be set.
    /// A mesh with invalid settings refuses every apply.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut domain = |field: String, name: &str| {
            if let Err(e) = mesh_identity::spiffe::TrustDomain::new(name) {
                let hint = if name == "*" { ": a wildcard alias would accept every trust domain" } else { "" };
                errors.push(FieldError::new(field, format!("{name:?} is not a SPIFFE trust domain ({e}){hint}")));
            }
        };
        domain("trust_domain".into(), &self.trust_domain);
        for (i, alias) in self.trust_domain_aliases.iter().enumerate() {
            domain(format!("trust_domain_aliases[{i}]"), alias);
        }
        if self.root_namespace.is_empty() {
            errors.push(FieldError::new("root_namespace", "must be set"));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}
