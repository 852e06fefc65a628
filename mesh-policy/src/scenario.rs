//! Scenario files: manifests, check requests and the decisions expected of them, in one YAML document.
//!
//! The conformance corpus and the runnable examples are written in this format, and so can a platform team's
//! own policy tests:
//!
//! ```yaml
//! name: payments
//! manifests: |
//!   apiVersion: security.istio.io/v1
//!   kind: AuthorizationPolicy
//!   ...
//! cases:
//! - name: accounts reaches the ledger
//!   cite: where the expectation comes from
//!   request: {destination: {namespace: payments, port: 8080}, source: {principal: ...}}
//!   expect: {allowed: true, policy: payments/ledger-l4, rule: 0, reason: "allowed by"}
//! invalid:
//! - name: a typo is rejected
//!   manifest: |
//!     ...
//!   error: "unknown field `principal`"
//! ```
//!
//! In `expect`, a field that is absent is not checked, `null` must be null, and `reason` must be contained in
//! the decision's reason.

use serde::{Deserialize, Deserializer};

use crate::config::MeshConfig;
use crate::crd::Action;
use crate::decision::Decision;
use crate::mesh::Mesh;
use crate::request::CheckRequest;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: Option<String>,
    /// Mesh settings; defaults when absent.
    #[serde(default)]
    pub mesh: Option<MeshConfig>,
    /// The manifests, as one multi-document YAML string.
    #[serde(default)]
    pub manifests: String,
    /// Checks and their expected decisions.
    #[serde(default)]
    pub cases: Vec<Case>,
    /// Manifests that must be rejected.
    #[serde(default)]
    pub invalid: Vec<InvalidCase>,
}

/// One check and its expected decision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Name.
    pub name: String,
    /// Where the expectation comes from.
    #[serde(default)]
    pub cite: Option<String>,
    /// The request.
    pub request: CheckRequest,
    /// The expected decision.
    pub expect: Expect,
}

/// A manifest that must fail to apply, and a fragment of the expected error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidCase {
    /// Name.
    pub name: String,
    /// Where the expectation comes from.
    #[serde(default)]
    pub cite: Option<String>,
    /// The manifest.
    pub manifest: String,
    /// Text the error must contain.
    pub error: String,
}

/// Expected fields of a decision. Absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allowed`.
    pub allowed: bool,
    /// `status`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub status: Option<Option<u16>>,
    /// `action`.
    #[serde(default)]
    pub action: Option<Action>,
    /// `policy`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub policy: Option<Option<String>>,
    /// `rule`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub rule: Option<Option<usize>>,
    /// Text the reason must contain.
    #[serde(default)]
    pub reason: Option<String>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl Expect {
    /// Every difference between the expectation and a decision.
    pub fn mismatches(&self, d: &Decision) -> Vec<String> {
        let mut out = Vec::new();
        if d.allowed != self.allowed {
            out.push(format!("allowed: expected {}, got {}", self.allowed, d.allowed));
        }
        if let Some(s) = self.status
            && d.status != s
        {
            out.push(format!("status: expected {s:?}, got {:?}", d.status));
        }
        if let Some(a) = self.action
            && d.action != a
        {
            out.push(format!("action: expected {a}, got {}", d.action));
        }
        if let Some(p) = &self.policy
            && d.policy.as_deref() != p.as_deref()
        {
            out.push(format!("policy: expected {p:?}, got {:?}", d.policy.as_deref()));
        }
        if let Some(r) = self.rule
            && d.rule != r
        {
            out.push(format!("rule: expected {r:?}, got {:?}", d.rule));
        }
        if let Some(r) = &self.reason {
            let got = d.reason.to_string();
            if !got.contains(r.as_str()) {
                out.push(format!("reason: expected to contain {r:?}, got {got:?}"));
            }
        }
        out
    }
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// The decision, when the check ran.
    pub decision: Option<Decision>,
    /// What differs from the expectation; empty when the case passed.
    pub failures: Vec<String>,
}

impl Scenario {
    /// Parses a scenario file.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }

    /// A mesh with the scenario's manifests applied.
    pub fn mesh(&self) -> Result<Mesh, crate::error::ApplyError> {
        let mut mesh = Mesh::new(self.mesh.clone().unwrap_or_default());
        mesh.apply_yaml(&self.manifests)?;
        Ok(mesh)
    }

    /// Runs every case and every invalid manifest.
    pub fn run(&self) -> Result<Vec<CaseResult>, crate::error::ApplyError> {
        let mesh = self.mesh()?;
        let mut results = Vec::new();
        for case in &self.cases {
            let (decision, failures) = match mesh.check(&case.request) {
                Ok(d) => {
                    let f = case.expect.mismatches(&d);
                    (Some(d), f)
                }
                Err(e) => (None, vec![e.to_string()]),
            };
            results.push(CaseResult { name: case.name.clone(), decision, failures });
        }
        for case in &self.invalid {
            let mut m = Mesh::new(self.mesh.clone().unwrap_or_default());
            let failures = match m.apply_yaml(&case.manifest) {
                Ok(_) => vec![format!("expected an error containing {:?}, but the manifest applied", case.error)],
                Err(e) if e.to_string().contains(case.error.as_str()) => Vec::new(),
                Err(e) => vec![format!("expected an error containing {:?}, got {e}", case.error)],
            };
            results.push(CaseResult { name: case.name.clone(), decision: None, failures });
        }
        Ok(results)
    }
}
