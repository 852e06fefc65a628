//! The waypoint's own identity, `spiffe://<trust domain>/ns/<Gateway namespace>/sa/<its service account>`,
//! issued by the shared [`Pki`], and its certificates as the admin view shows them.

use mesh_runtime::pki::Pki;
use rustls_pki_types::UnixTime;
use serde::Serialize;

/// The certificates held, for the admin view.
pub(crate) fn certificates(pki: &Pki) -> Vec<CertView> {
    let now = UnixTime::now().as_secs();
    pki.store
        .identities()
        .into_iter()
        .filter_map(|id| {
            let stored = pki.store.get(&id)?;
            let not_after = stored.not_after().as_secs();
            Some(CertView {
                identity: id.to_string(),
                not_after,
                valid_for_seconds: not_after.saturating_sub(now),
                next_renewal: stored.schedule().renew_at().as_secs(),
                chain_length: stored.chain().len(),
            })
        })
        .collect()
}

/// A certificate as the admin view shows it.
#[derive(Debug, Serialize)]
pub(crate) struct CertView {
    /// Its SPIFFE ID.
    pub(crate) identity: String,
    /// Its expiry, Unix seconds.
    pub(crate) not_after: u64,
    /// Seconds left.
    pub(crate) valid_for_seconds: u64,
    /// When it is renewed, Unix seconds.
    pub(crate) next_renewal: u64,
    /// Certificates in its chain.
    pub(crate) chain_length: usize,
}
