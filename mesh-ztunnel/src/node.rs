//! The node: its name, the configuration in force, the certificates of its local workloads, the HBONE client,
//! metrics and the live inbound connections. Shared by every listener.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::net::SocketAddr;
use std::time::Duration;

use mesh_hbone::transport::{
    ConnectTcpError, HboneClient, SocketBuffers, SocketOptions, Tunnels, WorkloadIdentities, connect_tcp_from,
    connect_tcp_with,
};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId};
use mesh_policy::Snapshot;
use mesh_policy::cluster::{Cluster, Workload, WorkloadId};
use mesh_runtime::drain::Connections;
use mesh_runtime::ops::Readiness;
use mesh_runtime::pki::Pki;
use mesh_runtime::state::MeshState;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::Config;
use crate::inpod::PodSockets;
use crate::live::Live;
use crate::metrics::{Metrics, Side};

/// Everything the listeners share.
pub(crate) struct Node {
    /// The settings in force.
    pub(crate) config: Config,
    /// What the configuration is read from.
    pub(crate) source: String,
    /// The configuration in force.
    pub(crate) state: Arc<MeshState>,
    /// The CA and the certificates of the local workloads.
    pub(crate) pki: Pki,
    /// Which certificate answers for which local workload IP.
    pub(crate) identities: WorkloadIdentities,
    /// Tunnels to other node proxies and waypoints, opened as the local workloads.
    pub(crate) client: HboneClient,
    /// Inbound tunnels.
    pub(crate) inbound_tunnels: Tunnels,
    /// Istio's TCP metrics.
    pub(crate) metrics: Metrics,
    /// Live inbound connections, re-authorized when the configuration changes.
    pub(crate) live: Arc<Live>,
    /// Every connection in flight, inbound and outbound, for the drain.
    pub(crate) connections: Connections,
    /// Whether the proxy serves, and if not, why.
    pub(crate) readiness: Readiness,
    /// The firewall mark of the proxy's own connections.
    pub(crate) mark: Option<u32>,
    /// The network namespaces of the Pods served in-pod, by address.
    pub(crate) pods: Arc<PodSockets>,
    /// The local workloads: IP → identity.
    local: Mutex<BTreeMap<IpAddr, SpiffeId>>,
    /// Round-robin over a service's endpoints.
    next_endpoint: AtomicUsize,
}

impl Node {
    /// The node of `config`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Config,
        state: Arc<MeshState>,
        pki: Pki,
        identities: WorkloadIdentities,
        client: HboneClient,
        readiness: Readiness,
        mark: Option<u32>,
        source: String,
        pods: Arc<PodSockets>,
    ) -> Self {
        Node {
            pods,
            config,
            source,
            state,
            pki,
            identities,
            client,
            inbound_tunnels: Tunnels::new(),
            metrics: Metrics::default(),
            live: Arc::default(),
            connections: Connections::new(),
            readiness,
            mark,
            local: Mutex::new(BTreeMap::new()),
            next_endpoint: AtomicUsize::new(0),
        }
    }

    /// Whether `w` is a workload this node proxies: on this node, in the mesh, and not a Gateway's proxy (a
    /// waypoint or gateway speaks HBONE itself).
    pub(crate) fn is_local(&self, w: &Workload) -> bool {
        w.node.as_deref() == Some(self.config.node.as_str()) && w.enrolled && w.gateway.is_none()
    }

    /// The local workload at `ip`.
    pub(crate) fn local_workload<'s>(&self, cluster: &'s Cluster, ip: IpAddr) -> Option<(WorkloadId, &'s Workload)> {
        let id = cluster.workload_by_ip(ip)?;
        cluster.workload(id).filter(|w| self.is_local(w)).map(|w| (id, w))
    }

    /// Brings the local workloads in line with `snapshot`: certificates issued for new identities and dropped
    /// for gone ones, IPs mapped to identities. Returns the local IPs.
    pub(crate) fn sync(&self, snapshot: &Snapshot) -> BTreeSet<IpAddr> {
        let cluster = snapshot.cluster();
        let mut wanted: BTreeMap<IpAddr, SpiffeId> = BTreeMap::new();
        for (_, w) in cluster.workloads().filter(|(_, w)| self.is_local(w)) {
            let identity = match IstioIdentity::parse_principal(&w.principal) {
                Ok(identity) => identity,
                Err(e) => {
                    warn!(workload = %w.id, principal = %w.principal, error = %e, "no identity for workload");
                    continue;
                }
            };
            let had = self.pki.store.get(identity.spiffe_id()).is_some();
            match self.pki.want(&identity) {
                Ok(true) if !had => info!(workload = %w.id, identity = %identity.spiffe_id(), "certificate issued"),
                Ok(true) => {}
                Ok(false) => debug!(workload = %w.id, identity = %identity.spiffe_id(), "certificate asked of the CA"),
                Err(e) => warn!(workload = %w.id, error = %e, "certificate issuance failed"),
            }
            for ip in &w.ips {
                wanted.insert(*ip, identity.spiffe_id().clone());
            }
        }
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        for (ip, _) in local.iter().filter(|(ip, id)| wanted.get(ip) != Some(id)) {
            self.identities.remove(*ip);
        }
        for (ip, id) in wanted.iter().filter(|(ip, id)| local.get(ip) != Some(id)) {
            if let Err(e) = self.identities.insert(*ip, id) {
                warn!(%ip, identity = %id, error = %e, "cannot answer for workload");
            }
        }
        let kept: BTreeSet<&SpiffeId> = wanted.values().collect();
        for gone in self.pki.identities().into_iter().filter(|id| !kept.contains(id)) {
            self.pki.forget(&gone);
            info!(identity = %gone, "certificate dropped: no local workload has it");
        }
        *local = wanted;
        local.keys().copied().collect()
    }

    /// Connects to `target` (a local workload, or a destination outside the mesh) with the proxy's mark and
    /// an upstream's fixed buffers.
    /// A local workload served in-pod is reached from inside its network namespace.
    pub(crate) async fn connect(&self, target: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectTcpError> {
        self.connect_from(None, target, timeout).await
    }

    /// [`Node::connect`] on behalf of the local workload at `source`: from inside its network namespace when
    /// it is served in-pod, so the connection leaves from the Pod as its own would.
    pub(crate) async fn connect_from(
        &self,
        source: Option<IpAddr>,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream, ConnectTcpError> {
        let options = SocketOptions { buffers: SocketBuffers::UPSTREAM, mark: self.mark };
        let netns = source.and_then(|ip| self.pods.netns(ip)).or_else(|| self.pods.netns(target.ip()));
        // In-pod, a local Pod is reached only from inside its namespace: one not handed over (or gone) is not
        // reached from the node's.
        if netns.is_none()
            && self.config.inpod_uds.is_some()
            && self.local.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&target.ip())
        {
            let error = std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the Pod is not served in-pod here (istio-cni has not handed it over, or it is gone)",
            );
            return Err(ConnectTcpError::Connect { target, error });
        }
        match netns {
            Some(netns) => {
                let socket = tokio::task::spawn_blocking(move || netns.tcp_socket(target))
                    .await
                    .map_err(|e| ConnectTcpError::Connect { target, error: std::io::Error::other(e) })?
                    .map_err(|error| ConnectTcpError::Connect { target, error })?;
                connect_tcp_from(socket, target, timeout, options).await
            }
            None => connect_tcp_with(target, None, timeout, options).await,
        }
    }

    /// The HBONE port of peers: this proxy's own (15008).
    pub(crate) fn hbone_port(&self) -> u16 {
        self.config.inbound_addr.port()
    }

    /// Picks one of `n` endpoints.
    pub(crate) fn pick(&self, n: usize) -> usize {
        if n == 0 { 0 } else { self.next_endpoint.fetch_add(1, Ordering::Relaxed) % n }
    }
}

/// A workload as the metrics and access logs name it.
pub(crate) fn side(w: Option<&Workload>, principal: Option<String>) -> Side {
    Side {
        name: w.map(|w| w.id.name().to_owned()),
        workload: w.map(|w| w.workload_name.clone()),
        namespace: w.map(|w| w.namespace().to_owned()),
        principal: principal.or_else(|| w.map(|w| format!("spiffe://{}", w.principal))),
        app: w.and_then(|w| w.labels.get("app").cloned()),
    }
}
