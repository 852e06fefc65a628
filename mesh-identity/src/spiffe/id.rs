//! A SPIFFE ID: `spiffe://<trust domain><path>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::trust_domain::{self, TrustDomain};
use super::{MAX_ID_LENGTH, SCHEME_PREFIX, SpiffeIdError};

/// A SPIFFE ID, held as its one canonical string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    text: Box<str>,
    /// Byte offset where the path starts (the end of the trust domain).
    path_at: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID.
    pub fn new(id: &str) -> Result<Self, SpiffeIdError> {
        if id.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if id.len() > MAX_ID_LENGTH {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = id.strip_prefix(SCHEME_PREFIX).ok_or(SpiffeIdError::WrongScheme)?;
        let td_len = rest.find('/').unwrap_or(rest.len());
        trust_domain::validate(&rest[..td_len])?;
        validate_path(&rest[td_len..])?;
        Ok(SpiffeId { text: id.into(), path_at: SCHEME_PREFIX.len() + td_len })
    }

    /// The ID of `path` (empty, or starting with `/`) in `trust_domain`.
    pub fn from_parts(trust_domain: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        Self::new(&format!("{SCHEME_PREFIX}{trust_domain}{path}"))
    }

    /// The trust domain name.
    pub fn trust_domain_name(&self) -> &str {
        &self.text[SCHEME_PREFIX.len()..self.path_at]
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> TrustDomain {
        // Validated at construction.
        TrustDomain(self.trust_domain_name().into())
    }

    /// The path: empty, or `/` followed by segments.
    pub fn path(&self) -> &str {
        &self.text[self.path_at..]
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The ID without `spiffe://`, the form AuthorizationPolicy `principals` use.
    pub fn principal(&self) -> &str {
        &self.text[SCHEME_PREFIX.len()..]
    }

    /// Whether the ID belongs to `trust_domain`.
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain_name() == trust_domain.as_str()
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    let Some(body) = path.strip_prefix('/') else {
        // The trust domain ends at the first `/`, so a non-empty path always starts with one.
        return Ok(());
    };
    let count = body.split('/').count();
    for (i, segment) in body.split('/').enumerate() {
        match segment {
            "" if i + 1 == count => return Err(SpiffeIdError::TrailingSlash),
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            s if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) => {
                return Err(SpiffeIdError::BadPathSegmentChar);
            }
            _ => {}
        }
    }
    Ok(())
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::new(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SpiffeId::new(&s).map_err(serde::de::Error::custom)
    }
}
