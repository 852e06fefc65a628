//! Invariants of evaluation over generated policies and requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mesh_policy::{CheckRequest, Mesh};
use proptest::prelude::*;
use serde_json::{Value, json};

const NAMESPACES: [&str; 2] = ["shop", "bank"];
const PRINCIPALS: [&str; 5] =
    ["cluster.local/ns/shop/sa/web", "cluster.local/ns/bank/sa/teller", "*", "cluster.local/ns/shop/*", "*/sa/teller"];

fn source() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::subsequence(PRINCIPALS.to_vec(), 1..3).prop_map(|p| json!({"principals": p})),
        prop::sample::subsequence(PRINCIPALS.to_vec(), 1..3).prop_map(|p| json!({"notPrincipals": p})),
        prop::sample::subsequence(NAMESPACES.to_vec(), 1..2).prop_map(|n| json!({"namespaces": n})),
        Just(json!({"notRequestPrincipals": ["*"]})),
        Just(json!({"ipBlocks": ["10.0.0.0/8"]})),
    ]
}

fn operation() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::subsequence(vec!["80", "8080"], 1..2).prop_map(|p| json!({"ports": p})),
        prop::sample::subsequence(vec!["GET", "POST"], 1..2).prop_map(|m| json!({"methods": m})),
        prop::sample::subsequence(vec!["/api/*", "/admin", "/items/{*}"], 1..2).prop_map(|p| json!({"paths": p})),
        Just(json!({"notPorts": ["8080"]})),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    (prop::option::of(source()), prop::option::of(operation()), any::<bool>()).prop_map(|(s, o, when)| {
        let mut r = serde_json::Map::new();
        if let Some(s) = s {
            r.insert("from".into(), json!([{"source": s}]));
        }
        if let Some(o) = o {
            r.insert("to".into(), json!([{"operation": o}]));
        }
        if when {
            r.insert("when".into(), json!([{"key": "destination.port", "values": ["8080"]}]));
        }
        Value::Object(r)
    })
}

/// A policy as JSON (which is YAML), in namespace `ns`.
fn policy(ns: &'static str, name: String, deny: bool) -> impl Strategy<Value = Value> {
    let attach = prop_oneof![
        Just(json!({})),
        Just(json!({"selector": {"matchLabels": {"app": "api"}}})),
        Just(json!({"targetRefs": [{"kind": "Service", "group": "", "name": "api"}]})),
    ];
    (attach, prop::collection::vec(rule(), 1..3)).prop_map(move |(attach, rules)| {
        let mut spec = attach.as_object().cloned().unwrap_or_default();
        spec.insert("action".into(), json!(if deny { "DENY" } else { "ALLOW" }));
        spec.insert("rules".into(), Value::Array(rules));
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        })
    })
}

fn policies(ns: &'static str, prefix: &'static str) -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(any::<bool>(), 0..5).prop_flat_map(move |kinds| {
        kinds.into_iter().enumerate().map(|(i, deny)| policy(ns, format!("{prefix}-{i}"), deny)).collect::<Vec<_>>()
    })
}

fn request() -> impl Strategy<Value = CheckRequest> {
    (
        prop::option::of(prop::sample::select(vec![
            "cluster.local/ns/shop/sa/web",
            "cluster.local/ns/bank/sa/teller",
            "other.domain/ns/shop/sa/web",
        ])),
        prop::sample::select(vec![80u16, 8080]),
        prop::option::of((prop::sample::select(vec!["GET", "POST"]), prop::sample::select(vec!["/api/x", "/admin", "/items/7", "/items/7/8"]))),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(principal, port, http, selected, token)| {
            let mut req = json!({
                "destination": {"namespace": "shop", "workload_labels": if selected { json!({"app": "api"}) } else { json!({}) },
                                "service": "api", "waypoint": "shop-waypoint", "port": port, "ip": "10.1.2.3"},
                "source": {"ip": "10.9.9.9"},
            });
            if let Some(p) = principal {
                req["source"]["principal"] = json!(p);
            }
            if let Some((m, p)) = http {
                req["http"] = json!({"method": m, "path": p});
                if token {
                    req["jwt"] = json!({"principal": "https://idp/u", "claims": {"iss": "https://idp", "sub": "u"}});
                }
            }
            serde_json::from_value(req).unwrap()
        })
}

fn mesh(docs: &[Value]) -> Mesh {
    let yaml: Vec<String> = docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
    let mut mesh = Mesh::default();
    mesh.apply_yaml(&yaml.join("\n---\n")).unwrap();
    mesh
}

fn decide(mesh: &Mesh, req: &CheckRequest) -> (bool, String) {
    let d = mesh.check(req).unwrap();
    (d.allowed, serde_json::to_string(&d).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Adding a DENY policy never allows a request that was denied.
    #[test]
    fn adding_a_deny_never_allows_more(base in policies("shop", "p"), extra in policy("shop", "extra-deny".into(), true), req in request()) {
        let before = decide(&mesh(&base), &req).0;
        let mut with = base.clone();
        with.push(extra);
        let after = decide(&mesh(&with), &req).0;
        prop_assert!(before || !after, "a DENY policy turned a denial into an allow");
    }

    /// The order in which policies are applied never changes a decision, explanation included.
    #[test]
    fn policy_order_never_matters(ps in policies("shop", "p"), req in request()) {
        let mut reversed = ps.clone();
        reversed.reverse();
        prop_assert_eq!(decide(&mesh(&ps), &req), decide(&mesh(&reversed), &req));
    }

    /// A policy in a namespace other than the destination's (and not the root namespace) never matters.
    #[test]
    fn other_namespaces_never_matter(ps in policies("shop", "p"), others in policies("bank", "o"), req in request()) {
        let mut with = ps.clone();
        with.extend(others);
        prop_assert_eq!(decide(&mesh(&ps), &req), decide(&mesh(&with), &req));
    }

    /// Applying a policy a second time (kubectl apply of the same file) changes nothing.
    #[test]
    fn reapplying_is_idempotent(ps in policies("shop", "p"), req in request()) {
        let once = mesh(&ps);
        let mut twice = mesh(&ps);
        let yaml: Vec<String> = ps.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
        twice.apply_yaml(&yaml.join("\n---\n")).unwrap();
        prop_assert_eq!(decide(&once, &req), decide(&twice, &req));
    }

    /// A decision always names what decided it: a rule index only with a policy, and a non-empty reason.
    #[test]
    fn decisions_explain_themselves(ps in policies("shop", "p"), req in request()) {
        let d = mesh(&ps).check(&req).unwrap();
        prop_assert!(d.rule.is_none() || d.policy.is_some());
        prop_assert!(!d.reason.to_string().is_empty());
        prop_assert_eq!(d.status.is_none(), d.enforcement == mesh_policy::Enforcement::Ztunnel);
    }

    /// Arbitrary text never panics the manifest loader.
    #[test]
    fn loader_never_panics(text in ".{0,400}") {
        let _ = Mesh::default().apply_yaml(&text);
    }

    /// Arbitrary policy-shaped YAML never panics the compiler.
    #[test]
    fn compiler_never_panics(key in "[a-zA-Z.\\[\\]]{0,30}", value in "[ -~]{0,20}", field in prop::sample::select(vec!["principals", "ipBlocks", "namespaces", "serviceAccounts", "remoteIpBlocks"])) {
        let doc = json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"rules": [{"from": [{"source": {field: [value.clone()]}}],
                                "to": [{"operation": {"paths": [value.clone()], "ports": [value.clone()]}}],
                                "when": [{"key": key, "values": [value]}]}]}
        });
        let _ = Mesh::default().apply_yaml(&serde_json::to_string(&doc).unwrap());
    }
}
