//! `requestPrincipals` values: `iss/sub` split at the last `/`, issuer and subject matched separately.

use super::string_match::StringMatch;

/// A compiled `requestPrincipals` value.
///
/// The value is split at its last `/` (issuers are usually URLs) into an issuer and a subject matcher that
/// must both hold, as istiod's `requestPrincipalGenerator` (`pilot/pkg/security/authz/model/generator.go`) builds
/// them: `*` requires both to be non-empty (its `matchAny`, the regex `.+`); `*x/sub` is an issuer suffix with an exact subject;
/// `*sub` (no `/`) any issuer with a subject suffix; `iss/x*` an exact issuer with a subject prefix;
/// `iss*` (no `/`) an issuer prefix with any subject; anything else is exact on both halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPrincipalMatch {
    issuer: StringMatch,
    subject: StringMatch,
}

impl RequestPrincipalMatch {
    /// Compiles a value.
    pub fn parse(value: &str) -> Self {
        let split = value.rsplit_once('/');
        let (issuer, subject) = if value == "*" {
            (StringMatch::NonEmpty, StringMatch::NonEmpty)
        } else if let Some(rest) = value.strip_prefix('*') {
            match split {
                Some((iss, sub)) => {
                    let iss = if iss == "*" { StringMatch::NonEmpty } else { StringMatch::Suffix(iss[1..].into()) };
                    (iss, StringMatch::Exact(sub.into()))
                }
                None => (StringMatch::NonEmpty, StringMatch::Suffix(rest.into())),
            }
        } else if let Some(rest) = value.strip_suffix('*') {
            match split {
                Some((iss, sub)) => {
                    let sub = if sub == "*" {
                        StringMatch::NonEmpty
                    } else {
                        StringMatch::Prefix(sub[..sub.len() - 1].into())
                    };
                    (StringMatch::Exact(iss.into()), sub)
                }
                None => (StringMatch::Prefix(rest.into()), StringMatch::NonEmpty),
            }
        } else {
            match split {
                Some((iss, sub)) => (StringMatch::Exact(iss.into()), StringMatch::Exact(sub.into())),
                None => (StringMatch::Exact(value.into()), StringMatch::Exact("".into())),
            }
        };
        RequestPrincipalMatch { issuer, subject }
    }

    /// Whether a token with this issuer and subject matches.
    #[inline]
    pub fn matches(&self, issuer: &str, subject: &str) -> bool {
        self.issuer.matches(issuer) && self.subject.matches(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_last_slash() {
        let m = RequestPrincipalMatch::parse("https://idp.example.com/accounts-service");
        assert!(m.matches("https://idp.example.com", "accounts-service"));
        assert!(!m.matches("https://idp.example.com/accounts-service", ""));
    }

    #[test]
    fn wildcards() {
        assert!(RequestPrincipalMatch::parse("*").matches("a", "b"));
        assert!(!RequestPrincipalMatch::parse("*").matches("a", ""));
        assert!(RequestPrincipalMatch::parse("*.example.com/alice").matches("https://idp.example.com", "alice"));
        assert!(!RequestPrincipalMatch::parse("*.example.com/alice").matches("https://idp.example.com", "bob"));
        assert!(RequestPrincipalMatch::parse("*/*").matches("x", "*"));
        assert!(!RequestPrincipalMatch::parse("*/*").matches("x", "y"));
        assert!(RequestPrincipalMatch::parse("https://idp/*").matches("https://idp", "anyone"));
        assert!(RequestPrincipalMatch::parse("https://idp/svc-*").matches("https://idp", "svc-a"));
        assert!(RequestPrincipalMatch::parse("https:*").matches("https://idp", "x"));
        assert!(RequestPrincipalMatch::parse("*ice").matches("iss", "alice"));
        assert!(RequestPrincipalMatch::parse("nosub").matches("nosub", ""));
        assert!(!RequestPrincipalMatch::parse("nosub").matches("nosub", "x"));
    }
}
