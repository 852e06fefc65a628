//! One workload's certificate as the store holds it: loaded for rustls once, with its renewal schedule.

use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::rotation::RenewalSchedule;
use crate::spiffe::SpiffeId;

/// A workload certificate in the store: the chain and loaded key as rustls presents them, and when to renew.
///
/// Immutable: a renewal stores a new one in its place. Handshakes that took this one keep it.
pub struct StoredCertificate {
    pub(crate) spiffe_id: SpiffeId,
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) schedule: RenewalSchedule,
}

impl StoredCertificate {
    /// The SPIFFE ID of the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The chain (leaf first) and key, as the resolvers hand them to rustls.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// The leaf, as presented in handshakes.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.certified.cert.first()
    }

    /// The leaf's validity and renewal time.
    pub fn schedule(&self) -> &RenewalSchedule {
        &self.schedule
    }

    /// The leaf's `notAfter`.
    pub fn not_after(&self) -> UnixTime {
        self.schedule.not_after()
    }

    /// Whether the certificate may be presented at `now` (`notBefore <= now < notAfter`).
    pub fn is_usable(&self, now: UnixTime) -> bool {
        self.schedule.is_usable(now)
    }
}

impl fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.certified.cert.len())
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}
