//! Following a connection hop by hop.

use std::net::IpAddr;

use super::{EndpointTrace, Hop, Proxy, TraceError, TraceRequest, TraceResult};
use crate::cluster::{ResolveError, Resolved, Route, Waypoint, Workload, WorkloadId};
use crate::decision::Decision;
use crate::named::waypoint_name;
use crate::request::{CheckRequest, Destination, Enforcement, SourceAttributes};
use crate::resource::{Kind, ResourceId};
use crate::snapshot::Snapshot;

/// The client, as the first hop sees it.
struct Client<'a> {
    workload: Option<&'a Workload>,
    ip: Option<IpAddr>,
    /// Its identity, when a node proxy captures its traffic (ambient mode); else plaintext.
    principal: Option<&'a str>,
}

/// What the connection is addressed to, routed for the client.
type Target<'a> = Route<'a>;

impl Snapshot {
    /// Traces a connection (or, with `http`, a request) from a source workload to a destination address
    /// through every hop; tokens are validated at `req.now`, else at `now` (Unix seconds).
    pub fn trace(&self, req: &TraceRequest, now: u64) -> Result<TraceResult, TraceError> {
        let now = req.now.unwrap_or(now);
        let client = self.client(req)?;
        let client_ns = client.workload.map(Workload::namespace);
        let resolved = self.cluster().resolve(&req.destination, client_ns)?;
        let target = self.target(resolved, &client)?;
        let mut traces = Vec::new();
        if target.endpoints.is_empty() {
            // A ServiceEntry outside the mesh: only its waypoint, if it has one, is on the way.
            traces.push(self.follow(req, now, &client, &target, None)?);
        }
        for &(workload, port) in &target.endpoints {
            traces.push(self.follow(req, now, &client, &target, Some((workload, port)))?);
        }
        let chosen = traces.iter().position(|t| !t.allowed).unwrap_or(0);
        let endpoints = if traces.len() > 1 { traces.clone() } else { Vec::new() };
        let first = traces.swap_remove(chosen);
        Ok(TraceResult::from_endpoint(first, endpoints))
    }

    fn client(&self, req: &TraceRequest) -> Result<Client<'_>, TraceError> {
        let cluster = self.cluster();
        let workload = match (&req.source.pod, req.source.ip) {
            (Some(pod), None) => {
                let (ns, name) = pod.split_once('/').ok_or_else(|| TraceError::Request {
                    field: "source.pod".into(),
                    message: format!("{pod:?} is not namespace/name"),
                })?;
                let id = ResourceId::new(Kind::Pod, ns, name);
                let w = cluster.workload_named(&id).ok_or_else(|| TraceError::UnknownPod(pod.clone()))?;
                cluster.workload(w)
            }
            (None, Some(ip)) => cluster.workload_by_ip(ip).and_then(|w| cluster.workload(w)),
            _ => {
                return Err(TraceError::Request {
                    field: "source".into(),
                    message: "set exactly one of `pod` and `ip`".into(),
                });
            }
        };
        let ip = req.source.ip.or_else(|| workload.and_then(|w| w.ips.first().copied()));
        // A Gateway's proxy (an ingress gateway, a waypoint) speaks HBONE with its own identity.
        let principal = workload.filter(|w| w.enrolled || w.gateway.is_some()).map(|w| w.principal.as_str());
        Ok(Client { workload, ip, principal })
    }

    fn target<'a>(&'a self, resolved: Resolved, client: &Client<'_>) -> Result<Target<'a>, TraceError> {
        self.cluster().route(resolved, client.workload).map_err(|e| match e {
            ResolveError::NoEndpoints { service, port } => TraceError::NoEndpoints { service, port },
            other => TraceError::Destination(other),
        })
    }

    fn follow(
        &self,
        req: &TraceRequest,
        now: u64,
        client: &Client<'_>,
        target: &Target<'_>,
        endpoint: Option<(WorkloadId, u16)>,
    ) -> Result<EndpointTrace, TraceError> {
        let cluster = self.cluster();
        let endpoint = endpoint.and_then(|(w, port)| Some((cluster.workload(w)?, port)));
        let mut hops = Vec::new();
        if let Some(waypoint) = target.waypoint {
            let decision = self.at_waypoint(req, now, client, target, waypoint, endpoint)?;
            hops.push(Hop {
                proxy: Proxy::Waypoint,
                name: Some(waypoint.id.qualified().to_string()),
                peer: client.principal.map(str::to_owned),
                decision,
            });
        }
        let waypoint_denied = hops.first().is_some_and(|h| !h.decision.allowed);
        if let Some((w, port)) = endpoint.filter(|(w, _)| w.enrolled && !waypoint_denied) {
            // A waypoint forwards with its own identity, from its own address.
            let (peer, peer_ip) = match target.waypoint {
                Some(wp) => {
                    let ip = wp.workloads.iter().find_map(|&id| cluster.workload(id)?.ips.first().copied());
                    (Some(wp.principal.as_str()), ip.or_else(|| wp.addresses.first().copied()))
                }
                None => (client.principal, client.ip),
            };
            let check = CheckRequest {
                enforcement: Some(Enforcement::Ztunnel),
                destination: Destination {
                    namespace: w.namespace().to_owned(),
                    workload_labels: w.labels.clone(),
                    ip: w.ips.first().copied(),
                    port: Some(port),
                    ..Destination::default()
                },
                source: SourceAttributes {
                    principal: peer.map(str::to_owned),
                    ip: peer_ip,
                    ..SourceAttributes::default()
                },
                ..CheckRequest::default()
            };
            let decision = self
                .evaluate(&check, Enforcement::Ztunnel, Some(now))
                .map_err(|e| TraceError::Check { hop: "ztunnel".into(), message: e.to_string() })?;
            hops.push(Hop { proxy: Proxy::Ztunnel, name: w.node.clone(), peer: peer.map(str::to_owned), decision });
        }
        Ok(outcome(req, target, endpoint.map(|(w, _)| w), hops))
    }

    fn at_waypoint(
        &self,
        req: &TraceRequest,
        now: u64,
        client: &Client<'_>,
        target: &Target<'_>,
        waypoint: &Waypoint,
        endpoint: Option<(&Workload, u16)>,
    ) -> Result<Decision, TraceError> {
        let (namespace, service, service_kind) = match target.service {
            Some(s) => (s.id.namespace(), Some(s.id.name().to_owned()), Some(s.kind())),
            None => (endpoint.map(|(w, _)| w.namespace()).unwrap_or_default(), None, None),
        };
        let binding = crate::cluster::WaypointBinding::Uses {
            waypoint: waypoint.id.clone(),
            label: crate::cluster::WaypointLabel { on: waypoint.id.clone(), value: String::new() },
        };
        let check = CheckRequest {
            enforcement: Some(Enforcement::Waypoint),
            destination: Destination {
                namespace: namespace.to_owned(),
                workload_labels: endpoint.map(|(w, _)| w.labels.clone()).unwrap_or_default(),
                service,
                service_kind,
                waypoint: waypoint_name(&binding, namespace),
                ip: endpoint.and_then(|(w, _)| w.ips.first().copied()),
                port: Some(target.port),
            },
            source: SourceAttributes {
                principal: client.principal.map(str::to_owned),
                ip: client.ip,
                ..SourceAttributes::default()
            },
            http: req.http.clone(),
            ..CheckRequest::default()
        };
        let result = match &check.http {
            Some(_) => self.evaluate(&check, Enforcement::Waypoint, Some(now)),
            None => self.check_waypoint_tcp(&check),
        };
        result.map_err(|e| TraceError::Check {
            hop: format!("waypoint {}", waypoint.id.qualified()),
            message: e.to_string(),
        })
    }
}

/// What the client sees, from the hops' decisions.
fn outcome(req: &TraceRequest, target: &Target<'_>, endpoint: Option<&Workload>, hops: Vec<Hop>) -> EndpointTrace {
    let denied_by = hops.iter().position(|h| !h.decision.allowed);
    let http = req.http.is_some();
    let (status, refused) = match denied_by {
        None => (http.then_some(200), false),
        Some(_) if !http => (None, true),
        Some(i) => match hops[i].proxy {
            Proxy::Waypoint => (hops[i].decision.status, false),
            // The waypoint answers the client when the destination's node proxy refuses it.
            Proxy::Ztunnel if target.waypoint.is_some() => (Some(503), false),
            Proxy::Ztunnel => (None, true),
        },
    };
    EndpointTrace {
        allowed: denied_by.is_none(),
        status,
        refused,
        denied_by,
        endpoint: endpoint.map(|w| w.qualified().to_owned()),
        hops,
    }
}
