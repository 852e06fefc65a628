//! The trace: "can A reach B, and if not, which hop stops it and why?", in the shared serialisable shape.
//!
//! A check asks one enforcement point about attributes given by hand; a trace follows a connection or an HTTP
//! request from a source workload to a destination address through every proxy ambient mode puts in its way
//! (the waypoint, when the destination uses one for that kind of address, then the destination's ztunnel,
//! which sees the waypoint's identity when a waypoint forwarded the request), and says what each hop decides
//! and what the client finally sees.

mod follow;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cluster::ResolveError;
use crate::decision::Decision;
use crate::request::HttpRequest;

/// Where a trace starts: exactly one of `pod` and `ip`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSource {
    /// `namespace/name` of a Pod in the manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// An address: a Pod's IP, or a client outside the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

/// A trace request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// The client.
    pub source: TraceSource,
    /// `host:port`: `<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc`, `<svc>.<ns>`, `<svc>` (in the source
    /// Pod's namespace), a ServiceEntry host, or an IP (a Service VIP or a Pod IP).
    pub destination: String,
    /// The HTTP request; absent for a plain TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRequest>,
    /// Unix seconds at which tokens are validated; absent: the caller's current time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<u64>,
}

/// An enforcement point on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proxy {
    /// The waypoint serving the destination.
    Waypoint,
    /// The destination's node proxy.
    Ztunnel,
}

impl Proxy {
    /// `waypoint` or `ztunnel`, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Proxy::Waypoint => "waypoint",
            Proxy::Ztunnel => "ztunnel",
        }
    }
}

/// One enforcement point's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hop {
    /// Which proxy.
    pub proxy: Proxy,
    /// The waypoint Gateway (`namespace/name`), or the destination's node; `None` when the node is unknown.
    pub name: Option<String>,
    /// The identity this hop sees; `None` for a plaintext peer.
    pub peer: Option<String>,
    /// Its decision.
    pub decision: Decision,
}

/// The trace of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointTrace {
    /// Whether every hop allows.
    pub allowed: bool,
    /// With `http`: what the client receives (200, 401/403 from the waypoint, 503 when the destination's
    /// ztunnel refuses the waypoint). `None` without `http`, and when `refused`.
    pub status: Option<u16>,
    /// Whether the client's own connection is refused or reset.
    pub refused: bool,
    /// Index in `hops` of the hop that denied.
    pub denied_by: Option<usize>,
    /// The destination workload followed (`namespace/name`); `None` outside the mesh's workloads.
    pub endpoint: Option<String>,
    /// Every enforcement point on the way, in order.
    pub hops: Vec<Hop>,
}

/// The result of a trace: the first endpoint that denies (or the first endpoint when all allow), and one
/// trace per endpoint when the destination has several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceResult {
    /// Whether every hop allows.
    pub allowed: bool,
    /// What the client receives, with `http`.
    pub status: Option<u16>,
    /// Whether the client's own connection is refused or reset.
    pub refused: bool,
    /// Index in `hops` of the hop that denied.
    pub denied_by: Option<usize>,
    /// The destination workload followed.
    pub endpoint: Option<String>,
    /// Every enforcement point on the way, in order.
    pub hops: Vec<Hop>,
    /// One trace per endpoint, when the destination has several; empty otherwise.
    #[serde(default)]
    pub endpoints: Vec<EndpointTrace>,
}

impl TraceResult {
    fn from_endpoint(e: EndpointTrace, endpoints: Vec<EndpointTrace>) -> Self {
        TraceResult {
            allowed: e.allowed,
            status: e.status,
            refused: e.refused,
            denied_by: e.denied_by,
            endpoint: e.endpoint,
            hops: e.hops,
            endpoints,
        }
    }
}

/// Why a trace could not be followed. Never an allowed trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The request itself is malformed.
    #[error("invalid trace request: {field}: {message}")]
    Request {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The source Pod is not in the manifests.
    #[error("source.pod: the manifests define no Pod {0}")]
    UnknownPod(String),
    /// The destination does not resolve.
    #[error("destination: {0}")]
    Destination(#[from] ResolveError),
    /// The destination service has no endpoint for the port.
    #[error("destination: {service} has no endpoint for port {port} in the manifests")]
    NoEndpoints {
        /// The service.
        service: String,
        /// The service port.
        port: u16,
    },
    /// A hop could not be checked.
    #[error("{hop}: {message}")]
    Check {
        /// Which hop.
        hop: String,
        /// The check's error.
        message: String,
    },
}
