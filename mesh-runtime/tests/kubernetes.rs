//! The Kubernetes source against an API server double on a real socket: it serves list and watch as the API
//! server does (resource versions, chunked watch streams, bookmarks), and the test scripts its failures: a
//! watch answered `410 Gone`, dropped streams, the server going away and coming back.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/api_server.rs"]
mod api_server;

use std::net::SocketAddr;
use std::time::Duration;

use api_server::ApiServer;
use mesh_runtime::kubernetes::KubeSource;
use mesh_runtime::source::{ConfigSource, ConfigUpdate, Document, SourceError};
use mesh_runtime::state::MeshState;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"istio.io/dataplane-mode": "ambient"}}})
}

fn pod(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "payments", "labels": {"app": "ledger"},
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
        "spec": {"serviceAccountName": "ledger", "nodeName": "node-b", "containers": [{"name": "app", "image": "ledger"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running"}})
}

fn policy(name: &str) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "payments"},
        "spec": {"selector": {"matchLabels": {"app": "ledger"}}, "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/payments/sa/accounts"]}}]}]}})
}

fn names(documents: &[Document]) -> Vec<&str> {
    documents.iter().map(|d| d.name.as_str()).collect()
}

/// The next update that is a configuration (errors are collected in `errors`).
async fn next_documents(updates: &mut mpsc::Receiver<ConfigUpdate>, errors: &mut Vec<SourceError>) -> Vec<Document> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), updates.recv()).await {
            Ok(Some(Ok(documents))) => return documents,
            Ok(Some(Err(e))) => errors.push(e),
            Ok(None) => panic!("the source stopped"),
            Err(_) => panic!("no update within 20 s; errors so far: {errors:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_follows_the_api_relists_on_410_and_survives_the_server_going_away() {
    let server = ApiServer::default();
    server.apply("namespaces", namespace("payments"));
    server.apply("pods", pod("ledger-0", "10.0.2.20"));
    server.apply("authorizationpolicies", policy("ledger-allow"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut serving = server.serve(listener);

    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let source = KubeSource::from_config(config).unwrap().settle(Duration::from_millis(30));
    assert!(source.describe().contains(&addr.to_string()));
    let (tx, mut updates) = mpsc::channel(16);
    let task = tokio::spawn(Box::new(source).run(tx));
    let mut errors = Vec::new();

    // The first update: every kind listed, each object one document named by kind and name.
    let first = next_documents(&mut updates, &mut errors).await;
    assert_eq!(
        names(&first),
        ["Namespace payments", "Pod payments/ledger-0", "AuthorizationPolicy payments/ledger-allow"]
    );
    let pod_json: Value = serde_json::from_str(&first[1].text).unwrap();
    assert_eq!((pod_json["apiVersion"].as_str(), pod_json["kind"].as_str()), (Some("v1"), Some("Pod")));
    assert!(pod_json["metadata"].get("managedFields").is_none(), "{pod_json}");
    assert!(pod_json["metadata"]["annotations"].get("kubectl.kubernetes.io/last-applied-configuration").is_none());
    // What the API serves is what the proxies load.
    let state = MeshState::new(mesh_policy::MeshConfig::default());
    let snapshot = state.apply(&first).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(snapshot.cluster().workloads().any(|(_, w)| w.id.name() == "ledger-0"));

    // A watch event: one more Pod, then a deletion.
    server.apply("pods", pod("ledger-1", "10.0.2.21"));
    let added = next_documents(&mut updates, &mut errors).await;
    assert!(names(&added).contains(&"Pod payments/ledger-1"), "{:?}", names(&added));
    server.delete("security.istio.io/v1", "authorizationpolicies", "payments", "ledger-allow");
    let deleted = next_documents(&mut updates, &mut errors).await;
    assert!(!names(&deleted).iter().any(|n| n.starts_with("AuthorizationPolicy")), "{:?}", names(&deleted));

    // Changes missed while the watch was down, then 410 Gone: the pods are relisted and the update is complete.
    let pod_lists = server.lists("v1", "pods");
    server.rewrite_behind_watchers("v1", "pods", vec![pod("ledger-2", "10.0.2.22")]);
    let relisted = next_documents(&mut updates, &mut errors).await;
    assert_eq!(names(&relisted), ["Namespace payments", "Pod payments/ledger-2"], "a complete set, after the relist");
    assert!(server.lists("v1", "pods") > pod_lists, "the pods were listed again");

    // The server goes away: the source says so and keeps what it has; when it is back, changes made
    // meanwhile arrive.
    server.stop(serving);
    let down = match tokio::time::timeout(Duration::from_secs(20), updates.recv()).await {
        Ok(Some(Err(e))) => e,
        Ok(Some(Ok(documents))) => panic!("an update while the API is down: {:?}", names(&documents)),
        Ok(None) => panic!("the source stopped"),
        Err(_) => panic!("the source does not report the API unreachable"),
    };
    assert!(matches!(&down, SourceError::Unreachable { .. }), "{down}");
    assert!(down.to_string().contains("configuration in force stays"), "{down}");
    server.apply("authorizationpolicies", policy("ledger-allow-again"));
    serving = server.serve(TcpListener::bind(addr).await.unwrap());
    let back = next_documents(&mut updates, &mut errors).await;
    assert!(names(&back).contains(&"AuthorizationPolicy payments/ledger-allow-again"), "{:?}", names(&back));
    assert!(names(&back).contains(&"Pod payments/ledger-2"), "nothing lost: {:?}", names(&back));
    task.abort();
    serving.abort();
}
