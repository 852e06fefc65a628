//! `security.istio.io` `PeerAuthentication`, field for field as the CRD defines it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::meta::WorkloadSelector;

/// `spec` of a PeerAuthentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// Workloads the policy applies to; absent means the whole namespace (or mesh, in the root namespace).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// The mode for every port not listed in `portLevelMtls`.
    #[serde(default)]
    pub mtls: Option<PeerMtls>,
    /// Per-port modes, keyed by the workload (target) port.
    #[serde(default)]
    pub port_level_mtls: Option<BTreeMap<PortKey, PeerMtls>>,
}

/// `mtls: {mode: ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerMtls {
    /// The mode; absent means `UNSET`.
    #[serde(default)]
    pub mode: Option<MtlsMode>,
}

/// Whether a workload accepts plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    /// Inherit from the parent scope.
    #[default]
    Unset,
    /// Plaintext only (sidecars); ztunnel still accepts HBONE.
    Disable,
    /// Both mTLS and plaintext.
    Permissive,
    /// mTLS only: plaintext is rejected.
    Strict,
}

impl MtlsMode {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Unset => "UNSET",
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }
}

/// A key of `portLevelMtls`. Kubernetes turns YAML keys into JSON strings, so both `8080:` and `"8080":` are
/// accepted and kept as written; validation checks the range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PortKey(pub String);

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        Ok(match Raw::deserialize(deserializer)? {
            Raw::Number(n) => PortKey(n.to_string()),
            Raw::Text(s) => PortKey(s),
        })
    }
}
