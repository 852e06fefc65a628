//! The two decoders everything else is built on: strict base64url and JSON objects without repeated members.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Unpadded base64url (RFC 7515 §2), strictly: padding, characters outside the URL-safe alphabet and non-zero
/// trailing bits are all errors, so every byte string has exactly one accepted encoding.
pub(crate) fn b64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A JSON object whose member names are unique.
///
/// RFC 7515 §5.2 lets a parser either reject duplicate names or keep the last one; keeping one silently is how
/// two parsers end up disagreeing about a token, so this rejects them. Non-objects, invalid UTF-8 and trailing
/// data are rejected too. Nesting depth is bounded by `serde_json`'s recursion limit.
pub(crate) fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let map = de.deserialize_map(UniqueObject).ok()?;
    de.end().ok()?;
    Some(map)
}

struct UniqueObject;

impl<'de> Visitor<'de> for UniqueObject {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            map.insert(name, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64url("eyJhIjoxfQ"), Some(br#"{"a":1}"#.to_vec()));
        assert_eq!(b64url(""), Some(vec![]));
        // Padding, the standard alphabet, whitespace and a dangling sextet.
        for bad in ["eyJhIjoxfQ==", "ab+/", "ab/c", "eyJh Ijox", "a", "abcde"] {
            assert_eq!(b64url(bad), None, "{bad}");
        }
        // "QQ" is the canonical encoding of "A"; "QR" has non-zero trailing bits.
        assert_eq!(b64url("QQ"), Some(b"A".to_vec()));
        assert_eq!(b64url("QR"), None);
    }

    #[test]
    fn objects_only_with_unique_names() {
        assert!(json_object(br#"{"a":1,"b":{"a":2}}"#).is_some());
        assert!(json_object(br#"{"a":1,"a":2}"#).is_none());
        assert!(json_object(br#"[1]"#).is_none());
        assert!(json_object(br#""a""#).is_none());
        assert!(json_object(br#"{"a":1} x"#).is_none());
        assert!(json_object(b"{\"a\":\"\xff\"}").is_none());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(json_object(deep.as_bytes()).is_none());
    }
}
