//! Signature verification: choosing candidate keys from the JWKS and checking the signature with ring.
//!
//! A key is a candidate when its type and curve suit the token's `alg`, its own `alg` (if any) is the token's,
//! and — when both the token and the key carry a `kid` — the `kid`s are equal. As in Envoy, a key without a
//! `kid` is a candidate for any token, and a token without a `kid` tries every suitable key. Keys come only
//! from the configured JWKS: the token never chooses its own.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use super::alg::Algorithm;
use super::error::JwtError;
use super::jwks::{Jwk, Jwks, PublicKey};

/// Verifies `signature` over `signing_input` with the candidate keys of `jwks`.
pub(crate) fn verify_signature(
    jwks: &Jwks,
    alg: Algorithm,
    kid: Option<&str>,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), JwtError> {
    let mut candidates = jwks.keys().iter().filter(|key| is_candidate(key, alg, kid)).peekable();
    if candidates.peek().is_none() {
        return Err(JwtError::KidAlgMismatch);
    }
    if candidates.any(|key| verify_with(&key.key, alg, signing_input, signature)) {
        Ok(())
    } else {
        Err(JwtError::VerificationFails)
    }
}

fn is_candidate(key: &Jwk, alg: Algorithm, kid: Option<&str>) -> bool {
    let kid_matches = match (kid, key.kid.as_deref()) {
        (Some(wanted), Some(own)) => wanted == own,
        _ => true,
    };
    kid_matches && key.suits(alg)
}

fn verify_with(key: &PublicKey, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
    match (key, alg.rsa_params()) {
        (PublicKey::Rsa { n, e }, Some(params)) => {
            RsaPublicKeyComponents { n: &n[..], e: &e[..] }.verify(params, message, sig).is_ok()
        }
        (PublicKey::Ec { point, .. }, None) => {
            let algorithm: &dyn signature::VerificationAlgorithm = match alg {
                Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                _ => &signature::ECDSA_P256_SHA256_FIXED,
            };
            UnparsedPublicKey::new(algorithm, &point[..]).verify(message, sig).is_ok()
        }
        (PublicKey::Ed25519(x), None) => UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig).is_ok(),
        // `is_candidate` has already matched the key type to the algorithm.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // RFC 8037 Appendix A.2 (public key) and A.4 (signature over the signing input below).
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_INPUT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    const RFC8037_SIG: &str = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    fn jwks(extra: &str) -> Jwks {
        Jwks::from_json(&format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"{extra}}}]}}"#)).unwrap()
    }

    fn check(jwks: &Jwks, alg: Algorithm, kid: Option<&str>, sig: &[u8]) -> Result<(), JwtError> {
        verify_signature(jwks, alg, kid, RFC8037_INPUT.as_bytes(), sig)
    }

    #[test]
    fn rfc8037_ed25519_signature_verifies() {
        let sig = URL_SAFE_NO_PAD.decode(RFC8037_SIG).unwrap();
        assert_eq!(check(&jwks(""), Algorithm::EdDsa, None, &sig), Ok(()));
        // A kid-less key is a candidate for a token with a kid.
        assert_eq!(check(&jwks(""), Algorithm::EdDsa, Some("any"), &sig), Ok(()));
        assert_eq!(check(&jwks(r#","kid":"a""#), Algorithm::EdDsa, Some("a"), &sig), Ok(()));

        let mut tampered = sig.clone();
        tampered[0] ^= 1;
        assert_eq!(check(&jwks(""), Algorithm::EdDsa, None, &tampered), Err(JwtError::VerificationFails));
        assert_eq!(check(&jwks(""), Algorithm::EdDsa, None, &sig[..63]), Err(JwtError::VerificationFails));
    }

    #[test]
    fn no_candidate_is_a_kid_or_alg_mismatch() {
        let sig = URL_SAFE_NO_PAD.decode(RFC8037_SIG).unwrap();
        assert_eq!(check(&jwks(r#","kid":"a""#), Algorithm::EdDsa, Some("b"), &sig), Err(JwtError::KidAlgMismatch));
        assert_eq!(check(&jwks(""), Algorithm::Es256, None, &sig), Err(JwtError::KidAlgMismatch));
        assert_eq!(check(&jwks(""), Algorithm::Rs256, None, &sig), Err(JwtError::KidAlgMismatch));
    }
}
