//! A check that names its destination: what the request leaves out (the workload's labels, the service's
//! waypoint) is taken from the cluster model, and a name the model does not know is an error.

use crate::cluster::{Cluster, WaypointBinding};
use crate::error::{FieldError, RequestError};
use crate::proxy::Target;
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

fn waypoint_ref(binding: &WaypointBinding) -> Option<(&str, &str)> {
    binding.waypoint().map(|w| (w.namespace(), w.name()))
}

/// The target of a request's destination, completed from the model where the request leaves something out,
/// borrowing from both (nothing is copied). Without cluster objects, or when the request spells everything
/// out, it is the destination as given. A workload found by its address carries the policies the snapshot
/// of `generation` resolved for it.
pub(crate) fn target<'a>(
    cluster: &'a Cluster,
    generation: u64,
    dest: &'a Destination,
    at: Enforcement,
) -> Result<Target<'a>, RequestError> {
    let mut target = Target::from(dest);
    let names_ip = dest.ip.is_some() && dest.workload_labels.is_empty();
    if cluster.is_empty() || !(dest.service.is_some() || names_ip) {
        return Ok(target);
    }
    if let Some(service) = dest.service.as_deref() {
        let service_kind = dest.service_kind.unwrap_or_default();
        let Some(s) = cluster.service_in(&dest.namespace, service, service_kind).and_then(|s| cluster.service(s))
        else {
            let kind = match service_kind {
                ServiceKind::Service => Kind::Service,
                ServiceKind::ServiceEntry => Kind::ServiceEntry,
            };
            let id = ResourceId::new(kind, &dest.namespace, service);
            return Err(error("destination.service", format!("the manifests define no {id}")));
        };
        if at == Enforcement::Waypoint && dest.waypoint.is_none() {
            target.waypoint = waypoint_ref(&s.waypoint);
        }
    }
    let Some(ip) = dest.ip.filter(|_| names_ip) else { return Ok(target) };
    if let Some(id) = cluster.workload_by_ip(ip) {
        let Some(w) = cluster.workload(id) else { return Ok(target) };
        if !dest.namespace.is_empty() && dest.namespace != w.namespace() {
            return Err(error(
                "destination.namespace",
                format!("{:?} contradicts the workload at {ip}, {}", dest.namespace, w.id),
            ));
        }
        target.namespace = w.namespace();
        target.labels = &w.labels;
        if at == Enforcement::Waypoint && dest.waypoint.is_none() && dest.service.is_none() {
            target.waypoint = waypoint_ref(&w.waypoint);
        }
        if at == Enforcement::Ztunnel {
            target.resolved = Some((generation, id));
        }
        return Ok(target);
    }
    let Some(s) = cluster.service_by_vip(ip).and_then(|s| cluster.service(s)) else {
        return Err(error("destination.ip", format!("no Service, ServiceEntry or workload has the address {ip}")));
    };
    if dest.service.is_none() {
        if !dest.namespace.is_empty() && dest.namespace != s.id.namespace() {
            return Err(error(
                "destination.namespace",
                format!("{:?} contradicts the service at {ip}, {}", dest.namespace, s.id),
            ));
        }
        target.namespace = s.id.namespace();
        target.service = Some((s.id.name(), s.kind()));
        if at == Enforcement::Waypoint && dest.waypoint.is_none() {
            target.waypoint = waypoint_ref(&s.waypoint);
        }
    }
    Ok(target)
}
