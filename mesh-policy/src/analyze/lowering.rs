//! Warnings given when resources were applied, as findings: above all the policies ztunnel enforces with HTTP
//! attributes it cannot see. Each warning carries its code from where it was raised; this adds the severity and
//! the fix.

use super::{Finding, Involved, Severity};
use crate::mesh::Warning;

/// The finding for an apply warning.
pub(super) fn from_warning(w: &Warning) -> Finding {
    let (severity, fix) = match w.code {
        "ztunnel-allow-never-matches" => (
            Severity::Error,
            "attach the policy to the waypoint with targetRefs, or leave the HTTP fields out of the rule",
        ),
        "ztunnel-deny-not-enforced" => (
            Severity::Error,
            "attach the policy to the waypoint with targetRefs; ztunnel skips this DENY rule entirely",
        ),
        "ztunnel-deny-http-dropped" => (
            Severity::Warning,
            "attach the policy to the waypoint with targetRefs to enforce its HTTP part; at ztunnel the rule denies \
             everything its other fields match",
        ),
        "ztunnel-action-unsupported" => (Severity::Warning, "attach the policy to the waypoint with targetRefs"),
        "selector-without-labels" => (Severity::Warning, "name the workloads' labels, or drop the selector"),
        "gateway-class-outside-root" => (Severity::Warning, "move the policy to the root namespace"),
        "peer-authentication-ignored" => {
            (Severity::Warning, "move the selector PeerAuthentication out of the root namespace")
        }
        "wildcard-in-middle" => (Severity::Warning, "put the `*` at the start or the end, or list the values"),
        "method-lowercase" => (Severity::Warning, "write the method in upper case"),
        "value-whitespace" => (Severity::Warning, "remove the spaces around the value"),
        "resource-defined-twice" => (Severity::Warning, "keep one definition of the resource"),
        _ => (Severity::Warning, "see the message"),
    };
    let field = (!w.detail.field.is_empty()).then(|| w.detail.field.clone());
    Finding::new(
        w.code,
        severity,
        vec![Involved { resource: w.resource.clone(), field }],
        w.detail.message.clone(),
        fix,
    )
}
