//! istiod's form of the mesh (workloads, services, L4 authorizations) gives the decisions the same policies give
//! as Kubernetes objects, with ztunnel's semantics where the forms differ.

use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::proxy::Connection;
use mesh_policy::{Mesh, Snapshot};
use std::sync::Arc;

type R = Result<(), Box<dyn std::error::Error>>;

fn workload(ns: &str, name: &str, ip: &str, sa: &str, policies: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "uid": format!("Kubernetes//Pod/{ns}/{name}"), "name": name, "namespace": ns, "workloadIps": [ip],
        "protocol": "HBONE", "serviceAccount": sa, "trustDomain": "cluster.local", "node": "node-a",
        "authorizationPolicies": policies,
    })
}

fn load(
    workloads: Vec<serde_json::Value>,
    services: serde_json::Value,
    policies: serde_json::Value,
) -> Result<Arc<Snapshot>, Box<dyn std::error::Error>> {
    let dump = serde_json::json!({"workloads": workloads, "services": services, "policies": policies});
    let mut mesh = Mesh::default();
    mesh.apply_yaml(&dump.to_string())?;
    Ok(mesh.snapshot())
}

/// Whether `principal` (None: plaintext) may connect to `ip:port`.
fn allowed(s: &Snapshot, ip: &str, port: u16, principal: Option<&str>) -> Result<bool, Box<dyn std::error::Error>> {
    let id = s.cluster().workload_by_ip(ip.parse()?).ok_or("no workload")?;
    let target = s.workload_target(id, port).ok_or("no target")?;
    let peer = principal.map(IstioIdentity::parse_principal).transpose()?;
    let mut c = Connection::new(target).with_source_ip("10.9.9.9".parse()?);
    if let Some(p) = &peer {
        c = c.with_peer(p);
    }
    Ok(s.authorize_connection(&c).allowed)
}

const ACCOUNTS: &str = "cluster.local/ns/accounts/sa/accounts";
const WEB: &str = "cluster.local/ns/web/sa/web";

#[test]
fn the_same_policy_decides_alike_as_a_crd_and_as_istiods_authorization() -> R {
    // As written by a user.
    let crd = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ledger, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: ledger-0, namespace: ledger, labels: {app: ledger}}
spec: {serviceAccountName: ledger, nodeName: node-a}
status: {podIP: 10.0.0.7}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-accounts, namespace: ledger}
spec:
  selector: {matchLabels: {app: ledger}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/accounts/sa/accounts"]}}, {source: {namespaces: ["ops*"]}}]
    to: [{operation: {ports: ["8080"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-web, namespace: ledger}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: ["accounts", "ops-a"]}}]
"#;
    let mut mesh = Mesh::default();
    mesh.apply_yaml(crd)?;
    let from_crd = mesh.snapshot();
    // As istiod sends it to ztunnel (pilot/pkg/serviceregistry/ambient/authorization.go).
    let from_xds = load(
        vec![workload("ledger", "ledger-0", "10.0.0.7", "ledger", &["ledger/from-accounts"])],
        serde_json::json!([]),
        serde_json::json!([
            {"name": "from-accounts", "namespace": "ledger", "scope": "WorkloadSelector", "action": "Allow",
             "dryRun": false, "rules": [[
                [{"destinationPorts": [8080]}],
                [{"principals": [{"Exact": ACCOUNTS}]}, {"namespaces": [{"Prefix": "ops"}]}]
             ]]},
            {"name": "no-web", "namespace": "ledger", "scope": "Namespace", "action": "Deny", "dryRun": false,
             "rules": [[[{"notNamespaces": [{"Exact": "accounts"}, {"Exact": "ops-a"}]}]]]}
        ]),
    )?;
    let ops_a = "cluster.local/ns/ops-a/sa/x";
    let ops_b = "cluster.local/ns/ops-b/sa/x";
    for port in [8080, 9090] {
        for peer in [Some(ACCOUNTS), Some(WEB), Some(ops_a), Some(ops_b), None] {
            let crd = allowed(&from_crd, "10.0.0.7", port, peer)?;
            let xds = allowed(&from_xds, "10.0.0.7", port, peer)?;
            assert_eq!(crd, xds, "{peer:?} to port {port}");
        }
    }
    assert!(allowed(&from_xds, "10.0.0.7", 8080, Some(ACCOUNTS))?);
    assert!(allowed(&from_xds, "10.0.0.7", 8080, Some(ops_a))?);
    assert!(!allowed(&from_xds, "10.0.0.7", 8080, Some(ops_b))?, "denied by no-web");
    assert!(!allowed(&from_xds, "10.0.0.7", 9090, Some(ACCOUNTS))?, "port");
    Ok(())
}

#[test]
fn scopes_apply_as_ztunnel_applies_them() -> R {
    let s = load(
        vec![
            workload("a", "a-0", "10.0.0.1", "a", &["a/listed"]),
            workload("a", "a-1", "10.0.0.2", "a", &[]),
            workload("b", "b-0", "10.0.0.3", "b", &[]),
        ],
        serde_json::json!([]),
        serde_json::json!([
            {"name": "listed", "namespace": "a", "scope": "WorkloadSelector", "action": "Deny", "rules": [[]]},
            {"name": "ns", "namespace": "b", "scope": "Namespace", "action": "Deny",
             "rules": [[[{"principals": [{"Exact": WEB}]}]]]},
            {"name": "global", "namespace": "istio-system", "scope": "Global", "action": "Deny",
             "rules": [[[{"destinationPorts": [22]}]]]}
        ]),
    )?;
    assert!(!allowed(&s, "10.0.0.1", 80, Some(ACCOUNTS))?, "a-0 names the deny-all policy");
    assert!(allowed(&s, "10.0.0.2", 80, Some(ACCOUNTS))?, "a-1 does not");
    assert!(!allowed(&s, "10.0.0.3", 80, Some(WEB))?, "namespace b's policy");
    assert!(allowed(&s, "10.0.0.2", 80, Some(WEB))?, "not in namespace a");
    for ip in ["10.0.0.2", "10.0.0.3"] {
        assert!(!allowed(&s, ip, 22, Some(ACCOUNTS))?, "the global policy applies to {ip}");
    }
    Ok(())
}

#[test]
fn a_policy_a_workload_names_that_is_not_known_denies_until_it_arrives() -> R {
    let s = load(
        vec![workload("a", "a-0", "10.0.0.1", "a", &["a/in-flight"])],
        serde_json::json!([]),
        serde_json::json!([]),
    )?;
    let id = s.cluster().workload_by_ip("10.0.0.1".parse()?).ok_or("no workload")?;
    let target = s.workload_target(id, 80).ok_or("no target")?;
    let peer = IstioIdentity::parse_principal(ACCOUNTS)?;
    let d = s.authorize_connection(&Connection::new(target).with_peer(&peer));
    assert!(!d.allowed);
    let text = d.to_string();
    assert!(text.contains("a/in-flight") && text.contains("not received"), "{text}");
    Ok(())
}

#[test]
fn clauses_matches_and_empty_parts_follow_ztunnel() -> R {
    // Rule 0 has a clause whose only match is empty: it never matches. Rule 1 has an empty clause, which holds,
    // and a clause of two fields in one match (both required).
    let s = load(
        vec![workload("a", "a-0", "10.0.0.1", "a", &[])],
        serde_json::json!([]),
        serde_json::json!([{"name": "p", "namespace": "a", "scope": "Namespace", "action": "Allow", "rules": [
            [[{}]],
            [[], [{"namespaces": [{"Exact": "accounts"}], "destinationPorts": [80]}]]
        ]}]),
    )?;
    assert!(allowed(&s, "10.0.0.1", 80, Some(ACCOUNTS))?);
    assert!(!allowed(&s, "10.0.0.1", 81, Some(ACCOUNTS))?);
    assert!(!allowed(&s, "10.0.0.1", 80, Some(WEB))?);
    assert!(!allowed(&s, "10.0.0.1", 80, None)?);
    Ok(())
}

#[test]
fn what_would_widen_access_is_refused_naming_the_field() {
    let bad = serde_json::json!({"workloads": [], "policies": [
        {"name": "p", "namespace": "a", "scope": "Namespace", "action": "Deny",
         "rules": [[[{"namespaces": [{"Prefix": ""}], "destinationPorts": [0]}]]]}
    ]});
    let err = Mesh::default().apply_yaml(&bad.to_string()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("rules[0][0][0].namespaces[0]") && err.contains("destinationPorts"), "{err}");
    let unknown =
        serde_json::json!({"policies": [{"name": "p", "namespace": "a", "scope": "Everywhere", "action": "Deny"}]});
    let err = Mesh::default().apply_yaml(&unknown.to_string()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("policies[0].scope"), "{err}");
}

#[test]
fn services_take_their_endpoints_and_ports_from_workloads_and_their_waypoint_from_istiod() -> R {
    // As ztunnel's config dump writes the waypoint (one string), and as an object.
    services_and_waypoint(serde_json::json!("ledger/waypoint.ledger.svc.cluster.local"))?;
    services_and_waypoint(serde_json::json!({"namespace": "ledger", "hostname": "waypoint.ledger.svc.cluster.local"}))
}

#[test]
fn a_waypoint_destination_is_written_as_ztunnel_writes_it() -> R {
    use mesh_policy::xds::{GatewayAddress, GatewayDestination};
    for (text, expected) in [
        (
            "ledger/waypoint.ledger.svc.cluster.local",
            GatewayDestination::Hostname {
                namespace: "ledger".into(),
                hostname: "waypoint.ledger.svc.cluster.local".into(),
            },
        ),
        ("/10.0.0.9", GatewayDestination::Address("/10.0.0.9".into())),
        ("net1/10.0.0.9", GatewayDestination::Address("net1/10.0.0.9".into())),
    ] {
        let json = serde_json::json!({"destination": text, "hboneMtlsPort": 15008});
        let address: GatewayAddress = serde_json::from_value(json.clone())?;
        assert_eq!(address.destination, expected);
        assert_eq!(serde_json::to_value(&address)?, json);
    }
    Ok(())
}

fn services_and_waypoint(destination: serde_json::Value) -> R {
    let mut ledger = workload("ledger", "ledger-0", "10.0.0.7", "ledger", &[]);
    ledger["services"] =
        serde_json::json!({"ledger/ledger.ledger.svc.cluster.local": [{"servicePort": 80, "targetPort": 8080}]});
    let mut waypoint = workload("ledger", "waypoint-0", "10.0.0.8", "waypoint", &[]);
    waypoint["services"] =
        serde_json::json!({"ledger/waypoint.ledger.svc.cluster.local": [{"servicePort": 15008, "targetPort": 15008}]});
    let s = load(
        vec![ledger, waypoint],
        serde_json::json!([
            {"name": "ledger", "namespace": "ledger", "hostname": "ledger.ledger.svc.cluster.local",
             "vips": ["/10.96.0.10"], "ports": {"80": 0},
             "waypoint": {"destination": destination, "hboneMtlsPort": 15008}},
            {"name": "waypoint", "namespace": "ledger", "hostname": "waypoint.ledger.svc.cluster.local",
             "vips": ["/10.96.0.11"], "ports": {"15008": 15008}}
        ]),
        serde_json::json!([]),
    )?;
    let c = s.cluster();
    let sid = c.service_by_vip("10.96.0.10".parse()?).ok_or("no service")?;
    let svc = c.service(sid).ok_or("no service")?;
    assert_eq!(svc.id.to_string(), "Service ledger/ledger");
    let endpoint = c.workload(*svc.endpoints.first().ok_or("no endpoint")?).ok_or("no workload")?;
    assert_eq!(endpoint.id.to_string(), "Pod ledger/ledger-0");
    assert_eq!(svc.target_port(80, endpoint), Some(8080));
    let waypoint = svc.waypoint.waypoint().ok_or("no waypoint")?;
    assert_eq!(waypoint.to_string(), "Gateway ledger/waypoint");
    let w = c.waypoint(waypoint).ok_or("waypoint not in the model")?;
    assert_eq!(w.principal, "cluster.local/ns/ledger/sa/waypoint");
    assert_eq!(w.addresses, vec!["10.96.0.11".parse::<std::net::IpAddr>()?]);
    Ok(())
}
