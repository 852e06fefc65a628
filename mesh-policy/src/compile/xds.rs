//! istiod's L4 Authorization (the workload API's `istio.security.Authorization`) compiled to the form ztunnel
//! evaluates, with ztunnel's semantics (`src/rbac.rs` of istio/ztunnel).
//!
//! A rule's clauses become the compiled rule's parts: a clause with one match contributes its fields to `when`
//! (all must hold); a clause with several matches becomes the `from`, then the `to` entries (any entry). istiod
//! writes at most two clauses with several matches per rule (the `to` and the `from` of the policy's rule); a
//! rule with more is refused rather than evaluated differently. A clause without matches holds; a match
//! without fields never holds, so a clause whose only match is empty makes its rule never match.

use ipnet::IpNet;

use crate::crd::Action;
use crate::error::FieldError;
use crate::model::constraint::{Constraint, Test};
use crate::model::policy::{CompiledPolicy, CompiledRule, Entry, Scope};
use crate::model::string_match::StringMatch;
use crate::resource::{Kind, ResourceId};
use crate::xds::{self, Authorization, Match};

/// Validates and compiles an authorization: the compiled policy, or every error naming its field.
pub(crate) fn compile(a: &Authorization) -> Result<CompiledPolicy, (ResourceId, Vec<FieldError>)> {
    let id = ResourceId::new(Kind::AuthorizationPolicy, &a.namespace, &a.name);
    let mut errors = xds::validate_authorization(a);
    let mut rules = Vec::with_capacity(a.rules.len());
    for (r, rule) in a.rules.iter().enumerate() {
        let mut compiled = CompiledRule::default();
        let mut never = false;
        for (c, clause) in rule.iter().enumerate() {
            match clause.as_slice() {
                [] => {}
                [only] if is_empty(only) => never = true,
                [only] => compiled.when.extend(constraints(only)),
                several => {
                    let entries: Vec<Entry> = several
                        .iter()
                        .map(|m| Entry { constraints: if is_empty(m) { Vec::new() } else { constraints(m) } })
                        .collect();
                    if compiled.from.is_empty() {
                        compiled.from = entries;
                    } else if compiled.to.is_empty() {
                        compiled.to = entries;
                    } else {
                        errors.push(FieldError::new(
                            format!("rules[{r}][{c}]"),
                            "a third clause with several matches in one rule (istiod writes at most two: the rule's \
                             `to` and `from`)",
                        ));
                    }
                }
            }
        }
        if never {
            // An entry without fields never matches.
            compiled = CompiledRule { from: vec![Entry::default()], ..CompiledRule::default() };
        }
        rules.push(compiled);
    }
    if !errors.is_empty() {
        return Err((id, errors));
    }
    let scope = match a.scope {
        xds::Scope::Global => Scope::Mesh,
        xds::Scope::Namespace => Scope::Namespace,
        xds::Scope::WorkloadSelector => Scope::Listed,
    };
    let action = match a.action {
        xds::Action::Allow => Action::Allow,
        xds::Action::Deny => Action::Deny,
    };
    Ok(CompiledPolicy { id, action, provider: None, dry_run: a.dry_run, scope, rules, tcp_rules: None })
}

fn is_empty(m: &Match) -> bool {
    *m == Match::default()
}

/// The fields of a match, each a constraint (positive, then negated).
fn constraints(m: &Match) -> Vec<Constraint> {
    let mut out = Vec::new();
    let mut push = |test: Test, negated: bool, values: Vec<Box<str>>| out.push(Constraint { test, negated, values });
    let strings = |ms: &[xds::StringMatch]| -> (Vec<StringMatch>, Vec<Box<str>>) {
        let ms: Vec<StringMatch> = ms.iter().map(string_match).collect();
        let written = ms.iter().map(|m| m.to_string().into()).collect();
        (ms, written)
    };
    for (values, negated) in [(&m.namespaces, false), (&m.not_namespaces, true)] {
        if !values.is_empty() {
            let (ms, written) = strings(values);
            push(Test::Namespace(ms), negated, written);
        }
    }
    for (values, negated) in [(&m.service_accounts, false), (&m.not_service_accounts, true)] {
        if !values.is_empty() {
            let pairs =
                values.iter().map(|s| (s.namespace.as_str().into(), s.service_account.as_str().into())).collect();
            let written = values.iter().map(|s| format!("{}/{}", s.namespace, s.service_account).into()).collect();
            push(Test::ServiceAccount(pairs), negated, written);
        }
    }
    for (values, negated) in [(&m.principals, false), (&m.not_principals, true)] {
        if !values.is_empty() {
            let (ms, written) = strings(values);
            push(Test::Principal(ms), negated, written);
        }
    }
    let nets = |v: &[IpNet]| -> Vec<Box<str>> { v.iter().map(|n| n.to_string().into()).collect() };
    for (values, negated) in [(&m.source_ips, false), (&m.not_source_ips, true)] {
        if !values.is_empty() {
            push(Test::SourceIp(values.clone()), negated, nets(values));
        }
    }
    for (values, negated) in [(&m.destination_ips, false), (&m.not_destination_ips, true)] {
        if !values.is_empty() {
            push(Test::DestinationIp(values.clone()), negated, nets(values));
        }
    }
    for (values, negated) in [(&m.destination_ports, false), (&m.not_destination_ports, true)] {
        if !values.is_empty() {
            push(Test::DestinationPort(values.clone()), negated, values.iter().map(|p| p.to_string().into()).collect());
        }
    }
    out
}

fn string_match(m: &xds::StringMatch) -> StringMatch {
    match m {
        xds::StringMatch::Exact(v) => StringMatch::Exact(v.as_str().into()),
        xds::StringMatch::Prefix(v) => StringMatch::Prefix(v.as_str().into()),
        xds::StringMatch::Suffix(v) => StringMatch::Suffix(v.as_str().into()),
        xds::StringMatch::Presence() => StringMatch::NonEmpty,
    }
}
