//! The parts of a Kubernetes object every kind shares: `apiVersion`, `kind` and `metadata`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `metadata` of a Kubernetes object, as far as policy evaluation needs it.
///
/// Every field of Kubernetes' `ObjectMeta` is accepted so that the output of `kubectl get -o yaml` loads as it
/// is; fields that do not influence policy are kept opaque. Unknown fields are rejected, as `kubectl apply`
/// does with strict validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The object's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The object's namespace; `default` when absent, as with `kubectl apply` and no `--namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of the object itself.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations; `istio.io/dry-run` is read from here.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// RFC 3339 creation time; orders competing PeerAuthentications (oldest wins).
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    /// Opaque.
    #[serde(default)]
    pub generate_name: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub uid: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub resource_version: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub generation: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub self_link: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub deletion_timestamp: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub deletion_grace_period_seconds: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub finalizers: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub owner_references: Option<serde_yaml_ng::Value>,
    /// Opaque.
    #[serde(default)]
    pub managed_fields: Option<serde_yaml_ng::Value>,
}

/// Labels that select workloads: `selector: {matchLabels: {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Every label here must be on the workload, with the same value.
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// A reference to the resource a policy attaches to (`targetRef` / `targetRefs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group: `""` (core) for Service, `networking.istio.io` for ServiceEntry,
    /// `gateway.networking.k8s.io` for Gateway and GatewayClass.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind of the target.
    #[serde(default)]
    pub kind: Option<String>,
    /// Name of the target.
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace of the target; must equal the policy's namespace when set.
    #[serde(default)]
    pub namespace: Option<String>,
}
