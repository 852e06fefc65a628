//! The CA draws serial numbers from the crypto provider it is given, and the conversions of what it issues
//! into what the TLS configurations take.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{NOW, at, bookinfo, td};
use mesh_identity::ca::{CaError, CaOptions, DEFAULT_WORKLOAD_TTL, LocalCa};
use mesh_identity::tls::{TlsError, WorkloadCertificate};
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};

/// Fills with 0xA5 and counts the bytes asked for.
#[derive(Debug)]
struct Counting(AtomicUsize);

impl SecureRandom for Counting {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.0.fetch_add(buf.len(), Ordering::SeqCst);
        buf.fill(0xa5);
        Ok(())
    }
}

#[derive(Debug)]
struct Broken;

impl SecureRandom for Broken {
    fn fill(&self, _: &mut [u8]) -> Result<(), GetRandomFailed> {
        Err(GetRandomFailed)
    }
}

static COUNTING: Counting = Counting(AtomicUsize::new(0));
static BROKEN: Broken = Broken;

fn provider_with(random: &'static dyn SecureRandom) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider { secure_random: random, ..rustls::crypto::ring::default_provider() })
}

fn serial(der: &[u8]) -> Vec<u8> {
    x509_parser::parse_x509_certificate(der).unwrap().1.raw_serial().to_vec()
}

#[test]
fn serial_numbers_come_from_the_providers_generator() {
    let ca = LocalCa::new_root_with_provider(td(), &CaOptions::default(), at(NOW), provider_with(&COUNTING)).unwrap();
    // 16 bytes, the first made positive and non-zero in its top bits: 0xa5 -> 0x65.
    let mut expected = vec![0xa5u8; 16];
    expected[0] = 0x65;
    assert_eq!(serial(ca.certificate()), expected, "root serial");
    let before = COUNTING.0.load(Ordering::SeqCst);
    let svid = ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    assert_eq!(serial(svid.leaf()), expected, "leaf serial");
    assert!(COUNTING.0.load(Ordering::SeqCst) >= before + 16);

    // An intermediate inherits the provider; a CA given another one switches to it.
    let intermediate = ca.new_intermediate(&CaOptions::default(), at(NOW)).unwrap();
    assert_eq!(serial(intermediate.certificate()), expected);
    let switched = intermediate.with_crypto_provider(mesh_identity::crypto::provider());
    let svid = switched.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    assert_ne!(serial(svid.leaf()), expected, "the ring provider's serials are random");
}

#[test]
fn a_failing_generator_fails_issuance() {
    let ca =
        LocalCa::new_root(td(), &CaOptions::default(), at(NOW)).unwrap().with_crypto_provider(provider_with(&BROKEN));
    let error = ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap_err();
    assert!(matches!(&error, CaError::Generation(reason) if reason.contains("random")), "{error}");
    let error = LocalCa::new_root_with_provider(td(), &CaOptions::default(), at(NOW), provider_with(&BROKEN));
    assert!(matches!(error, Err(CaError::Generation(_))));
}

#[test]
fn issued_svids_convert_without_pem() {
    let ca = LocalCa::new_root(td(), &CaOptions::default(), at(NOW)).unwrap();
    let svid = ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    let from_pem = WorkloadCertificate::from_pem(&svid.cert_chain_pem(), &svid.private_key_pem().unwrap()).unwrap();

    let borrowed = svid.to_workload_certificate().unwrap();
    let provider = mesh_identity::crypto::provider();
    let certified = svid.certified_key(&provider).unwrap();
    certified.keys_match().unwrap();
    assert_eq!(certified.cert, svid.chain());

    let moved = WorkloadCertificate::try_from(svid).unwrap();
    for converted in [&borrowed, &moved] {
        assert_eq!(converted.chain(), from_pem.chain());
        assert_eq!(converted.spiffe_id(), from_pem.spiffe_id());
        assert_eq!((converted.not_before(), converted.not_after()), (at(NOW), at(NOW + 86_400)));
        assert_eq!((converted.not_before(), converted.not_after()), (from_pem.not_before(), from_pem.not_after()));
        converted.certified_key(&provider).unwrap().keys_match().unwrap();
    }

    // Issued for a CSR: the key stays with the requester.
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
    let for_csr = ca.issue_for_csr_der(csr.der(), &bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    let expected = TlsError::NoPrivateKey { spiffe_id: bookinfo().spiffe_id().clone() };
    assert_eq!(for_csr.to_workload_certificate().unwrap_err(), expected);
    assert!(matches!(for_csr.certified_key(&provider), Err(TlsError::NoPrivateKey { .. })));
    assert_eq!(WorkloadCertificate::try_from(for_csr).unwrap_err(), expected);
}
