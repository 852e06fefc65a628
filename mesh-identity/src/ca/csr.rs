//! Certificate signing requests: only the public key is taken, and only once the request's signature proves
//! the requester holds the matching private key. Subject, SANs and requested extensions are ignored; the
//! identity comes from the caller.

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::FromDer;

use super::CaError;

/// The DER of a PEM `CERTIFICATE REQUEST`.
pub(crate) fn der_from_pem(pem: &str) -> Result<CertificateSigningRequestDer<'static>, CaError> {
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::BadCsr(e.to_string()))
}

/// The public key of a DER CSR whose signature verifies.
pub(crate) fn public_key(der: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| CaError::BadCsr(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::BadCsr(format!("{} bytes of trailing data after the request", rest.len())));
    }
    let algorithm = &csr.signature_algorithm.algorithm;
    if *algorithm == OID_PKCS1_SHA1WITHRSA || *algorithm == OID_SHA1_WITH_RSA {
        return Err(CaError::CsrSignature("SHA-1 signatures are not accepted; sign the request with SHA-256".into()));
    }
    csr.verify_signature().map_err(|e| CaError::CsrSignature(e.to_string()))?;
    rcgen::SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| CaError::BadCsr(format!("unsupported public key: {e}")))
}
