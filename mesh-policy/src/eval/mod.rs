//! Evaluation at the two enforcement points: CUSTOM, then DENY, then ALLOW.

pub mod attributes;
pub(crate) mod authentication;

use crate::crd::{Action, MtlsMode};
use crate::decision::{Decision, MatchedRule, Reason};
use crate::index::Index;
use crate::model::peer_authentication;
use crate::model::policy::{PolicyRef, RuleMatch};
use crate::proxy::Target;
use crate::request::Enforcement;

use attributes::Attributes;

/// Outcome of walking the applicable policies once.
#[derive(Default)]
struct Walk<'a> {
    custom: Option<(&'a PolicyRef, RuleMatch)>,
    deny: Option<(&'a PolicyRef, RuleMatch)>,
    allow: Option<(&'a PolicyRef, RuleMatch)>,
    allow_count: usize,
    deny_count: usize,
    /// Evaluate waypoint policies as a plain TCP connection sees them.
    tcp: bool,
}

impl<'a> Walk<'a> {
    #[inline]
    fn first_match(&self, p: &PolicyRef, attrs: &Attributes<'_>) -> Option<RuleMatch> {
        if self.tcp { p.first_match_tcp(attrs) } else { p.first_match(attrs) }
    }

    #[inline]
    fn visit(&mut self, p: &'a PolicyRef, attrs: &Attributes<'_>) {
        match p.action {
            Action::Custom => {
                if self.custom.is_none() {
                    self.custom = self.first_match(p, attrs).map(|m| (p, m));
                }
            }
            Action::Deny => {
                self.deny_count += 1;
                if self.custom.is_none() && self.deny.is_none() {
                    self.deny = self.first_match(p, attrs).map(|m| (p, m));
                }
            }
            Action::Allow => {
                self.allow_count += 1;
                if self.custom.is_none() && self.deny.is_none() && self.allow.is_none() {
                    self.allow = self.first_match(p, attrs).map(|m| (p, m));
                }
            }
            Action::Audit => {}
        }
    }

    fn decide(self, enforcement: Enforcement) -> Decision {
        if let Some((p, m)) = self.custom {
            return Decision::new(false, Action::Custom, Reason::Custom(MatchedRule::new(p.clone(), m)), enforcement);
        }
        if let Some((p, m)) = self.deny {
            return Decision::new(false, Action::Deny, Reason::Denied(MatchedRule::new(p.clone(), m)), enforcement);
        }
        if let Some((p, m)) = self.allow {
            return Decision::new(true, Action::Allow, Reason::Allowed(MatchedRule::new(p.clone(), m)), enforcement);
        }
        if self.allow_count > 0 {
            return Decision::new(
                false,
                Action::Deny,
                Reason::NoAllowMatched { applicable: self.allow_count },
                enforcement,
            );
        }
        let reason =
            if self.deny_count > 0 { Reason::NoDenyMatched { applicable: self.deny_count } } else { Reason::NoPolicy };
        Decision::new(true, Action::Allow, reason, enforcement)
    }
}

/// The destination ztunnel's decision for a connection.
pub(crate) fn ztunnel(index: &Index, dest: &Target<'_>, attrs: &Attributes<'_>) -> Decision {
    ztunnel_over(
        || index.peer_authentications(dest),
        dest.port,
        attrs,
        |walk| index.for_each_ztunnel(dest, |p| walk.visit(p, attrs)),
    )
}

/// The destination ztunnel's decision for a connection to a workload whose policies were resolved ahead.
pub(crate) fn ztunnel_resolved(resolved: &WorkloadPolicies, port: Option<u16>, attrs: &Attributes<'_>) -> Decision {
    let peers = || [resolved.peers[0].as_deref(), resolved.peers[1].as_deref(), resolved.peers[2].as_deref()];
    ztunnel_over(peers, port, attrs, |walk| resolved.ztunnel.iter().for_each(|p| walk.visit(p, attrs)))
}

/// The policies ztunnel enforces for one workload, in evaluation order, and its PeerAuthentications (mesh,
/// namespace, workload), resolved once per snapshot.
#[derive(Debug, Default, Clone)]
pub(crate) struct WorkloadPolicies {
    pub(crate) ztunnel: Box<[PolicyRef]>,
    pub(crate) peers: [Option<std::sync::Arc<crate::model::peer_authentication::CompiledPeerAuthentication>>; 3],
}

impl WorkloadPolicies {
    pub(crate) fn resolve(index: &Index, dest: &Target<'_>) -> Self {
        let mut ztunnel = Vec::new();
        index.for_each_ztunnel(dest, |p| ztunnel.push(p.clone()));
        let [a, b, c] = index.peer_authentications(dest);
        let own = |p: Option<&crate::model::peer_authentication::CompiledPeerAuthentication>| {
            p.map(|p| std::sync::Arc::new(p.clone()))
        };
        WorkloadPolicies { ztunnel: ztunnel.into(), peers: [own(a), own(b), own(c)] }
    }
}

impl WorkloadPolicies {
    /// Adds the policies a workload of istiod's form names (its `WorkloadSelector` authorizations), after those
    /// found by scope. A name the snapshot does not hold denies every connection to the workload until the
    /// policy arrives: it may be a DENY policy in flight, and skipping it (as ztunnel does) could widen access.
    pub(crate) fn add_listed(
        &mut self,
        names: &[crate::resource::ResourceId],
        policies: &std::collections::BTreeMap<crate::resource::ResourceId, PolicyRef>,
    ) {
        let mut all: Vec<PolicyRef> = self.ztunnel.to_vec();
        for name in names {
            match policies.get(name) {
                Some(p) if p.dry_run => {}
                Some(p) => {
                    // One object per id in a snapshot: the same policy is the same object.
                    if !all.iter().any(|q| std::sync::Arc::ptr_eq(q, p)) {
                        all.push(p.clone());
                    }
                }
                None => all.push(std::sync::Arc::new(crate::model::policy::CompiledPolicy::unknown(name.clone()))),
            }
        }
        self.ztunnel = all.into();
    }
}

/// PeerAuthentication (looked up only for a plaintext peer), then the policies `walk_policies` visits.
#[inline]
fn ztunnel_over<'a, 'p>(
    peers: impl FnOnce() -> [Option<&'p crate::model::peer_authentication::CompiledPeerAuthentication>; 3],
    port: Option<u16>,
    attrs: &Attributes<'_>,
    walk_policies: impl FnOnce(&mut Walk<'a>),
) -> Decision {
    if attrs.principal.is_none() {
        let [mesh, ns, workload] = peers();
        let eff = peer_authentication::resolve(mesh, ns, workload, port);
        if eff.mode == MtlsMode::Strict
            && let Some(policy) = eff.policy
        {
            return Decision::new(
                false,
                Action::Deny,
                Reason::StrictMtls { policy, port_level: eff.port_level },
                Enforcement::Ztunnel,
            );
        }
    }
    let mut walk = Walk::default();
    walk_policies(&mut walk);
    walk.decide(Enforcement::Ztunnel)
}

/// The waypoint's decision for a request.
pub(crate) fn waypoint(index: &Index, dest: &Target<'_>, attrs: &Attributes<'_>) -> Decision {
    let mut walk = Walk::default();
    index.for_each_waypoint(dest, |p| walk.visit(p, attrs));
    walk.decide(Enforcement::Waypoint)
}

/// The waypoint's decision for a plain TCP connection (a service without HTTP): the policies' TCP form, and no
/// HTTP status (a denied connection is closed).
pub(crate) fn waypoint_tcp(index: &Index, dest: &Target<'_>, attrs: &Attributes<'_>) -> Decision {
    let mut walk = Walk { tcp: true, ..Walk::default() };
    index.for_each_waypoint(dest, |p| walk.visit(p, attrs));
    let mut decision = walk.decide(Enforcement::Waypoint);
    decision.status = None;
    decision
}

/// Whether a dry-run policy applies to the destination at this enforcement point.
pub(crate) fn dry_run_applies(index: &Index, dest: &Target<'_>, at: Enforcement) -> bool {
    let mut seen = false;
    match at {
        Enforcement::Ztunnel => index.for_each_ztunnel(dest, |p| seen |= p.dry_run),
        Enforcement::Waypoint => index.for_each_waypoint(dest, |p| seen |= p.dry_run),
    }
    seen
}
