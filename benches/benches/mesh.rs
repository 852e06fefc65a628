//! mesh-policy against meshes of 10, 1k and 10k AuthorizationPolicies.
//!
//! Groups:
//! - `compile`: `Mesh::apply_yaml` of the whole generated manifest into a fresh `Mesh` (parse, validate,
//!   compile, index).
//! - `check_ztunnel`: one L4 `Mesh::check` at the destination's ztunnel.
//! - `check_waypoint`: one L7 `Mesh::check` at the waypoint.
//! - `compile_large_lists`: `Mesh::apply_yaml` of one policy with 100 000 `principals`, and of one with 40 000
//!   `targetRefs` into a mesh that already holds the 1k manifest (de-duplication and indexing must stay linear).
//! - `hostile`: the worst inputs of the hostile-input corpus, each refused: aliases to a 1 MiB string, aliases to
//!   a 6000-item list, 40 000 nested flow maps, 1 M unclosed `[`, a 10 MB manifest over the size limit, and
//!   2 000 invalid documents (collecting the errors and displaying them).
//!
//! The manifest is generated once per size, outside every timed loop; see [`manifest`] for its shape. The
//! destination (`payments`, workload `app: ledger`, Service `ledger`) sees the same handful of policies at
//! every size, so the check groups measure how latency depends on the size of the mesh around it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench setup: fail loudly

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use mesh_policy::request::{Destination, HttpRequest, JwtAttributes, SourceAttributes};
use mesh_policy::{Action, CheckRequest, Mesh, MeshConfig};

/// Mesh sizes, in AuthorizationPolicies.
const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// AuthorizationPolicies per namespace.
const PER_NAMESPACE: usize = 100;
/// Services (and workloads `app: svc-NN`) per generated namespace.
const SERVICES: usize = 20;

const ACCOUNTS: &str = "cluster.local/ns/payments/sa/accounts";

/// The policies the benchmarked requests see, as in `examples/scenarios/payments.yaml` plus neighbours that
/// apply but do not decide. Ten AuthorizationPolicies (one in the root namespace) and one
/// RequestAuthentication.
///
/// At ztunnel, for `payments` / `app: ledger, version: v1` / port 8080 from `accounts`, the walk visits
/// `deny-quarantine` (DENY, no match), `allow-nothing` (ALLOW, no rules), `ledger-admin` (ALLOW, port 9090
/// only), `ledger-canary-deny` (selector does not match `version: v1`), `ledger-deny-untrusted` (DENY, no
/// match) and `ledger-l4`, which decides.
///
/// At the waypoint, for `POST /ledger/v1/debit?x=1` on Service `ledger` via `payments-waypoint`, the walk
/// visits `waypoint-deny-admin` (Gateway, DENY, no match), `ledger-require-jwt` (DENY, no match),
/// `ledger-audit-read` (ALLOW, no match) and `ledger-debit`, which decides.
const FIXED: &str = concat!(
    r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-quarantine, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["quarantine", "quarantine-*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: payments}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-admin, namespace: payments}
spec:
  selector:
    matchLabels: {app: ledger}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/ops/sa/admin", "cluster.local/ns/ops/sa/oncall"]
    to:
    - operation:
        ports: ["9090"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-canary-deny, namespace: payments}
spec:
  selector:
    matchLabels: {app: ledger, version: canary}
  action: DENY
  rules:
  - from:
    - source:
        notNamespaces: ["payments"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-deny-untrusted, namespace: payments}
spec:
  selector:
    matchLabels: {app: ledger}
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["sandbox", "sandbox-*"]
  - from:
    - source:
        ipBlocks: ["192.0.2.0/24"]
    to:
    - operation:
        ports: ["8080", "9090"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-l4, namespace: payments}
spec:
  selector:
    matchLabels: {app: ledger}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/payments/sa/accounts"]
    to:
    - operation:
        ports: ["8080"]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ledger-jwt, namespace: payments}
spec:
  targetRefs:
  - {kind: Service, group: "", name: ledger}
  jwtRules:
  - issuer: https://idp.example.com
    jwksUri: https://idp.example.com/.well-known/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint-deny-admin, namespace: payments}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: payments-waypoint}
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin/*", "/debug/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-audit-read, namespace: payments}
spec:
  targetRefs:
  - {kind: Service, group: "", name: ledger}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/audit/sa/auditor"]
    to:
    - operation:
        methods: ["GET", "HEAD"]
        paths: ["/ledger/v1/*"]
---
"#,
    include_str!("ledger.yaml")
);

/// AuthorizationPolicies in [`FIXED`].
const FIXED_POLICIES: usize = 10;

/// A manifest of exactly `n` AuthorizationPolicies (`n >= 10`): [`FIXED`], then generated ones, 100 per
/// namespace (`payments` is filled up first, then `team-001`, `team-002`, ...).
///
/// Generated policies cycle through five shapes, each attached to one of 20 workloads / Services
/// `svc-00` .. `svc-19` of its namespace (never `ledger`, so the benchmarked destination's applicable set does
/// not grow with `n`):
/// 0. ztunnel ALLOW, `selector`: principals (one exact, one `sa/*` prefix) or a namespace, and ports;
/// 1. ztunnel DENY, two-label `selector`: namespaces or an IP block, with `notPorts`;
/// 2. waypoint ALLOW, `targetRefs` Service: principals and requestPrincipals, methods and paths,
///    `request.auth.claims[scp]`;
/// 3. waypoint DENY, `targetRefs` Service: `notRequestPrincipals: ["*"]` on write methods, or admin paths;
/// 4. waypoint ALLOW, `targetRefs` two Services: namespaces, hosts, `request.auth.claims[groups]` and a
///    header condition.
///
/// Each generated namespace other than `payments` starts with its own `allow-nothing`.
fn manifest(n: usize) -> String {
    assert!(n >= FIXED_POLICIES, "a manifest holds at least the {FIXED_POLICIES} fixed policies");
    let mut out = String::with_capacity(n * 700);
    out.push_str(FIXED);
    // Policies already in each namespace: 9 of FIXED are in payments (one is in istio-system).
    let mut count = FIXED_POLICIES;
    let mut in_namespace = FIXED_POLICIES - 1;
    let mut ns_index = 0usize;
    let mut ns = String::from("payments");
    while count < n {
        if in_namespace == PER_NAMESPACE {
            ns_index += 1;
            in_namespace = 0;
            ns = format!("team-{ns_index:03}");
            write!(
                out,
                "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                 metadata: {{name: allow-nothing, namespace: {ns}}}\nspec: {{}}\n"
            )
            .unwrap();
            count += 1;
            in_namespace += 1;
            continue;
        }
        let j = in_namespace;
        let svc = format!("svc-{:02}", j % SERVICES);
        let peer_ns = format!("team-{:03}", (ns_index * 7 + j) % 97 + 1);
        let name = format!("{svc}-p{j:03}");
        out.push_str("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n");
        writeln!(out, "metadata: {{name: {name}, namespace: {ns}}}").unwrap();
        out.push_str("spec:\n");
        match j % 5 {
            0 => {
                writeln!(out, "  selector:\n    matchLabels: {{app: {svc}}}\n  action: ALLOW\n  rules:").unwrap();
                writeln!(
                    out,
                    "  - from:\n    - source:\n        principals: [\"cluster.local/ns/{ns}/sa/client-{j}\", \
                     \"cluster.local/ns/{peer_ns}/sa/*\"]\n    to:\n    - operation:\n        ports: [\"8080\", \"8443\"]"
                )
                .unwrap();
                writeln!(
                    out,
                    "  - from:\n    - source:\n        namespaces: [\"{peer_ns}\"]\n    to:\n    - operation:\n        ports: [\"9090\"]"
                )
                .unwrap();
            }
            1 => {
                writeln!(out, "  selector:\n    matchLabels: {{app: {svc}, tier: backend}}\n  action: DENY\n  rules:")
                    .unwrap();
                writeln!(
                    out,
                    "  - from:\n    - source:\n        namespaces: [\"quarantine\", \"sandbox-*\"]\n    - source:\n        \
                     ipBlocks: [\"10.{}.0.0/16\"]\n    to:\n    - operation:\n        notPorts: [\"15021\"]",
                    j % 250
                )
                .unwrap();
            }
            2 => {
                writeln!(
                    out,
                    "  targetRefs:\n  - {{kind: Service, group: \"\", name: {svc}}}\n  action: ALLOW\n  rules:"
                )
                .unwrap();
                writeln!(
                    out,
                    "  - from:\n    - source:\n        principals: [\"cluster.local/ns/{ns}/sa/client-{j}\", \
                     \"cluster.local/ns/{peer_ns}/sa/frontend\"]\n        requestPrincipals: [\"https://idp.example.com/*\"]\n    \
                     to:\n    - operation:\n        methods: [\"GET\", \"POST\"]\n        paths: [\"/api/v1/{svc}/*\", \"/api/v1/shared/{j}\"]\n    \
                     when:\n    - key: request.auth.claims[scp]\n      values: [\"{svc}.read\", \"{svc}.write\"]"
                )
                .unwrap();
            }
            3 => {
                writeln!(
                    out,
                    "  targetRefs:\n  - {{kind: Service, group: \"\", name: {svc}}}\n  action: DENY\n  rules:"
                )
                .unwrap();
                writeln!(
                    out,
                    "  - from:\n    - source:\n        notRequestPrincipals: [\"*\"]\n    to:\n    - operation:\n        \
                     methods: [\"POST\", \"PUT\", \"DELETE\", \"PATCH\"]"
                )
                .unwrap();
                writeln!(out, "  - to:\n    - operation:\n        paths: [\"/admin/*\", \"/internal/{j}/*\"]").unwrap();
            }
            _ => {
                let other = format!("svc-{:02}", (j + 1) % SERVICES);
                writeln!(
                    out,
                    "  targetRefs:\n  - {{kind: Service, group: \"\", name: {svc}}}\n  - {{kind: Service, group: \"\", name: {other}}}\n  \
                     action: ALLOW\n  rules:"
                )
                .unwrap();
                writeln!(
                    out,
                    "  - from:\n    - source:\n        namespaces: [\"{ns}\", \"{peer_ns}\"]\n    to:\n    - operation:\n        \
                     hosts: [\"{svc}.{ns}.svc.cluster.local\", \"{svc}.example.com\"]\n        notPaths: [\"/private/*\"]\n    \
                     when:\n    - key: request.auth.claims[groups]\n      values: [\"team-{j}\", \"admins\"]\n    \
                     - key: request.headers[x-tenant]\n      notValues: [\"blocked-{j}\"]"
                )
                .unwrap();
            }
        }
        count += 1;
        in_namespace += 1;
    }
    out
}

/// `accounts` connecting to the ledger pod on 8080: decided by `payments/ledger-l4` rule 0.
fn ztunnel_request() -> CheckRequest {
    CheckRequest {
        destination: Destination {
            namespace: "payments".into(),
            workload_labels: BTreeMap::from([("app".into(), "ledger".into()), ("version".into(), "v1".into())]),
            ip: Some("10.244.6.20".parse().unwrap()),
            port: Some(8080),
            ..Destination::default()
        },
        source: SourceAttributes {
            principal: Some(ACCOUNTS.into()),
            ip: Some("10.244.6.10".parse().unwrap()),
            ..SourceAttributes::default()
        },
        ..CheckRequest::default()
    }
}

/// `accounts` POSTing a debit through the waypoint with a `ledger.debit` token: decided by
/// `payments/ledger-debit` rule 0.
fn waypoint_request() -> CheckRequest {
    let claims = serde_json::json!({
        "iss": "https://idp.example.com",
        "sub": "accounts-service",
        "aud": ["ledger"],
        "scp": ["ledger.read", "ledger.debit"],
    });
    CheckRequest {
        destination: Destination {
            namespace: "payments".into(),
            service: Some("ledger".into()),
            waypoint: Some("payments-waypoint".into()),
            port: Some(8080),
            ..Destination::default()
        },
        source: SourceAttributes { principal: Some(ACCOUNTS.into()), ..SourceAttributes::default() },
        http: Some(HttpRequest {
            method: "POST".into(),
            path: "/ledger/v1/debit?x=1".into(),
            host: Some("ledger.payments.svc.cluster.local:8080".into()),
            headers: [("content-type", "application/json")].into_iter().collect(),
        }),
        jwt: Some(JwtAttributes {
            principal: Some("https://idp.example.com/accounts-service".into()),
            audiences: vec!["ledger".into()],
            presenter: None,
            claims: claims.as_object().cloned().unwrap(),
        }),
        ..CheckRequest::default()
    }
}

/// A mesh of `n` policies, checked to hold exactly `n` AuthorizationPolicies.
fn mesh(yaml: &str, n: usize) -> Mesh {
    // The 10k manifest (4.9 MB) is over the default 3 MiB limit of one apply.
    let mut mesh = big_mesh();
    let report = mesh.apply_yaml(yaml).unwrap_or_else(|e| panic!("generated manifest of {n} is invalid: {e}"));
    assert!(report.warnings.is_empty(), "unexpected warnings: {:?}", report.warnings);
    assert_eq!(mesh.resources().filter(|id| id.kind() == mesh_policy::Kind::AuthorizationPolicy).count(), n);
    mesh
}

fn assert_decision(mesh: &Mesh, req: &CheckRequest, policy: &str) {
    let d = mesh.check(req).unwrap();
    assert!(d.allowed, "expected an ALLOW by {policy}, got {d}");
    assert_eq!(d.action, Action::Allow);
    assert_eq!(d.policy.as_deref(), Some(policy), "{d}");
    assert_eq!(d.rule, Some(0), "{d}");
}

/// Generated manifests and the meshes built from them, per size.
struct Fixture {
    manifests: Vec<(usize, String)>,
    meshes: Vec<(usize, Mesh)>,
}

impl Fixture {
    fn new() -> Self {
        let manifests: Vec<(usize, String)> = SIZES.iter().map(|&n| (n, manifest(n))).collect();
        let meshes = manifests.iter().map(|(n, yaml)| (*n, mesh(yaml, *n))).collect();
        Fixture { manifests, meshes }
    }
}

fn compile(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("compile");
    // 10k policies take a good fraction of a second per apply: a flat sampling plan with few samples keeps
    // the group within the measurement time.
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (n, yaml) in &fx.manifests {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), yaml.as_str(), |b, yaml| {
            // The fresh Mesh is built outside the timed routine and the result is returned, so dropping the
            // mesh is not timed either.
            b.iter_batched(
                big_mesh,
                |mut mesh| {
                    let report = mesh.apply_yaml(black_box(yaml));
                    (mesh, report)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// A mesh that reads manifests up to 64 MiB, for the large single-policy cases.
fn big_mesh() -> Mesh {
    Mesh::new(MeshConfig { max_manifest_bytes: 64 << 20, ..MeshConfig::default() })
}

fn principals_policy(n: usize) -> String {
    let mut principals = String::with_capacity(n * 40);
    for i in 0..n {
        write!(principals, "\"cluster.local/ns/n{}/sa/s{i}\",", i % 100).unwrap();
    }
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: many-principals, namespace: a}}\n\
         spec:\n  targetRefs: [{{kind: Service, group: \"\", name: x}}]\n  rules: [{{from: [{{source: {{principals: \
         [{principals}]}}}}]}}]\n"
    )
}

fn target_refs_policy(n: usize) -> String {
    let mut refs = String::with_capacity(n * 40);
    for i in 0..n {
        write!(refs, "{{kind: Service, group: \"\", name: s{i}}},").unwrap();
    }
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: many-targets, namespace: a}}\n\
         spec:\n  targetRefs: [{refs}]\n  action: DENY\n  rules: [{{}}]\n"
    )
}

fn compile_large_lists(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("compile_large_lists");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let principals = principals_policy(100_000);
    assert_eq!(big_mesh().apply_yaml(&principals).unwrap().applied.len(), 1);
    group.bench_function("principals/100000", |b| {
        b.iter_batched(
            big_mesh,
            |mut mesh| (mesh.apply_yaml(black_box(&principals)).is_ok(), mesh),
            BatchSize::PerIteration,
        );
    });
    let targets = target_refs_policy(40_000);
    let base = &fx.manifests.iter().find(|(n, _)| *n == 1_000).unwrap().1;
    let with_base = || {
        let mut mesh = big_mesh();
        mesh.apply_yaml(base).unwrap();
        mesh
    };
    assert_eq!(with_base().apply_yaml(&targets).unwrap().applied.len(), 1);
    group.bench_function("targetRefs/40000", |b| {
        b.iter_batched(
            with_base,
            |mut mesh| (mesh.apply_yaml(black_box(&targets)).is_ok(), mesh),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn hostile(c: &mut Criterion) {
    let mut string_bomb = format!("a: &a {}\nb: [", "x".repeat(1 << 20));
    string_bomb.push_str(&"*a,".repeat(8000));
    string_bomb.push_str("]\n");
    let mut list_bomb = String::from("a: &a [");
    for i in 0..6000 {
        write!(list_bomb, "{i},").unwrap();
    }
    list_bomb.push_str("]\nb: [");
    list_bomb.push_str(&"*a,".repeat(3000));
    list_bomb.push_str("]\n");
    let mut invalid = String::new();
    for i in 0..2_000 {
        write!(invalid, "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}}}\nspec: {{rules: [{{when: []}}]}}\n").unwrap();
    }
    let cases = [
        ("alias_to_1MiB_string", string_bomb),
        ("alias_to_6000_items", list_bomb),
        ("nested_flow_maps_40000", "{a: ".repeat(40_000)),
        ("unclosed_brackets_1M", "[".repeat(1_000_000)),
        ("over_size_limit_10MB", format!("# {}\n", "x".repeat(10 << 20))),
        ("invalid_documents_2000", invalid),
    ];
    let mut group = c.benchmark_group("hostile");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (name, yaml) in &cases {
        assert!(Mesh::default().apply_yaml(yaml).is_err(), "{name} was accepted");
        group.bench_function(*name, |b| {
            b.iter(|| Mesh::default().apply_yaml(black_box(yaml)).map_err(|e| e.to_string()));
        });
    }
    group.finish();
}

fn check(c: &mut Criterion, fx: &Fixture, group_name: &str, req: &CheckRequest, policy: &str) {
    let mut group = c.benchmark_group(group_name);
    for (n, mesh) in &fx.meshes {
        assert_decision(mesh, req, policy);
        group.bench_with_input(BenchmarkId::from_parameter(n), req, |b, req| {
            b.iter(|| mesh.check(black_box(req)));
        });
    }
    group.finish();
}

fn main() {
    let fx = Fixture::new();
    let mut c = Criterion::default().warm_up_time(Duration::from_secs(1)).configure_from_args();
    compile(&mut c, &fx);
    check(&mut c, &fx, "check_ztunnel", &ztunnel_request(), "payments/ledger-l4");
    check(&mut c, &fx, "check_waypoint", &waypoint_request(), "payments/ledger-debit");
    compile_large_lists(&mut c, &fx);
    hostile(&mut c);
    c.final_summary();
}
