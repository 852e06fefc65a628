//! Who is on the other end of a mesh connection or request, with no sockets and no clock: `now` is always an
//! argument.
//!
//! - [`spiffe`]: SPIFFE IDs and trust domains, strictly per the SPIFFE ID specification, and Istio's
//!   `spiffe://<td>/ns/<ns>/sa/<sa>` identities.
//! - [`jwt`]: JWKS documents and token validation as Envoy's `jwt_authn` filter does it for Istio's
//!   RequestAuthentication.
//! - [`svid`]: the SPIFFE ID of an X.509-SVID leaf, checked against the SPIFFE X.509-SVID profile.
//! - [`bundle`]: trust bundles (a trust domain's X.509 roots) and the set of them a workload trusts.
//! - [`verify`]: peer chain verification with `rustls-webpki` against the bundle of the peer's trust domain.
//! - [`tls`]: rustls server and client configurations for HBONE mutual TLS, verifying peers by SPIFFE ID.
//! - [`ca`]: a local CA issuing workload SVIDs as istiod does, including Istio's plug-in CA files.
//! - [`rotation`]: when to renew a certificate, as a pure schedule.
//! - [`store`]: the certificates of many workloads and the trust bundles, each replaced atomically while
//!   serving, behind rustls's certificate resolvers and verifiers, renewed from the local CA on the schedule.
//! - [`crypto`]: the rustls crypto provider used, and where every random byte comes from.
//!
//! Everything X.509 (`svid`, `bundle`, `verify`, `tls`, `ca`, `rotation`, `store`, `crypto`) is behind the
//! default feature `x509`; without it the crate is SPIFFE IDs and JWT validation only.
//!
//! Randomness: certificate serial numbers come from the rustls `CryptoProvider` in use (*ring*'s by default),
//! keys and signatures from *ring*'s system generator, the one behind that provider; rotation jitter is the
//! caller's. See `crypto`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "x509")]
pub mod bundle;
#[cfg(feature = "x509")]
pub mod ca;
#[cfg(feature = "x509")]
pub mod crypto;
pub mod jwt;
#[cfg(feature = "x509")]
pub mod rotation;
pub mod spiffe;
#[cfg(feature = "x509")]
pub mod store;
#[cfg(feature = "x509")]
pub mod svid;
#[cfg(feature = "x509")]
pub mod tls;
#[cfg(feature = "x509")]
pub mod verify;
