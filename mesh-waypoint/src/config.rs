//! The waypoint's settings, as plain data: what a program embedding it fills in, what `mesh-waypoint`'s
//! command line converts into, and what `/config_dump` shows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_runtime::config::{CommonConfig, as_text};
use serde::Serialize;

/// The waypoint's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The waypoint Gateway (`gatewayClassName: istio-waypoint`) this proxy runs for. Its service account is
    /// the identity the waypoint presents and forwards with; the waypoint waits until the configuration
    /// defines it.
    pub gateway: GatewayName,
    /// Where node proxies reach the waypoint over HBONE (15008). A specific address is also the one onward
    /// connections leave from.
    pub inbound_addr: SocketAddr,
    /// The port destination node proxies accept HBONE on (15008).
    pub hbone_port: u16,
    /// Istio's sandwich binding (`ambient.istio.io/waypoint-inbound-binding: PROXY/15088`): the listener the
    /// waypoint Pod's own node proxy delivers tunnels to, each a plain connection opening with a PROXY
    /// protocol v2 header that carries the client's identity. A loopback address (`127.0.0.1:15088`), or none.
    pub proxy_protocol_addr: Option<SocketAddr>,
    /// How requests go on to endpoints.
    pub onward: Onward,
    /// How long connecting to an endpoint's node proxy (TCP and TLS) may take before the client gets 503.
    #[serde(serialize_with = "as_text")]
    pub connect_timeout: Duration,
    /// How `jwksUri` documents are fetched.
    pub jwks: JwksConfig,
    /// What both proxies share: model options, CA, operational endpoints, drain.
    pub common: CommonConfig,
}

/// How the waypoint reaches endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Onward {
    /// Over HBONE to each endpoint's node proxy, with the waypoint's own certificate: Istio's waypoints, which
    /// are not ambient workloads themselves.
    Hbone,
    /// Plain TCP to each endpoint's address: the waypoint Pod is an ambient workload (Istio's sandwich binding)
    /// and its own node proxy captures the connection and tunnels it with the waypoint's identity. HBONE here
    /// would be tunnelled twice.
    Plain,
}

/// A Gateway's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayName {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// How `jwksUri` documents are fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwksConfig {
    /// CA certificates (PEM) to verify `jwksUri` servers with, instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// Also fetch `http://` URIs (refused by default, and their tokens rejected).
    pub allow_http: bool,
    /// How often every JWKS is fetched again (Istio's default, 20 minutes).
    #[serde(serialize_with = "as_text")]
    pub refresh: Duration,
    /// The shortest time between two fetches of one JWKS triggered by unknown key ids, and the first retry
    /// delay after a failed fetch.
    #[serde(serialize_with = "as_text")]
    pub min_refetch: Duration,
    /// `host:port` → address to connect to instead of resolving the host (as curl's `--resolve`).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for JwksConfig {
    fn default() -> Self {
        JwksConfig {
            ca_file: None,
            allow_http: false,
            refresh: Duration::from_secs(20 * 60),
            min_refetch: Duration::from_secs(5),
            resolve: Vec::new(),
        }
    }
}

impl Config {
    /// The defaults of `mesh-waypoint`'s command line for the Gateway `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Config {
            gateway: GatewayName { namespace: namespace.into(), name: name.into() },
            inbound_addr: SocketAddr::from(([0, 0, 0, 0], 15008)),
            hbone_port: 15008,
            proxy_protocol_addr: None,
            onward: Onward::Hbone,
            connect_timeout: Duration::from_secs(5),
            jwks: JwksConfig::default(),
            common: CommonConfig::default(),
        }
    }
}
