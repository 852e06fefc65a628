//! Dry-run policies: never enforced, but the decision carries what they would have decided.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mesh_policy::{CheckRequest, Mesh};
use serde_json::json;

const MANIFESTS: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
  namespace: shop
  annotations: {istio.io/dry-run: "true"}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gets, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: l4-lockdown
  namespace: shop
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/api]}}]}]
"#;

fn request(value: serde_json::Value) -> CheckRequest {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_dry_run_deny_reports_its_shadow_decision_without_denying() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(MANIFESTS).unwrap();
    let d = mesh
        .check(&request(json!({
            "destination": {"namespace": "shop", "service": "api"},
            "source": {"principal": "cluster.local/ns/shop/sa/web"},
            "http": {"method": "GET", "path": "/admin/users"}
        })))
        .unwrap();
    assert!(d.allowed, "dry-run never enforces: {d}");
    assert_eq!(d.policy.as_deref(), Some("shop/gets"));
    let shadow = d.dry_run.as_deref().expect("a dry-run policy applies");
    assert!(!shadow.allowed);
    assert_eq!(shadow.policy.as_deref(), Some("shop/deny-admin"));
    assert!(shadow.reason.to_string().contains("path is /admin*"), "{}", shadow.reason);
    // The shared shape does not carry it.
    let shape = serde_json::to_value(&d).unwrap();
    assert!(shape.get("dry_run").is_none());

    // Where the dry-run policy would not change anything, the shadow says so too.
    let d = mesh
        .check(&request(json!({
            "destination": {"namespace": "shop", "service": "api"},
            "http": {"method": "GET", "path": "/"}
        })))
        .unwrap();
    assert!(d.allowed && d.dry_run.as_ref().unwrap().allowed);
}

#[test]
fn a_dry_run_l4_allow_shows_who_it_would_refuse() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(MANIFESTS).unwrap();
    let d = mesh
        .check(&request(json!({
            "destination": {"namespace": "shop", "workload_labels": {"app": "db"}, "port": 5432},
            "source": {"principal": "cluster.local/ns/shop/sa/web"}
        })))
        .unwrap();
    assert!(d.allowed);
    let shadow = d.dry_run.unwrap();
    assert!(!shadow.allowed);
    assert_eq!(shadow.reason.to_string(), "no ALLOW policy matched (1 applies)");
}

#[test]
fn no_shadow_where_no_dry_run_policy_applies() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(MANIFESTS).unwrap();
    let d = mesh
        .check(&request(json!({
            "destination": {"namespace": "shop", "workload_labels": {"app": "web"}, "port": 80},
            "source": {"principal": "cluster.local/ns/shop/sa/api"}
        })))
        .unwrap();
    assert!(d.allowed && d.dry_run.is_none());
}
