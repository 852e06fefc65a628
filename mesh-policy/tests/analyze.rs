//! The analyzer: every finding triggered by a manifest and absent from its correct counterpart
//! (tests/analyzer/findings.yaml), and the guides' scenarios as regression cases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mesh_policy::{Kind, Mesh, ResourceId, Severity};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    manifests: String,
    expect: Vec<String>,
}

fn codes(mesh: &Mesh) -> Vec<String> {
    let mut codes: Vec<String> = mesh.analyze().iter().map(|f| f.code.to_owned()).collect();
    codes.sort();
    codes.dedup();
    codes
}

#[test]
fn each_finding_is_triggered_and_only_where_it_applies() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/analyzer/findings.yaml");
    let cases: Vec<Case> = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for case in &cases {
        let mut mesh = Mesh::default();
        if let Err(e) = mesh.apply_yaml(&case.manifests) {
            failures.push(format!("{}: manifests do not apply: {e}", case.name));
            continue;
        }
        let mut expect = case.expect.clone();
        expect.sort();
        let got = codes(&mesh);
        if got != expect {
            let detail: Vec<String> = mesh.analyze().iter().map(ToString::to_string).collect();
            failures.push(format!("{}: expected {expect:?}, got {got:?}\n    {}", case.name, detail.join("\n    ")));
        }
        seen.extend(got);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(seen.len() >= 20, "the corpus triggers only {} codes: {seen:?}", seen.len());
}

fn payments(files: &[&str]) -> Mesh {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests/payments");
    let mut mesh = Mesh::default();
    for f in files {
        mesh.apply_yaml(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
    }
    mesh
}

#[test]
fn the_payments_guide_as_printed_reports_the_waypoint_identity_and_nothing_else() {
    let mesh = payments(&["cluster.yaml", "policies.yaml"]);
    let findings = mesh.analyze();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!((f.code, f.severity), ("waypoint-identity-not-allowed", Severity::Error));
    let policy = ResourceId::new(Kind::AuthorizationPolicy, "payments", "ledger-allow-accounts-l4");
    assert_eq!(f.resources[0].resource, policy);
    assert_eq!(f.resources[0].field.as_deref(), Some("spec.rules[0].from[0].source.principals"));
    assert_eq!(f.resources[1].resource, ResourceId::new(Kind::Service, "payments", "ledger"));
    assert_eq!(f.resources[2].resource, ResourceId::new(Kind::Gateway, "payments", "payments-waypoint"));
    assert!(f.fix.contains("cluster.local/ns/payments/sa/payments-waypoint"), "{}", f.fix);
    assert!(f.message.contains("refused (503)"), "{}", f.message);
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["resources"][0]["kind"], "AuthorizationPolicy");
    assert_eq!(json["resources"][0]["namespace"], "payments");
    assert_eq!(json["severity"], "error");

    let fixed = payments(&["cluster.yaml", "policies.yaml", "waypoint-identity.yaml"]);
    assert_eq!(fixed.analyze(), vec![]);
}

#[test]
fn apply_warnings_are_findings_with_codes() {
    let mut mesh = Mesh::default();
    let report = mesh
        .apply_yaml(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: get-only, namespace: shop}\nspec: {rules: [{to: [{operation: {methods: [GET]}}]}]}\n",
        )
        .unwrap();
    assert_eq!(report.warnings.len(), 1);
    let findings = mesh.analyze();
    assert_eq!(findings[0].code, "ztunnel-allow-never-matches");
    assert_eq!(findings[0].resources[0].field.as_deref(), Some("spec.rules[0]"));
    assert_eq!(findings[0].message, report.warnings[0].detail.message);
    assert!(mesh.remove(&ResourceId::new(Kind::AuthorizationPolicy, "shop", "get-only")));
    assert!(mesh.analyze().is_empty());
}

fn bookinfo(policies: &str) -> Mesh {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests/bookinfo");
    let mut mesh = Mesh::default();
    mesh.apply_yaml(&std::fs::read_to_string(dir.join("cluster.yaml")).unwrap()).unwrap();
    mesh.apply_yaml(policies).unwrap();
    mesh
}

#[test]
fn bookinfo_reports_the_missing_default_deny_and_before_the_last_step_the_waypoint_identity() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests/bookinfo");
    let last = std::fs::read_to_string(dir.join("policies.yaml")).unwrap();
    // The guide applies no namespace-wide default deny: a posture gap, reported as a warning. Its ingress gateway
    // reaches productpage directly (no istio.io/ingress-use-waypoint), so the waypoint's GET-only policy does not
    // apply to it: noted as information.
    let mesh = bookinfo(&last);
    assert_eq!(codes(&mesh), ["ingress-bypasses-waypoint", "namespace-without-default-deny"]);
    let f = mesh.analyze().into_iter().find(|f| f.code == "ingress-bypasses-waypoint").unwrap();
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.resources[0].resource, ResourceId::new(Kind::Service, "default", "productpage"));
    assert!(f.message.contains("default/productpage-waypoint"), "{}", f.message);
    // Before its last step, productpage's L4 ALLOW names only the ingress gateway.
    let before = last.replace("        - cluster.local/ns/default/sa/waypoint\n", "");
    assert_ne!(before, last);
    let mesh = bookinfo(&before);
    assert_eq!(
        codes(&mesh),
        ["ingress-bypasses-waypoint", "namespace-without-default-deny", "waypoint-identity-not-allowed"]
    );
    let f = mesh.analyze().into_iter().find(|f| f.code == "waypoint-identity-not-allowed").unwrap();
    assert!(f.fix.contains("cluster.local/ns/default/sa/waypoint"), "{}", f.fix);
    assert_eq!(f.resources[0].resource, ResourceId::new(Kind::AuthorizationPolicy, "default", "productpage-ztunnel"));
}

/// The analyzer and the trace read `istio.io/ingress-use-waypoint` the same way: over the conformance scenario
/// of that label, a Service is reported as gone around by ingress traffic exactly when the trace from the
/// ingress gateway reaches it without a waypoint hop.
#[test]
fn ingress_findings_agree_with_the_trace() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/trace-ingress.yaml");
    let scenario = mesh_policy::scenario::Scenario::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mesh = scenario.mesh().unwrap();
    let reported: std::collections::BTreeSet<String> = mesh
        .analyze()
        .into_iter()
        .filter(|f| f.code == "ingress-bypasses-waypoint")
        .map(|f| f.resources[0].resource.qualified().to_string())
        .collect();
    let mut checked = 0;
    for case in scenario.traces.iter().filter(|t| t.trace.source.pod.as_deref() == Some("gw/ingress-istio-0")) {
        let (name, ns) = case.trace.destination.split_once(':').unwrap().0.split_once('.').unwrap();
        let result = mesh.trace(&case.trace, 1_767_225_600).unwrap();
        let through_waypoint = result.hops.first().is_some_and(|h| h.proxy == mesh_policy::trace::Proxy::Waypoint);
        let service = format!("{ns}/{name}");
        assert_eq!(reported.contains(&service), !through_waypoint, "{}: {service}", case.name);
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} traces from the ingress gateway");
    assert!(!reported.is_empty());
}
