//! JWT authentication as Envoy's `jwt_authn` filter performs it for Istio's RequestAuthentication.
//!
//! Give an [`Authenticator`] the resolved [`JwtRule`]s (issuer, audiences, the issuer's [`Jwks`], token
//! locations), then call [`Authenticator::authenticate`] with a request's headers, path and the current time. The
//! result is an [`Outcome`]: no token, a [`VerifiedToken`] (with Istio's request principal `iss/sub`), or the
//! [`JwtError`] that rejects the request, worded as Envoy words it.
//!
//! Only what cannot be forged is accepted:
//!
//! - compact JWS only, at most [`MAX_TOKEN_LEN`] bytes, in strict unpadded base64url;
//! - asymmetric signatures only: RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA (Ed25519). `none` and the
//!   HMAC algorithms are refused whatever the JWKS holds, so an RSA public key can never be used as an HMAC
//!   secret; RSA keys must be 2048 to 8192 bits;
//! - keys come only from the configured JWKS: headers carrying `jwk`, `jku`, `x5u` or `x5c` are refused, as are
//!   `crit` headers and JSON with repeated member names;
//! - `exp` and `nbf` are checked with [`CLOCK_SKEW_SECS`] of skew; a token carrying either is refused when no
//!   current time is supplied.
//!
//! The crate does no IO: fetching `jwksUri` and reading the clock are the caller's.
//!
//! ```
//! use std::sync::Arc;
//! use mesh_identity::jwt::{Authenticator, Jwks, JwtRule, Outcome};
//!
//! let jwks = Jwks::from_json(r#"{"keys":[{"kty":"OKP","crv":"Ed25519",
//!     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#)?;
//! let auth = Authenticator::new(vec![JwtRule::new("https://issuer.example", Some(Arc::new(jwks)))]);
//! assert_eq!(auth.authenticate([("accept", "*/*")], "/", Some(1_700_000_000)), Outcome::NoToken);
//! let outcome = auth.authenticate([("authorization", "Bearer not-a-jwt")], "/", Some(1_700_000_000));
//! assert!(matches!(outcome, Outcome::Rejected(_)));
//! # Ok::<(), mesh_identity::jwt::JwksError>(())
//! ```

mod alg;
mod authenticator;
mod cache;
mod claims;
mod encoding;
mod error;
mod jwks;
mod location;
mod rule;
mod token;
mod validate;
mod verify;

pub use authenticator::{Authenticator, Outcome};
pub use cache::{CacheStats, DEFAULT_CACHE_CAPACITY};
pub use claims::VerifiedToken;
pub use error::{JwkError, JwksError, JwtError, SkippedKey};
pub use jwks::Jwks;
pub use location::HeaderLocation;
pub use rule::JwtRule;
pub use token::MAX_TOKEN_LEN;
pub use validate::CLOCK_SKEW_SECS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Authenticator>();
        assert_send_sync::<Outcome>();
        assert_send_sync::<Jwks>();
    }
}
