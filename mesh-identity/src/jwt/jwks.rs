//! JWK Sets (RFC 7517 §5): the public keys an issuer signs with.
//!
//! As in Envoy, a key that cannot be used is left out rather than failing the whole set, and the set is refused
//! only when nothing usable is left. [`Jwks::skipped`] says what was left out and why. Keys are checked as far as
//! possible up front (lengths, RSA modulus size and exponent), so a bad key is reported when the set is loaded
//! rather than as a failed signature later.

use std::fmt;

use serde_json::{Map, Value};

use super::alg::{Algorithm, KeyKind, Parsed};
use super::encoding::b64url;
use super::error::{JwkError, JwksError, SkippedKey};

/// A parsed JWK Set: the usable signature-verification keys of one issuer.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<Jwk>,
    skipped: Vec<SkippedKey>,
}

/// One usable key.
#[derive(Clone)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    /// The only algorithm the key may be used with, when the JWK says so.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: PublicKey,
}

/// Key material in the form ring verifies with.
#[derive(Clone)]
pub(crate) enum PublicKey {
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa {
        n: Box<[u8]>,
        e: Box<[u8]>,
    },
    /// An uncompressed SEC1 point (`04 || x || y`) on P-256 or P-384.
    Ec {
        kind: KeyKind,
        point: Box<[u8]>,
    },
    Ed25519([u8; 32]),
}

impl PublicKey {
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            Self::Rsa { .. } => KeyKind::Rsa,
            Self::Ec { kind, .. } => *kind,
            Self::Ed25519(_) => KeyKind::Ed25519,
        }
    }
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`: the key type and curve must suit it, and a key that
    /// names its algorithm is used for that algorithm only.
    pub(crate) fn suits(&self, alg: Algorithm) -> bool {
        self.key.kind() == alg.key_kind() && self.alg.is_none_or(|own| own == alg)
    }
}

impl Jwks {
    /// Parses a JWK Set document (`{"keys": [...]}`).
    ///
    /// Entries that cannot verify signatures — `oct` keys, `use` other than `sig`, unsupported key types or
    /// curves, RSA moduli outside 2048..=8192 bits, malformed members — are skipped and listed in
    /// [`skipped`](Self::skipped). Fails when the document is not a JWK Set or no usable key is left.
    pub fn from_json(text: &str) -> Result<Jwks, JwksError> {
        let document: Value = serde_json::from_str(text).map_err(|e| JwksError::Json(e.to_string()))?;
        let Value::Object(document) = document else {
            return Err(JwksError::NotObject);
        };
        let entries = match document.get("keys") {
            None => return Err(JwksError::NoKeys),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(JwksError::BadKeys),
        };
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse_entry(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
                    skipped.push(SkippedKey { index, kid, reason });
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoValidKeys { skipped });
        }
        Ok(Jwks { keys, skipped })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no usable keys (never true for a set returned by [`from_json`](Self::from_json)).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys, in document order (`None` for a key without one).
    pub fn kids(&self) -> impl Iterator<Item = Option<&str>> {
        self.keys.iter().map(|key| key.kid.as_deref())
    }

    /// The entries that were left out, and why; worth logging when non-empty.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    pub(crate) fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks").field("keys", &self.keys).field("skipped", &self.skipped.len()).finish()
    }
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg.map(Algorithm::name))
            .field("kind", &self.key.kind())
            .finish()
    }
}

fn parse_entry(entry: &Value) -> Result<Jwk, JwkError> {
    let Value::Object(members) = entry else {
        return Err(JwkError::NotObject);
    };
    let kty = match members.get("kty") {
        None => return Err(JwkError::MissingKty),
        Some(Value::String(kty)) => kty.as_str(),
        Some(_) => return Err(JwkError::NotString("kty")),
    };
    let kid = optional_string(members, "kid")?.map(str::to_owned);
    if let Some(usage) = optional_string(members, "use")?
        && usage != "sig"
    {
        return Err(JwkError::NotForSignatures(usage.to_owned()));
    }
    if let Some(ops) = members.get("key_ops") {
        let allows_verify = ops.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !allows_verify {
            return Err(JwkError::NotForVerify);
        }
    }
    let alg = optional_string(members, "alg")?;
    let (key, alg) = match kty {
        "RSA" => rsa(members, alg)?,
        "EC" => ec(members, alg)?,
        "OKP" => okp(members, alg)?,
        "oct" => return Err(JwkError::Symmetric),
        other => return Err(JwkError::UnsupportedKty(super::error::truncate(other))),
    };
    Ok(Jwk { kid, alg, key })
}

fn optional_string<'m>(members: &'m Map<String, Value>, field: &'static str) -> Result<Option<&'m str>, JwkError> {
    match members.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(JwkError::NotString(field)),
    }
}

fn required_bytes(members: &Map<String, Value>, kty: &'static str, field: &'static str) -> Result<Vec<u8>, JwkError> {
    let text = optional_string(members, field)?.ok_or(JwkError::MissingField { kty, field })?;
    b64url(text).ok_or(JwkError::BadBase64 { kty, field })
}

/// The JWK's `alg`, which must be a supported algorithm for `kind` keys.
fn key_alg(
    kty: &'static str,
    alg: Option<&str>,
    fits: impl Fn(KeyKind) -> bool,
) -> Result<Option<Algorithm>, JwkError> {
    let Some(name) = alg else { return Ok(None) };
    match Algorithm::parse(name) {
        Parsed::Supported(alg) if fits(alg.key_kind()) => Ok(Some(alg)),
        _ => Err(JwkError::BadAlg { kty, alg: super::error::truncate(name) }),
    }
}

fn rsa(members: &Map<String, Value>, alg: Option<&str>) -> Result<(PublicKey, Option<Algorithm>), JwkError> {
    const KTY: &str = "RSA";
    let alg = key_alg(KTY, alg, |kind| kind == KeyKind::Rsa)?;
    let n = required_bytes(members, KTY, "n")?;
    let e = required_bytes(members, KTY, "e")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    // ring's limits, checked here so that a bad key is reported when the set is loaded.
    if !(256..=1024).contains(&n.len()) {
        return Err(JwkError::RsaKeySize { bits: bit_length(n) });
    }
    let exponent = (e.len() <= 5).then(|| e.iter().fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)));
    if !exponent.is_some_and(|e| (3..1 << 33).contains(&e) && e & 1 == 1) {
        return Err(JwkError::RsaBadExponent);
    }
    Ok((PublicKey::Rsa { n: n.into(), e: e.into() }, alg))
}

fn ec(members: &Map<String, Value>, alg: Option<&str>) -> Result<(PublicKey, Option<Algorithm>), JwkError> {
    const KTY: &str = "EC";
    let alg = key_alg(KTY, alg, |kind| matches!(kind, KeyKind::P256 | KeyKind::P384))?;
    // Like Envoy: the curve may be implied by `alg`, and P-256 is assumed when neither is given.
    let (kind, crv, size) = match (optional_string(members, "crv")?, alg) {
        (Some("P-256"), _) | (None, None | Some(Algorithm::Es256)) => (KeyKind::P256, "P-256", 32),
        (Some("P-384"), _) | (None, Some(_)) => (KeyKind::P384, "P-384", 48),
        (Some(other), _) => return Err(JwkError::UnsupportedEcCurve(super::error::truncate(other))),
    };
    if let Some(alg) = alg
        && alg.key_kind() != kind
    {
        return Err(JwkError::CrvAlgMismatch { crv, alg: alg.name() });
    }
    let x = required_bytes(members, KTY, "x")?;
    let y = required_bytes(members, KTY, "y")?;
    for (field, coordinate) in [("x", &x), ("y", &y)] {
        if coordinate.len() != size {
            return Err(JwkError::WrongLength { crv, field, expected: size, actual: coordinate.len() });
        }
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok((PublicKey::Ec { kind, point: point.into() }, alg))
}

fn okp(members: &Map<String, Value>, alg: Option<&str>) -> Result<(PublicKey, Option<Algorithm>), JwkError> {
    const KTY: &str = "OKP";
    let alg = key_alg(KTY, alg, |kind| kind == KeyKind::Ed25519)?;
    match optional_string(members, "crv")? {
        Some("Ed25519") => {}
        Some(other) => return Err(JwkError::UnsupportedOkpCurve(super::error::truncate(other))),
        None => return Err(JwkError::MissingField { kty: KTY, field: "crv" }),
    }
    let x = required_bytes(members, KTY, "x")?;
    let actual = x.len();
    let x: [u8; 32] =
        x.try_into().map_err(|_| JwkError::WrongLength { crv: "Ed25519", field: "x", expected: 32, actual })?;
    Ok((PublicKey::Ed25519(x), alg))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(&top) => bytes.len() * 8 - top.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_reason(json: &str) -> JwkError {
        match Jwks::from_json(json) {
            Err(JwksError::NoValidKeys { mut skipped }) if skipped.len() == 1 => skipped.remove(0).reason,
            other => panic!("expected one skipped key, got {other:?}"),
        }
    }

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn document_shape_errors() {
        assert!(matches!(Jwks::from_json("{"), Err(JwksError::Json(_))));
        assert_eq!(Jwks::from_json("[]").unwrap_err(), JwksError::NotObject);
        assert_eq!(Jwks::from_json("{}").unwrap_err(), JwksError::NoKeys);
        assert_eq!(Jwks::from_json(r#"{"keys":{}}"#).unwrap_err(), JwksError::BadKeys);
        assert_eq!(Jwks::from_json(r#"{"keys":[]}"#).unwrap_err(), JwksError::NoValidKeys { skipped: vec![] });
    }

    #[test]
    fn ec_keys() {
        let jwks = Jwks::from_json(&format!(r#"{{"keys":[{{"kty":"EC","x":"{P256_X}","y":"{P256_Y}"}}]}}"#)).unwrap();
        assert_eq!(jwks.len(), 1);
        assert_eq!(jwks.keys()[0].key.kind(), KeyKind::P256);
        assert!(jwks.keys()[0].suits(Algorithm::Es256));
        assert!(!jwks.keys()[0].suits(Algorithm::Es384));
        assert!(!jwks.keys()[0].suits(Algorithm::Rs256));

        let mismatch =
            format!(r#"{{"keys":[{{"kty":"EC","crv":"P-384","alg":"ES256","x":"{P256_X}","y":"{P256_Y}"}}]}}"#);
        assert_eq!(only_reason(&mismatch), JwkError::CrvAlgMismatch { crv: "P-384", alg: "ES256" });
        let p521 = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-521","x":"{P256_X}","y":"{P256_Y}"}}]}}"#);
        assert_eq!(only_reason(&p521), JwkError::UnsupportedEcCurve("P-521".into()));
        let short = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-384","x":"{P256_X}","y":"{P256_Y}"}}]}}"#);
        assert_eq!(only_reason(&short), JwkError::WrongLength { crv: "P-384", field: "x", expected: 48, actual: 32 });
        let padded = format!(r#"{{"keys":[{{"kty":"EC","x":"{P256_X}=","y":"{P256_Y}"}}]}}"#);
        assert_eq!(only_reason(&padded), JwkError::BadBase64 { kty: "EC", field: "x" });
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let ok = format!(r#"{{"kty":"EC","kid":"good","x":"{P256_X}","y":"{P256_Y}"}}"#);
        let json = format!(
            r#"{{"keys":[{ok},
                {{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}},
                {{"kty":"EC","use":"enc","x":"{P256_X}","y":"{P256_Y}"}},
                {{"kty":"EC","key_ops":["sign"],"x":"{P256_X}","y":"{P256_Y}"}},
                {{"kty":"EC","alg":"RS256","x":"{P256_X}","y":"{P256_Y}"}},
                {{"kty":"OKP","crv":"X25519","x":"{P256_X}"}},
                {{"kty":"RSA","n":"AQAB","e":"AQAB"}},
                {{"x":"y"}},
                7]}}"#
        );
        let jwks = Jwks::from_json(&json).unwrap();
        assert_eq!(jwks.len(), 1);
        assert_eq!(jwks.kids().collect::<Vec<_>>(), [Some("good")]);
        let reasons: Vec<_> = jwks.skipped().iter().map(|s| s.reason.clone()).collect();
        assert_eq!(
            reasons,
            [
                JwkError::Symmetric,
                JwkError::NotForSignatures("enc".into()),
                JwkError::NotForVerify,
                JwkError::BadAlg { kty: "EC", alg: "RS256".into() },
                JwkError::UnsupportedOkpCurve("X25519".into()),
                JwkError::RsaKeySize { bits: 17 },
                JwkError::MissingKty,
                JwkError::NotObject,
            ]
        );
        assert_eq!(jwks.skipped()[0].kid.as_deref(), Some("hmac"));
    }

    #[test]
    fn rsa_exponent_and_leading_zeros() {
        let mut n = vec![0u8, 0];
        n.extend(std::iter::repeat_n(0xC5, 256));
        let n = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &n);
        let key = |e: &str| format!(r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"{e}"}}]}}"#);
        let jwks = Jwks::from_json(&key("AQAB")).unwrap();
        match &jwks.keys()[0].key {
            PublicKey::Rsa { n, e } => {
                assert_eq!(n.len(), 256);
                assert_eq!(&e[..], [1, 0, 1]);
            }
            _ => panic!("not RSA"),
        }
        for bad_e in ["AQ", "Ag", "AAAAAAAB", "AgAAAAE"] {
            assert_eq!(only_reason(&key(bad_e)), JwkError::RsaBadExponent, "{bad_e}");
        }
        assert_eq!(
            only_reason(r#"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#),
            JwkError::MissingField { kty: "RSA", field: "n" }
        );
    }
}
