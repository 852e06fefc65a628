//! The Bookinfo guide, for real: productpage's L4 ALLOW for the ingress gateway's identity; then the
//! waypoint with its GET-only policy for `sa/curl`, and the L4 policy extended to the waypoint's identity.

use crate::DemoError;
use crate::access_log::Denial;
use crate::cases::{self, Case, Expect};
use crate::client::Call;
use crate::topology::Topology;

const CLUSTER: &str = include_str!("../manifests/bookinfo-cluster.yaml");
/// The guide's last step: STRICT, productpage's L4 ALLOW for the gateway and the waypoint, the waypoint's
/// GET-only policy for sa/curl.
const POLICIES: &str = include_str!("../../examples/manifests/bookinfo/policies.yaml");

/// The guide's first step: STRICT, and productpage's L4 ALLOW for the ingress gateway only.
const L4_ONLY: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default-strict, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-ztunnel, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-gateway-istio]}}]}]
"#;

/// Runs the scenario; true when every check gave what it must.
pub async fn run() -> Result<bool, DemoError> {
    println!("== bookinfo: L4 policy at ztunnel, then L7 at the waypoint ==");
    let without_waypoint = CLUSTER.replace(", istio.io/use-waypoint: waypoint", "");
    let mut t = Topology::new(62, &[("mesh.yaml", &format!("{without_waypoint}---\n{L4_ONLY}"))])?;
    let productpage = std::net::SocketAddr::new(t.ip(2, 10), 9080);
    crate::backend::serve(productpage, "productpage").await?;
    let node_1 = t.node_proxy("node-1", 1).await?;
    t.node_proxy("node-2", 2).await?;
    let waypoint_ip = t.ip(1, 9);
    t.waypoint("default/waypoint", waypoint_ip, &[]).await?;
    let (curl, reviews) = (t.ip(1, 20), t.ip(1, 12));
    let call =
        |from, method| Call { from, proxy: node_1, to: "productpage:9080", method, path: "/productpage", token: None };

    println!("\n  step 1: productpage admits only the ingress gateway (L4, at its node proxy)");
    let denied = |source| Expect::Refused(Denial { by: "node-2", source, destination: productpage });
    let mut ok = cases::run(
        &t.procs,
        &[Case {
            name: "curl, GET /productpage",
            call: call(curl, "GET"),
            expect: denied("cluster.local/ns/default/sa/curl"),
        }],
    )
    .await;

    println!("\n  step 2: the namespace uses the waypoint; GET-only for sa/curl there; L4 admits the waypoint");
    let before = [
        (t.ip(0, 1), t.generation(t.ip(0, 1)).await),
        (t.ip(0, 2), t.generation(t.ip(0, 2)).await),
        (waypoint_ip, t.generation(waypoint_ip).await),
    ];
    t.write("mesh.yaml", &format!("{CLUSTER}---\n{POLICIES}"))?;
    t.wait_reload(&before).await?;
    ok &= cases::run(
        &t.procs,
        &[
            Case { name: "curl, GET /productpage", call: call(curl, "GET"), expect: Expect::Status(200) },
            Case { name: "curl, DELETE /productpage", call: call(curl, "DELETE"), expect: Expect::Status(403) },
            Case { name: "reviews, GET /productpage", call: call(reviews, "GET"), expect: Expect::Status(403) },
            Case {
                name: "reviews, straight to the productpage Pod (L4)",
                call: Call {
                    from: reviews,
                    proxy: node_1,
                    to: "127.62.2.10:9080",
                    method: "GET",
                    path: "/productpage",
                    token: None,
                },
                expect: denied("cluster.local/ns/default/sa/bookinfo-reviews"),
            },
        ],
    )
    .await;
    let denied = call(curl, "DELETE").send().await;
    if let crate::client::Outcome::Status(403, body) = &denied {
        let body_ok = body.trim() == "RBAC: access denied";
        ok &= body_ok;
        println!("  {} the DELETE's body is {:?}", if body_ok { "ok  " } else { "FAIL" }, body.trim());
    }

    println!("\n  stopping (SIGTERM)");
    for (name, clean) in t.procs.stop() {
        println!("  {name}: {}", if clean { "drained and exited" } else { "did not exit cleanly" });
        ok &= clean;
    }
    Ok(ok)
}
