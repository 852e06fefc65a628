//! Warnings given when resources were applied, as findings: above all the policies ztunnel enforces with HTTP
//! attributes it cannot see.

use super::{Finding, Involved, Severity};
use crate::mesh::Warning;

/// The finding for an apply warning, classified by what it says.
pub(super) fn from_warning(w: &Warning) -> Finding {
    let message = w.detail.message.as_str();
    let (code, severity, fix) = if message.contains("this ALLOW rule never matches there") {
        (
            "ztunnel-allow-never-matches",
            Severity::Error,
            "attach the policy to the waypoint with targetRefs, or leave the HTTP fields out of the rule",
        )
    } else if message.contains("is not enforced at ztunnel") {
        (
            "ztunnel-deny-not-enforced",
            Severity::Error,
            "attach the policy to the waypoint with targetRefs; ztunnel skips this DENY rule entirely",
        )
    } else if message.contains("are not enforced at ztunnel") {
        (
            "ztunnel-deny-http-dropped",
            Severity::Warning,
            "attach the policy to the waypoint with targetRefs to enforce its HTTP part; at ztunnel the rule denies \
             everything its other fields match",
        )
    } else if message.contains("ztunnel does not support the") {
        ("ztunnel-action-unsupported", Severity::Warning, "attach the policy to the waypoint with targetRefs")
    } else if message.contains("selects every workload") {
        ("selector-without-labels", Severity::Warning, "name the workloads' labels, or drop the selector")
    } else if message.contains("GatewayClass target only takes effect") {
        ("gateway-class-outside-root", Severity::Warning, "move the policy to the root namespace")
    } else if message.contains("ignored in ambient mode") {
        (
            "peer-authentication-ignored",
            Severity::Warning,
            "move the selector PeerAuthentication out of the root namespace",
        )
    } else if message.contains("is a wildcard only at the start or the end") {
        ("wildcard-in-middle", Severity::Warning, "put the `*` at the start or the end, or list the values")
    } else if message.contains("methods are matched case-sensitively") {
        ("method-lowercase", Severity::Warning, "write the method in upper case")
    } else if message.contains("surrounding whitespace") {
        ("value-whitespace", Severity::Warning, "remove the spaces around the value")
    } else if message.contains("of the same manifest: the later definition replaces the earlier") {
        ("resource-defined-twice", Severity::Warning, "keep one definition of the resource")
    } else {
        ("policy-warning", Severity::Warning, "see the message")
    };
    let field = (!w.detail.field.is_empty()).then(|| w.detail.field.clone());
    Finding::new(code, severity, vec![Involved { resource: w.resource.clone(), field }], message, fix)
}
