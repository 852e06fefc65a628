//! Which certificate an HBONE server presents on a connection, chosen by the local address the client dialled.
//!
//! A node proxy answers on port 15008 of every local workload's IP, each with that workload's certificate:
//! [`WorkloadIdentities`] maps local IPs to identities of a [`CertificateStore`]. A waypoint presents one
//! identity whatever address was dialled: an `Arc<rustls::ServerConfig>` is a [`ServerIdentity`] for every
//! address. Configurations built on the store present the certificate current at each handshake, so renewals
//! apply to new connections without rebuilding anything.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use mesh_identity::spiffe::{SpiffeId, TrustDomain};
use mesh_identity::store::CertificateStore;
use mesh_identity::tls::TlsError;
use tokio_rustls::rustls::ServerConfig;

use crate::status::canonical;

/// Chooses the TLS configuration of each connection a server accepts, by the local address it arrived at.
/// A connection to an address with no configuration is refused before TLS.
///
/// Implemented by [`WorkloadIdentities`] (a node proxy), by `Arc<rustls::ServerConfig>` (one identity for every
/// address: a waypoint), and by any `Fn(SocketAddr) -> Option<Arc<rustls::ServerConfig>>`.
pub trait ServerIdentity: Send + Sync + 'static {
    /// The configuration for a connection that arrived at `local` (IPv4-mapped IPv6 addresses are given as
    /// IPv4), or `None` to refuse the connection.
    fn server_config(&self, local: SocketAddr) -> Option<Arc<ServerConfig>>;

    /// Whether the certificate to present at `local` is there now. A server gives one that is still being
    /// issued (by a remote CA) a few seconds before it starts the handshake. By default, always.
    fn has_certificate(&self, local: SocketAddr) -> bool {
        let _ = local;
        true
    }
}

impl ServerIdentity for Arc<ServerConfig> {
    fn server_config(&self, _local: SocketAddr) -> Option<Arc<ServerConfig>> {
        Some(Arc::clone(self))
    }
}

impl<F> ServerIdentity for F
where
    F: Fn(SocketAddr) -> Option<Arc<ServerConfig>> + Send + Sync + 'static,
{
    fn server_config(&self, local: SocketAddr) -> Option<Arc<ServerConfig>> {
        self(local)
    }
}

/// The identities a node proxy serves, by local workload IP, with certificates from a [`CertificateStore`].
/// Cheap to clone; clones share the map, so the owner adds and removes workloads while a server uses it.
///
/// One server configuration is built per identity ([`CertificateStore::server_config`]) and shared by the IPs
/// of that identity; it presents the identity's certificate current at each handshake.
#[derive(Clone)]
pub struct WorkloadIdentities {
    inner: Arc<Inner>,
}

struct Inner {
    store: CertificateStore,
    accepted: Vec<TrustDomain>,
    map: RwLock<Map>,
}

#[derive(Default)]
struct Map {
    by_ip: HashMap<IpAddr, SpiffeId>,
    configs: HashMap<SpiffeId, Arc<ServerConfig>>,
}

impl fmt::Debug for WorkloadIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.inner.map.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("WorkloadIdentities")
            .field("by_ip", &map.by_ip)
            .field("accepted", &self.inner.accepted)
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentities {
    /// No workloads yet; clients are accepted from the `accepted` trust domains.
    pub fn new(store: CertificateStore, accepted: impl IntoIterator<Item = TrustDomain>) -> Result<Self, TlsError> {
        let accepted: Vec<TrustDomain> = accepted.into_iter().collect();
        if accepted.is_empty() {
            return Err(TlsError::NoAcceptedTrustDomains);
        }
        Ok(WorkloadIdentities { inner: Arc::new(Inner { store, accepted, map: RwLock::default() }) })
    }

    /// Answers connections to `ip` as `identity` from now on (replacing what `ip` had). The identity need not
    /// have a certificate in the store yet; until it has a valid one, handshakes at `ip` fail.
    pub fn insert(&self, ip: IpAddr, identity: &SpiffeId) -> Result<(), TlsError> {
        let ip = canonical(ip);
        let existing = self.read(|map| map.configs.get(identity).cloned());
        let config = match existing {
            Some(config) => config,
            None => Arc::new(self.inner.store.server_config(identity, self.inner.accepted.iter().cloned())?),
        };
        self.write(|map| {
            map.configs.entry(identity.clone()).or_insert(config);
            map.by_ip.insert(ip, identity.clone());
        });
        Ok(())
    }

    /// Stops answering at `ip` (connections open there stay); returns the identity it had.
    pub fn remove(&self, ip: IpAddr) -> Option<SpiffeId> {
        let ip = canonical(ip);
        self.write(|map| {
            let removed = map.by_ip.remove(&ip)?;
            if !map.by_ip.values().any(|id| *id == removed) {
                map.configs.remove(&removed);
            }
            Some(removed)
        })
    }

    /// The identity answering at `ip`.
    pub fn identity(&self, ip: IpAddr) -> Option<SpiffeId> {
        self.read(|map| map.by_ip.get(&canonical(ip)).cloned())
    }

    fn read<T>(&self, f: impl FnOnce(&Map) -> T) -> T {
        // The map stays consistent across a panic elsewhere: every change is a few inserts or removes.
        f(&self.inner.map.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Map) -> T) -> T {
        f(&mut self.inner.map.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ServerIdentity for WorkloadIdentities {
    fn server_config(&self, local: SocketAddr) -> Option<Arc<ServerConfig>> {
        self.read(|map| map.by_ip.get(&canonical(local.ip())).and_then(|id| map.configs.get(id)).cloned())
    }

    fn has_certificate(&self, local: SocketAddr) -> bool {
        self.identity(local.ip()).is_some_and(|id| self.inner.store.get(&id).is_some())
    }
}
