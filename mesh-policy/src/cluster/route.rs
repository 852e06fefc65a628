//! Where a client's node proxy sends a connection: through the destination's waypoint or straight to an
//! endpoint, and which endpoints there are, on which workload port.

use super::model::{Cluster, ServiceView, Waypoint, Workload, WorkloadId};
use super::resolve::{ResolveError, Resolved};
use crate::request::ServiceKind;

/// A resolved destination, routed for one client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Route<'a> {
    /// The Service or ServiceEntry addressed, if the client dialled one.
    pub service: Option<&'a ServiceView>,
    /// The port dialled.
    pub port: u16,
    /// The endpoints, each with the workload port it is reached on. Empty for a ServiceEntry outside the mesh.
    pub endpoints: Vec<(WorkloadId, u16)>,
    /// The waypoint the connection goes through, if any.
    pub waypoint: Option<&'a Waypoint>,
}

impl Cluster {
    /// Routes `resolved` for `client` as its node proxy does. A client in the mesh goes through the destination's
    /// waypoint when there is one; a client outside the mesh reaches the destination directly, and so does an
    /// ingress gateway unless the Service or its namespace asks for the waypoint (`istio.io/ingress-use-waypoint`,
    /// read as [`IngressWaypoint`](super::IngressWaypoint) says).
    ///
    /// A Service with no endpoint for the port is an error ([`ResolveError::NoEndpoints`]): there is nowhere
    /// to send the connection.
    pub fn route(&self, resolved: Resolved, client: Option<&Workload>) -> Result<Route<'_>, ResolveError> {
        let gateway_client = client.is_some_and(|w| w.gateway.is_some());
        let in_mesh = client.is_some_and(|w| w.enrolled);
        match resolved {
            Resolved::Service { service, port } => {
                let s = self.service(service).ok_or(ResolveError::UnknownService)?;
                let endpoints: Vec<(WorkloadId, u16)> =
                    s.endpoints.iter().filter_map(|&w| Some((w, s.target_port(port, self.workload(w)?)?))).collect();
                if endpoints.is_empty() && !(s.kind() == ServiceKind::ServiceEntry && s.external) {
                    return Err(ResolveError::NoEndpoints { service: s.id.to_string(), port });
                }
                let ingress = gateway_client && s.ingress.use_waypoint;
                let waypoint = s.waypoint.waypoint().filter(|_| in_mesh || ingress).and_then(|w| self.waypoint(w));
                Ok(Route { service: Some(s), port, endpoints, waypoint })
            }
            Resolved::Workload { workload, port } => {
                let w = self.workload(workload);
                let waypoint =
                    w.and_then(|w| w.waypoint.waypoint()).filter(|_| in_mesh).and_then(|id| self.waypoint(id));
                Ok(Route { service: None, port, endpoints: vec![(workload, port)], waypoint })
            }
        }
    }
}
