//! The cluster model, named checks and whole-configuration reloads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mesh_policy::cluster::{Resolved, WaypointBinding};
use mesh_policy::resource::{Kind, ResourceId};
use mesh_policy::trace::TraceRequest;
use mesh_policy::{CheckRequest, Mesh, Source};
use serde_json::json;

/// `kubectl get -o yaml` output: a List, status and fields the model does not read.
const KUBECTL: &str = r#"
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
    uid: 6f1c
    labels: {istio.io/dataplane-mode: ambient, kubernetes.io/metadata.name: shop}
  spec: {finalizers: [kubernetes]}
  status: {phase: Active}
- apiVersion: v1
  kind: Pod
  metadata:
    name: api-7c9f-x2x
    namespace: shop
    labels: {app: api, pod-template-hash: 7c9f}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api-7c9f}]
  spec:
    serviceAccountName: api
    nodeName: kind-worker
    containers:
    - name: api
      image: api:1
      ports: [{containerPort: 8080, name: http, protocol: TCP}, {containerPort: 9090, name: metrics}]
      resources: {}
    dnsPolicy: ClusterFirst
  status:
    phase: Running
    podIP: 10.244.1.7
    podIPs: [{ip: 10.244.1.7}, {ip: "fd00::7"}]
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Service
  metadata: {name: api, namespace: shop, labels: {istio.io/use-waypoint: waypoint}}
  spec:
    type: ClusterIP
    clusterIP: 10.96.0.9
    clusterIPs: [10.96.0.9]
    selector: {app: api}
    ports:
    - {name: http, port: 80, protocol: TCP, targetPort: http, appProtocol: http}
    - {name: metrics, port: 9090, targetPort: 9090}
    sessionAffinity: None
"#;

#[test]
fn kubectl_output_loads_and_resolves() {
    let mut mesh = Mesh::default();
    let report = mesh.apply_yaml(KUBECTL).unwrap();
    assert_eq!(report.applied.len(), 3, "{report:?}");
    let cluster = mesh.cluster();
    let pod = cluster.workload_named(&ResourceId::new(Kind::Pod, "shop", "api-7c9f-x2x")).unwrap();
    let w = cluster.workload(pod).unwrap();
    assert!(w.enrolled);
    assert_eq!(w.principal, "cluster.local/ns/shop/sa/api");
    assert_eq!(w.node.as_deref(), Some("kind-worker"));
    assert_eq!(w.ips.len(), 2);
    assert_eq!(cluster.workload_by_ip("fd00::7".parse().unwrap()), Some(pod));
    // The target port `http` names the container port 8080.
    let Resolved::Service { service, port } = cluster.resolve("api.shop:80", None).unwrap() else { panic!() };
    let s = cluster.service(service).unwrap();
    assert_eq!(s.target_port(port, w), Some(8080));
    assert_eq!(s.endpoints, vec![pod]);
    // The service names a waypoint that does not exist: traffic goes directly, and the model says why.
    match &s.waypoint {
        WaypointBinding::Unusable { waypoint, label, why } => {
            assert_eq!(waypoint.to_string(), "Gateway shop/waypoint");
            assert_eq!(label.on.to_string(), "Service shop/api");
            assert_eq!(why.to_string(), "no such Gateway");
        }
        other => panic!("{other:?}"),
    }
    // An IPv4-mapped address is the same address.
    assert_eq!(cluster.workload_by_ip("::ffff:10.244.1.7".parse().unwrap()), Some(pod));
}

#[test]
fn a_field_read_with_the_wrong_type_is_an_error_naming_it() {
    let mut mesh = Mesh::default();
    let bad = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec: {ports: [{port: http}]}\n";
    let err = mesh.apply_yaml(bad).unwrap_err().to_string();
    assert!(err.contains("Service shop/api"), "{err}");
    assert!(err.contains("spec.ports[0].port"), "{err}");
    let bad_ip = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nstatus: {podIP: 10.0.0.300}\n";
    let err = mesh.apply_yaml(bad_ip).unwrap_err().to_string();
    assert!(err.contains("Pod shop/p") && err.contains("status.podIP"), "{err}");
    assert!(mesh.is_empty(), "nothing of an invalid manifest is applied");
}

#[test]
fn a_check_that_names_what_the_model_does_not_know_is_an_error() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(KUBECTL).unwrap();
    let req: CheckRequest = serde_json::from_value(json!({
        "destination": {"namespace": "shop", "service": "nosuch"},
        "http": {"method": "GET", "path": "/"}
    }))
    .unwrap();
    let err = mesh.check(&req).unwrap_err().to_string();
    assert!(err.contains("destination.service") && err.contains("Service shop/nosuch"), "{err}");
    let req: CheckRequest =
        serde_json::from_value(json!({"destination": {"namespace": "shop", "ip": "10.1.2.3", "port": 80}})).unwrap();
    let err = mesh.check(&req).unwrap_err().to_string();
    assert!(err.contains("destination.ip") && err.contains("10.1.2.3"), "{err}");
    let req: CheckRequest =
        serde_json::from_value(json!({"destination": {"namespace": "other", "ip": "10.244.1.7", "port": 8080}}))
            .unwrap();
    let err = mesh.check(&req).unwrap_err().to_string();
    assert!(err.contains("contradicts"), "{err}");
}

#[test]
fn checks_by_hand_are_unchanged_without_cluster_objects() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  targetRefs: [{kind: Service, group: \"\", name: nosuch}]\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
    )
    .unwrap();
    let req: CheckRequest = serde_json::from_value(json!({
        "destination": {"namespace": "shop", "service": "nosuch"},
        "http": {"method": "GET", "path": "/"}
    }))
    .unwrap();
    assert!(mesh.check(&req).unwrap().allowed);
}

const POLICY: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {action: DENY, rules: [{}]}\n";

#[test]
fn replace_all_reports_every_invalid_document_and_keeps_the_last_good_configuration() {
    let mut mesh = Mesh::default();
    mesh.replace_all(&[Source { name: "cluster.yaml", text: KUBECTL }, Source { name: "deny.yaml", text: POLICY }])
        .unwrap();
    let good = mesh.snapshot();
    assert_eq!(good.len(), 4);
    let broken = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: shop}\nspec: {rules: [{from: [{source: {principal: [a]}}]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: q}\nstatus: {podIP: nope}\n";
    let err = mesh
        .replace_all(&[Source { name: "cluster.yaml", text: KUBECTL }, Source { name: "broken.yaml", text: broken }])
        .unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    assert!(err.0.iter().all(|e| e.name == "broken.yaml"));
    let text = err.to_string();
    assert!(text.contains("document 1") && text.contains("unknown field `principal`"), "{text}");
    assert!(text.contains("document 2") && text.contains("status.podIP"), "{text}");
    // The configuration in force is the last good one: the DENY still applies.
    let now = mesh.snapshot();
    assert_eq!(now.generation(), good.generation());
    assert_eq!(now.len(), 4);
    // A good replacement drops what the sources no longer hold.
    mesh.replace_all(&[Source { name: "cluster.yaml", text: KUBECTL }]).unwrap();
    assert_eq!(mesh.len(), 3);
    assert!(mesh.resources().all(|id| id.kind() != Kind::AuthorizationPolicy));
    // The old snapshot is untouched for whoever still holds it.
    assert_eq!(good.len(), 4);
}

#[test]
fn the_trace_result_has_the_shared_shape() {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(KUBECTL).unwrap();
    mesh.apply_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {serviceAccountName: web}\nstatus: {podIP: 10.244.1.8}\n").unwrap();
    let req: TraceRequest = serde_json::from_value(json!({
        "source": {"pod": "shop/web"},
        "destination": "api:80",
        "http": {"method": "GET", "path": "/"}
    }))
    .unwrap();
    let result = serde_json::to_value(mesh.trace(&req, 0).unwrap()).unwrap();
    // Sorted: serde_json keeps insertion order where a dependency enables `preserve_order`.
    let sorted = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(sorted(&result), ["allowed", "denied_by", "endpoint", "endpoints", "hops", "refused", "status"]);
    let hop = &result["hops"][0];
    assert_eq!(sorted(hop), ["decision", "name", "peer", "proxy"]);
    assert_eq!(hop["proxy"], "ztunnel");
    assert_eq!(hop["name"], "kind-worker");
    assert_eq!(hop["peer"], "cluster.local/ns/shop/sa/web");
    assert_eq!(result["endpoint"], "shop/api-7c9f-x2x");
    // Unknown fields are an error, as in the check request.
    let typo =
        serde_json::from_value::<TraceRequest>(json!({"source": {"pod": "a/b"}, "destination": "x:1", "htp": {}}));
    assert!(typo.is_err());
}

/// A third-party waypoint class (kgateway's, mesh-waypoint's): its GatewayClass (or the Gateway) carries
/// `ambient.istio.io/waypoint-inbound-binding`, as istiod reads it. Its Gateways are waypoints, the namespaces
/// they admit are the bound listener's, and its Pods are ambient workloads (the sandwich), where Istio's own
/// waypoint Pods are not.
#[test]
fn a_gateway_of_a_class_with_an_inbound_binding_is_a_waypoint_reached_through_its_node_proxy() {
    use mesh_policy::cluster::InboundBinding;
    let manifests = r#"
apiVersion: v1
kind: Namespace
metadata: {name: payments, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: mesh-waypoint, annotations: {ambient.istio.io/waypoint-inbound-binding: PROXY/15088}}
spec: {controllerName: mesh-rs.dev/waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: sandwich, namespace: payments}
spec:
  gatewayClassName: mesh-waypoint
  listeners:
  - {name: proxy, port: 15088, protocol: istio.io/PROXY, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: payments}
spec: {gatewayClassName: other, listeners: [{name: http, port: 80, protocol: HTTP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: annotated, namespace: payments, annotations: {ambient.istio.io/waypoint-inbound-binding: NONE}}
spec: {gatewayClassName: other, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: garbled, namespace: payments, annotations: {ambient.istio.io/waypoint-inbound-binding: "PROXY/port"}}
spec: {gatewayClassName: other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: istio, namespace: payments}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: v1
kind: Pod
metadata: {name: sandwich-0, namespace: payments, labels: {gateway.networking.k8s.io/gateway-name: sandwich}}
spec: {serviceAccountName: sandwich}
status: {podIP: 10.0.3.1}
---
apiVersion: v1
kind: Pod
metadata: {name: istio-0, namespace: payments, labels: {gateway.networking.k8s.io/gateway-name: istio}}
spec: {serviceAccountName: istio}
status: {podIP: 10.0.3.2}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop, labels: {istio.io/use-waypoint: sandwich, istio.io/use-waypoint-namespace: payments}}
spec: {clusterIP: 10.96.0.30, ports: [{name: http, port: 80}]}
"#;
    let mut mesh = Mesh::default();
    mesh.apply_yaml(manifests).unwrap();
    let snapshot = mesh.snapshot();
    let cluster = snapshot.cluster();
    let waypoint = |name: &str| cluster.waypoint(&ResourceId::new(Kind::Gateway, "payments", name));
    let sandwich = waypoint("sandwich").expect("a Gateway of a class with a binding is a waypoint");
    assert_eq!(sandwich.binding, Some(InboundBinding { proxy_protocol: true, port: Some(15088) }));
    assert_eq!(
        waypoint("annotated").map(|w| w.binding),
        Some(Some(InboundBinding { proxy_protocol: false, port: None }))
    );
    assert!(waypoint("ingress").is_none(), "no binding, not Istio's class: not a waypoint");
    assert!(waypoint("garbled").is_none(), "an invalid binding is ignored, as istiod ignores it");
    assert_eq!(waypoint("istio").map(|w| w.binding), Some(None));

    // The bound listener admits every namespace: the shop's Service may use the payments waypoint.
    let cart = cluster.service_in("shop", "cart", Default::default()).and_then(|s| cluster.service(s)).unwrap();
    assert_eq!(cart.waypoint.waypoint().map(|w| w.qualified().to_string()), Some("payments/sandwich".to_owned()));

    // The sandwich waypoint's Pod is an ambient workload; Istio's waypoint Pod is not.
    let enrolled = |ip: &str| {
        let id = cluster.workload_by_ip(ip.parse().unwrap()).unwrap();
        cluster.workload(id).unwrap().enrolled
    };
    assert!(enrolled("10.0.3.1"));
    assert!(!enrolled("10.0.3.2"));

    for (value, parsed) in [
        ("PROXY/15088", Some(InboundBinding { proxy_protocol: true, port: Some(15088) })),
        ("PROXY", Some(InboundBinding { proxy_protocol: true, port: None })),
        ("NONE/9000", Some(InboundBinding { proxy_protocol: false, port: Some(9000) })),
        ("HBONE", None),
        ("PROXY/1/2", None),
        ("PROXY/70000", None),
        ("", None),
    ] {
        assert_eq!(InboundBinding::parse(value), parsed, "{value:?}");
    }
}
