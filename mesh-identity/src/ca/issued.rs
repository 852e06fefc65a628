//! What the CA hands back for a workload: the certificate chain, and the private key when the CA generated it.

use std::fmt;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

use crate::bundle::{certificates_pem, encode_pem};
use crate::spiffe::SpiffeId;
use crate::tls::{TlsError, WorkloadCertificate};

/// A workload X.509-SVID as issued: the chain (leaf, then the issuing CA and its intermediates, without the
/// root), the root, and the private key when the CA generated it.
pub struct IssuedSvid {
    pub(crate) spiffe_id: SpiffeId,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) root: CertificateDer<'static>,
    pub(crate) key: Option<PrivatePkcs8KeyDer<'static>>,
    pub(crate) not_before: UnixTime,
    pub(crate) not_after: UnixTime,
}

impl IssuedSvid {
    /// The SPIFFE ID in the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // The chain is built leaf first and never empty.
        &self.chain[0]
    }

    /// The chain to present in TLS: leaf first, then intermediates; the root is not included.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The root the chain leads to (Istio's `root-cert.pem`).
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The chain as PEM (Istio's `cert-chain.pem` for a workload).
    pub fn cert_chain_pem(&self) -> String {
        certificates_pem(&self.chain)
    }

    /// The root as PEM.
    pub fn root_cert_pem(&self) -> String {
        certificates_pem([&self.root])
    }

    /// The generated private key as PKCS#8 DER; `None` when the certificate was issued for a CSR.
    pub fn private_key_der(&self) -> Option<PrivateKeyDer<'static>> {
        self.key.as_ref().map(|key| PrivateKeyDer::Pkcs8(key.clone_key()))
    }

    /// The generated private key as PKCS#8 PEM (`PRIVATE KEY`); `None` when issued for a CSR.
    pub fn private_key_pem(&self) -> Option<String> {
        self.key.as_ref().map(|key| {
            let mut pem = String::new();
            encode_pem("PRIVATE KEY", key.secret_pkcs8_der(), &mut pem);
            pem
        })
    }

    /// The leaf's `notBefore`.
    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }

    /// The leaf's `notAfter`.
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    /// The chain and generated key as a [`WorkloadCertificate`] for [`crate::tls`] and [`crate::store`], as DER
    /// (no PEM in between). Fails with [`TlsError::NoPrivateKey`] when the SVID was issued for a CSR.
    pub fn to_workload_certificate(&self) -> Result<WorkloadCertificate, TlsError> {
        let key = self.private_key_der().ok_or_else(|| TlsError::NoPrivateKey { spiffe_id: self.spiffe_id.clone() })?;
        Ok(WorkloadCertificate::issued(
            self.chain.clone(),
            key,
            self.spiffe_id.clone(),
            self.not_before,
            self.not_after,
        ))
    }

    /// The chain and generated key as rustls's [`CertifiedKey`], the key loaded by `provider`. Fails with
    /// [`TlsError::NoPrivateKey`] when the SVID was issued for a CSR.
    pub fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        self.to_workload_certificate()?.certified_key(provider)
    }
}

impl TryFrom<IssuedSvid> for WorkloadCertificate {
    type Error = TlsError;

    /// The chain and generated key, moved (no PEM in between); [`TlsError::NoPrivateKey`] for a CSR's SVID.
    fn try_from(issued: IssuedSvid) -> Result<Self, TlsError> {
        let IssuedSvid { spiffe_id, chain, key, not_before, not_after, .. } = issued;
        let key = key.ok_or_else(|| TlsError::NoPrivateKey { spiffe_id: spiffe_id.clone() })?;
        Ok(WorkloadCertificate::issued(chain, PrivateKeyDer::Pkcs8(key), spiffe_id, not_before, not_after))
    }
}

impl fmt::Debug for IssuedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain.len())
            .field("has_key", &self.key.is_some())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}
