//! Peer chain verification: an X.509-SVID and its intermediates, checked with `rustls-webpki` against the trust
//! bundle of the SPIFFE ID's own trust domain, at a time the caller passes in.

use std::fmt;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::bundle::TrustBundleSet;
use crate::spiffe::{IstioIdentity, SpiffeId, SpiffeIdError, TrustDomain, TrustDomains};
use crate::store::SharedTrustBundles;
use crate::svid::{PeerRole, Svid, SvidError};

/// The signature algorithms accepted in certificate chains: ECDSA (P-256, P-384), Ed25519 and RSA (PKCS#1 v1.5
/// and PSS, 2048 to 8192 bits), all verified by *ring*.
pub static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
];

/// Why a peer's certificate chain is not trusted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// The peer sent no certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
    /// The leaf is not an X.509-SVID.
    #[error("peer certificate is not a valid X.509-SVID: {0}")]
    Svid(#[from] SvidError),
    /// No bundle is registered for the SPIFFE ID's trust domain.
    #[error(
        "no trust bundle for trust domain {trust_domain:?} (peer {spiffe_id}); add that domain's roots to the \
         trust bundle set to federate with it"
    )]
    UnknownTrustDomain {
        /// The trust domain of the peer's SPIFFE ID.
        trust_domain: String,
        /// The peer's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
    /// The trust domain has a bundle, but peers from it are not accepted here.
    #[error("peer {spiffe_id} is from trust domain {trust_domain:?}, which is not accepted here")]
    TrustDomainNotAccepted {
        /// The trust domain of the peer's SPIFFE ID.
        trust_domain: String,
        /// The peer's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
    /// A certificate of the chain expired before `now`.
    #[error("certificate expired at {} (verification time {}); the peer must renew it", Utc(*not_after), Utc(*now))]
    Expired {
        /// The verification time.
        now: UnixTime,
        /// The `notAfter` of the expired certificate.
        not_after: UnixTime,
    },
    /// A certificate of the chain is not valid until after `now`.
    #[error(
        "certificate is not valid until {} (verification time {}); check the clocks of the issuer and verifier",
        Utc(*not_before),
        Utc(*now)
    )]
    NotYetValid {
        /// The verification time.
        now: UnixTime,
        /// The `notBefore` of the certificate.
        not_before: UnixTime,
    },
    /// The chain does not lead to a root of the trust domain's bundle.
    #[error(
        "certificate of {spiffe_id} was not issued by a root of the trust bundle for {trust_domain:?} (unknown \
         issuer); the peer's CA is not trusted for that domain, or an intermediate is missing from the chain"
    )]
    UnknownIssuer {
        /// The trust domain whose bundle was used.
        trust_domain: String,
        /// The peer's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
    /// The leaf's extended key usage does not allow the role it is presented in.
    #[error("certificate is not valid for TLS {role} authentication (extendedKeyUsage lacks {})", role.extended_key_usage())]
    WrongUsage {
        /// The role the certificate was presented in.
        role: PeerRole,
    },
    /// A signature in the chain does not verify against the issuer of that name.
    #[error(
        "certificate of {spiffe_id} does not verify against the issuer of the same name in the trust bundle for \
         {trust_domain:?}: a different CA with the same subject signed it (Istio's self-signed roots all share \
         one), or it was altered"
    )]
    BadSignature {
        /// The trust domain whose bundle was used.
        trust_domain: String,
        /// The peer's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
    /// Any other reason `rustls-webpki` gives.
    #[error("certificate chain rejected: {0}")]
    Rejected(webpki::Error),
}

/// A peer whose chain verified: its SPIFFE ID and when its leaf expires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifiedPeer {
    spiffe_id: SpiffeId,
    not_after: UnixTime,
}

impl VerifiedPeer {
    /// The verified SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The verified SPIFFE ID, by value.
    pub fn into_spiffe_id(self) -> SpiffeId {
        self.spiffe_id
    }

    /// The Istio identity, when the SPIFFE ID has Istio's `/ns/<namespace>/sa/<service account>` form.
    pub fn istio_identity(&self) -> Result<IstioIdentity, SpiffeIdError> {
        IstioIdentity::from_spiffe_id(self.spiffe_id.clone())
    }

    /// The `notAfter` of the leaf.
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }
}

/// Verifies peer chains against a [`TrustBundleSet`].
///
/// The leaf is first checked against the X.509-SVID profile ([`Svid`]); its SPIFFE ID's trust domain picks the
/// bundle; `rustls-webpki` then builds and checks the path to one of that bundle's roots, at the time given,
/// for the extended key usage of the role. Cheap to clone.
///
/// The set is either fixed ([`ChainVerifier::new`]) or shared and replaceable ([`ChainVerifier::shared`]), in
/// which case each verification reads the set current at its start.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    bundles: Bundles,
    accepted: Option<Arc<[TrustDomain]>>,
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
}

/// Where a [`ChainVerifier`] takes its bundles from.
#[derive(Debug, Clone)]
enum Bundles {
    Fixed(Arc<TrustBundleSet>),
    Shared(SharedTrustBundles),
}

impl ChainVerifier {
    /// Trusts every trust domain that has a bundle in `bundles`.
    pub fn new(bundles: Arc<TrustBundleSet>) -> Self {
        ChainVerifier { bundles: Bundles::Fixed(bundles), accepted: None, algorithms: SIGNATURE_ALGORITHMS }
    }

    /// Trusts every trust domain that has a bundle in the set `bundles` holds at the time of each
    /// verification, so a replaced set applies to the next verification.
    pub fn shared(bundles: SharedTrustBundles) -> Self {
        ChainVerifier { bundles: Bundles::Shared(bundles), accepted: None, algorithms: SIGNATURE_ALGORITHMS }
    }

    /// Accepts peers only from these trust domains (each still needs a bundle).
    pub fn accept_only(mut self, trust_domains: impl IntoIterator<Item = TrustDomain>) -> Self {
        self.accepted = Some(trust_domains.into_iter().collect());
        self
    }

    /// Accepts peers only from the mesh's local trust domain and its aliases.
    pub fn accept_mesh(self, domains: &TrustDomains) -> Self {
        let all = std::iter::once(domains.local()).chain(domains.aliases()).cloned();
        self.accept_only(all)
    }

    /// Uses these signature algorithms for the chain instead of [`SIGNATURE_ALGORITHMS`].
    pub fn with_algorithms(mut self, algorithms: &'static [&'static dyn SignatureVerificationAlgorithm]) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// The bundles trusted now.
    pub fn bundles(&self) -> Arc<TrustBundleSet> {
        match &self.bundles {
            Bundles::Fixed(bundles) => Arc::clone(bundles),
            Bundles::Shared(shared) => shared.current(),
        }
    }

    /// Whether peers from `trust_domain` are accepted (a bundle is needed too).
    pub fn accepts(&self, trust_domain: &str) -> bool {
        self.accepted.as_ref().is_none_or(|accepted| accepted.iter().any(|td| td.as_str() == trust_domain))
    }

    /// Verifies a chain given leaf first, as TLS carries it.
    pub fn verify_chain(
        &self,
        chain: &[CertificateDer<'_>],
        role: PeerRole,
        now: UnixTime,
    ) -> Result<VerifiedPeer, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
        self.verify(leaf, intermediates, role, now)
    }

    /// Verifies `leaf`, presented as `role` with `intermediates`, at `now`.
    pub fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        role: PeerRole,
        now: UnixTime,
    ) -> Result<VerifiedPeer, VerifyError> {
        let svid = Svid::parse(leaf)?;
        let spiffe_id = svid.spiffe_id();
        let trust_domain = spiffe_id.trust_domain_name();
        if !self.accepts(trust_domain) {
            return Err(VerifyError::TrustDomainNotAccepted {
                trust_domain: trust_domain.to_owned(),
                spiffe_id: spiffe_id.clone(),
            });
        }
        let bundles = self.bundles();
        let Some(bundle) = bundles.get(trust_domain) else {
            return Err(VerifyError::UnknownTrustDomain {
                trust_domain: trust_domain.to_owned(),
                spiffe_id: spiffe_id.clone(),
            });
        };

        let usage = match role {
            PeerRole::Server => KeyUsage::server_auth(),
            PeerRole::Client => KeyUsage::client_auth(),
        };
        let end_entity = EndEntityCert::try_from(leaf).map_err(VerifyError::Rejected)?;
        end_entity
            .verify_for_usage(self.algorithms, bundle.trust_anchors(), intermediates, now, usage, None, None)
            .map_err(|error| match error {
                webpki::Error::CertExpired { time, not_after } => VerifyError::Expired { now: time, not_after },
                webpki::Error::CertNotValidYet { time, not_before } => {
                    VerifyError::NotYetValid { now: time, not_before }
                }
                webpki::Error::UnknownIssuer => {
                    VerifyError::UnknownIssuer { trust_domain: trust_domain.to_owned(), spiffe_id: spiffe_id.clone() }
                }
                webpki::Error::RequiredEkuNotFoundContext(_) => VerifyError::WrongUsage { role },
                webpki::Error::CaUsedAsEndEntity => VerifyError::Svid(SvidError::IsCa),
                webpki::Error::InvalidSignatureForPublicKey => {
                    VerifyError::BadSignature { trust_domain: trust_domain.to_owned(), spiffe_id: spiffe_id.clone() }
                }
                other => VerifyError::Rejected(other),
            })?;

        Ok(VerifiedPeer { not_after: svid.not_after(), spiffe_id: svid.into_spiffe_id() })
    }
}

/// A [`UnixTime`] shown as an RFC 3339 UTC timestamp.
pub(crate) struct Utc(pub(crate) UnixTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        write!(f, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (the civil-from-days algorithm over 400-year eras).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339() {
        let at = |secs| Utc(UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))).to_string();
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
