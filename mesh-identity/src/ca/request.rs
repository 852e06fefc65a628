//! Certificates signed by a remote CA (istiod, cert-manager's istio-csr): the key is generated here and never
//! leaves the process, the CA sees a CSR, and the chain it answers with is checked before anything uses it.
//!
//! Istio's certificate API answers with a list of PEM strings: the leaf first, then its issuers, and last the
//! roots, where one string may hold several certificates (several roots while the mesh's root rotates). The
//! answer is accepted only if the leaf is an X.509-SVID for exactly the identity asked for, certifies the key of
//! the request, and chains to the roots the same answer gives at the time of the answer. The roots become the
//! trust bundle of the identity's trust domain, as Istio's node proxy takes them from the same place.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, PublicKeyData, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

use super::{CaError, KeyAlgorithm, key};
use crate::bundle::{BundleError, TrustBundle, TrustBundleSet};
use crate::spiffe::{IstioIdentity, SpiffeId};
use crate::svid::{PeerRole, Svid};
use crate::tls::{TlsError, WorkloadCertificate};
use crate::verify::{ChainVerifier, VerifyError};

/// A key pair for one identity and the certificate signing request a remote CA signs for it.
///
/// ```
/// use mesh_identity::ca::{CaOptions, CertificateRequest, KeyAlgorithm, LocalCa};
/// use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
/// use rustls::pki_types::UnixTime;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let td = TrustDomain::new("cluster.local")?;
/// let identity = IstioIdentity::new(&td, "payments", "ledger")?;
/// let request = CertificateRequest::new(&identity, KeyAlgorithm::EcdsaP256)?;
///
/// // What the CA does with `request.csr_pem()`, here a local one answering as istiod does.
/// let now = UnixTime::now();
/// let ca = LocalCa::new_root(td, &CaOptions::default(), now)?;
/// let issued = ca.issue_for_csr_pem(request.csr_pem(), &identity, Duration::from_secs(3600), now)?;
/// let answer = vec![issued.cert_chain_pem(), issued.root_cert_pem()];
///
/// let signed = request.complete(&answer, now)?;
/// assert_eq!(signed.certificate.spiffe_id(), identity.spiffe_id());
/// assert_eq!(signed.roots.roots(), [ca.root_certificate().clone()]);
/// # Ok(()) }
/// ```
pub struct CertificateRequest {
    identity: IstioIdentity,
    key: PrivatePkcs8KeyDer<'static>,
    public_key: Vec<u8>,
    csr_pem: String,
}

impl std::fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRequest").field("identity", &self.identity).finish_non_exhaustive()
    }
}

/// A chain a remote CA signed for a [`CertificateRequest`], checked, with the roots it came with.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    /// The leaf and its issuers below the roots, with the request's key.
    pub certificate: WorkloadCertificate,
    /// The roots of the answer, as the trust bundle of the identity's trust domain.
    pub roots: TrustBundle,
}

/// Why a remote CA's answer is not used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignedChainError {
    /// The answer holds no certificate.
    #[error("the CA answered with an empty certificate chain")]
    Empty,
    /// The answer has no separate root entry.
    #[error("the CA answered with a single entry; Istio's certificate API lists the leaf first and the roots last")]
    NoRoot,
    /// An entry is not PEM certificates.
    #[error("entry #{index} of the CA's chain is not PEM certificates: {reason}")]
    Pem {
        /// Position in the answer (the leaf is #0).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The leaf is not an X.509-SVID usable for both roles of an HBONE peer.
    #[error("the CA's leaf certificate: {0}")]
    Leaf(TlsError),
    /// The leaf names another identity than the one asked for.
    #[error("the CA signed a certificate for {got} when {asked} was asked for")]
    WrongIdentity {
        /// The identity of the request.
        asked: SpiffeId,
        /// The identity of the leaf.
        got: SpiffeId,
    },
    /// The leaf certifies another key than the request's.
    #[error("the CA's leaf certificate for {identity} does not certify the key of the request")]
    WrongKey {
        /// The identity of the request.
        identity: SpiffeId,
    },
    /// The roots are not CA certificates.
    #[error("the roots of the CA's answer: {0}")]
    Roots(BundleError),
    /// The leaf does not chain to the roots of the same answer.
    #[error("the CA's chain does not verify against the roots it came with: {0}")]
    Chain(VerifyError),
}

impl CertificateRequest {
    /// A fresh `algorithm` key and a CSR for `identity`: its SPIFFE ID as the only SAN, an empty subject, signed
    /// with the key (the form istiod and istio-csr expect).
    pub fn new(identity: &IstioIdentity, algorithm: KeyAlgorithm) -> Result<Self, CaError> {
        let key_pair = key::generate(algorithm)?;
        let mut params = CertificateParams::default();
        let san = identity.spiffe_id().as_str().to_owned().try_into()?;
        params.subject_alt_names = vec![SanType::URI(san)];
        params.distinguished_name = DistinguishedName::new();
        let csr_pem = params.serialize_request(&key_pair)?.pem()?;
        Ok(CertificateRequest {
            identity: identity.clone(),
            key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
            public_key: key_pair.subject_public_key_info(),
            csr_pem,
        })
    }

    /// The identity asked for.
    pub fn identity(&self) -> &IstioIdentity {
        &self.identity
    }

    /// The CSR, as PEM `CERTIFICATE REQUEST`.
    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// Checks the CA's answer `chain_pem` (leaf first, roots last) at `now` and pairs it with the key.
    pub fn complete(self, chain_pem: &[String], now: UnixTime) -> Result<SignedCertificate, SignedChainError> {
        let (roots_pem, issued_pem) = chain_pem.split_last().ok_or(SignedChainError::Empty)?;
        if issued_pem.is_empty() {
            return Err(SignedChainError::NoRoot);
        }
        let mut chain = Vec::new();
        for (index, entry) in issued_pem.iter().enumerate() {
            chain.extend(certificates(index, entry)?);
        }
        let roots = certificates(issued_pem.len(), roots_pem)?;
        let leaf = chain.first().ok_or(SignedChainError::Empty)?;
        let svid = Svid::parse(leaf).map_err(|e| SignedChainError::Leaf(TlsError::OwnCertificate(e)))?;
        if svid.spiffe_id() != self.identity.spiffe_id() {
            return Err(SignedChainError::WrongIdentity {
                asked: self.identity.spiffe_id().clone(),
                got: svid.spiffe_id().clone(),
            });
        }
        if !certifies(leaf, &self.public_key) {
            return Err(SignedChainError::WrongKey { identity: self.identity.spiffe_id().clone() });
        }
        let trust_domain = self.identity.spiffe_id().trust_domain();
        let roots = TrustBundle::from_der(trust_domain, roots).map_err(SignedChainError::Roots)?;
        let mut set = TrustBundleSet::new();
        set.insert(roots.clone());
        ChainVerifier::new(Arc::new(set))
            .verify_chain(&chain, PeerRole::Server, now)
            .map_err(SignedChainError::Chain)?;
        let certificate =
            WorkloadCertificate::new(chain, PrivateKeyDer::Pkcs8(self.key)).map_err(SignedChainError::Leaf)?;
        Ok(SignedCertificate { certificate, roots })
    }
}

/// The certificates of one PEM entry of the answer.
fn certificates(index: usize, pem: &str) -> Result<Vec<CertificateDer<'static>>, SignedChainError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SignedChainError::Pem { index, reason: e.to_string() })?;
    if certificates.is_empty() {
        return Err(SignedChainError::Pem { index, reason: "no CERTIFICATE block".into() });
    }
    Ok(certificates)
}

/// Whether the certificate `der` carries the public key `spki` (DER SubjectPublicKeyInfo).
fn certifies(der: &CertificateDer<'_>, spki: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| cert.public_key().raw == spki)
}
