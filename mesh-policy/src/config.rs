//! Mesh-wide settings that change how policies are read and evaluated.

use serde::{Deserialize, Serialize};

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
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            path_normalization: PathNormalization::Base,
            waypoint_gateway_class: "istio-waypoint".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

impl MeshConfig {
    /// The trust domain followed by its aliases.
    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.trust_domain.as_str()).chain(self.trust_domain_aliases.iter().map(String::as_str))
    }
}
