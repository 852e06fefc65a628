//! Istio's in-pod mode: istio-cni's node agent redirects each enrolled Pod's traffic inside the Pod's own
//! network namespace and hands that namespace to the node proxy over ZDS ([`mesh_xds::zds`]). For each Pod the
//! proxy listens inside the namespace, with the proxy's mark and `IP_TRANSPARENT`:
//!
//! - the inbound HBONE port (15008) and the inbound plaintext port (15006), where the Pod's inbound rules send
//!   traffic;
//! - the outbound port (15001), where its outbound rules redirect what the Pod's containers connect to;
//!
//! and it makes the Pod's tunnels, and its connections to the Pod's own containers, inside the namespace too,
//! so they leave from the Pod (the mark keeps the Pod's rules from redirecting them again).

mod agent;
mod netns;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use mesh_policy::cluster::{Cluster, Workload};
use mesh_xds::zds::PodInfo;
use tokio::sync::oneshot;

pub(crate) use agent::run as follow_agent;
pub(crate) use netns::{Netns, PodSocketFactory, PodSockets};

/// A Pod the agent handed over.
#[derive(Debug)]
pub(crate) struct Pod {
    /// Its uid (Kubernetes `metadata.uid`).
    pub(crate) uid: String,
    /// Who it is.
    pub(crate) info: PodInfo,
    /// Its network namespace.
    pub(crate) netns: Netns,
}

/// What the agent asks of the proxy; `done` answers when it is done.
#[derive(Debug)]
pub(crate) enum PodEvent {
    /// Serve the Pod: listeners in its namespace.
    Serve {
        /// The Pod.
        pod: Pod,
        /// Whether its listeners are up, and if not why.
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Stop serving the Pod.
    Stop {
        /// Its uid.
        uid: String,
        /// Closed once its listeners are.
        done: oneshot::Sender<()>,
    },
}

/// Where the Pods served in-pod are, as the configuration knows them: each Pod is the local workload
/// (`is_local`) of its namespace, name and service account, as Istio's node proxy matches them.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    /// Every address of a Pod, with the Pod's namespace.
    pub(crate) by_ip: HashMap<IpAddr, Netns>,
    /// Each Pod's first address, by uid.
    pub(crate) by_uid: HashMap<String, IpAddr>,
}

/// The addresses of the Pods of `pods` (by uid) in `cluster`.
pub(crate) fn addresses(
    cluster: &Cluster,
    pods: &BTreeMap<String, (PodInfo, Netns)>,
    is_local: impl Fn(&Workload) -> bool,
) -> Addresses {
    let by_name: HashMap<(&str, &str, &str), (&str, &Netns)> = pods
        .iter()
        .map(|(uid, (info, netns))| {
            ((info.namespace.as_str(), info.name.as_str(), info.service_account.as_str()), (uid.as_str(), netns))
        })
        .collect();
    let mut addresses = Addresses::default();
    for (_, w) in cluster.workloads().filter(|(_, w)| is_local(w)) {
        if let Some((uid, netns)) = by_name.get(&(w.namespace(), w.id.name(), w.service_account.as_str())) {
            if let Some(ip) = w.ips.first() {
                addresses.by_uid.insert((*uid).to_owned(), *ip);
            }
            for ip in &w.ips {
                addresses.by_ip.insert(*ip, (*netns).clone());
            }
        }
    }
    addresses
}
