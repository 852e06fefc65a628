//! The JWS compact serialisation (RFC 7515 §7.1): `base64url(header) . base64url(payload) . base64url(signature)`.
//!
//! Parsing checks everything that does not need a key: the size limit, the three sections, strict base64url,
//! the protected header (a supported asymmetric `alg`; no `crit`; no key carried in the token), and the types of
//! the registered claims.

use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::claims::Claims;
use super::encoding::{b64url, json_object};
use super::error::JwtError;

/// The longest token accepted, in bytes; anything longer is refused before it is decoded.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Header members that would let the token choose its own verification key.
const EMBEDDED_KEY_MEMBERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// A parsed, not yet verified, token.
#[derive(Debug)]
pub(crate) struct Jws<'t> {
    /// `header . payload`, the bytes the signature covers.
    pub(crate) signing_input: &'t str,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Claims,
    pub(crate) signature: Vec<u8>,
}

impl<'t> Jws<'t> {
    pub(crate) fn parse(token: &'t str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge { len: token.len(), limit: MAX_TOKEN_LEN });
        }
        let mut sections = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (sections.next(), sections.next(), sections.next(), sections.next())
        else {
            return Err(JwtError::BadFormat);
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(JwtError::BadFormat);
        }
        let signing_input = &token[..header.len() + 1 + payload.len()];

        let header = b64url(header).ok_or(JwtError::HeaderBadBase64)?;
        let header = json_object(&header).ok_or(JwtError::HeaderBadJson)?;
        let (alg, kid) = check_header(&header)?;

        let payload = b64url(payload).ok_or(JwtError::PayloadBadBase64)?;
        let payload = json_object(&payload).ok_or(JwtError::PayloadBadJson)?;
        let claims = Claims::from_payload(payload)?;

        let signature = b64url(signature).ok_or(JwtError::SignatureBadBase64)?;
        Ok(Jws { signing_input, alg, kid, claims, signature })
    }
}

fn check_header(header: &Map<String, Value>) -> Result<(Algorithm, Option<String>), JwtError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => Algorithm::from_header(alg)?,
        _ => return Err(JwtError::HeaderBadAlg),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtError::HeaderBadKid),
    };
    if let Some(member) = EMBEDDED_KEY_MEMBERS.into_iter().find(|member| header.contains_key(*member)) {
        return Err(JwtError::HeaderEmbeddedKey(member));
    }
    if header.contains_key("crit") {
        return Err(JwtError::HeaderCrit);
    }
    Ok((alg, kid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload))
    }

    fn err(token: &str) -> JwtError {
        Jws::parse(token).unwrap_err()
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#, r#"{"iss":"i","exp":5}"#);
        let jws = Jws::parse(&t).unwrap();
        assert_eq!(jws.alg, Algorithm::Es256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims.issuer.as_deref(), Some("i"));
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, &t[..t.len() - 5]);
    }

    #[test]
    fn section_errors() {
        for bad in ["", ".", "..", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b.", "a.b.c."] {
            assert_eq!(err(bad), JwtError::BadFormat, "{bad:?}");
        }
        let good_payload = URL_SAFE_NO_PAD.encode("{}");
        let good_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#);
        assert_eq!(err(&format!("{good_header}=.{good_payload}.c2ln")), JwtError::HeaderBadBase64);
        assert_eq!(err(&format!("{good_header}.{good_payload}=.c2ln")), JwtError::PayloadBadBase64);
        assert_eq!(err(&format!("{good_header}.{good_payload}.c2ln=")), JwtError::SignatureBadBase64);
        assert_eq!(err(&format!("{good_header}.{good_payload}.c2l+")), JwtError::SignatureBadBase64);
        assert_eq!(err(&format!("{good_header}.{good_payload}.c2lu\u{e9}")), JwtError::SignatureBadBase64);
    }

    #[test]
    fn header_errors() {
        assert_eq!(err(&token("not json", "{}")), JwtError::HeaderBadJson);
        assert_eq!(err(&token(r#"["alg"]"#, "{}")), JwtError::HeaderBadJson);
        assert_eq!(err(&token(r#"{"alg":"RS256","alg":"none"}"#, "{}")), JwtError::HeaderBadJson);
        assert_eq!(err(&token(r#"{"typ":"JWT"}"#, "{}")), JwtError::HeaderBadAlg);
        assert_eq!(err(&token(r#"{"alg":256}"#, "{}")), JwtError::HeaderBadAlg);
        assert_eq!(err(&token(r#"{"alg":"none"}"#, "{}")), JwtError::AlgRefused("none".into()));
        assert_eq!(err(&token(r#"{"alg":"HS256"}"#, "{}")), JwtError::AlgRefused("HS256".into()));
        assert_eq!(err(&token(r#"{"alg":"ES512"}"#, "{}")), JwtError::AlgNotSupported("ES512".into()));
        assert_eq!(err(&token(r#"{"alg":"RS256","kid":7}"#, "{}")), JwtError::HeaderBadKid);
        for member in EMBEDDED_KEY_MEMBERS {
            let header = format!(r#"{{"alg":"RS256","{member}":"x"}}"#);
            assert_eq!(err(&token(&header, "{}")), JwtError::HeaderEmbeddedKey(member));
        }
        assert_eq!(err(&token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}")), JwtError::HeaderCrit);
    }

    #[test]
    fn payload_errors() {
        let header = r#"{"alg":"EdDSA"}"#;
        assert_eq!(err(&token(header, "Example of Ed25519 signing")), JwtError::PayloadBadJson);
        assert_eq!(err(&token(header, "[]")), JwtError::PayloadBadJson);
        assert_eq!(err(&token(header, r#"{"iss":"a","iss":"b"}"#)), JwtError::PayloadBadJson);
        assert_eq!(err(&token(header, r#"{"exp":"soon"}"#)), JwtError::ClaimNotNumericDate("exp"));
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let big = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(err(&big), JwtError::TooLarge { len: MAX_TOKEN_LEN + 1, limit: MAX_TOKEN_LEN });
    }
}
