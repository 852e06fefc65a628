//! The X.509-SVID leaf profile on certificates made by OpenSSL (tests/data/x509/generate.sh) and by the local
//! CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, SpiffeIdError, TrustDomain};
use mesh_identity::svid::{KeyUsageProblem, PeerRole, Svid, SvidError, extract_spiffe_id};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

fn fixture(name: &str) -> CertificateDer<'static> {
    let pem = std::fs::read(format!("tests/data/x509/{name}")).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap()
}

#[test]
fn openssl_svid_is_extracted() {
    let der = fixture("leaf-istio.pem");
    let svid = Svid::parse(&der).unwrap();
    assert_eq!(svid.spiffe_id().as_str(), "spiffe://cluster.local/ns/default/sa/bookinfo");
    let istio = svid.istio_identity().unwrap();
    assert_eq!((istio.namespace(), istio.service_account()), ("default", "bookinfo"));
    assert!(svid.allows(PeerRole::Server) && svid.allows(PeerRole::Client));
    assert!(svid.not_before() < svid.not_after());
    assert_eq!(extract_spiffe_id(&der, PeerRole::Server).unwrap(), *svid.spiffe_id());
}

#[test]
fn profile_violations_have_precise_errors() {
    let cases: &[(&str, SvidError)] = &[
        ("leaf-two-uri-sans.pem", SvidError::MultipleUriSans { count: 2 }),
        ("leaf-no-uri-san.pem", SvidError::NoUriSan),
        (
            "leaf-not-spiffe.pem",
            SvidError::InvalidSpiffeId {
                uri: "https://cluster.local/ns/default/sa/bookinfo".into(),
                source: SpiffeIdError::WrongScheme,
            },
        ),
        ("leaf-ca.pem", SvidError::IsCa),
        ("leaf-key-cert-sign.pem", SvidError::BadKeyUsage(KeyUsageProblem::KeyCertSign)),
        ("leaf-no-key-usage.pem", SvidError::BadKeyUsage(KeyUsageProblem::Missing)),
        // A root and an intermediate CA certificate are not leaves either.
        ("plugin-ec/root-cert.pem", SvidError::NoUriSan),
    ];
    for (name, expected) in cases {
        let got = Svid::parse(&fixture(name)).unwrap_err();
        assert_eq!(&got, expected, "{name}");
        assert!(!got.to_string().is_empty());
    }
}

#[test]
fn extended_key_usage_decides_the_role() {
    let der = fixture("leaf-client-auth-only.pem");
    assert!(extract_spiffe_id(&der, PeerRole::Client).is_ok());
    let err = extract_spiffe_id(&der, PeerRole::Server).unwrap_err();
    assert_eq!(err, SvidError::WrongExtendedKeyUsage { role: PeerRole::Server });
    assert!(err.to_string().contains("serverAuth"), "{err}");
}

#[test]
fn malformed_input_is_reported_not_panicked() {
    let der = fixture("leaf-istio.pem");
    let mut trailing = der.to_vec();
    trailing.push(0);
    assert!(matches!(Svid::parse(&trailing), Err(SvidError::Malformed(m)) if m.contains("trailing")));
    for cut in [0, 1, 10, der.len() / 2, der.len() - 1] {
        assert!(matches!(Svid::parse(&der[..cut]), Err(SvidError::Malformed(_))), "cut at {cut}");
    }
    assert!(matches!(Svid::parse(b"not a certificate"), Err(SvidError::Malformed(_))));
}

#[test]
fn every_single_bit_flip_is_handled() {
    // What the `svid_extract` fuzz target checks, over every one-bit corruption of a real leaf.
    let der = fixture("leaf-istio.pem").to_vec();
    let mut accepted = 0;
    for i in 0..der.len() * 8 {
        let mut bytes = der.clone();
        bytes[i / 8] ^= 1 << (i % 8);
        if let Ok(svid) = Svid::parse(&bytes) {
            accepted += 1;
            assert_eq!(mesh_identity::spiffe::SpiffeId::new(svid.spiffe_id().as_str()).as_ref(), Ok(svid.spiffe_id()));
        }
    }
    // Flips in the key, signature and serial are structurally harmless; the rest mostly are not.
    assert!(accepted > 0 && accepted < der.len() * 8);
}

#[test]
fn issued_leaves_pass_the_profile() {
    let now = UnixTime::since_unix_epoch(Duration::from_secs(1_750_000_000));
    let td = TrustDomain::new("cluster.local").unwrap();
    let ca = LocalCa::new_root(td.clone(), &CaOptions::default(), now).unwrap();
    let id = IstioIdentity::new(&td, "default", "bookinfo").unwrap();
    let svid = ca.issue(&id, Duration::from_secs(3600), now).unwrap();
    let parsed = Svid::parse(svid.leaf()).unwrap();
    assert_eq!(parsed.spiffe_id(), id.spiffe_id());
    assert_eq!((parsed.not_before(), parsed.not_after()), (svid.not_before(), svid.not_after()));
    // The CA's own certificate fails the leaf profile.
    assert_eq!(Svid::parse(ca.certificate()).unwrap_err(), SvidError::NoUriSan);
}
