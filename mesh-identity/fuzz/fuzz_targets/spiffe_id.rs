//! Feeds arbitrary bytes to the SPIFFE ID and Istio identity parsers: they must never panic, and whatever
//! parses must be canonical (printed back exactly as read) and parse again to the same value.
//!
//! Run with `cargo +nightly fuzz run spiffe_id` from `mesh-identity/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = SpiffeId::new(text) {
        assert_eq!(id.as_str(), text);
        assert_eq!(SpiffeId::new(id.as_str()).ok(), Some(id.clone()));
        assert!(TrustDomain::new(id.trust_domain_name()).is_ok());
        if let Ok(istio) = IstioIdentity::from_spiffe_id(id.clone()) {
            assert_eq!(istio.spiffe_id(), &id);
            assert_eq!(IstioIdentity::parse_principal(istio.principal()).ok(), Some(istio.clone()));
        }
    }
    let _ = TrustDomain::new(text);
    let _ = IstioIdentity::parse_principal(text);
});
