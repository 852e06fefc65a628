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
    /// Warnings with their analyzer codes.
    pub(crate) warnings: Vec<super::CodedWarning>,
}

impl Problems {
    pub(crate) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A warning; `code` is the analyzer's stable code for it.
    pub(crate) fn warn(&mut self, code: &'static str, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push((code, FieldError::new(field, message)));
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
        } else if v.trim() != v {
            p.warn(
                "value-whitespace",
                format!("{field}[{i}]"),
                format!("{:?} has surrounding whitespace, which is compared as written", Short(v)),
            );
        }
    }
    Some(list)
}

/// Warns about values with a `*` other than a leading or trailing one: Istio takes it literally, which is
/// almost never what was meant (`ns/*/sa/x` matches only the namespace named `*`).
pub(crate) fn middle_wildcards(p: &mut Problems, field: &str, list: &[String]) {
    for (i, v) in list.iter().enumerate() {
        middle_wildcard(p, format!("{field}[{i}]"), v);
    }
}

/// [`middle_wildcards`] for one value at `at`.
pub(crate) fn middle_wildcard(p: &mut Problems, at: String, v: &str) {
    let inner = v.strip_prefix('*').unwrap_or(v);
    let inner = inner.strip_suffix('*').unwrap_or(inner);
    if inner.contains('*') {
        p.warn(
            "wildcard-in-middle",
            at,
            format!(
                "{:?}: a `*` is a wildcard only at the start or the end of a value; in the middle it matches a \
                 literal `*`",
                Short(v)
            ),
        );
    }
}

/// A value in a message, cut to a readable length.
pub(crate) struct Short<'a>(pub(crate) &'a str);

impl std::fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 120;
        if self.0.len() <= MAX {
            return std::fmt::Debug::fmt(self.0, f);
        }
        let mut end = MAX;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        std::fmt::Debug::fmt(&self.0[..end], f)?;
        write!(f, "... ({} bytes)", self.0.len())
    }
}

/// An IP address or CIDR range; a bare address is a host range.
///
/// Parsed as Go's `netip.ParsePrefix` / `netip.ParseAddr` do, which Istio uses: an IPv4 octet or a prefix
/// length with a leading zero (`010.0.0.0/8`, `10.0.0.0/08`) is rejected rather than read as decimal, and so is
/// an IPv6 zone.
pub(crate) fn ip_net(value: &str) -> Result<IpNet, String> {
    match value.split_once('/') {
        Some((addr, len)) => {
            let bad = |why: &str| format!("bad CIDR range ({value}): {why}");
            let addr: IpAddr = addr.parse().map_err(|_| bad("invalid IP address (leading zeros are not allowed)"))?;
            let digits_only = !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit());
            if !digits_only || (len.len() > 1 && len.starts_with('0')) {
                return Err(bad("the prefix length must be a decimal number without leading zeros"));
            }
            let len: u8 = len.parse().map_err(|_| bad("prefix length too long"))?;
            IpNet::new(addr, len).map_err(|_| bad("prefix length too long"))
        }
        None => value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad IP address ({value}): leading zeros and zones are not allowed")),
    }
}

/// The ranges an address range stands for, with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) written as IPv4, so that
/// policy and request compare canonical addresses. An IPv6 range that holds the whole IPv4-mapped block
/// (`::/0`, `::ffff:0:0/96`) also holds every IPv4 address.
pub(crate) fn canonical_nets(net: IpNet) -> Vec<IpNet> {
    let IpNet::V6(v6) = net else { return vec![net] };
    if let Some(v4) = v6.network().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        return IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_or_else(|_| vec![net], |n| vec![n]);
    }
    let mapped_block = ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
    match mapped_block {
        Ok(block) if v6.contains(&block) => {
            vec![net, IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default())]
        }
        _ => vec![net],
    }
}

pub(crate) fn ip_nets(p: &mut Problems, field: &str, list: &[String]) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        match ip_net(v) {
            Ok(net) => out.extend(canonical_nets(net)),
            Err(e) => p.error(format!("{field}[{i}]"), e),
        }
    }
    out
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
        p.warn(
            "selector-without-labels",
            field,
            "workload selector specified without labels: it selects every workload in scope",
        );
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
        if let Some(ns) = r.namespace.as_deref()
            && ns != namespace
        {
            p.error(
                format!("{field}.namespace"),
                format!("cross namespace referencing is not supported: must be empty or {namespace:?}"),
            );
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
                "gateway-class-outside-root",
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
