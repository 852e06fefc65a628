//! X.509-SVID extraction on arbitrary bytes: never panics, and an extracted SPIFFE ID is canonical (it parses
//! back to itself) and consistent across the two roles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_identity::spiffe::SpiffeId;
use mesh_identity::svid::{PeerRole, Svid, extract_spiffe_id};

fuzz_target!(|der: &[u8]| {
    let Ok(svid) = Svid::parse(der) else {
        assert!(extract_spiffe_id(der, PeerRole::Server).is_err());
        assert!(extract_spiffe_id(der, PeerRole::Client).is_err());
        return;
    };
    let id = svid.spiffe_id();
    assert_eq!(SpiffeId::new(id.as_str()).as_ref(), Ok(id));
    for role in [PeerRole::Server, PeerRole::Client] {
        match extract_spiffe_id(der, role) {
            Ok(extracted) => assert!(svid.allows(role) && extracted == *id),
            Err(_) => assert!(!svid.allows(role)),
        }
    }
});
