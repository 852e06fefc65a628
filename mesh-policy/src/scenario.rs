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
//!
//! `traces` follow a connection or request across every hop (the shape of [`crate::trace`]) and compare the
//! result with `expect`: `allowed`, `status`, `refused`, `denied_by`, `endpoint`, and `hops` (each with `proxy`
//! and optionally `name`, `peer`, `allowed`, `status`, `policy`, `reason`), or `error`, text the trace's error
//! must contain. `jwks` supplies the documents behind `jwksUri`s, and `now` the time tokens are validated at.

use serde::{Deserialize, Deserializer};

use crate::config::MeshConfig;
use crate::crd::Action;
use crate::decision::Decision;
use crate::mesh::Mesh;
use crate::request::CheckRequest;
use crate::trace::{Proxy, TraceRequest, TraceResult};

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
    /// Traces and their expected results.
    #[serde(default)]
    pub traces: Vec<TraceCase>,
    /// JWKS documents (JSON) behind `jwksUri`s, by URI.
    #[serde(default)]
    pub jwks: std::collections::BTreeMap<String, String>,
    /// Unix seconds at which traces validate tokens, unless a trace says otherwise. Default 1767225600
    /// (2026-01-01).
    #[serde(default)]
    pub now: Option<u64>,
}

/// One trace and its expected result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceCase {
    /// Name.
    pub name: String,
    /// Where the expectation comes from.
    #[serde(default)]
    pub cite: Option<String>,
    /// The trace.
    pub trace: TraceRequest,
    /// The expected result.
    pub expect: TraceExpect,
}

/// Expected fields of a trace result; absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceExpect {
    /// `allowed`.
    #[serde(default)]
    pub allowed: Option<bool>,
    /// `status`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub status: Option<Option<u16>>,
    /// `refused`.
    #[serde(default)]
    pub refused: Option<bool>,
    /// `denied_by`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub denied_by: Option<Option<usize>>,
    /// `endpoint`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub endpoint: Option<Option<String>>,
    /// The hops, in order; the number must match.
    #[serde(default)]
    pub hops: Option<Vec<HopExpect>>,
    /// How many per-endpoint results.
    #[serde(default)]
    pub endpoints: Option<usize>,
    /// The trace must fail with an error containing this text.
    #[serde(default)]
    pub error: Option<String>,
}

/// Expected fields of one hop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopExpect {
    /// `proxy`.
    pub proxy: Proxy,
    /// `name`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    /// `peer`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub peer: Option<Option<String>>,
    /// The decision's `allowed`.
    #[serde(default)]
    pub allowed: Option<bool>,
    /// The decision's `status`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub status: Option<Option<u16>>,
    /// The decision's `policy`; `null` must be null.
    #[serde(default, deserialize_with = "present")]
    pub policy: Option<Option<String>>,
    /// Text the decision's reason must contain.
    #[serde(default)]
    pub reason: Option<String>,
}

fn differs<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, what: &str, expected: &Option<T>, got: &T) {
    if let Some(e) = expected
        && e != got
    {
        out.push(format!("{what}: expected {e:?}, got {got:?}"));
    }
}

impl TraceExpect {
    /// Every difference between the expectation and a trace's outcome.
    pub fn mismatches(&self, result: &Result<TraceResult, crate::trace::TraceError>) -> Vec<String> {
        let mut out = Vec::new();
        let r = match (result, &self.error) {
            (Err(e), Some(want)) if e.to_string().contains(want.as_str()) => return out,
            (Err(e), Some(want)) => return vec![format!("expected an error containing {want:?}, got {e}")],
            (Err(e), None) => return vec![format!("the trace failed: {e}")],
            (Ok(_), Some(want)) => return vec![format!("expected an error containing {want:?}, but the trace ran")],
            (Ok(r), None) => r,
        };
        differs(&mut out, "allowed", &self.allowed, &r.allowed);
        differs(&mut out, "status", &self.status, &r.status);
        differs(&mut out, "refused", &self.refused, &r.refused);
        differs(&mut out, "denied_by", &self.denied_by, &r.denied_by);
        differs(&mut out, "endpoint", &self.endpoint, &r.endpoint);
        differs(&mut out, "endpoints", &self.endpoints, &r.endpoints.len());
        let Some(hops) = &self.hops else { return out };
        if hops.len() != r.hops.len() {
            let got: Vec<String> = r.hops.iter().map(|h| format!("{:?} {:?}", h.proxy, h.name)).collect();
            out.push(format!("hops: expected {}, got {} ({})", hops.len(), r.hops.len(), got.join(", ")));
            return out;
        }
        for (i, (e, h)) in hops.iter().zip(&r.hops).enumerate() {
            differs(&mut out, &format!("hops[{i}].proxy"), &Some(e.proxy), &h.proxy);
            differs(&mut out, &format!("hops[{i}].name"), &e.name, &h.name);
            differs(&mut out, &format!("hops[{i}].peer"), &e.peer, &h.peer);
            differs(&mut out, &format!("hops[{i}].allowed"), &e.allowed, &h.decision.allowed);
            differs(&mut out, &format!("hops[{i}].status"), &e.status, &h.decision.status);
            let policy = h.decision.policy.as_deref().map(str::to_owned);
            differs(&mut out, &format!("hops[{i}].policy"), &e.policy, &policy);
            if let Some(want) = &e.reason {
                let got = h.decision.reason.to_string();
                if !got.contains(want.as_str()) {
                    out.push(format!("hops[{i}].reason: expected to contain {want:?}, got {got:?}"));
                }
            }
        }
        out
    }
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

    /// A mesh with the scenario's manifests applied and its JWKS documents supplied.
    pub fn mesh(&self) -> Result<Mesh, crate::error::ApplyError> {
        let mut mesh = Mesh::new(self.mesh.clone().unwrap_or_default());
        mesh.apply_yaml(&self.manifests)?;
        for (uri, json) in &self.jwks {
            mesh.add_jwks(uri, json).map_err(|e| {
                crate::error::ApplyError(vec![crate::error::ManifestError::NotAnObject {
                    document: 0,
                    message: format!("jwks[{uri}]: {e}"),
                }])
            })?;
        }
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
        let now = self.now.unwrap_or(1_767_225_600);
        for case in &self.traces {
            let result = mesh.trace(&case.trace, now);
            let failures = case.expect.mismatches(&result);
            results.push(CaseResult { name: case.name.clone(), decision: None, failures });
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
