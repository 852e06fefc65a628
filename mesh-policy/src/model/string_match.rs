//! Istio's string match forms: `*`, `*suffix`, `prefix*` and exact.
//!
//! A lone `*` means one of two things, depending on the matcher istiod builds for the attribute:
//! - [`StringMatch::Present`]: Envoy's `present_match`, which istiod writes for request headers, `:method` and
//!   `:authority` (`HeaderMatcher` and `HostMatcher` in `pilot/pkg/security/authz/matcher/header.go`). The
//!   header exists, whatever its value, the empty one included; `notValues: ["*"]` then means it is absent.
//! - [`StringMatch::NonEmpty`]: the regex `.+`, which istiod writes for every other string attribute
//!   (`StringMatcherWithPrefix` in `pilot/pkg/security/authz/matcher/string.go`: paths, principals, claims,
//!   audiences, presenter, SNI; `matchAny` of `requestPrincipalGenerator` in
//!   `pilot/pkg/security/authz/model/generator.go`), and which ztunnel's `StringMatch::Presence` also means
//!   (`stringToMatch` in `pilot/pkg/serviceregistry/ambient/authorization.go`; `src/rbac.rs` in istio/ztunnel).

use std::fmt;

/// How one configured value matches a string, as Istio turns a policy value into a matcher:
/// `"*"` alone is [`StringMatch::NonEmpty`] or [`StringMatch::Present`] (see the module), a leading `*` is a
/// suffix match, a trailing `*` a prefix match, anything else an exact match. A `*` in the middle is a literal
/// character.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StringMatch {
    /// Equal to the value.
    Exact(Box<str>),
    /// Starts with the value.
    Prefix(Box<str>),
    /// Ends with the value.
    Suffix(Box<str>),
    /// Any non-empty value: the regex `.+` (istiod's `StringMatcherWithPrefix("*", ..)`), ztunnel's `Presence`.
    NonEmpty,
    /// Any value, the empty one included: Envoy's `present_match` on a header (istiod's `HeaderMatcher(k, "*")`
    /// and `HostMatcher(k, "*")`). The attribute being there at all is the caller's test.
    Present,
}

impl StringMatch {
    /// The matcher for a policy value of an attribute istiod matches with `StringMatcherWithPrefix` (or sends
    /// to ztunnel with `stringToMatch`): `*` is [`StringMatch::NonEmpty`].
    pub fn parse(value: &str) -> Self {
        if value == "*" { StringMatch::NonEmpty } else { Self::affix(value) }
    }

    /// The matcher for a policy value of a request header or `:method`, as istiod's `HeaderMatcher` builds it:
    /// `*` is [`StringMatch::Present`].
    pub fn parse_header(value: &str) -> Self {
        if value == "*" { StringMatch::Present } else { Self::affix(value) }
    }

    /// The matcher for a `hosts` value, as istiod's `HostMatcher` builds it: `*` is [`StringMatch::Present`],
    /// anything else is compared without regard to ASCII case (use [`StringMatch::matches_ignore_case`]).
    pub fn parse_host(value: &str) -> Self {
        match Self::parse_header(value) {
            StringMatch::Exact(v) => StringMatch::Exact(v.to_ascii_lowercase().into()),
            StringMatch::Prefix(v) => StringMatch::Prefix(v.to_ascii_lowercase().into()),
            StringMatch::Suffix(v) => StringMatch::Suffix(v.to_ascii_lowercase().into()),
            other => other,
        }
    }

    /// A value other than `*` alone: suffix, prefix or exact.
    fn affix(value: &str) -> Self {
        if let Some(rest) = value.strip_prefix('*') {
            StringMatch::Suffix(rest.into())
        } else if let Some(rest) = value.strip_suffix('*') {
            StringMatch::Prefix(rest.into())
        } else {
            StringMatch::Exact(value.into())
        }
    }

    /// Whether `s` matches the policy value `pattern`, as `StringMatch::parse(pattern).matches(s)` would,
    /// without building the matcher.
    pub fn pattern_matches(pattern: &str, s: &str) -> bool {
        if pattern == "*" {
            !s.is_empty()
        } else if let Some(rest) = pattern.strip_prefix('*') {
            s.ends_with(rest)
        } else if let Some(rest) = pattern.strip_suffix('*') {
            s.starts_with(rest)
        } else {
            s == pattern
        }
    }

    /// Whether `s` matches, comparing bytes exactly.
    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StringMatch::Exact(v) => s == &**v,
            StringMatch::Prefix(v) => s.starts_with(&**v),
            StringMatch::Suffix(v) => s.ends_with(&**v),
            StringMatch::NonEmpty => !s.is_empty(),
            StringMatch::Present => true,
        }
    }

    /// Whether `s` matches, ignoring ASCII case. The configured value must come from
    /// [`StringMatch::parse_host`].
    #[inline]
    pub fn matches_ignore_case(&self, s: &str) -> bool {
        let b = s.as_bytes();
        match self {
            StringMatch::Exact(v) => b.eq_ignore_ascii_case(v.as_bytes()),
            StringMatch::Prefix(v) => b.len() >= v.len() && b[..v.len()].eq_ignore_ascii_case(v.as_bytes()),
            StringMatch::Suffix(v) => b.len() >= v.len() && b[b.len() - v.len()..].eq_ignore_ascii_case(v.as_bytes()),
            StringMatch::NonEmpty => !s.is_empty(),
            StringMatch::Present => true,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(v) => f.write_str(v),
            StringMatch::Prefix(v) => write!(f, "{v}*"),
            StringMatch::Suffix(v) => write!(f, "*{v}"),
            StringMatch::NonEmpty | StringMatch::Present => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(StringMatch::parse("*"), StringMatch::NonEmpty);
        assert_eq!(StringMatch::parse_header("*"), StringMatch::Present);
        assert_eq!(StringMatch::parse_host("*"), StringMatch::Present);
        assert_eq!(StringMatch::parse_header("x-*"), StringMatch::Prefix("x-".into()));
        assert_eq!(StringMatch::parse("*.com"), StringMatch::Suffix(".com".into()));
        assert_eq!(StringMatch::parse("/api/*"), StringMatch::Prefix("/api/".into()));
        assert_eq!(StringMatch::parse("a*b"), StringMatch::Exact("a*b".into()));
        assert_eq!(StringMatch::parse("**"), StringMatch::Suffix("*".into()));
    }

    #[test]
    fn matching() {
        assert!(StringMatch::NonEmpty.matches("x"));
        assert!(!StringMatch::NonEmpty.matches(""));
        assert!(StringMatch::Present.matches(""));
        assert!(StringMatch::Present.matches_ignore_case(""));
        assert!(!StringMatch::parse_header("*x").matches(""));
        assert!(StringMatch::parse("/api/*").matches("/api/"));
        assert!(!StringMatch::parse("/api/*").matches("/api"));
        assert!(StringMatch::parse("*.com").matches("a.com"));
        assert!(!StringMatch::parse("a*b").matches("axb"));
        assert!(StringMatch::parse("a*b").matches("a*b"));
        for (p, s) in [("*", "x"), ("*", ""), ("*.com", "a.com"), ("/api/*", "/api"), ("a*b", "a*b"), ("ab", "ab")] {
            assert_eq!(StringMatch::pattern_matches(p, s), StringMatch::parse(p).matches(s), "{p} {s}");
        }
    }

    #[test]
    fn ignore_case() {
        let m = StringMatch::parse_host("*.Example.COM");
        assert!(m.matches_ignore_case("WWW.example.com"));
        assert!(!m.matches_ignore_case("example.com"));
        assert!(StringMatch::parse_host("Ledger*").matches_ignore_case("LEDGER.payments"));
        assert!(StringMatch::parse_host("ledger.payments").matches_ignore_case("Ledger.Payments"));
        assert!(!StringMatch::parse_host("ledger").matches_ignore_case("ledger:8080"));
    }
}
