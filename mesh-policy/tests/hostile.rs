//! Hostile input: the regression corpus under `tests/hostile/` (scenario files, run like the conformance
//! corpus), and inputs too large or too generated to keep as files. Each must be an error naming what is wrong
//! or the decision the policy's author intended, never a crash, a stall or a wider allow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::Path;

use mesh_policy::scenario::Scenario;
use mesh_policy::{CheckRequest, Mesh, MeshConfig};

#[test]
fn hostile_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let (mut total, mut failures) = (0, Vec::new());
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let scenario = Scenario::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for r in scenario.run().unwrap_or_else(|e| panic!("{}: manifests do not apply: {e}", path.display())) {
            total += 1;
            if !r.failures.is_empty() {
                failures.push(format!("{} / {}:\n    {}", path.display(), r.name, r.failures.join("\n    ")));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert!(total >= 20, "the corpus holds only {total} cases");
}

/// A mesh that reads manifests up to 64 MiB.
fn big_mesh() -> Mesh {
    Mesh::new(MeshConfig { max_manifest_bytes: 64 << 20, ..MeshConfig::default() })
}

/// Every file under `tests/hostile/refused/` must be refused with the error its first line names
/// (`# error: ...`).
#[test]
fn refused_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/refused");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    assert!(entries.len() >= 5);
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text.lines().next().and_then(|l| l.strip_prefix("# error: ")).unwrap();
        match Mesh::default().apply_yaml(&text) {
            Ok(r) => panic!("{}: applied {:?}", path.display(), r.applied),
            Err(e) => assert!(e.to_string().contains(expected), "{}: {e}", path.display()),
        }
    }
}

fn request(json: serde_json::Value) -> CheckRequest {
    serde_json::from_value(json).unwrap()
}

fn apply_err(mesh: &mut Mesh, yaml: &str) -> String {
    match mesh.apply_yaml(yaml) {
        Ok(r) => panic!("expected an error, applied {:?}", r.applied),
        Err(e) => e.to_string(),
    }
}

const ALIAS_POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x-only, namespace: a}
spec:
  targetRefs: [{kind: Service, group: "", name: x}]
  rules:
  - from: [{source: {principals: ["cluster.local/ns/a/sa/x"]}}]
"#;

#[test]
fn trust_domains_are_spiffe_trust_domains() {
    for (config, field) in [
        (MeshConfig { trust_domain_aliases: vec!["*".into()], ..MeshConfig::default() }, "trust_domain_aliases[0]"),
        (MeshConfig { trust_domain: String::new(), ..MeshConfig::default() }, "trust_domain"),
        (MeshConfig { trust_domain: "Cluster.Local".into(), ..MeshConfig::default() }, "trust_domain"),
        (
            MeshConfig {
                trust_domain_aliases: vec!["old.example".into(), "*.example".into()],
                ..MeshConfig::default()
            },
            "trust_domain_aliases[1]",
        ),
    ] {
        let errors = config.validate().unwrap_err();
        assert_eq!(errors[0].field, field, "{errors:?}");
        let message = apply_err(&mut Mesh::new(config), ALIAS_POLICY);
        assert!(message.starts_with(&format!("mesh config: {field}: ")), "{message}");
    }
    let good = MeshConfig { trust_domain_aliases: vec!["old.example".into()], ..MeshConfig::default() };
    assert!(good.validate().is_ok());
}

#[test]
fn an_alias_is_only_the_domains_it_names() {
    let config = MeshConfig { trust_domain_aliases: vec!["old.example".into()], ..MeshConfig::default() };
    let mut mesh = Mesh::new(config);
    mesh.apply_yaml(ALIAS_POLICY).unwrap();
    let check = |principal: &str| {
        let req = request(serde_json::json!({
            "destination": {"namespace": "a", "service": "x"},
            "source": {"principal": principal},
            "http": {"method": "GET", "path": "/"},
        }));
        mesh.check(&req).unwrap().allowed
    };
    assert!(check("cluster.local/ns/a/sa/x"));
    assert!(check("old.example/ns/a/sa/x"));
    assert!(!check("evil.example/ns/a/sa/x"));
    // The reason names the principal as the peer presented it.
    let reason = |principal: &str| {
        let req = request(serde_json::json!({
            "destination": {"namespace": "a", "service": "x"},
            "source": {"principal": principal},
            "http": {"method": "GET", "path": "/"},
        }));
        mesh.check(&req).unwrap().reason.to_string()
    };
    assert_eq!(
        reason("old.example/ns/a/sa/x"),
        "allowed by a/x-only rule 0: source principal is old.example/ns/a/sa/x (written cluster.local/ns/a/sa/x; \
         its trust domain is an alias of the mesh's)"
    );
    assert_eq!(
        reason("cluster.local/ns/a/sa/x"),
        "allowed by a/x-only rule 0: source principal is cluster.local/ns/a/sa/x"
    );
}

#[test]
fn warnings_for_values_that_are_probably_wrong() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  rules:
  - from: [{source: {principals: ["cluster.local/ns/*/sa/web", "*/sa/ok", "cluster.local/ns/shop/*"]}}]
    to: [{operation: {methods: ["get", "POST"], paths: ["/api/*/items", "/ok/*"], hosts: ["api.*.com", "*.ok.com"]}}]
    when: [{key: source.principal, values: [" cluster.local/ns/shop/sa/web"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: z, namespace: shop}
spec:
  rules: [{from: [{source: {namespaces: ["sh*p"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: z, namespace: shop}
spec:
  rules: [{from: [{source: {namespaces: ["shop"]}}]}]
"#;
    let mut mesh = Mesh::default();
    let report = mesh.apply_yaml(yaml).unwrap();
    let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    let expect = [
        "AuthorizationPolicy shop/p: spec.rules[0].from[0].source.principals[0]: \"cluster.local/ns/*/sa/web\": a `*`",
        "spec.rules[0].to[0].operation.methods[0]: \"get\": methods are matched case-sensitively",
        "spec.rules[0].to[0].operation.paths[0]: \"/api/*/items\": a `*`",
        "spec.rules[0].to[0].operation.hosts[0]: \"api.*.com\": a `*`",
        "spec.rules[0].when[0].values[0]: \" cluster.local/ns/shop/sa/web\" has surrounding whitespace",
        "AuthorizationPolicy shop/z: spec.rules[0].from[0].source.namespaces[0]: \"sh*p\": a `*`",
        "AuthorizationPolicy shop/z: metadata.name: defined in document 2 and again in document 3",
    ];
    for e in expect {
        assert!(warnings.iter().any(|w| w.contains(e)), "missing {e:?} in {warnings:#?}");
    }
    assert_eq!(warnings.len(), expect.len(), "{warnings:#?}");
    // Findings read as the apply report's warnings: `kind namespace/name: field: message`.
    let analyzed: Vec<String> = mesh
        .analyze()
        .iter()
        .map(|f| {
            let r = &f.resources[0];
            format!("{}: {}: {}", r.resource, r.field.as_deref().unwrap_or(""), f.message)
        })
        .collect();
    // The first `shop/z` was replaced by the second, and its warnings with it.
    for e in expect.iter().filter(|e| !e.contains("sh*p")) {
        assert!(analyzed.iter().any(|w| w.contains(e)), "analyze misses {e:?} in {analyzed:#?}");
    }
}

#[test]
fn error_messages_are_bounded() {
    // A 10 MB value quoted in an error, and many invalid documents (a few thousand show the bound as well as
    // the issue's 100 000, in a fraction of the time).
    let huge = "x".repeat(10 << 20);
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: a}}\n\
         spec:\n  rules: [{{from: [{{source: {{ipBlocks: [\"{huge}\"]}}}}]}}]\n"
    );
    let message = apply_err(&mut big_mesh(), &yaml);
    assert!(message.contains("bad IP address"), "{message:.200}");
    assert!(message.len() < 4096, "message of {} bytes", message.len());

    let mut many = String::new();
    for i in 0..3_000 {
        write!(many, "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}}}\nspec: {{rules: [{{when: []}}]}}\n").unwrap();
    }
    let err = Mesh::default().apply_yaml(&many).unwrap_err();
    assert_eq!(err.0.len(), 3_000);
    let message = err.to_string();
    assert!(message.ends_with("... and 2980 more errors"), "{}", &message[message.len() - 200..]);
    assert!(message.len() < 20_000, "message of {} bytes", message.len());
}

#[test]
fn huge_lists_compile() {
    // Quadratic de-duplication made these take seconds to minutes; they must stay linear.
    let mut principals = String::new();
    for i in 0..100_000 {
        write!(principals, "\"cluster.local/ns/n{}/sa/s{i}\",", i % 100).unwrap();
    }
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: a}}\n\
         spec:\n  targetRefs: [{{kind: Service, group: \"\", name: x}}]\n  rules: [{{from: [{{source: {{principals: [{principals}]}}}}]}}]\n"
    );
    let mut mesh = Mesh::new(MeshConfig {
        trust_domain_aliases: vec!["old.example".into()],
        max_manifest_bytes: 64 << 20,
        ..MeshConfig::default()
    });
    mesh.apply_yaml(&yaml).unwrap();
    let req = request(serde_json::json!({
        "destination": {"namespace": "a", "service": "x"},
        "source": {"principal": "old.example/ns/n7/sa/s99907"},
        "http": {"method": "GET", "path": "/"},
    }));
    assert!(mesh.check(&req).unwrap().allowed);

    let mut refs = String::new();
    for i in 0..40_000 {
        write!(refs, "{{kind: Service, group: \"\", name: s{i}}},").unwrap();
    }
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: wide, namespace: a}}\n\
         spec:\n  targetRefs: [{refs}]\n  action: DENY\n  rules: [{{}}]\n"
    );
    mesh.apply_yaml(&yaml).unwrap();
    mesh.apply_yaml(ALIAS_POLICY).unwrap();
    let req = request(serde_json::json!({
        "destination": {"namespace": "a", "service": "s39999"},
        "http": {"method": "GET", "path": "/"},
    }));
    assert_eq!(mesh.check(&req).unwrap().policy.as_deref(), Some("a/wide"));
}

#[test]
fn manifests_over_the_size_limit_are_refused() {
    let padding = format!("# {}\n", "x".repeat(3 << 20));
    let message = apply_err(&mut Mesh::default(), &format!("{padding}{ALIAS_POLICY}"));
    let expected =
        format!("manifest of {} bytes exceeds the limit of 3145728 bytes", padding.len() + ALIAS_POLICY.len());
    assert!(message.starts_with(&expected), "{message}");
    let small = Mesh::new(MeshConfig { max_manifest_bytes: 100, ..MeshConfig::default() });
    assert!(apply_err(&mut { small }, ALIAS_POLICY).contains("exceeds the limit of 100 bytes"));
}

#[test]
fn aliases_cannot_expand_past_the_input() {
    // 1 MB of aliases to a 1 MiB string.
    let mut bomb = format!("a: &a {}\nb: [", "x".repeat(1 << 20));
    bomb.push_str(&"*a,".repeat(8000));
    bomb.push_str("]\n");
    let message = apply_err(&mut Mesh::default(), &bomb);
    assert!(message.starts_with("document 1: invalid YAML: "), "{message:.300}");
    assert!(message.contains("budget breached"), "{message:.300}");
    // 30 KB of aliases to a list of 6000 items.
    let mut bomb = String::from("a: &a [");
    for i in 0..6000 {
        write!(bomb, "{i},").unwrap();
    }
    bomb.push_str("]\nb: [");
    bomb.push_str(&"*a,".repeat(3000));
    bomb.push_str("]\n");
    let message = apply_err(&mut Mesh::default(), &bomb);
    assert!(message.starts_with("document 1: invalid YAML: "), "{message:.300}");
    assert!(message.contains("alias replay limit exceeded") || message.contains("budget breached"), "{message:.300}");
    // Aliases that stay small still load.
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: a}
spec:
  rules:
  - from: &from [{source: {namespaces: [a]}}]
  - from: *from
    to: [{operation: {ports: ["80"]}}]
"#;
    assert_eq!(Mesh::default().apply_yaml(yaml).unwrap().applied.len(), 1);
}

#[test]
fn nesting_up_to_the_limit_loads_on_a_small_stack() {
    // 31 levels under the document: the deepest accepted, read on a thread with a 1 MiB stack.
    let mut yaml = String::from("apiVersion: example.com/v1\nkind: Deep\nspec:\n");
    for i in 0..30 {
        writeln!(yaml, "{}k{i}:", "  ".repeat(i + 1)).unwrap();
    }
    writeln!(yaml, "{}v", "  ".repeat(31)).unwrap();
    let report = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || Mesh::default().apply_yaml(&yaml).map(|r| r.skipped.len()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(report.unwrap(), 1);
}

#[test]
fn deep_nesting_is_refused_early() {
    for deep in ["{a: ".repeat(40_000), "[".repeat(1_000_000), "a:\n".to_owned() + &"- ".repeat(5_000) + "x\n"] {
        let message = apply_err(&mut Mesh::default(), &deep);
        assert!(message.starts_with("document 1: invalid YAML: "), "{message:.300}");
        assert!(message.contains("limit") || message.contains("budget"), "{message:.300}");
    }
}

#[test]
fn yaml_errors_name_the_document_and_line() {
    let yaml = format!("{ALIAS_POLICY}---\n# a comment\napiVersion: v1\nkind: [\n");
    let message = apply_err(&mut Mesh::default(), &yaml);
    assert!(message.starts_with("document 2: invalid YAML: line 12 column 7: unclosed bracket"), "{message}");
    let dup = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, name: q}\n";
    let message = apply_err(&mut Mesh::default(), dup);
    assert!(message.contains("duplicate mapping key"), "{message}");
}

#[test]
fn byte_order_mark_lists_and_kubectl_output_load() {
    let mut mesh = Mesh::default();
    let report = mesh.apply_yaml(&format!("\u{feff}{ALIAS_POLICY}")).unwrap();
    assert_eq!(report.applied.len(), 1);
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy"}
    creationTimestamp: "2026-01-02T03:04:05Z"
    generation: 1
    managedFields:
    - apiVersion: security.istio.io/v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata: {f:annotations: {.: {}, f:kubectl.kubernetes.io/last-applied-configuration: {}}}
        f:spec: {.: {}, f:rules: {}}
      manager: kubectl-client-side-apply
      operation: Update
      time: "2026-01-02T03:04:05Z"
    name: from-a
    namespace: a
    resourceVersion: "12345"
    uid: 0b1c2d3e-0000-4000-8000-000000000000
  spec:
    rules:
    - from:
      - source: {namespaces: [a]}
  status: {}
- apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata: {name: strict, namespace: a}
  spec: {mtls: {mode: STRICT}}
metadata:
  resourceVersion: ""
"#;
    let report = mesh.apply_yaml(list).unwrap();
    let applied: Vec<String> = report.applied.iter().map(ToString::to_string).collect();
    assert_eq!(applied, ["AuthorizationPolicy a/from-a", "PeerAuthentication a/strict"]);
}

mod generated {
    //! Generated manifests that mix valid fields with the hostile values above, and generated requests.

    use mesh_policy::{CheckRequest, Mesh};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Values for a kind of field: mostly valid (some suspicious, which warns), sometimes invalid.
    fn values(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        let one = prop_oneof![
            40 => prop::sample::select(pool).prop_map(str::to_owned),
            1 => prop::sample::select(vec!["010.0.0.0/8", "+8080", ""]).prop_map(str::to_owned),
            1 => "[ -~]{0,12}",
        ];
        prop::collection::vec(one, 1..3)
    }

    const PRINCIPALS: &[&str] =
        &["*", "cluster.local/ns/a/sa/x", "cluster.local/ns/*/sa/x", "*/sa/x", " cluster.local/ns/a/sa/x"];
    const NAMESPACES: &[&str] = &["a", "*", "a*", "sh*p"];
    const IPS: &[&str] =
        &["10.0.0.0/8", "::ffff:10.0.0.0/104", "::/0", "10.0.0.1", "::ffff:11.0.0.0/104", "11.0.0.0/8"];
    const PORTS: &[&str] = &["8080", "08080", "80"];
    const METHODS: &[&str] = &["GET", "get", " GET", "POST"];
    const PATHS: &[&str] = &["/a/*/b", "/a/*", "/a/x/b", "*"];
    const HOSTS: &[&str] = &["api.*.com", "*.com", "api", "*"];
    const HEADERS: &[&str] = &["1", "0,1", "a,b", "*", " 1"];

    fn source() -> impl Strategy<Value = Value> {
        prop_oneof![
            (prop::sample::select(vec!["principals", "notPrincipals"]), values(PRINCIPALS))
                .prop_map(|(f, v)| json!({ f: v })),
            (prop::sample::select(vec!["namespaces", "notNamespaces"]), values(NAMESPACES))
                .prop_map(|(f, v)| json!({ f: v })),
            (prop::sample::select(vec!["ipBlocks", "notIpBlocks", "remoteIpBlocks"]), values(IPS))
                .prop_map(|(f, v)| json!({ f: v })),
        ]
    }

    fn operation() -> impl Strategy<Value = Value> {
        prop_oneof![
            (prop::sample::select(vec!["ports", "notPorts"]), values(PORTS)).prop_map(|(f, v)| json!({ f: v })),
            (prop::sample::select(vec!["methods", "notMethods"]), values(METHODS)).prop_map(|(f, v)| json!({ f: v })),
            (prop::sample::select(vec!["paths", "notPaths"]), values(PATHS)).prop_map(|(f, v)| json!({ f: v })),
            values(HOSTS).prop_map(|v| json!({ "hosts": v })),
        ]
    }

    fn condition() -> impl Strategy<Value = Value> {
        prop_oneof![
            (prop::sample::select(vec!["source.ip", "destination.ip", "remote.ip"]), values(IPS)),
            (prop::sample::select(vec!["request.headers[x-evil]", "request.headers[X-Evil]"]), values(HEADERS)),
            (Just("source.principal"), values(PRINCIPALS)),
            (Just("source.namespace"), values(NAMESPACES)),
            (Just("destination.port"), values(PORTS)),
        ]
        .prop_map(|(k, v)| json!({"key": k, "values": v}))
    }

    fn rule() -> impl Strategy<Value = Value> {
        (
            prop::option::of(prop::collection::vec(source(), 1..3)),
            prop::option::of(prop::collection::vec(operation(), 1..3)),
            prop::option::of(prop::collection::vec(condition(), 1..3)),
        )
            .prop_map(|(from, to, when)| {
                let mut r = serde_json::Map::new();
                if let Some(f) = from {
                    r.insert("from".into(), f.into_iter().map(|s| json!({"source": s})).collect());
                }
                if let Some(t) = to {
                    r.insert("to".into(), t.into_iter().map(|o| json!({"operation": o})).collect());
                }
                if let Some(w) = when {
                    r.insert("when".into(), Value::Array(w));
                }
                Value::Object(r)
            })
    }

    fn document(i: usize) -> impl Strategy<Value = Value> {
        let kind = prop_oneof![
            40 => Just(("security.istio.io/v1", "AuthorizationPolicy")),
            1 => Just(("security.istio.io/v1", "AuthorisationPolicy")),
            1 => Just(("securty.istio.io/v1", "AuthorizationPolicy")),
            1 => Just(("apps/v1", "Deployment")),
        ];
        let attach = prop_oneof![
            Just(json!({})),
            Just(json!({"selector": {"matchLabels": {"app": "api"}}})),
            Just(json!({"targetRefs": [{"kind": "Service", "group": "", "name": "api"}]})),
        ];
        let action = prop::sample::select(vec!["ALLOW", "DENY", "AUDIT"]);
        (kind, attach, action, prop::collection::vec(rule(), 1..3)).prop_map(move |((api, kind), attach, action, rules)| {
            let mut spec = attach.as_object().cloned().unwrap_or_default();
            spec.insert("action".into(), json!(action));
            spec.insert("rules".into(), Value::Array(rules));
            json!({"apiVersion": api, "kind": kind, "metadata": {"name": format!("p{i}"), "namespace": "shop"}, "spec": spec})
        })
    }

    fn manifest() -> impl Strategy<Value = Vec<Value>> {
        prop::collection::vec(0..4usize, 1..4)
            .prop_flat_map(|ids| ids.into_iter().enumerate().map(|(i, _)| document(i)).collect::<Vec<_>>())
    }

    fn request() -> impl Strategy<Value = CheckRequest> {
        let ip = prop::sample::select(vec!["10.0.0.1", "::ffff:10.0.0.1", "11.0.0.1", "::1"]);
        let principal = prop::option::of(prop::sample::select(vec![
            "cluster.local/ns/a/sa/x",
            "cluster.local/ns/*/sa/x",
            "cluster.local/ns/shop/sa/x",
            "evil.example/ns/a/sa/x",
        ]));
        let headers = prop::collection::vec(
            (
                prop::sample::select(vec!["x-evil", "X-Evil", "host"]),
                prop::sample::select(HEADERS).prop_map(str::to_owned),
            ),
            0..3,
        );
        (ip, principal, headers, any::<bool>(), prop::sample::select(vec!["GET", "get", "POST"])).prop_map(
            |(ip, principal, headers, http, method)| {
                let mut req = json!({
                    "destination": {"namespace": "shop", "service": "api", "workload_labels": {"app": "api"},
                                    "port": 8080, "ip": ip},
                    "source": {"ip": ip, "remote_ip": ip},
                });
                if let Some(p) = principal {
                    req["source"]["principal"] = json!(p);
                }
                let mut h: CheckRequest = serde_json::from_value(req).unwrap();
                if http {
                    h.http = Some(mesh_policy::request::HttpRequest {
                        method: method.into(),
                        path: "/a/x/b".into(),
                        host: None,
                        headers: headers.into_iter().collect(),
                    });
                }
                h
            },
        )
    }

    fn yaml(docs: &[Value]) -> String {
        docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect::<Vec<_>>().join("\n---\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any generated manifest applies or is refused with an error; any request is then decided or refused
        /// with an error, never a panic. A DENY-all added on top denies every request it covers.
        #[test]
        fn generated_input_never_panics_and_deny_never_widens(docs in manifest(), req in request()) {
            let mut mesh = Mesh::default();
            if mesh.apply_yaml(&yaml(&docs)).is_err() {
                // Refused as a whole: nothing applied, so there is nothing to decide with.
                prop_assert!(mesh.is_empty());
                return Ok(());
            }
            let before = mesh.check(&req).map(|d| d.allowed);
            let deny = json!({
                "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "zz-deny", "namespace": "shop"},
                "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}],
                         "targetRefs": [{"kind": "Service", "group": "", "name": "api"}]},
            });
            let deny_l4 = json!({
                "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "zz-deny-l4", "namespace": "shop"},
                "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}]},
            });
            mesh.apply_yaml(&yaml(&[deny, deny_l4])).unwrap();
            let after = mesh.check(&req).map(|d| d.allowed);
            if let (Ok(before), Ok(after)) = (&before, &after) {
                prop_assert!(*before || !*after, "a DENY policy turned a denial into an allow");
            }
            let from_ten = req.source.ip.is_some_and(|ip| matches!(ip.to_canonical(), std::net::IpAddr::V4(v4) if v4.octets()[0] == 10));
            if from_ten {
                prop_assert!(!after.unwrap_or(false), "a source in 10.0.0.0/8 passed a DENY on it");
            }
        }
    }
}
