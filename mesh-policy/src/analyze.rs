//! Findings across the applied resources: accepted configuration that probably does not do what was meant.

use crate::error::FieldError;
use crate::mesh::Warning;
use crate::model::constraint::Test;
use crate::model::policy::{CompiledPolicy, Scope, Target, TargetKind};
use crate::snapshot::Snapshot;

/// Whether a waypoint policy reads token attributes anywhere.
fn reads_token(p: &CompiledPolicy) -> bool {
    p.rules
        .iter()
        .flat_map(|r| r.from.iter().chain(&r.to).flat_map(|e| &e.constraints).chain(&r.when))
        .any(|c| matches!(c.test, Test::RequestPrincipal(_) | Test::Claim(..) | Test::Audience(_) | Test::Presenter(_)))
}

/// Every finding: each resource's warnings from when it was applied, then cross-resource findings.
pub(crate) fn analyze(mesh: &Snapshot) -> Vec<Warning> {
    let mut out: Vec<Warning> = mesh.apply_warnings().cloned().collect();
    let root = mesh.config().root_namespace.as_str();
    let class = mesh.config().waypoint_gateway_class.as_str();
    for p in mesh.authorization_policies() {
        let Scope::Targets(targets) = &p.scope else { continue };
        if !reads_token(p) {
            continue;
        }
        let covered = |t: &Target| {
            mesh.request_authentications().any(|ra| {
                let Scope::Targets(ra_targets) = &ra.scope else { return false };
                ra_targets.iter().any(|rt| {
                    (rt == t && ra.id.namespace() == p.id.namespace())
                        || (rt.kind == TargetKind::GatewayClass && &*rt.name == class && ra.id.namespace() == root)
                })
            })
        };
        let uncovered: Vec<String> =
            targets.iter().filter(|t| !covered(t)).map(|t| format!("{:?} {}", t.kind, t.name)).collect();
        if !uncovered.is_empty() {
            out.push(Warning {
                resource: p.id.clone(),
                detail: FieldError::new(
                    "spec.rules",
                    format!(
                        "reads request authentication attributes, but no RequestAuthentication targets {}: the \
                         waypoint validates no token there, so request principals and claims are never set",
                        uncovered.join(", ")
                    ),
                ),
            });
        }
    }
    out
}
