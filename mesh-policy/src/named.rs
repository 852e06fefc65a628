//! A check that names its destination: what the request leaves out (the workload's labels, the service's
//! waypoint) is taken from the cluster model, and a name the model does not know is an error.

use crate::cluster::{Cluster, Resolved, WaypointBinding};
use crate::error::{FieldError, RequestError};
use crate::request::{Destination, Enforcement, ServiceKind};
use crate::resource::{Kind, ResourceId};

fn error(field: &str, message: String) -> RequestError {
    RequestError(FieldError::new(field, message))
}

/// The waypoint as a destination names it: its name in the destination's namespace, else `namespace/name`.
pub(crate) fn waypoint_name(binding: &WaypointBinding, namespace: &str) -> Option<String> {
    let w = binding.waypoint()?;
    Some(if w.namespace() == namespace { w.name().to_owned() } else { w.qualified().to_string() })
}

/// The destination completed from the model, or `None` when there is nothing to complete (no cluster objects
/// are loaded, or the request spells everything out).
pub(crate) fn complete(
    cluster: &Cluster,
    dest: &Destination,
    at: Enforcement,
) -> Result<Option<Destination>, RequestError> {
    let names_service = dest.service.is_some();
    let names_ip = dest.ip.is_some() && dest.workload_labels.is_empty();
    if cluster.is_empty() || !(names_service || names_ip) {
        return Ok(None);
    }
    // Cloned only when something is filled in.
    let mut out: Option<Destination> = None;
    if let Some(service) = dest.service.as_deref() {
        let kind = match dest.service_kind.unwrap_or_default() {
            ServiceKind::Service => Kind::Service,
            ServiceKind::ServiceEntry => Kind::ServiceEntry,
        };
        let id = ResourceId::new(kind, &dest.namespace, service);
        let Some(s) = cluster.service_named(&id).and_then(|s| cluster.service(s)) else {
            return Err(error("destination.service", format!("the manifests define no {id}")));
        };
        if at == Enforcement::Waypoint && dest.waypoint.is_none() {
            if let Some(w) = waypoint_name(&s.waypoint, &dest.namespace) {
                out.get_or_insert_with(|| dest.clone()).waypoint = Some(w);
            }
        }
    }
    if let Some(ip) = dest.ip.filter(|_| dest.workload_labels.is_empty()) {
        let found = match (cluster.workload_by_ip(ip), cluster.service_by_vip(ip)) {
            (Some(workload), _) => Ok(Resolved::Workload { workload, port: dest.port.unwrap_or(0) }),
            (None, Some(service)) => Ok(Resolved::Service { service, port: dest.port.unwrap_or(0) }),
            (None, None) => Err(crate::cluster::ResolveError::UnknownAddress(ip)),
        };
        match found {
            Ok(Resolved::Workload { workload, .. }) => {
                let Some(w) = cluster.workload(workload) else { return Ok(None) };
                if !dest.namespace.is_empty() && dest.namespace != w.namespace() {
                    return Err(error(
                        "destination.namespace",
                        format!("{:?} contradicts the workload at {ip}, {}", dest.namespace, w.id),
                    ));
                }
                let out = out.get_or_insert_with(|| dest.clone());
                out.namespace = w.namespace().to_owned();
                out.workload_labels = w.labels.clone();
                if at == Enforcement::Waypoint && dest.waypoint.is_none() && dest.service.is_none() {
                    out.waypoint = waypoint_name(&w.waypoint, w.namespace());
                }
            }
            Ok(Resolved::Service { service, .. }) if dest.service.is_none() => {
                let Some(s) = cluster.service(service) else { return Ok(None) };
                if !dest.namespace.is_empty() && dest.namespace != s.id.namespace() {
                    return Err(error(
                        "destination.namespace",
                        format!("{:?} contradicts the service at {ip}, {}", dest.namespace, s.id),
                    ));
                }
                let out = out.get_or_insert_with(|| dest.clone());
                out.namespace = s.id.namespace().to_owned();
                out.service = Some(s.id.name().to_owned());
                out.service_kind = Some(s.kind());
                if at == Enforcement::Waypoint && dest.waypoint.is_none() {
                    out.waypoint = waypoint_name(&s.waypoint, s.id.namespace());
                }
            }
            Ok(_) => {}
            Err(e) => return Err(error("destination.ip", e.to_string())),
        }
    }
    Ok(out)
}
