//! Renewing workload certificates on schedule: the store says when the next one is due, the task sleeps until
//! then (or a short poll, so that certificates added meanwhile are seen) and renews what is due. Connections
//! keep their certificate; new handshakes get the renewed one.

use std::sync::Arc;
use std::time::Duration;

use mesh_identity::ca::LocalCa;
use mesh_identity::rotation::Jitter;
use mesh_identity::spiffe::SpiffeId;
use mesh_identity::store::CertificateStore;
use rustls_pki_types::UnixTime;
use tracing::{info, warn};

use crate::shutdown::Shutdown;

/// The longest the task sleeps before looking again.
const POLL: Duration = Duration::from_secs(5);
/// The wait after a failed renewal.
const RETRY: Duration = Duration::from_secs(1);

/// Renews `store`'s certificates from `ca` until shutdown.
pub async fn run(store: CertificateStore, ca: Arc<LocalCa>, shutdown: Shutdown) {
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

/// Istio spreads renewals by ±1% of the lifetime; here the shift is derived from the identity, so that
/// workloads issued together do not all renew at once.
pub fn jitter(id: &SpiffeId) -> Jitter {
    let hash = id.as_str().bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    Jitter::Fraction((f64::from(hash % 2001) - 1000.0) / 100_000.0)
}
