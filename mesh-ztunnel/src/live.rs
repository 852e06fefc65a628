//! Live inbound connections, re-authorized against every new configuration: a connection the new policy
//! denies is closed, as Istio's ztunnel does after a policy change.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mesh_hbone::transport::TunnelHandle;
use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::Snapshot;
use mesh_policy::proxy::Connection;
use serde::Serialize;
use tokio::sync::Notify;
use tracing::info;

use crate::node::Node;

/// How a live connection is closed.
#[derive(Clone)]
pub enum Closer {
    /// An HBONE tunnel: reset it.
    Tunnel(TunnelHandle),
    /// A plaintext connection: wake its relay, which drops both sockets.
    Plain(Arc<Notify>),
}

/// One live inbound connection.
#[derive(Clone)]
pub struct Entry {
    /// The destination workload's address.
    pub target: SocketAddr,
    /// The peer's identity (none for plaintext).
    pub peer: Option<IstioIdentity>,
    /// The original source IP.
    pub source_ip: IpAddr,
    /// How to close it.
    pub closer: Closer,
}

/// A live connection, as the admin view lists it.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// The destination.
    pub target: SocketAddr,
    /// The peer's identity.
    pub peer: Option<String>,
    /// The original source.
    pub source_ip: IpAddr,
}

/// The registry.
#[derive(Default)]
pub struct Live {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// Removes its entry when dropped.
pub struct Registration<'a> {
    live: &'a Live,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.live.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Live {
    /// Lists `entry` until the registration is dropped.
    pub fn register(&self, entry: Entry) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).insert(id, entry);
        Registration { live: self, id }
    }

    /// The live connections.
    pub fn list(&self) -> Vec<Listed> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .values()
            .map(|e| Listed {
                target: e.target,
                peer: e.peer.as_ref().map(|p| p.spiffe_id().to_string()),
                source_ip: e.source_ip,
            })
            .collect()
    }

    /// Closes every connection `snapshot` no longer allows (its destination gone from the node, or denied by
    /// policy). Returns how many were closed.
    pub fn enforce(&self, node: &Node, snapshot: &Snapshot) -> usize {
        let entries: Vec<Entry> =
            self.entries.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let mut closed = 0;
        for entry in entries {
            let verdict = match node.local_workload(snapshot.cluster(), entry.target.ip()) {
                None => Err("the destination is no longer a workload of this node".to_owned()),
                Some((id, _)) => match snapshot.workload_target(id, entry.target.port()) {
                    None => Err("the destination is no longer a workload of this node".to_owned()),
                    Some(target) => {
                        let mut connection = Connection::new(target).with_source_ip(entry.source_ip);
                        if let Some(peer) = &entry.peer {
                            connection = connection.with_peer(peer);
                        }
                        let decision = snapshot.authorize_connection(&connection);
                        if decision.allowed { Ok(()) } else { Err(decision.to_string()) }
                    }
                },
            };
            if let Err(reason) = verdict {
                info!(
                    dst.addr = %entry.target,
                    src.identity = entry.peer.as_ref().map(|p| p.spiffe_id().to_string()).unwrap_or_default(),
                    src.addr = %entry.source_ip,
                    %reason,
                    "connection closed: the new configuration denies it"
                );
                match &entry.closer {
                    Closer::Tunnel(handle) => handle.close(),
                    Closer::Plain(notify) => notify.notify_one(),
                }
                closed += 1;
            }
        }
        closed
    }
}
