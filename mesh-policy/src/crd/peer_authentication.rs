//! `security.istio.io` `PeerAuthentication`, field for field as the CRD defines it.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// Per-port modes, keyed by the workload (target) port, every entry as written.
    #[serde(default)]
    pub port_level_mtls: Option<PortLevelMtls>,
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

/// `portLevelMtls`: every entry in the order written, duplicates included, so that validation can reject a port
/// given twice (`8080:` and `"8080":`, or `"08080":`) instead of one entry silently replacing the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortLevelMtls(pub Vec<(PortKey, PeerMtls)>);

impl Serialize for PortLevelMtls {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for PortLevelMtls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = PortLevelMtls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from port to {mode: ...}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<PortKey, PeerMtls>()? {
                    out.push(entry);
                }
                Ok(PortLevelMtls(out))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}
