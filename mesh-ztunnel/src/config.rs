//! The node proxy's settings, as plain data: what a program embedding it fills in, what `mesh-ztunnel`'s
//! command line converts into, and what `/config_dump` shows.

use std::net::SocketAddr;
use std::path::PathBuf;

use mesh_runtime::config::CommonConfig;
use serde::Serialize;

/// The node proxy's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// This node's name: Pods with this `spec.nodeName` are local.
    pub node: String,
    /// The SOCKS5 outbound listener (Istio's 15080), if any.
    pub socks5_addr: Option<SocketAddr>,
    /// The outbound listener for connections redirected by iptables (15001), if any.
    pub outbound_addr: Option<SocketAddr>,
    /// Inbound HBONE (15008). With [`Config::listen_on_workload_ips`], its port on each local Pod's IP.
    pub inbound_addr: SocketAddr,
    /// Inbound plaintext redirected by iptables (15006), if any; PeerAuthentication applies.
    pub inbound_plaintext_addr: Option<SocketAddr>,
    /// Bind the inbound listeners on each local Pod's IP, as Istio's ztunnel listens inside each Pod's network
    /// namespace in in-pod mode.
    pub listen_on_workload_ips: bool,
    /// Open tunnels from the source workload's own address (Istio's `ENABLE_ORIG_SRC`); implied by
    /// [`Config::listen_on_workload_ips`].
    pub original_source: bool,
    /// The firewall mark of the proxy's own connections (Istio's is 1337), if any.
    pub socket_mark: Option<u32>,
    /// In-pod mode: the unix socket of istio-cni's node agent (Istio's `INPOD_UDS`), which hands over each
    /// Pod's network namespace; the proxy then listens inside each Pod instead of on its own addresses.
    pub inpod_uds: Option<PathBuf>,
    /// What both proxies share: model options, CA, operational endpoints, drain.
    pub common: CommonConfig,
}

impl Config {
    /// The defaults of `mesh-ztunnel`'s command line for node `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Config {
            node: node.into(),
            socks5_addr: Some(SocketAddr::from(([127, 0, 0, 1], 15080))),
            outbound_addr: Some(SocketAddr::from(([127, 0, 0, 1], 15001))),
            inbound_addr: SocketAddr::from(([0, 0, 0, 0], 15008)),
            inbound_plaintext_addr: Some(SocketAddr::from(([0, 0, 0, 0], 15006))),
            listen_on_workload_ips: false,
            original_source: false,
            socket_mark: Some(1337),
            inpod_uds: None,
            common: CommonConfig::default(),
        }
    }

    /// Whether tunnels leave from the source workload's own address.
    pub fn dials_from_workload(&self) -> bool {
        self.original_source || self.listen_on_workload_ips || self.inpod_uds.is_some()
    }
}
