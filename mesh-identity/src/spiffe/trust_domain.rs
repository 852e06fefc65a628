//! A SPIFFE trust domain name.

use std::fmt;
use std::str::FromStr;

use super::{MAX_TRUST_DOMAIN_LENGTH, SpiffeIdError};

/// A trust domain name such as `cluster.local`: lower-case letters, digits, `.`, `-` and `_`, at most 255
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(pub(crate) Box<str>);

impl TrustDomain {
    /// Parses a bare trust domain name (not a `spiffe://` URI).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        validate(name)?;
        Ok(TrustDomain(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `spiffe://<name>`.
    pub fn id_string(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

/// Checks a trust domain name.
pub(crate) fn validate(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_LENGTH {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')) {
        return Err(SpiffeIdError::BadTrustDomainChar);
    }
    Ok(())
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::new(s)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TrustDomain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
