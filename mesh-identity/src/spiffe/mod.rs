//! SPIFFE IDs and trust domains, parsed strictly per the SPIFFE ID specification, and Istio's identities.
//!
//! Nothing is normalised: an upper-case trust domain or scheme, a percent-encoded character, a port, user
//! info, a query, a fragment, an empty or dot segment and a trailing slash are all rejected, because two
//! spellings of one identity would otherwise compare unequal in policy.

mod error;
mod id;
mod istio;
mod trust_domain;

pub use error::SpiffeIdError;
pub use id::SpiffeId;
pub use istio::{IstioIdentity, TrustDomains, split_principal};
pub use trust_domain::TrustDomain;

/// `spiffe://`.
pub const SCHEME_PREFIX: &str = "spiffe://";
/// The longest SPIFFE ID accepted, in bytes (the specification's interoperability limit).
pub const MAX_ID_LENGTH: usize = 2048;
/// The longest trust domain name accepted, in bytes.
pub const MAX_TRUST_DOMAIN_LENGTH: usize = 255;
