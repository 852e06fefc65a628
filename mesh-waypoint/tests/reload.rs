//! The configuration changes under a running waypoint: a tightened policy applies to the next request without
//! a restart, a broken file keeps the policy in force, and SIGTERM drains and stops the process cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::StatusCode;

const DENY_DEBIT: &str = r#"---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: debits-frozen, namespace: payments}
spec:
  targetRefs: [{kind: Service, group: "", name: ledger}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/ledger/v1/debit"]}}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_tightens_policy_and_a_broken_file_keeps_it() {
    bounded(async {
        let net = Net(5);
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let policies = policies_yaml(JwksFrom::Inline(&idp.jwks()), true);
        let config = config_dir(net, &policies);
        let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
        let mut waypoint = Waypoint::start(net, &pki, config.path(), node.port, &[]).await;
        let accounts = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
        let ledger = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);
        let token = idp.token(&["ledger.debit"], false);
        assert_eq!(accounts.http1(ledger, debit("POST", Some(&token))).await.status, StatusCode::OK);
        let generation = waypoint.admin_json("/config_dump").await["generation"].as_u64().unwrap();

        // Tightened: debits are frozen.
        let file = config.path().join("policies.yaml");
        std::fs::write(&file, format!("{policies}{DENY_DEBIT}")).unwrap();
        let mut status = StatusCode::OK;
        for _ in 0..100 {
            status = accounts.http1(ledger, debit("POST", Some(&token))).await.status;
            if status == StatusCode::FORBIDDEN {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "the new DENY applies without a restart:\n{}", waypoint.logs());
        let dump = waypoint.admin_json("/config_dump").await;
        assert!(dump["generation"].as_u64().unwrap() > generation);
        assert!(waypoint.logs().contains("payments/debits-frozen"));
        let forwarded = node.seen().len();

        // Broken: an invalid action. The frozen debits stay frozen.
        let broken = format!("{policies}{}", DENY_DEBIT.replace("action: DENY", "action: MAYBE"));
        std::fs::write(&file, broken).unwrap();
        let mut dump = serde_json::Value::Null;
        for _ in 0..100 {
            dump = waypoint.admin_json("/config_dump").await;
            if dump["reload"]["rejected"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let errors = dump["reload"]["last_errors"].to_string();
        assert!(errors.contains("policies.yaml") && errors.contains("action"), "{dump}");
        let answer = accounts.http1(ledger, debit("POST", Some(&token))).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::FORBIDDEN, "RBAC: access denied"));
        assert_eq!(node.seen().len(), forwarded, "nothing was forwarded once debits were frozen");

        // SIGTERM with an HTTP connection in flight: readiness answers 503, the connection still gets answers,
        // and the process stops with exit status 0 once it is done.
        let stream = accounts.tunnel(ledger).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let first = sender.send_request(debit("POST", Some(&token))).await.unwrap();
        assert_eq!(first.status(), StatusCode::FORBIDDEN);
        drop(first);
        waypoint.signal_term();
        let mut saw_503 = false;
        for _ in 0..50 {
            let probe = get(waypoint.readiness, "/healthz/ready").await;
            if probe.is_ok_and(|(status, _)| status == StatusCode::SERVICE_UNAVAILABLE) {
                saw_503 = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(saw_503, "readiness must answer 503 while draining:\n{}", waypoint.logs());
        sender.ready().await.unwrap();
        let second = sender.send_request(debit("POST", Some(&token))).await.unwrap();
        assert_eq!(second.status(), StatusCode::FORBIDDEN, "a connection in flight is still served while draining");
        drop((second, sender));
        let exit = waypoint.terminate().await;
        assert!(exit.success(), "{exit}\n{}", waypoint.logs());
        assert!(waypoint.logs().contains("drained"), "{}", waypoint.logs());
    })
    .await;
}

/// As the node proxy: an invalid configuration at start stops the waypoint with every error, file and field,
/// before it binds anything; so does a trust domain that is not one.
#[test]
fn an_invalid_configuration_at_start_stops_the_waypoint_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: payments}\nspec: {action: MAYBE}\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-waypoint"))
            .args(["-f", dir.path().to_str().unwrap(), "--gateway", "payments/waypoint"])
            .args(["--inbound-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0", "--readiness-addr", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = run(&[]);
    assert!(!ok && stderr.contains("bad.yaml") && stderr.contains("action"), "{stderr}");
    let (ok, stderr) = run(&["--trust-domain", "Not A Domain"]);
    assert!(!ok && stderr.contains("mesh.trust_domain"), "{stderr}");
}
