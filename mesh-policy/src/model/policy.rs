//! A compiled AuthorizationPolicy: what an enforcement point evaluates.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::constraint::{Constraint, Test};
use super::string_match::StringMatch;
use crate::crd::Action;
use crate::eval::attributes::Attributes;
use crate::resource::ResourceId;

/// An AuthorizationPolicy compiled for the one enforcement point that enforces it.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// `namespace/name`.
    pub id: ResourceId,
    /// What a match does.
    pub action: Action,
    /// Extension provider of a CUSTOM policy.
    pub provider: Option<Box<str>>,
    /// `istio.io/dry-run: "true"`: evaluated for explanation only, never enforced.
    pub dry_run: bool,
    /// Where the policy attaches, which decides the enforcement point.
    pub scope: Scope,
    /// Rules in manifest order, compiled for that enforcement point.
    pub rules: Vec<CompiledRule>,
    /// At a waypoint, the rules as a plain TCP connection (no HTTP) sees them, as Envoy's network RBAC filter
    /// does: an ALLOW rule with HTTP attributes never matches, a DENY rule matches without them. `None` when
    /// no rule uses HTTP attributes (the rules are the same) and for ztunnel policies.
    pub tcp_rules: Option<Vec<CompiledRule>>,
}

/// Where a policy attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No `selector` and no `targetRefs`: every workload in the namespace, or in the mesh for the root namespace.
    /// Enforced by ztunnel.
    Namespace,
    /// `selector.matchLabels`: matching workloads in the namespace (all namespaces for the root namespace).
    /// Enforced by ztunnel.
    Selector(BTreeMap<String, String>),
    /// `targetRefs`: enforced by the waypoint serving those targets.
    Targets(Vec<Target>),
    /// istiod's `Global` scope: every workload of the mesh, whatever the policy's namespace. Enforced by ztunnel.
    Mesh,
    /// istiod's `WorkloadSelector` scope: the workloads that name the policy (their `authorizationPolicies`).
    /// Enforced by ztunnel.
    Listed,
}

/// A resource a policy attaches to with `targetRefs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The kind.
    pub kind: TargetKind,
    /// The name (in the policy's namespace).
    pub name: Box<str>,
}

/// Kinds a policy may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// Core `Service`.
    Service,
    /// `networking.istio.io` `ServiceEntry`.
    ServiceEntry,
    /// `gateway.networking.k8s.io` `Gateway`: the waypoint itself.
    Gateway,
    /// `gateway.networking.k8s.io` `GatewayClass`: every gateway of the class (root namespace only).
    GatewayClass,
}

impl CompiledPolicy {
    /// Stands for a policy a workload names that is not known (yet): a DENY whose one rule matches every
    /// connection, under the policy's name.
    pub(crate) fn unknown(id: ResourceId) -> Self {
        let rule = CompiledRule {
            when: vec![Constraint {
                test: Test::Fixed(true, "the policy's content (named by the workload, not received yet)".into()),
                negated: false,
                values: Vec::new(),
            }],
            ..CompiledRule::default()
        };
        CompiledPolicy {
            id,
            action: Action::Deny,
            provider: None,
            dry_run: false,
            scope: Scope::Listed,
            rules: vec![rule],
            tcp_rules: None,
        }
    }

    /// Whether the policy is enforced by ztunnel (no `targetRefs`) rather than a waypoint.
    pub fn is_ztunnel(&self) -> bool {
        !matches!(self.scope, Scope::Targets(_))
    }

    /// The first rule that matches, with the indices of the `from` and `to` entries that matched.
    #[inline]
    pub fn first_match(&self, attrs: &Attributes<'_>) -> Option<RuleMatch> {
        self.first_in(&self.rules, attrs)
    }

    /// The first rule that matches a plain TCP connection at a waypoint.
    pub fn first_match_tcp(&self, attrs: &Attributes<'_>) -> Option<RuleMatch> {
        self.first_in(self.tcp_rules.as_ref().unwrap_or(&self.rules), attrs).map(|m| RuleMatch { tcp: true, ..m })
    }

    /// The rules a match of [`CompiledPolicy::first_match`] (or, with `tcp`, of the TCP form) indexes.
    pub fn rules_for(&self, tcp: bool) -> &[CompiledRule] {
        match (&self.tcp_rules, tcp) {
            (Some(rules), true) => rules,
            _ => &self.rules,
        }
    }

    #[inline]
    fn first_in(&self, rules: &[CompiledRule], attrs: &Attributes<'_>) -> Option<RuleMatch> {
        rules.iter().enumerate().find_map(|(i, r)| {
            r.matches(attrs).map(|(from, to)| RuleMatch {
                tcp: false,
                rule: index(i),
                from: from.map(index),
                to: to.map(index),
                // ztunnel compares principals as written: only a waypoint expands trust domains.
                principal: if self.is_ztunnel() { None } else { r.principal_through_alias(from, attrs) },
            })
        })
    }
}

/// An index into a policy's rules or entries as a `u32`.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Which rule matched and through which `from` / `to` entries. Indices are `u32` (a manifest is at most a
/// few MiB), which keeps this, and every decision that carries it, small to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// Whether the match is of the policy's TCP form (a waypoint proxying plain TCP).
    pub tcp: bool,
    /// Index of the rule in `spec.rules`.
    pub rule: u32,
    /// Index of the matching `from` entry, when the rule has `from`.
    pub from: Option<u32>,
    /// Index of the matching `to` entry, when the rule has `to`.
    pub to: Option<u32>,
    /// The peer's principal as it presented it, when the rule matched it only through the mesh's trust domain
    /// aliases (no value as written matches it): explanations then name the principal as presented.
    pub principal: Option<Arc<str>>,
}

/// A compiled rule: any `from` entry AND any `to` entry AND every `when` condition.
#[derive(Debug, Clone, Default)]
pub struct CompiledRule {
    /// `from` entries; empty means any source.
    pub from: Vec<Entry>,
    /// `to` entries; empty means any operation.
    pub to: Vec<Entry>,
    /// `when` conditions, all required.
    pub when: Vec<Constraint>,
    /// Why the rule can never match at its enforcement point, if it cannot.
    pub inert: Option<Inert>,
    /// Fields that this enforcement point cannot see and left out of the rule (ztunnel, DENY).
    pub dropped: Vec<&'static str>,
    /// Where `dropped` fields are not seen, for explanations: `at ztunnel`, `on a TCP connection`.
    pub dropped_where: &'static str,
}

/// Why a rule never matches where it is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inert {
    /// An ALLOW / AUDIT rule uses HTTP attributes, which ztunnel cannot see: it never matches (fail closed).
    HttpInAllow,
    /// A DENY rule was left with an entry or condition of HTTP attributes only, which ztunnel skips: not enforced.
    HttpOnlyDeny,
}

/// One `from` or `to` entry: all of its fields must hold. An entry left without fields never matches.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The fields, all required.
    pub constraints: Vec<Constraint>,
}

impl Entry {
    #[inline]
    fn matches(&self, attrs: &Attributes<'_>) -> bool {
        !self.constraints.is_empty() && self.constraints.iter().all(|c| c.matches(attrs))
    }
}

impl CompiledRule {
    /// `Some((from, to))` with the matching entry indices when the rule matches.
    #[inline]
    pub fn matches(&self, attrs: &Attributes<'_>) -> Option<(Option<usize>, Option<usize>)> {
        if self.inert.is_some() {
            return None;
        }
        let from = match self.from.is_empty() {
            true => None,
            false => Some(self.from.iter().position(|e| e.matches(attrs))?),
        };
        let to = match self.to.is_empty() {
            true => None,
            false => Some(self.to.iter().position(|e| e.matches(attrs))?),
        };
        self.when.iter().all(|c| c.matches(attrs)).then_some((from, to))
    }

    /// Describes the parts of the rule that matched.
    pub fn explain(&self, from: Option<usize>, to: Option<usize>) -> RuleExplanation<'_> {
        RuleExplanation { rule: self, from, to, principal: None }
    }

    /// The principal of `attrs` when a positive principal constraint of the matched parts holds only through
    /// trust domain expansion.
    fn principal_through_alias(&self, from: Option<usize>, attrs: &Attributes<'_>) -> Option<Arc<str>> {
        let p = attrs.principal?;
        let entry = from.and_then(|i| self.from.get(i)).map(|e| e.constraints.as_slice()).unwrap_or(&[]);
        let through_alias = entry.iter().chain(&self.when).any(|c| {
            matches!(c.test, Test::Principal(_))
                && !c.negated
                && !c.values.iter().any(|v| StringMatch::pattern_matches(v, p))
        });
        through_alias.then(|| p.into())
    }
}

/// Display of the constraints that made a rule match.
#[derive(Debug, Clone, Copy)]
pub struct RuleExplanation<'a> {
    rule: &'a CompiledRule,
    from: Option<usize>,
    to: Option<usize>,
    principal: Option<&'a str>,
}

impl<'a> RuleExplanation<'a> {
    /// Names `principal` as the peer presented it where the rule matched it through a trust domain alias
    /// ([`RuleMatch::principal`]).
    pub fn with_principal(self, principal: Option<&'a str>) -> Self {
        RuleExplanation { principal, ..self }
    }
}

impl fmt::Display for RuleExplanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self.from.and_then(|i| self.rule.from.get(i)).map(|e| e.constraints.as_slice()).unwrap_or(&[]);
        let to = self.to.and_then(|i| self.rule.to.get(i)).map(|e| e.constraints.as_slice()).unwrap_or(&[]);
        let mut first = true;
        for c in from.iter().chain(to).chain(&self.rule.when) {
            if !first {
                f.write_str(" and ")?;
            }
            first = false;
            match (self.principal, &c.test) {
                (Some(p), Test::Principal(_)) if !c.negated => write!(
                    f,
                    "source principal is {p} (written {}{}; its trust domain is an alias of the mesh's)",
                    c.values.first().map_or("", |v| &**v),
                    if c.values.len() > 1 { ", ..." } else { "" }
                )?,
                _ => write!(f, "{c}")?,
            }
        }
        if first {
            f.write_str("the rule matches every request")?;
        }
        if !self.rule.dropped.is_empty() {
            let at = if self.rule.dropped_where.is_empty() { "at ztunnel" } else { self.rule.dropped_where };
            write!(f, " ({} not enforced {at})", self.rule.dropped.join(", "))?;
        }
        Ok(())
    }
}

/// A shared compiled policy.
pub type PolicyRef = Arc<CompiledPolicy>;
