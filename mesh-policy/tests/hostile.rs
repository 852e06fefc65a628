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
    let analyzed: Vec<String> = mesh.analyze().iter().map(ToString::to_string).collect();
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
    let message = apply_err(&mut Mesh::default(), &yaml);
    assert!(message.contains("bad IP address"), "{}", &message[..200]);
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
    let mut mesh = Mesh::new(MeshConfig { trust_domain_aliases: vec!["old.example".into()], ..MeshConfig::default() });
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
