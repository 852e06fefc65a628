//! One compiled field of a rule (`principals`, `notPaths`, a `when` key, ...) and how it matches attributes.

use std::fmt;

use ipnet::IpNet;

use super::path::PathMatch;
use super::request_principal::RequestPrincipalMatch;
use super::string_match::StringMatch;
use crate::eval::attributes::Attributes;

/// One field of a `from` / `to` entry or one `when` condition: the attribute test, possibly negated.
///
/// A positive constraint holds when the attribute is present and any value matches; a negated one
/// (`notPrincipals`, `notValues`, ...) holds exactly when the positive one does not, so an absent attribute
/// (a plaintext peer, a request without a token) satisfies every `not*` field.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// The test.
    pub test: Test,
    /// `not*` field or `notValues`.
    pub negated: bool,
    /// The values as written, for explanations.
    pub values: Vec<Box<str>>,
}

/// The attribute a constraint looks at and the compiled values it accepts.
///
/// What a lone `*` means follows the istiod function named on each variant (files under
/// `pilot/pkg/security/authz/` of istio/istio unless said otherwise): [`StringMatch::Present`] where istiod
/// writes Envoy's `present_match`, [`StringMatch::NonEmpty`] where it writes the regex `.+` or sends ztunnel a
/// `Presence` match. Ports, addresses and service accounts take no wildcard (validation refuses it).
#[derive(Debug, Clone)]
pub enum Test {
    /// The peer's mTLS identity without `spiffe://`. `*`: non-empty, i.e. any peer identity
    /// (`model/generator.go` `srcPrincipalGenerator`, `matcher/string.go` `StringMatcherWithPrefix`; at ztunnel
    /// `serviceregistry/ambient/authorization.go` `stringToMatch`).
    Principal(Vec<StringMatch>),
    /// The namespace of the peer's identity, ztunnel form (`*`, prefix, suffix, exact; `*` non-empty, as
    /// `stringToMatch` sends it).
    Namespace(Vec<StringMatch>),
    /// The namespace of the peer's identity, waypoint form: every `*` matches any run of characters, the empty
    /// one included (`model/generator.go` `srcNamespaceGenerator`, the regex `.*/ns/<glob>/.*`).
    NamespaceGlob(Vec<Glob>),
    /// The trust domain of the peer's identity (`trustDomains`, `source.trustDomain`), as
    /// `model/generator.go` `srcTrustDomainGenerator` matches it: `*` is any peer identity (a prefix
    /// `spiffe://`); any other value is matched against the identity up to its first `/`, which must be there
    /// (the prefix `spiffe://<value>/`).
    TrustDomain(Vec<StringMatch>),
    /// `(namespace, service account)` of the peer's identity, any trust domain.
    ServiceAccount(Vec<(Box<str>, Box<str>)>),
    /// The direct peer address.
    SourceIp(Vec<IpNet>),
    /// The original client address (`X-Forwarded-For`), falling back to the peer address.
    RemoteIp(Vec<IpNet>),
    /// The destination address.
    DestinationIp(Vec<IpNet>),
    /// The destination port.
    DestinationPort(Vec<u16>),
    /// The token's `iss` and `sub` (`model/generator.go` `requestPrincipalGenerator`; `*` needs both
    /// non-empty).
    RequestPrincipal(Vec<RequestPrincipalMatch>),
    /// `:authority`, without regard to case. `*`: the authority is there, whatever its value
    /// (`matcher/header.go` `HostMatcher`, `present_match`).
    Host(Vec<StringMatch>),
    /// `:method`. `*`: any method (`model/generator.go` `methodGenerator`, `matcher/header.go` `HeaderMatcher`,
    /// `present_match`).
    Method(Vec<StringMatch>),
    /// The normalized path without query. `*`: non-empty (`model/generator.go` `pathGenerator`,
    /// `matcher/header.go` `PathMatcher`, `StringMatcherWithPrefix`).
    Path(Vec<PathMatch>),
    /// A request header (lower-case name). `*`: the header is there, whatever its value, the empty one included
    /// (`model/generator.go` `requestHeaderGenerator`, `matcher/header.go` `HeaderMatcher`, `present_match`).
    Header(Box<str>, Vec<StringMatch>),
    /// A token claim, by path into nested objects. `*`: a non-empty string, or a list with one
    /// (`model/generator.go` `requestClaimGenerator`, `matcher/string.go` `StringOrMatcher`).
    Claim(Vec<Box<str>>, Vec<StringMatch>),
    /// The token's audiences. `*`: a non-empty audience (`model/generator.go` `requestAudiencesGenerator`).
    Audience(Vec<StringMatch>),
    /// The token's authorized presenter (`azp`). `*`: non-empty (`model/generator.go`
    /// `requestPresenterGenerator`).
    Presenter(Vec<StringMatch>),
    /// The TLS server name of the connection. `*`: non-empty (`model/generator.go` `connSNIGenerator`).
    Sni(Vec<StringMatch>),
    /// An attribute this crate cannot observe (`experimental.envoy.filters.*`): a fixed outcome chosen to fail
    /// closed, `false` in ALLOW and AUDIT policies and `true` in DENY and CUSTOM ones.
    Fixed(bool, Box<str>),
}

impl Constraint {
    /// Whether the constraint holds for these attributes.
    #[inline]
    pub fn matches(&self, a: &Attributes<'_>) -> bool {
        self.positive(a) != self.negated
    }

    fn positive(&self, a: &Attributes<'_>) -> bool {
        match &self.test {
            Test::Principal(ms) => a.principal.is_some_and(|p| ms.iter().any(|m| m.matches(p))),
            Test::Namespace(ms) => a.identity().is_some_and(|id| ms.iter().any(|m| m.matches(id.namespace))),
            Test::NamespaceGlob(gs) => a.identity().is_some_and(|id| gs.iter().any(|g| g.matches(id.namespace))),
            Test::TrustDomain(ms) => a.principal.is_some_and(|p| ms.iter().any(|m| trust_domain_matches(m, p))),
            Test::ServiceAccount(sas) => a
                .identity()
                .is_some_and(|id| sas.iter().any(|(ns, sa)| id.namespace == &**ns && id.service_account == &**sa)),
            Test::SourceIp(nets) => a.source_ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Test::RemoteIp(nets) => a.remote_ip().is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Test::DestinationIp(nets) => a.destination_ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Test::DestinationPort(ports) => a.destination_port.is_some_and(|p| ports.contains(&p)),
            Test::RequestPrincipal(ms) => {
                a.token_subject().is_some_and(|(iss, sub)| ms.iter().any(|m| m.matches(iss, sub)))
            }
            Test::Host(ms) => a.host().is_some_and(|h| ms.iter().any(|m| m.matches_ignore_case(&h))),
            Test::Method(ms) => a.method().is_some_and(|v| ms.iter().any(|m| m.matches(v))),
            Test::Path(ms) => a.path().is_some_and(|p| ms.iter().any(|m| m.matches(p))),
            Test::Header(name, ms) => a.header(name).is_some_and(|v| ms.iter().any(|m| m.matches(&v))),
            Test::Claim(path, ms) => a.claim_matches(path, ms),
            Test::Audience(ms) => a.audiences_match(ms),
            Test::Presenter(ms) => a.presenter().is_some_and(|v| ms.iter().any(|m| m.matches(v))),
            Test::Sni(ms) => a.sni.is_some_and(|v| ms.iter().any(|m| m.matches(v))),
            Test::Fixed(outcome, _) => *outcome != self.negated,
        }
    }

    fn attribute(&self) -> String {
        match &self.test {
            Test::Principal(_) => "source principal".into(),
            Test::Namespace(_) | Test::NamespaceGlob(_) => "source namespace".into(),
            Test::ServiceAccount(_) => "source service account".into(),
            Test::TrustDomain(_) => "source trust domain".into(),
            Test::SourceIp(_) => "source IP".into(),
            Test::RemoteIp(_) => "remote IP".into(),
            Test::DestinationIp(_) => "destination IP".into(),
            Test::DestinationPort(_) => "destination port".into(),
            Test::RequestPrincipal(_) => "request principal".into(),
            Test::Host(_) => "host".into(),
            Test::Method(_) => "method".into(),
            Test::Path(_) => "path".into(),
            Test::Header(name, _) => format!("header {name}"),
            Test::Claim(path, _) => format!("claim {}", path.join(".")),
            Test::Audience(_) => "token audience".into(),
            Test::Presenter(_) => "token presenter".into(),
            Test::Sni(_) => "SNI".into(),
            Test::Fixed(_, key) => key.to_string(),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attr = self.attribute();
        if let Test::Fixed(outcome, _) = &self.test {
            let held = *outcome != self.negated;
            return write!(
                f,
                "{attr} cannot be observed here and is taken to {} (fail closed)",
                if held { "match" } else { "not match" }
            );
        }
        if self.values.len() == 1 && &*self.values[0] == "*" {
            let noun = attr.strip_prefix("source ").unwrap_or(&attr);
            let subject = match &self.test {
                Test::Principal(_)
                | Test::Namespace(_)
                | Test::NamespaceGlob(_)
                | Test::ServiceAccount(_)
                | Test::TrustDomain(_)
                | Test::RequestPrincipal(_) => "source",
                _ => "request",
            };
            let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u', 'S']) { "an" } else { "a" };
            return if self.negated {
                write!(f, "{subject} has no {noun}")
            } else {
                write!(f, "{subject} has {article} {noun}")
            };
        }
        let verb = if self.negated { "is not" } else { "is" };
        const SHOWN: usize = 10;
        if self.values.len() == 1 {
            write!(f, "{attr} {verb} {}", self.values[0])
        } else if self.values.len() <= SHOWN {
            write!(f, "{attr} {verb} one of [{}]", self.values.join(", "))
        } else {
            let more = self.values.len() - SHOWN;
            write!(f, "{attr} {verb} one of [{}, ... {more} more]", self.values[..SHOWN].join(", "))
        }
    }
}

/// Whether the peer identity `principal` (without `spiffe://`) matches a trust domain value, as the matcher
/// istiod's `srcTrustDomainGenerator` builds: `*` any identity (prefix `spiffe://`), an exact value the prefix
/// `spiffe://<value>/`, `x*` and `*x` the regex `spiffe://x[^/]*/.*` and `spiffe://[^/]*x/.*`. Validation has
/// refused any other wildcard (`CheckTrustDomainValues`); a `/` in a value (only `source.trustDomain` admits one)
/// is compared as written.
fn trust_domain_matches(m: &StringMatch, principal: &str) -> bool {
    match m {
        StringMatch::Present | StringMatch::NonEmpty => true,
        StringMatch::Exact(v) => principal.strip_prefix(&**v).is_some_and(|rest| rest.starts_with('/')),
        StringMatch::Prefix(v) => principal.strip_prefix(&**v).is_some_and(|rest| rest.contains('/')),
        StringMatch::Suffix(v) => {
            // `[^/]*<v>/`: <v> followed by a slash, starting at or before the identity's first slash.
            let first_slash = principal.find('/').unwrap_or(principal.len());
            (0..=first_slash).any(|start| {
                principal.get(start..).and_then(|r| r.strip_prefix(&**v)).is_some_and(|rest| rest.starts_with('/'))
            })
        }
    }
}

/// A namespace pattern in which each `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<Box<str>>);

impl Glob {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Self {
        Glob(pattern.split('*').map(Into::into).collect())
    }

    /// Whether the whole of `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        let parts = &self.0;
        match parts.as_slice() {
            [] => s.is_empty(),
            [only] => s == &**only,
            [first, middle @ .., last] => {
                let Some(mut rest) = s.strip_prefix(&**first) else {
                    return false;
                };
                for part in middle {
                    match rest.find(&**part) {
                        Some(i) => rest = &rest[i + part.len()..],
                        None => return false,
                    }
                }
                rest.len() >= last.len() && rest.ends_with(&**last)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(Glob::new("*").matches("payments"));
        assert!(Glob::new("pay*").matches("payments"));
        assert!(Glob::new("*ments").matches("payments"));
        assert!(Glob::new("p*m*s").matches("payments"));
        assert!(!Glob::new("p*x*s").matches("payments"));
        assert!(Glob::new("payments").matches("payments"));
        assert!(!Glob::new("payments").matches("payment"));
        assert!(!Glob::new("a*a").matches("a"));
    }

    #[test]
    fn trust_domains_as_istiod_matches_them() {
        let td = |v: &str, p: &str| trust_domain_matches(&StringMatch::parse(v), p);
        assert!(td("*", "td/ns/a/sa/b"));
        assert!(td("*", "bare"));
        assert!(td("td", "td/ns/a/sa/b"));
        assert!(!td("td", "td"));
        assert!(!td("td", "td2/ns/a/sa/b"));
        assert!(td("td-*", "td-east/ns/a/sa/b"));
        assert!(td("td-*", "td-/ns/a/sa/b"));
        assert!(!td("td-*", "td-east"));
        assert!(td("*east", "td-east/ns/a/sa/b"));
        assert!(!td("*east", "td/ns/east/sa/b"));
        assert!(!td("*east", "td-east"));
        // Only `source.trustDomain` admits a `/`; the regex then reaches past the first one.
        assert!(td("*a/b", "xa/b/ns/n/sa/s"));
        assert!(!td("*a/b", "x/a/b/ns"));
    }
}
