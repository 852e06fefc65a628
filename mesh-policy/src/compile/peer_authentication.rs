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
            "peer-authentication-ignored",
            "spec.selector",
            "a PeerAuthentication with a workload selector in the root namespace is ignored in ambient mode",
        );
    }
    let mut port_modes = BTreeMap::new();
    if let Some(ports) = &spec.port_level_mtls {
        if selector.is_none() {
            p.error("spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS");
        }
        if ports.0.is_empty() {
            p.error("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element");
        }
        for (key, mtls) in &ports.0 {
            let at = format!("spec.portLevelMtls[{}]", key.0);
            let Some(port) = port_key(&key.0) else {
                p.error(at, "port must be in range 1..65535, written in decimal digits");
                continue;
            };
            if port_modes.insert(port, mtls.mode.unwrap_or_default()).is_some() {
                p.error(at, format!("port {port} is given more than once"));
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

/// A `portLevelMtls` key as Istio reads it (Go's `strconv.ParseUint(key, 10, 32)`): decimal digits only (no sign,
/// no spaces; leading zeros are read as decimal), then 1 to 65535.
fn port_key(key: &str) -> Option<u16> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = key.trim_start_matches('0');
    if digits.len() > 5 {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&p| p >= 1)
}
