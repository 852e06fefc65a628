//! Certificates from a remote CA: the CSR sent, and every way the CA's answer can be wrong refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{NOW, at, bookinfo, td};
use mesh_identity::ca::{CaOptions, CertificateRequest, KeyAlgorithm, LocalCa, SignedChainError};
use mesh_identity::spiffe::IstioIdentity;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

const HOUR: Duration = Duration::from_secs(3600);

fn ca() -> LocalCa {
    LocalCa::new_root(td(), &CaOptions::default(), at(NOW)).unwrap()
}

/// What istiod answers for `request`: the chain, then the root.
fn answer(ca: &LocalCa, request: &CertificateRequest, identity: &IstioIdentity) -> Vec<String> {
    let issued = ca.issue_for_csr_pem(request.csr_pem(), identity, HOUR, at(NOW)).unwrap();
    vec![issued.cert_chain_pem(), issued.root_cert_pem()]
}

#[test]
fn the_csr_names_the_identity_only_and_is_signed_by_its_key() {
    let request = CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP256).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(request.csr_pem().as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d)
        .unwrap();
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
    assert!(rest.is_empty());
    csr.verify_signature().unwrap();
    assert_eq!(csr.certification_request_info.subject.iter().count(), 0, "empty subject");
    let sans: Vec<String> = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|e| match e {
            ParsedExtension::SubjectAlternativeName(san) => Some(san.general_names.clone()),
            _ => None,
        })
        .flatten()
        .map(|name| match name {
            GeneralName::URI(uri) => uri.to_owned(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    assert_eq!(sans, ["spiffe://cluster.local/ns/default/sa/bookinfo"]);
}

#[test]
fn an_answer_as_istiod_gives_it_is_accepted_with_its_root() {
    let ca = ca();
    let request = CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP256).unwrap();
    let answer = answer(&ca, &request, &bookinfo());
    let signed = request.complete(&answer, at(NOW + 60)).unwrap();
    assert_eq!(signed.certificate.spiffe_id(), bookinfo().spiffe_id());
    assert_eq!(signed.certificate.chain().len(), 1, "the root is not part of the presented chain");
    assert_eq!(signed.roots.roots(), [ca.root_certificate().clone()]);
    assert_eq!(signed.roots.trust_domain(), &td());
}

#[test]
fn intermediates_are_kept_and_several_roots_in_the_last_entry_all_trusted() {
    let root = ca();
    let intermediate = root.new_intermediate(&CaOptions::default(), at(NOW)).unwrap();
    let other_root = ca();
    let request = CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP384).unwrap();
    let issued = intermediate.issue_for_csr_pem(request.csr_pem(), &bookinfo(), HOUR, at(NOW)).unwrap();
    // Istio's form during a root rotation: both roots in one entry.
    let roots = format!("{}{}", issued.root_cert_pem(), other_root.trust_bundle().to_pem());
    let signed = request.complete(&[issued.cert_chain_pem(), roots], at(NOW + 60)).unwrap();
    assert_eq!(signed.certificate.chain().len(), 2);
    assert_eq!(signed.roots.roots().len(), 2);
}

#[test]
fn a_certificate_for_another_identity_is_refused() {
    let ca = ca();
    let request = CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP256).unwrap();
    let other = IstioIdentity::new(&td(), "default", "admin").unwrap();
    let answer = answer(&ca, &request, &other);
    let err = request.complete(&answer, at(NOW + 60)).unwrap_err();
    assert!(matches!(&err, SignedChainError::WrongIdentity { got, .. } if got == other.spiffe_id()), "{err}");
    assert!(err.to_string().contains("ns/default/sa/admin"), "{err}");
}

#[test]
fn a_certificate_for_another_key_is_refused() {
    let ca = ca();
    let request = CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP256).unwrap();
    let issued = ca.issue_with_key(&bookinfo(), KeyAlgorithm::EcdsaP256, HOUR, at(NOW)).unwrap();
    let err = request.complete(&[issued.cert_chain_pem(), issued.root_cert_pem()], at(NOW + 60)).unwrap_err();
    assert!(matches!(err, SignedChainError::WrongKey { .. }), "{err}");
}

#[test]
fn a_chain_that_does_not_lead_to_the_roots_given_is_refused() {
    let request = CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP256).unwrap();
    let issued = ca().issue_for_csr_pem(request.csr_pem(), &bookinfo(), HOUR, at(NOW)).unwrap();
    let err = request.complete(&[issued.cert_chain_pem(), ca().trust_bundle().to_pem()], at(NOW + 60)).unwrap_err();
    assert!(matches!(err, SignedChainError::Chain(_)), "{err}");
}

#[test]
fn an_expired_answer_is_refused() {
    let ca = ca();
    let request = CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP256).unwrap();
    let answer = answer(&ca, &request, &bookinfo());
    let err = request.complete(&answer, at(NOW + 2 * 3600)).unwrap_err();
    assert!(matches!(err, SignedChainError::Chain(_)), "{err}");
}

#[test]
fn malformed_answers_are_refused_naming_the_entry() {
    let ca = ca();
    let request = || CertificateRequest::new(&bookinfo(), KeyAlgorithm::EcdsaP256).unwrap();
    assert_eq!(request().complete(&[], at(NOW)).unwrap_err(), SignedChainError::Empty);
    let r = request();
    let [chain, _root]: [String; 2] = answer(&ca, &r, &bookinfo()).try_into().unwrap();
    assert_eq!(r.complete(std::slice::from_ref(&chain), at(NOW)).unwrap_err(), SignedChainError::NoRoot);
    let r = request();
    let root = ca.trust_bundle().to_pem();
    let err = r.complete(&["not a certificate".into(), root.clone()], at(NOW)).unwrap_err();
    assert!(matches!(err, SignedChainError::Pem { index: 0, .. }), "{err}");
    let r = request();
    let [chain, _]: [String; 2] = answer(&ca, &r, &bookinfo()).try_into().unwrap();
    let err = r.complete(&[chain.clone(), String::new()], at(NOW)).unwrap_err();
    assert!(matches!(err, SignedChainError::Pem { index: 1, .. }), "{err}");
    // A leaf used as a root.
    let r = request();
    let [chain, _]: [String; 2] = answer(&ca, &r, &bookinfo()).try_into().unwrap();
    let err = r.complete(&[chain.clone(), chain], at(NOW)).unwrap_err();
    assert!(matches!(err, SignedChainError::Roots(_)), "{err}");
}
