//! Two node proxies on loopback, as processes: Pods are addresses of 127.<block>.0.0/16 with backends standing
//! in for them, clients connect through SOCKS5 from their Pod's address.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::{
    ACCOUNTS, Block, Ending, Result, Setup, To, allow, backend, closed_within, cluster, echo, ending_within, read_text,
    socks5,
};

fn setup(block: u8) -> Result<(Setup, support::NodeProxy, support::NodeProxy)> {
    let b = Block(block);
    let setup = Setup::new(block, &cluster(b))?;
    setup.write_config("policies.yaml", &allow(ACCOUNTS))?;
    backend(SocketAddr::new(b.ip(2, 20), 8080), "ledger\n")?;
    let a = setup.node("node-a", 1, &[])?;
    let node_b = setup.node("node-b", 2, &[])?;
    Ok((setup, a, node_b))
}

#[test]
fn allowed_denied_by_l4_policy_and_outside_the_mesh() -> Result {
    let (setup, a, node_b) = setup(31)?;
    let b = setup.block;

    // accounts → the ledger Service, by name and by VIP: mTLS to node-b, allowed by the ledger's policy.
    let mut by_name = socks5(a.socks5(), b.ip(1, 10), To::Host("ledger.payments.svc.cluster.local", 80))?
        .map_err(|code| format!("refused with {code}; node-a log:\n{}", a.log_text()))?;
    assert_eq!(read_text(&mut by_name, 7)?, "ledger\n");
    assert_eq!(echo(&mut by_name, "debit 10")?, "debit 10");
    let mut by_vip = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut by_vip, 7)?, "ledger\n");
    drop(by_vip);
    drop(by_name);

    // probe → ledger: denied at node-b's inbound (401), refused to the client ("not allowed by ruleset").
    let denied = socks5(a.socks5(), b.ip(1, 40), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
    assert_eq!(denied.err(), Some(2), "the probe must be refused by L4 policy");

    // A source that is no workload of node-a is refused too.
    let stranger = socks5(a.socks5(), b.ip(1, 99), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
    assert_eq!(stranger.err(), Some(2));

    // Outside the mesh: plain TCP passthrough.
    backend(SocketAddr::new(b.ip(5, 5), 9000), "outside\n")?;
    let mut outside = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(5, 5), 9000)))?
        .map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut outside, 8)?, "outside\n");
    drop(outside);

    // The operational views.
    let workloads = a.admin("/workloads")?;
    assert!(workloads.starts_with("NAMESPACE POD NAME"), "{workloads}");
    assert!(
        workloads.lines().any(|l| l.contains("ledger-0") && l.contains("node-b") && l.ends_with("HBONE")),
        "{workloads}"
    );
    let services = a.admin("/services")?;
    assert!(
        services.lines().any(|l| l.starts_with("payments") && l.contains(" ledger ") && l.ends_with("1/1")),
        "{services}"
    );
    let certificates = node_b.admin("/certificates")?;
    assert!(certificates.lines().any(|l| l.starts_with("ROOTCA") && l.contains("Available")), "{certificates}");
    assert!(certificates.contains("spiffe://cluster.local/ns/payments/sa/ledger"), "{certificates}");
    assert!(!certificates.contains("sa/accounts"), "node-b holds only its own workloads' certificates");
    std::thread::sleep(Duration::from_millis(200));
    let inbound = node_b.metrics()?;
    let allowed = inbound.lines().find(|l| {
        l.starts_with("istio_tcp_connections_opened_total{reporter=\"destination\"")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/payments/sa/accounts\"")
            && l.contains("destination_workload=\"ledger-0\"")
            && l.contains("response_flags=\"-\"")
    });
    assert!(allowed.is_some_and(|l| l.ends_with(" 2")), "{inbound}");
    assert!(inbound.lines().any(|l| l.contains("sa/probe") && l.contains("response_flags=\"DENY\"")), "{inbound}");
    let outbound = a.metrics()?;
    assert!(
        outbound.contains("istio_tcp_sent_bytes_total{reporter=\"source\",source_workload=\"accounts-0\""),
        "{outbound}"
    );
    // The denial is in node-b's access log with its reason.
    let log = node_b.log_text();
    assert!(log.lines().any(|l| l.contains("connection denied") && l.contains("sa/probe")), "{log}");

    // Metrics add up: every connection counted as opened is counted as closed, series by series.
    std::thread::sleep(Duration::from_millis(300));
    for (node, text) in [("node-a", a.metrics()?), ("node-b", node_b.metrics()?)] {
        let series = |family: &str| -> std::collections::BTreeMap<String, String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(family))
                .filter_map(|l| l.rsplit_once(' '))
                .map(|(labels, value)| (labels.to_owned(), value.to_owned()))
                .collect()
        };
        let (opened, closed) =
            (series("istio_tcp_connections_opened_total"), series("istio_tcp_connections_closed_total"));
        assert!(!opened.is_empty(), "{node}: {text}");
        assert_eq!(opened, closed, "{node}: opened and closed differ:\n{text}");
    }
    Ok(())
}

#[test]
fn a_reload_that_tightens_policy_closes_a_live_connection_and_a_broken_file_changes_nothing() -> Result {
    let (setup, a, node_b) = setup(32)?;
    let b = setup.block;
    let ledger = To::Addr(SocketAddr::new(b.ip(100, 20), 80));
    let mut live = socks5(a.socks5(), b.ip(1, 10), ledger)?.map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut live, 7)?, "ledger\n");

    // A broken file: refused, the policy in force stays, the live connection too.
    let before = node_b.generation()?;
    setup.write_config(
        "broken.yaml",
        &allow(ACCOUNTS).replace("action: ALLOW", "action: MAYBE").replace("ledger-allow", "broken"),
    )?;
    node_b.wait_generation_past(before)?;
    let dump: serde_json::Value = serde_json::from_str(&node_b.admin("/config_dump")?)?;
    assert_eq!(dump["generation"].as_u64(), Some(before));
    let errors = dump["reload"]["last_errors"].to_string();
    assert!(errors.contains("broken.yaml") && errors.contains("action"), "{errors}");
    // The settings in force, as plain data, and why the proxy is (not) ready.
    assert_eq!(dump["config"]["node"], "node-b");
    assert_eq!(dump["config"]["common"]["mesh"]["trust_domain"], "cluster.local");
    assert_eq!(dump["config"]["common"]["drain_timeout"].as_str().map(|d| d.ends_with('s')), Some(true));
    assert_eq!(dump["ready"]["ready"], true);
    assert!(dump["source"].as_str().is_some_and(|s| s.starts_with("files ")), "{}", dump["source"]);
    assert_eq!(echo(&mut live, "still here")?, "still here");
    let again = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
    assert!(again.is_ok(), "the configuration in force still allows accounts");
    std::fs::remove_file(setup.config_dir().join("broken.yaml"))?;

    // Tightened: only `nobody` may reach the ledger. The live connection is closed, new ones are refused.
    let before = node_b.wait_generation_past(before)?;
    setup.write_config("policies.yaml", &allow("cluster.local/ns/payments/sa/nobody"))?;
    node_b.wait_generation_past(before)?;
    assert!(
        closed_within(&mut live, Duration::from_secs(5)),
        "the live connection must be closed; log:\n{}",
        node_b.log_text()
    );
    let refused = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
    assert_eq!(refused.err(), Some(2));
    assert!(node_b.log_text().contains("the new configuration denies it"));
    Ok(())
}

#[test]
fn certificates_rotate_under_a_live_connection() -> Result {
    let b = Block(33);
    let setup = Setup::new(33, &cluster(b))?;
    setup.write_config("policies.yaml", &allow(ACCOUNTS))?;
    backend(SocketAddr::new(b.ip(2, 20), 8080), "ledger\n")?;
    // Four-second certificates, renewed at half their life.
    let a = setup.node("node-a", 1, &["--cert-ttl", "4s"])?;
    let node_b = setup.node("node-b", 2, &["--cert-ttl", "4s"])?;
    let renew_at = |node: &support::NodeProxy| -> Result<String> {
        let certs = node.admin("/certificates")?;
        let line = certs.lines().find(|l| l.contains("sa/ledger")).ok_or("no ledger certificate")?.to_owned();
        Ok(line.split_whitespace().last().unwrap_or_default().to_owned())
    };
    let first = renew_at(&node_b)?;
    let mut live = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut live, 7)?, "ledger\n");
    // Past the first certificate's expiry, exchanging all along.
    for i in 0..12 {
        assert_eq!(echo(&mut live, &format!("tick {i}"))?, format!("tick {i}"));
        std::thread::sleep(Duration::from_millis(450));
    }
    assert_ne!(renew_at(&node_b)?, first, "the ledger's certificate must have been renewed");
    assert!(node_b.log_text().contains("workload certificate renewed"));
    // New connections use the renewed certificates.
    let mut fresh = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}; log:\n{}", node_b.log_text()))?;
    assert_eq!(read_text(&mut fresh, 7)?, "ledger\n");
    Ok(())
}

#[test]
fn sigterm_drains_and_exits_cleanly() -> Result {
    let b = Block(34);
    let setup = Setup::new(34, &cluster(b))?;
    let mut node = setup.node("node-a", 1, &["--drain-timeout", "1s"])?;
    let status = node.terminate()?;
    assert!(status.success(), "{status:?}");
    assert!(node.log_text().contains("draining"));
    Ok(())
}

#[test]
fn startup_errors_say_what_to_do() -> Result {
    let b = Block(35);
    let setup = Setup::new(35, &cluster(b))?;
    let run = |args: &[&str]| -> Result<(bool, String)> {
        let out = Command::new(env!("CARGO_BIN_EXE_mesh-ztunnel")).args(args).output()?;
        Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()))
    };
    let config = setup.config_dir().display().to_string();
    let ca = setup.ca_dir().display().to_string();
    let node_ip = b.node(1);
    let addr = |port: u16| format!("{node_ip}:{port}");
    let base = |admin: String| -> Vec<String> {
        ["--node", "node-a", "--config", &config, "--ca-dir", &ca, "--listen-on-workload-ips"]
            .iter()
            .map(ToString::to_string)
            .chain(["--admin-addr".into(), admin])
            .chain(["--metrics-addr".into(), addr(15020), "--readiness-addr".into(), addr(15021)])
            .chain(["--socks5-addr".into(), addr(15080), "--outbound-addr".into(), addr(15001)])
            .collect()
    };

    // A port in use.
    let taken = std::net::TcpListener::bind(SocketAddr::new(node_ip, 15000))?;
    let args = base(addr(15000));
    let (ok, stderr) = run(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert!(!ok && stderr.contains("in use") && stderr.contains("--admin-addr"), "{stderr}");
    drop(taken);

    // A missing CA directory.
    let mut args = base(addr(15000));
    let i = args.iter().position(|a| a == &ca).ok_or("no ca")?;
    args[i] = "/nonexistent/ca".into();
    let (ok, stderr) = run(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert!(!ok && stderr.contains("/nonexistent/ca") && stderr.contains("ca-cert.pem"), "{stderr}");

    // An unreadable configuration, and an invalid one.
    let mut args = base(addr(15000));
    let i = args.iter().position(|a| a == &config).ok_or("no config")?;
    args[i] = "/nonexistent/config.yaml".into();
    let (ok, stderr) = run(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert!(!ok && stderr.contains("/nonexistent/config.yaml"), "{stderr}");
    setup.write_config("bad.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: payments}\nspec: {action: MAYBE}\n")?;
    let (ok, stderr) = run(&base(addr(15000)).iter().map(String::as_str).collect::<Vec<_>>())?;
    assert!(!ok && stderr.contains("bad.yaml") && stderr.contains("action"), "{stderr}");
    Ok(())
}

/// A DENY of the accounts Pod's address, beside the ALLOW of its identity.
fn deny_block(ip: std::net::IpAddr) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ledger-deny-block, namespace: payments}}
spec:
  selector: {{matchLabels: {{app: ledger}}}}
  action: DENY
  rules: [{{from: [{{source: {{ipBlocks: ["{ip}/32"]}}}}]}}]
"#
    )
}

/// Opens a tunnel to the ledger at node-b as the accounts identity, dialling from `from` and claiming
/// `claimed` in `forwarded`: the CONNECT's status (200 when opened).
fn hbone_as_accounts(setup: &Setup, from: std::net::IpAddr, claimed: std::net::IpAddr) -> Result<u16> {
    use mesh_hbone::transport::{ClientConfig, Destination, HboneClient};
    use mesh_hbone::{ConnectRequest, Forwarded};
    let b = setup.block;
    let (store, id) = setup.identity("payments", "accounts")?;
    let config = ClientConfig { local_ip: Some(from), ..ClientConfig::default() };
    let client = HboneClient::from_store_with_config(store, id, config);
    let ledger = mesh_identity::spiffe::SpiffeId::new("spiffe://cluster.local/ns/payments/sa/ledger")?;
    let destination = Destination { address: SocketAddr::new(b.ip(2, 20), 15008), identities: vec![ledger] };
    let request = ConnectRequest::new(SocketAddr::new(b.ip(2, 20), 8080))
        .with_forwarded(Forwarded::for_source(SocketAddr::new(claimed, 0)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match client.connect(&destination, request).await {
            Ok(_) => Ok(200),
            Err(e) => Ok(e.refused().map(|r| r.status.as_u16()).ok_or_else(|| format!("no answer: {e}"))?),
        }
    })
}

#[test]
fn ip_blocks_match_the_address_a_peer_connects_from_never_what_it_claims() -> Result {
    let (setup, a, node_b) = setup(37)?;
    let b = setup.block;
    let accounts = b.ip(1, 10);
    let before = node_b.generation()?;
    setup.write_config("deny.yaml", &deny_block(accounts))?;
    node_b.wait_generation_past(before)?;
    a.wait_generation_past(before)?;

    // Through node-a: the tunnel leaves from the accounts Pod's address, so the DENY of that address holds.
    let through_node = socks5(a.socks5(), accounts, To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
    assert_eq!(through_node.err(), Some(2), "node-b must see the accounts Pod's address; log:\n{}", node_b.log_text());
    let log = node_b.log_text();
    assert!(
        log.lines().any(|l| l.contains("connection denied") && l.contains(&format!("src.addr={accounts}"))),
        "{log}"
    );

    // A peer holding a mesh certificate, dialling from the denied address and writing another in `forwarded`:
    // still denied.
    let lying = hbone_as_accounts(&setup, accounts, b.ip(1, 77))?;
    assert_eq!(lying, 401, "a claim in forwarded must not pass an ipBlocks DENY; log:\n{}", node_b.log_text());
    // The same identity from another address, claiming the denied one: judged by where it connects from.
    let honest = hbone_as_accounts(&setup, b.ip(1, 11), accounts)?;
    assert_eq!(honest, 200, "log:\n{}", node_b.log_text());
    let log = node_b.log_text();
    assert!(log.contains(&format!("src.claimed_addr={}", b.ip(1, 77))), "the claim is logged as a claim: {log}");
    Ok(())
}

#[test]
fn a_tunnel_cut_by_a_failure_reaches_the_client_as_a_reset() -> Result {
    let (setup, a, mut node_b) = setup(38)?;
    let b = setup.block;
    let mut live = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut live, 7)?, "ledger\n");
    // The destination's node proxy dies: the client must not read a clean end of stream.
    node_b.child.kill()?;
    let _ = node_b.child.wait();
    assert_eq!(ending_within(&mut live, Duration::from_secs(5)), Ending::Reset, "log:\n{}", a.log_text());
    Ok(())
}

#[test]
fn a_drain_answers_503_closes_listeners_and_keeps_connections_until_the_deadline() -> Result {
    let b = Block(39);
    let setup = Setup::new(39, &cluster(b))?;
    setup.write_config("policies.yaml", &allow(ACCOUNTS))?;
    backend(SocketAddr::new(b.ip(2, 20), 8080), "ledger\n")?;
    let mut a = setup.node("node-a", 1, &["--drain-timeout", "2s"])?;
    let mut node_b = setup.node("node-b", 2, &["--drain-timeout", "2s"])?;
    let ledger = To::Addr(SocketAddr::new(b.ip(100, 20), 80));

    // node-a drains with an outbound (SOCKS5) connection in flight.
    let mut outbound = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut outbound, 7)?, "ledger\n");
    let started = std::time::Instant::now();
    a.signal_term()?;
    let mut saw_503 = false;
    while started.elapsed() < Duration::from_secs(1) {
        if a.readiness().is_ok_and(|status| status == 503) {
            saw_503 = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_503, "readiness must answer 503 while draining; log:\n{}", a.log_text());
    assert!(socks5(a.socks5(), b.ip(1, 10), ledger).is_err(), "the SOCKS5 listener is closed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(echo(&mut outbound, "in flight")?, "in flight", "connections in flight carry on during the drain");
    // At the deadline the connection is cut: a reset, since it did not end on its own.
    assert_eq!(ending_within(&mut outbound, Duration::from_secs(4)), Ending::Reset);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1900), "cut after {elapsed:?}, before the 2 s deadline");
    assert!(a.wait_exit(Duration::from_secs(5))?.success());

    // node-b drains with an inbound HBONE connection in flight (from node-a's successor).
    let a2 = setup.node("node-a", 1, &[])?;
    let mut inbound = socks5(a2.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut inbound, 7)?, "ledger\n");
    let started = std::time::Instant::now();
    node_b.signal_term()?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node_b.readiness().ok(), Some(503));
    assert_eq!(echo(&mut inbound, "inbound")?, "inbound", "inbound tunnels carry on during the drain");
    assert_eq!(ending_within(&mut inbound, Duration::from_secs(4)), Ending::Reset, "log:\n{}", a2.log_text());
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert!(node_b.wait_exit(Duration::from_secs(5))?.success());
    assert!(node_b.log_text().contains("drain deadline passed"), "{}", node_b.log_text());
    Ok(())
}

#[test]
fn metric_series_of_a_workload_that_is_gone_are_dropped() -> Result {
    let (setup, a, node_b) = setup(40)?;
    let b = setup.block;
    let mut allowed = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?
        .map_err(|code| format!("refused with {code}"))?;
    assert_eq!(read_text(&mut allowed, 7)?, "ledger\n");
    drop(allowed);
    let denied = socks5(a.socks5(), b.ip(1, 40), To::Addr(SocketAddr::new(b.ip(100, 20), 80)))?;
    assert_eq!(denied.err(), Some(2));
    let probe_series = |text: &str| text.lines().any(|l| l.contains("source_workload=\"probe\""));
    std::thread::sleep(Duration::from_millis(200));
    assert!(probe_series(&node_b.metrics()?), "{}", node_b.metrics()?);
    // The probe Pod leaves the cluster: its series go with it.
    let before = node_b.generation()?;
    let without_probe = cluster(b).replace(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: probe, namespace: payments, labels: {{run: probe}}}}\nspec: {{serviceAccountName: probe, nodeName: node-a}}\nstatus: {{phase: Running, podIP: {}}}\n---\n",
            b.ip(1, 40)
        ),
        "",
    );
    assert_ne!(without_probe, cluster(b), "the probe Pod is in the cluster text");
    setup.write_config("mesh.yaml", &without_probe)?;
    node_b.wait_generation_past(before)?;
    std::thread::sleep(Duration::from_millis(300));
    let metrics = node_b.metrics()?;
    assert!(!probe_series(&metrics), "{metrics}");
    assert!(metrics.contains("source_workload=\"accounts-0\""), "other series stay: {metrics}");
    Ok(())
}

/// A backend whose accept queue is full: a connect to it waits (the kernel drops SYNs) until `open` is called,
/// when it accepts everything and greets as the ledger.
struct StalledBackend {
    listener: std::net::TcpListener,
    _fillers: Vec<std::net::TcpStream>,
}

impl StalledBackend {
    fn new(addr: SocketAddr) -> Result<Self> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(0)?;
        let listener: std::net::TcpListener = socket.into();
        // Fill the accept queue (backlog 0 holds one): further SYNs are dropped and retried by the kernel.
        let fillers = (0..2)
            .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok())
            .collect();
        Ok(StalledBackend { listener, _fillers: fillers })
    }

    fn open(self) {
        std::thread::spawn(move || {
            for stream in self.listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let _ = std::io::Write::write_all(&mut stream, b"ledger\n");
                    let mut buf = [0u8; 64];
                    while std::io::Read::read(&mut stream, &mut buf).is_ok_and(|n| n > 0) {}
                });
            }
        });
    }
}

#[test]
fn a_reload_landing_while_the_workload_is_being_connected_still_denies() -> Result {
    let b = Block(41);
    let setup = Setup::new(41, &cluster(b))?;
    setup.write_config("policies.yaml", &allow(ACCOUNTS))?;
    let stalled = StalledBackend::new(SocketAddr::new(b.ip(2, 20), 8080))?;
    let a = setup.node("node-a", 1, &[])?;
    let node_b = setup.node("node-b", 2, &[])?;
    // Allowed when decided; node-b's connect to the ledger then waits on the full accept queue.
    let client = std::thread::spawn(move || {
        let outcome = socks5(a.socks5(), b.ip(1, 10), To::Addr(SocketAddr::new(b.ip(100, 20), 80)));
        outcome.map(|r| r.err()).map_err(|e| e.to_string())
    });
    std::thread::sleep(Duration::from_millis(150));
    let before = node_b.generation()?;
    setup.write_config("policies.yaml", &allow("cluster.local/ns/payments/sa/nobody"))?;
    node_b.wait_generation_past(before)?;
    // The deny is in force; now the connect completes.
    stalled.open();
    let outcome = client.join().map_err(|_| "the client panicked")??;
    assert_eq!(
        outcome,
        Some(2),
        "decided under the old policy, connected under the new one: must be refused; node-b log:\n{}",
        node_b.log_text()
    );
    let log = node_b.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("connection denied") && l.contains("error=closed: the new configuration denies it")),
        "{log}"
    );
    Ok(())
}
