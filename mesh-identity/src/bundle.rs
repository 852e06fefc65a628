//! Trust bundles: the X.509 roots of a trust domain, and the set of bundles a workload trusts, by trust domain.
//!
//! A bundle is looked up by the trust domain of the peer's SPIFFE ID, so a root only ever vouches for its own
//! trust domain (and for the aliases it is registered under): a CA of `a.example` cannot mint identities of
//! `b.example`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use crate::spiffe::{TrustDomain, TrustDomains};

/// Why certificates cannot form a trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// No certificate was given.
    #[error("trust bundle for {trust_domain} has no certificates: give at least one root CA certificate")]
    Empty {
        /// The bundle's trust domain.
        trust_domain: String,
    },
    /// The PEM text could not be read.
    #[error("trust bundle PEM for {trust_domain} is unreadable: {reason}")]
    Pem {
        /// The bundle's trust domain.
        trust_domain: String,
        /// What the PEM reader reported.
        reason: String,
    },
    /// A certificate cannot be parsed as a trust anchor.
    #[error("root #{index} of the trust bundle for {trust_domain} is not a usable X.509 certificate: {reason}")]
    BadRoot {
        /// The bundle's trust domain.
        trust_domain: String,
        /// Position of the certificate in the input, from 0.
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// A certificate is not a CA certificate.
    #[error(
        "root #{index} of the trust bundle for {trust_domain} is not a CA (basicConstraints CA:TRUE is missing); a \
         bundle holds root CA certificates such as Istio's root-cert.pem, not workload certificates"
    )]
    NotCa {
        /// The bundle's trust domain.
        trust_domain: String,
        /// Position of the certificate in the input, from 0.
        index: usize,
    },
}

/// The root CA certificates of one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    not_after: Vec<UnixTime>,
}

impl TrustBundle {
    /// A bundle of DER root certificates; duplicates are kept once. Every certificate must be a CA.
    pub fn from_der(
        trust_domain: TrustDomain,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let mut bundle = TrustBundle { trust_domain, roots: Vec::new(), anchors: Vec::new(), not_after: Vec::new() };
        for (index, root) in roots.into_iter().enumerate() {
            bundle.add(index, root)?;
        }
        if bundle.roots.is_empty() {
            return Err(BundleError::Empty { trust_domain: bundle.trust_domain.to_string() });
        }
        Ok(bundle)
    }

    /// A bundle of the `CERTIFICATE` blocks of PEM text (other blocks are skipped), such as Istio's
    /// `root-cert.pem` or a SPIFFE bundle's roots.
    pub fn from_pem(trust_domain: TrustDomain, pem: &str) -> Result<Self, BundleError> {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::Pem { trust_domain: trust_domain.to_string(), reason: e.to_string() })?;
        Self::from_der(trust_domain, roots)
    }

    fn add(&mut self, index: usize, root: CertificateDer<'static>) -> Result<(), BundleError> {
        let bad_root =
            |reason: String| BundleError::BadRoot { trust_domain: self.trust_domain.to_string(), index, reason };
        let (rest, parsed) = x509_parser::parse_x509_certificate(&root).map_err(|e| bad_root(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad_root("trailing data after the certificate".into()));
        }
        let is_ca = parsed.basic_constraints().map_err(|e| bad_root(e.to_string()))?.is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(BundleError::NotCa { trust_domain: self.trust_domain.to_string(), index });
        }
        let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| bad_root(e.to_string()))?.to_owned();
        if !self.roots.contains(&root) {
            let seconds = parsed.validity().not_after.timestamp();
            self.not_after.push(UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap_or(0))));
            self.roots.push(root);
            self.anchors.push(anchor);
        }
        Ok(())
    }

    /// The trust domain the bundle was made for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificates, in input order.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The roots as `rustls-webpki` trust anchors.
    pub fn trust_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// When the last of the roots expires: the bundle verifies nothing after it.
    pub fn not_after(&self) -> Option<UnixTime> {
        self.not_after.iter().max_by_key(|t| t.as_secs()).copied()
    }

    /// The roots as PEM text.
    pub fn to_pem(&self) -> String {
        certificates_pem(&self.roots)
    }
}

/// The bundles a workload trusts, by trust domain.
///
/// A bundle is registered under its own trust domain with [`TrustBundleSet::insert`]; the same bundle can also
/// be registered under an alias domain (Istio's `trustDomainAliases`), so that peers whose SPIFFE IDs still
/// name the old domain verify against the roots that issue for it.
#[derive(Debug, Clone, Default)]
pub struct TrustBundleSet {
    by_domain: BTreeMap<Box<str>, Arc<TrustBundle>>,
}

impl TrustBundleSet {
    /// An empty set: nothing is trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `bundle` under its own trust domain; returns the bundle it replaces.
    pub fn insert(&mut self, bundle: TrustBundle) -> Option<Arc<TrustBundle>> {
        let bundle = Arc::new(bundle);
        self.by_domain.insert(bundle.trust_domain.as_str().into(), bundle)
    }

    /// Registers `bundle` under `trust_domain`, which may differ from the bundle's own (an alias); returns the
    /// bundle it replaces.
    pub fn insert_for(&mut self, trust_domain: &TrustDomain, bundle: Arc<TrustBundle>) -> Option<Arc<TrustBundle>> {
        self.by_domain.insert(trust_domain.as_str().into(), bundle)
    }

    /// Registers `bundle` under the mesh's local trust domain and every alias.
    pub fn insert_with_aliases(&mut self, domains: &TrustDomains, bundle: TrustBundle) {
        let bundle = Arc::new(bundle);
        self.insert_for(domains.local(), Arc::clone(&bundle));
        for alias in domains.aliases() {
            self.insert_for(alias, Arc::clone(&bundle));
        }
    }

    /// Removes the bundle registered under `trust_domain`.
    pub fn remove(&mut self, trust_domain: &str) -> Option<Arc<TrustBundle>> {
        self.by_domain.remove(trust_domain)
    }

    /// The bundle registered under `trust_domain`.
    pub fn get(&self, trust_domain: &str) -> Option<&TrustBundle> {
        self.by_domain.get(trust_domain).map(|b| &**b)
    }

    /// The trust domains with a bundle, in lexical order.
    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        self.by_domain.keys().map(|k| &**k)
    }

    /// How many trust domains have a bundle.
    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    /// Whether no trust domain has a bundle.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }
}

impl FromIterator<TrustBundle> for TrustBundleSet {
    fn from_iter<I: IntoIterator<Item = TrustBundle>>(iter: I) -> Self {
        let mut set = TrustBundleSet::new();
        for bundle in iter {
            set.insert(bundle);
        }
        set
    }
}

/// Certificates as consecutive PEM `CERTIFICATE` blocks.
pub(crate) fn certificates_pem<'a, 'b: 'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'b>>) -> String {
    let mut out = String::new();
    for cert in certs {
        encode_pem("CERTIFICATE", cert, &mut out);
    }
    out
}

/// Appends one PEM block (64-column base64, LF line ends) to `out`.
pub(crate) fn encode_pem(label: &str, der: &[u8], out: &mut String) {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // Base64 is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}
