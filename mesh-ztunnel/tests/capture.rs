//! Transparent capture in a network namespace the test creates: iptables REDIRECT sends a workload's
//! outbound connections to 15001 (original destination from SO_ORIGINAL_DST) and plaintext aimed at a
//! workload to 15006, where PeerAuthentication applies. Needs root, `ip` and `iptables`: in CI (`CI` set) their
//! absence fails the test; elsewhere it is skipped with a printed reason. All traffic stays inside the
//! namespace.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::inpod::{Killed, Netns, python_client, python_server, python_status, requirements};
use support::{Result, Setup};

/// Connects from `source` to `target`, reads what the server says first; prints `OK <text>`, `CLOSED` or `ERR`.
fn client(source: &str, target: &str, port: u16) -> String {
    python_client(target, port, Some(source))
}

/// Connects from `source`, reads the greeting, then waits (up to 10 s) for the connection to end; prints
/// `OK <greeting>`, then `RESET`, `CLOSED` (a clean end) or `OPEN`.
fn held_client(source: &str, target: &str, port: u16) -> String {
    format!(
        r#"
import socket
s = socket.socket()
s.settimeout(10)
s.bind(("{source}", 0))
s.connect(("{target}", {port}))
print("OK " + s.recv(64).decode().strip(), flush=True)
try:
    print("CLOSED" if s.recv(64) == b"" else "DATA")
except ConnectionResetError:
    print("RESET")
except socket.timeout:
    print("OPEN")
"#
    )
}

const CLUSTER: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: payments, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: accounts-0, namespace: payments, labels: {app: accounts}}
spec: {serviceAccountName: accounts, nodeName: node-a}
status: {phase: Running, podIP: 127.36.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: ledger-0, namespace: payments, labels: {app: ledger}}
spec: {serviceAccountName: ledger, nodeName: node-a}
status: {phase: Running, podIP: 127.36.2.20}
---
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: payments}
spec:
  clusterIP: 127.36.100.20
  selector: {app: ledger}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

const STRICT: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: payments}
spec: {mtls: {mode: STRICT}}
"#;

/// A network namespace with Istio's in-pod redirection, the ledger backend and a node proxy.
struct CaptureNode {
    ns: Netns,
    setup: Setup,
    _backend: Killed,
    proxy: Killed,
    log: std::path::PathBuf,
}

/// A [`CaptureNode`] with the proxy started with `extra` arguments, ready; `None` where the namespace cannot
/// be made outside CI.
fn capture_node(suffix: &str, extra: &[&str]) -> Result<Option<CaptureNode>> {
    let ns = match requirements().and_then(|()| Netns::create(&format!("capture-{suffix}"))) {
        Ok(ns) => ns,
        Err(reason) if std::env::var_os("CI").is_some() => {
            return Err(format!("CI runs as root with iptables installed, but: {reason}").into());
        }
        Err(reason) => {
            println!("skipped: transparent capture needs a network namespace and iptables ({reason})");
            return Ok(None);
        }
    };
    // As Istio's in-pod rules: the proxy's own connections carry its mark (1337) and pass; the workload's
    // outbound goes to 15001; plaintext aimed at the workload to 15006. Without the mark, the proxy's own
    // connection to the workload would be sent back to 15006.
    let nat = |rule: &[&str]| -> std::result::Result<(), String> {
        let mut args = vec!["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp"];
        args.extend_from_slice(rule);
        ns.run(&args)
    };
    nat(&["-m", "mark", "--mark", "1337", "-j", "RETURN"])?;
    nat(&["-s", "127.36.1.10", "-j", "REDIRECT", "--to-ports", "15001"])?;
    nat(&["-d", "127.36.2.20", "--dport", "8080", "-j", "REDIRECT", "--to-ports", "15006"])?;
    let setup = Setup::new(36, CLUSTER)?;
    let backend = Killed(
        ns.command("python3")
            .args(["-c", &python_server("127.36.2.20", 8080, Some("ledger"))])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let log = setup.dir.path().join("node-a.log");
    let proxy = Killed(
        ns.command(env!("CARGO_BIN_EXE_mesh-ztunnel"))
            .args(["--node", "node-a", "--reload-interval", "100ms", "--outbound-addr", "0.0.0.0:15001"])
            .arg("--config")
            .arg(setup.config_dir())
            .arg("--ca-dir")
            .arg(setup.ca_dir())
            .args(extra)
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while ns.python(&python_status("http://127.0.0.1:15021/healthz/ready"))? != "200" {
        if Instant::now() > deadline {
            return Err(format!("not ready:\n{}", std::fs::read_to_string(&log)?).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Some(CaptureNode { ns, setup, _backend: backend, proxy, log }))
}

#[test]
fn redirected_outbound_goes_over_hbone_and_strict_refuses_redirected_plaintext() -> Result {
    let Some(CaptureNode { ns, setup, _backend, proxy: _proxy, log }) = capture_node("strict", &[])? else {
        return Ok(());
    };
    // accounts dials the ledger's VIP, where nothing listens: only the node proxy can answer, over HBONE.
    assert_eq!(
        ns.python(&client("127.36.1.10", "127.36.100.20", 80))?,
        "OK ledger",
        "{}",
        std::fs::read_to_string(&log)?
    );
    // A client outside the mesh reaches the ledger in plaintext while the namespace is PERMISSIVE.
    assert_eq!(ns.python(&client("127.36.9.9", "127.36.2.20", 8080))?, "OK ledger");

    // A plaintext connection open when the namespace turns STRICT is closed by the reload.
    let held = ns
        .command("python3")
        .args(["-c", &held_client("127.36.9.9", "127.36.2.20", 8080)])
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    setup.write_config("strict.yaml", STRICT)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut plaintext = String::new();
    while Instant::now() < deadline {
        plaintext = ns.python(&client("127.36.9.9", "127.36.2.20", 8080))?;
        if plaintext != "OK ledger" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(plaintext, "CLOSED", "STRICT must refuse plaintext");
    let held = held.wait_with_output()?;
    assert_eq!(
        String::from_utf8_lossy(&held.stdout).trim(),
        "OK ledger\nRESET",
        "the open plaintext connection must be reset once STRICT is in force"
    );
    // mTLS traffic is unaffected.
    assert_eq!(ns.python(&client("127.36.1.10", "127.36.100.20", 80))?, "OK ledger");
    let log = std::fs::read_to_string(&log)?;
    assert!(log.contains("PeerAuthentication STRICT rejects plaintext (set by payments/default)"), "{log}");
    Ok(())
}

#[test]
fn redirected_connections_carry_on_during_the_drain_and_are_reset_at_its_deadline() -> Result {
    let Some(CaptureNode { ns, setup: _setup, _backend, proxy, log }) =
        capture_node("drain", &["--drain-timeout", "2s"])?
    else {
        return Ok(());
    };
    // A redirected outbound connection (over HBONE) and a redirected plaintext inbound one, both held open.
    let outbound = ns
        .command("python3")
        .args(["-c", &held_client("127.36.1.10", "127.36.100.20", 80)])
        .stdout(Stdio::piped())
        .spawn()?;
    let plaintext = ns
        .command("python3")
        .args(["-c", &held_client("127.36.9.9", "127.36.2.20", 8080)])
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(700));
    let terminated = Instant::now();
    Command::new("kill").args(["-TERM", &proxy.0.id().to_string()]).status()?;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ns.python(&python_status("http://127.0.0.1:15021/healthz/ready"))?,
        "503",
        "readiness answers 503 while draining"
    );
    // New redirected connections are refused: the listeners are closed.
    assert_ne!(ns.python(&client("127.36.1.10", "127.36.100.20", 80))?, "OK ledger");
    for (what, held) in [("outbound", outbound), ("plaintext", plaintext)] {
        let out = held.wait_with_output()?;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "OK ledger\nRESET",
            "{what}: held through the drain, then reset; log:\n{}",
            std::fs::read_to_string(&log)?
        );
    }
    let cut = terminated.elapsed();
    assert!(cut >= Duration::from_millis(1900), "cut after {cut:?}, before the 2 s deadline");
    Ok(())
}
