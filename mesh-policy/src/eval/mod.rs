//! Evaluation at the two enforcement points: CUSTOM, then DENY, then ALLOW.

pub mod attributes;
pub(crate) mod authentication;

use crate::crd::{Action, MtlsMode};
use crate::decision::{Decision, Reason};
use crate::index::Index;
use crate::model::peer_authentication;
use crate::model::policy::{PolicyRef, RuleMatch};
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
}

impl<'a> Walk<'a> {
    #[inline]
    fn visit(&mut self, p: &'a PolicyRef, attrs: &Attributes<'_>) {
        match p.action {
            Action::Custom => {
                if self.custom.is_none() {
                    self.custom = p.first_match(attrs).map(|m| (p, m));
                }
            }
            Action::Deny => {
                self.deny_count += 1;
                if self.custom.is_none() && self.deny.is_none() {
                    self.deny = p.first_match(attrs).map(|m| (p, m));
                }
            }
            Action::Allow => {
                self.allow_count += 1;
                if self.custom.is_none() && self.deny.is_none() && self.allow.is_none() {
                    self.allow = p.first_match(attrs).map(|m| (p, m));
                }
            }
            Action::Audit => {}
        }
    }

    fn decide(self, enforcement: Enforcement) -> Decision {
        if let Some((p, m)) = self.custom {
            return Decision::new(false, Action::Custom, Reason::Custom(p.clone(), m), enforcement);
        }
        if let Some((p, m)) = self.deny {
            return Decision::new(false, Action::Deny, Reason::Denied(p.clone(), m), enforcement);
        }
        if let Some((p, m)) = self.allow {
            return Decision::new(true, Action::Allow, Reason::Allowed(p.clone(), m), enforcement);
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
pub(crate) fn ztunnel(index: &Index, req: &crate::request::CheckRequest, attrs: &Attributes<'_>) -> Decision {
    if attrs.principal.is_none() {
        let [mesh, ns, workload] = index.peer_authentications(&req.destination);
        let eff = peer_authentication::resolve(mesh, ns, workload, req.destination.port);
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
    index.for_each_ztunnel(&req.destination, |p| walk.visit(p, attrs));
    walk.decide(Enforcement::Ztunnel)
}

/// The waypoint's decision for a request.
pub(crate) fn waypoint(index: &Index, req: &crate::request::CheckRequest, attrs: &Attributes<'_>) -> Decision {
    let mut walk = Walk::default();
    index.for_each_waypoint(&req.destination, |p| walk.visit(p, attrs));
    walk.decide(Enforcement::Waypoint)
}
