//! Istio's string match forms: `*` (presence), `*suffix`, `prefix*` and exact.

use std::fmt;

/// How one configured value matches a string, as Istio turns a policy value into a matcher:
/// `"*"` alone matches any non-empty value, a leading `*` is a suffix match, a trailing `*` a prefix match,
/// anything else an exact match. A `*` in the middle is a literal character.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StringMatch {
    /// Equal to the value.
    Exact(Box<str>),
    /// Starts with the value.
    Prefix(Box<str>),
    /// Ends with the value.
    Suffix(Box<str>),
    /// Any non-empty value.
    Presence,
}

impl StringMatch {
    /// The matcher for a policy value.
    pub fn parse(value: &str) -> Self {
        if value == "*" {
            StringMatch::Presence
        } else if let Some(rest) = value.strip_prefix('*') {
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

    /// The matcher for a value compared without regard to ASCII case (hosts).
    pub fn parse_ignore_case(value: &str) -> Self {
        match Self::parse(value) {
            StringMatch::Exact(v) => StringMatch::Exact(v.to_ascii_lowercase().into()),
            StringMatch::Prefix(v) => StringMatch::Prefix(v.to_ascii_lowercase().into()),
            StringMatch::Suffix(v) => StringMatch::Suffix(v.to_ascii_lowercase().into()),
            StringMatch::Presence => StringMatch::Presence,
        }
    }

    /// Whether `s` matches, comparing bytes exactly.
    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StringMatch::Exact(v) => s == &**v,
            StringMatch::Prefix(v) => s.starts_with(&**v),
            StringMatch::Suffix(v) => s.ends_with(&**v),
            StringMatch::Presence => !s.is_empty(),
        }
    }

    /// Whether `s` matches, ignoring ASCII case. The configured value must come from
    /// [`StringMatch::parse_ignore_case`].
    #[inline]
    pub fn matches_ignore_case(&self, s: &str) -> bool {
        let b = s.as_bytes();
        match self {
            StringMatch::Exact(v) => b.eq_ignore_ascii_case(v.as_bytes()),
            StringMatch::Prefix(v) => b.len() >= v.len() && b[..v.len()].eq_ignore_ascii_case(v.as_bytes()),
            StringMatch::Suffix(v) => b.len() >= v.len() && b[b.len() - v.len()..].eq_ignore_ascii_case(v.as_bytes()),
            StringMatch::Presence => !s.is_empty(),
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(v) => f.write_str(v),
            StringMatch::Prefix(v) => write!(f, "{v}*"),
            StringMatch::Suffix(v) => write!(f, "*{v}"),
            StringMatch::Presence => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(StringMatch::parse("*"), StringMatch::Presence);
        assert_eq!(StringMatch::parse("*.com"), StringMatch::Suffix(".com".into()));
        assert_eq!(StringMatch::parse("/api/*"), StringMatch::Prefix("/api/".into()));
        assert_eq!(StringMatch::parse("a*b"), StringMatch::Exact("a*b".into()));
        assert_eq!(StringMatch::parse("**"), StringMatch::Suffix("*".into()));
    }

    #[test]
    fn matching() {
        assert!(StringMatch::Presence.matches("x"));
        assert!(!StringMatch::Presence.matches(""));
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
        let m = StringMatch::parse_ignore_case("*.Example.COM");
        assert!(m.matches_ignore_case("WWW.example.com"));
        assert!(!m.matches_ignore_case("example.com"));
        assert!(StringMatch::parse_ignore_case("Ledger*").matches_ignore_case("LEDGER.payments"));
        assert!(StringMatch::parse_ignore_case("ledger.payments").matches_ignore_case("Ledger.Payments"));
        assert!(!StringMatch::parse_ignore_case("ledger").matches_ignore_case("ledger:8080"));
    }
}
