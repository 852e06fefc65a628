//! The check request: the question "is this connection / request allowed here?", in the shared serialisable
//! shape (the same field names in Rust, Python and on the command line).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where a request is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// The destination's ztunnel: L4, policies without `targetRefs`, PeerAuthentication.
    Ztunnel,
    /// The waypoint serving the destination: L7, policies with `targetRefs`.
    Waypoint,
}

impl Enforcement {
    /// The name as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Ztunnel => "ztunnel",
            Enforcement::Waypoint => "waypoint",
        }
    }
}

/// A policy check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Where to check; default `waypoint` when `http` is present, else `ztunnel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// The destination.
    pub destination: Destination,
    /// The source; absent means an unknown plaintext peer.
    #[serde(default)]
    pub source: SourceAttributes,
    /// The HTTP request (waypoint only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRequest>,
    /// An already-validated token's attributes; absent means no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAttributes>,
    /// Connection attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionAttributes>,
}

impl CheckRequest {
    /// The enforcement point this request is checked at.
    pub fn enforcement_point(&self) -> Enforcement {
        self.enforcement.unwrap_or(if self.http.is_some() { Enforcement::Waypoint } else { Enforcement::Ztunnel })
    }
}

/// `Service` or `ServiceEntry`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceKind {
    /// A Kubernetes Service.
    #[default]
    Service,
    /// An Istio ServiceEntry.
    ServiceEntry,
}

/// The destination workload / service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Namespace of the destination.
    pub namespace: String,
    /// Labels of the destination workload.
    #[serde(default)]
    pub workload_labels: BTreeMap<String, String>,
    /// The Service or ServiceEntry addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The kind of `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_kind: Option<ServiceKind>,
    /// The waypoint Gateway serving the destination: its name when it is in the destination's namespace, else
    /// `namespace/name` (a waypoint of another namespace, `istio.io/use-waypoint-namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<String>,
    /// Destination IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Destination port (the workload port at ztunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Destination {
    /// The waypoint's `(namespace, name)`.
    pub fn waypoint_ref(&self) -> Option<(&str, &str)> {
        let w = self.waypoint.as_deref()?;
        Some(w.split_once('/').unwrap_or((self.namespace.as_str(), w)))
    }
}

/// The peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceAttributes {
    /// mTLS identity without `spiffe://`; absent means plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Namespace of the identity; derived from the principal when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Direct peer IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Original client IP (waypoint only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<IpAddr>,
}

/// The HTTP request as the waypoint receives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// Path as sent, query included.
    pub path: String,
    /// `:authority`; falls back to the `host` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Headers in request order; names are case-insensitive, and a name given twice keeps both values.
    #[serde(default)]
    pub headers: crate::headers::Headers,
}

/// A validated token's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAttributes {
    /// `iss/sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `aud`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// `azp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presenter: Option<String>,
    /// The verified payload.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Connection attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAttributes {
    /// TLS server name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}
