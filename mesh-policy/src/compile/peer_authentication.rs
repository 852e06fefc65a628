//! PeerAuthentication: validation as Istio's webhook does it.

use std::collections::BTreeMap;

use crate::compile::fields::{self, Problems};
use crate::crd::{MtlsMode, ObjectMeta, PeerAuthenticationSpec};
use crate::model::peer_authentication::CompiledPeerAuthentication;
use crate::resource::ResourceId;

/// Validates and compiles one PeerAuthentication.
pub(crate) fn compile(
    id: ResourceId,
    meta: &ObjectMeta,
    spec: &PeerAuthenticationSpec,
    root_namespace: &str,
    p: &mut Problems,
) -> Option<CompiledPeerAuthentication> {
    let selector = spec.selector.as_ref().map(|s| fields::selector(p, "spec.selector", s)).filter(|l| !l.is_empty());
    if selector.is_some() && id.namespace() == root_namespace {
        p.warn(
            "spec.selector",
            "a PeerAuthentication with a workload selector in the root namespace is ignored in ambient mode",
        );
    }
    let mut port_modes = BTreeMap::new();
    if let Some(ports) = &spec.port_level_mtls {
        if selector.is_none() {
            p.error("spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS");
        }
        if ports.is_empty() {
            p.error("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element");
        }
        for (key, mtls) in ports {
            match key.0.parse::<u16>() {
                Ok(port) if port >= 1 => {
                    port_modes.insert(port, mtls.mode.unwrap_or_default());
                }
                _ => p.error(format!("spec.portLevelMtls[{}]", key.0), "port must be in range 1..65535"),
            }
        }
    }
    if !p.errors.is_empty() {
        return None;
    }
    Some(CompiledPeerAuthentication {
        id,
        selector,
        mode: spec.mtls.as_ref().and_then(|m| m.mode).unwrap_or(MtlsMode::Unset),
        port_modes,
        created: meta.creation_timestamp.clone(),
    })
}
