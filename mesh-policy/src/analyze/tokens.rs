//! RequestAuthentication and the policies that read tokens: the missing-token gap, claims no validator sets,
//! audiences no rule accepts, where the keys come from.

use super::{Finding, Involved, Severity};
use crate::model::constraint::Test;
use crate::model::policy::{CompiledPolicy, Scope, Target, TargetKind};
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::snapshot::Snapshot;

pub(super) fn check(s: &Snapshot, out: &mut Vec<Finding>) {
    for ra in s.request_authentications() {
        missing_token_gap(s, ra, out);
        key_sources(ra, out);
    }
    for p in s.authorization_policies().filter(|p| !p.is_ztunnel()) {
        claims_without_validator(s, p, out);
        audiences_not_accepted(s, p, out);
    }
}

fn constraints(p: &CompiledPolicy) -> impl Iterator<Item = &crate::model::constraint::Constraint> {
    p.rules.iter().flat_map(|r| r.from.iter().chain(&r.to).flat_map(|e| &e.constraints).chain(&r.when))
}

fn reads_token(p: &CompiledPolicy) -> bool {
    constraints(p)
        .any(|c| matches!(c.test, Test::RequestPrincipal(_) | Test::Claim(..) | Test::Audience(_) | Test::Presenter(_)))
}

fn targets(scope: &Scope) -> &[Target] {
    match scope {
        Scope::Targets(t) => t,
        _ => &[],
    }
}

/// Whether `p` (in `namespace`) attaches to `t` of a resource in `t_namespace`, or to every waypoint.
fn covers(s: &Snapshot, p_ns: &str, scope: &Scope, t: &Target, t_ns: &str) -> bool {
    let root = s.config().root_namespace.as_str();
    let class = s.config().waypoint_gateway_class.as_str();
    targets(scope).iter().any(|pt| {
        (pt == t && p_ns == t_ns) || (pt.kind == TargetKind::GatewayClass && &*pt.name == class && p_ns == root)
    })
}

/// A DENY rule that matches exactly the requests without a request principal (`notRequestPrincipals: ["*"]`).
fn denies_missing_token(p: &CompiledPolicy) -> bool {
    p.action == crate::crd::Action::Deny
        && p.rules.iter().any(|r| {
            r.inert.is_none()
                && r.to.is_empty()
                && r.when.is_empty()
                && r.from.iter().any(|e| {
                    e.constraints.len() == 1
                        && matches!(e.constraints[0].test, Test::RequestPrincipal(_))
                        && e.constraints[0].negated
                        && e.constraints[0].values.iter().any(|v| &**v == "*")
                })
        })
}

/// Whether every rule of an ALLOW policy requires a token.
fn requires_token(p: &CompiledPolicy) -> bool {
    p.action == crate::crd::Action::Allow
        && !p.rules.is_empty()
        && p.rules.iter().all(|r| {
            let in_every_entry = !r.from.is_empty()
                && r.from.iter().all(|e| {
                    e.constraints
                        .iter()
                        .any(|c| !c.negated && matches!(c.test, Test::RequestPrincipal(_) | Test::Claim(..)))
                });
            let in_when =
                r.when.iter().any(|c| !c.negated && matches!(c.test, Test::RequestPrincipal(_) | Test::Claim(..)));
            in_every_entry || in_when
        })
}

fn missing_token_gap(s: &Snapshot, ra: &CompiledRequestAuthentication, out: &mut Vec<Finding>) {
    let ra_ns = ra.id.namespace();
    for t in targets(&ra.scope) {
        if t.kind == TargetKind::GatewayClass {
            continue;
        }
        let applying: Vec<&CompiledPolicy> = s
            .authorization_policies()
            .map(|p| &**p)
            .filter(|p| !p.dry_run && covers(s, p.id.namespace(), &p.scope, t, ra_ns))
            .collect();
        let denied = applying.iter().any(|p| denies_missing_token(p));
        let allows: Vec<&&CompiledPolicy> = applying.iter().filter(|p| p.action == crate::crd::Action::Allow).collect();
        let required = !allows.is_empty() && allows.iter().all(|p| requires_token(p));
        if denied || required {
            continue;
        }
        out.push(Finding::new(
            "request-without-token-allowed",
            Severity::Error,
            vec![Involved::new(&ra.id)],
            format!(
                "{} validates tokens for {:?} {}, but nothing requires one: a request without a token passes \
                 as unauthenticated",
                ra.id, t.kind, t.name
            ),
            format!(
                "add an AuthorizationPolicy with targetRefs to {:?} {} and action DENY, rule from.source.\
                 notRequestPrincipals: [\"*\"]",
                t.kind, t.name
            ),
        ));
    }
}

fn key_sources(ra: &CompiledRequestAuthentication, out: &mut Vec<Finding>) {
    for (i, rule) in ra.rules.iter().enumerate() {
        let field = format!("spec.jwtRules[{i}]");
        let issuer = rule.issuer.as_deref().unwrap_or("");
        match (&rule.jwks, &rule.jwks_uri) {
            (Some(_), Some(_)) => out.push(Finding::new(
                "jwks-and-jwks-uri",
                Severity::Warning,
                vec![Involved::at(&ra.id, field)],
                format!("issuer {issuer:?} has both jwks and jwksUri: the inline jwks is used and jwksUri ignored"),
                "keep one of jwks and jwksUri",
            )),
            (None, None) => out.push(Finding::new(
                "jwks-source-missing",
                Severity::Warning,
                vec![Involved::at(&ra.id, field)],
                format!(
                    "issuer {issuer:?} has neither jwks nor jwksUri: the keys are discovered from the issuer's \
                     OpenID configuration at run time, and where that fails every token is rejected"
                ),
                "set jwksUri (or jwks) explicitly",
            )),
            _ => {}
        }
    }
}

fn claims_without_validator(s: &Snapshot, p: &CompiledPolicy, out: &mut Vec<Finding>) {
    if !reads_token(p) {
        return;
    }
    let ns = p.id.namespace();
    let uncovered: Vec<String> = targets(&p.scope)
        .iter()
        .filter(|t| !s.request_authentications().any(|ra| covers(s, ra.id.namespace(), &ra.scope, t, ns)))
        .map(|t| format!("{:?} {}", t.kind, t.name))
        .collect();
    if uncovered.is_empty() {
        return;
    }
    out.push(Finding::new(
        "token-attributes-without-request-authentication",
        Severity::Error,
        vec![Involved::at(&p.id, "spec.rules")],
        format!(
            "reads request authentication attributes, but no RequestAuthentication targets {}: the waypoint \
             validates no token there, so request principals and claims are never set",
            uncovered.join(", ")
        ),
        "add a RequestAuthentication with the same targetRefs and the issuer's jwtRules",
    ));
}

fn audiences_not_accepted(s: &Snapshot, p: &CompiledPolicy, out: &mut Vec<Finding>) {
    let ns = p.id.namespace();
    let rules: Vec<&crate::crd::JwtRule> = s
        .request_authentications()
        .filter(|ra| targets(&p.scope).iter().any(|t| covers(s, ra.id.namespace(), &ra.scope, t, ns)))
        .flat_map(|ra| ra.rules.iter())
        .collect();
    let accepted: Vec<&str> = rules.iter().flat_map(|r| r.audiences.iter().flatten().map(String::as_str)).collect();
    // A rule without audiences accepts any audience; only when every rule names them can a value be unreachable.
    let any_open = rules.iter().any(|r| r.audiences.as_ref().is_none_or(Vec::is_empty));
    if accepted.is_empty() || any_open {
        return;
    }
    for c in constraints(p).filter(|c| !c.negated && matches!(c.test, Test::Audience(_))) {
        let unreachable: Vec<&str> = c
            .values
            .iter()
            .map(|v| &**v)
            .filter(|v| !accepted.iter().any(|a| crate::model::string_match::StringMatch::parse(v).matches(a)))
            .collect();
        if unreachable.is_empty() {
            continue;
        }
        out.push(Finding::new(
            "audience-not-accepted",
            Severity::Warning,
            vec![Involved::at(&p.id, "spec.rules")],
            format!(
                "requires audience {} that no jwtRule of the RequestAuthentications here accepts ({}): tokens \
                 for it are rejected with 401 before the policy sees them",
                unreachable.join(", "),
                accepted.join(", ")
            ),
            "add the audience to the jwtRule's audiences, or fix the value in the policy",
        ));
    }
}
