//! Apply-time warnings and cross-resource findings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mesh_policy::{Kind, Mesh, ResourceId};

const HTTP_AT_ZTUNNEL: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: shop}
spec:
  rules:
  - to: [{operation: {methods: ["GET"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin-on-80, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {ports: ["80"], paths: ["/admin"]}}]
"#;

#[test]
fn http_attributes_at_ztunnel_are_reported() {
    let mut mesh = Mesh::default();
    let report = mesh.apply_yaml(HTTP_AT_ZTUNNEL).unwrap();
    let text: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(text[0].starts_with("AuthorizationPolicy shop/get-only: spec.rules[0]: uses HTTP attributes (methods)"));
    assert!(text[0].contains("never matches there"));
    assert!(text[1].starts_with("AuthorizationPolicy shop/no-admin: spec.rules[0]"));
    assert!(text[1].contains("is not enforced at ztunnel"));
    assert!(text[2].contains("HTTP attributes (paths) are not enforced at ztunnel"));
    assert_eq!(mesh.analyze(), report.warnings);

    assert!(mesh.remove(&ResourceId::new(Kind::AuthorizationPolicy, "shop", "get-only")));
    assert_eq!(mesh.analyze().len(), 2);
}

const CLAIMS_POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admins, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  rules:
  - when: [{key: "request.auth.claims[groups]", values: ["admin"]}]
"#;

const REQUEST_AUTH: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  jwtRules: [{issuer: "https://idp.example.com"}]
"#;

#[test]
fn claims_without_request_authentication_are_reported() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(CLAIMS_POLICY).unwrap();
    let findings = mesh.analyze();
    assert_eq!(findings.len(), 1);
    assert!(findings[0].to_string().contains("no RequestAuthentication targets Service api"));

    mesh.apply_yaml(REQUEST_AUTH).unwrap();
    assert!(mesh.analyze().is_empty());
}

#[test]
fn a_gateway_class_request_authentication_covers_every_waypoint() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(CLAIMS_POLICY).unwrap();
    mesh.apply_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: mesh-jwt, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  jwtRules: [{issuer: "https://idp.example.com"}]
"#,
    )
    .unwrap();
    assert!(mesh.analyze().is_empty());
}
