//! Coverage: ambient namespaces without a default deny, selectors that select nothing, policies that can never
//! apply, and principals no peer of this mesh can have.

use std::collections::BTreeMap;

use super::{Finding, Involved, Severity};
use crate::crd::Action;
use crate::model::constraint::Test;
use crate::model::policy::{CompiledPolicy, Scope};
use crate::snapshot::Snapshot;

pub(super) fn check(s: &Snapshot, out: &mut Vec<Finding>) {
    default_deny(s, out);
    selectors(s, out);
    shadowed(s, out);
    trust_domains(s, out);
}

/// An ALLOW policy that applies namespace-wide (or mesh-wide from the root namespace) at ztunnel makes the
/// namespace deny by default: what it does not allow is refused.
fn default_deny(s: &Snapshot, out: &mut Vec<Finding>) {
    let root = s.config().root_namespace.as_str();
    let namespace_wide = |ns: &str| {
        s.authorization_policies().any(|p| {
            !p.dry_run
                && p.action == Action::Allow
                && matches!(p.scope, Scope::Namespace)
                && (p.id.namespace() == ns || p.id.namespace() == root)
        })
    };
    for (ns, _) in s.cluster().namespaces() {
        if s.cluster().namespace_enrolled(ns) && ns != root && !namespace_wide(ns) {
            let id = crate::resource::ResourceId::new(crate::resource::Kind::Namespace, "", ns);
            out.push(Finding::new(
                "namespace-without-default-deny",
                Severity::Warning,
                vec![Involved::at(&id, "metadata.labels[istio.io/dataplane-mode]")],
                format!(
                    "namespace {ns} is in ambient mode but no namespace-wide ALLOW policy makes it deny by default: \
                     any identity may connect to any workload that no other ALLOW policy selects"
                ),
                format!(
                    "apply an AuthorizationPolicy in {ns} with `spec: {{}}` (allow nothing), then allow what is needed"
                ),
            ));
        }
    }
}

fn selectors(s: &Snapshot, out: &mut Vec<Finding>) {
    let c = s.cluster();
    let mut pods_in: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, w) in c.workloads() {
        *pods_in.entry(w.namespace()).or_default() += 1;
    }
    let root = s.config().root_namespace.as_str();
    for p in s.authorization_policies() {
        let Scope::Selector(labels) = &p.scope else { continue };
        if labels.is_empty() || p.id.namespace() == root {
            continue;
        }
        let ns = p.id.namespace();
        if !pods_in.contains_key(ns) {
            continue;
        }
        let selects =
            c.workloads().any(|(_, w)| w.namespace() == ns && labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)));
        if !selects {
            let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(Finding::new(
                "selector-matches-nothing",
                Severity::Warning,
                vec![Involved::at(&p.id, "spec.selector.matchLabels")],
                format!("selects {} but no workload in namespace {ns} has those labels", wanted.join(", ")),
                "fix the labels to those of the workloads meant",
            ));
        }
    }
}

/// A DENY policy whose rule matches every request makes the other policies of the same attachment moot, and
/// an ALLOW policy identical to another adds nothing.
fn shadowed(s: &Snapshot, out: &mut Vec<Finding>) {
    let enforced: Vec<&CompiledPolicy> = s.authorization_policies().map(|p| &**p).filter(|p| !p.dry_run).collect();
    let matches_all = |p: &CompiledPolicy| {
        p.action == Action::Deny
            && p.rules.iter().any(|r| r.inert.is_none() && r.from.is_empty() && r.to.is_empty() && r.when.is_empty())
    };
    for deny in enforced.iter().filter(|p| matches_all(p)) {
        for other in &enforced {
            if other.id == deny.id || other.id.namespace() != deny.id.namespace() || other.scope != deny.scope {
                continue;
            }
            if other.action == Action::Allow || (other.action == Action::Deny && !matches_all(other)) {
                out.push(Finding::new(
                    "policy-shadowed",
                    Severity::Warning,
                    vec![Involved::new(&other.id), Involved::at(&deny.id, "spec.rules")],
                    format!(
                        "can never decide anything: {} denies every request to the same workloads or targets",
                        deny.id.qualified()
                    ),
                    format!("narrow {} or remove one of the two", deny.id.qualified()),
                ));
            }
        }
    }
    let mut by_shape: BTreeMap<String, Vec<&CompiledPolicy>> = BTreeMap::new();
    for p in enforced.iter().filter(|p| p.action == Action::Allow && !p.rules.is_empty()) {
        let shape = format!("{}|{:?}|{:?}", p.id.namespace(), p.scope, p.rules);
        by_shape.entry(shape).or_default().push(p);
    }
    for same in by_shape.values().filter(|v| v.len() > 1) {
        for dup in &same[1..] {
            out.push(Finding::new(
                "policy-duplicate",
                Severity::Info,
                vec![Involved::new(&dup.id), Involved::new(&same[0].id)],
                format!("is identical to {}: it allows nothing more", same[0].id.qualified()),
                "remove one of the two",
            ));
        }
    }
}

/// `principals` whose trust domain is neither the mesh's nor an alias can never match a peer of this mesh; at
/// ztunnel even `cluster.local` is compared as written.
fn trust_domains(s: &Snapshot, out: &mut Vec<Finding>) {
    let config = s.config();
    for p in s.authorization_policies() {
        for (r, rule) in p.rules.iter().enumerate() {
            for c in rule.from.iter().flat_map(|e| &e.constraints).chain(&rule.when) {
                if c.negated || !matches!(c.test, Test::Principal(_)) {
                    continue;
                }
                for v in &c.values {
                    let td = v.split('/').next().unwrap_or("");
                    if td.contains('*') || v.contains('*') && !v.contains('/') {
                        continue;
                    }
                    let ours = config.trust_domains().any(|d| d == td) || (!p.is_ztunnel() && td == "cluster.local");
                    if ours {
                        continue;
                    }
                    out.push(Finding::new(
                        "principal-foreign-trust-domain",
                        Severity::Warning,
                        vec![Involved::at(&p.id, format!("spec.rules[{r}]"))],
                        format!(
                            "principal {v} is in trust domain {td:?}, which is neither the mesh's ({}) nor an alias: \
                             no peer of this mesh has it",
                            config.trust_domain
                        ),
                        format!(
                            "write the principal in trust domain {}, or add {td} to trustDomainAliases",
                            config.trust_domain
                        ),
                    ));
                }
            }
        }
    }
}
