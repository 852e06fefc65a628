//! The request form a proxy builds without copying: the destination borrowed from the cluster model, the peer
//! identity already parsed from its certificate, HTTP headers as `http::HeaderMap`.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use mesh_identity::spiffe::IstioIdentity;
//! use mesh_policy::proxy::{Connection, HttpView, Request, Target};
//! use mesh_policy::Mesh;
//!
//! let mut mesh = Mesh::default();
//! mesh.apply_yaml(r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: gets, namespace: shop}
//! spec:
//!   targetRefs: [{kind: Service, group: "", name: api}]
//!   rules: [{to: [{operation: {methods: [GET]}}], when: [{key: "request.headers[x-tenant]", values: ["a,b"]}]}]
//! "#)?;
//! let snapshot = mesh.snapshot();
//!
//! let peer = IstioIdentity::parse_principal("cluster.local/ns/shop/sa/web")?;
//! let labels = BTreeMap::new();
//! let target = Target::new("shop", &labels).with_service("api").with_port(80);
//! let mut headers = http::HeaderMap::new();
//! headers.append("x-tenant", "a".parse()?);
//! headers.append("x-tenant", "b".parse()?); // repeated headers are joined with ',' for matching
//! let request = Request::new(
//!     Connection::new(target).with_peer(&peer),
//!     HttpView { method: "GET", path: "/", host: Some("api.shop"), headers: &headers },
//! );
//! let decision = snapshot.authorize_request(&request, 1_767_225_600)?;
//! assert!(decision.allowed, "{decision}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use mesh_identity::spiffe::IstioIdentity;

use crate::cluster::WorkloadId;
use crate::request::{Destination, ServiceKind};

/// The destination of a connection or request, borrowed.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Target<'a> {
    /// The destination's namespace (the workload's, or the service's at a waypoint).
    pub namespace: &'a str,
    /// The destination workload's labels, for selector policies at ztunnel.
    pub labels: &'a BTreeMap<String, String>,
    /// The Service or ServiceEntry addressed, for `targetRefs` policies at a waypoint.
    pub service: Option<(&'a str, ServiceKind)>,
    /// The waypoint Gateway `(namespace, name)` serving the destination.
    pub waypoint: Option<(&'a str, &'a str)>,
    /// The destination address.
    pub ip: Option<IpAddr>,
    /// The destination port (the workload port at ztunnel).
    pub port: Option<u16>,
    /// The workload of the cluster model this target is, and the generation of the snapshot that resolved it:
    /// that snapshot then uses the policies it resolved for the workload once, instead of looking them up.
    pub(crate) resolved: Option<(u64, WorkloadId)>,
}

impl<'a> Target<'a> {
    /// A workload in `namespace` with these labels.
    pub fn new(namespace: &'a str, labels: &'a BTreeMap<String, String>) -> Self {
        Target { namespace, labels, service: None, waypoint: None, ip: None, port: None, resolved: None }
    }

    /// Addressed to a Service of the namespace.
    pub fn with_service(mut self, name: &'a str) -> Self {
        self.service = Some((name, ServiceKind::Service));
        self
    }

    /// Addressed to a ServiceEntry of the namespace.
    pub fn with_service_entry(mut self, name: &'a str) -> Self {
        self.service = Some((name, ServiceKind::ServiceEntry));
        self
    }

    /// Served by this waypoint.
    pub fn with_waypoint(mut self, namespace: &'a str, name: &'a str) -> Self {
        self.waypoint = Some((namespace, name));
        self
    }

    /// At this address.
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// On this port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

impl<'a> From<&'a Destination> for Target<'a> {
    fn from(d: &'a Destination) -> Self {
        Target {
            namespace: &d.namespace,
            labels: &d.workload_labels,
            service: d.service.as_deref().map(|s| (s, d.service_kind.unwrap_or_default())),
            waypoint: d.waypoint_ref(),
            ip: d.ip,
            port: d.port,
            resolved: None,
        }
    }
}

/// A connection as the destination's ztunnel (or a waypoint proxying plain TCP) sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Connection<'a> {
    /// Where it goes.
    pub target: Target<'a>,
    /// The peer's verified identity; `None` for a plaintext peer.
    pub peer: Option<&'a IstioIdentity>,
    /// The peer's address.
    pub source_ip: Option<IpAddr>,
}

impl<'a> Connection<'a> {
    /// A plaintext connection to `target`.
    pub fn new(target: Target<'a>) -> Self {
        Connection { target, peer: None, source_ip: None }
    }

    /// From a peer with this verified identity.
    pub fn with_peer(mut self, peer: &'a IstioIdentity) -> Self {
        self.peer = Some(peer);
        self
    }

    /// From this address.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }
}

/// The HTTP request line and headers, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct HttpView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// The path as sent, query included (normalized for matching).
    pub path: &'a str,
    /// `:authority`; the `host` header when absent.
    pub host: Option<&'a str>,
    /// The headers; repeated names are kept and joined with `,` for matching, as Envoy does.
    pub headers: &'a http::HeaderMap,
}

/// An HTTP request as the waypoint sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The connection it came on.
    pub connection: Connection<'a>,
    /// The request.
    pub http: HttpView<'a>,
    /// The original client's address (`X-Forwarded-For`), when known.
    pub remote_ip: Option<IpAddr>,
    /// The TLS server name of the connection.
    pub sni: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request on a connection.
    pub fn new(connection: Connection<'a>, http: HttpView<'a>) -> Self {
        Request { connection, http, remote_ip: None, sni: None }
    }

    /// The original client's address.
    pub fn with_remote_ip(mut self, ip: IpAddr) -> Self {
        self.remote_ip = Some(ip);
        self
    }
}
