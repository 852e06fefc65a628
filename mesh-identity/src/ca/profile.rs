//! The certificate profiles the CA issues: root and intermediate CAs, and workload leaves as istiod makes them.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::UnixTime;

use super::CaError;
use crate::spiffe::SpiffeId;

/// The last second X.509 time is encoded for here: 9999-12-31T23:59:59Z.
const MAX_TIME: u64 = 253_402_300_799;

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: UnixTime,
    pub(crate) not_after: UnixTime,
}

impl Validity {
    /// From `now` for `ttl`, cut at `limit` (the issuer's `notAfter`) when given.
    pub(crate) fn new(now: UnixTime, ttl: Duration, limit: Option<UnixTime>) -> Result<Self, CaError> {
        if ttl.as_secs() == 0 {
            return Err(CaError::ZeroTtl);
        }
        let end = now.as_secs().checked_add(ttl.as_secs()).ok_or(CaError::ValidityOutOfRange)?;
        let end = limit.map_or(end, |limit| end.min(limit.as_secs()));
        if end > MAX_TIME {
            return Err(CaError::ValidityOutOfRange);
        }
        Ok(Validity { not_before: now, not_after: UnixTime::since_unix_epoch(Duration::from_secs(end)) })
    }

    fn apply(self, params: &mut CertificateParams) {
        // `Validity::new` bounds both ends by MAX_TIME, so the additions stay in range.
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs(self.not_before.as_secs().min(MAX_TIME));
        params.not_after = epoch + Duration::from_secs(self.not_after.as_secs().min(MAX_TIME));
    }
}

/// The names of a CA certificate's subject.
#[derive(Debug, Clone)]
pub(crate) struct CaSubject<'a> {
    pub(crate) organization: &'a str,
    pub(crate) common_name: &'a str,
}

/// A CA certificate: subject O and CN, basicConstraints CA:TRUE (with `path_len` when given), keyUsage
/// keyCertSign, cRLSign and digitalSignature.
pub(crate) fn ca(
    subject: &CaSubject<'_>,
    validity: Validity,
    path_len: Option<u8>,
    self_signed: bool,
    provider: &CryptoProvider,
) -> Result<CertificateParams, CaError> {
    let mut params = base(validity, provider)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, subject.organization);
    name.push(DnType::CommonName, subject.common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(path_len.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = !self_signed;
    Ok(params)
}

/// A workload leaf as istiod issues it: empty subject, the SPIFFE ID as the only (critical) SAN, keyUsage
/// digitalSignature and keyEncipherment, extendedKeyUsage serverAuth and clientAuth, CA:FALSE.
pub(crate) fn leaf(id: &SpiffeId, validity: Validity, provider: &CryptoProvider) -> Result<CertificateParams, CaError> {
    let mut params = base(validity, provider)?;
    params.distinguished_name = DistinguishedName::new();
    let uri = rcgen::string::Ia5String::try_from(id.as_str())?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn base(validity: Validity, provider: &CryptoProvider) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    validity.apply(&mut params);
    params.serial_number = Some(random_serial(provider)?);
    Ok(params)
}

/// A random positive 128-bit serial number (RFC 5280 allows up to 20 octets), from `provider`'s secure random
/// generator.
pub(crate) fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    crate::crypto::fill_random(provider, &mut bytes)
        .map_err(|_| CaError::Generation("the crypto provider's random number generator failed".into()))?;
    // Positive, and 16 octets long once DER-encoded.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
