//! Why a string is not a SPIFFE ID.

/// Why a string is not a SPIFFE ID, trust domain or Istio identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// Nothing to parse.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The ID does not start with `spiffe://` (lower case).
    #[error("scheme is missing or invalid: a SPIFFE ID starts with \"spiffe://\"")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// A trust domain character outside `a-z 0-9 . - _` (this includes `:` of a port and `@` of user info).
    #[error("trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores")]
    BadTrustDomainChar,
    /// A path character outside `a-z A-Z 0-9 . - _` (this includes `%`, `?` and `#`).
    #[error("path segment characters are limited to letters, numbers, dots, dashes, and underscores")]
    BadPathSegmentChar,
    /// `//` in the path.
    #[error("path cannot contain empty segments")]
    EmptySegment,
    /// `/.` or `/..` as a segment.
    #[error("path cannot contain dot segments")]
    DotSegment,
    /// The path ends with `/`.
    #[error("path cannot have a trailing slash")]
    TrailingSlash,
    /// Longer than 2048 bytes.
    #[error("SPIFFE ID exceeds the maximum length of 2048 bytes")]
    TooLong,
    /// Trust domain longer than 255 bytes.
    #[error("trust domain exceeds the maximum length of 255 bytes")]
    TrustDomainTooLong,
    /// Not of Istio's form `<trust domain>/ns/<namespace>/sa/<service account>`.
    #[error("not an Istio identity: expected the path /ns/<namespace>/sa/<service account>")]
    NotIstio,
}
