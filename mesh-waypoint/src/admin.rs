//! The operational endpoints: admin (`/config_dump`, `/policies`, `/jwks`, `/certs`), Prometheus metrics, and
//! readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mesh_policy::Snapshot;
use mesh_policy::proxy::Target;
use mesh_policy::request::ServiceKind;
use mesh_policy::resource::ResourceId;
use mesh_runtime::http::{Reply, Routes};
use mesh_runtime::ops::Readiness;
use mesh_runtime::state::MeshState;
use serde_json::json;

use mesh_runtime::pki::Pki;

use crate::Config;
use crate::identity;
use crate::jwks::Jwks;

/// What the admin pages read.
#[derive(Clone)]
pub(crate) struct Views {
    /// The configuration in force.
    pub(crate) state: Arc<MeshState>,
    /// The Gateway.
    pub(crate) gateway: ResourceId,
    /// The certificates.
    pub(crate) pki: Pki,
    /// The JWKS fetcher.
    pub(crate) jwks: Arc<Jwks>,
    /// Whether the waypoint serves, and if not, why.
    pub(crate) readiness: Readiness,
    /// What the configuration comes from.
    pub(crate) source: String,
    /// The settings in force.
    pub(crate) config: Config,
}

/// The targets this waypoint serves, each with the resources it applies to its requests.
pub(crate) fn policies(snapshot: &Snapshot, gateway: &ResourceId) -> BTreeMap<String, Vec<String>> {
    let cluster = snapshot.cluster();
    let (wns, wname) = (gateway.namespace(), gateway.name());
    let no_labels = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (_, s) in cluster.services() {
        if s.waypoint.waypoint() != Some(gateway) {
            continue;
        }
        let target = Target::new(s.id.namespace(), &no_labels).with_waypoint(wns, wname);
        let target = match s.kind() {
            ServiceKind::Service => target.with_service(s.id.name()),
            ServiceKind::ServiceEntry => target.with_service_entry(s.id.name()),
        };
        let applied = snapshot.waypoint_resources(&target).iter().map(ToString::to_string).collect();
        out.insert(s.id.to_string(), applied);
    }
    for (_, w) in cluster.workloads() {
        if w.waypoint.waypoint() != Some(gateway) {
            continue;
        }
        let target = Target::new(w.namespace(), &w.labels).with_waypoint(wns, wname);
        let applied = snapshot.waypoint_resources(&target).iter().map(ToString::to_string).collect();
        out.insert(w.id.to_string(), applied);
    }
    out
}

impl Views {
    /// The admin routes.
    pub(crate) fn admin(&self) -> Routes {
        let config = self.clone();
        let policies_view = self.clone();
        let jwks = Arc::clone(&self.jwks);
        let pki = self.pki.clone();
        Routes::new()
            .get("/config_dump", "the configuration in force, the waypoint and the last reload (JSON)", move |_| {
                config.config_dump()
            })
            .get(
                "/policies",
                "the Services and workloads served, with the policies applied to each (JSON)",
                move |_| Reply::json(&policies(&policies_view.state.snapshot(), &policies_view.gateway)),
            )
            .get("/jwks", "each jwksUri: last fetch, keys, last error (JSON)", move |_| Reply::json(&jwks.status()))
            .get("/certs", "the waypoint's certificates (JSON)", move |_| Reply::json(&identity::certificates(&pki)))
    }

    fn config_dump(&self) -> Reply {
        let snapshot = self.state.snapshot();
        let waypoint = snapshot.cluster().waypoint(&self.gateway).map(|w| {
            json!({
                "gateway": w.id.qualified().to_string(),
                "waypoint_for": w.waypoint_for,
                "service_account": w.service_account,
                "principal": w.principal,
                "addresses": w.addresses,
            })
        });
        let resources: Vec<String> = snapshot.resources().map(ToString::to_string).collect();
        let jwks_uris: BTreeSet<&str> = snapshot.jwks_uris();
        Reply::json(&json!({
            "config": self.config,
            "gateway": self.gateway.qualified().to_string(),
            "waypoint": waypoint,
            "source": self.source,
            "generation": snapshot.generation(),
            "reload": self.state.status(),
            "ready": self.readiness.status(),
            "resources": resources,
            "served": policies(&snapshot, &self.gateway),
            "jwks_uris": jwks_uris,
            "certificates": identity::certificates(&self.pki),
        }))
    }
}
