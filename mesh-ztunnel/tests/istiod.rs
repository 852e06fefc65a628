//! The node proxy configured by istiod (`XDS_ADDRESS`) and certified by it (`CA_ADDRESS`, by default the same
//! address): two node proxies subscribe to a scripted istiod speaking delta ADS and Istio's certificate service
//! on a real socket, get their workloads' certificates from it, carry accounts' connection to the ledger as the
//! Authorization istiod serves allows, close it and refuse new ones once istiod pushes a DENY, and keep enforcing it, saying so on
//! readiness, once istiod is gone. The CA's refusals are retried, wrong answers refused, and certificates
//! renewed at half-life.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh_xds::proto::{security, workload};
use support::istiod::{Istiod, IstiodCa, address, authorization, octets, pod, serve};
use support::{
    ACCOUNTS, Block, Ending, Result, Setup, To, backend, echo, ending_within, read_text, readiness_saying, socks5,
};

#[test]
fn node_proxies_follow_istiod() -> Result {
    let b = Block(48);
    let setup = Setup::new(48, "")?;
    backend(SocketAddr::new(b.ip(2, 20), 8080), "ledger\n")?;
    let istiod = Istiod::default();
    let key = "payments/ledger.payments.svc.cluster.local";
    istiod.set(0, pod("accounts-0", "accounts", "node-a", b.ip(1, 10), &[]))?;
    istiod.set(0, pod("ledger-0", "ledger", "node-b", b.ip(2, 20), &[(key, 80, 8080)]))?;
    let ledger = workload::Service {
        name: "ledger".into(),
        namespace: "payments".into(),
        hostname: "ledger.payments.svc.cluster.local".into(),
        addresses: vec![workload::NetworkAddress {
            network: String::new(),
            address: octets(b.ip(100, 20)),
            length: None,
        }],
        ports: vec![workload::Port { service_port: 80, target_port: 8080 }],
        ..Default::default()
    };
    istiod.set(0, address(key, workload::address::Type::Service(ledger)))?;
    istiod.set(1, authorization("ledger-allow", security::Action::Allow, ACCOUNTS))?;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let token = setup.dir.path().join("istio-token");
    std::fs::write(&token, "t0k3n\n")?;
    let ca = IstiodCa::new(&setup, Some("t0k3n"))?;
    let (url, server) = serve(&runtime, &istiod, &ca)?;
    let source = ["--xds-address".into(), url.into(), "--xds-token".into(), token.into_os_string()];
    let a = setup.node_from("node-a", 1, &source, &[])?;
    let node_b = setup.node_from("node-b", 2, &source, &[])?;
    let connect = || socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)));

    // Allowed by the Authorization istiod serves, over mTLS with the certificates istiod's CA signed.
    let mut stream = wait_connected(&connect)?.map_err(|code| {
        format!("refused with {code}; node-a log:\n{}\nnode-b log:\n{}", a.log_text(), node_b.log_text())
    })?;
    assert_eq!(read_text(&mut stream, 7)?, "ledger\n");
    // Held open across the DENY below; it echoes while allowed.
    let mut live = stream;
    assert_eq!(echo(&mut live, "still here\n")?, "still here\n");
    assert_eq!(ca.asked_for(ACCOUNTS_ID), 1, "node-a asks for accounts' certificate once");
    assert_eq!(ca.asked_for(LEDGER_ID), 1, "node-b asks for the ledger's certificate once");
    assert!(ca.asked.lock().map_err(|_| "poisoned")?.iter().all(|(_, ttl)| *ttl == 24 * 3600), "SECRET_TTL's default");
    let dump: serde_json::Value = serde_json::from_str(&node_b.admin("/config_dump")?)?;
    assert!(dump["source"].as_str().is_some_and(|s| s.contains("istiod delta xDS")), "{}", dump["source"]);
    assert!(dump["ca"].as_str().is_some_and(|s| s.starts_with("http://127.0.0.1:")), "{}", dump["ca"]);
    let certs = node_b.admin("/certificates")?;
    assert!(certs.lines().any(|l| l.starts_with("ROOTCA") && l.contains("Available")), "{certs}");
    assert!(certs.contains(LEDGER_ID), "{certs}");
    config_dump_reads_as_istios(&dump, b)?;

    // istiod pushes a DENY for accounts: the next connection is refused.
    let before = node_b.generation()?;
    istiod.set(1, authorization("no-accounts", security::Action::Deny, ACCOUNTS))?;
    node_b.wait_generation_past(before)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let outcome = connect()?;
        if outcome.is_err() || Instant::now() > deadline {
            break outcome.err();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(refused, Some(2), "the DENY istiod pushed applies; node-b log:\n{}", node_b.log_text());
    // The connection opened before the DENY is closed by it.
    assert_ne!(ending_within(&mut live, Duration::from_secs(5)), Ending::Open, "node-b log:\n{}", node_b.log_text());
    assert!(node_b.log_text().contains("the new configuration denies it"), "{}", node_b.log_text());

    // istiod goes away: the proxy keeps enforcing what it has, and readiness says why.
    istiod.stop()?;
    server.abort();
    let (code, body) = readiness_saying(SocketAddr::new(node_b.ip, 15021), "configuration source")?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("istiod"), "{body}");
    assert_eq!(connect()?.err(), Some(2), "the DENY is still enforced");
    Ok(())
}

const ACCOUNTS_ID: &str = "spiffe://cluster.local/ns/payments/sa/accounts";
const LEDGER_ID: &str = "spiffe://cluster.local/ns/payments/sa/ledger";

/// Connects until the tunnel is up (certificates come from the CA in the background) or 10 s have passed.
fn wait_connected(
    connect: &dyn Fn() -> Result<std::result::Result<std::net::TcpStream, u8>>,
) -> Result<std::result::Result<std::net::TcpStream, u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect()? {
            Ok(stream) => return Ok(Ok(stream)),
            Err(code) if Instant::now() > deadline => return Ok(Err(code)),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn certificates_from_istiod_are_retried_checked_and_renewed() -> Result {
    let b = Block(49);
    let setup = Setup::new(49, "")?;
    backend(SocketAddr::new(b.ip(2, 20), 8080), "ledger\n")?;
    let istiod = Istiod::default();
    istiod.set(0, pod("accounts-0", "accounts", "node-a", b.ip(1, 10), &[]))?;
    istiod.set(0, pod("ledger-0", "ledger", "node-b", b.ip(2, 20), &[]))?;
    istiod.set(1, authorization("ledger-allow", security::Action::Allow, ACCOUNTS))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let ca = IstiodCa::new(&setup, None)?;
    // The CA refuses the first three requests (whoever asks).
    ca.refuse.store(3, std::sync::atomic::Ordering::SeqCst);
    let (url, _server) = serve(&runtime, &istiod, &ca)?;
    let source = ["--xds-address".into(), url.into(), "--cert-ttl".into(), "8s".into()];
    let a = setup.node_from("node-a", 1, &source, &[])?;
    let node_b = setup.node_from("node-b", 2, &source, &[])?;
    let connect = || socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(2, 20), 8080)));

    // Refusals are retried with back-off until the CA answers.
    let mut stream = wait_connected(&connect)?.map_err(|code| {
        format!("refused with {code}; node-a log:\n{}\nnode-b log:\n{}", a.log_text(), node_b.log_text())
    })?;
    assert_eq!(read_text(&mut stream, 7)?, "ledger\n");
    drop(stream);
    let asked = ca.asked_for(ACCOUNTS_ID) + ca.asked_for(LEDGER_ID);
    assert!(asked >= 5, "three refusals, then one answer each: {asked} requests");
    assert!(
        a.log_text().contains("no certificate from the CA") || node_b.log_text().contains("no certificate from the CA")
    );
    assert!(
        ca.asked.lock().map_err(|_| "poisoned")?.iter().all(|(_, ttl)| *ttl == 8),
        "--cert-ttl as validity_duration"
    );

    // Renewed at half-life (4 s): asked again, and connections go on with the renewed certificates.
    let renewed = Instant::now() + Duration::from_secs(12);
    let before = ca.asked_for(LEDGER_ID);
    while ca.asked_for(LEDGER_ID) == before && Instant::now() < renewed {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ca.asked_for(LEDGER_ID) > before,
        "the ledger's certificate is renewed; node-b log:\n{}",
        node_b.log_text()
    );
    let mut stream = wait_connected(&connect)?.map_err(|code| format!("refused after renewal with {code}"))?;
    assert_eq!(read_text(&mut stream, 7)?, "ledger\n");
    drop(stream);

    // A CA that signs another identity than the one asked for is not believed: the next renewal is refused,
    // the certificate in use stays until it expires, and then the ledger's handshakes fail.
    *ca.impostor.lock().map_err(|_| "poisoned")? = Some("spiffe://cluster.local/ns/payments/sa/admin".into());
    let refused = Instant::now() + Duration::from_secs(20);
    while !node_b.log_text().contains("answer refused") && Instant::now() < refused {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = node_b.log_text();
    assert!(log.contains("answer refused") && log.contains("ns/payments/sa/admin"), "{log}");
    let certs = node_b.admin("/certificates")?;
    assert!(!certs.contains("sa/admin"), "the impostor certificate is never stored: {certs}");
    Ok(())
}

/// node-b's config dump in the shape of Istio's ztunnel (`istioctl ztunnel-config all -o json`): what istiod
/// sent, services with their endpoints, certificates with chain and roots; and it loads back into a mesh that
/// decides as the proxy does.
fn config_dump_reads_as_istios(dump: &serde_json::Value, b: Block) -> Result {
    let ledger_ip = b.ip(2, 20).to_string();
    let workloads = dump["workloads"].as_array().ok_or("no workloads")?;
    let ledger = workloads
        .iter()
        .find(|w| w["uid"] == "Kubernetes//Pod/payments/ledger-0")
        .ok_or_else(|| format!("no ledger workload: {workloads:?}"))?;
    assert_eq!(ledger["workloadIps"], serde_json::json!([ledger_ip]));
    assert_eq!(
        (&ledger["protocol"], &ledger["serviceAccount"], &ledger["node"]),
        (&"HBONE".into(), &"ledger".into(), &"node-b".into())
    );
    let service = dump["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["hostname"] == "ledger.payments.svc.cluster.local"))
        .ok_or("no ledger service")?;
    assert_eq!(service["vips"], serde_json::json!([format!("/{}", b.ip(100, 20))]));
    assert_eq!(service["endpoints"]["Kubernetes//Pod/payments/ledger-0"]["port"], serde_json::json!({"80": 8080}));
    let policy = dump["policies"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "ledger-allow"))
        .ok_or("no ledger-allow policy")?;
    assert_eq!(policy["action"], "Allow");
    assert_eq!(policy["rules"], serde_json::json!([[[{"principals": [{"Exact": ACCOUNTS}]}]]]));
    let cert = dump["certificates"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["identity"] == LEDGER_ID))
        .ok_or("no ledger certificate")?;
    assert_eq!(cert["state"], "Available");
    let leaf = &cert["certChain"][0];
    use base64::Engine as _;
    let pem = base64::engine::general_purpose::STANDARD.decode(leaf["pem"].as_str().ok_or("no pem")?)?;
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert!(leaf["serialNumber"].as_str().is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())));
    for field in ["validFrom", "expirationTime"] {
        let time = leaf[field].as_str().ok_or(field)?;
        assert!(time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "{field}: {time}");
    }
    assert_eq!(cert["rootCerts"].as_array().map(Vec::len), Some(1));

    // The dump as a mesh: accounts may reach the ledger, another identity may not.
    let mut mesh = mesh_policy::Mesh::default();
    mesh.apply_yaml(&dump.to_string())?;
    let snapshot = mesh.snapshot();
    let id = snapshot.cluster().workload_by_ip(b.ip(2, 20)).ok_or("the ledger is not in the dump's mesh")?;
    let target = snapshot.workload_target(id, 8080).ok_or("no target")?;
    let peer = |p: &str| mesh_identity::spiffe::IstioIdentity::parse_principal(p);
    let (accounts, web) = (peer(ACCOUNTS)?, peer("cluster.local/ns/payments/sa/web")?);
    let check = |who| {
        let connection = mesh_policy::proxy::Connection::new(target).with_peer(who).with_source_ip(b.ip(1, 10));
        snapshot.authorize_connection(&connection).allowed
    };
    assert!(check(&accounts) && !check(&web));
    Ok(())
}
