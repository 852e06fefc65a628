//! Both guide scenarios as CI runs them: the `mesh-demo` binary, real processes and sockets on loopback.

use std::process::Command;

fn run(scenario: &str) -> (bool, String) {
    match Command::new(env!("CARGO_BIN_EXE_mesh-demo")).arg(scenario).output() {
        Ok(out) => {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        }
        Err(e) => (false, format!("mesh-demo did not run: {e}")),
    }
}

#[test]
fn payments_gives_the_guides_matrix_and_the_classic_mistake_gives_503() {
    let (ok, out) = run("payments");
    assert!(ok, "{out}");
    for line in [
        "ok   accounts, POST /ledger/v1/debit, token with scp ledger.debit",
        "ok   accounts, no token",
        "ok   accounts, expired token",
        "ok   probe, straight to the ledger Pod (L4)",
        "ok   the same good request",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("ztunnel node-b sees cluster.local/ns/payments/sa/payments-waypoint: DENY"), "{out}");
}

#[test]
fn bookinfo_gives_the_page_to_get_and_rbac_denied_to_delete() {
    let (ok, out) = run("bookinfo");
    assert!(ok, "{out}");
    assert!(out.contains("RBAC: access denied"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}
