//! The headers of a checked HTTP request: every header in request order, names without regard to case.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// HTTP request headers as sent: `(name, value)` in request order, repeats included.
///
/// Serialised as a map (`{"content-type": "application/json"}`); a map naming a header twice, in the same or
/// a different case, keeps both in order. Policies read a header as Envoy does: every value of that name,
/// compared without regard to ASCII case, joined with `,` in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Appends a header.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Every header as sent, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many headers (repeats counted).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of header `name` (any case) as Envoy matches it: one value as sent, several joined with `,`
    /// in request order; `None` when absent.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let first = values.next()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                for v in values {
                    joined.push(',');
                    joined.push_str(v);
                }
                Some(Cow::Owned(joined))
            }
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Headers(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl From<BTreeMap<String, String>> for Headers {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter().collect()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of header names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<String, String>()? {
                    out.push(entry);
                }
                Ok(Headers(out))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_join_in_request_order() {
        let h: Headers = serde_json::from_str(r#"{"X-Evil": "0", "x-evil": "1", "x-evil": "2", "a": "b"}"#).unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("x-evil").as_deref(), Some("0,1,2"));
        assert_eq!(h.get("X-EVIL").as_deref(), Some("0,1,2"));
        assert_eq!(h.get("a").as_deref(), Some("b"));
        assert_eq!(h.get("missing"), None);
        let h: Headers = serde_json::from_str(r#"{"x-evil": "1", "X-Evil": "0"}"#).unwrap();
        assert_eq!(h.get("x-evil").as_deref(), Some("1,0"));
    }
}
