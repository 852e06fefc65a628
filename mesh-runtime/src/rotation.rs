//! Keeping workload certificates: the store says when the next one is due, the task sleeps until then (or a
//! short poll, so that certificates added meanwhile are seen) and renews what is due. Connections keep their
//! certificate; new handshakes get the renewed one.
//!
//! With a remote CA the task also asks for the certificates [`Pki::want`] recorded, several at a time. A
//! refused or failed request is retried for that identity alone, after 0.5 s and then twice as long each
//! time up to 150 s (the bounds of Istio's node proxy); a certificate still valid stays in use meanwhile. An
//! answer is used only once it checks out ([`CertificateRequest::complete`]); its roots become the trust
//! bundle of the mesh's trust domain and aliases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mesh_identity::ca::{CertificateRequest, LocalCa, SignedCertificate};
use mesh_identity::rotation::Jitter;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId};
use mesh_identity::store::CertificateStore;
use rustls_pki_types::UnixTime;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::pki::{Issuer, Pki, RemoteCa};
use crate::shutdown::Shutdown;

/// The longest the task sleeps before looking again.
const POLL: Duration = Duration::from_secs(5);
/// The wait after a failed renewal from a local CA.
const RETRY: Duration = Duration::from_secs(1);
/// The first wait after a failed request to a remote CA.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between requests to a remote CA for one identity.
const MAX_BACKOFF: Duration = Duration::from_secs(150);
/// Requests to a remote CA in flight at once.
const CONCURRENT_REQUESTS: usize = 8;

/// Keeps `pki`'s certificates until shutdown: renews them from a local CA, or asks a remote one for those
/// wanted and renews them.
pub async fn run(pki: Pki, shutdown: Shutdown) {
    match pki.issuer.clone() {
        Issuer::Local(ca) => run_local(pki.store.clone(), ca, shutdown).await,
        Issuer::Remote(ca) => run_remote(pki, ca, shutdown).await,
    }
}

async fn run_local(store: CertificateStore, ca: Arc<LocalCa>, shutdown: Shutdown) {
    loop {
        let wait = store.next_renewal(UnixTime::now()).map_or(POLL, |d| d.min(POLL));
        let wait = if wait.is_zero() { RETRY } else { wait };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => return,
        }
        let report = store.renew_due(&ca, UnixTime::now(), jitter);
        for renewed in &report.renewed {
            info!(identity = %renewed, "workload certificate renewed");
        }
        for failed in &report.failed {
            warn!(identity = %failed.spiffe_id, error = %failed.error, "workload certificate renewal failed; retrying");
        }
    }
}

/// A failed identity's next attempt.
struct Backoff {
    at: Instant,
    next: Duration,
}

async fn run_remote(pki: Pki, ca: Arc<dyn RemoteCa>, shutdown: Shutdown) {
    let mut in_flight: JoinSet<(SpiffeId, Result<SignedCertificate, String>)> = JoinSet::new();
    let mut asking: BTreeSet<SpiffeId> = BTreeSet::new();
    let mut backoff: BTreeMap<SpiffeId, Backoff> = BTreeMap::new();
    loop {
        let now = UnixTime::now();
        let wanted = pki.wanted_identities().clone();
        backoff.retain(|id, _| wanted.contains(id));
        let due: BTreeSet<SpiffeId> = pki.store.due(now).into_iter().collect();
        let ready = |id: &SpiffeId| backoff.get(id).is_none_or(|b| b.at <= Instant::now());
        for id in wanted.iter().filter(|id| pki.store.get(id).is_none() || due.contains(*id)) {
            if asking.len() >= CONCURRENT_REQUESTS {
                break;
            }
            if asking.contains(id) || !ready(id) {
                continue;
            }
            let Ok(identity) = IstioIdentity::from_spiffe_id(id.clone()) else {
                warn!(identity = %id, "not an Istio identity (spiffe://<td>/ns/<ns>/sa/<sa>); no certificate asked for");
                pki.wanted_identities().remove(id);
                continue;
            };
            asking.insert(id.clone());
            let (ca, algorithm, ttl) =
                (Arc::clone(&ca), pki.store.options().key_algorithm, pki.store.options().workload_ttl);
            in_flight.spawn(async move {
                let result = request(ca.as_ref(), &identity, algorithm, ttl).await;
                (identity.spiffe_id().clone(), result)
            });
        }
        // A renewal already due only sets the pace if it can be asked for now: those waiting out a back-off, or
        // in flight, wake the loop by their retry time or their answer instead (no spinning while the CA is down).
        let due_now = due.iter().any(|id| wanted.contains(id) && !asking.contains(id) && ready(id));
        let renewal = match pki.store.next_renewal(now) {
            Some(wait) if !wait.is_zero() => wait,
            Some(_) if due_now => Duration::ZERO,
            _ => POLL,
        };
        let retry = backoff.values().map(|b| b.at.saturating_duration_since(Instant::now())).min().unwrap_or(POLL);
        let wait = renewal.min(retry).min(POLL).max(Duration::from_millis(10));
        let wanted_changed = Arc::clone(pki.wanted());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wanted_changed.changed.notified() => {}
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                let Ok((id, result)) = done else { continue };
                asking.remove(&id);
                match result {
                    Ok(signed) => {
                        backoff.remove(&id);
                        store_signed(&pki, &id, signed);
                    }
                    Err(error) => {
                        let next = backoff.get(&id).map_or(FIRST_BACKOFF, |b| (b.next * 2).min(MAX_BACKOFF));
                        let stored = pki.store.get(&id).filter(|c| c.is_usable(UnixTime::now()));
                        match stored {
                            Some(_) => warn!(identity = %id, %error, retry_in = ?next, "certificate renewal failed; the current certificate stays in use"),
                            None => warn!(identity = %id, %error, retry_in = ?next, "no certificate from the CA; the workload's mTLS fails until one comes"),
                        }
                        backoff.insert(id, Backoff { at: Instant::now() + next, next });
                    }
                }
            }
            () = shutdown.wait() => return,
        }
    }
}

/// A key, a CSR, the CA's answer checked.
async fn request(
    ca: &dyn RemoteCa,
    identity: &IstioIdentity,
    algorithm: mesh_identity::ca::KeyAlgorithm,
    ttl: Duration,
) -> Result<SignedCertificate, String> {
    let request = CertificateRequest::new(identity, algorithm).map_err(|e| e.to_string())?;
    let chain = ca.sign(identity, request.csr_pem(), ttl).await?;
    request.complete(&chain, UnixTime::now()).map_err(|e| format!("answer refused: {e}"))
}

/// Stores `signed` if `id` is still wanted, and trusts its roots.
fn store_signed(pki: &Pki, id: &SpiffeId, signed: SignedCertificate) {
    if !pki.wanted_identities().contains(id) {
        return;
    }
    let renewed = pki.store.get(id).is_some();
    let Some(domains) = pki.trust_domains() else { return };
    if signed.roots.trust_domain() == domains.local() {
        pki.store.replace_mesh_bundle(&domains, signed.roots.clone());
    } else {
        let roots = signed.roots.clone();
        pki.store.trust_bundles().update(|set| {
            set.insert(roots);
        });
    }
    match pki.store.insert(&signed.certificate, jitter(id)) {
        Ok(_) if renewed => info!(identity = %id, "workload certificate renewed by the CA"),
        Ok(_) => info!(identity = %id, "workload certificate from the CA"),
        Err(e) => warn!(identity = %id, error = %e, "the CA's certificate cannot be used"),
    }
}

/// Istio spreads renewals by ±1% of the lifetime; here the shift is derived from the identity, so that
/// workloads issued together do not all renew at once.
pub fn jitter(id: &SpiffeId) -> Jitter {
    let hash = id.as_str().bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    Jitter::Fraction((f64::from(hash % 2001) - 1000.0) / 100_000.0)
}
