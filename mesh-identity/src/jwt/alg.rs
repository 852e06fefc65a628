//! The JWS algorithms (RFC 7518 §3, RFC 8037 §3.1) this crate verifies, and the ones it refuses outright.

use ring::signature;

use super::error::{JwtError, truncate};

/// A supported JWS `alg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

/// The kind of key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// How a JWS `alg` name is classified.
pub(crate) enum Parsed {
    Supported(Algorithm),
    /// `none` and the HMAC family: never accepted.
    Refused,
    Unknown,
}

impl Algorithm {
    pub(crate) fn parse(name: &str) -> Parsed {
        match name {
            "RS256" => Parsed::Supported(Self::Rs256),
            "RS384" => Parsed::Supported(Self::Rs384),
            "RS512" => Parsed::Supported(Self::Rs512),
            "PS256" => Parsed::Supported(Self::Ps256),
            "PS384" => Parsed::Supported(Self::Ps384),
            "PS512" => Parsed::Supported(Self::Ps512),
            "ES256" => Parsed::Supported(Self::Es256),
            "ES384" => Parsed::Supported(Self::Es384),
            "EdDSA" => Parsed::Supported(Self::EdDsa),
            "HS256" | "HS384" | "HS512" => Parsed::Refused,
            // `none` in any letter case: some verifiers have compared it case-insensitively.
            other if other.eq_ignore_ascii_case("none") => Parsed::Refused,
            _ => Parsed::Unknown,
        }
    }

    /// The token header's `alg`, as an error when it is not one this crate verifies.
    pub(crate) fn from_header(name: &str) -> Result<Self, JwtError> {
        match Self::parse(name) {
            Parsed::Supported(alg) => Ok(alg),
            Parsed::Refused => Err(JwtError::AlgRefused(truncate(name))),
            Parsed::Unknown => Err(JwtError::AlgNotSupported(truncate(name))),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn key_kind(self) -> KeyKind {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => KeyKind::Rsa,
            Self::Es256 => KeyKind::P256,
            Self::Es384 => KeyKind::P384,
            Self::EdDsa => KeyKind::Ed25519,
        }
    }

    /// ring's parameters for the RSA algorithms (2048 to 8192-bit moduli), `None` for the others.
    pub(crate) fn rsa_params(self) -> Option<&'static signature::RsaParameters> {
        match self {
            Self::Rs256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Self::Rs384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Self::Rs512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Self::Ps256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Self::Ps384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Self::Ps512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            Self::Es256 | Self::Es384 | Self::EdDsa => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in [
            Algorithm::Rs256,
            Algorithm::Rs384,
            Algorithm::Rs512,
            Algorithm::Ps256,
            Algorithm::Ps384,
            Algorithm::Ps512,
            Algorithm::Es256,
            Algorithm::Es384,
            Algorithm::EdDsa,
        ] {
            assert_eq!(Algorithm::from_header(alg.name()), Ok(alg));
        }
    }

    #[test]
    fn none_and_hmac_are_refused_and_others_unknown() {
        for name in ["none", "None", "NONE", "HS256", "HS384", "HS512"] {
            assert!(matches!(Algorithm::from_header(name), Err(JwtError::AlgRefused(_))), "{name}");
        }
        for name in ["ES512", "rs256", "RSA-OAEP", "", "Ed25519"] {
            assert!(matches!(Algorithm::from_header(name), Err(JwtError::AlgNotSupported(_))), "{name}");
        }
    }
}
