//! rustls certificate resolvers over one identity's slot in the store: the certificate current at each
//! handshake, never an expired one.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;

use super::StoredCertificate;
use crate::spiffe::SpiffeId;

/// Where the store keeps one identity's current certificate; shared by the store and that identity's
/// resolvers, so a replacement is seen by every configuration built for the identity.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    current: RwLock<Option<Arc<StoredCertificate>>>,
}

impl Slot {
    pub(crate) fn get(&self) -> Option<Arc<StoredCertificate>> {
        // A poisoned lock still holds a whole value: writers only ever store a finished certificate.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set(&self, value: Option<Arc<StoredCertificate>>) -> Option<Arc<StoredCertificate>> {
        std::mem::replace(&mut *self.current.write().unwrap_or_else(PoisonError::into_inner), value)
    }

    /// The certificate's key for rustls if one is stored and it is valid at `time`'s current time: one read
    /// lock and one `Arc` clone.
    fn usable(&self, time: &dyn TimeProvider) -> Option<Arc<CertifiedKey>> {
        // No time, no certificate: validity cannot be shown.
        let now = time.current_time()?;
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let stored = current.as_ref()?;
        stored.schedule.is_usable(now).then(|| Arc::clone(&stored.certified))
    }
}

/// Presents one identity's certificate as stored in a [`super::CertificateStore`] at the moment of each
/// handshake, as a TLS server ([`ResolvesServerCert`]) or client ([`ResolvesClientCert`]).
///
/// A handshake takes the certificate once, when rustls asks for it; a renewal afterwards changes neither that
/// handshake nor established connections, and the next handshake presents the new certificate. Fails closed:
/// when the identity has no certificate, or the store's clock (the [`TimeProvider`] the store's configurations
/// also verify peers with) is outside the certificate's validity, nothing is presented, so a server aborts the
/// handshake and a client sends no certificate, which an HBONE server refuses.
#[derive(Clone)]
pub struct IdentityResolver {
    pub(crate) spiffe_id: SpiffeId,
    pub(crate) slot: Arc<Slot>,
    pub(crate) time: Arc<dyn TimeProvider>,
}

impl IdentityResolver {
    /// The identity whose certificate is presented.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The certificate a handshake starting now would present, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.slot.usable(&*self.time)
    }
}

impl fmt::Debug for IdentityResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityResolver").field("spiffe_id", &self.spiffe_id).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for IdentityResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for IdentityResolver {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}
