//! Live inbound connections, re-authorized against every new configuration: a connection the new policy
//! denies is closed, as Istio's ztunnel does after a policy change.
//!
//! A connection is registered before it is decided on, so that a configuration that lands while the decision
//! or the connect to the workload is under way still reaches it: [`Live::enforce`] then judges it against
//! the new configuration like any other, and the connection checks [`Registration::is_closed`] before it
//! relays a byte.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mesh_identity::spiffe::IstioIdentity;
use mesh_policy::Snapshot;
use mesh_runtime::drain::Tracked;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::node::Node;

/// One live inbound connection.
#[derive(Clone)]
struct Entry {
    /// The destination workload's address.
    target: SocketAddr,
    /// The peer's identity (none for plaintext).
    peer: Option<IstioIdentity>,
    /// The source IP (the connection's peer address).
    source_ip: IpAddr,
    /// Cancelled to close it.
    close: CancellationToken,
}

/// A live connection, as the admin view lists it.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    /// The destination.
    pub(crate) target: SocketAddr,
    /// The peer's identity.
    pub(crate) peer: Option<String>,
    /// The source address.
    pub(crate) source_ip: IpAddr,
}

/// The registry.
#[derive(Default)]
pub(crate) struct Live {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// A registered connection, counted for the drain; removed from the registry when dropped.
pub(crate) struct Registration {
    live: Arc<Live>,
    id: u64,
    /// Cancelled by a configuration that denies the connection, or at the drain deadline.
    close: CancellationToken,
    tracked: Tracked,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.live.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

/// Why a registered connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A configuration since the registration denies it.
    Denied,
    /// The drain deadline passed.
    Drained,
}

impl Closed {
    /// As an access log's `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Denied => "closed: the new configuration denies it",
            Closed::Drained => "closed: the drain deadline passed",
        }
    }
}

impl Registration {
    /// Whether a configuration since the registration denies the connection, or the drain deadline passed.
    pub(crate) fn is_closed(&self) -> bool {
        self.close.is_cancelled()
    }

    /// Resolves when the connection must close, saying why.
    pub(crate) async fn closed(&self) -> Closed {
        self.close.cancelled().await;
        if self.tracked.is_closing() { Closed::Drained } else { Closed::Denied }
    }
}

impl Live {
    /// Lists a connection to `target` from `source_ip` (as `peer` over HBONE, none for plaintext), counted
    /// for the drain by `tracked`, until the registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        target: SocketAddr,
        peer: Option<IstioIdentity>,
        source_ip: IpAddr,
        tracked: Tracked,
    ) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = tracked.child_token();
        let entry = Entry { target, peer, source_ip, close: close.clone() };
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).insert(id, entry);
        Registration { live: Arc::clone(self), id, close, tracked }
    }

    /// The live connections.
    pub(crate) fn list(&self) -> Vec<Listed> {
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

    /// Closes every connection `snapshot` no longer allows: its destination gone from the node, denied by
    /// policy, or plaintext that PeerAuthentication now refuses. Returns how many were closed.
    pub(crate) fn enforce(&self, node: &Node, snapshot: &Snapshot) -> usize {
        let entries: Vec<Entry> = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|e| !e.close.is_cancelled())
            .cloned()
            .collect();
        let mut closed = 0;
        for entry in entries {
            let verdict = match &entry.peer {
                Some(peer) => crate::inbound::verdict(node, snapshot, entry.target, peer, entry.source_ip),
                None => crate::plaintext::verdict(node, snapshot, entry.target, entry.source_ip),
            };
            if let Err(denied) = verdict {
                info!(
                    dst.addr = %entry.target,
                    src.identity = entry.peer.as_ref().map(|p| p.spiffe_id().to_string()).unwrap_or_default(),
                    src.addr = %entry.source_ip,
                    reason = %denied,
                    "connection closing: the new configuration denies it"
                );
                entry.close.cancel();
                closed += 1;
            }
        }
        closed
    }
}
