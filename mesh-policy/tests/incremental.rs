//! A snapshot made from changes (one source replaced among many, a resource applied or removed) takes over what
//! did not change from the previous one; it must decide exactly as a snapshot built from scratch.

use std::collections::BTreeMap;

use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::proxy::Connection;
use mesh_policy::{Kind, Mesh, ResourceId, Snapshot, Source};

type R = Result<(), Box<dyn std::error::Error>>;

const PEERS: [&str; 3] =
    ["cluster.local/ns/a/sa/client", "cluster.local/ns/b/sa/client", "cluster.local/ns/quarantine/sa/x"];

fn pod(ns: &str, name: &str, app: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\n\
         spec: {{serviceAccountName: {app}, nodeName: node-a}}\nstatus: {{phase: Running, podIP: {ip}}}\n"
    )
}

fn policy(ns: &str, name: &str, action: &str, app: Option<&str>, from_ns: &str) -> String {
    let selector = app.map(|a| format!("  selector: {{matchLabels: {{app: {a}}}}}\n")).unwrap_or_default();
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n{selector}  action: {action}\n  rules: [{{from: [{{source: {{namespaces: [{from_ns}]}}}}]}}]\n"
    )
}

fn namespace(ns: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio.io/dataplane-mode: ambient}}}}\n")
}

/// A Pod address, a peer, whether it may connect.
type Decided = (String, &'static str, bool);

/// Every (Pod address, peer) decision on port 8080, in order.
fn decisions(s: &Snapshot, ips: &[&str]) -> Result<Vec<Decided>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for ip in ips {
        let Some(id) = s.cluster().workload_by_ip(ip.parse()?) else {
            out.push((ip.to_string(), "-", false));
            continue;
        };
        let target = s.workload_target(id, 8080).ok_or("no target")?;
        for peer in PEERS {
            let identity = IstioIdentity::parse_principal(peer)?;
            let allowed = s.authorize_connection(&Connection::new(target).with_peer(&identity)).allowed;
            out.push((ip.to_string(), peer, allowed));
        }
    }
    Ok(out)
}

#[test]
fn snapshots_made_from_changes_decide_as_snapshots_built_from_scratch() -> R {
    let ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1", "10.0.1.2", "10.0.0.9"];
    let mut docs: BTreeMap<String, String> = BTreeMap::new();
    for ns in ["a", "b", "quarantine"] {
        docs.insert(format!("ns-{ns}"), namespace(ns));
    }
    docs.insert("p1".into(), pod("a", "p1", "red", "10.0.0.1"));
    docs.insert("p2".into(), pod("a", "p2", "blue", "10.0.0.2"));
    docs.insert("p3".into(), pod("a", "p3", "red", "10.0.0.3"));
    docs.insert("q1".into(), pod("b", "q1", "red", "10.0.1.1"));
    docs.insert("q2".into(), pod("b", "q2", "blue", "10.0.1.2"));
    docs.insert("allow-red".into(), policy("a", "allow-red", "ALLOW", Some("red"), "a"));
    docs.insert("deny-q".into(), policy("istio-system", "deny-q", "DENY", None, "quarantine"));

    // One source per document (each change recompiles only its own), one mesh changed by apply and remove.
    let mut by_source = Mesh::default();
    let mut by_change = Mesh::default();
    let all: String = docs.values().map(|d| format!("{d}---\n")).collect();
    by_change.apply_yaml(&all)?;
    type Step = (&'static str, Option<&'static str>, Option<String>, Option<ResourceId>);
    let steps: Vec<Step> = vec![
        ("nothing changed", None, None, None),
        ("a Pod added", Some("p9"), Some(pod("a", "p9", "red", "10.0.0.9")), None),
        ("a Pod's labels changed", Some("p1"), Some(pod("a", "p1", "blue", "10.0.0.1")), None),
        ("a policy added", Some("allow-blue"), Some(policy("a", "allow-blue", "ALLOW", Some("blue"), "b")), None),
        ("a policy changed", Some("allow-red"), Some(policy("a", "allow-red", "ALLOW", Some("red"), "b")), None),
        ("a policy of another namespace added", Some("deny-b"), Some(policy("b", "deny-b", "DENY", None, "a")), None),
        (
            "a root policy added",
            Some("deny-a"),
            Some(policy("istio-system", "deny-a", "DENY", Some("blue"), "a")),
            None,
        ),
        (
            "a root policy removed",
            Some("deny-q"),
            None,
            Some(ResourceId::new(Kind::AuthorizationPolicy, "istio-system", "deny-q")),
        ),
        ("a Pod removed", Some("p3"), None, Some(ResourceId::new(Kind::Pod, "a", "p3"))),
        ("a namespace leaves the mesh", Some("ns-b"), Some(namespace("b").replace("ambient", "none")), None),
    ];
    for (step, name, text, removed) in steps {
        if let Some(name) = name {
            match &text {
                Some(text) => {
                    docs.insert(name.to_owned(), text.clone());
                    by_change.apply_yaml(text)?;
                }
                None => {
                    docs.remove(name);
                    assert!(by_change.remove(removed.as_ref().ok_or("no id")?), "{step}");
                }
            }
        }
        let sources: Vec<Source<'_>> = docs.iter().map(|(name, text)| Source { name, text }).collect();
        by_source.replace_all(&sources)?;
        let mut fresh = Mesh::default();
        let whole: String = docs.values().map(|d| format!("{d}---\n")).collect();
        fresh.replace_all(&[Source { name: "all", text: &whole }])?;
        let expected = decisions(&fresh.snapshot(), &ips)?;
        assert_eq!(decisions(&by_source.snapshot(), &ips)?, expected, "{step}: one source per document");
        assert_eq!(decisions(&by_change.snapshot(), &ips)?, expected, "{step}: applied and removed");
    }
    Ok(())
}

#[test]
fn istiods_form_changes_decide_as_when_built_from_scratch() -> R {
    let workload = |name: &str, ns: &str, ip: &str, listed: &[&str]| {
        serde_json::json!({"workloads": [{"uid": format!("Kubernetes//Pod/{ns}/{name}"), "name": name, "namespace": ns,
            "workloadIps": [ip], "protocol": "HBONE", "serviceAccount": name, "node": "node-a",
            "authorizationPolicies": listed}]})
        .to_string()
    };
    let authorization = |name: &str, ns: &str, scope: &str, action: &str, from_ns: &str| {
        serde_json::json!({"policies": [{"name": name, "namespace": ns, "scope": scope, "action": action,
            "rules": [[[{"namespaces": [{"Exact": from_ns}]}]]]}]})
        .to_string()
    };
    let ips = ["10.0.0.1", "10.0.0.2", "10.0.1.1"];
    let mut docs: BTreeMap<String, String> = BTreeMap::new();
    docs.insert("w1".into(), workload("w1", "a", "10.0.0.1", &["a/p1"]));
    docs.insert("w2".into(), workload("w2", "a", "10.0.0.2", &[]));
    docs.insert("w3".into(), workload("w3", "b", "10.0.1.1", &[]));
    docs.insert("p1".into(), authorization("p1", "a", "WorkloadSelector", "Allow", "a"));
    let mut by_source = Mesh::default();
    let steps: Vec<(&str, &str, Option<String>)> = vec![
        ("the state as sent", "", None),
        ("a listed policy changed", "p1", Some(authorization("p1", "a", "WorkloadSelector", "Allow", "b"))),
        ("a global policy added", "g", Some(authorization("g", "b", "Global", "Deny", "quarantine"))),
        ("a namespace policy added", "n", Some(authorization("n", "b", "Namespace", "Allow", "a"))),
        ("a listed policy removed", "p1", None),
    ];
    for (step, name, text) in steps {
        if !name.is_empty() {
            match text {
                Some(text) => docs.insert(name.to_owned(), text),
                None => docs.remove(name),
            };
        }
        let sources: Vec<Source<'_>> = docs.iter().map(|(name, text)| Source { name, text }).collect();
        by_source.replace_all(&sources)?;
        let mut fresh = Mesh::default();
        fresh.replace_all(&sources)?;
        assert_eq!(decisions(&by_source.snapshot(), &ips)?, decisions(&fresh.snapshot(), &ips)?, "{step}");
    }
    Ok(())
}
