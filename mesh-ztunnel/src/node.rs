//! The node: its name, the configuration in force, the certificates of its local workloads, the HBONE client,
//! metrics and the live inbound connections. Shared by every listener.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::net::SocketAddr;
use std::time::Duration;

use mesh_hbone::transport::{
    ConnectTcpError, HboneClient, SocketBuffers, SocketOptions, Tunnels, WorkloadIdentities, connect_tcp_with,
};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId};
use mesh_policy::Snapshot;
use mesh_policy::cluster::{Cluster, Workload, WorkloadId};
use mesh_runtime::drain::Connections;
use mesh_runtime::pki::Pki;
use mesh_runtime::state::MeshState;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::live::Live;
use crate::metrics::{Metrics, Side};

/// Everything the listeners share.
pub struct Node {
    /// `spec.nodeName` of the local Pods.
    pub name: String,
    /// The configuration in force.
    pub state: Arc<MeshState>,
    /// The CA and the certificates of the local workloads.
    pub pki: Pki,
    /// Which certificate answers for which local workload IP.
    pub identities: WorkloadIdentities,
    /// Tunnels to other node proxies and waypoints, opened as the local workloads.
    pub client: HboneClient,
    /// Inbound tunnels.
    pub inbound_tunnels: Tunnels,
    /// Istio's TCP metrics.
    pub metrics: Metrics,
    /// Live inbound connections, re-authorized when the configuration changes.
    pub live: Arc<Live>,
    /// Every connection in flight, inbound and outbound, for the drain.
    pub connections: Connections,
    /// The HBONE port of peers (15008).
    pub hbone_port: u16,
    /// Whether the first configuration and certificates are in place.
    pub ready: AtomicBool,
    /// The firewall mark of the proxy's own connections.
    pub mark: Option<u32>,
    /// The local workloads: IP → identity.
    local: Mutex<BTreeMap<IpAddr, SpiffeId>>,
    /// Round-robin over a service's endpoints.
    next_endpoint: AtomicUsize,
}

impl Node {
    /// A node named `name`.
    pub fn new(
        name: String,
        state: Arc<MeshState>,
        pki: Pki,
        identities: WorkloadIdentities,
        client: HboneClient,
        hbone_port: u16,
    ) -> Self {
        Node {
            name,
            state,
            pki,
            identities,
            client,
            inbound_tunnels: Tunnels::new(),
            metrics: Metrics::default(),
            live: Arc::default(),
            connections: Connections::new(),
            hbone_port,
            ready: AtomicBool::new(false),
            mark: None,
            local: Mutex::new(BTreeMap::new()),
            next_endpoint: AtomicUsize::new(0),
        }
    }

    /// Whether `w` is a workload this node proxies: on this node, in the mesh, and not a Gateway's proxy (a
    /// waypoint or gateway speaks HBONE itself).
    pub fn is_local(&self, w: &Workload) -> bool {
        w.node.as_deref() == Some(self.name.as_str()) && w.enrolled && w.gateway.is_none()
    }

    /// The local workload at `ip`.
    pub fn local_workload<'s>(&self, cluster: &'s Cluster, ip: IpAddr) -> Option<(WorkloadId, &'s Workload)> {
        let id = cluster.workload_by_ip(ip)?;
        cluster.workload(id).filter(|w| self.is_local(w)).map(|w| (id, w))
    }

    /// Brings the local workloads in line with `snapshot`: certificates issued for new identities and dropped
    /// for gone ones, IPs mapped to identities. Returns the local IPs.
    pub fn sync(&self, snapshot: &Snapshot) -> BTreeSet<IpAddr> {
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
            if self.pki.store.get(identity.spiffe_id()).is_none() {
                match self.pki.issue(&identity) {
                    Ok(_) => info!(workload = %w.id, identity = %identity.spiffe_id(), "certificate issued"),
                    Err(e) => warn!(workload = %w.id, error = %e, "certificate issuance failed"),
                }
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
        for gone in self.pki.store.identities().into_iter().filter(|id| !kept.contains(id)) {
            self.pki.store.remove(&gone);
            info!(identity = %gone, "certificate dropped: no local workload has it");
        }
        *local = wanted;
        local.keys().copied().collect()
    }

    /// Connects to `target` (a local workload, or a destination outside the mesh) with the proxy's mark and
    /// an upstream's fixed buffers.
    pub async fn connect(&self, target: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectTcpError> {
        let options = SocketOptions { buffers: SocketBuffers::UPSTREAM, mark: self.mark };
        connect_tcp_with(target, None, timeout, options).await
    }

    /// Picks one of `n` endpoints.
    pub fn pick(&self, n: usize) -> usize {
        if n == 0 { 0 } else { self.next_endpoint.fetch_add(1, Ordering::Relaxed) % n }
    }

    /// Whether the node is ready to serve.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// A workload as the metrics and access logs name it.
pub fn side(w: Option<&Workload>, principal: Option<String>) -> Side {
    Side {
        workload: w.map(|w| w.workload_name.clone()),
        namespace: w.map(|w| w.namespace().to_owned()),
        principal: principal.or_else(|| w.map(|w| format!("spiffe://{}", w.principal))),
        app: w.and_then(|w| w.labels.get("app").cloned()),
    }
}
