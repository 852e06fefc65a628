//! The node proxy configured from the Kubernetes API (`--kubernetes`), with no istiod: two node proxies read the
//! payments cluster from an API server double and get their workloads' certificates from a CA serving Istio's
//! certificate API (as cert-manager's istio-csr does, `CA_ADDRESS`), carry accounts' connection to the ledger,
//! refuse it as soon as the API serves a policy that denies it, and keep enforcing that policy, saying so on
//! readiness, once the API is gone.

mod support;

#[path = "../../mesh-runtime/tests/support/api_server.rs"]
mod api_server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_server::{ApiServer, kubeconfig, plural};
use support::istiod::{Istiod, IstiodCa, serve};
use support::{ACCOUNTS, Block, Result, Setup, To, allow, backend, cluster, read_text, readiness_saying, socks5};

#[test]
fn node_proxies_follow_the_kubernetes_api() -> Result {
    let b = Block(47);
    // The configuration directory stays empty: everything comes from the API.
    let setup = Setup::new(47, "")?;
    backend(SocketAddr::new(b.ip(2, 20), 8080), "ledger\n")?;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let server = ApiServer::default();
    let manifests = format!("{}---\n{}", cluster(b), allow(ACCOUNTS));
    for document in serde_yaml_ng::Deserializer::from_str(&manifests) {
        let object: serde_json::Value = serde::Deserialize::deserialize(document)?;
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        server.apply(plural(&kind), object);
    }
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let _context = runtime.enter();
    let serving = server.serve(listener);
    let file = setup.config_dir().join("kubeconfig.yaml");
    std::fs::write(&file, kubeconfig(&url))?;
    // The CA (istio-csr's API): the same test CA signs.
    let ca = IstiodCa::new(&setup, None)?;
    let (ca_url, _ca_server) = serve(&runtime, &Istiod::default(), &ca)?;
    let source =
        ["--kubernetes".into(), "--kubeconfig".into(), file.into_os_string(), "--ca-address".into(), ca_url.into()];
    let a = setup.node_from("node-a", 1, &source, &[])?;
    let node_b = setup.node_from("node-b", 2, &source, &[])?;

    // Allowed by the policy the API serves, at the first attempt: the certificates come from the CA in the
    // background, and both ends wait for theirs.
    let mut ledger = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}; node-b log:\n{}", node_b.log_text()))?;
    assert_eq!(read_text(&mut ledger, 7)?, "ledger\n");
    drop(ledger);
    for identity in ["spiffe://cluster.local/ns/payments/sa/accounts", "spiffe://cluster.local/ns/payments/sa/ledger"] {
        assert!(ca.asked_for(identity) >= 1, "{identity} was not asked of the CA");
    }
    let dump: serde_json::Value = serde_json::from_str(&node_b.admin("/config_dump")?)?;
    assert!(dump["source"].as_str().is_some_and(|s| s.contains("Kubernetes API")), "{}", dump["source"]);

    // The API replaces the policy with one that allows nobody: the next connection is refused.
    let before = node_b.generation()?;
    let nobody: serde_json::Value = serde_yaml_ng::from_str(&allow("cluster.local/ns/payments/sa/nobody"))?;
    server.apply("authorizationpolicies", nobody);
    node_b.wait_generation_past(before)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let outcome = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
        if outcome.is_err() || Instant::now() > deadline {
            break outcome.err();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(refused, Some(2), "the policy the API now serves denies accounts; node-b log:\n{}", node_b.log_text());

    // The API goes away: the proxy keeps serving what it has, and its readiness says why.
    server.stop(serving);
    let (code, body) = readiness_saying(SocketAddr::new(node_b.ip, 15021), "configuration source")?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("configuration source") && body.contains("Kubernetes API"), "{body}");
    let still = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
    assert_eq!(still.err(), Some(2), "the last policy is still enforced");
    Ok(())
}
