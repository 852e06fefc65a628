//! The proxy entry points: a borrowed request with an http::HeaderMap and a parsed peer, decided the same way
//! as the shared request shape, with tokens borrowed from the cache and typed rejections.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::Idp;
use mesh_identity::jwt::JwtError;
use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::proxy::{Connection, HttpView, Request, Target};
use mesh_policy::{CheckRequest, Mesh};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const MANIFESTS: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/jwks"}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-eu, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  action: DENY
  rules: [{when: [{key: "request.headers[x-region]", values: ["us,eu"]}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: readers, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/web], requestPrincipals: ["https://idp.example.com/alice"]}}]
    to: [{operation: {methods: [GET]}}]
    when: [{key: "request.auth.claims[scope]", values: [read]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-l4, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/api]}}], to: [{operation: {ports: ["5432"]}}]}]
"#;

fn mesh(idp: &Idp) -> Mesh {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(MANIFESTS).unwrap();
    mesh.add_jwks("https://idp.example.com/jwks", &idp.jwks()).unwrap();
    mesh
}

fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, v.parse().unwrap());
    }
    map
}

#[test]
fn a_request_with_a_header_map_is_decided_like_the_shared_shape() {
    let idp = Idp::new("k1");
    let mesh = mesh(&idp);
    let snapshot = mesh.snapshot();
    let token =
        idp.sign(json!({"iss": "https://idp.example.com", "sub": "alice", "scope": "read write", "exp": NOW + 60}));
    let bearer = format!("Bearer {token}");
    let peer = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/web").unwrap();
    let labels = BTreeMap::new();
    let target = Target::new("shop", &labels).with_service("api").with_waypoint("shop", "waypoint");
    let map = headers(&[("authorization", &bearer)]);
    let request = Request::new(
        Connection::new(target).with_peer(&peer),
        HttpView { method: "GET", path: "/items?x=1", host: Some("api.shop"), headers: &map },
    );
    let from_proxy = snapshot.authorize_request(&request, NOW).unwrap();
    assert!(from_proxy.allowed, "{from_proxy}");
    assert_eq!(from_proxy.policy.as_deref(), Some("shop/readers"));

    let shape: CheckRequest = serde_json::from_value(json!({
        "destination": {"namespace": "shop", "service": "api", "waypoint": "waypoint"},
        "source": {"principal": "cluster.local/ns/shop/sa/web"},
        "http": {"method": "GET", "path": "/items?x=1", "host": "api.shop", "headers": {"authorization": bearer}},
    }))
    .unwrap();
    let from_shape = snapshot.check_at(&shape, NOW).unwrap();
    assert_eq!(from_proxy, from_shape);
    assert_eq!(from_proxy.reason.to_string(), from_shape.reason.to_string());
}

#[test]
fn repeated_headers_are_joined_for_matching() {
    let idp = Idp::new("k1");
    let mesh = mesh(&idp);
    let snapshot = mesh.snapshot();
    let labels = BTreeMap::new();
    let target = Target::new("shop", &labels).with_service("api");
    let map = headers(&[("x-region", "us"), ("X-Region", "eu")]);
    let request =
        Request::new(Connection::new(target), HttpView { method: "GET", path: "/", host: None, headers: &map });
    let d = snapshot.authorize_request(&request, NOW).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.policy.as_deref(), Some("shop/deny-eu"), "{d}");
    // One of them alone is not the joined value.
    let map = headers(&[("x-region", "eu")]);
    let request =
        Request::new(Connection::new(target), HttpView { method: "GET", path: "/", host: None, headers: &map });
    assert_ne!(snapshot.authorize_request(&request, NOW).unwrap().policy.as_deref(), Some("shop/deny-eu"));
}

#[test]
fn a_rejected_token_keeps_its_typed_error() {
    let idp = Idp::new("k1");
    let mesh = mesh(&idp);
    let snapshot = mesh.snapshot();
    let expired = idp.sign(json!({"iss": "https://idp.example.com", "sub": "alice", "exp": NOW - 3600}));
    let labels = BTreeMap::new();
    let target = Target::new("shop", &labels).with_service("api");
    let map = headers(&[("authorization", &format!("Bearer {expired}"))]);
    let request =
        Request::new(Connection::new(target), HttpView { method: "GET", path: "/", host: None, headers: &map });
    let d = snapshot.authorize_request(&request, NOW).unwrap();
    assert_eq!(d.status, Some(401));
    let rejection = d.jwt_rejection().expect("a typed rejection");
    assert!(matches!(rejection.error, JwtError::Expired), "{:?}", rejection.error);
    assert_eq!(rejection.request_authentication.qualified().as_ref(), "shop/jwt");
    assert!(d.reason.to_string().starts_with("JWT rejected: "));
}

#[test]
fn a_connection_at_ztunnel_with_a_parsed_peer() {
    let idp = Idp::new("k1");
    let mesh = mesh(&idp);
    let snapshot = mesh.snapshot();
    let labels: BTreeMap<String, String> = [("app".to_owned(), "db".to_owned())].into();
    let api = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/api").unwrap();
    let web = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/web").unwrap();
    let target = Target::new("shop", &labels).with_port(5432).with_ip("10.0.0.9".parse().unwrap());
    let allowed = snapshot.authorize_connection(&Connection::new(target).with_peer(&api));
    assert!(allowed.allowed && allowed.policy.as_deref() == Some("shop/db-l4"), "{allowed}");
    assert!(!snapshot.authorize_connection(&Connection::new(target).with_peer(&web)).allowed);
    assert!(!snapshot.authorize_connection(&Connection::new(target)).allowed, "plaintext");
}
