//! Why the local CA cannot load or issue.

use std::time::Duration;

use rustls_pki_types::UnixTime;

use super::KeyAlgorithm;
use crate::verify::Utc;

/// Why the local CA cannot load its material or issue a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// Key generation failed in the crypto library.
    #[error("could not generate a {algorithm} key: {reason}")]
    KeyGeneration {
        /// The algorithm asked for.
        algorithm: KeyAlgorithm,
        /// What the crypto library reported.
        reason: String,
    },
    /// A private key cannot be read or is of an unsupported kind.
    #[error("{what} is not a usable private key: {reason}")]
    BadKey {
        /// Which input (for example `ca-key.pem`).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A certificate cannot be read.
    #[error("{what} is not a usable certificate: {reason}")]
    BadCertificate {
        /// Which input (for example `ca-cert.pem`).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A certificate that must sign others is not a CA.
    #[error("{what} is not a CA certificate (basicConstraints CA:TRUE is missing, or keyUsage lacks keyCertSign)")]
    NotCa {
        /// Which input.
        what: &'static str,
    },
    /// The CA key is not the key of the CA certificate.
    #[error("ca-key.pem does not hold the private key of ca-cert.pem; the files belong to different CAs")]
    KeyMismatch,
    /// `cert-chain.pem` does not start with `ca-cert.pem`.
    #[error("cert-chain.pem must start with the certificate of ca-cert.pem, then its issuers up to the root")]
    ChainStart,
    /// A link of the CA's chain to its root does not verify.
    #[error(
        "certificate #{index} of the CA chain (ca-cert.pem is #0) is not signed by the next one{}; cert-chain.pem \
         must list the issuers in order, ending at root-cert.pem",
        if *.to_root { " (root-cert.pem)" } else { "" }
    )]
    BrokenChain {
        /// Position of the certificate whose signature does not verify.
        index: usize,
        /// Whether the expected issuer was the root.
        to_root: bool,
    },
    /// The CA subject cannot be reproduced byte for byte as the issuer of new certificates.
    #[error(
        "the subject of ca-cert.pem cannot be reproduced as an issuer name ({reason}); reissue the CA with a \
         plain subject (one attribute per RDN, no repeated attribute types)"
    )]
    UnsupportedCaSubject {
        /// What is unsupported.
        reason: String,
    },
    /// The certificate signing request cannot be read.
    #[error("certificate signing request is malformed: {0}")]
    BadCsr(String),
    /// The CSR is not signed by the key it carries (or with an algorithm that is too weak).
    #[error("certificate signing request signature does not verify: {0}")]
    CsrSignature(String),
    /// A TTL under one second.
    #[error("certificate TTL must be at least one second")]
    ZeroTtl,
    /// A workload TTL above the CA's maximum.
    #[error("requested workload certificate TTL {requested:?} exceeds the maximum {max:?}")]
    TtlTooLong {
        /// The TTL asked for.
        requested: Duration,
        /// The CA's maximum.
        max: Duration,
    },
    /// The CA certificate is not valid at the issuance time.
    #[error(
        "CA certificate is not valid at {} (valid from {} to {}); rotate or reload the CA",
        Utc(*.now), Utc(*.not_before), Utc(*.not_after)
    )]
    CaNotValid {
        /// The issuance time.
        now: UnixTime,
        /// The CA's `notBefore`.
        not_before: UnixTime,
        /// The CA's `notAfter`.
        not_after: UnixTime,
    },
    /// The identity is not in the CA's trust domain.
    #[error("identity {identity} is outside the CA's trust domain {trust_domain:?}")]
    ForeignTrustDomain {
        /// The SPIFFE ID asked for.
        identity: String,
        /// The CA's trust domain.
        trust_domain: String,
    },
    /// The validity period ends beyond what X.509 time can encode here.
    #[error("certificate validity would end after 9999-12-31T23:59:59Z; use a shorter TTL")]
    ValidityOutOfRange,
    /// Certificate generation failed in rcgen.
    #[error("certificate generation failed: {0}")]
    Generation(String),
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Generation(e.to_string())
    }
}
