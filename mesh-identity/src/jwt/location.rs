//! Where tokens are carried in a request: headers (with a value prefix), query parameters and cookies.
//!
//! Rules that declare the same location share it, and a token found there may only be of an issuer that declared
//! it. Extraction follows Envoy: a header value is used only if it contains the prefix, and the token is what
//! follows it (after any characters that cannot start a token); a query parameter's first occurrence is used,
//! percent-decoded; a cookie's first occurrence is used, without surrounding double quotes.

use std::borrow::Cow;

use super::rule::JwtRule;

/// A header a token may be carried in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HeaderLocation {
    /// The header name, compared case-insensitively.
    pub name: String,
    /// The value prefix to strip, e.g. `Bearer ` (case-sensitive, as in Envoy); empty for the whole value.
    pub prefix: String,
}

impl HeaderLocation {
    /// A header location with a value prefix.
    pub fn new(name: impl Into<String>, prefix: impl Into<String>) -> Self {
        HeaderLocation { name: name.into(), prefix: prefix.into() }
    }
}

/// The default header location's prefix, and the default query parameter.
const BEARER_PREFIX: &str = "Bearer ";
const ACCESS_TOKEN_PARAM: &str = "access_token";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// The name is lower-cased.
    Header {
        name: String,
        prefix: String,
    },
    Param(String),
    Cookie(String),
}

/// One distinct location, with the rules (by index, in order) that declared it.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    place: Place,
    pub(crate) rules: Vec<usize>,
}

/// A token found in a request, and the location it was found in.
#[derive(Debug)]
pub(crate) struct Found<'r> {
    pub(crate) token: Cow<'r, str>,
    /// Index into [`Locations::get`].
    pub(crate) location: usize,
}

/// Every location the rules declare.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locations(Vec<Location>);

impl Locations {
    pub(crate) fn new(rules: &[JwtRule]) -> Self {
        let mut locations = Locations::default();
        for (index, rule) in rules.iter().enumerate() {
            if rule.uses_default_locations() {
                locations.declare(Place::Header { name: "authorization".into(), prefix: BEARER_PREFIX.into() }, index);
                locations.declare(Place::Param(ACCESS_TOKEN_PARAM.into()), index);
                continue;
            }
            for header in &rule.from_headers {
                let place = Place::Header { name: header.name.to_ascii_lowercase(), prefix: header.prefix.clone() };
                locations.declare(place, index);
            }
            for param in &rule.from_params {
                locations.declare(Place::Param(param.clone()), index);
            }
            for cookie in &rule.from_cookies {
                locations.declare(Place::Cookie(cookie.clone()), index);
            }
        }
        locations
    }

    fn declare(&mut self, place: Place, rule: usize) {
        match self.0.iter_mut().find(|location| location.place == place) {
            Some(location) if location.rules.contains(&rule) => {}
            Some(location) => location.rules.push(rule),
            None => self.0.push(Location { place, rules: vec![rule] }),
        }
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Location> {
        self.0.get(index)
    }

    /// Every token in the request, location by location in declaration order.
    pub(crate) fn extract<'a: 'r, 'r, H>(&self, headers: H, path: &'r str) -> Vec<Found<'r>>
    where
        H: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        let mut found = Vec::new();
        let query = path.split_once('?').map(|(_, query)| query);
        for (location, spec) in self.0.iter().enumerate() {
            match &spec.place {
                Place::Header { name, prefix } => {
                    let values = headers.clone().into_iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
                    for (_, value) in values {
                        if let Some(token) = after_prefix(value, prefix) {
                            found.push(Found { token: Cow::Borrowed(token), location });
                        }
                    }
                }
                Place::Param(param) => {
                    if let Some(token) = query.and_then(|query| query_param(query, param)) {
                        found.push(Found { token, location });
                    }
                }
                Place::Cookie(cookie) => {
                    let cookie_headers = headers.clone().into_iter().filter(|(n, _)| n.eq_ignore_ascii_case("cookie"));
                    if let Some(token) = cookie_headers.into_iter().find_map(|(_, value)| cookie_value(value, cookie)) {
                        found.push(Found { token: Cow::Borrowed(token), location });
                    }
                }
            }
        }
        found
    }
}

/// The token in a header value: what follows the first occurrence of `prefix`, from the first character that can
/// be part of a compact JWS. `None` when the prefix does not occur, so the header carries no token.
fn after_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    if prefix.is_empty() {
        return Some(value);
    }
    let (_, rest) = value.split_once(prefix)?;
    let start = rest.find(|c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).unwrap_or(rest.len());
    Some(&rest[start..])
}

/// The first value of `name` in a query string, percent-decoded (`+` is left alone, as Envoy leaves it).
fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&hi), Some(&lo)) if byte == b'%' => hex(hi).zip(hex(lo)).map(|(hi, lo)| (hi << 4) | lo),
            _ => None,
        };
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|value| u8::try_from(value).ok())
}

/// The value of cookie `name` in one `Cookie` header, without surrounding double quotes.
fn cookie_value<'v>(header: &'v str, name: &str) -> Option<&'v str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim_matches([' ', '\t']).split_once('=')?;
        (key == name).then(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(rules: &[JwtRule], headers: &[(&str, &str)], path: &str) -> Vec<(String, usize)> {
        Locations::new(rules)
            .extract(headers.iter().copied(), path)
            .into_iter()
            .map(|found| (found.token.into_owned(), found.location))
            .collect()
    }

    #[test]
    fn default_locations() {
        let rules = [JwtRule::new("a", None), JwtRule::new("b", None)];
        let locations = Locations::new(&rules);
        assert_eq!(locations.0.len(), 2);
        assert_eq!(locations.0[0].rules, [0, 1]);
        let found =
            tokens(&rules, &[("AUTHORIZATION", "Bearer x.y.z"), ("x", "Bearer no")], "/p?a=1&access_token=q.r.s");
        assert_eq!(found, [("x.y.z".to_owned(), 0), ("q.r.s".to_owned(), 1)]);
        // The scheme is matched as Envoy matches it: case-sensitively.
        assert!(tokens(&rules, &[("authorization", "bearer x.y.z")], "/").is_empty());
        assert!(tokens(&rules, &[("authorization", "Basic dXNlcjpwYXNz")], "/").is_empty());
    }

    #[test]
    fn every_header_occurrence_is_a_token() {
        let rules = [JwtRule::new("a", None)];
        let found = tokens(&rules, &[("authorization", "Bearer one"), ("Authorization", "Bearer  two")], "/");
        assert_eq!(found, [("one".to_owned(), 0), ("two".to_owned(), 0)]);
        assert_eq!(tokens(&rules, &[("authorization", "Bearer ")], "/"), [(String::new(), 0)]);
    }

    #[test]
    fn custom_locations_replace_the_defaults() {
        let rule = JwtRule {
            issuer: "a".into(),
            from_headers: vec![HeaderLocation::new("X-Jwt", "")],
            from_cookies: vec!["session".into()],
            ..JwtRule::default()
        };
        let headers = [
            ("authorization", "Bearer ignored"),
            ("x-jwt", "raw.token.here"),
            ("cookie", "a=b; session=\"c.d.e\"; session=later"),
            ("cookie", "session=third"),
        ];
        let found = tokens(std::slice::from_ref(&rule), &headers, "/?access_token=ignored");
        assert_eq!(found, [("raw.token.here".to_owned(), 0), ("c.d.e".to_owned(), 1)]);
        let cookie_only = JwtRule { from_headers: vec![], ..rule };
        assert!(!cookie_only.uses_default_locations());
        assert_eq!(tokens(&[cookie_only], &[("authorization", "Bearer x")], "/?access_token=y"), []);
    }

    #[test]
    fn query_parameters() {
        assert_eq!(query_param("a=1&tok=x%2Ey%2ez&tok=second", "tok").as_deref(), Some("x.y.z"));
        assert_eq!(query_param("tok", "tok").as_deref(), Some(""));
        assert_eq!(query_param("t%6Fk=v", "tok").as_deref(), Some("v"));
        assert_eq!(query_param("tok=a+b%zz%4", "tok").as_deref(), Some("a+b%zz%4"));
        assert_eq!(query_param("tok=%ff", "tok").as_deref(), Some("\u{fffd}"));
        assert_eq!(query_param("other=1", "tok"), None);
    }

    #[test]
    fn shared_locations_list_each_rule_once() {
        let same = HeaderLocation::new("x-token", "");
        let rules = [
            JwtRule { issuer: "a".into(), from_headers: vec![same.clone(), same.clone()], ..JwtRule::default() },
            JwtRule {
                issuer: "b".into(),
                from_headers: vec![HeaderLocation::new("X-Token", "")],
                ..JwtRule::default()
            },
        ];
        let locations = Locations::new(&rules);
        assert_eq!(locations.0.len(), 1);
        assert_eq!(locations.0[0].rules, [0, 1]);
    }
}
