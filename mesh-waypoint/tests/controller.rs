//! The status controller against the Kubernetes API server double: the waypoint's GatewayClass accepted, its
//! Gateways accepted and programmed with their Service's address, other classes left alone, and nothing
//! written again while nothing changes.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../mesh-runtime/tests/support/api_server.rs"]
mod api_server;

use std::time::Duration;

use api_server::ApiServer;
use serde_json::{Value, json};

fn gateway(name: &str, class: &str, generation: u64) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "payments", "generation": generation},
        "spec": {"gatewayClassName": class, "listeners": [{"name": "proxy", "port": 15088, "protocol": "istio.io/PROXY"}]}})
}

async fn patches_of(server: &ApiServer, path: &str, at_least: usize) -> Vec<Value> {
    for _ in 0..200 {
        let found: Vec<Value> = server.patches().into_iter().filter(|(p, _)| p == path).map(|(_, v)| v).collect();
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no status patch of {path}: {:?}", server.patches());
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_class_and_its_gateways_get_their_status() {
    let server = ApiServer::default();
    server.apply(
        "gatewayclasses",
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "mesh-waypoint", "generation": 1,
                "annotations": {"ambient.istio.io/waypoint-inbound-binding": "PROXY/15088"}},
            "spec": {"controllerName": "mesh-rs.dev/waypoint"}}),
    );
    server.apply("gateways", gateway("sandwich", "mesh-waypoint", 3));
    server.apply("gateways", gateway("pending", "mesh-waypoint", 1));
    server.apply("gateways", gateway("ingress", "other", 1));
    server.apply(
        "services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sandwich", "namespace": "payments"},
            "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 15088}]}}),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = server.serve(listener);
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let (stop, shutdown) = mesh_runtime::shutdown::channel();
    let controller = tokio::spawn(mesh_waypoint::controller::run(client, "mesh-waypoint".into(), shutdown));

    let sandwich =
        patches_of(&server, "/apis/gateway.networking.k8s.io/v1/namespaces/payments/gateways/sandwich/status", 1).await;
    let status = &sandwich[0]["status"];
    assert_eq!(status["addresses"], json!([{"type": "IPAddress", "value": "10.96.0.50"}]), "{status}");
    assert_eq!(condition(status, "Accepted")["status"], "True");
    assert_eq!(condition(status, "Programmed")["status"], "True");
    assert_eq!(condition(status, "Programmed")["observedGeneration"], 3);
    assert!(condition(status, "Programmed")["lastTransitionTime"].as_str().is_some_and(|t| t.ends_with('Z')));

    let pending =
        patches_of(&server, "/apis/gateway.networking.k8s.io/v1/namespaces/payments/gateways/pending/status", 1).await;
    let status = &pending[0]["status"];
    assert_eq!(status["addresses"], json!([]));
    assert_eq!(condition(status, "Programmed")["status"], "False");
    assert_eq!(condition(status, "Programmed")["reason"], "AddressNotAssigned");

    let class = patches_of(&server, "/apis/gateway.networking.k8s.io/v1/gatewayclasses/mesh-waypoint/status", 1).await;
    assert_eq!(condition(&class[0]["status"], "Accepted")["status"], "True");

    // Its own writes come back as events; nothing is written again while nothing changes, and a Gateway of
    // another class is never touched.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let patches = server.patches();
    let count = |suffix: &str| patches.iter().filter(|(p, _)| p.ends_with(suffix)).count();
    assert_eq!(count("/gateways/sandwich/status"), 1, "{patches:?}");
    assert_eq!(count("/gatewayclasses/mesh-waypoint/status"), 1, "{patches:?}");
    assert_eq!(count("/gateways/ingress/status"), 0, "{patches:?}");

    // The Service gets its address: the pending Gateway is programmed when looked at again (a new generation
    // here, as an edit would make).
    server.apply(
        "services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pending", "namespace": "payments"},
            "spec": {"clusterIP": "10.96.0.51"}}),
    );
    server.apply("gateways", gateway("pending", "mesh-waypoint", 2));
    let pending =
        patches_of(&server, "/apis/gateway.networking.k8s.io/v1/namespaces/payments/gateways/pending/status", 2).await;
    let status = &pending[1]["status"];
    assert_eq!(status["addresses"], json!([{"type": "IPAddress", "value": "10.96.0.51"}]), "{status}");
    assert_eq!(condition(status, "Programmed")["status"], "True");

    stop.trigger();
    tokio::time::timeout(Duration::from_secs(10), controller).await.unwrap().unwrap();
    serving.abort();
}
