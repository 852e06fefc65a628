//! The payments guide, for real: L4 default deny, the ledger's L4 ALLOW, the namespace waypoint, the
//! RequestAuthentication for a local issuer, the DENY without a token and the debit ALLOW; then the guide's
//! classic mistake (the ledger's L4 policy without the waypoint's identity): a 503, shown to come from node-b
//! by node-b's own log line denying the waypoint's identity.

use std::net::SocketAddr;

use serde_json::json;

use crate::DemoError;
use crate::access_log::Denial;
use crate::cases::{self, Case, Expect};
use crate::client::Call;
use crate::issuer::{self, Issuer};
use crate::topology::Topology;

const CLUSTER: &str = include_str!("../manifests/payments-cluster.yaml");
/// The guide's policies, as printed.
const POLICIES: &str = include_str!("../../examples/manifests/payments/policies.yaml");
/// The fix: the ledger's L4 ALLOW admits the waypoint's identity too.
const WAYPOINT_IDENTITY: &str = include_str!("../../examples/manifests/payments/waypoint-identity.yaml");

const ISSUER: &str = "https://issuer.payments.test";
const ISSUER_HOST: &str = "issuer.payments.test";
const AUDIENCE: &str = "api://payments-ledger";

/// Runs the scenario; true when every check gave what it must.
pub async fn run() -> Result<bool, DemoError> {
    println!("== payments: ambient L4 default deny, a namespace waypoint, JWT-scoped debits ==");
    let mut t = Topology::new(
        61,
        &[("cluster.yaml", CLUSTER), ("policies.yaml", POLICIES), ("zz-waypoint-identity.yaml", WAYPOINT_IDENTITY)],
    )?;

    // The issuer: tokens signed with its key, its JWKS over HTTPS on loopback.
    let issuer = Issuer::new(ISSUER)?;
    let (issuer_ca, tls) = issuer::tls_for(ISSUER_HOST)?;
    let issuer_addr = SocketAddr::new(t.ip(9, 1), 8443);
    issuer::serve(issuer_addr, tls, "/discovery/keys".into(), issuer.jwks()).await?;
    let ca_file = t.dir.path().join("issuer-ca.pem");
    std::fs::write(&ca_file, issuer_ca).map_err(|e| DemoError::new(e.to_string()))?;

    // The ledger, then node-a (accounts, probe, reports), node-b (ledger) and the waypoint.
    let ledger = SocketAddr::new(t.ip(2, 20), 8080);
    crate::backend::serve(ledger, "ledger").await?;
    let node_a = t.node_proxy("node-a", 1).await?;
    t.node_proxy("node-b", 2).await?;
    let waypoint_ip = t.ip(1, 5);
    let extra = vec![
        "--jwks-ca-file".to_owned(),
        ca_file.display().to_string(),
        "--jwks-resolve".into(),
        format!("{ISSUER_HOST}:443={issuer_addr}"),
    ];
    t.waypoint("payments/payments-waypoint", waypoint_ip, &extra).await?;
    println!(
        "  node proxies at {} and {}, waypoint at {waypoint_ip}, issuer at {issuer_addr}; logs in {}",
        t.ip(0, 1),
        t.ip(0, 2),
        t.dir.path().display()
    );

    let now = mesh_runtime::unix_now();
    let token = |scope: &str, exp: u64| {
        issuer.token(json!({"sub": "accounts", "aud": AUDIENCE, "scp": [scope], "iat": now, "exp": exp}))
    };
    let good = token("ledger.debit", now + 600)?;
    let read_only = token("ledger.read", now + 600)?;
    let expired = token("ledger.debit", now - 600)?;
    let (accounts, probe) = (t.ip(1, 10), t.ip(1, 40));
    let call = |from, method, token| Call {
        from,
        proxy: node_a,
        to: "ledger.payments:8080",
        method,
        path: "/ledger/v1/debit",
        token,
    };

    println!("\n  validation matrix (real HTTP through node-a, the waypoint and node-b):");
    let mut ok = cases::run(
        &t.procs,
        &[
            Case {
                name: "accounts, POST /ledger/v1/debit, token with scp ledger.debit",
                call: call(accounts, "POST", Some(&good)),
                expect: Expect::Status(200),
            },
            Case { name: "accounts, no token", call: call(accounts, "POST", None), expect: Expect::Status(403) },
            Case {
                name: "accounts, token with scp ledger.read",
                call: call(accounts, "POST", Some(&read_only)),
                expect: Expect::Status(403),
            },
            Case {
                name: "accounts, DELETE with the good token",
                call: call(accounts, "DELETE", Some(&good)),
                expect: Expect::Status(403),
            },
            Case {
                name: "accounts, expired token",
                call: call(accounts, "POST", Some(&expired)),
                expect: Expect::Status(401),
            },
            Case {
                name: "probe, straight to the ledger Pod (L4)",
                call: Call {
                    from: probe,
                    proxy: node_a,
                    to: "127.61.2.20:8080",
                    method: "POST",
                    path: "/ledger/v1/debit",
                    token: Some(&good),
                },
                expect: Expect::Refused(Denial {
                    by: "node-b",
                    source: "cluster.local/ns/payments/sa/probe",
                    destination: ledger,
                }),
            },
        ],
    )
    .await;

    // The classic mistake: the ledger's L4 policy as the guide prints it, without the waypoint's identity.
    println!("\n  the guide's classic mistake: the ledger's L4 ALLOW without the waypoint's identity");
    let before = [(t.ip(0, 2), t.generation(t.ip(0, 2)).await), (waypoint_ip, t.generation(waypoint_ip).await)];
    t.remove("zz-waypoint-identity.yaml")?;
    t.wait_reload(&before).await?;
    // The 503 is the waypoint's; node-b's own log must show why: it denied the waypoint's identity.
    ok &= cases::run(
        &t.procs,
        &[Case {
            name: "the same good request",
            call: call(accounts, "POST", Some(&good)),
            expect: Expect::StatusAfter(
                503,
                Denial { by: "node-b", source: "cluster.local/ns/payments/sa/payments-waypoint", destination: ledger },
            ),
        }],
    )
    .await;
    if let Err(e) = explain(&t, &issuer.jwks(), &good) {
        println!("  (no offline trace: {e})");
    }

    println!("\n  stopping (SIGTERM)");
    for (name, clean) in t.procs.stop() {
        println!("  {name}: {}", if clean { "drained and exited" } else { "did not exit cleanly" });
        ok &= clean;
    }
    Ok(ok)
}

/// The trace of the failing request through the configuration in force, hop by hop, computed offline: an
/// explanation printed next to the evidence, not what decides the result.
fn explain(t: &Topology, jwks: &str, token: &str) -> Result<(), DemoError> {
    let mut mesh = mesh_policy::Mesh::default();
    mesh.add_jwks(&format!("{ISSUER}/discovery/keys"), jwks).map_err(|e| DemoError::new(e.to_string()))?;
    for name in ["cluster.yaml", "policies.yaml"] {
        let text = std::fs::read_to_string(t.config_dir().join(name)).map_err(|e| DemoError::new(e.to_string()))?;
        mesh.apply_yaml(&text).map_err(|e| DemoError::new(e.to_string()))?;
    }
    let request: mesh_policy::TraceRequest = serde_json::from_value(json!({
        "source": {"pod": "payments/accounts-0"},
        "destination": "ledger.payments:8080",
        "http": {"method": "POST", "path": "/ledger/v1/debit", "headers": {"authorization": format!("Bearer {token}")}},
    }))
    .map_err(|e| DemoError::new(e.to_string()))?;
    let trace = mesh.trace(&request, mesh_runtime::unix_now()).map_err(|e| DemoError::new(e.to_string()))?;
    println!("  why, as the offline trace through the configuration in force explains it:");
    for hop in &trace.hops {
        println!(
            "    {} {} sees {}: {}",
            hop.proxy.as_str(),
            hop.name.as_deref().unwrap_or(""),
            hop.peer.as_deref().unwrap_or("plaintext"),
            hop.decision
        );
    }
    Ok(())
}
