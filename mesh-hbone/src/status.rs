//! What an HBONE server answers, as one table both ends share.
//!
//! | condition | status |
//! |---|---|
//! | method is not CONNECT; authority missing or malformed; authority IP is not the address that was dialled (unless [`InboundRules::target_is_dialled`] is off) | 400 |
//! | authorization policy denies the connection | 401 |
//! | no such port / hostname; the target port is a proxy's own port (15001, 15006, 15008, 15080); the upstream connect failed | 503 |
//! | tunnel established | 200 (with `baggage` describing the destination, when known) |
//!
//! [`validate`] applies the 400 and 503 rows a server can decide from the request alone and returns the target
//! to connect to: the dialled IP with the authority's port (or, for a `host:port` authority, the target port of
//! that service); at a waypoint ([`InboundRules::any_target`]), an `ip:port` authority as sent. Policy (401)
//! and upstream connect (503) are the caller's to decide.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method, Response, StatusCode, Uri};

use crate::authority::{AuthorityError, HboneAddress};
use crate::baggage::{BAGGAGE_HEADER, Baggage, BaggageError};
use crate::connect::{ConnectError, ConnectRequest};

/// The ports of ztunnel's own listeners: outbound 15001, inbound plaintext 15006, inbound HBONE 15008 and
/// SOCKS5 15080. A tunnel to one of them would loop through the proxy, so it is refused.
pub const PROXY_PORTS: [u16; 4] = [15001, 15006, 15008, 15080];

/// The HBONE port.
pub const HBONE_PORT: u16 = 15008;

/// The three ways a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// 400: the request itself is wrong.
    BadRequest,
    /// 401: authorization policy denied it.
    Unauthorized,
    /// 503: the destination cannot be reached through this proxy.
    Unavailable,
}

impl RejectionKind {
    /// The status code.
    pub fn status(self) -> StatusCode {
        match self {
            RejectionKind::BadRequest => StatusCode::BAD_REQUEST,
            RejectionKind::Unauthorized => StatusCode::UNAUTHORIZED,
            RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The kind a status means, as a client reads a response; `None` for codes ztunnel never sends.
    pub fn from_status(status: StatusCode) -> Option<Self> {
        match status {
            StatusCode::BAD_REQUEST => Some(RejectionKind::BadRequest),
            StatusCode::UNAUTHORIZED => Some(RejectionKind::Unauthorized),
            StatusCode::SERVICE_UNAVAILABLE => Some(RejectionKind::Unavailable),
            _ => None,
        }
    }
}

/// Why a server refused a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The method is not CONNECT.
    #[error("method {method} is not CONNECT")]
    NotConnect {
        /// The method received.
        method: String,
    },
    /// The authority is missing or malformed.
    #[error("bad CONNECT authority: {0}")]
    BadAuthority(AuthorityError),
    /// The authority names an IP other than the one the client dialled.
    #[error(
        "CONNECT authority IP {requested} is not the dialled address {dialled}; HBONE tunnels go to the \
         destination they were dialled at"
    )]
    AddressMismatch {
        /// The local address the connection arrived on.
        dialled: IpAddr,
        /// The IP in the authority.
        requested: IpAddr,
    },
    /// Authorization policy denied the connection.
    #[error("denied by policy: {reason}")]
    Denied {
        /// Which policy and rule, for the log.
        reason: String,
    },
    /// Nothing listens on that port here.
    #[error("no destination port {port} here")]
    NoSuchPort {
        /// The port requested.
        port: u16,
    },
    /// No service of that hostname and port is served here.
    #[error("no service {host}:{port} here")]
    UnknownHost {
        /// The hostname requested.
        host: String,
        /// The service port requested.
        port: u16,
    },
    /// The target port is one of the proxy's own.
    #[error("port {port} is the proxy's own; a tunnel to it would loop")]
    SelfCall {
        /// The port requested.
        port: u16,
    },
    /// The upstream connection failed.
    #[error("upstream connect to {target} failed: {reason}")]
    UpstreamConnect {
        /// The target address.
        target: SocketAddr,
        /// What the connect reported.
        reason: String,
    },
    /// The server is at a limit on work in flight (upstream connects being made, or buffered bytes); the
    /// client may try again later or elsewhere.
    #[error("server busy: {which} at its limit of {limit}")]
    Overloaded {
        /// Which limit.
        which: &'static str,
        /// Its value.
        limit: u64,
    },
}

impl Rejection {
    /// Which row of the table this is.
    pub fn kind(&self) -> RejectionKind {
        match self {
            Rejection::NotConnect { .. } | Rejection::BadAuthority(_) | Rejection::AddressMismatch { .. } => {
                RejectionKind::BadRequest
            }
            Rejection::Denied { .. } => RejectionKind::Unauthorized,
            Rejection::NoSuchPort { .. }
            | Rejection::UnknownHost { .. }
            | Rejection::SelfCall { .. }
            | Rejection::UpstreamConnect { .. }
            | Rejection::Overloaded { .. } => RejectionKind::Unavailable,
        }
    }

    /// The status code to answer with.
    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The response: the status and no body (the reason stays in the server's log).
    pub fn response(&self) -> Response<()> {
        status_response(self.status())
    }
}

/// The `200` that opens the tunnel, with `baggage` describing the destination when given.
pub fn accept_response(baggage: Option<&Baggage>) -> Result<Response<()>, BaggageError> {
    let mut response = status_response(StatusCode::OK);
    if let Some(baggage) = baggage.filter(|b| !b.is_empty()) {
        response.headers_mut().insert(BAGGAGE_HEADER, baggage.to_header_value()?);
    }
    Ok(response)
}

fn status_response(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

/// A refused CONNECT as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HBONE CONNECT refused with {status}{}", kind_text(*kind))]
pub struct Refused {
    /// The status received.
    pub status: StatusCode,
    /// Its row of the table, when it is one ztunnel sends.
    pub kind: Option<RejectionKind>,
}

fn kind_text(kind: Option<RejectionKind>) -> &'static str {
    match kind {
        Some(RejectionKind::BadRequest) => " (bad request: the destination rejected the CONNECT itself)",
        Some(RejectionKind::Unauthorized) => " (denied by the destination's authorization policy)",
        Some(RejectionKind::Unavailable) => " (destination unavailable: no such port, or its upstream connect failed)",
        None => "",
    }
}

/// Reads a CONNECT response: `Ok` with the destination's baggage for 200, the refusal otherwise. Malformed
/// response baggage is dropped, as ztunnel drops it.
pub fn read_response<B>(response: &Response<B>) -> Result<Option<Baggage>, Refused> {
    let status = response.status();
    if status != StatusCode::OK {
        return Err(Refused { status, kind: RejectionKind::from_status(status) });
    }
    let values = response.headers().get_all(BAGGAGE_HEADER);
    if values.iter().next().is_none() {
        return Ok(None);
    }
    Ok(Baggage::from_headers(values.iter()).ok())
}

/// Which destination ports a server serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PortRule {
    /// Any port not in the proxy ports.
    #[default]
    Any,
    /// Only these.
    Only(BTreeSet<u16>),
}

/// What [`validate`] checks a request against, besides the dialled address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRules {
    /// Ports that are the proxy's own (default [`PROXY_PORTS`]).
    pub proxy_ports: BTreeSet<u16>,
    /// Which ports exist.
    pub ports: PortRule,
    /// `host:port` authorities served here, mapped to their target port (double HBONE's inner hop).
    pub services: BTreeMap<(String, u16), u16>,
    /// Whether an `ip:port` authority must name the IP that was dialled (a 400 otherwise): on by default, as a
    /// node proxy requires. A waypoint, dialled at its own IP with a service VIP or another workload as the
    /// target, turns it off ([`InboundRules::any_target`]); the target is then the authority as sent, and the
    /// handler decides what it means.
    pub target_is_dialled: bool,
}

impl Default for InboundRules {
    fn default() -> Self {
        InboundRules {
            proxy_ports: PROXY_PORTS.into_iter().collect(),
            ports: PortRule::Any,
            services: BTreeMap::new(),
            target_is_dialled: true,
        }
    }
}

impl InboundRules {
    /// Serves `host:service_port` by forwarding to `target_port`.
    pub fn with_service(mut self, host: impl Into<String>, service_port: u16, target_port: u16) -> Self {
        self.services.insert((host.into(), service_port), target_port);
        self
    }

    /// Accepts any `ip:port` target, not only the dialled IP (a waypoint); see
    /// [`InboundRules::target_is_dialled`].
    pub fn any_target(mut self) -> Self {
        self.target_is_dialled = false;
        self
    }

    /// Serves only these ports.
    pub fn only_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports = PortRule::Only(ports.into_iter().collect());
        self
    }
}

/// A CONNECT that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Where to connect upstream.
    pub target: SocketAddr,
    /// The request, with malformed optional headers left out.
    pub request: ConnectRequest,
    /// The malformed optional headers, for the log.
    pub header_issues: Vec<ConnectError>,
}

/// Checks a received CONNECT against the address it was dialled at and the rules; returns the target or the
/// rejection to answer with.
pub fn validate(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    dialled: SocketAddr,
    rules: &InboundRules,
) -> Result<Accepted, Rejection> {
    if method != Method::CONNECT {
        return Err(Rejection::NotConnect { method: method.to_string() });
    }
    let authority = HboneAddress::from_uri(uri).map_err(Rejection::BadAuthority)?;
    let (request, header_issues) = ConnectRequest::with_headers(authority, headers);
    let dialled_ip = canonical(dialled.ip());
    let (ip, port) = match &request.authority {
        HboneAddress::Socket(addr) => {
            let requested = canonical(addr.ip());
            if rules.target_is_dialled && requested != dialled_ip {
                return Err(Rejection::AddressMismatch { dialled: dialled_ip, requested });
            }
            (requested, addr.port())
        }
        HboneAddress::Host { host, port } => {
            let target_port = *rules
                .services
                .get(&(host.clone(), *port))
                .ok_or_else(|| Rejection::UnknownHost { host: host.clone(), port: *port })?;
            (dialled_ip, target_port)
        }
    };
    if rules.proxy_ports.contains(&port) {
        return Err(Rejection::SelfCall { port });
    }
    if let PortRule::Only(ports) = &rules.ports
        && !ports.contains(&port)
    {
        return Err(Rejection::NoSuchPort { port });
    }
    Ok(Accepted { target: SocketAddr::new(ip, port), request, header_issues })
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const DIALLED: &str = "10.0.0.2:15008";

    fn check(method: &str, authority: &str, rules: &InboundRules) -> Result<Accepted, Rejection> {
        let method: Method = method.parse().unwrap();
        let uri: Uri = authority.parse().unwrap();
        validate(&method, &uri, &HeaderMap::new(), DIALLED.parse().unwrap(), rules)
    }

    #[test]
    fn the_table() {
        let rules = InboundRules::default().with_service("reviews.bookinfo.svc.cluster.local", 9080, 8080);
        let cases: &[(&str, &str, u16)] = &[
            ("CONNECT", "10.0.0.2:8080", 200),
            ("GET", "10.0.0.2:8080", 400),
            ("CONNECT", "10.0.0.2", 400),
            ("CONNECT", "10.0.0.3:8080", 400),
            ("CONNECT", "10.0.0.2:15008", 503),
            ("CONNECT", "10.0.0.2:15001", 503),
            ("CONNECT", "10.0.0.2:15006", 503),
            ("CONNECT", "10.0.0.2:15080", 503),
            ("CONNECT", "reviews.bookinfo.svc.cluster.local:9080", 200),
            ("CONNECT", "ratings.bookinfo.svc.cluster.local:9080", 503),
        ];
        for (method, authority, status) in cases {
            let got = match check(method, authority, &rules) {
                Ok(_) => 200,
                Err(rejection) => rejection.status().as_u16(),
            };
            assert_eq!(got, *status, "{method} {authority}");
        }
    }

    #[test]
    fn targets_the_dialled_ip() {
        let accepted = check("CONNECT", "10.0.0.2:8080", &InboundRules::default()).unwrap();
        assert_eq!(accepted.target, "10.0.0.2:8080".parse().unwrap());
        let rules = InboundRules::default().with_service("reviews.bookinfo.svc.cluster.local", 9080, 8080);
        let accepted = check("CONNECT", "reviews.bookinfo.svc.cluster.local:9080", &rules).unwrap();
        assert_eq!(accepted.target, "10.0.0.2:8080".parse().unwrap());
    }

    #[test]
    fn a_waypoint_accepts_any_target_ip() {
        // Dialled at 10.0.0.2 (the waypoint), asked for a service VIP: the target is the VIP.
        let rules = InboundRules::default().any_target();
        let accepted = check("CONNECT", "10.96.0.10:80", &rules).unwrap();
        assert_eq!(accepted.target, "10.96.0.10:80".parse().unwrap());
        let uri: Uri = "[::ffff:10.96.0.10]:80".parse().unwrap();
        let dialled: SocketAddr = "10.0.0.2:15008".parse().unwrap();
        let accepted = validate(&Method::CONNECT, &uri, &HeaderMap::new(), dialled, &rules).unwrap();
        assert_eq!(accepted.target, "10.96.0.10:80".parse().unwrap());
        // The port rules still apply.
        assert_eq!(check("CONNECT", "10.96.0.10:15008", &rules).unwrap_err().status(), StatusCode::SERVICE_UNAVAILABLE);
        // A node proxy refuses the same CONNECT.
        let refused = check("CONNECT", "10.96.0.10:80", &InboundRules::default()).unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn mapped_addresses_compare_as_ipv4() {
        let uri: Uri = "10.0.0.2:8080".parse().unwrap();
        let dialled: SocketAddr = "[::ffff:10.0.0.2]:15008".parse().unwrap();
        let accepted = validate(&Method::CONNECT, &uri, &HeaderMap::new(), dialled, &InboundRules::default()).unwrap();
        assert_eq!(accepted.target, "10.0.0.2:8080".parse().unwrap());
    }

    #[test]
    fn listed_ports_only() {
        let rules = InboundRules::default().only_ports([8080]);
        assert!(check("CONNECT", "10.0.0.2:8080", &rules).is_ok());
        assert_eq!(check("CONNECT", "10.0.0.2:9090", &rules), Err(Rejection::NoSuchPort { port: 9090 }));
    }

    #[test]
    fn caller_decided_rows() {
        assert_eq!(Rejection::Denied { reason: "ns/deny-all".into() }.status(), StatusCode::UNAUTHORIZED);
        let upstream =
            Rejection::UpstreamConnect { target: "10.0.0.2:8080".parse().unwrap(), reason: "refused".into() };
        assert_eq!(upstream.response().status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn malformed_headers_do_not_reject() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("bad"));
        let uri: Uri = "10.0.0.2:8080".parse().unwrap();
        let accepted =
            validate(&Method::CONNECT, &uri, &headers, DIALLED.parse().unwrap(), &InboundRules::default()).unwrap();
        assert_eq!(accepted.header_issues.len(), 1);
    }

    #[test]
    fn responses_round_trip() {
        let baggage = Baggage { namespace: Some("default".into()), ..Baggage::default() };
        let ok = accept_response(Some(&baggage)).unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["baggage"], "k8s.namespace.name=default");
        assert_eq!(read_response(&ok), Ok(Some(baggage)));
        assert_eq!(read_response(&accept_response(None).unwrap()), Ok(None));
        let denied = Rejection::Denied { reason: String::new() }.response();
        assert_eq!(
            read_response(&denied),
            Err(Refused { status: StatusCode::UNAUTHORIZED, kind: Some(RejectionKind::Unauthorized) })
        );
        let teapot = status_response(StatusCode::IM_A_TEAPOT);
        assert_eq!(read_response(&teapot).unwrap_err().kind, None);
    }
}
