//! Renewal of stored certificates from the local CA, on the schedule each got when it was stored.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::UnixTime;

use super::{CertificateStore, StoreError, StoredCertificate};
use crate::ca::LocalCa;
use crate::rotation::{Jitter, RenewalState};
use crate::spiffe::{IstioIdentity, SpiffeId};
use crate::tls::WorkloadCertificate;

/// What a renewal pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenewalReport {
    /// The identities whose certificates were replaced.
    pub renewed: Vec<SpiffeId>,
    /// The identities that are due but could not be renewed; each keeps its certificate (never presented once
    /// expired) and stays due.
    pub failed: Vec<RenewalFailure>,
}

/// One identity that could not be renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalFailure {
    /// The identity.
    pub spiffe_id: SpiffeId,
    /// Why.
    pub error: StoreError,
    /// Whether its stored certificate has expired, so that its handshakes fail until a renewal succeeds.
    pub expired: bool,
}

impl CertificateStore {
    /// The earliest renewal time of the stored certificates; `None` when none is stored. It may be in the past:
    /// a certificate whose renewal failed stays due.
    pub fn next_renewal_at(&self) -> Option<UnixTime> {
        self.stored().iter().map(|stored| stored.schedule.renew_at()).min()
    }

    /// How long after `now` the next renewal is due, zero when one is due already; `None` when no certificate
    /// is stored. The owner sleeps this long (re-asking after storing a certificate), then calls
    /// [`CertificateStore::renew_due`]; after a failed renewal this stays zero, so the owner retries with its
    /// own back-off.
    pub fn next_renewal(&self, now: UnixTime) -> Option<Duration> {
        self.next_renewal_at().map(|at| Duration::from_secs(at.as_secs().saturating_sub(now.as_secs())))
    }

    /// The identities whose certificates are due for renewal at `now` (or expired), in order.
    pub fn due(&self, now: UnixTime) -> Vec<SpiffeId> {
        let mut due: Vec<SpiffeId> = self
            .stored()
            .into_iter()
            .filter(|stored| stored.schedule.state(now) != RenewalState::Fresh)
            .map(|stored| stored.spiffe_id.clone())
            .collect();
        due.sort();
        due
    }

    /// Has `ca` issue a certificate for `identity` valid from `now` (with [`super::StoreOptions::workload_ttl`]
    /// and [`super::StoreOptions::key_algorithm`]) and stores it, its renewal shifted by `jitter`.
    pub fn issue(
        &self,
        ca: &LocalCa,
        identity: &IstioIdentity,
        now: UnixTime,
        jitter: Jitter,
    ) -> Result<Arc<StoredCertificate>, StoreError> {
        let stored = self.issue_unstored(ca, identity, now, jitter)?;
        self.slot(identity.spiffe_id()).set(Some(Arc::clone(&stored)));
        Ok(stored)
    }

    fn issue_unstored(
        &self,
        ca: &LocalCa,
        identity: &IstioIdentity,
        now: UnixTime,
        jitter: Jitter,
    ) -> Result<Arc<StoredCertificate>, StoreError> {
        let spiffe_id = identity.spiffe_id();
        let options = &self.inner.options;
        let issued = ca
            .issue_with_key(identity, options.key_algorithm, options.workload_ttl, now)
            .map_err(|source| StoreError::Issue { spiffe_id: spiffe_id.clone(), source })?;
        let certificate = WorkloadCertificate::try_from(issued)
            .map_err(|source| StoreError::Certificate { spiffe_id: spiffe_id.clone(), source })?;
        self.load(&certificate, jitter)
    }

    /// Renews, from `ca` at `now`, every stored certificate that is due (past its renewal time, or expired),
    /// each new one's renewal shifted by `jitter(identity)`. Certificates are issued without holding any lock;
    /// each replacement is atomic, and an identity removed meanwhile is not stored again.
    pub fn renew_due(&self, ca: &LocalCa, now: UnixTime, jitter: impl FnMut(&SpiffeId) -> Jitter) -> RenewalReport {
        self.renew_where(ca, now, jitter, |stored| stored.schedule.state(now) != RenewalState::Fresh)
    }

    /// Renews every stored certificate from `ca` at `now`, due or not: after the CA itself changed (a new
    /// intermediate or root), so that workloads move to it within the trust bundles' overlap.
    pub fn renew_all(&self, ca: &LocalCa, now: UnixTime, jitter: impl FnMut(&SpiffeId) -> Jitter) -> RenewalReport {
        self.renew_where(ca, now, jitter, |_| true)
    }

    fn renew_where(
        &self,
        ca: &LocalCa,
        now: UnixTime,
        mut jitter: impl FnMut(&SpiffeId) -> Jitter,
        select: impl Fn(&StoredCertificate) -> bool,
    ) -> RenewalReport {
        self.sweep();
        let mut report = RenewalReport::default();
        let mut selected: Vec<Arc<StoredCertificate>> = self.stored().into_iter().filter(|s| select(s)).collect();
        selected.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        for old in selected {
            let spiffe_id = &old.spiffe_id;
            let renewed = IstioIdentity::from_spiffe_id(spiffe_id.clone())
                .map_err(|_| StoreError::NotIstio { spiffe_id: spiffe_id.clone() })
                .and_then(|identity| self.issue_unstored(ca, &identity, now, jitter(spiffe_id)));
            match renewed {
                Ok(new) => {
                    // Under the map's read lock, so a concurrent remove either happened before (and the
                    // identity stays removed) or waits until this replacement is done.
                    let slots = self.slots();
                    if let Some(slot) = slots.get(spiffe_id).filter(|slot| slot.get().is_some()) {
                        slot.set(Some(new));
                        report.renewed.push(spiffe_id.clone());
                    }
                }
                Err(error) => report.failed.push(RenewalFailure {
                    spiffe_id: spiffe_id.clone(),
                    error,
                    expired: old.schedule.state(now) == RenewalState::Expired,
                }),
            }
        }
        report
    }

    /// Every stored certificate, at this moment.
    fn stored(&self) -> Vec<Arc<StoredCertificate>> {
        self.slots().values().filter_map(|slot| slot.get()).collect()
    }
}
