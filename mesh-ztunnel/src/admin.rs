//! The admin endpoint (15000): `/config_dump` (JSON) and tables with the columns of `istioctl ztunnel-config`:
//! `/workloads`, `/services`, `/policies`, `/certificates`, `/connections`.

use std::fmt::Write;
use std::sync::Arc;

use std::collections::BTreeMap;

use mesh_identity::svid::{CertificateSummary, rfc3339};
use mesh_policy::Kind;
use mesh_policy::cluster::{Cluster, WaypointBinding};
use mesh_policy::xds::{Endpoint, State};
use mesh_runtime::http::{Reply, Routes};
use mesh_runtime::pki::Issuer;
use rustls_pki_types::UnixTime;
use serde_json::json;

use crate::node::Node;

/// The admin routes.
pub(crate) fn routes(node: Arc<Node>) -> Routes {
    let (n1, n2, n3, n4, n5, n6) = (node.clone(), node.clone(), node.clone(), node.clone(), node.clone(), node);
    Routes::new()
        .get("/config_dump", "everything, as JSON", move |_| Reply::json(&config_dump(&n1)))
        .get("/workloads", "NAMESPACE POD NAME ADDRESS NODE WAYPOINT PROTOCOL", move |_| Reply::text(workloads(&n2)))
        .get("/services", "NAMESPACE SERVICE NAME SERVICE VIP WAYPOINT ENDPOINTS", move |_| Reply::text(services(&n3)))
        .get("/policies", "the security resources in force", move |_| Reply::text(policies(&n4)))
        .get("/certificates", "the local workloads' certificates", move |_| Reply::text(certificates(&n5)))
        .get("/connections", "live inbound connections", move |_| Reply::json(&n6.live.list()))
}

fn waypoint_column(binding: &WaypointBinding) -> String {
    binding.waypoint().map_or_else(|| "None".to_owned(), |w| w.name().to_owned())
}

fn workloads(node: &Node) -> String {
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let mut rows =
        vec![["NAMESPACE", "POD NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"].map(String::from).to_vec()];
    for (_, w) in cluster.workloads() {
        rows.push(vec![
            w.namespace().to_owned(),
            w.id.name().to_owned(),
            w.ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            w.node.clone().unwrap_or_default(),
            waypoint_column(&w.waypoint),
            if w.enrolled || w.gateway.is_some() { "HBONE" } else { "TCP" }.to_owned(),
        ]);
    }
    table(&rows)
}

fn services(node: &Node) -> String {
    let snapshot = node.state.snapshot();
    let cluster: &Cluster = snapshot.cluster();
    let mut rows =
        vec![["NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"].map(String::from).to_vec()];
    for (_, s) in cluster.services() {
        rows.push(vec![
            s.id.namespace().to_owned(),
            s.id.name().to_owned(),
            s.vips.iter().map(|v| v.addr().to_string()).collect::<Vec<_>>().join(","),
            waypoint_column(&s.waypoint),
            format!("{}/{}", s.endpoints.len(), s.endpoints.len()),
        ]);
    }
    table(&rows)
}

fn policies(node: &Node) -> String {
    let snapshot = node.state.snapshot();
    let mut rows = vec![["KIND", "NAMESPACE", "NAME"].map(String::from).to_vec()];
    let security = [Kind::AuthorizationPolicy, Kind::PeerAuthentication, Kind::RequestAuthentication];
    for id in snapshot.resources().filter(|id| security.contains(&id.kind())) {
        rows.push(vec![id.kind().to_string(), id.namespace().to_owned(), id.name().to_owned()]);
    }
    table(&rows)
}

fn certificates(node: &Node) -> String {
    let now = UnixTime::now();
    let mut rows =
        vec![["CERTIFICATE NAME", "TYPE", "STATUS", "VALID CERT", "NOT AFTER", "RENEW AT"].map(String::from).to_vec()];
    let roots_not_after = node.pki.roots_not_after();
    let root_valid = roots_not_after.is_some_and(|t| now.as_secs() < t.as_secs());
    rows.push(vec![
        "ROOTCA".into(),
        "CA".into(),
        match roots_not_after {
            None => "Unavailable",
            Some(_) if root_valid => "Available",
            Some(_) => "Expired",
        }
        .into(),
        root_valid.to_string(),
        roots_not_after.map_or_else(|| "-".into(), |t| t.as_secs().to_string()),
        "-".into(),
    ]);
    for id in node.pki.store.identities() {
        let Some(cert) = node.pki.store.get(&id) else { continue };
        rows.push(vec![
            id.to_string(),
            "Leaf".into(),
            if cert.is_usable(now) { "Available" } else { "Expired" }.into(),
            cert.is_usable(now).to_string(),
            cert.not_after().as_secs().to_string(),
            cert.schedule().renew_at().as_secs().to_string(),
        ]);
    }
    table(&rows)
}

fn config_dump(node: &Node) -> serde_json::Value {
    let snapshot = node.state.snapshot();
    let cluster = snapshot.cluster();
    let local: Vec<_> = cluster
        .workloads()
        .filter(|(_, w)| node.is_local(w))
        .map(|(_, w)| json!({"workload": w.id.to_string(), "ips": w.ips, "identity": format!("spiffe://{}", w.principal)}))
        .collect();
    let mut dump = json!({
        "config": node.config,
        "source": node.source,
        "ca": match &node.pki.issuer {
            Issuer::Local(ca) => format!("local CA of {}", ca.trust_domain()),
            Issuer::Remote(ca) => ca.address().to_owned(),
        },
        "node": node.config.node,
        "ready": node.readiness.status(),
        "generation": snapshot.generation(),
        "reload": node.state.status(),
        "localWorkloads": local,
        "resources": snapshot.resources().map(ToString::to_string).collect::<Vec<_>>(),
        "certificates": certificates_dump(node),
        "connections": node.live.list(),
    });
    // With istiod, what it sent, in the shape of Istio's ztunnel (`istioctl ztunnel-config` reads it).
    if let (Some(state), Some(object)) = (istiod_state(node), dump.as_object_mut())
        && let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(state)
    {
        object.extend(fields);
    }
    dump
}

/// The workloads, services and authorizations istiod sent, each service with its endpoints (the workloads
/// that name it), as Istio's ztunnel lists them; `None` when the configuration did not come from istiod.
fn istiod_state(node: &Node) -> Option<State> {
    let mut state = State::default();
    let mut from_istiod = false;
    for document in node.state.documents() {
        if let Ok(part) = serde_json::from_str::<State>(&document.text) {
            from_istiod = true;
            state.workloads.extend(part.workloads);
            state.services.extend(part.services);
            state.policies.extend(part.policies);
        }
    }
    if !from_istiod {
        return None;
    }
    let mut services: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in state.services.iter().enumerate() {
        services.insert(s.key(), i);
    }
    for w in &state.workloads {
        for (key, ports) in &w.services {
            let Some(service) = services.get(key).and_then(|&i| state.services.get_mut(i)) else { continue };
            let port = ports
                .iter()
                .map(|p| {
                    let target = if p.target_port != 0 {
                        p.target_port
                    } else {
                        service.ports.get(&p.service_port).copied().unwrap_or(0)
                    };
                    (p.service_port, target)
                })
                .collect();
            let endpoint = Endpoint { workload_uid: w.uid.clone(), port, status: w.status };
            service.endpoints.insert(w.uid.clone(), endpoint);
        }
    }
    Some(state)
}

/// The certificates of the local workloads as Istio's ztunnel lists them: identity, state, the chain (leaf
/// first) and the roots, each with its PEM (base64), serial number and validity.
fn certificates_dump(node: &Node) -> Vec<serde_json::Value> {
    use base64::Engine as _;
    let cert = |der: &[u8]| {
        CertificateSummary::parse(der).map(|c| {
            json!({
                "pem": base64::engine::general_purpose::STANDARD.encode(c.pem),
                "serialNumber": c.serial,
                "validFrom": rfc3339(c.not_before),
                "expirationTime": rfc3339(c.not_after),
            })
        })
    };
    let bundles = node.pki.store.trust_bundles().current();
    node.pki
        .identities()
        .into_iter()
        .map(|id| match node.pki.store.get(&id) {
            Some(stored) => {
                let chain: Vec<_> = stored.chain().iter().filter_map(|c| cert(c)).collect();
                let roots: Vec<_> = bundles
                    .get(id.trust_domain_name())
                    .map(|b| b.roots().iter().filter_map(|c| cert(c)).collect())
                    .unwrap_or_default();
                let state = if stored.is_usable(UnixTime::now()) { "Available" } else { "Unavailable: expired" };
                json!({"identity": id.to_string(), "state": state, "certChain": chain, "rootCerts": roots})
            }
            None => json!({"identity": id.to_string(), "state": "Initializing", "certChain": [], "rootCerts": []}),
        })
        .collect()
}

/// Left-aligned columns, as istioctl prints them.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r.get(c).map_or(0, String::len)).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join(" ").trim_end());
    }
    out
}
