//! The waypoint binary between a client node proxy and the destination's node proxy, on loopback: the payments
//! guide's validation matrix over real HBONE tunnels, with real tokens and real certificates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 200 for accounts with a scoped token (the node proxy saw the waypoint's identity, the token was removed,
/// its `sub` copied to a header, the client's address forwarded); 403 without a token, with the wrong scope
/// and for DELETE; 401 for an expired token, with Envoy's `www-authenticate`; gRPC denials in gRPC's terms;
/// another identity denied; a destination the waypoint does not serve refused; plain TCP by policy; metrics
/// and admin views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payments_matrix_through_the_waypoint() {
    bounded(async {
        let net = Net(1);
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let policies = policies_yaml(JwksFrom::Inline(&idp.jwks()), true);
        let config = config_dir(net, &policies);
        let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
        let waypoint = Waypoint::start(net, &pki, config.path(), node.port, &[]).await;
        let accounts = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
        let ledger = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);

        // Allowed.
        let good = idp.token(&["ledger.debit"], false);
        let answer = accounts.http1(ledger, debit("POST", Some(&good))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}\n{}", answer.body, waypoint.logs());
        let echoed = answer.json();
        assert_eq!(echoed["path"], "/ledger/v1/debit");
        let headers = &echoed["headers"];
        assert!(headers.get("authorization").is_none(), "forwardOriginalToken false removes the token: {headers}");
        assert_eq!(headers["x-jwt-sub"], "accounts");
        assert_eq!(headers["x-forwarded-for"], net.accounts().to_string());
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-request-id"].as_str().map(str::len), Some(36));
        let seen = node.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].peer, Pki::waypoint_id().to_string(), "the waypoint forwards with its own identity");
        assert_eq!(seen[0].target, SocketAddr::new(net.ledger(), LEDGER_PORT));
        assert_eq!(seen[0].forwarded_for, Some(net.accounts()));
        assert_eq!(seen[0].peer_addr, net.waypoint(), "the destination sees the waypoint's address");

        // Denied by policy: no token, wrong scope, DELETE.
        let answer = accounts.http1(ledger, debit("POST", None)).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::FORBIDDEN, "RBAC: access denied"));
        let read_only = idp.token(&["ledger.read"], false);
        assert_eq!(accounts.http1(ledger, debit("POST", Some(&read_only))).await.status, StatusCode::FORBIDDEN);
        assert_eq!(accounts.http1(ledger, debit("DELETE", Some(&good))).await.status, StatusCode::FORBIDDEN);

        // An expired token.
        let expired = idp.token(&["ledger.debit"], true);
        let answer = accounts.http1(ledger, debit("POST", Some(&expired))).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::UNAUTHORIZED, "Jwt is expired"));
        assert_eq!(
            answer.headers["www-authenticate"],
            "Bearer realm=\"http://ledger.payments/ledger/v1/debit\", error=\"invalid_token\""
        );
        // A token signed by another key.
        let forged = Idp::new("k1").token(&["ledger.debit"], false);
        let answer = accounts.http1(ledger, debit("POST", Some(&forged))).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::UNAUTHORIZED, "Jwt verification fails"));

        // HTTP/2 and gRPC: allowed over h2; a denied gRPC call gets PERMISSION_DENIED / UNAUTHENTICATED.
        let h2 = |token: Option<&str>, grpc: bool| {
            let mut r = Request::post(format!("http://ledger.payments:{LEDGER_PORT}/ledger/v1/debit"));
            if grpc {
                r = r.header("content-type", "application/grpc");
            }
            if let Some(t) = token {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            r.body(String::new()).unwrap()
        };
        let answer = accounts.http2(ledger, h2(Some(&good), false)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.json()["version"], "HTTP/2.0");
        let answer = accounts.http2(ledger, h2(Some(&good), true)).await;
        assert_eq!(answer.headers["content-type"], "application/grpc");
        assert_eq!(answer.headers["grpc-status"], "0", "the backend's trailers come through");
        let answer = accounts.http2(ledger, h2(None, true)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["grpc-status"], "7");
        assert_eq!(answer.headers["grpc-message"], "RBAC:%20access%20denied");
        let answer = accounts.http2(ledger, h2(Some(&expired), true)).await;
        assert_eq!(answer.headers["grpc-status"], "16");

        // Kept connections: ten more requests, a handful of tunnels to the endpoint (one per HTTP version, and
        // one more if a response had not quite finished when the next request came).
        for _ in 0..10 {
            assert_eq!(accounts.http1(ledger, debit("POST", Some(&good))).await.status, StatusCode::OK);
        }
        let tunnels = node.seen().iter().filter(|s| s.target.port() == LEDGER_PORT).count();
        assert!(tunnels <= 3, "{tunnels} tunnels for 12 allowed requests");

        // Another identity with the good token: denied at the waypoint.
        let probe = ClientProxy::new(&pki, "probe", net.probe(), &waypoint);
        assert_eq!(probe.http1(ledger, debit("POST", Some(&good))).await.status, StatusCode::FORBIDDEN);

        // A Service that does not use this waypoint: the tunnel is refused with 503.
        let refused = accounts.tunnel(SocketAddr::new(net.shop_vip(), 8080)).await.expect_err("refused");
        assert_eq!(refused.refused().map(|r| r.status), Some(StatusCode::SERVICE_UNAVAILABLE), "{refused}");

        // Plain TCP (a port named tcp-*): accounts' bytes are relayed; probe's tunnel is refused by policy.
        let db = SocketAddr::new(net.ledger_vip(), DB_PORT);
        let mut stream = accounts.tunnel(db).await.unwrap();
        stream.write_all(b"select 1").await.unwrap();
        let mut back = [0u8; 8];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"select 1");
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        let denied = probe.tunnel(db).await.expect_err("refused");
        assert_eq!(denied.refused().map(|r| r.status), Some(StatusCode::UNAUTHORIZED), "{denied}");

        // Metrics and admin views.
        let (status, metrics) = get(waypoint.metrics, "/metrics").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        for expected in [
            "istio_requests_total{",
            "response_code=\"200\"",
            "response_code=\"403\"",
            "response_code=\"401\"",
            "response_flags=\"RBAC\"",
            "source_principal=\"spiffe://cluster.local/ns/payments/sa/accounts\"",
            "destination_principal=\"spiffe://cluster.local/ns/payments/sa/ledger\"",
            "destination_service=\"ledger.payments.svc.cluster.local\"",
            // A Pod with no controller is its own workload, as istiod names it.
            "source_workload=\"accounts-0\"",
            "istio_request_duration_milliseconds_bucket{",
        ] {
            assert!(metrics.contains(expected), "{expected} not in\n{metrics}");
        }
        // The TCP connection, counted once closed: 8 bytes each way.
        let mut tcp_metrics = String::new();
        for _ in 0..100 {
            tcp_metrics = get(waypoint.metrics, "/metrics").await.unwrap().1;
            if tcp_metrics.contains("istio_tcp_connections_closed_total{") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let line = |name: &str| {
            tcp_metrics
                .lines()
                .find(|l| l.starts_with(name) && l.contains("source_workload=\"accounts-0\""))
                .unwrap_or_else(|| panic!("{name}:\n{tcp_metrics}"))
                .to_owned()
        };
        assert!(line("istio_tcp_connections_opened_total{").contains("request_protocol=\"tcp\""));
        assert!(line("istio_tcp_received_bytes_total{").ends_with(" 8"), "{tcp_metrics}");
        assert!(line("istio_tcp_sent_bytes_total{").ends_with(" 8"), "{tcp_metrics}");
        // The probe's tunnel, refused by policy before it opened, is counted with Envoy's flag.
        assert!(
            tcp_metrics.lines().any(|l| l.starts_with("istio_tcp_connections_closed_total{")
                && l.contains("source_workload=\"probe\"")
                && l.contains("response_flags=\"RBAC\"")),
            "{tcp_metrics}"
        );
        let dump = waypoint.admin_json("/config_dump").await;
        assert_eq!(dump["gateway"], "payments/payments-waypoint");
        assert_eq!(dump["waypoint"]["principal"], "cluster.local/ns/payments/sa/payments-waypoint");
        assert_eq!(dump["ready"]["ready"], true);
        assert_eq!(dump["config"]["gateway"]["name"], "payments-waypoint");
        assert_eq!(dump["config"]["common"]["mesh"]["root_namespace"], "istio-system");
        let policies = waypoint.admin_json("/policies").await;
        let ledger_policies = policies["Service payments/ledger"].as_array().unwrap();
        let names: Vec<&str> = ledger_policies.iter().filter_map(|v| v.as_str()).collect();
        assert!(names.iter().any(|n| n.ends_with("payments/ledger-jwt")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("payments/ledger-debit-allow")), "{names:?}");
        assert!(
            !names.iter().any(|n| n.ends_with("ledger-allow-l4")),
            "ztunnel's policy is not the waypoint's: {names:?}"
        );
        let certs = waypoint.admin_json("/certs").await;
        assert_eq!(certs[0]["identity"], Pki::waypoint_id().to_string());
        // The access log carries the decision, with Istio ztunnel's field names.
        let logs = waypoint.logs();
        let allowed = logs.lines().find(|l| l.contains("policy=\"payments/ledger-debit-allow\"")).unwrap_or_default();
        for field in [
            "src.addr=",
            "src.identity=",
            "dst.hbone_addr=",
            "dst.workload=",
            "http.method=\"POST\"",
            "http.status=200",
            "decision=\"allow\"",
        ] {
            assert!(allowed.contains(field), "{field} in {allowed}\n{logs}");
        }
        assert!(allowed.contains("claim scp is ledger.debit"), "the token's claim decided: {allowed}");
        assert!(logs.lines().any(|l| l.contains("http.status=401") && l.contains("error=Jwt is expired")), "{logs}");
    })
    .await;
}

/// The guide's classic mistake: the ledger's L4 policy allows accounts but not the waypoint, so the
/// destination's node proxy refuses the waypoint's tunnel; the client gets 503 and the log says which hop
/// refused and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_proxy_refusing_the_waypoint_gives_503() {
    bounded(async {
        let net = Net(2);
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let policies = policies_yaml(JwksFrom::Inline(&idp.jwks()), false);
        let config = config_dir(net, &policies);
        let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
        let waypoint = Waypoint::start(net, &pki, config.path(), node.port, &[]).await;
        let accounts = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
        let ledger = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);

        let answer = accounts.http1(ledger, debit("POST", Some(&idp.token(&["ledger.debit"], false)))).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.body,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
        );
        let seen = node.seen();
        assert_eq!((seen.len(), seen[0].allowed), (1, false), "{seen:?}");
        let logs = waypoint.logs();
        assert!(logs.contains("refused the waypoint's tunnel with 401"), "{logs}");
        let (_, metrics) = get(waypoint.metrics, "/metrics").await.unwrap();
        assert!(metrics.contains("response_code=\"503\"") && metrics.contains("response_flags=\"UF\""), "{metrics}");
    })
    .await;
}

const DENY_ACCOUNTS_ADDRESS: &str = r#"---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-deny-address, namespace: payments}
spec:
  targetRefs: [{kind: Service, group: "", name: ledger}]
  action: DENY
  rules: [{from: [{source: {ipBlocks: ["127.77.3.20/32"]}}]}]
"#;

/// `ipBlocks` at the waypoint match the address the client's tunnel comes from (the client Pod's, as its node
/// proxy dials from it), whatever the peer writes in `forwarded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_blocks_at_the_waypoint_match_the_client_pod_address_not_the_claim() {
    bounded(async {
        let net = Net(3);
        assert_eq!(net.accounts().to_string(), "127.77.3.20");
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let policies = format!("{}{DENY_ACCOUNTS_ADDRESS}", policies_yaml(JwksFrom::Inline(&idp.jwks()), true));
        let config = config_dir(net, &policies);
        let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
        let waypoint = Waypoint::start(net, &pki, config.path(), node.port, &[]).await;
        let ledger = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);
        let good = idp.token(&["ledger.debit"], false);

        // From the accounts Pod's address: denied, though the identity and token are good.
        let accounts = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
        let answer = accounts.http1(ledger, debit("POST", Some(&good))).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}\n{}", answer.body, waypoint.logs());

        // The same identity from another address, claiming the denied one in `forwarded`: allowed.
        let elsewhere = ClientProxy::new(&pki, "accounts", net.ip(22), &waypoint);
        let claim = net.accounts();
        let request = mesh_hbone::ConnectRequest::new(ledger)
            .with_forwarded(mesh_hbone::Forwarded::for_source(SocketAddr::new(claim, 0)));
        let stream = elsewhere.client.connect(&elsewhere.waypoint, request).await.unwrap().stream;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(debit("POST", Some(&good))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", waypoint.logs());
    })
    .await;
}

const GATEWAY_NO_DELETE: &str = r#"---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint-no-delete, namespace: payments}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: payments-waypoint}]
  action: DENY
  rules: [{to: [{operation: {methods: ["DELETE"], ports: ["8080"]}}]}]
"#;

/// A waypoint for all traffic (`istio.io/waypoint-for: all`) also gets tunnels addressed to a Pod IP: with no
/// declared port, the first bytes decide between HTTP and TCP. A policy on the Gateway applies to both kinds
/// of address; the Service's own policies only to the Service's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_addressed_tunnels_are_sniffed_and_gateway_policies_apply() {
    bounded(async {
        let net = Net(6);
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let cluster = cluster_yaml(net).replace("istio.io/waypoint-for: service", "istio.io/waypoint-for: all");
        let policies = format!("{}{GATEWAY_NO_DELETE}", policies_yaml(JwksFrom::Inline(&idp.jwks()), true));
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("cluster.yaml"), &cluster).unwrap();
        std::fs::write(config.path().join("policies.yaml"), &policies).unwrap();
        let node = NodeProxy::start(net, &pki, &format!("{cluster}---\n{policies}")).await;
        let waypoint = Waypoint::start(net, &pki, config.path(), node.port, &[]).await;
        let accounts = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
        let pod = SocketAddr::new(net.ledger(), LEDGER_PORT);

        // HTTP to the Pod: the Service's JWT policies do not apply to a workload address.
        let answer = accounts.http1(pod, debit("POST", None)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}\n{}", answer.body, waypoint.logs());
        assert_eq!(answer.json()["headers"]["x-forwarded-for"], net.accounts().to_string());
        assert_eq!(node.seen()[0].target, pod);
        // The Gateway's DENY applies to the Pod and to the Service.
        let answer = accounts.http1(pod, debit("DELETE", None)).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::FORBIDDEN, "RBAC: access denied"));
        let good = idp.token(&["ledger.debit"], false);
        let vip = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);
        assert_eq!(accounts.http1(vip, debit("DELETE", Some(&good))).await.status, StatusCode::FORBIDDEN);
        assert!(waypoint.logs().contains("payments/waypoint-no-delete"));

        // Not HTTP: relayed as TCP, the first bytes included. (The Gateway's DENY, read without its HTTP fields
        // as Envoy's network filter does, denies TCP to port 8080 only.)
        let mut stream = accounts.tunnel(SocketAddr::new(net.ledger(), DB_PORT)).await.unwrap();
        stream.write_all(b"\x00\x01binary").await.unwrap();
        let mut back = [0u8; 8];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"\x00\x01binary");
        let mut denied = accounts.tunnel(pod).await.unwrap();
        denied.write_all(b"\x00\x01binary").await.unwrap();
        let mut got = Vec::new();
        let _ = denied.read_to_end(&mut got).await;
        assert!(got.is_empty(), "nothing comes back from a denied connection");
        let logs = waypoint.logs();
        assert!(logs.contains("connection denied") && logs.contains("waypoint-no-delete"), "{logs}");
    })
    .await;
}
