//! Workload issuance by the local CA: the istiod leaf profile, TTL rules, generated keys and CSRs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{NOW, at, bookinfo, td};
use mesh_identity::ca::{CaError, CaOptions, DEFAULT_MAX_WORKLOAD_TTL, DEFAULT_WORKLOAD_TTL, KeyAlgorithm, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
use mesh_identity::svid::PeerRole;
use mesh_identity::verify::ChainVerifier;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

fn ca() -> LocalCa {
    LocalCa::new_root(td(), &CaOptions::default(), at(NOW)).unwrap()
}

fn verifier(ca: &LocalCa) -> ChainVerifier {
    ChainVerifier::new(Arc::new([ca.trust_bundle().clone()].into_iter().collect()))
}

#[test]
fn leaf_has_the_istiod_profile() {
    let svid = ca().issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(svid.leaf()).unwrap();
    assert_eq!(cert.subject().iter().count(), 0, "empty subject");
    assert_eq!(cert.validity().not_before.timestamp(), NOW as i64);
    assert_eq!(cert.validity().not_after.timestamp(), (NOW + 86_400) as i64);
    assert!(cert.raw_serial().len() >= 16, "random 128-bit serial");

    let mut seen = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                assert!(ext.critical, "SAN is critical when the subject is empty");
                let names: Vec<_> = san.general_names.iter().collect();
                assert_eq!(names, [&GeneralName::URI("spiffe://cluster.local/ns/default/sa/bookinfo")]);
                seen.push("san");
            }
            ParsedExtension::KeyUsage(ku) => {
                assert!(ku.digital_signature() && ku.key_encipherment());
                assert!(!ku.key_cert_sign() && !ku.crl_sign());
                seen.push("ku");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(eku.server_auth && eku.client_auth && !eku.any && eku.other.is_empty());
                seen.push("eku");
            }
            ParsedExtension::BasicConstraints(bc) => {
                assert!(!bc.ca);
                seen.push("bc");
            }
            _ => {}
        }
    }
    seen.sort();
    assert_eq!(seen, ["bc", "eku", "ku", "san"]);
}

#[test]
fn generated_keys_come_back_as_pkcs8_pem() {
    let ca = ca();
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519] {
        let svid = ca.issue_with_key(&bookinfo(), algorithm, DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
        let key_pem = svid.private_key_pem().unwrap();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{algorithm}");
        // The key is the leaf's key.
        let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(svid.leaf()).unwrap();
        assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw(), "{algorithm}");
        verifier(&ca).verify_chain(svid.chain(), PeerRole::Server, at(NOW)).unwrap();
        // The chain PEM of a root-issued leaf is the leaf alone.
        assert_eq!(svid.cert_chain_pem().matches("BEGIN CERTIFICATE").count(), 1);
    }
}

#[test]
fn ttl_rules() {
    let ca = ca();
    assert_eq!(ca.issue(&bookinfo(), Duration::ZERO, at(NOW)).unwrap_err(), CaError::ZeroTtl);
    let too_long = DEFAULT_MAX_WORKLOAD_TTL + Duration::from_secs(1);
    assert_eq!(
        ca.issue(&bookinfo(), too_long, at(NOW)).unwrap_err(),
        CaError::TtlTooLong { requested: too_long, max: DEFAULT_MAX_WORKLOAD_TTL }
    );
    let ca = ca.with_max_workload_ttl(Duration::from_secs(3600));
    assert!(matches!(ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)), Err(CaError::TtlTooLong { .. })));
}

#[test]
fn leaves_never_outlive_their_ca_and_the_ca_must_be_valid() {
    let short = CaOptions { ttl: Duration::from_secs(7200), ..CaOptions::default() };
    let ca = LocalCa::new_root(td(), &short, at(NOW)).unwrap();
    let svid = ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW + 3600)).unwrap();
    assert_eq!(svid.not_after(), ca.not_after());
    let expired = ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW + 7200)).unwrap_err();
    assert!(matches!(expired, CaError::CaNotValid { .. }));
    assert!(expired.to_string().contains("valid from 2025-06-15T15:06:40Z to 2025-06-15T17:06:40Z"), "{expired}");
    assert!(matches!(ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW - 1)), Err(CaError::CaNotValid { .. })));
    assert!(matches!(ca.new_intermediate(&CaOptions::default(), at(NOW + 9000)), Err(CaError::CaNotValid { .. })));
}

#[test]
fn identities_outside_the_trust_domain_are_refused() {
    let other = IstioIdentity::new(&TrustDomain::new("evil.example").unwrap(), "default", "bookinfo").unwrap();
    let err = ca().issue(&other, DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap_err();
    assert!(matches!(err, CaError::ForeignTrustDomain { .. }), "{err}");
}

#[test]
fn csr_sans_are_ignored_the_caller_decides_the_identity() {
    let ca = ca();
    // A CSR made by OpenSSL that asks for istiod's identity and a CN.
    let csr = std::fs::read_to_string("tests/data/x509/csr-claims-istiod.pem").unwrap();
    let svid = ca.issue_for_csr_pem(&csr, &bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    assert!(svid.private_key_pem().is_none() && svid.private_key_der().is_none());
    let peer = verifier(&ca).verify_chain(svid.chain(), PeerRole::Client, at(NOW)).unwrap();
    assert_eq!(peer.spiffe_id(), bookinfo().spiffe_id());
    let (_, cert) = x509_parser::parse_x509_certificate(svid.leaf()).unwrap();
    assert_eq!(cert.subject().iter().count(), 0, "the CSR's CN is not copied");
    // The certificate carries the CSR's public key.
    let csr_der = pem_der(&csr);
    let (_, req) = X509CertificationRequest::from_der(&csr_der).unwrap();
    assert_eq!(cert.public_key().raw, req.certification_request_info.subject_pki.raw);
}

#[test]
fn rcgen_csr_in_der_and_pem() {
    let ca = ca();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names =
        vec![rcgen::SanType::URI("spiffe://cluster.local/ns/kube-system/sa/admin".try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap();
    let from_der = ca.issue_for_csr_der(csr.der(), &bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    let from_pem = ca.issue_for_csr_pem(&csr.pem().unwrap(), &bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    for svid in [from_der, from_pem] {
        assert_eq!(svid.spiffe_id(), bookinfo().spiffe_id());
        verifier(&ca).verify_chain(svid.chain(), PeerRole::Server, at(NOW)).unwrap();
    }
}

#[test]
fn tampered_or_malformed_csrs_are_refused() {
    let ca = ca();
    let csr = std::fs::read_to_string("tests/data/x509/csr-claims-istiod.pem").unwrap();
    let mut der = pem_der(&csr);
    // Flip a bit inside the signed request info (the subject CN), so the signature no longer matches.
    let at_cn = der.windows(6).position(|w| w == b"istiod").unwrap();
    der[at_cn] ^= 0x01;
    let err = ca.issue_for_csr_der(&der, &bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap_err();
    assert!(matches!(err, CaError::CsrSignature(_)), "{err}");

    assert!(matches!(
        ca.issue_for_csr_der(&der[..40], &bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)),
        Err(CaError::BadCsr(_))
    ));
    assert!(matches!(
        ca.issue_for_csr_pem("no pem here", &bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)),
        Err(CaError::BadCsr(_))
    ));
}

#[test]
fn options_shape_the_ca_certificate() {
    let options = CaOptions {
        organization: Some("Example Corp".into()),
        common_name: Some("Mesh Root".into()),
        key_algorithm: KeyAlgorithm::EcdsaP384,
        path_len: Some(1),
        ttl: Duration::from_secs(86_400 * 365),
    };
    let ca = LocalCa::new_root(td(), &options, at(NOW)).unwrap();
    assert!(ca.is_root());
    let (_, cert) = x509_parser::parse_x509_certificate(ca.certificate()).unwrap();
    assert_eq!(cert.subject().to_string(), "O=Example Corp, CN=Mesh Root");
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(1));
    assert_eq!(ca.not_after(), at(NOW + 86_400 * 365));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<LocalCa>();
    check::<mesh_identity::ca::IssuedSvid>();
    check::<ChainVerifier>();
    check::<mesh_identity::bundle::TrustBundleSet>();
    check::<mesh_identity::tls::WorkloadCertificate>();
    check::<mesh_identity::tls::SpiffeServerVerifier>();
    check::<mesh_identity::tls::SpiffeClientVerifier>();
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec()
}
