//! The fields of cluster objects that must hold addresses the model can read.

use std::net::IpAddr;

use ipnet::IpNet;

use super::ClusterObject;
use crate::error::FieldError;

pub(super) fn object(o: &ClusterObject) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let ip = |errors: &mut Vec<FieldError>, field: String, value: &str| {
        if value.parse::<IpAddr>().is_err() {
            errors.push(FieldError::new(field, format!("{value:?} is not an IP address")));
        }
    };
    match o {
        ClusterObject::Namespace(_) | ClusterObject::GatewayClass(_) => {}
        ClusterObject::XdsWorkload(_, w) => errors.extend(crate::xds::validate_workload(w)),
        ClusterObject::XdsService(_, s) => errors.extend(crate::xds::validate_service(s)),
        ClusterObject::Service(s) => {
            if let Some(v) = s.spec.cluster_ip.as_deref().filter(|v| !is_headless(v)) {
                ip(&mut errors, "spec.clusterIP".into(), v);
            }
            for (i, v) in s.spec.cluster_ips.iter().enumerate().filter(|(_, v)| !is_headless(v)) {
                ip(&mut errors, format!("spec.clusterIPs[{i}]"), v);
            }
        }
        ClusterObject::Pod(p) => {
            if let Some(v) = p.status.pod_ip.as_deref().filter(|v| !v.is_empty()) {
                ip(&mut errors, "status.podIP".into(), v);
            }
            for (i, v) in p.status.pod_ips.iter().enumerate() {
                ip(&mut errors, format!("status.podIPs[{i}].ip"), &v.ip);
            }
        }
        ClusterObject::ServiceEntry(se) => {
            for (i, v) in se.spec.addresses.iter().enumerate() {
                if v.parse::<IpAddr>().is_err() && v.parse::<IpNet>().is_err() {
                    errors.push(FieldError::new(
                        format!("spec.addresses[{i}]"),
                        format!("{v:?} is neither an IP address nor a CIDR range"),
                    ));
                }
            }
            for (i, e) in se.spec.endpoints.iter().enumerate() {
                if let Some(v) = e.address.as_deref().filter(|v| !looks_like_hostname(v)) {
                    ip(&mut errors, format!("spec.endpoints[{i}].address"), v);
                }
            }
            if se.spec.hosts.is_empty() {
                errors.push(FieldError::new("spec.hosts", "must name at least one host"));
            }
        }
        ClusterObject::WorkloadEntry(we) => {
            if let Some(v) = we.spec.address.as_deref().filter(|v| !looks_like_hostname(v)) {
                ip(&mut errors, "spec.address".into(), v);
            }
        }
        ClusterObject::Gateway(g) => {
            let typed = g.spec.addresses.iter().enumerate().map(|(i, a)| (format!("spec.addresses[{i}].value"), a));
            let status =
                g.status.addresses.iter().enumerate().map(|(i, a)| (format!("status.addresses[{i}].value"), a));
            for (field, a) in typed.chain(status) {
                if a.kind.as_deref().unwrap_or("IPAddress") == "IPAddress" {
                    ip(&mut errors, field, &a.value);
                }
            }
        }
    }
    errors
}

/// `None` (headless) or empty.
pub(super) fn is_headless(v: &str) -> bool {
    v.is_empty() || v == "None"
}

/// A WorkloadEntry address may be a DNS name; those are kept out of address lookups.
pub(super) fn looks_like_hostname(v: &str) -> bool {
    v.parse::<IpAddr>().is_err() && v.bytes().any(|b| b.is_ascii_alphabetic()) && !v.contains(':')
}
