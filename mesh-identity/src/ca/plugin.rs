//! Istio's plug-in CA layout: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem` and `cert-chain.pem` (the
//! `cacerts` secret), passed in as text by the caller, which reads the files.

use std::fmt;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;

use super::{CaError, LocalCa, key};
use crate::bundle::{certificates_pem, encode_pem};
use crate::spiffe::TrustDomain;

/// The four files of Istio's plug-in CA, as text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PluginCaPem {
    /// `ca-cert.pem`: the certificate the CA signs workload certificates with.
    pub ca_cert: String,
    /// `ca-key.pem`: its private key (`PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`).
    pub ca_key: String,
    /// `root-cert.pem`: the root(s) of trust workloads are given.
    pub root_cert: String,
    /// `cert-chain.pem`: `ca-cert.pem` followed by its issuers up to the root, the root itself optional. May
    /// be empty when `ca-cert.pem` is the root or is signed by it directly.
    pub cert_chain: String,
}

impl fmt::Debug for PluginCaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginCaPem")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"[redacted]")
            .field("root_cert", &self.root_cert)
            .field("cert_chain", &self.cert_chain)
            .finish()
    }
}

impl LocalCa {
    /// Loads Istio's plug-in CA files for `trust_domain`.
    ///
    /// Checks that `ca-cert.pem` is a CA certificate whose private key is `ca-key.pem`, and that it chains,
    /// through `cert-chain.pem`, to a root of `root-cert.pem` (issuer names match and every signature
    /// verifies). Validity is not checked here; issuance checks it against its `now`.
    pub fn from_plugin_pem(trust_domain: TrustDomain, files: &PluginCaPem) -> Result<Self, CaError> {
        let cert = first_certificate(&files.ca_cert, "ca-cert.pem")?;
        let roots = certificates(&files.root_cert, "root-cert.pem")?;
        if roots.is_empty() {
            return Err(CaError::BadCertificate { what: "root-cert.pem", reason: "no CERTIFICATE block".into() });
        }
        let chain = certificates(&files.cert_chain, "cert-chain.pem")?;
        let key = key::from_pem(&files.ca_key, "ca-key.pem")?;
        // The CA's own certificate and key first: the chain is only worth checking for the right CA.
        let parsed = super::local::parse_ca_cert(&cert, "ca-cert.pem")?;
        super::local::check_key(&parsed, &key)?;

        let parents: Vec<CertificateDer<'static>> = match chain.split_first() {
            None => Vec::new(),
            Some((first, _)) if *first != cert => return Err(CaError::ChainStart),
            Some((_, rest)) => rest.iter().filter(|c| !roots.contains(c)).cloned().collect(),
        };

        let root = if roots.contains(&cert) { cert.clone() } else { check_links(&cert, &parents, &roots)? };
        let parents = if root == cert { Vec::new() } else { parents };
        let others = roots.into_iter().filter(|r| *r != root).collect();
        Self::assemble(trust_domain, key, cert, parents, root, others)
    }

    /// The CA as Istio's plug-in files: `cert-chain.pem` holds the CA certificate, its intermediates and the
    /// root, as Istio's certificate tooling writes it. The key is PKCS#8.
    pub fn to_plugin_pem(&self) -> PluginCaPem {
        let mut ca_key = String::new();
        encode_pem("PRIVATE KEY", &self.issuer.key().serialize_der(), &mut ca_key);
        let chain = std::iter::once(&self.cert).chain(&self.parents).chain((!self.is_root()).then_some(&self.root));
        PluginCaPem {
            ca_cert: certificates_pem([&self.cert]),
            ca_key,
            root_cert: self.bundle.to_pem(),
            cert_chain: certificates_pem(chain),
        }
    }
}

/// Checks `cert` → `parents`… → one of `roots`, and returns that root.
fn check_links(
    cert: &CertificateDer<'static>,
    parents: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<CertificateDer<'static>, CaError> {
    let mut child = parse(cert, "ca-cert.pem")?;
    for (index, parent) in parents.iter().enumerate() {
        let parent = super::local::parse_ca_cert(parent, "an issuer in cert-chain.pem")?;
        if !signed_by(&child, &parent) {
            return Err(CaError::BrokenChain { index, to_root: false });
        }
        child = parent;
    }
    for root in roots {
        let parsed = super::local::parse_ca_cert(root, "root-cert.pem")?;
        if signed_by(&child, &parsed) {
            return Ok(root.clone());
        }
    }
    Err(CaError::BrokenChain { index: parents.len(), to_root: true })
}

fn signed_by(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    child.issuer().as_raw() == issuer.subject().as_raw() && child.verify_signature(Some(issuer.public_key())).is_ok()
}

fn parse<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, CaError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| CaError::BadCertificate { what, reason: e.to_string() })
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::BadCertificate { what, reason: e.to_string() })
}

fn first_certificate(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, CaError> {
    certificates(pem, what)?
        .into_iter()
        .next()
        .ok_or_else(|| CaError::BadCertificate { what, reason: "no CERTIFICATE block".into() })
}
