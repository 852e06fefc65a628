//! Why the store cannot take, issue or renew a certificate.

use crate::ca::CaError;
use crate::spiffe::SpiffeId;
use crate::tls::TlsError;

/// Why the store cannot take, issue or renew a certificate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The certificate or its key cannot be used for TLS (for example a key that is not the leaf's).
    #[error("certificate of {spiffe_id} cannot be stored: {source}")]
    Certificate {
        /// The certificate's SPIFFE ID.
        spiffe_id: SpiffeId,
        /// Why.
        source: TlsError,
    },
    /// The local CA refused to issue.
    #[error("the local CA cannot issue for {spiffe_id}: {source}")]
    Issue {
        /// The identity asked for.
        spiffe_id: SpiffeId,
        /// Why.
        source: CaError,
    },
    /// The local CA issues Istio identities only, and this SPIFFE ID is not one.
    #[error(
        "cannot renew {spiffe_id} from the local CA: it issues Istio identities \
         (spiffe://<trust domain>/ns/<namespace>/sa/<service account>) only; store a renewed certificate with \
         CertificateStore::insert instead"
    )]
    NotIstio {
        /// The stored SPIFFE ID.
        spiffe_id: SpiffeId,
    },
}
