//! Istio's sandwich binding: the waypoint Pod's node proxy delivers each tunnel to the waypoint's PROXY
//! protocol listener on loopback, as a plain connection opening with a PROXY v2 header whose TLV 0xD0 names
//! the client, and the waypoint sends requests on as plain TCP to the endpoint's own address (never the
//! VIP), for its node proxy to tunnel. The payments matrix through it, and every way a header can be wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use ppp::v2::{Builder, Command, Protocol, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACCOUNTS: &str = "spiffe://cluster.local/ns/payments/sa/accounts";
const PROBE: &str = "spiffe://cluster.local/ns/payments/sa/probe";

/// The header Istio's ztunnel writes: PROXY, TCP over IPv4, the client and what it dialled, its identity.
fn header(source: SocketAddr, destination: SocketAddr, identity: &str) -> Vec<u8> {
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (source, destination))
        .write_tlv(0xD0, identity.as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

/// A connection from the node proxy, its header sent.
async fn proxied(listener: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(listener).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Whether the waypoint closes `stream` (within 3 s) without answering.
async fn closed_unanswered(mut stream: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payments_matrix_through_the_proxy_protocol_listener() {
    bounded(async {
        let net = Net(7);
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let policies = policies_yaml(JwksFrom::Inline(&idp.jwks()), true);
        let config = config_dir(net, &policies);
        let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
        let listener = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), free_port(IpAddr::from([127, 0, 0, 1])));
        let addr = listener.to_string();
        let waypoint =
            Waypoint::start(net, &pki, config.path(), node.port, &["--proxy-protocol-addr", &addr]).await;
        // Onward, plain TCP to the endpoint's address: in the sandwich the waypoint Pod's own node proxy
        // captures it and tunnels it with the waypoint's identity (HBONE here would be tunnelled twice).
        http_backend_at(SocketAddr::new(net.ledger(), LEDGER_PORT)).await;
        let client = SocketAddr::new(net.accounts(), 43210);
        let ledger = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);
        let good = idp.token(&["ledger.debit"], false);

        // 200: the identity of the header is the client's; the request goes on with the waypoint's identity.
        let stream = proxied(listener, &header(client, ledger, ACCOUNTS)).await;
        let answer = http1_over(stream, debit("POST", Some(&good))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}\n{}", answer.body, waypoint.logs());
        assert_eq!(answer.json()["headers"]["x-forwarded-for"], net.accounts().to_string());
        assert!(node.seen().is_empty(), "no HBONE from the waypoint itself: {:?}", node.seen());
        let dump = waypoint.admin_json("/config_dump").await;
        assert_eq!(dump["config"]["onward"], "plain");

        // 403 without a token; 401 for an expired one; 403 for another identity.
        let stream = proxied(listener, &header(client, ledger, ACCOUNTS)).await;
        assert_eq!(http1_over(stream, debit("POST", None)).await.status, StatusCode::FORBIDDEN);
        let stream = proxied(listener, &header(client, ledger, ACCOUNTS)).await;
        let expired = idp.token(&["ledger.debit"], true);
        assert_eq!(http1_over(stream, debit("POST", Some(&expired))).await.status, StatusCode::UNAUTHORIZED);
        let stream = proxied(listener, &header(SocketAddr::new(net.probe(), 1), ledger, PROBE)).await;
        assert_eq!(http1_over(stream, debit("POST", Some(&good))).await.status, StatusCode::FORBIDDEN);

        // A second header inside the payload is payload: the probe cannot pass as accounts by writing one.
        let mut forged = header(SocketAddr::new(net.probe(), 1), ledger, PROBE);
        forged.extend(header(client, ledger, ACCOUNTS));
        let mut stream = proxied(listener, &forged).await;
        stream
            .write_all(format!("POST /ledger/v1/debit HTTP/1.1\r\nhost: ledger.payments\r\nauthorization: Bearer {good}\r\ncontent-length: 0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(!reply.starts_with("HTTP/1.1 200"), "a header in the payload must not speak for the client: {reply}");

        // Malformed, truncated, LOCAL, identity-less, and a destination the waypoint does not serve: closed,
        // never answered; the listener stays up.
        let local = Builder::with_addresses(Version::Two | Command::Local, Protocol::Stream, (client, ledger))
            .write_tlv(0xD0, ACCOUNTS.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let no_identity =
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (client, ledger)).build().unwrap();
        let whole = header(client, ledger, ACCOUNTS);
        let elsewhere = header(client, SocketAddr::new(net.shop_vip(), 80), ACCOUNTS);
        for (what, bytes) in [
            ("not PROXY", b"GET / HTTP/1.1\r\nhost: ledger\r\n\r\n".to_vec()),
            ("truncated", whole[..20].to_vec()),
            ("LOCAL", local),
            ("no identity", no_identity),
            ("not served", elsewhere),
        ] {
            let mut stream = proxied(listener, &bytes).await;
            if what == "truncated" {
                stream.shutdown().await.unwrap();
            }
            assert!(closed_unanswered(stream).await, "{what}");
        }
        // A slow sender is timed out.
        let started = Instant::now();
        let silent = TcpStream::connect(listener).await.unwrap();
        assert!(closed_unanswered(silent).await, "a connection that sends no header is closed");
        assert!(started.elapsed() >= Duration::from_millis(900), "after the header timeout");
        let stream = proxied(listener, &header(client, ledger, ACCOUNTS)).await;
        assert_eq!(http1_over(stream, debit("POST", Some(&good))).await.status, StatusCode::OK, "still serving");
        let logs = waypoint.logs();
        assert!(logs.contains("PROXY connection refused") && logs.contains("identity TLVs"), "{logs}");
    })
    .await;
}

/// The listener is for the Pod's own node proxy: an address anyone else can reach is refused at start.
#[test]
fn a_proxy_protocol_listener_off_loopback_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments}\n")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-waypoint"))
        .args(["-f", dir.path().to_str().unwrap(), "--gateway", "payments/waypoint"])
        .args(["--inbound-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--readiness-addr", "127.0.0.1:0"])
        .args(["--proxy-protocol-addr", "0.0.0.0:15088"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("loopback"), "{stderr}");
}
