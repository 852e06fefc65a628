//! The registered claims (RFC 7519 §4.1) read from a payload, type-checked as Envoy does, and the verified result.

use serde_json::{Map, Value};

use super::error::JwtError;

/// The claims of a payload whose registered members have the right types.
#[derive(Debug, Clone)]
pub(crate) struct Claims {
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) presenter: Option<String>,
    pub(crate) expires_at: Option<u64>,
    pub(crate) not_before: Option<u64>,
    pub(crate) all: Map<String, Value>,
}

impl Claims {
    /// Reads the registered claims. `iss`, `sub`, `azp` and `jti` must be strings, `aud` a string or an array of
    /// strings, and `exp`, `nbf` and `iat` non-negative numbers (fractions are truncated to whole seconds).
    pub(crate) fn from_payload(all: Map<String, Value>) -> Result<Self, JwtError> {
        let issuer = string(&all, "iss")?;
        let subject = string(&all, "sub")?;
        let presenter = string(&all, "azp")?;
        string(&all, "jti")?;
        let audiences = match all.get("aud") {
            None => Vec::new(),
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|aud| aud.as_str().map(str::to_owned).ok_or(JwtError::AudNotString))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(JwtError::AudNotString),
        };
        let expires_at = numeric_date(&all, "exp")?;
        let not_before = numeric_date(&all, "nbf")?;
        numeric_date(&all, "iat")?;
        Ok(Claims { issuer, subject, audiences, presenter, expires_at, not_before, all })
    }
}

fn string(all: &Map<String, Value>, name: &'static str) -> Result<Option<String>, JwtError> {
    match all.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(JwtError::ClaimNotString(name)),
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional; truncated to whole seconds.
fn numeric_date(all: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, JwtError> {
    let Some(value) = all.get(name) else { return Ok(None) };
    let Value::Number(number) = value else { return Err(JwtError::ClaimNotNumericDate(name)) };
    if let Some(seconds) = number.as_u64() {
        return Ok(Some(seconds));
    }
    match number.as_f64() {
        // 2^64 is exactly representable, and every finite double below it truncates into a u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(seconds) if (0.0..18_446_744_073_709_551_616.0).contains(&seconds) => Ok(Some(seconds as u64)),
        _ => Err(JwtError::ClaimNotNumericDate(name)),
    }
}

/// A token whose signature, issuer, audience and validity period have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `iss`: equal to the matching rule's issuer.
    pub issuer: String,
    /// `sub`, when present.
    pub subject: Option<String>,
    /// `aud`, as a list (a single string becomes a list of one); empty when absent.
    pub audiences: Vec<String>,
    /// `azp` (the OAuth client the token was issued to), when present: Istio's `request.auth.presenter`.
    pub presenter: Option<String>,
    /// The whole payload, registered claims included.
    pub claims: Map<String, Value>,
    /// `exp` in Unix seconds, when present.
    pub expires_at: Option<u64>,
}

impl VerifiedToken {
    pub(crate) fn new(issuer: String, claims: Claims) -> Self {
        VerifiedToken {
            issuer,
            subject: claims.subject,
            audiences: claims.audiences,
            presenter: claims.presenter,
            claims: claims.all,
            expires_at: claims.expires_at,
        }
    }

    /// Istio's request principal, `<iss>/<sub>`, when the token has a subject.
    pub fn principal(&self) -> Option<String> {
        self.subject.as_ref().map(|subject| format!("{}/{}", self.issuer, subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Result<Claims, JwtError> {
        match value {
            Value::Object(map) => Claims::from_payload(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn registered_claims_are_read() {
        let c = claims(json!({"iss":"i","sub":"s","aud":"a","azp":"p","exp":10,"nbf":1.9,"iat":0,"x":[1]})).unwrap();
        assert_eq!(c.issuer.as_deref(), Some("i"));
        assert_eq!(c.subject.as_deref(), Some("s"));
        assert_eq!(c.audiences, ["a"]);
        assert_eq!(c.presenter.as_deref(), Some("p"));
        assert_eq!((c.expires_at, c.not_before), (Some(10), Some(1)));
        let c = claims(json!({"aud":["a","b"]})).unwrap();
        assert_eq!(c.audiences, ["a", "b"]);
        assert_eq!(c.expires_at, None);
    }

    #[test]
    fn wrong_types_are_rejected() {
        assert_eq!(claims(json!({"iss":1})).unwrap_err(), JwtError::ClaimNotString("iss"));
        assert_eq!(claims(json!({"sub":null})).unwrap_err(), JwtError::ClaimNotString("sub"));
        assert_eq!(claims(json!({"azp":["x"]})).unwrap_err(), JwtError::ClaimNotString("azp"));
        assert_eq!(claims(json!({"aud":["a",1]})).unwrap_err(), JwtError::AudNotString);
        assert_eq!(claims(json!({"aud":{}})).unwrap_err(), JwtError::AudNotString);
        assert_eq!(claims(json!({"exp":"10"})).unwrap_err(), JwtError::ClaimNotNumericDate("exp"));
        assert_eq!(claims(json!({"nbf":-1})).unwrap_err(), JwtError::ClaimNotNumericDate("nbf"));
        assert_eq!(claims(json!({"iat":1e30})).unwrap_err(), JwtError::ClaimNotNumericDate("iat"));
        assert_eq!(claims(json!({"exp":true})).unwrap_err(), JwtError::ClaimNotNumericDate("exp"));
    }

    #[test]
    fn principal_is_issuer_slash_subject() {
        let mut token = VerifiedToken::new("https://issuer".into(), claims(json!({"sub":"alice"})).unwrap());
        assert_eq!(token.principal().as_deref(), Some("https://issuer/alice"));
        token.subject = None;
        assert_eq!(token.principal(), None);
    }
}
