//! Why a token or a JWK Set was refused.
//!
//! Token messages follow Envoy's `jwt_authn` wording (so logs and `401` bodies read the same as a sidecar's) and
//! add the detail needed to act on them. Any text copied from a token is truncated and escaped first.

use std::fmt;

/// Why a token was rejected.
///
/// The `Display` text of the common cases is Envoy's, e.g. `Jwt is expired` or `Jwt issuer is not configured`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN); it was not decoded.
    #[error("Jwt is too large: {len} bytes, the limit is {limit}")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// Not exactly three non-empty base64url sections separated by two dots (JWE and JSON serialisations are not
    /// accepted either).
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    /// The header section is not strict unpadded base64url.
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBadBase64,
    /// The header is not a JSON object, or repeats a member name.
    #[error("Jwt header is an invalid JSON")]
    HeaderBadJson,
    /// The header has no `alg`, or it is not a string.
    #[error("Jwt header [alg] field is required and must be a string")]
    HeaderBadAlg,
    /// `alg` names an algorithm this crate does not implement.
    #[error(
        "Jwt header [alg] is not supported: {0:?} (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 and \
         EdDSA are)"
    )]
    AlgNotSupported(String),
    /// `alg` is `none` or an HMAC algorithm: such tokens are never accepted, whatever the JWKS holds.
    #[error("Jwt header [alg] {0:?} is refused: unsigned and HMAC (shared-secret) tokens are never accepted")]
    AlgRefused(String),
    /// The header's `kid` is present but not a string.
    #[error("Jwt header [kid] field is not a string")]
    HeaderBadKid,
    /// The header carries its own key or a pointer to one (`jwk`, `jku`, `x5u`, `x5c`).
    #[error("Jwt header [{0}] is refused: verification keys come only from the configured JWKS")]
    HeaderEmbeddedKey(&'static str),
    /// The header has a `crit` member; no extension is understood, so the token must be rejected (RFC 7515 §4.1.11).
    #[error("Jwt header [crit] is not supported: no critical header extension is understood")]
    HeaderCrit,
    /// The payload section is not strict unpadded base64url.
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBadBase64,
    /// The payload is not a JSON object, or repeats a member name.
    #[error("Jwt payload is an invalid JSON")]
    PayloadBadJson,
    /// A claim that must be a string (`iss`, `sub`, `azp`, `jti`) is not one.
    #[error("Jwt payload [{0}] field is not a string")]
    ClaimNotString(&'static str),
    /// `aud` is neither a string nor an array of strings.
    #[error("Jwt payload [aud] field is not a string or string list")]
    AudNotString,
    /// `exp`, `nbf` or `iat` is not a non-negative number of seconds since the epoch.
    #[error("Jwt payload [{0}] field is not a non-negative number of seconds since the Unix epoch")]
    ClaimNotNumericDate(&'static str),
    /// The signature section is not strict unpadded base64url.
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBadBase64,
    /// No rule that declares the location the token was found in has the token's `iss` (or it has none).
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    /// `nbf` is more than the clock skew in the future.
    #[error("Jwt not yet valid")]
    NotYetValid,
    /// `exp` is more than the clock skew in the past.
    #[error("Jwt is expired")]
    Expired,
    /// The token has `exp` or `nbf` but no current time was given, so it cannot be checked (fail closed).
    #[error("Jwt has [exp] or [nbf] but the current time was not supplied: pass `now` (Unix seconds)")]
    TimeNotSupplied,
    /// The rule lists audiences and the token's `aud` has none of them.
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    /// The rule's JWKS was not supplied (its `jwksUri` was not fetched), so its tokens cannot be verified.
    #[error("Jwks remote fetch is failed: the JWKS for this issuer was not supplied, so its tokens are refused")]
    JwksMissing,
    /// No key in the JWKS has the token's `kid` and suits its `alg`.
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    KidAlgMismatch,
    /// The signature does not verify under any candidate key.
    #[error("Jwt verification fails")]
    VerificationFails,
}

/// Why a JWK Set document was refused as a whole.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// The text is not JSON.
    #[error("Jwks is an invalid JSON: {0}")]
    Json(String),
    /// The document is JSON but not an object.
    #[error("Jwks is an invalid JSON: the document is not an object")]
    NotObject,
    /// The object has no `keys` member.
    #[error("Jwks does not have [keys] field")]
    NoKeys,
    /// `keys` is not an array.
    #[error("[keys] in Jwks is not an array")]
    BadKeys,
    /// Not one key in `keys` is usable for verifying signatures.
    #[error("Jwks doesn't have any valid public key{}", SkippedList(.skipped))]
    NoValidKeys {
        /// Every entry of `keys`, with the reason it was left out.
        skipped: Vec<SkippedKey>,
    },
}

/// A `keys` entry that [`Jwks::from_json`](super::Jwks::from_json) left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The entry's position in `keys`.
    pub index: usize,
    /// The entry's `kid`, if it had a string one.
    pub kid: Option<String>,
    /// Why it was left out.
    pub reason: JwkError,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keys[{}]", self.index)?;
        if let Some(kid) = &self.kid {
            write!(f, " (kid {:?})", truncate(kid))?;
        }
        write!(f, ": {}", self.reason)
    }
}

struct SkippedList<'a>(&'a [SkippedKey]);

impl fmt::Display for SkippedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(": [keys] is empty");
        }
        f.write_str(": ")?;
        for (i, skipped) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{skipped}")?;
        }
        Ok(())
    }
}

/// Why one JWK was not used.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkError {
    /// The entry is not a JSON object.
    #[error("the entry is not a JSON object")]
    NotObject,
    /// The entry has no `kty`.
    #[error("[kty] is missing in [keys]")]
    MissingKty,
    /// A member that must be a string is not one.
    #[error("[{0}] field is not a string")]
    NotString(&'static str),
    /// `kty` is not `RSA`, `EC` or `OKP`.
    #[error("[kty] {0:?} is not supported in [keys] (RSA, EC and OKP are)")]
    UnsupportedKty(String),
    /// An `oct` (shared-secret) key: HMAC tokens are never accepted, so it would never be used.
    #[error("[kty] \"oct\" is a shared secret, and HMAC tokens are never accepted")]
    Symmetric,
    /// `use` is set to something other than `sig`.
    #[error("[use] is {0:?}, not \"sig\": the key is not for signatures")]
    NotForSignatures(String),
    /// `key_ops` is set and does not include `verify`.
    #[error("[key_ops] does not include \"verify\"")]
    NotForVerify,
    /// `alg` is set to an algorithm this key type cannot be used with, or one that is not supported.
    #[error("[alg] {alg:?} is not usable with a {kty} key here")]
    BadAlg {
        /// The key type.
        kty: &'static str,
        /// The `alg` it declared.
        alg: String,
    },
    /// A required member is missing.
    #[error("[{field}] field is missing for a {kty} key")]
    MissingField {
        /// The key type.
        kty: &'static str,
        /// The missing member.
        field: &'static str,
    },
    /// A member is not strict unpadded base64url.
    #[error("[{field}] field of a {kty} key is an invalid Base64url")]
    BadBase64 {
        /// The key type.
        kty: &'static str,
        /// The member.
        field: &'static str,
    },
    /// The RSA modulus is outside 2048..=8192 bits.
    #[error("RSA key is {bits} bits; between 2048 and 8192 bits are required")]
    RsaKeySize {
        /// The modulus length in bits.
        bits: usize,
    },
    /// The RSA public exponent is even, below 3 or above 2^33 - 1.
    #[error("RSA [e] must be odd and between 3 and 2^33 - 1")]
    RsaBadExponent,
    /// The EC curve is not P-256 or P-384.
    #[error("[crv] {0:?} is not supported for an EC key (P-256 and P-384 are)")]
    UnsupportedEcCurve(String),
    /// The OKP curve is not Ed25519.
    #[error("[crv] {0:?} is not supported for an OKP key (Ed25519 is)")]
    UnsupportedOkpCurve(String),
    /// `crv` and `alg` disagree (e.g. P-384 with ES256).
    #[error("[crv] {crv} is not compatible with [alg] {alg}")]
    CrvAlgMismatch {
        /// The key's curve.
        crv: &'static str,
        /// The key's `alg`.
        alg: &'static str,
    },
    /// A coordinate or key has the wrong length for its curve.
    #[error("[{field}] of a {crv} key must be {expected} bytes, found {actual}")]
    WrongLength {
        /// The curve.
        crv: &'static str,
        /// The member.
        field: &'static str,
        /// The length the curve requires.
        expected: usize,
        /// The decoded length.
        actual: usize,
    },
}

/// At most 64 characters of attacker- or issuer-supplied text, for error messages.
pub(crate) fn truncate(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(100);
        let short = truncate(&long);
        assert_eq!(short.chars().count(), 65);
        assert!(short.ends_with('…'));
        assert_eq!(truncate("RS256"), "RS256");
    }

    #[test]
    fn no_valid_keys_lists_every_reason() {
        let err = JwksError::NoValidKeys {
            skipped: vec![
                SkippedKey { index: 0, kid: Some("a".into()), reason: JwkError::Symmetric },
                SkippedKey { index: 1, kid: None, reason: JwkError::MissingKty },
            ],
        };
        assert_eq!(
            err.to_string(),
            "Jwks doesn't have any valid public key: keys[0] (kid \"a\"): [kty] \"oct\" is a shared secret, and \
             HMAC tokens are never accepted; keys[1]: [kty] is missing in [keys]"
        );
        assert_eq!(
            JwksError::NoValidKeys { skipped: vec![] }.to_string(),
            "Jwks doesn't have any valid public key: [keys] is empty"
        );
    }
}
