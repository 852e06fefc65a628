//! X.509-SVIDs: the one SPIFFE ID a leaf certificate carries, checked against the SPIFFE X.509-SVID profile.
//!
//! This module inspects a certificate; it does not decide whether to trust it. Chain validation against a
//! trust bundle is [`crate::verify`]'s job, and it calls into this module for the identity.

use std::fmt;

use rustls_pki_types::UnixTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::spiffe::{IstioIdentity, SpiffeId, SpiffeIdError};

/// The side of a TLS handshake a certificate is presented by, which decides the extended key usage it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// The certificate authenticates a TLS server (`id-kp-serverAuth`).
    Server,
    /// The certificate authenticates a TLS client (`id-kp-clientAuth`).
    Client,
}

impl PeerRole {
    /// The name of the extended key usage this role needs.
    pub fn extended_key_usage(self) -> &'static str {
        match self {
            PeerRole::Server => "serverAuth",
            PeerRole::Client => "clientAuth",
        }
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerRole::Server => "server",
            PeerRole::Client => "client",
        })
    }
}

/// What is wrong with a leaf's keyUsage extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsageProblem {
    /// There is no keyUsage extension; the SVID profile requires one.
    Missing,
    /// `digitalSignature` is not set, so the key cannot sign a TLS handshake.
    NoDigitalSignature,
    /// `keyCertSign` is set: a leaf must not be able to sign certificates.
    KeyCertSign,
    /// `cRLSign` is set: a leaf must not be able to sign revocation lists.
    CrlSign,
}

impl fmt::Display for KeyUsageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyUsageProblem::Missing => "the keyUsage extension is missing",
            KeyUsageProblem::NoDigitalSignature => "digitalSignature is not set",
            KeyUsageProblem::KeyCertSign => "keyCertSign is set, which only a CA may have",
            KeyUsageProblem::CrlSign => "cRLSign is set, which only a CA may have",
        })
    }
}

/// Why a certificate is not a usable X.509-SVID leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    /// The bytes are not one DER X.509 certificate, or an extension this profile reads is malformed or
    /// repeated.
    #[error("certificate is malformed: {0}")]
    Malformed(String),
    /// No URI subjectAltName.
    #[error("certificate has no URI SAN: an X.509-SVID carries its SPIFFE ID as exactly one URI subjectAltName")]
    NoUriSan,
    /// More than one URI subjectAltName.
    #[error("certificate has {count} URI SANs: an X.509-SVID carries exactly one, its SPIFFE ID")]
    MultipleUriSans {
        /// How many URI SANs the certificate has.
        count: usize,
    },
    /// The URI subjectAltName is not a SPIFFE ID.
    #[error("URI SAN {uri:?} is not a SPIFFE ID: {source}")]
    InvalidSpiffeId {
        /// The URI as found in the certificate.
        uri: String,
        /// Why it is not a SPIFFE ID.
        source: SpiffeIdError,
    },
    /// basicConstraints says CA:TRUE.
    #[error("certificate is a CA (basicConstraints CA:TRUE); a workload SVID must be a leaf")]
    IsCa,
    /// keyUsage is missing or wrong for a leaf.
    #[error("keyUsage is wrong for an SVID leaf: {0}")]
    BadKeyUsage(KeyUsageProblem),
    /// extendedKeyUsage is present but does not allow the role the certificate is presented in.
    #[error(
        "extendedKeyUsage does not include {} (required to authenticate a TLS {role}); reissue the certificate \
         with serverAuth and clientAuth",
        role.extended_key_usage()
    )]
    WrongExtendedKeyUsage {
        /// The role the certificate was presented in.
        role: PeerRole,
    },
}

/// The extended key usages of a leaf, as far as TLS is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ExtendedKeyUsage {
    /// No extendedKeyUsage extension: any usage is allowed.
    Absent,
    /// The extension is present with these TLS purposes.
    Present { server_auth: bool, client_auth: bool },
}

/// A certificate that passed the X.509-SVID leaf profile checks: exactly one URI SAN holding a SPIFFE ID, not
/// a CA, keyUsage with `digitalSignature` and without `keyCertSign` / `cRLSign`.
///
/// The extended key usage depends on the role the certificate is presented in and is checked by
/// [`Svid::check_role`]. `anyExtendedKeyUsage` alone does not count as serverAuth or clientAuth, as in
/// `rustls-webpki`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Svid {
    spiffe_id: SpiffeId,
    not_before: UnixTime,
    not_after: UnixTime,
    extended_key_usage: ExtendedKeyUsage,
}

impl Svid {
    /// Parses a DER certificate and checks the leaf profile.
    pub fn parse(der: &[u8]) -> Result<Self, SvidError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| SvidError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SvidError::Malformed(format!("{} bytes of trailing data after the certificate", rest.len())));
        }
        Self::from_parsed(&cert)
    }

    /// Checks the profile of a certificate already parsed by `x509-parser`.
    fn from_parsed(cert: &X509Certificate<'_>) -> Result<Self, SvidError> {
        let malformed = |e: x509_parser::error::X509Error| SvidError::Malformed(e.to_string());

        let spiffe_id = single_uri_san(cert)?;

        if cert.basic_constraints().map_err(malformed)?.is_some_and(|bc| bc.value.ca) {
            return Err(SvidError::IsCa);
        }

        let key_usage = cert.key_usage().map_err(malformed)?;
        let key_usage = key_usage.ok_or(SvidError::BadKeyUsage(KeyUsageProblem::Missing))?.value;
        if key_usage.key_cert_sign() {
            return Err(SvidError::BadKeyUsage(KeyUsageProblem::KeyCertSign));
        }
        if key_usage.crl_sign() {
            return Err(SvidError::BadKeyUsage(KeyUsageProblem::CrlSign));
        }
        if !key_usage.digital_signature() {
            return Err(SvidError::BadKeyUsage(KeyUsageProblem::NoDigitalSignature));
        }

        let extended_key_usage = match cert.extended_key_usage().map_err(malformed)? {
            None => ExtendedKeyUsage::Absent,
            Some(eku) => {
                ExtendedKeyUsage::Present { server_auth: eku.value.server_auth, client_auth: eku.value.client_auth }
            }
        };

        let validity = cert.validity();
        Ok(Svid {
            spiffe_id,
            not_before: unix_time(validity.not_before.timestamp()),
            not_after: unix_time(validity.not_after.timestamp()),
            extended_key_usage,
        })
    }

    /// The SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The SPIFFE ID, by value.
    pub fn into_spiffe_id(self) -> SpiffeId {
        self.spiffe_id
    }

    /// The Istio view of the SPIFFE ID, when its path is `/ns/<namespace>/sa/<service account>`.
    pub fn istio_identity(&self) -> Result<IstioIdentity, SpiffeIdError> {
        IstioIdentity::from_spiffe_id(self.spiffe_id.clone())
    }

    /// The start of the validity period (`notBefore`; times before 1970 read as 1970).
    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }

    /// The end of the validity period (`notAfter`).
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    /// Whether the extended key usage allows presenting the certificate as `role`.
    pub fn allows(&self, role: PeerRole) -> bool {
        match self.extended_key_usage {
            ExtendedKeyUsage::Absent => true,
            ExtendedKeyUsage::Present { server_auth, client_auth } => match role {
                PeerRole::Server => server_auth,
                PeerRole::Client => client_auth,
            },
        }
    }

    /// Fails with [`SvidError::WrongExtendedKeyUsage`] unless [`Svid::allows`] `role`.
    pub fn check_role(&self, role: PeerRole) -> Result<(), SvidError> {
        if self.allows(role) { Ok(()) } else { Err(SvidError::WrongExtendedKeyUsage { role }) }
    }
}

/// The SPIFFE ID of a DER leaf certificate presented as `role`, after the full X.509-SVID leaf profile check.
pub fn extract_spiffe_id(der: &[u8], role: PeerRole) -> Result<SpiffeId, SvidError> {
    let svid = Svid::parse(der)?;
    svid.check_role(role)?;
    Ok(svid.into_spiffe_id())
}

fn single_uri_san(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = cert.subject_alternative_name().map_err(|e| SvidError::Malformed(e.to_string()))?;
    let mut uris = san.iter().flat_map(|san| san.value.general_names.iter()).filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let uri = uris.next().ok_or(SvidError::NoUriSan)?;
    let more = uris.count();
    if more > 0 {
        return Err(SvidError::MultipleUriSans { count: more + 1 });
    }
    SpiffeId::new(uri).map_err(|source| SvidError::InvalidSpiffeId { uri: uri.to_owned(), source })
}

/// A certificate time as [`UnixTime`]; times before 1970 become 1970, since no workload certificate has one.
pub(crate) fn unix_time(seconds: i64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// What an operator's view shows of a certificate (a leaf, intermediate or root): its serial number and
/// validity, as Istio's node proxy lists them in its config dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The certificate as PEM.
    pub pem: String,
    /// The serial number in decimal.
    pub serial: String,
    /// `notBefore`.
    pub not_before: UnixTime,
    /// `notAfter`.
    pub not_after: UnixTime,
}

impl CertificateSummary {
    /// The summary of the DER certificate `der`; `None` if it does not parse.
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let validity = cert.validity();
        let der = rustls_pki_types::CertificateDer::from(der);
        Some(CertificateSummary {
            pem: crate::bundle::certificates_pem([&der]),
            serial: cert.serial.to_string(),
            not_before: unix_time(validity.not_before.timestamp()),
            not_after: unix_time(validity.not_after.timestamp()),
        })
    }
}

/// `time` as an RFC 3339 UTC timestamp to the second, e.g. `2026-12-08T01:26:41Z`.
pub fn rfc3339(time: UnixTime) -> String {
    crate::verify::Utc(time).to_string()
}
