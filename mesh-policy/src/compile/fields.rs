//! Field-level checks shared by every kind: error collection, value lists, selectors, target references.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::crd::{PolicyTargetReference, WorkloadSelector};
use crate::error::FieldError;
use crate::model::policy::{Target, TargetKind};

/// Collects every problem of one resource, and its warnings.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub(crate) errors: Vec<FieldError>,
    pub(crate) warnings: Vec<FieldError>,
}

impl Problems {
    pub(crate) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    pub(crate) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldError::new(field, message));
    }
}

/// A present list of values: `Some` and non-empty. An explicitly empty list is an error, because it reads as
/// "nothing" to some and "anything" to others.
pub(crate) fn values<'a>(p: &mut Problems, field: &str, list: &'a Option<Vec<String>>) -> Option<&'a [String]> {
    let list = list.as_deref()?;
    if list.is_empty() {
        p.error(field, "must not be empty; omit the field to leave it unconstrained");
        return None;
    }
    for (i, v) in list.iter().enumerate() {
        if v.is_empty() {
            p.error(format!("{field}[{i}]"), "empty value not allowed");
        }
    }
    Some(list)
}

/// An IP address or CIDR range; a bare address is a host range.
pub(crate) fn ip_net(value: &str) -> Result<IpNet, String> {
    if value.contains('/') {
        value.parse::<IpNet>().map_err(|e| format!("bad CIDR range ({value}): {e}"))
    } else {
        value.parse::<IpAddr>().map(IpNet::from).map_err(|_| format!("bad IP address ({value})"))
    }
}

pub(crate) fn ip_nets(p: &mut Problems, field: &str, list: &[String]) -> Vec<IpNet> {
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| ip_net(v).map_err(|e| p.error(format!("{field}[{i}]"), e)).ok())
        .collect()
}

/// A port number, 0 to 65535, written as a decimal string.
pub(crate) fn port(value: &str) -> Result<u16, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port ({value}): not a decimal number"));
    }
    value.parse::<u16>().map_err(|_| format!("bad port ({value}): must be at most 65535"))
}

pub(crate) fn ports(p: &mut Problems, field: &str, list: &[String]) -> Vec<u16> {
    list.iter().enumerate().filter_map(|(i, v)| port(v).map_err(|e| p.error(format!("{field}[{i}]"), e)).ok()).collect()
}

/// `serviceAccounts` values: `name` (in the policy's namespace) or `namespace/name`.
pub(crate) fn service_accounts(
    p: &mut Problems,
    field: &str,
    list: &[String],
    policy_namespace: &str,
) -> Vec<(Box<str>, Box<str>)> {
    if list.len() > 16 {
        p.error(field, "may not have more than 16 values");
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if v.contains('*') {
            p.error(at, "wildcard not allowed in serviceAccounts");
            continue;
        }
        if v.len() > 320 {
            p.error(at, "value cannot exceed 320 characters");
            continue;
        }
        let (ns, sa) = match v.split_once('/') {
            None => (policy_namespace, v.as_str()),
            Some((ns, sa)) => (ns, sa),
        };
        if ns.is_empty() || sa.is_empty() || sa.contains('/') {
            if !v.is_empty() {
                p.error(at, format!("expected format 'serviceAccount' or 'namespace/serviceAccount', found {v:?}"));
            }
            continue;
        }
        out.push((ns.into(), sa.into()));
    }
    out
}

/// `selector.matchLabels`, checked as Istio does: no empty keys, no wildcards.
pub(crate) fn selector(p: &mut Problems, field: &str, sel: &WorkloadSelector) -> BTreeMap<String, String> {
    let labels = sel.match_labels.clone().unwrap_or_default();
    if labels.is_empty() {
        p.warn(field, "workload selector specified without labels: it selects every workload in scope");
    }
    for (k, v) in &labels {
        if k.is_empty() {
            p.error(format!("{field}.matchLabels"), format!("empty key is not supported in selector: \"{k}={v}\""));
        }
        if k.contains('*') || v.contains('*') {
            p.error(format!("{field}.matchLabels"), format!("wildcard is not supported in selector: \"{k}={v}\""));
        }
    }
    labels
}

/// `targetRef` / `targetRefs`: kinds Service, ServiceEntry, Gateway and GatewayClass in the policy's namespace.
pub(crate) fn targets(
    p: &mut Problems,
    single: &Option<PolicyTargetReference>,
    many: &Option<Vec<PolicyTargetReference>>,
    namespace: &str,
    root_namespace: &str,
) -> Option<Vec<Target>> {
    let refs: Vec<(String, &PolicyTargetReference)> = match (single, many) {
        (Some(r), None) => vec![("spec.targetRef".to_owned(), r)],
        (None, Some(rs)) => {
            if rs.is_empty() {
                p.error("spec.targetRefs", "must not be empty; omit the field to apply the policy namespace-wide");
            }
            rs.iter().enumerate().map(|(i, r)| (format!("spec.targetRefs[{i}]"), r)).collect()
        }
        (Some(_), Some(_)) => {
            p.error("spec", "only one of targetRef or targetRefs may be set");
            return None;
        }
        (None, None) => return None,
    };
    let mut out = Vec::with_capacity(refs.len());
    for (field, r) in refs {
        let name = r.name.as_deref().unwrap_or("");
        if name.is_empty() {
            p.error(format!("{field}.name"), "targetRef name must be set");
        }
        if let Some(ns) = r.namespace.as_deref() {
            if ns != namespace {
                p.error(
                    format!("{field}.namespace"),
                    format!("cross namespace referencing is not supported: must be empty or {namespace:?}"),
                );
            }
        }
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("");
        let kind = match (group, kind) {
            ("" | "core", "Service") => TargetKind::Service,
            ("networking.istio.io", "ServiceEntry") => TargetKind::ServiceEntry,
            ("gateway.networking.k8s.io", "Gateway") => TargetKind::Gateway,
            ("gateway.networking.k8s.io", "GatewayClass") => TargetKind::GatewayClass,
            _ => {
                p.error(
                    format!("{field}.kind"),
                    format!(
                        "targetRef must be to one of Service (group \"\"), ServiceEntry (networking.istio.io), \
                         Gateway or GatewayClass (gateway.networking.k8s.io) but was {group}/{kind}"
                    ),
                );
                continue;
            }
        };
        if kind == TargetKind::GatewayClass && namespace != root_namespace {
            p.warn(
                field.clone(),
                format!("a GatewayClass target only takes effect in the root namespace ({root_namespace})"),
            );
        }
        out.push(Target { kind, name: name.into() });
    }
    Some(out)
}

/// `selector` together with a target reference is an error.
pub(crate) fn one_attachment(p: &mut Problems, has_selector: bool, has_targets: bool) {
    if has_selector && has_targets {
        p.error("spec", "only one of selector, targetRef or targetRefs may be set");
    }
}

/// Go's `strconv.ParseBool`, which Istio uses for annotations.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
