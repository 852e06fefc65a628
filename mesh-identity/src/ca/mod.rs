//! A local certificate authority for workload X.509-SVIDs, issuing as istiod does.
//!
//! - [`LocalCa`]: a self-signed root ([`LocalCa::new_root`]), an intermediate under it
//!   ([`LocalCa::new_intermediate`]), or an operator CA loaded from Istio's plug-in files
//!   ([`LocalCa::from_plugin_pem`], [`PluginCaPem`]).
//! - Issuance for a CSR (the key comes from the CSR once its signature verifies; the identity always comes
//!   from the caller) or for a key the CA generates, into an [`IssuedSvid`].
//!
//! Leaves follow istiod's profile: empty subject, the SPIFFE ID as the only SAN, keyUsage digitalSignature and
//! keyEncipherment, extendedKeyUsage serverAuth and clientAuth, CA:FALSE. Generation uses `rcgen`, inspection
//! `x509-parser`. Time is always an argument.
//!
//! Serial numbers are drawn from the CA's rustls crypto provider ([`LocalCa::with_crypto_provider`]); keys
//! and signatures from *ring*'s system generator. [`crate::crypto`] says exactly where each comes from.

mod csr;
mod error;
mod issued;
mod key;
mod local;
mod plugin;
mod profile;
mod request;

pub use error::CaError;
pub use issued::IssuedSvid;
pub use key::KeyAlgorithm;
pub use local::{CaOptions, DEFAULT_CA_TTL, DEFAULT_MAX_WORKLOAD_TTL, DEFAULT_WORKLOAD_TTL, LocalCa};
pub use plugin::PluginCaPem;
pub use request::{CertificateRequest, SignedCertificate, SignedChainError};
