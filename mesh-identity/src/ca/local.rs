//! The local CA: a signing certificate and key, the chain above it, and issuance of workload SVIDs.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, UnixTime};
use x509_parser::certificate::X509Certificate;

use super::profile::{self, CaSubject, Validity};
use super::{CaError, IssuedSvid, KeyAlgorithm, csr, key};
use crate::bundle::TrustBundle;
use crate::spiffe::{IstioIdentity, TrustDomain};
use crate::svid::unix_time;

/// Istio's default workload certificate TTL (`DEFAULT_WORKLOAD_CERT_TTL`): 24 hours.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Istio's default maximum workload certificate TTL (`MAX_WORKLOAD_CERT_TTL`): 90 days.
pub const DEFAULT_MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Istio's default self-signed root TTL (`CITADEL_SELF_SIGNED_CA_CERT_TTL`): 10 years.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(3650 * 24 * 3600);

/// How to make a root or intermediate CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOptions {
    /// Lifetime from `now`; an intermediate's is cut at its parent's `notAfter`.
    pub ttl: Duration,
    /// Key algorithm of the CA's new key.
    pub key_algorithm: KeyAlgorithm,
    /// Subject O; the trust domain when `None`, as Istio's self-signed root has it.
    pub organization: Option<String>,
    /// Subject CN; `Root CA` or `Intermediate CA` when `None`.
    pub common_name: Option<String>,
    /// basicConstraints pathLenConstraint: how many CAs may sit below this one (unlimited when `None`).
    pub path_len: Option<u8>,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            ttl: DEFAULT_CA_TTL,
            key_algorithm: KeyAlgorithm::default(),
            organization: None,
            common_name: None,
            path_len: None,
        }
    }
}

/// A CA that issues X.509-SVIDs for the workloads of one trust domain.
///
/// It is either a self-signed root made by [`LocalCa::new_root`], an intermediate made by
/// [`LocalCa::new_intermediate`], or an operator's CA loaded from Istio's plug-in files
/// ([`LocalCa::from_plugin_pem`]). Nothing here reads a clock: every operation takes `now`.
#[derive(Debug)]
pub struct LocalCa {
    pub(crate) trust_domain: TrustDomain,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) cert: CertificateDer<'static>,
    /// The issuers between `cert` and the root, nearest first; the root is not included.
    pub(crate) parents: Vec<CertificateDer<'static>>,
    pub(crate) root: CertificateDer<'static>,
    pub(crate) bundle: TrustBundle,
    pub(crate) validity: Validity,
    /// The earliest `notAfter` of this CA, its parents and the root: the latest end of anything it issues.
    pub(crate) chain_not_after: UnixTime,
    pub(crate) max_workload_ttl: Duration,
    /// Where serial numbers come from (see [`crate::crypto`]).
    pub(crate) provider: Arc<CryptoProvider>,
}

impl LocalCa {
    /// A new self-signed root CA for `trust_domain`, valid from `now` for `options.ttl`, drawing serial numbers
    /// from [`crate::crypto::provider`].
    pub fn new_root(trust_domain: TrustDomain, options: &CaOptions, now: UnixTime) -> Result<Self, CaError> {
        Self::new_root_with_provider(trust_domain, options, now, crate::crypto::provider())
    }

    /// A new self-signed root CA as [`LocalCa::new_root`], drawing serial numbers from `provider`'s secure
    /// random generator (see [`crate::crypto`] for keys).
    pub fn new_root_with_provider(
        trust_domain: TrustDomain,
        options: &CaOptions,
        now: UnixTime,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, CaError> {
        let validity = Validity::new(now, options.ttl, None)?;
        let subject = CaSubject {
            organization: options.organization.as_deref().unwrap_or(trust_domain.as_str()),
            common_name: options.common_name.as_deref().unwrap_or("Root CA"),
        };
        let params = profile::ca(&subject, validity, options.path_len, true, &provider)?;
        let key = key::generate(options.key_algorithm)?;
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Self::assemble(trust_domain, key, cert.clone(), Vec::new(), cert, Vec::new())?
            .with_crypto_provider(provider))
    }

    /// A new intermediate CA signed by this one, valid from `now` for `options.ttl` but never past the
    /// `notAfter` of this CA or any certificate above it. It issues for the same trust domain; its workload
    /// chains carry it and this CA's chain. It uses this CA's crypto provider.
    pub fn new_intermediate(&self, options: &CaOptions, now: UnixTime) -> Result<Self, CaError> {
        self.check_valid_at(now)?;
        let validity = Validity::new(now, options.ttl, Some(self.chain_not_after))?;
        let organization = options.organization.as_deref().unwrap_or(self.trust_domain.as_str());
        let subject =
            CaSubject { organization, common_name: options.common_name.as_deref().unwrap_or("Intermediate CA") };
        let params = profile::ca(&subject, validity, options.path_len, false, &self.provider)?;
        let key = key::generate(options.key_algorithm)?;
        let cert = params.signed_by(&key, &self.issuer)?.der().clone();
        let mut parents = Vec::with_capacity(self.parents.len() + 1);
        if !self.is_root() {
            parents.push(self.cert.clone());
        }
        parents.extend(self.parents.iter().cloned());
        let other_roots = self.bundle.roots().iter().filter(|r| **r != self.root).cloned().collect();
        let ca = Self::assemble(self.trust_domain.clone(), key, cert, parents, self.root.clone(), other_roots)?;
        Ok(ca.with_max_workload_ttl(self.max_workload_ttl).with_crypto_provider(Arc::clone(&self.provider)))
    }

    /// Checks the CA certificate and key and builds the CA. `parents` and `root` are taken as given; callers
    /// check the chain. The trust bundle holds `root` and `other_roots`.
    pub(crate) fn assemble(
        trust_domain: TrustDomain,
        key: KeyPair,
        cert: CertificateDer<'static>,
        parents: Vec<CertificateDer<'static>>,
        root: CertificateDer<'static>,
        other_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, CaError> {
        let parsed = parse_ca_cert(&cert, "ca-cert.pem")?;
        check_key(&parsed, &key)?;
        check_subject(&parsed)?;
        let validity = parsed.validity();
        let validity = Validity {
            not_before: unix_time(validity.not_before.timestamp()),
            not_after: unix_time(validity.not_after.timestamp()),
        };
        // Nothing issued may outlive any certificate of the chain above it.
        let mut chain_not_after = validity.not_after;
        for (what, der) in parents.iter().map(|p| ("an issuer in cert-chain.pem", p)).chain([("root-cert.pem", &root)])
        {
            let (_, parent) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| CaError::BadCertificate { what, reason: e.to_string() })?;
            chain_not_after = chain_not_after.min(unix_time(parent.validity().not_after.timestamp()));
        }
        let bundle = TrustBundle::from_der(trust_domain.clone(), std::iter::once(root.clone()).chain(other_roots))
            .map_err(|e| CaError::BadCertificate { what: "root-cert.pem", reason: e.to_string() })?;
        let issuer = Issuer::from_ca_cert_der(&cert, key)
            .map_err(|e| CaError::UnsupportedCaSubject { reason: e.to_string() })?;
        Ok(LocalCa {
            trust_domain,
            issuer,
            cert,
            parents,
            root,
            bundle,
            validity,
            chain_not_after,
            max_workload_ttl: DEFAULT_MAX_WORKLOAD_TTL,
            provider: crate::crypto::provider(),
        })
    }

    /// Caps workload TTLs at `max` instead of [`DEFAULT_MAX_WORKLOAD_TTL`].
    pub fn with_max_workload_ttl(mut self, max: Duration) -> Self {
        self.max_workload_ttl = max;
        self
    }

    /// Draws serial numbers from `provider`'s secure random generator from now on (see [`crate::crypto`]).
    pub fn with_crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// The crypto provider serial numbers are drawn from.
    pub fn crypto_provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// Issues an SVID for `identity` with a fresh ECDSA P-256 key; see [`LocalCa::issue_with_key`].
    pub fn issue(&self, identity: &IstioIdentity, ttl: Duration, now: UnixTime) -> Result<IssuedSvid, CaError> {
        self.issue_with_key(identity, KeyAlgorithm::EcdsaP256, ttl, now)
    }

    /// Issues an SVID for `identity` with a fresh key of `algorithm`, valid from `now` for `ttl` but never past
    /// the `notAfter` of the CA or any certificate above it. The private key is returned with the chain.
    pub fn issue_with_key(
        &self,
        identity: &IstioIdentity,
        algorithm: KeyAlgorithm,
        ttl: Duration,
        now: UnixTime,
    ) -> Result<IssuedSvid, CaError> {
        let key = key::generate(algorithm)?;
        let mut issued = self.sign_leaf(identity, &key, ttl, now)?;
        issued.key = Some(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(issued)
    }

    /// Issues an SVID for the key of a PEM CSR; see [`LocalCa::issue_for_csr_der`].
    pub fn issue_for_csr_pem(
        &self,
        csr_pem: &str,
        identity: &IstioIdentity,
        ttl: Duration,
        now: UnixTime,
    ) -> Result<IssuedSvid, CaError> {
        let der = csr::der_from_pem(csr_pem)?;
        self.issue_for_csr_der(&der, identity, ttl, now)
    }

    /// Issues an SVID for the public key of a DER CSR, once its signature verifies. The identity is
    /// `identity`, which the caller has authenticated; whatever subject or SANs the CSR asks for are ignored.
    pub fn issue_for_csr_der(
        &self,
        csr_der: &[u8],
        identity: &IstioIdentity,
        ttl: Duration,
        now: UnixTime,
    ) -> Result<IssuedSvid, CaError> {
        let public_key = csr::public_key(csr_der)?;
        self.sign_leaf(identity, &public_key, ttl, now)
    }

    fn sign_leaf(
        &self,
        identity: &IstioIdentity,
        public_key: &impl PublicKeyData,
        ttl: Duration,
        now: UnixTime,
    ) -> Result<IssuedSvid, CaError> {
        if identity.trust_domain_name() != self.trust_domain.as_str() {
            return Err(CaError::ForeignTrustDomain {
                identity: identity.to_string(),
                trust_domain: self.trust_domain.to_string(),
            });
        }
        if ttl > self.max_workload_ttl {
            return Err(CaError::TtlTooLong { requested: ttl, max: self.max_workload_ttl });
        }
        self.check_valid_at(now)?;
        let validity = Validity::new(now, ttl, Some(self.chain_not_after))?;
        let params = profile::leaf(identity.spiffe_id(), validity, &self.provider)?;
        let leaf = params.signed_by(public_key, &self.issuer)?.der().clone();
        Ok(IssuedSvid {
            spiffe_id: identity.spiffe_id().clone(),
            chain: std::iter::once(leaf).chain(self.chain_to_root().cloned()).collect(),
            root: self.root.clone(),
            key: None,
            not_before: validity.not_before,
            not_after: validity.not_after,
        })
    }

    fn check_valid_at(&self, now: UnixTime) -> Result<(), CaError> {
        let Validity { not_before, not_after } = self.validity;
        if now < not_before || now >= not_after {
            return Err(CaError::CaNotValid { now, not_before, not_after });
        }
        Ok(())
    }

    /// The certificates a workload chain carries above its leaf: this CA unless it is the root, then its
    /// parents.
    fn chain_to_root(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        let own = if self.is_root() { None } else { Some(&self.cert) };
        own.into_iter().chain(&self.parents)
    }

    /// The trust domain the CA issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Whether this CA is the root (self-signed).
    pub fn is_root(&self) -> bool {
        self.cert == self.root
    }

    /// The CA's own certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA's certificate followed by its issuers up to the root, without the root.
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        self.chain_to_root().cloned().collect()
    }

    /// The root certificate.
    pub fn root_certificate(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The trust bundle of the CA's trust domain: the root.
    pub fn trust_bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The CA certificate's `notBefore`.
    pub fn not_before(&self) -> UnixTime {
        self.validity.not_before
    }

    /// The CA certificate's `notAfter`.
    pub fn not_after(&self) -> UnixTime {
        self.validity.not_after
    }

    /// The longest workload TTL issued.
    pub fn max_workload_ttl(&self) -> Duration {
        self.max_workload_ttl
    }
}

/// Parses a certificate that must be a CA: basicConstraints CA:TRUE, and keyCertSign when keyUsage is present.
pub(crate) fn parse_ca_cert<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, CaError> {
    let bad = |reason: String| CaError::BadCertificate { what, reason };
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing data after the certificate".into()));
    }
    let is_ca = cert.basic_constraints().map_err(|e| bad(e.to_string()))?.is_some_and(|bc| bc.value.ca);
    let can_sign = cert.key_usage().map_err(|e| bad(e.to_string()))?.is_none_or(|ku| ku.value.key_cert_sign());
    if !is_ca || !can_sign {
        return Err(CaError::NotCa { what });
    }
    Ok(cert)
}

/// Checks that `key` is the private key of `cert`.
pub(crate) fn check_key(cert: &X509Certificate<'_>, key: &KeyPair) -> Result<(), CaError> {
    if cert.public_key().subject_public_key.data.as_ref() == key.der_bytes() {
        Ok(())
    } else {
        Err(CaError::KeyMismatch)
    }
}

/// Rejects subjects rcgen cannot re-encode byte for byte as the issuer name of new certificates (which path
/// building compares bytewise): multi-valued RDNs and repeated attribute types.
fn check_subject(cert: &X509Certificate<'_>) -> Result<(), CaError> {
    let mut seen = Vec::new();
    for rdn in cert.subject().iter() {
        if rdn.iter().count() != 1 {
            return Err(CaError::UnsupportedCaSubject { reason: "a multi-valued RDN".into() });
        }
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            if seen.contains(&oid) {
                return Err(CaError::UnsupportedCaSubject { reason: format!("attribute {oid} appears twice") });
            }
            seen.push(oid);
        }
    }
    Ok(())
}
