//! In-pod mode against a scripted istio-cni node agent: the agent listens on a SEQPACKET socket, the node
//! proxy (in a network namespace of its own) connects and says hello, and the agent hands over two Pods'
//! network namespaces (joined by a veth pair) with SCM_RIGHTS. The proxy listens inside each Pod: accounts'
//! connection to the ledger, redirected to 15001 by istio-cni's rules in accounts' namespace, goes over HBONE
//! from inside accounts to 15008 inside the ledger (where the rules send it by TPROXY), and reaches the ledger's backend as the policy allows. Every
//! request gets one answer; bad ones a reason; a del closes the Pod's listeners; an agent restart is followed
//! and its snapshot stops what it leaves out. Needs root, `ip` and `iptables`: in CI (`CI` set) their absence
//! fails the test; elsewhere it is skipped with a printed reason.

mod support;

use std::os::fd::OwnedFd;
use std::process::Stdio;

use support::inpod::{
    Agent, Killed, Netns, add, del, istio_inpod_rules, keep, python_client, python_server, python_status, requirements,
    snapshot_sent, until,
};
use support::{Result, Setup};

const CLUSTER: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: payments, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: accounts-0, namespace: payments, labels: {app: accounts}}
spec: {serviceAccountName: accounts, nodeName: node-a}
status: {phase: Running, podIP: 10.77.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: ledger-0, namespace: payments, labels: {app: ledger}}
spec: {serviceAccountName: ledger, nodeName: node-a}
status: {phase: Running, podIP: 10.77.0.2}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-allow, namespace: payments}
spec:
  selector: {matchLabels: {app: ledger}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/payments/sa/accounts"]}}]}]
"#;

#[test]
fn pods_handed_over_by_istio_cni_are_served_inside_their_namespaces() -> Result {
    if let Err(reason) = requirements() {
        if std::env::var_os("CI").is_some() {
            return Err(format!("CI runs as root with iptables installed, but: {reason}").into());
        }
        println!("skipped: in-pod mode needs network namespaces and iptables ({reason})");
        return Ok(());
    }
    let ready = python_status("http://127.0.0.1:15021/healthz/ready");
    let client = python_client("10.77.0.2", 8080, Some("10.77.0.1"));
    let node = Netns::create("node")?;
    let accounts = Netns::create("accounts")?;
    let ledger = Netns::create("ledger")?;
    accounts.link("eth0", "10.77.0.1/24", &ledger, "eth0", "10.77.0.2/24")?;
    // istio-cni's in-pod rules in both Pods.
    istio_inpod_rules(&accounts)?;
    istio_inpod_rules(&ledger)?;
    let _backend = Killed(
        ledger
            .command("python3")
            .args(["-c", &python_server("10.77.0.2", 8080, Some("ledger"))])
            .stdout(Stdio::null())
            .spawn()?,
    );

    let setup = Setup::new(50, CLUSTER)?;
    let uds = setup.dir.path().join("ztunnel.sock");
    let mut agent = Agent::listen(&uds)?;
    let log = setup.dir.path().join("node-a.log");
    let _proxy = Killed(
        node.command(env!("CARGO_BIN_EXE_mesh-ztunnel"))
            .args(["--node", "node-a", "--reload-interval", "100ms"])
            .arg("--config")
            .arg(setup.config_dir())
            .arg("--ca-dir")
            .arg(setup.ca_dir())
            .arg("--inpod-uds")
            .arg(&uds)
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // The proxy connects once its configuration is in and speaks first: ZdsHello{version: V1}.
    assert_eq!(agent.accept().map_err(|e| format!("{e}; log:\n{}", log_text()))?, [0x08, 0x01]);
    // Not ready until the agent's snapshot is in.
    assert_eq!(node.python(&ready)?, "503");
    assert_eq!(agent.ask(add("uid-accounts", "accounts-0", "accounts"), Some(&accounts.open()?))?, Ok(()));
    assert_eq!(agent.ask(add("uid-ledger", "ledger-0", "ledger"), Some(&ledger.open()?))?, Ok(()));
    // A descriptor that is not a network namespace, and an add without one, are refused with a reason.
    let not_netns: OwnedFd = std::fs::File::open("/dev/null")?.into();
    let refused = agent.ask(add("uid-bogus", "bogus", "bogus"), Some(&not_netns))?;
    assert!(refused.as_ref().is_err_and(|e| e.contains("uid-bogus")), "{refused:?}");
    let refused = agent.ask(add("uid-bare", "bare", "bare"), None)?;
    assert!(refused.as_ref().is_err_and(|e| e.contains("network namespace")), "{refused:?}");
    assert_eq!(agent.ask(snapshot_sent(), None)?, Ok(()));
    assert_eq!(until(|| node.python(&ready), "200")?, "200", "{}", log_text());

    // accounts → ledger: redirected to 15001 inside accounts, HBONE from inside accounts to 15008 inside the
    // ledger, allowed for accounts' identity, relayed to the backend.
    assert_eq!(until(|| accounts.python(&client), "OK ledger")?, "OK ledger", "{}", log_text());

    // The ledger deleted: its listeners close, so accounts' tunnel has nowhere to go.
    assert_eq!(agent.ask(del("uid-ledger"), None)?, Ok(()));
    assert_eq!(until(|| accounts.python(&client), "CLOSED")?, "CLOSED", "{}", log_text());

    // The agent restarts: the proxy reconnects, is not ready until the new snapshot, keeps accounts and
    // refuses to keep the ledger it no longer serves; the ledger handed over again is served again.
    agent.close();
    assert_eq!(agent.accept()?, [0x08, 0x01]);
    assert_eq!(until(|| node.python(&ready), "503")?, "503");
    assert_eq!(agent.ask(keep("uid-accounts"), None)?, Ok(()));
    let refused = agent.ask(keep("uid-ledger"), None)?;
    assert!(refused.as_ref().is_err_and(|e| e.contains("uid-ledger")), "{refused:?}");
    assert_eq!(agent.ask(add("uid-ledger", "ledger-0", "ledger"), Some(&ledger.open()?))?, Ok(()));
    assert_eq!(agent.ask(snapshot_sent(), None)?, Ok(()));
    assert_eq!(until(|| node.python(&ready), "200")?, "200");
    assert_eq!(until(|| accounts.python(&client), "OK ledger")?, "OK ledger", "{}", log_text());

    // A snapshot that leaves accounts out stops it: its outbound listener closes.
    agent.close();
    assert_eq!(agent.accept()?, [0x08, 0x01]);
    assert_eq!(agent.ask(keep("uid-ledger"), None)?, Ok(()));
    assert_eq!(agent.ask(snapshot_sent(), None)?, Ok(()));
    assert_eq!(until(|| accounts.python(&client), "CLOSED")?, "CLOSED", "{}", log_text());
    Ok(())
}
