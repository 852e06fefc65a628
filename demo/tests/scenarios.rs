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
    let probe = refused(&out, "probe, straight to the ledger Pod (L4)");
    assert!(probe.len() == 2 && probe[0].contains("got refused by policy (SOCKS5 reply 2"), "{out}");
    assert!(denial(probe[1], "node-b", "payments/sa/probe", "127.61.2.20:8080"), "{out}");
    // The classic mistake is decided by node-b's own log, not by the offline trace printed after it.
    let mistake: Vec<&str> = out.lines().skip_while(|l| !l.contains("ok   the same good request")).take(2).collect();
    assert!(mistake.len() == 2 && mistake[0].contains("got 503"), "{out}");
    assert!(denial(mistake[1], "node-b", "payments/sa/payments-waypoint", "127.61.2.20:8080"), "{out}");
}

/// `line` is the evidence line of `by`'s denial of `source` to `destination`, as its own log wrote it.
fn denial(line: &str, by: &str, source: &str, destination: &str) -> bool {
    line.trim_start().starts_with(&format!("{by}'s log: connection denied"))
        && (line.contains("decision=\"deny\"") || line.contains("decision=deny "))
        && line.contains(&format!("src.identity=spiffe://cluster.local/ns/{source} "))
        && line.contains(&format!("dst.addr={destination} "))
}

/// The case line starting with `case` that expects a refusal, and the line after it.
fn refused<'a>(out: &'a str, case: &str) -> Vec<&'a str> {
    let at = |l: &&str| l.contains(&format!("ok   {case}")) && l.contains("expected refused");
    out.lines().skip_while(|l| !at(l)).take(2).collect()
}

#[test]
fn bookinfo_gives_the_page_to_get_and_rbac_denied_to_delete() {
    let (ok, out) = run("bookinfo");
    assert!(ok, "{out}");
    assert!(out.contains("RBAC: access denied"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    for (case, source) in [
        ("curl, GET /productpage", "default/sa/curl"),
        ("reviews, straight to the productpage Pod (L4)", "default/sa/bookinfo-reviews"),
    ] {
        let lines = refused(&out, case);
        assert!(lines.len() == 2 && lines[0].contains("got refused by policy (SOCKS5 reply 2"), "{out}");
        assert!(denial(lines[1], "node-2", source, "127.62.2.10:9080"), "{out}");
    }
}
