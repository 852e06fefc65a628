//! Helpers shared by the X.509 tests: a fixed `now` and Istio identities in `cluster.local`.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
use rustls_pki_types::UnixTime;

/// 2025-06-15, the time the tests run at.
pub(crate) const NOW: u64 = 1_750_000_000;

/// `secs` after the Unix epoch.
pub(crate) fn at(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

/// `cluster.local`.
pub(crate) fn td() -> TrustDomain {
    TrustDomain::new("cluster.local").unwrap()
}

/// `spiffe://cluster.local/ns/default/sa/bookinfo`.
pub(crate) fn bookinfo() -> IstioIdentity {
    IstioIdentity::new(&td(), "default", "bookinfo").unwrap()
}
