//! Compiled PeerAuthentication and the effective mTLS mode of a workload port.

use std::collections::BTreeMap;

use crate::crd::MtlsMode;
use crate::resource::ResourceId;

/// A validated PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPeerAuthentication {
    /// `namespace/name`.
    pub id: ResourceId,
    /// `matchLabels`; `None` for a namespace-wide (or, in the root namespace, mesh-wide) policy.
    pub selector: Option<BTreeMap<String, String>>,
    /// The mode for ports not in `port_modes`.
    pub mode: MtlsMode,
    /// Per workload port.
    pub port_modes: BTreeMap<u16, MtlsMode>,
    /// `metadata.creationTimestamp`: among competing policies at one level the oldest wins.
    pub created: Option<String>,
}

impl CompiledPeerAuthentication {
    /// Orders competing policies: oldest first, then by name. A policy without a timestamp counts as newest.
    pub(crate) fn age_key(&self) -> (bool, &str, &str) {
        (self.created.is_none(), self.created.as_deref().unwrap_or(""), self.id.name())
    }
}

/// The mTLS mode in force for one workload port, and the policy that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveMtls {
    /// The resolved mode: `UNSET` all the way up resolves to `PERMISSIVE`.
    pub mode: MtlsMode,
    /// The policy that set the mode; `None` for the mesh default.
    pub policy: Option<ResourceId>,
    /// Whether a `portLevelMtls` entry decided.
    pub port_level: bool,
}

/// Resolves mesh → namespace → workload → port: each level that is not `UNSET` overrides its parent.
pub(crate) fn resolve(
    mesh: Option<&CompiledPeerAuthentication>,
    namespace: Option<&CompiledPeerAuthentication>,
    workload: Option<&CompiledPeerAuthentication>,
    port: Option<u16>,
) -> EffectiveMtls {
    let mut eff = EffectiveMtls { mode: MtlsMode::Permissive, policy: None, port_level: false };
    for pa in [mesh, namespace, workload].into_iter().flatten() {
        if pa.mode != MtlsMode::Unset {
            eff = EffectiveMtls { mode: pa.mode, policy: Some(pa.id.clone()), port_level: false };
        }
    }
    if let (Some(pa), Some(port)) = (workload, port)
        && let Some(&mode) = pa.port_modes.get(&port)
        && mode != MtlsMode::Unset
    {
        eff = EffectiveMtls { mode, policy: Some(pa.id.clone()), port_level: true };
    }
    eff
}
