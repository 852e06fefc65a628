//! The proxy entry points: a borrowed request with an http::HeaderMap and a parsed peer, decided the same way
//! as the shared request shape, with tokens borrowed from the cache and typed rejections.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::Idp;
use mesh_identity::jwt::JwtError;
use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::proxy::{Connection, HttpView, Request, Target};
use mesh_policy::{CheckRequest, Mesh, MtlsMode, Reason};
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

/// istiod turns `values: ["*"]` on a header into Envoy's `present_match` (`HeaderMatcher` in
/// `pilot/pkg/security/authz/matcher/header.go`): a header sent with an empty value is there.
#[test]
fn a_header_sent_empty_is_present() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-debug, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  action: DENY
  rules: [{when: [{key: "request.headers[x-debug]", values: ["*"]}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-without-legacy, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: legacy}]
  rules: [{when: [{key: "request.headers[x-legacy]", notValues: ["*"]}]}]
"#,
    )
    .unwrap();
    let snapshot = mesh.snapshot();
    let labels = BTreeMap::new();
    let decide = |service: &str, map: &http::HeaderMap| {
        let target = Target::new("shop", &labels).with_service(service).with_waypoint("shop", "waypoint");
        let request =
            Request::new(Connection::new(target), HttpView { method: "GET", path: "/", host: None, headers: map });
        snapshot.authorize_request(&request, NOW).unwrap()
    };
    let empty = headers(&[("x-debug", "")]);
    let d = decide("api", &empty);
    assert!(!d.allowed, "{d}");
    assert_eq!(d.policy.as_deref(), Some("shop/deny-debug"));
    assert!(decide("api", &headers(&[("x-other", "")])).allowed);

    let d = decide("legacy", &headers(&[("X-Legacy", "")]));
    assert!(!d.allowed, "an empty header is not an absent one: {d}");
    let d = decide("legacy", &headers(&[]));
    assert_eq!(d.policy.as_deref(), Some("shop/only-without-legacy"), "{d}");
    assert!(d.allowed);
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

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec: {serviceAccountName: db}
status: {podIP: 10.0.0.9}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {serviceAccountName: web}
status: {podIP: 10.0.0.10}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
"#;

#[test]
fn a_workload_target_uses_the_policies_resolved_for_it_and_decides_the_same() {
    let idp = Idp::new("k1");
    let mut mesh = mesh(&idp);
    mesh.apply_yaml(CLUSTER).unwrap();
    let snapshot = mesh.snapshot();
    let api = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/api").unwrap();
    let web = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/web").unwrap();
    let cluster = snapshot.cluster();
    for (id, w) in cluster.workloads() {
        for port in [5432, 80] {
            let resolved = snapshot.workload_target(id, port).unwrap();
            let by_hand = Target::new(w.namespace(), &w.labels).with_port(port).with_ip(w.ips[0]);
            for peer in [Some(&api), Some(&web), None] {
                let conn = |t| match peer {
                    Some(p) => Connection::new(t).with_peer(p),
                    None => Connection::new(t),
                };
                let a = snapshot.authorize_connection(&conn(resolved));
                let b = snapshot.authorize_connection(&conn(by_hand));
                assert_eq!(a, b, "{} port {port} from {peer:?}", w.id);
            }
        }
    }
    // STRICT refuses plaintext on the resolved path too.
    let db = cluster.workload_by_ip("10.0.0.9".parse().unwrap()).unwrap();
    let d = snapshot.authorize_connection(&Connection::new(snapshot.workload_target(db, 5432).unwrap()));
    assert!(d.reason.to_string().contains("PeerAuthentication STRICT"), "{d}");
    assert_eq!(d.policy.as_deref(), Some("shop/strict"));

    // A target resolved by an older snapshot is looked up again, not trusted: here a new Pod takes the index
    // the database had.
    let old = snapshot.workload_target(db, 5432).unwrap();
    mesh.apply_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: a-0, namespace: shop, labels: {app: a}}\nstatus: {podIP: 10.0.0.1}\n").unwrap();
    let newer = mesh.snapshot();
    assert_ne!(newer.cluster().workload_by_ip("10.0.0.9".parse().unwrap()), Some(db));
    let d = newer.authorize_connection(&Connection::new(old).with_peer(&api));
    assert!(d.allowed && d.policy.as_deref() == Some("shop/db-l4"), "{d}");
}

#[test]
fn a_waypoint_lists_the_jwks_uris_to_fetch_and_the_resources_it_applies_per_target() {
    let idp = Idp::new("k1");
    let mut mesh = mesh(&idp);
    let inline = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: inline, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: web}}]
  jwtRules:
  - {{issuer: "https://other.example.com", jwksUri: "https://other.example.com/jwks", jwks: '{}'}}
  - {{issuer: "https://third.example.com", jwksUri: "https://idp.example.com/jwks"}}
"#,
        idp.jwks()
    );
    mesh.apply_yaml(&inline).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = mesh.snapshot();
    // Inline documents are not fetched; a URI named twice is listed once.
    assert_eq!(snapshot.jwks_uris().into_iter().collect::<Vec<_>>(), ["https://idp.example.com/jwks"]);

    let labels = BTreeMap::new();
    let api = Target::new("shop", &labels).with_service("api").with_port(80);
    let names: Vec<String> = snapshot.waypoint_resources(&api).iter().map(|id| id.to_string()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].contains("RequestAuthentication") && names[0].contains("shop/jwt"), "{names:?}");
    assert!(names[1..].iter().any(|n| n.contains("shop/deny-eu")), "{names:?}");
    assert!(names[1..].iter().any(|n| n.contains("shop/readers")), "{names:?}");
    // The selector policy is ztunnel's; another service gets only its own RequestAuthentication.
    let web = Target::new("shop", &labels).with_service("web").with_port(80);
    let names: Vec<String> = snapshot.waypoint_resources(&web).iter().map(|id| id.to_string()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].contains("shop/inline"), "{names:?}");
}

const PLAINTEXT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
status: {podIP: 10.0.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
status: {podIP: 10.0.0.9}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
status: {podIP: 10.0.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: cache-0, namespace: shop, labels: {app: cache}}
status: {podIP: 10.0.0.12}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {"9000": {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  portLevelMtls: {"8080": {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: cache, namespace: shop}
spec:
  selector: {matchLabels: {app: cache}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-all, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-plain, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {ipBlocks: ["10.0.0.0/24"]}}], to: [{operation: {ports: ["5432", "9000"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cache-deny, namespace: shop}
spec:
  selector: {matchLabels: {app: cache}}
  action: DENY
  rules: [{from: [{source: {ipBlocks: ["10.0.1.0/24"]}}]}]
"#;

#[test]
fn plaintext_is_decided_by_peer_authentication_then_l4_policy() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(PLAINTEXT).unwrap();
    let snapshot = mesh.snapshot();
    let cluster = snapshot.cluster();
    let workload = |ip: &str| cluster.workload_by_ip(ip.parse().unwrap()).unwrap();
    let target = |ip: &str, port| snapshot.workload_target(workload(ip), port).unwrap();
    let inside = "10.0.0.1".parse().unwrap();
    let outside = "10.0.1.1".parse().unwrap();

    // The namespace is STRICT: refused before the ALLOW-all policy of the workload is read.
    let d = snapshot.authorize_plaintext(&target("10.0.0.10", 80), inside);
    assert!(!d.allowed && d.rule.is_none(), "{d}");
    assert_eq!(d.policy.as_deref(), Some("shop/strict"));
    assert!(matches!(&d.reason, Reason::StrictMtls { port_level: false, .. }), "{d}");
    assert_eq!(d.to_string(), "DENY at ztunnel: PeerAuthentication STRICT rejects plaintext (set by shop/strict)");
    // The same connection over mTLS is the policy's to decide.
    let web = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/web").unwrap();
    let mtls = snapshot.authorize_connection(&Connection::new(target("10.0.0.10", 80)).with_peer(&web));
    assert!(mtls.allowed && mtls.policy.as_deref() == Some("shop/web-all"), "{mtls}");

    // The workload overrides the namespace with PERMISSIVE: the L4 policy decides, by source address.
    let d = snapshot.authorize_plaintext(&target("10.0.0.9", 5432), inside);
    assert!(d.allowed, "{d}");
    assert_eq!((d.policy.as_deref(), d.rule), (Some("shop/db-plain"), Some(0)));
    assert!(matches!(&d.reason, Reason::Allowed(_)), "{d}");
    let d = snapshot.authorize_plaintext(&target("10.0.0.9", 5432), outside);
    assert!(!d.allowed && d.policy.is_none(), "{d}");
    assert!(matches!(d.reason, Reason::NoAllowMatched { applicable: 1 }), "{d}");

    // A portLevelMtls entry overrides the workload's mode, either way; the policy would allow both.
    let d = snapshot.authorize_plaintext(&target("10.0.0.9", 9000), inside);
    assert!(!d.allowed && d.policy.as_deref() == Some("shop/db"), "{d}");
    assert!(matches!(&d.reason, Reason::StrictMtls { port_level: true, .. }), "{d}");
    assert!(d.reason.to_string().contains("shop/db portLevelMtls"), "{d}");
    let d = snapshot.authorize_plaintext(&target("10.0.0.11", 8080), inside);
    assert!(d.allowed && matches!(d.reason, Reason::NoPolicy), "{d}");
    // The api workload's own mode is UNSET: its other ports inherit the namespace's STRICT.
    let d = snapshot.authorize_plaintext(&target("10.0.0.11", 8443), inside);
    assert!(!d.allowed && d.policy.as_deref() == Some("shop/strict"), "{d}");

    // DISABLE accepts plaintext; a DENY policy still refuses it.
    let d = snapshot.authorize_plaintext(&target("10.0.0.12", 6379), inside);
    assert!(d.allowed && matches!(d.reason, Reason::NoDenyMatched { applicable: 1 }), "{d}");
    let d = snapshot.authorize_plaintext(&target("10.0.0.12", 6379), outside);
    assert!(!d.allowed && d.policy.as_deref() == Some("shop/cache-deny") && d.rule == Some(0), "{d}");
    assert!(matches!(&d.reason, Reason::Denied(_)), "{d}");

    // A target built by hand decides the same; without a port, the mTLS mode is unknown and it is refused.
    let labels: BTreeMap<String, String> = [("app".to_owned(), "db".to_owned())].into();
    let by_hand = Target::new("shop", &labels).with_ip("10.0.0.9".parse().unwrap());
    assert_eq!(
        snapshot.authorize_plaintext(&by_hand.with_port(9000), inside),
        snapshot.authorize_plaintext(&target("10.0.0.9", 9000), inside)
    );
    let d = snapshot.authorize_plaintext(&by_hand, inside);
    assert!(!d.allowed && d.policy.is_none() && d.reason.to_string().contains("port is not set"), "{d}");
}

#[test]
fn plaintext_is_refused_exactly_where_the_effective_mtls_mode_is_strict() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(PLAINTEXT).unwrap();
    let snapshot = mesh.snapshot();
    for (id, w) in snapshot.cluster().workloads() {
        for port in [80, 5432, 6379, 8080, 8443, 9000] {
            let destination: mesh_policy::request::Destination = serde_json::from_value(json!({
                "namespace": w.namespace(), "workload_labels": w.labels, "ip": w.ips[0], "port": port,
            }))
            .unwrap();
            let mtls = snapshot.effective_mtls(&destination);
            let d = snapshot.authorize_plaintext(&snapshot.workload_target(id, port).unwrap(), w.ips[0]);
            let strict = matches!(d.reason, Reason::StrictMtls { .. });
            assert_eq!(strict, mtls.mode == MtlsMode::Strict, "{} port {port}: {d}", w.id);
            if strict {
                assert_eq!(d.policy.as_deref(), mtls.policy.as_ref().map(|p| p.qualified().as_ref()));
            }
        }
    }
}

/// A waypoint target built by hand with a misspelled Service, ServiceEntry or Gateway finds no policy: once the
/// manifests define cluster objects, such a name is an error (an HTTP request) or a denial (TCP), never an
/// allow, as the same mistake in a check request is.
#[test]
fn a_misspelled_name_on_the_proxy_paths_is_refused_not_allowed() {
    let idp = Idp::new("k1");
    let mut mesh = mesh(&idp);
    let policies_only = mesh.snapshot();
    mesh.apply_yaml(CLUSTER).unwrap();
    mesh.apply_yaml(
        r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, labels: {istio.io/use-waypoint: waypoint}}
spec: {clusterIP: 10.96.0.10, selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#,
    )
    .unwrap();
    let snapshot = mesh.snapshot();
    let web = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/web").unwrap();
    let no_labels = BTreeMap::new();
    let empty = headers(&[]);
    let get = |target: Target<'_>| {
        let request = Request::new(
            Connection::new(target).with_peer(&web),
            HttpView { method: "GET", path: "/", host: Some("api.shop"), headers: &empty },
        );
        snapshot.authorize_request(&request, NOW)
    };
    let right = Target::new("shop", &no_labels).with_service("api").with_waypoint("shop", "waypoint");
    let decided = get(right).unwrap();
    assert!(
        !decided.allowed && decided.reason.to_string().contains("no ALLOW policy matched (1 applies)"),
        "{decided}"
    );

    for (target, named) in [
        (Target::new("shop", &no_labels).with_service("apii").with_waypoint("shop", "waypoint"), "Service shop/apii"),
        (
            Target::new("shop", &no_labels).with_service_entry("api").with_waypoint("shop", "waypoint"),
            "ServiceEntry shop/api",
        ),
        (Target::new("shop", &no_labels).with_service("api").with_waypoint("shop", "waypont"), "shop/waypont"),
    ] {
        let error = get(target).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains(named) && error.contains("the manifests define no"), "{named}: {error:?}");
        let tcp = snapshot.authorize_tcp_at_waypoint(&Connection::new(target).with_peer(&web));
        assert!(!tcp.allowed && tcp.reason.to_string().contains(named), "{named}: {tcp}");
    }

    // With policies alone there is nothing to check names against: they are taken as given.
    let request = Request::new(
        Connection::new(Target::new("shop", &no_labels).with_service("other")).with_peer(&web),
        HttpView { method: "GET", path: "/", host: None, headers: &empty },
    );
    assert!(policies_only.authorize_request(&request, NOW).is_ok());
}
