//! The command line.

use std::net::SocketAddr;

use clap::Parser;
use mesh_runtime::args::CommonArgs;
use mesh_runtime::config::ConfigError;

use crate::Config;

/// mesh-ztunnel: the per-node L4 proxy of an ambient mesh.
///
/// Every enrolled Pod of this node (`spec.nodeName` = --node) gets a SPIFFE identity and a certificate from
/// the CA, mTLS over HBONE to and from other node proxies and waypoints, and L4 AuthorizationPolicy at its
/// inbound. Configuration is the Kubernetes YAML named with --config, reloaded when it changes.
///
/// Outbound traffic arrives by SOCKS5 (--socks5-addr; the source workload is the client's source IP) or
/// redirected by iptables (--outbound-addr, original destination from SO_ORIGINAL_DST). Inbound HBONE arrives
/// on --inbound-addr, plaintext redirected by iptables on --inbound-plaintext-addr (PeerAuthentication
/// applies). With --listen-on-workload-ips, inbound listeners are bound on each local Pod's IP instead (several
/// node proxies on one machine, each Pod on its own 127.0.0.x address).
#[derive(Debug, Clone, Parser)]
#[command(name = "mesh-ztunnel", version, about, long_about)]
pub struct Args {
    /// This node's name: Pods with this spec.nodeName are local.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node: String,

    /// SOCKS5 outbound listener (CONNECT, no authentication).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15080")]
    pub socks5_addr: SocketAddr,

    /// Outbound listener for connections redirected by iptables (REDIRECT or TPROXY).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15001")]
    pub outbound_addr: SocketAddr,

    /// Inbound HBONE (mTLS HTTP/2 CONNECT).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15008")]
    pub inbound_addr: SocketAddr,

    /// Inbound plaintext redirected by iptables (subject to PeerAuthentication).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15006")]
    pub inbound_plaintext_addr: SocketAddr,

    /// Bind inbound HBONE (and plaintext) on each local Pod's IP, with the ports of --inbound-addr and
    /// --inbound-plaintext-addr, as ztunnel's in-pod mode listens inside each Pod's network namespace.
    #[arg(long)]
    pub listen_on_workload_ips: bool,

    /// Open tunnels from the source workload's own IP (binding it transparently when it is not this host's,
    /// which needs CAP_NET_ADMIN and routing that returns the replies here), as Istio's ENABLE_ORIG_SRC.
    /// Implied by --listen-on-workload-ips, where every Pod address is this machine's. Peers then match
    /// `ipBlocks` against the Pod's address; otherwise they see the node's.
    #[arg(long, env = "ENABLE_ORIG_SRC")]
    pub original_source: bool,

    /// The firewall mark (SO_MARK) of the proxy's own connections: HBONE to peers, and the connections to local
    /// workloads and outside the mesh. Redirection rules exempt this mark (Istio's is 1337), so the proxy's
    /// traffic is not sent back to it. 0 sets no mark.
    #[arg(long, value_name = "MARK", default_value_t = 1337, env = "SOCKET_MARK")]
    pub socket_mark: u32,

    /// In-pod mode: the unix socket where istio-cni's node agent hands over each enrolled Pod's network
    /// namespace (Istio: /var/run/ztunnel/ztunnel.sock). The proxy then listens inside each Pod (inbound
    /// HBONE, inbound plaintext and outbound ports) and makes the Pod's connections from inside it.
    #[arg(long, value_name = "PATH", env = "INPOD_UDS")]
    pub inpod_uds: Option<std::path::PathBuf>,

    /// Disable an outbound listener: socks5, outbound or plaintext. Repeatable.
    #[arg(long = "disable", value_name = "LISTENER", value_parser = ["socks5", "outbound", "plaintext"])]
    pub disabled: Vec<String>,

    /// istiod: the configuration from its delta xDS instead of --config or --kubernetes.
    #[command(flatten)]
    pub istiod: IstiodArgs,

    /// Configuration, identity, operational endpoints, logs and drain (shared with mesh-waypoint).
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Where istiod is, read from the environment Istio's ztunnel chart sets (the flags override it).
#[derive(Debug, Clone, clap::Args)]
pub struct IstiodArgs {
    /// istiod's xDS address, `host:port` over TLS (Istio: `istiod.istio-system.svc:15012`), or
    /// `http://host:port` without TLS. Empty: no xDS.
    #[arg(long, value_name = "ADDR", env = "XDS_ADDRESS")]
    pub xds_address: Option<String>,

    /// The PEM root istiod's certificate is verified with: a file, PEM text, or `SYSTEM` for the system's trust
    /// store.
    #[arg(long, value_name = "FILE", env = "XDS_ROOT_CA", default_value = "./var/run/secrets/istio/root-cert.pem")]
    pub xds_root_ca: std::path::PathBuf,

    /// The service-account token sent to istiod (audience `istio-ca`), read again on every call.
    #[arg(long, value_name = "FILE", default_value = "./var/run/secrets/tokens/istio-token")]
    pub xds_token: std::path::PathBuf,

    /// The cluster id sent to istiod (`clusterid`); else `CLUSTER_ID`, else `Kubernetes`.
    #[arg(long, value_name = "ID", env = "ISTIO_META_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// This proxy's Pod name, for its node id.
    #[arg(long, value_name = "NAME", env = "POD_NAME", default_value = "")]
    pub pod_name: String,

    /// This proxy's namespace, for its node id.
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE", default_value = "")]
    pub pod_namespace: String,

    /// This proxy's Pod address, for its node id.
    #[arg(long, value_name = "IP", env = "INSTANCE_IP", default_value = "")]
    pub instance_ip: String,

    /// The CA that signs workload certificates (Istio's certificate service: istiod, or cert-manager's
    /// istio-csr), `host:port` over TLS or `http://host:port`. Unset: istiod's xDS address when one is given,
    /// else the local CA of --ca-dir.
    #[arg(long, value_name = "ADDR", env = "CA_ADDRESS")]
    pub ca_address: Option<String>,

    /// The PEM root the CA's certificate is verified with: a file, PEM text, or `SYSTEM`.
    #[arg(long, value_name = "FILE", env = "CA_ROOT_CA", default_value = "./var/run/secrets/istio/root-cert.pem")]
    pub ca_root_ca: std::path::PathBuf,

    /// Issue workload certificates from the local CA (--ca-dir, or a generated root) even with istiod, as
    /// Istio's FAKE_CA.
    #[arg(long, env = "FAKE_CA")]
    pub fake_ca: bool,
}

impl IstiodArgs {
    /// istiod's delta xDS as a configuration source, when an address is given; `ISTIO_META_*` variables of
    /// `environment` go into the node's metadata, as Istio's ztunnel sends them.
    pub fn source(
        &self,
        node_name: &str,
        environment: impl Iterator<Item = (String, String)>,
    ) -> Option<mesh_xds::ads::XdsSource> {
        let address = self.xds_address()?;
        let mut metadata = std::collections::BTreeMap::new();
        let mut cluster_env = None;
        for (key, value) in environment {
            if key == "CLUSTER_ID" {
                cluster_env = Some(value.clone());
            }
            if let Some(name) = key.strip_prefix("ISTIO_META_") {
                metadata.insert(name.to_owned(), value);
            }
        }
        let cluster_id = self.cluster_id.clone().or(cluster_env).unwrap_or_else(|| "Kubernetes".into());
        let control_plane = self.control_plane(address, &self.xds_root_ca, cluster_id);
        let node = mesh_xds::ads::NodeInfo {
            instance_ip: self.instance_ip.clone(),
            pod_name: self.pod_name.clone(),
            pod_namespace: self.pod_namespace.clone(),
            node_name: node_name.to_owned(),
            metadata,
        };
        Some(mesh_xds::ads::XdsSource::new(control_plane, node))
    }

    /// istiod's certificate service, when certificates come from it: `CA_ADDRESS`, else the xDS address;
    /// `None` with --fake-ca or without either address. Node mode: each request names the workload identity
    /// it is for.
    pub fn remote_ca(&self, environment: impl Iterator<Item = (String, String)>) -> Option<mesh_xds::ca::CaClient> {
        if self.fake_ca {
            return None;
        }
        let address = match self.ca_address.as_deref().map(str::trim) {
            Some(address) if !address.is_empty() => address,
            _ => self.xds_address()?,
        };
        let cluster_env = environment.filter(|(k, _)| k == "CLUSTER_ID").map(|(_, v)| v).last();
        let cluster_id = self.cluster_id.clone().or(cluster_env).unwrap_or_else(|| "Kubernetes".into());
        let control_plane = self.control_plane(address, &self.ca_root_ca, cluster_id);
        Some(mesh_xds::ca::CaClient::new(control_plane, true))
    }

    fn xds_address(&self) -> Option<&str> {
        self.xds_address.as_deref().map(str::trim).filter(|a| !a.is_empty())
    }

    fn control_plane(&self, address: &str, root_ca: &std::path::Path, cluster_id: String) -> mesh_xds::ControlPlane {
        let plaintext = address.starts_with("http://");
        mesh_xds::ControlPlane {
            address: address.to_owned(),
            root_ca: (!plaintext).then(|| mesh_xds::RootCa::from_setting(root_ca)),
            token: Some(self.xds_token.clone()).filter(|t| t.exists()),
            cluster_id,
            connect_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl Args {
    /// The settings, checked.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let enabled = |listener: &str| !self.disabled.iter().any(|d| d == listener);
        Ok(Config {
            node: self.node.clone(),
            socks5_addr: Some(self.socks5_addr).filter(|_| enabled("socks5")),
            outbound_addr: Some(self.outbound_addr).filter(|_| enabled("outbound")),
            inbound_addr: self.inbound_addr,
            inbound_plaintext_addr: Some(self.inbound_plaintext_addr).filter(|_| enabled("plaintext")),
            listen_on_workload_ips: self.listen_on_workload_ips,
            original_source: self.original_source,
            socket_mark: Some(self.socket_mark).filter(|m| *m != 0),
            inpod_uds: self.inpod_uds.clone().filter(|p| !p.as_os_str().is_empty()),
            common: self.common.config()?,
        })
    }
}
