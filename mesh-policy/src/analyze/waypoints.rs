//! Waypoints: policies whose target no waypoint serves, labels that name no usable waypoint, destinations
//! whose L4 policy refuses the waypoint's own identity, and services whose waypoint ingress gateways go around.

use std::collections::{BTreeMap, BTreeSet};

use super::{Finding, Involved, Severity};
use crate::cluster::{Unusable, WaypointBinding, Workload, labels::INGRESS_USE_WAYPOINT};
use crate::crd::Action;
use crate::decision::Reason;
use crate::model::policy::{Scope, TargetKind};
use crate::proxy::Target;
use crate::request::ServiceKind;
use crate::resource::{Kind, ResourceId};
use crate::snapshot::Snapshot;

pub(super) fn check(s: &Snapshot, out: &mut Vec<Finding>) {
    policy_targets(s, out);
    labels(s, out);
    waypoint_identity(s, out);
    ingress_bypass(s, out);
}

/// The namespaces in which the manifests define Services or ServiceEntries, and Gateways.
fn defined(s: &Snapshot, kind: Kind) -> BTreeSet<String> {
    let c = s.cluster();
    match kind {
        Kind::Gateway => c.gateways().map(|(id, _)| id.namespace().to_owned()).collect(),
        _ => c.services().map(|(_, sv)| sv.id.namespace().to_owned()).collect(),
    }
}

fn policy_targets(s: &Snapshot, out: &mut Vec<Finding>) {
    let c = s.cluster();
    let with_services = defined(s, Kind::Service);
    let with_gateways = defined(s, Kind::Gateway);
    let resources = s
        .authorization_policies()
        .map(|p| (&p.id, &p.scope))
        .chain(s.request_authentications().map(|r| (&r.id, &r.scope)));
    for (id, scope) in resources {
        let Scope::Targets(targets) = scope else { continue };
        let ns = id.namespace();
        for (i, t) in targets.iter().enumerate() {
            let field = format!("spec.targetRefs[{i}]");
            let (kind, known_here) = match t.kind {
                TargetKind::Service => (Kind::Service, with_services.contains(ns)),
                TargetKind::ServiceEntry => (Kind::ServiceEntry, with_services.contains(ns)),
                TargetKind::Gateway => (Kind::Gateway, with_gateways.contains(ns)),
                TargetKind::GatewayClass => continue,
            };
            let target = ResourceId::new(kind, ns, &t.name);
            if !known_here {
                continue;
            }
            match kind {
                Kind::Gateway => {
                    if c.waypoint(&target).is_none() {
                        let what = if c.gateways().any(|(g, _)| *g == target) {
                            "is not a waypoint"
                        } else {
                            "does not exist"
                        };
                        out.push(Finding::new(
                            "target-not-found",
                            Severity::Error,
                            vec![Involved::at(id, field)],
                            format!("targets {target}, which {what}: the policy is enforced nowhere"),
                            "target the waypoint Gateway (class istio-waypoint) that serves the destination",
                        ));
                    }
                }
                _ => match c.service_named(&target).and_then(|sid| c.service(sid)) {
                    None => out.push(Finding::new(
                        "target-not-found",
                        Severity::Error,
                        vec![Involved::at(id, field)],
                        format!("targets {target}, which the manifests do not define: the policy is enforced nowhere"),
                        "fix the name, or define the Service",
                    )),
                    Some(sv) if sv.waypoint.waypoint().is_none() => out.push(Finding::new(
                        "target-without-waypoint",
                        Severity::Error,
                        vec![Involved::at(id, field), Involved::new(&sv.id)],
                        format!(
                            "targets {}, which no waypoint serves: nothing enforces this L7 policy (ztunnel only \
                             enforces L4)",
                            sv.id
                        ),
                        format!(
                            "label the Service (or its namespace) istio.io/use-waypoint=<waypoint>; {}",
                            match &sv.waypoint {
                                WaypointBinding::Unusable { waypoint, why, .. } => {
                                    format!("its label names {waypoint}, but {why}")
                                }
                                WaypointBinding::OptedOut(l) =>
                                    format!("{} opts out with istio.io/use-waypoint=none", l.on),
                                _ => "no istio.io/use-waypoint label applies".to_owned(),
                            }
                        ),
                    )),
                    Some(_) => {}
                },
            }
        }
    }
}

fn labels(s: &Snapshot, out: &mut Vec<Finding>) {
    let c = s.cluster();
    let bindings =
        c.services().map(|(_, sv)| (&sv.id, &sv.waypoint)).chain(c.workloads().map(|(_, w)| (&w.id, &w.waypoint)));
    let mut seen = BTreeSet::new();
    for (_, binding) in bindings {
        let WaypointBinding::Unusable { waypoint, label, why } = binding else { continue };
        // A namespace's label is reported once, not for every object in the namespace.
        if !seen.insert((label.on.clone(), waypoint.clone(), why.to_string())) {
            continue;
        }
        let (code, fix) = match why {
            Unusable::NoSuchGateway => {
                ("use-waypoint-not-found", "create the waypoint Gateway, or fix the label".to_owned())
            }
            Unusable::NotAWaypoint { .. } => (
                "use-waypoint-not-a-waypoint",
                "name a Gateway of class istio-waypoint (istioctl waypoint apply)".to_owned(),
            ),
            Unusable::NotFor { waypoint_for } => (
                "waypoint-for-mismatch",
                format!(
                    "label the Gateway istio.io/waypoint-for=all (it serves {} traffic), or use another waypoint",
                    waypoint_for.as_str()
                ),
            ),
            Unusable::NotAdmitted => (
                "waypoint-not-admitted",
                "let the waypoint's HBONE listener admit the namespace (allowedRoutes.namespaces.from: All or a \
                 Selector)"
                    .to_owned(),
            ),
        };
        out.push(Finding::new(
            code,
            Severity::Error,
            vec![Involved::at(&label.on, "metadata.labels[istio.io/use-waypoint]"), Involved::new(waypoint)],
            format!(
                "istio.io/use-waypoint={} names {waypoint}, but {why}: traffic goes directly to the destination, \
                 and L7 policies there are not enforced",
                label.value
            ),
            fix,
        ));
    }
}

/// The destination's ztunnel sees the waypoint's identity, not the client's: its L4 ALLOW policies must admit
/// the waypoint, or every request through the waypoint is refused (503).
fn waypoint_identity(s: &Snapshot, out: &mut Vec<Finding>) {
    let c = s.cluster();
    let mut seen = BTreeSet::new();
    for (_, sv) in c.services() {
        let Some(wid) = sv.waypoint.waypoint() else { continue };
        let Some(waypoint) = c.waypoint(wid) else { continue };
        let Ok(identity) = mesh_identity::spiffe::IstioIdentity::parse_principal(&waypoint.principal) else {
            continue;
        };
        for &eid in &sv.endpoints {
            let Some(w) = c.workload(eid).filter(|w| w.enrolled) else { continue };
            for port in &sv.ports {
                let Some(target_port) = sv.target_port(port.port, w) else { continue };
                if let Some(f) = refused(s, w, target_port, &identity, &sv.id, wid)
                    && seen.insert((f.resources.first().map(|r| r.resource.clone()), wid.clone(), target_port))
                {
                    out.push(f);
                }
            }
        }
    }
}

fn refused(
    s: &Snapshot,
    w: &Workload,
    port: u16,
    waypoint: &mesh_identity::spiffe::IstioIdentity,
    service: &ResourceId,
    waypoint_id: &ResourceId,
) -> Option<Finding> {
    let target = Target::new(w.namespace(), &w.labels).with_port(port);
    let decision = s.authorize_connection(&crate::proxy::Connection::new(target).with_peer(waypoint));
    if decision.allowed {
        return None;
    }
    let principal = waypoint.principal();
    match &decision.reason {
        Reason::NoAllowMatched { .. } => {
            // The ALLOW policies with rules say whom the destination means to admit; with none, the destination
            // is closed on purpose (allow-nothing) and there is nothing to report.
            let allows: Vec<ResourceId> = s
                .ztunnel_policies(&target)
                .into_iter()
                .filter(|p| p.action == Action::Allow && !p.rules.is_empty())
                .map(|p| p.id.clone())
                .collect();
            let to_extend = allows
                .iter()
                .find(|id| s.authorization_policies().any(|p| p.id == **id && matches!(p.scope, Scope::Selector(_))));
            let to_extend = to_extend.or(allows.first())?;
            // The rule to extend: the one for this port, else the first.
            let rule = s
                .authorization_policies()
                .find(|p| p.id == *to_extend)
                .and_then(|p| {
                    p.rules.iter().position(|r| {
                        r.to.iter().flat_map(|e| &e.constraints).any(|c| {
                            !c.negated && matches!(&c.test, crate::model::constraint::Test::DestinationPort(ps) if ps.contains(&port))
                        })
                    })
                })
                .unwrap_or(0);
            Some(Finding::new(
                "waypoint-identity-not-allowed",
                Severity::Error,
                vec![
                    Involved::at(to_extend, format!("spec.rules[{rule}].from[0].source.principals")),
                    Involved::new(service),
                    Involved::new(waypoint_id),
                ],
                format!(
                    "{service} is served by waypoint {}, which connects to {} on port {port} as {principal}, and \
                     no L4 ALLOW policy there admits it ({}): every request through the waypoint is refused (503)",
                    waypoint_id.qualified(),
                    w.id.qualified(),
                    allows.iter().map(|id| id.qualified().to_string()).collect::<Vec<_>>().join(", ")
                ),
                format!(
                    "add \"{principal}\" to spec.rules[{rule}].from[0].source.principals of {}",
                    to_extend.qualified()
                ),
            ))
        }
        Reason::Denied(m) => Some(Finding::new(
            "waypoint-identity-not-allowed",
            Severity::Error,
            vec![
                Involved::at(m.policy(), format!("spec.rules[{}]", m.rule())),
                Involved::new(service),
                Involved::new(waypoint_id),
            ],
            format!(
                "{service} is served by waypoint {}, which connects to {} on port {port} as {principal}, and DENY \
                 policy {} refuses it: every request through the waypoint is refused (503)",
                waypoint_id.qualified(),
                w.id.qualified(),
                m.policy().qualified()
            ),
            format!("exclude \"{principal}\" from {} (notPrincipals)", m.policy().qualified()),
        )),
        _ => None,
    }
}

/// An ingress gateway reaches a service's endpoints directly, not through the service's waypoint, unless
/// `istio.io/ingress-use-waypoint` on the service or its namespace says otherwise: the L7 policies the waypoint
/// applies to the service do not apply to ingress traffic. Decided by the service's
/// [`IngressWaypoint`](crate::cluster::IngressWaypoint), which the trace routes with too; reported where the
/// manifests define an ingress gateway (a Gateway's Pod whose Gateway is not a waypoint), as istiod's
/// `WaypointBound` status says it ("Ingress traffic is not using the waypoint").
fn ingress_bypass(s: &Snapshot, out: &mut Vec<Finding>) {
    let c = s.cluster();
    let ingress: BTreeSet<ResourceId> = c
        .workloads()
        .filter_map(|(_, w)| {
            let id = ResourceId::new(Kind::Gateway, w.namespace(), w.gateway.as_deref()?);
            c.waypoint(&id).is_none().then_some(id)
        })
        .collect();
    if ingress.is_empty() {
        return;
    }
    let gateways = ingress.iter().map(|id| id.qualified().to_string()).collect::<Vec<_>>().join(", ");
    let no_labels = BTreeMap::new();
    for (_, sv) in c.services() {
        let Some(wid) = sv.waypoint.waypoint() else { continue };
        if sv.ingress.use_waypoint {
            continue;
        }
        let target = Target::new(sv.id.namespace(), &no_labels).with_waypoint(wid.namespace(), wid.name());
        let target = match sv.kind() {
            ServiceKind::Service => target.with_service(sv.id.name()),
            ServiceKind::ServiceEntry => target.with_service_entry(sv.id.name()),
        };
        let policies: Vec<ResourceId> =
            s.waypoint_resources(&target).into_iter().filter(|id| id.kind() == Kind::AuthorizationPolicy).collect();
        if policies.is_empty() {
            continue;
        }
        // The service first (its own label would decide), then the namespace when its label decided.
        let field = format!("metadata.labels[{INGRESS_USE_WAYPOINT}]");
        let mut resources = vec![Involved::at(&sv.id, field.clone())];
        let why = match &sv.ingress.label {
            Some(l) => {
                if l.on != sv.id {
                    resources.push(Involved::at(&l.on, field));
                }
                format!("{INGRESS_USE_WAYPOINT}={:?} on {}", l.value, l.on)
            }
            None => format!("neither the {} nor its namespace has {INGRESS_USE_WAYPOINT}=true", sv.id.kind()),
        };
        resources.push(Involved::new(wid));
        resources.extend(policies.iter().map(Involved::new));
        out.push(Finding::new(
            "ingress-bypasses-waypoint",
            Severity::Info,
            resources,
            format!(
                "traffic from the ingress gateway ({gateways}) to {} goes straight to its endpoints, not through \
                 waypoint {} ({why}): the waypoint's policies for it ({}) do not apply to that traffic",
                sv.id,
                wid.qualified(),
                policies.iter().map(|id| id.qualified().to_string()).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "label the {} or its namespace {INGRESS_USE_WAYPOINT}=true to send ingress traffic through the \
                 waypoint, or enforce at L4 what that traffic must meet",
                sv.id.kind()
            ),
        ));
    }
}
