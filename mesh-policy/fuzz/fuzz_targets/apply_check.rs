//! Feeds arbitrary bytes through `Mesh::apply_yaml` and `Mesh::check`: a manifest, then (after a NUL byte) a
//! check request as JSON. Nothing may panic, and the YAML reader's budgets keep memory and time bounded by
//! the size of the input. Whatever applies is checked with the fuzzed request and with fixed ones at both
//! enforcement points; a DENY-all policy added on top must deny every one of them.
//!
//! Run with `cargo +nightly fuzz run apply_check` from `mesh-policy/`; the regression corpus
//! `../tests/hostile/` makes good seeds (`cargo +nightly fuzz run apply_check ../tests/hostile`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_policy::{CheckRequest, Mesh};

const FIXED: [&str; 3] = [
    r#"{"destination": {"namespace": "payments", "workload_labels": {"app": "ledger"}, "port": 8080, "ip": "::ffff:10.0.0.1"},
        "source": {"principal": "cluster.local/ns/payments/sa/accounts", "ip": "10.1.2.3"}}"#,
    r#"{"destination": {"namespace": "payments", "service": "ledger", "waypoint": "waypoint"},
        "http": {"method": "GET", "path": "/a/../b", "headers": {"X-A": "1", "x-a": "2"}}}"#,
    r#"{"destination": {"namespace": "istio-system", "port": 15021}}"#,
];

const DENY_ALL: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: zz-deny-all-fuzz, \
                        namespace: istio-system}\nspec: {action: DENY, rules: [{}]}\n---\napiVersion: \
                        security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: zz-deny-all-fuzz, \
                        namespace: payments}\nspec: {targetRefs: [{kind: Service, group: \"\", name: ledger}], \
                        action: DENY, rules: [{}]}\n";

fuzz_target!(|data: &[u8]| {
    let (manifest, request) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(manifest) = std::str::from_utf8(manifest) else { return };
    let mut mesh = Mesh::default();
    if let Err(e) = mesh.apply_yaml(manifest) {
        // Messages are bounded whatever the input.
        assert!(e.to_string().len() < 64 * 1024);
        return;
    }
    let mut requests: Vec<CheckRequest> = FIXED.iter().filter_map(|r| serde_json::from_str(r).ok()).collect();
    requests.extend(serde_json::from_slice::<CheckRequest>(request).ok());
    for r in &requests {
        let _ = mesh.check(r);
        let _ = mesh.check_at(r, 1_700_000_000);
    }
    // The fixed requests are all covered by the DENY-all policies (mesh-wide at ztunnel, the ledger Service at
    // the waypoint).
    if mesh.apply_yaml(DENY_ALL).is_ok() {
        for r in &requests[..requests.len().min(FIXED.len())] {
            if let Ok(d) = mesh.check(r) {
                assert!(!d.allowed, "allowed after a DENY-all: {d}");
            }
        }
    }
});
