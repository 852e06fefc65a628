//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mesh_runtime::args::{CommonArgs, parse_nonzero_duration};
use mesh_runtime::config::ConfigError;

use crate::config::{Config, GatewayName, JwksConfig, Onward};

/// The waypoint: an L7 proxy for the Services and workloads whose `istio.io/use-waypoint` label names its
/// Gateway.
///
/// Node proxies send it HBONE tunnels (HTTP/2 CONNECT over mutual TLS) addressed to a Service VIP:port or a Pod
/// IP:port. It applies RequestAuthentication and AuthorizationPolicy to each HTTP request (HTTP/1.1, HTTP/2,
/// gRPC) and the L4 attributes of the same policies to plain TCP, then forwards what is allowed to an endpoint
/// over HBONE with its own identity (the Gateway's service account).
///
/// A port is HTTP when its Service port says so (appProtocol, or a name or protocol of http, http2, grpc,
/// grpc-web or h2c); TCP when it says otherwise (tcp, tls, https, mongo, mysql, redis, ...); when nothing is
/// declared (a Pod address, an unnamed port) the first bytes decide: an HTTP/1 method and a space, or the
/// HTTP/2 preface, make it HTTP; anything else, or nothing within 100 ms, TCP.
///
/// Example: mesh-waypoint -f manifests/ --gateway payments/payments-waypoint --ca-dir ca/
#[derive(Debug, Parser)]
#[command(name = "mesh-waypoint", version, verbatim_doc_comment)]
pub struct Args {
    /// Configuration, identity, operational endpoints, logs and drain (shared with mesh-ztunnel).
    #[command(flatten)]
    pub common: CommonArgs,

    /// The waypoint Gateway (gatewayClassName istio-waypoint) this proxy runs for, as NAMESPACE/NAME. Its
    /// service account (the `gateway.istio.io/service-account` annotation, else the Gateway's name) is the
    /// identity the waypoint presents and forwards with. The proxy waits until the configuration defines it.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_gateway)]
    pub gateway: (String, String),

    /// Where node proxies reach the waypoint over HBONE.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15008")]
    pub inbound_addr: SocketAddr,

    /// The port destination node proxies accept HBONE on (allowed requests are forwarded to this port of the
    /// endpoint Pod's IP).
    #[arg(long, value_name = "PORT", default_value_t = 15008)]
    pub hbone_port: u16,

    /// Also accept Istio's sandwich binding on ADDR, a loopback address (127.0.0.1:15088): the waypoint Pod's
    /// node proxy delivers each tunnel as a plain connection opening with a PROXY v2 header (identity in TLV
    /// 0xD0), as for a Gateway with ambient.istio.io/waypoint-inbound-binding: PROXY/15088.
    #[arg(long, value_name = "ADDR")]
    pub proxy_protocol_addr: Option<SocketAddr>,

    /// How requests go on to endpoints: hbone (to each endpoint's node proxy, with the waypoint's certificate)
    /// or plain (to the endpoint's address, for the waypoint Pod's own node proxy to tunnel: the sandwich).
    /// Default: plain with --proxy-protocol-addr, else hbone.
    #[arg(long, value_name = "MODE", value_parser = ["hbone", "plain"])]
    pub onward: Option<String>,

    /// With --kubernetes: report the status of this GatewayClass and of its Gateways (Accepted, Programmed, and
    /// the waypoint Service's address), as a Gateway API implementation does, for istiod and users to see.
    #[arg(long, value_name = "CLASS", requires = "kubernetes")]
    pub gateway_class: Option<String>,

    /// How long connecting to an endpoint's node proxy (TCP and TLS) may take before the client gets 503.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_nonzero_duration)]
    pub connect_timeout: Duration,

    /// PEM file of CA certificates to verify jwksUri servers with (a local issuer), instead of the public
    /// web roots.
    #[arg(long, value_name = "PEM")]
    pub jwks_ca_file: Option<PathBuf>,

    /// Also fetch jwksUris that are plain http:// (by default they are refused and their tokens rejected).
    #[arg(long)]
    pub jwks_allow_http: bool,

    /// How often every JWKS is fetched again (Istio's default is 20 minutes). A token naming a key id the
    /// cached JWKS lacks also triggers a fetch, at most once per --jwks-min-refetch.
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_nonzero_duration)]
    pub jwks_refresh: Duration,

    /// The shortest time between two fetches of one JWKS triggered by unknown key ids, and the first retry
    /// delay after a failed fetch (doubling up to a minute).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_nonzero_duration)]
    pub jwks_min_refetch: Duration,

    /// Connect to ADDR for the jwksUri authority HOST:PORT instead of resolving HOST (as curl's --resolve):
    /// an issuer on loopback keeps its name, which its certificate is verified against. Repeatable.
    #[arg(long = "jwks-resolve", value_name = "HOST:PORT=ADDR", value_parser = parse_resolve)]
    pub jwks_resolve: Vec<(String, SocketAddr)>,
}

impl Args {
    /// The settings, checked.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Ok(Config {
            gateway: GatewayName { namespace: self.gateway.0.clone(), name: self.gateway.1.clone() },
            inbound_addr: self.inbound_addr,
            hbone_port: self.hbone_port,
            proxy_protocol_addr: self.proxy_protocol_addr,
            onward: match self.onward.as_deref() {
                Some("plain") => Onward::Plain,
                Some(_) => Onward::Hbone,
                None if self.proxy_protocol_addr.is_some() => Onward::Plain,
                None => Onward::Hbone,
            },
            connect_timeout: self.connect_timeout,
            jwks: JwksConfig {
                ca_file: self.jwks_ca_file.clone(),
                allow_http: self.jwks_allow_http,
                refresh: self.jwks_refresh,
                min_refetch: self.jwks_min_refetch,
                resolve: self.jwks_resolve.clone(),
            },
            common: self.common.config()?,
        })
    }
}

fn parse_resolve(text: &str) -> Result<(String, SocketAddr), String> {
    let bad = || format!("{text:?} is not HOST:PORT=ADDR (for example issuer.example.com:443=127.0.0.1:8443)");
    let (authority, addr) = text.split_once('=').ok_or_else(bad)?;
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok((authority.to_ascii_lowercase(), addr.parse().map_err(|_| bad())?))
}

fn parse_gateway(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{text:?} is not NAMESPACE/NAME (for example payments/payments-waypoint)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_namespace_slash_name() {
        assert_eq!(parse_gateway("payments/wp"), Ok(("payments".into(), "wp".into())));
        for bad in ["wp", "/wp", "payments/", "a/b/c"] {
            assert!(parse_gateway(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_resolve_maps_host_and_port_to_an_address() {
        let parsed = parse_resolve("Issuer.Example.com:443=127.0.0.1:8443");
        assert_eq!(
            parsed,
            Ok((
                "issuer.example.com:443".into(),
                "127.0.0.1:8443".parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
            ))
        );
        for bad in ["issuer.example.com=127.0.0.1:1", "issuer:x=127.0.0.1:1", "issuer:443=nowhere"] {
            assert!(parse_resolve(bad).is_err(), "{bad}");
        }
    }
}
