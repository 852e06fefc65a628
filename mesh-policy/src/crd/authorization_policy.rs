//! `security.istio.io` `AuthorizationPolicy`, field for field as the CRD defines it.

use serde::{Deserialize, Serialize};

use super::meta::{PolicyTargetReference, WorkloadSelector};

/// `spec` of an AuthorizationPolicy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// Workloads in the policy's namespace (or all namespaces, for the root namespace) the policy applies to.
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources the policy attaches to: Service, ServiceEntry, Gateway, GatewayClass.
    #[serde(default)]
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// Rules; absent or empty means "match nothing".
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
    /// `ALLOW` (default), `DENY`, `AUDIT` or `CUSTOM`.
    #[serde(default)]
    pub action: Option<Action>,
    /// The extension provider of a `CUSTOM` policy.
    #[serde(default)]
    pub provider: Option<ExtensionProvider>,
}

/// What a policy does when one of its rules matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Allow a matching request; once any ALLOW policy applies, a request no ALLOW policy matches is denied.
    #[default]
    Allow,
    /// Deny a matching request.
    Deny,
    /// Record a matching request; never changes the decision.
    Audit,
    /// Delegate a matching request to an external authorizer (the `provider`).
    Custom,
}

impl Action {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `provider` of a CUSTOM policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Name of an extension provider in the mesh config.
    #[serde(default)]
    pub name: Option<String>,
}

/// One rule: `from` AND `to` AND `when`; within `from` and `to`, any entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources; absent means any source.
    #[serde(default)]
    pub from: Option<Vec<From>>,
    /// Operations; absent means any operation.
    #[serde(default)]
    pub to: Option<Vec<To>>,
    /// Extra conditions, all of which must hold.
    #[serde(default)]
    pub when: Option<Vec<Condition>>,
}

/// An entry of `from`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct From {
    /// The source to match.
    #[serde(default)]
    pub source: Option<Source>,
}

/// An entry of `to`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct To {
    /// The operation to match.
    #[serde(default)]
    pub operation: Option<Operation>,
}

/// Who sends the request. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Source {
    #[serde(default)]
    pub principals: Option<Vec<String>>,
    #[serde(default)]
    pub not_principals: Option<Vec<String>>,
    #[serde(default)]
    pub request_principals: Option<Vec<String>>,
    #[serde(default)]
    pub not_request_principals: Option<Vec<String>>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub not_namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub service_accounts: Option<Vec<String>>,
    #[serde(default)]
    pub not_service_accounts: Option<Vec<String>>,
    #[serde(default)]
    pub ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub not_ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub remote_ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub not_remote_ip_blocks: Option<Vec<String>>,
    #[serde(default)]
    pub trust_domains: Option<Vec<String>>,
    #[serde(default)]
    pub not_trust_domains: Option<Vec<String>>,
}

/// What the request does. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Operation {
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    #[serde(default)]
    pub not_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Option<Vec<String>>,
    #[serde(default)]
    pub not_ports: Option<Vec<String>>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub not_methods: Option<Vec<String>>,
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub not_paths: Option<Vec<String>>,
}

/// An entry of `when`: an attribute `key` that must have one of `values` and none of `notValues`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute, e.g. `request.auth.claims[groups]`.
    #[serde(default)]
    pub key: Option<String>,
    /// Values of which one must match.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Values of which none may match.
    #[serde(default)]
    pub not_values: Option<Vec<String>>,
}
