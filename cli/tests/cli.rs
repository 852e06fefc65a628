//! The mesh-policy command, run as a process: exit codes, output formats, and errors that name the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn payments(file: &str) -> String {
    root().join("examples/manifests/payments").join(file).display().to_string()
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-policy"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_exits_0_when_allowed_1_when_denied_2_on_error() {
    let policies = "bindings/python/examples/policies/payments.yaml";
    let allowed = run(&["check", "-f", policies, "--request", "examples/requests/ledger-l4.yaml"], None);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert!(
        stdout(&allowed).starts_with("ALLOW at ztunnel: allowed by payments/ledger-l4 rule 0"),
        "{}",
        stdout(&allowed)
    );
    let denied = run(
        &["check", "-f", policies, "--request", "-", "--format", "json"],
        Some(
            r#"{"destination": {"namespace": "payments", "service": "ledger"}, "http": {"method": "POST", "path": "/ledger/v1/debit"}}"#,
        ),
    );
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    let decision: serde_json::Value = serde_json::from_str(&stdout(&denied)).unwrap();
    assert_eq!(decision["status"], 403);
    assert_eq!(decision["policy"], "payments/ledger-require-jwt");
    let typo = run(&["check", "-f", policies, "--request", "-"], Some("{destination: {namespace: a}, sorce: {}}"));
    assert_eq!(typo.status.code(), Some(2));
    assert!(stderr(&typo).contains("unknown field `sorce`"), "{}", stderr(&typo));
}

#[test]
fn invalid_manifests_name_the_file_document_and_field() {
    let dir = std::env::temp_dir().join(format!("mesh-policy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: a}\nspec: {rules: [{from: [{source: {principal: [x]}}]}]}\n",
    )
    .unwrap();
    let out = run(&["analyze", "-f", &dir.display().to_string()], None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("AuthorizationPolicy a/p (document 2)"), "{err}");
    assert!(err.contains("spec.rules[0].from[0].source.principal"), "{err}");
}

#[test]
fn trace_prints_each_hop_and_exits_by_the_outcome() {
    let (cluster, policies, fix) =
        (payments("cluster.yaml"), payments("policies.yaml"), payments("waypoint-identity.yaml"));
    let args = ["trace", "-f", &cluster, "-f", &policies, "--from", "payments/accounts-0", "--to", "ledger:8080"];
    let l4 = run(&[&args[..], &["--method", "POST", "--path", "/ledger/v1/debit"]].concat(), None);
    assert_eq!(l4.status.code(), Some(1));
    let text = stdout(&l4);
    assert!(
        text.contains("1. waypoint payments/payments-waypoint sees cluster.local/ns/payments/sa/accounts"),
        "{text}"
    );
    assert!(text.contains("denied: the client gets 403"), "{text}");
    let probe = run(
        &[
            "trace",
            "-f",
            &cluster,
            "-f",
            &policies,
            "-f",
            &fix,
            "--from",
            "payments/probe",
            "--to",
            "10.244.2.20:8080",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(probe.status.code(), Some(1));
    let result: serde_json::Value = serde_json::from_str(&stdout(&probe)).unwrap();
    assert_eq!(result["refused"], true);
    assert_eq!(result["hops"][0]["proxy"], "ztunnel");
    let unknown = run(&["trace", "-f", &cluster, "--from", "payments/accounts-0", "--to", "nosuch:80"], None);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no Service or ServiceEntry is named \"nosuch\""), "{}", stderr(&unknown));
}

#[test]
fn analyze_fails_on_findings_at_or_above_the_threshold_in_every_format() {
    let (cluster, policies, fix) =
        (payments("cluster.yaml"), payments("policies.yaml"), payments("waypoint-identity.yaml"));
    let text = run(&["analyze", "-f", &cluster, "-f", &policies], None);
    assert_eq!(text.status.code(), Some(1));
    assert!(stdout(&text).contains("policies.yaml:9: error[waypoint-identity-not-allowed]"), "{}", stdout(&text));
    let never = run(&["analyze", "-f", &cluster, "-f", &policies, "--fail-on", "never"], None);
    assert_eq!(never.status.code(), Some(0));
    let json = run(&["analyze", "-f", &cluster, "-f", &policies, "--format", "json"], None);
    let findings: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(findings[0]["code"], "waypoint-identity-not-allowed");
    assert_eq!(findings[0]["resources"][0]["name"], "ledger-allow-accounts-l4");
    let sarif = run(&["analyze", "-f", &cluster, "-f", &policies, "--format", "sarif"], None);
    let log: serde_json::Value = serde_json::from_str(&stdout(&sarif)).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let result = &log["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "waypoint-identity-not-allowed");
    assert_eq!(result["level"], "error");
    assert!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("policies.yaml")
    );
    assert_eq!(log["runs"][0]["tool"]["driver"]["rules"][0]["id"], "waypoint-identity-not-allowed");
    let clean = run(&["analyze", "-f", &cluster, "-f", &policies, "-f", &fix], None);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
}

#[test]
fn test_runs_scenarios_and_writes_junit() {
    let junit = std::env::temp_dir().join(format!("mesh-policy-junit-{}.xml", std::process::id()));
    let out = run(
        &[
            "test",
            "examples/scenarios/payments.yaml",
            "mesh-policy/tests/conformance/trace-payments.yaml",
            "--junit",
            &junit.display().to_string(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).trim_end().ends_with(" passed, 0 failed"), "{}", stdout(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    std::fs::remove_file(&junit).unwrap();
    assert!(
        xml.contains(
            "<testsuite name=\"mesh-policy/tests/conformance/trace-payments.yaml\" tests=\"9\" failures=\"0\">"
        ),
        "{xml}"
    );

    // A scenario whose expectation is wrong fails, and says why.
    let dir = std::env::temp_dir().join(format!("mesh-policy-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("wrong.yaml");
    std::fs::write(
        &scenario,
        "name: wrong\nmanifests: |\n  apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {name: deny, namespace: a}\n  spec: {action: DENY, rules: [{}]}\ncases:\n- name: expects allowed\n  request: {destination: {namespace: a}}\n  expect: {allowed: true}\n",
    )
    .unwrap();
    let out = run(&["test", &scenario.display().to_string()], None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAIL expects allowed"), "{}", stdout(&out));
    assert!(stdout(&out).contains("allowed: expected true, got false"), "{}", stdout(&out));
}
