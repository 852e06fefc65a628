//! The HBONE CONNECT request: `:method CONNECT`, `:authority` the destination, and the `baggage`, `forwarded`,
//! `traceparent` (and, on double HBONE's inner hop, `x-forwarded-network`) headers ztunnel sends.
//!
//! [`ConnectRequest::to_request`] builds the `http::Request<()>` an HTTP/2 client sends;
//! [`ConnectRequest::from_request`] reads one strictly (every malformed header is an error), and
//! [`ConnectRequest::from_parts_lenient`] reads one as ztunnel's inbound does: only the method and authority
//! can fail, a malformed optional header is dropped and reported.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::authority::{AuthorityError, HboneAddress};
use crate::baggage::{BAGGAGE_HEADER, Baggage, BaggageError};
use crate::forwarded::{FORWARDED_HEADER, Forwarded, ForwardedError};
use crate::traceparent::{TRACEPARENT_HEADER, TraceParent, TraceParentError};

/// The header naming the source's network on double HBONE's inner CONNECT.
pub const FORWARDED_NETWORK_HEADER: &str = "x-forwarded-network";

/// Why a CONNECT request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The method is not CONNECT.
    #[error("method is {method}, but HBONE only accepts CONNECT")]
    NotConnect {
        /// The method received.
        method: String,
    },
    /// The authority is missing or malformed.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The `baggage` header is malformed.
    #[error("baggage header: {0}")]
    Baggage(#[from] BaggageError),
    /// The `forwarded` header is malformed.
    #[error("forwarded header: {0}")]
    Forwarded(#[from] ForwardedError),
    /// The `traceparent` header is malformed.
    #[error("traceparent header: {0}")]
    TraceParent(#[from] TraceParentError),
    /// A header that may occur once occurs several times.
    #[error("header {name} occurs {count} times; send it once")]
    Repeated {
        /// The header name.
        name: &'static str,
        /// How many times it occurs.
        count: usize,
    },
    /// The `x-forwarded-network` value is empty or not visible ASCII.
    #[error("x-forwarded-network {value:?} is empty or not visible ASCII")]
    InvalidNetwork {
        /// The value, lossily decoded.
        value: String,
    },
}

/// An HBONE CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// `:authority`: where the tunnel goes.
    pub authority: HboneAddress,
    /// `baggage`: the source workload, for telemetry.
    pub baggage: Option<Baggage>,
    /// `forwarded`: the original source (and service host).
    pub forwarded: Option<Forwarded>,
    /// `traceparent`: the connection's trace context.
    pub traceparent: Option<TraceParent>,
    /// `x-forwarded-network`: the source's network, on double HBONE's inner request.
    pub origin_network: Option<String>,
}

impl ConnectRequest {
    /// A CONNECT to `authority` with no optional headers.
    pub fn new(authority: impl Into<HboneAddress>) -> Self {
        ConnectRequest {
            authority: authority.into(),
            baggage: None,
            forwarded: None,
            traceparent: None,
            origin_network: None,
        }
    }

    /// Sets `baggage`.
    pub fn with_baggage(mut self, baggage: Baggage) -> Self {
        self.baggage = Some(baggage);
        self
    }

    /// Sets `forwarded`.
    pub fn with_forwarded(mut self, forwarded: Forwarded) -> Self {
        self.forwarded = Some(forwarded);
        self
    }

    /// Sets `traceparent`.
    pub fn with_traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Sets `x-forwarded-network`.
    pub fn with_origin_network(mut self, network: impl Into<String>) -> Self {
        self.origin_network = Some(network.into());
        self
    }

    /// The HTTP/2 request: headers in ztunnel's order (`baggage`, `forwarded`, `traceparent`,
    /// `x-forwarded-network`).
    pub fn to_request(&self) -> Result<Request<()>, ConnectError> {
        let mut request = Request::new(());
        *request.method_mut() = Method::CONNECT;
        *request.uri_mut() = self.authority.to_uri()?;
        *request.version_mut() = Version::HTTP_2;
        let headers = request.headers_mut();
        if let Some(baggage) = &self.baggage {
            headers.insert(BAGGAGE_HEADER, baggage.to_header_value()?);
        }
        if let Some(forwarded) = &self.forwarded {
            let text = forwarded.format()?;
            let value = HeaderValue::from_str(&text).map_err(|_| ForwardedError::NotAscii)?;
            headers.insert(FORWARDED_HEADER, value);
        }
        if let Some(traceparent) = &self.traceparent {
            headers.insert(TRACEPARENT_HEADER, traceparent.to_header_value());
        }
        if let Some(network) = &self.origin_network {
            headers.insert(FORWARDED_NETWORK_HEADER, network_value(network)?);
        }
        Ok(request)
    }

    /// Reads a request strictly: any malformed or repeated header is an error.
    pub fn from_request(request: &Request<()>) -> Result<Self, ConnectError> {
        let (connect, issues) = Self::from_parts_lenient(request.method(), request.uri(), request.headers())?;
        match issues.into_iter().next() {
            Some(issue) => Err(issue),
            None => Ok(connect),
        }
    }

    /// Reads a request as ztunnel's inbound does: a wrong method or a bad authority is an error; each
    /// malformed optional header is left out of the result and returned in the list of issues.
    pub fn from_parts_lenient(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<(Self, Vec<ConnectError>), ConnectError> {
        if method != Method::CONNECT {
            return Err(ConnectError::NotConnect { method: method.to_string() });
        }
        let authority = HboneAddress::from_uri(uri)?;
        Ok(Self::with_headers(authority, headers))
    }

    /// The request to `authority` with the optional headers read from `headers`; each malformed one is left
    /// out and returned in the list of issues.
    pub fn with_headers(authority: HboneAddress, headers: &HeaderMap) -> (Self, Vec<ConnectError>) {
        let mut issues = Vec::new();
        let baggage = keep(&mut issues, read_baggage(headers));
        let forwarded = keep(&mut issues, read_forwarded(headers));
        let traceparent = keep(&mut issues, read_traceparent(headers));
        let origin_network = keep(&mut issues, read_network(headers));
        let connect = ConnectRequest { authority, baggage, forwarded, traceparent, origin_network };
        (connect, issues)
    }
}

fn network_value(network: &str) -> Result<HeaderValue, ConnectError> {
    let invalid = || ConnectError::InvalidNetwork { value: network.to_owned() };
    if network.is_empty() || !network.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    HeaderValue::from_str(network).map_err(|_| invalid())
}

/// The value, or `None` with the error recorded.
fn keep<T>(issues: &mut Vec<ConnectError>, result: Result<Option<T>, ConnectError>) -> Option<T> {
    result.unwrap_or_else(|issue| {
        issues.push(issue);
        None
    })
}

fn read_forwarded(headers: &HeaderMap) -> Result<Option<Forwarded>, ConnectError> {
    let Some(value) = read_single(headers, FORWARDED_HEADER)? else { return Ok(None) };
    let text = value.to_str().map_err(|_| ForwardedError::NotAscii)?;
    Ok(Some(Forwarded::parse(text)?))
}

fn read_traceparent(headers: &HeaderMap) -> Result<Option<TraceParent>, ConnectError> {
    let Some(value) = read_single(headers, TRACEPARENT_HEADER)? else { return Ok(None) };
    let text = value.to_str().map_err(|_| TraceParentError::NotAscii)?;
    Ok(Some(TraceParent::parse(text)?))
}

fn read_network(headers: &HeaderMap) -> Result<Option<String>, ConnectError> {
    let Some(value) = read_single(headers, FORWARDED_NETWORK_HEADER)? else { return Ok(None) };
    match value.to_str() {
        Ok(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(text.to_owned())),
        _ => Err(ConnectError::InvalidNetwork { value: String::from_utf8_lossy(value.as_bytes()).into_owned() }),
    }
}

fn read_baggage(headers: &HeaderMap) -> Result<Option<Baggage>, ConnectError> {
    let values = headers.get_all(BAGGAGE_HEADER);
    if values.iter().next().is_none() {
        return Ok(None);
    }
    Ok(Some(Baggage::from_headers(values.iter())?))
}

fn read_single<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a HeaderValue>, ConnectError> {
    let header = HeaderName::from_static(name);
    let mut values = headers.get_all(&header).iter();
    let first = values.next();
    let more = values.count();
    if more > 0 {
        return Err(ConnectError::Repeated { name, count: more + 1 });
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::baggage::WorkloadKind;

    fn sample() -> ConnectRequest {
        let source: SocketAddr = "10.0.0.1:34567".parse().unwrap();
        ConnectRequest::new("10.0.0.2:8080".parse::<SocketAddr>().unwrap())
            .with_baggage(Baggage {
                cluster: Some("Kubernetes".into()),
                namespace: Some("default".into()),
                workload: Some((WorkloadKind::Deployment, "sleep".into())),
                service: Some("sleep".into()),
                revision: Some("latest".into()),
                ..Baggage::default()
            })
            .with_forwarded(Forwarded::for_source(source))
            .with_traceparent(TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap())
    }

    #[test]
    fn builds_the_wire_request() {
        let request = sample().to_request().unwrap();
        assert_eq!(request.method(), Method::CONNECT);
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(request.uri().to_string(), "10.0.0.2:8080");
        assert!(request.uri().scheme().is_none() && request.uri().path_and_query().is_none());
        let headers: Vec<(&str, &[u8])> =
            request.headers().iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
        assert_eq!(
            headers,
            vec![
                (
                    "baggage",
                    &b"k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=sleep,\
service.name=sleep,service.version=latest"[..]
                ),
                ("forwarded", &b"for=\"10.0.0.1:34567\""[..]),
                ("traceparent", &b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"[..]),
            ]
        );
    }

    #[test]
    fn round_trips() {
        let connect = sample().with_origin_network("network-a");
        let request = connect.to_request().unwrap();
        assert_eq!(request.headers()["x-forwarded-network"], "network-a");
        assert_eq!(ConnectRequest::from_request(&request).unwrap(), connect);
        let bare = ConnectRequest::new(HboneAddress::host("reviews.bookinfo.svc.cluster.local", 9080).unwrap());
        assert_eq!(ConnectRequest::from_request(&bare.to_request().unwrap()).unwrap(), bare);
    }

    #[test]
    fn strict_reading_rejects_each_malformed_header() {
        let base = || sample().to_request().unwrap();
        let mut request = base();
        *request.method_mut() = Method::GET;
        assert_eq!(ConnectRequest::from_request(&request), Err(ConnectError::NotConnect { method: "GET".into() }));

        let mut request = base();
        *request.uri_mut() = "10.0.0.2".parse().unwrap();
        assert!(matches!(
            ConnectRequest::from_request(&request),
            Err(ConnectError::Authority(AuthorityError::MissingPort { .. }))
        ));

        let mut request = base();
        request.headers_mut().insert("baggage", HeaderValue::from_static("novalue"));
        assert!(matches!(ConnectRequest::from_request(&request), Err(ConnectError::Baggage(_))));

        let mut request = base();
        request.headers_mut().insert("forwarded", HeaderValue::from_static("for=\"2001:db8::1\""));
        assert!(matches!(ConnectRequest::from_request(&request), Err(ConnectError::Forwarded(_))));

        let mut request = base();
        request.headers_mut().insert("traceparent", HeaderValue::from_static("00-00"));
        assert!(matches!(ConnectRequest::from_request(&request), Err(ConnectError::TraceParent(_))));

        let mut request = base();
        request.headers_mut().append("traceparent", HeaderValue::from_static("00-00"));
        assert_eq!(
            ConnectRequest::from_request(&request),
            Err(ConnectError::Repeated { name: "traceparent", count: 2 })
        );

        let mut request = base();
        request.headers_mut().insert("x-forwarded-network", HeaderValue::from_static("a b"));
        assert!(matches!(ConnectRequest::from_request(&request), Err(ConnectError::InvalidNetwork { .. })));
    }

    #[test]
    fn lenient_reading_drops_bad_headers() {
        let mut request = sample().to_request().unwrap();
        request.headers_mut().insert("traceparent", HeaderValue::from_static("garbage"));
        request.headers_mut().insert("forwarded", HeaderValue::from_static("for"));
        let (connect, issues) =
            ConnectRequest::from_parts_lenient(request.method(), request.uri(), request.headers()).unwrap();
        assert_eq!(connect.traceparent, None);
        assert_eq!(connect.forwarded, None);
        assert!(connect.baggage.is_some());
        assert_eq!(issues.len(), 2);
    }

    #[test]
    fn building_checks_values() {
        let bad = ConnectRequest::new("10.0.0.2:80".parse::<SocketAddr>().unwrap()).with_origin_network("");
        assert!(matches!(bad.to_request(), Err(ConnectError::InvalidNetwork { .. })));
    }
}
