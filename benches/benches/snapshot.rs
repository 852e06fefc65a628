//! mesh-policy with the cluster model loaded: checks of a named destination against the same check given by
//! hand, the proxy entry points, and reloading a whole configuration while checks go on.
//!
//! Groups (sizes in AuthorizationPolicies; the cluster has one Pod per two policies, 5k Pods at 10k):
//! - `ztunnel_by_hand`: `Snapshot::check` with the destination's namespace and labels spelled out.
//! - `ztunnel_named`: `Snapshot::check` naming the destination by Pod IP only; the model supplies the rest.
//! - `ztunnel_proxy`: `Snapshot::authorize_connection` with a borrowed target and a parsed peer.
//! - `ztunnel_workload`: the same with `Snapshot::workload_target`: the policies resolved once per snapshot.
//! - `reload`: `Mesh::replace_all` of the whole configuration (10k policies, 5k Pods; under `cargo test`, the
//!   largest size built, 1k).
//! - `ztunnel_during_reload`: `ztunnel_workload` while another thread replaces the configuration in a loop;
//!   a check runs against the snapshot it holds and never waits for the reload.
//! - `xds_update`: istiod's form (5,000 workloads, 10,000 Authorizations; 500 and 1,000 under `cargo test`):
//!   one workload added and removed again, one Authorization added and removed again, each a new snapshot;
//!   the state as the istiod source passes it (one source per resource) with one workload changed; and the
//!   whole state replaced by the same text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench setup: fail loudly

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode};
use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::proxy::{Connection, Target};
use mesh_policy::{CheckRequest, Mesh, MeshConfig, Snapshot, Source};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Policies per namespace; each namespace has one workload kind per policy pair.
const PER_NAMESPACE: usize = 100;

/// `n` policies in `n / 100` namespaces (at least one), each namespace in ambient mode with `PER_NAMESPACE / 2`
/// Pods `app: svc-J`; per Pod kind a DENY and an ALLOW selector policy, and one namespace-wide ALLOW.
fn manifest(n: usize) -> String {
    let namespaces = n.div_ceil(PER_NAMESPACE);
    let mut out = String::new();
    let mut policies = 0;
    for i in 0..namespaces {
        let ns = format!("ns-{i}");
        writeln!(out, "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio.io/dataplane-mode: ambient}}}}\n---").unwrap();
        for j in 0..PER_NAMESPACE / 2 {
            if policies >= n {
                break;
            }
            let ip = format!("10.{}.{}.{}", i / 250, i % 250, j + 1);
            write!(
                out,
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: svc-{j}-0, namespace: {ns}, labels: {{app: svc-{j}, version: v1}}}}\n\
                 spec: {{serviceAccountName: svc-{j}, nodeName: node-{}}}\nstatus: {{phase: Running, podIP: {ip}}}\n---\n",
                j % 3
            )
            .unwrap();
            write!(
                out,
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: svc-{j}-deny, namespace: {ns}}}\n\
                 spec:\n  selector: {{matchLabels: {{app: svc-{j}}}}}\n  action: DENY\n  rules:\n  - from:\n    - source: {{namespaces: [quarantine]}}\n---\n"
            )
            .unwrap();
            policies += 1;
            if policies >= n {
                break;
            }
            write!(
                out,
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: svc-{j}-allow, namespace: {ns}}}\n\
                 spec:\n  selector: {{matchLabels: {{app: svc-{j}}}}}\n  rules:\n  - from:\n    - source: {{principals: [cluster.local/ns/{ns}/sa/client-{j}, cluster.local/ns/{ns}/sa/ops]}}\n    \
                 to:\n    - operation: {{ports: [\"8080\", \"8443\"]}}\n---\n"
            )
            .unwrap();
            policies += 1;
        }
    }
    out
}

/// A mesh that takes the 10k configuration (about 4 MB) in one replacement, over the default 3 MiB.
fn new_mesh() -> Mesh {
    Mesh::new(MeshConfig { max_manifest_bytes: 64 << 20, ..MeshConfig::default() })
}

struct Size {
    n: usize,
    yaml: String,
    snapshot: Arc<Snapshot>,
}

/// The checked connection: `ns-0/svc-1-0` on 8080 from `client-1`, allowed by `ns-0/svc-1-allow`.
const PEER: &str = "cluster.local/ns/ns-0/sa/client-1";
const POD_IP: &str = "10.0.0.2";

fn by_hand() -> CheckRequest {
    serde_json::from_value(serde_json::json!({
        "destination": {"namespace": "ns-0", "workload_labels": {"app": "svc-1", "version": "v1"}, "ip": POD_IP, "port": 8080},
        "source": {"principal": PEER}
    }))
    .unwrap()
}

fn named() -> CheckRequest {
    serde_json::from_value(serde_json::json!({
        "destination": {"namespace": "ns-0", "ip": POD_IP, "port": 8080},
        "source": {"principal": PEER}
    }))
    .unwrap()
}

/// `cargo bench` passes `--bench`; without it (`cargo test` runs each benchmark once to check it works) the
/// 10k configuration is left out, as it takes seconds to build in the debug profile.
fn sizes() -> Vec<Size> {
    let timed = std::env::args().any(|a| a == "--bench");
    SIZES
        .iter()
        .filter(|&&n| timed || n < 10_000)
        .map(|&n| {
            let yaml = manifest(n);
            let mut mesh = new_mesh();
            mesh.replace_all(&[Source { name: "bench", text: &yaml }]).unwrap();
            let snapshot = mesh.snapshot();
            for req in [by_hand(), named()] {
                let d = snapshot.check(&req).unwrap();
                assert!(d.allowed && d.policy.as_deref() == Some("ns-0/svc-1-allow"), "{n}: {d}");
            }
            Size { n, yaml, snapshot }
        })
        .collect()
}

fn checks(c: &mut Criterion, sizes: &[Size]) {
    let peer = IstioIdentity::parse_principal(PEER).unwrap();
    for (group_name, req) in [("ztunnel_by_hand", by_hand()), ("ztunnel_named", named())] {
        let mut group = c.benchmark_group(group_name);
        for s in sizes {
            group.bench_with_input(BenchmarkId::from_parameter(s.n), &req, |b, req| {
                b.iter(|| s.snapshot.check(black_box(req)));
            });
        }
        group.finish();
    }
    let mut proxy = c.benchmark_group("ztunnel_proxy");
    let labels = by_hand().destination.workload_labels;
    for s in sizes {
        let target = Target::new("ns-0", &labels).with_port(8080).with_ip(POD_IP.parse().unwrap());
        let conn = Connection::new(target).with_peer(&peer);
        assert!(s.snapshot.authorize_connection(&conn).allowed);
        proxy.bench_function(BenchmarkId::from_parameter(s.n), |b| {
            b.iter(|| s.snapshot.authorize_connection(black_box(&conn)))
        });
    }
    proxy.finish();
    let mut workload = c.benchmark_group("ztunnel_workload");
    for s in sizes {
        let id = s.snapshot.cluster().workload_by_ip(POD_IP.parse().unwrap()).unwrap();
        let conn = Connection::new(s.snapshot.workload_target(id, 8080).unwrap()).with_peer(&peer);
        assert!(s.snapshot.authorize_connection(&conn).allowed);
        workload.bench_function(BenchmarkId::from_parameter(s.n), |b| {
            b.iter(|| s.snapshot.authorize_connection(black_box(&conn)))
        });
    }
    workload.finish();
}

fn reload(c: &mut Criterion, sizes: &[Size]) {
    let Some(largest) = sizes.last() else { return };
    let mut group = c.benchmark_group("reload");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let mut mesh = new_mesh();
    group.bench_function(BenchmarkId::from_parameter(largest.n), |b| {
        b.iter(|| {
            mesh.replace_all(&[Source { name: "bench", text: black_box(&largest.yaml) }]).map(|r| r.applied.len())
        });
    });
    group.finish();

    // Checks against a held snapshot while another thread keeps replacing the configuration.
    let stop = Arc::new(AtomicBool::new(false));
    let reloader = {
        let stop = Arc::clone(&stop);
        let yaml = largest.yaml.clone();
        std::thread::spawn(move || {
            let mut mesh = new_mesh();
            let mut reloads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                mesh.replace_all(&[Source { name: "bench", text: &yaml }]).unwrap();
                reloads += 1;
            }
            reloads
        })
    };
    let peer = IstioIdentity::parse_principal(PEER).unwrap();
    let snapshot = &largest.snapshot;
    let id = snapshot.cluster().workload_by_ip(POD_IP.parse().unwrap()).unwrap();
    let conn = Connection::new(snapshot.workload_target(id, 8080).unwrap()).with_peer(&peer);
    let mut group = c.benchmark_group("ztunnel_during_reload");
    group.bench_function(BenchmarkId::from_parameter(largest.n), |b| {
        b.iter(|| snapshot.authorize_connection(black_box(&conn)))
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    let reloads = reloader.join().unwrap();
    println!("ztunnel_during_reload: {reloads} reloads of {} policies completed while checking", largest.n);
}

/// istiod's form of a mesh: `workloads` Pods in namespaces of 50, each with a selector Authorization, plus
/// namespace-wide ones up to `authorizations`.
fn xds_state(workloads: usize, authorizations: usize) -> serde_json::Value {
    let workloads: Vec<_> = (0..workloads)
        .map(|i| {
            serde_json::json!({
                "uid": format!("Kubernetes//Pod/ns-{}/w-{i}", i / 50), "name": format!("w-{i}"),
                "namespace": format!("ns-{}", i / 50), "workloadIps": [format!("10.{}.{}.{}", i / 62500, i / 250 % 250, i % 250 + 1)],
                "protocol": "HBONE", "serviceAccount": format!("sa-{}", i % 50), "node": format!("node-{}", i % 3),
                "authorizationPolicies": [format!("ns-{}/w-{i}-allow", i / 50)]
            })
        })
        .collect();
    let policy = |ns: usize, name: String, scope: &str| {
        serde_json::json!({"name": name, "namespace": format!("ns-{ns}"), "scope": scope, "action": "Allow",
            "rules": [[[{"principals": [{"Exact": format!("cluster.local/ns/ns-{ns}/sa/client")}]}],
                       [{"destinationPorts": [8080]}]]]})
    };
    let mut policies: Vec<_> =
        (0..workloads.len()).map(|i| policy(i / 50, format!("w-{i}-allow"), "WorkloadSelector")).collect();
    let namespaces = workloads.len().div_ceil(50).max(1);
    for k in policies.len()..authorizations {
        policies.push(policy(k % namespaces, format!("extra-{k}"), "Namespace"));
    }
    serde_json::json!({"workloads": workloads, "services": [], "policies": policies})
}

/// Sources borrowing `docs` (name, text).
fn as_sources(docs: &[(String, String)]) -> Vec<Source<'_>> {
    docs.iter().map(|(name, text)| Source { name, text }).collect()
}

fn xds_update(c: &mut Criterion) {
    let timed = std::env::args().any(|a| a == "--bench");
    let (workloads, authorizations) = if timed { (5_000, 10_000) } else { (500, 1_000) };
    let state = xds_state(workloads, authorizations).to_string();
    let mut mesh = new_mesh();
    mesh.replace_all(&[Source { name: "istiod", text: &state }]).unwrap();
    let mut group = c.benchmark_group("xds_update");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let pod =
        serde_json::json!({"workloads": [{"uid": "Kubernetes//Pod/ns-0/new-0", "name": "new-0", "namespace": "ns-0",
        "workloadIps": ["10.255.0.1"], "protocol": "HBONE", "serviceAccount": "sa-0", "node": "node-0"}]})
        .to_string();
    let pod_id = mesh_policy::ResourceId::new(mesh_policy::Kind::Pod, "ns-0", "new-0");
    group.bench_function(BenchmarkId::new("workload_added_and_removed", workloads), |b| {
        b.iter(|| {
            mesh.apply_yaml(black_box(&pod)).unwrap();
            assert!(mesh.remove(&pod_id));
        });
    });
    let authorization = serde_json::json!({"policies": [{"name": "new", "namespace": "ns-0", "scope": "Namespace",
        "action": "Deny", "rules": [[[{"namespaces": [{"Exact": "quarantine"}]}]]]}]})
    .to_string();
    let authorization_id = mesh_policy::ResourceId::new(mesh_policy::Kind::AuthorizationPolicy, "ns-0", "new");
    group.bench_function(BenchmarkId::new("authorization_added_and_removed", authorizations), |b| {
        b.iter(|| {
            mesh.apply_yaml(black_box(&authorization)).unwrap();
            assert!(mesh.remove(&authorization_id));
        });
    });
    // As the istiod source passes its state: one source per resource; each push changes one of them.
    let whole = xds_state(workloads, authorizations);
    let mut docs: Vec<(String, String)> = Vec::new();
    for (key, list) in [("workloads", &whole["workloads"]), ("policies", &whole["policies"])] {
        for (i, item) in list.as_array().unwrap().iter().enumerate() {
            docs.push((format!("{key} {i}"), serde_json::json!({ key: [item] }).to_string()));
        }
    }
    let mut per_resource = new_mesh();
    per_resource.replace_all(&as_sources(&docs)).unwrap();
    let (mut a, mut b2) = (docs.clone(), docs.clone());
    a[0].1 = a[0].1.replace("\"sa-0\"", "\"sa-1\"");
    b2[0].1 = b2[0].1.replace("\"sa-0\"", "\"sa-2\"");
    let (a, b2) = (as_sources(&a), as_sources(&b2));
    let mut flip = false;
    group.bench_function(BenchmarkId::new("one_source_of_15000_changed", workloads), |b| {
        b.iter(|| {
            flip = !flip;
            per_resource.replace_all(black_box(if flip { &a } else { &b2 })).map(|r| r.applied.len())
        });
    });
    group.bench_function(BenchmarkId::new("whole_state_replaced", authorizations), |b| {
        b.iter(|| mesh.replace_all(&[Source { name: "istiod", text: black_box(&state) }]).map(|r| r.applied.len()));
    });
    group.finish();
}

fn main() {
    let sizes = sizes();
    let mut c = Criterion::default().warm_up_time(Duration::from_secs(1)).configure_from_args();
    checks(&mut c, &sizes);
    reload(&mut c, &sizes);
    xds_update(&mut c);
    c.final_summary();
}
