//! The decision: allowed or not, what the enforcement point answers, and what decided it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crd::Action;
use crate::model::policy::{PolicyRef, RuleMatch};
use crate::request::Enforcement;
use crate::resource::ResourceId;

/// The answer to a check, in the shared serialisable shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the connection / request goes through.
    pub allowed: bool,
    /// What a waypoint answers (200, 401, 403); `None` at ztunnel, where a denial is a refused connection.
    pub status: Option<u16>,
    /// The action that decided: the deciding policy's, or ALLOW / DENY for a default outcome.
    pub action: Action,
    /// `namespace/name` of the deciding policy; `None` for a default outcome.
    pub policy: Option<Arc<str>>,
    /// Index of the matching rule in that policy.
    pub rule: Option<usize>,
    /// Why, in words.
    pub reason: Reason,
    /// Where the check ran.
    pub enforcement: Enforcement,
    /// What the waypoint does with a token it validated (RequestAuthentication's `forwardOriginalToken`,
    /// `outputPayloadToHeader`, `outputClaimToHeaders`). Not part of the serialised shape.
    #[serde(skip)]
    pub token_forwarding: Option<Box<TokenForwarding>>,
    /// When dry-run policies (`istio.io/dry-run: "true"`) apply here: the decision they would produce if they
    /// were enforced beside the others, as Envoy's shadow rules report it. The outcome above is unchanged.
    /// Not part of the serialised shape.
    #[serde(skip)]
    pub dry_run: Option<Box<Decision>>,
}

/// How the waypoint forwards a request whose token it validated, per the jwtRule that validated it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenForwarding {
    /// Keep the token on the forwarded request; when false the waypoint removes it.
    pub forward_original_token: bool,
    /// Header to set to the token's payload (base64url, as Envoy does).
    pub output_payload_to_header: Option<String>,
    /// `(header, claim)` pairs: headers to set to a claim's value.
    pub output_claim_to_headers: Vec<(String, String)>,
}

/// A token the waypoint rejected, with the typed reason (for Envoy's `www-authenticate` answer) and the
/// RequestAuthentication whose rules rejected it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtRejection {
    /// Why.
    pub error: mesh_identity::jwt::JwtError,
    /// The RequestAuthentication.
    pub request_authentication: ResourceId,
}

impl fmt::Display for JwtRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (RequestAuthentication {})", self.error, self.request_authentication.qualified())
    }
}

/// A rule that matched: the policy, the rule's index, and the parts of it that matched.
#[derive(Debug, Clone)]
pub struct MatchedRule {
    policy: PolicyRef,
    matched: RuleMatch,
}

impl MatchedRule {
    pub(crate) fn new(policy: PolicyRef, matched: RuleMatch) -> Self {
        MatchedRule { policy, matched }
    }

    /// The policy.
    pub fn policy(&self) -> &ResourceId {
        &self.policy.id
    }

    /// The index of the rule in `spec.rules`.
    pub fn rule(&self) -> usize {
        self.matched.rule as usize
    }

    /// The extension provider of a CUSTOM policy.
    pub fn provider(&self) -> Option<&str> {
        self.policy.provider.as_deref()
    }

    /// What matched, in words: "source principal is ... and destination port is 8080".
    pub fn explanation(&self) -> impl fmt::Display + '_ {
        struct Explained<'a>(&'a MatchedRule);
        impl fmt::Display for Explained<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let m = &self.0.matched;
                let wide = |i: Option<u32>| i.map(|i| i as usize);
                match self.0.policy.rules_for(m.tcp).get(m.rule as usize) {
                    Some(r) => {
                        write!(f, "{}", r.explain(wide(m.from), wide(m.to)).with_principal(m.principal.as_deref()))
                    }
                    None => Ok(()),
                }
            }
        }
        Explained(self)
    }
}

/// Why a decision came out as it did. Rendered to text only when displayed or serialised, so a check does
/// not pay for formatting.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reason {
    /// A DENY rule matched.
    Denied(MatchedRule),
    /// An ALLOW rule matched.
    Allowed(MatchedRule),
    /// A CUSTOM rule matched; its extension provider is not consulted here, so the request is denied.
    Custom(MatchedRule),
    /// ALLOW policies apply but none matched.
    NoAllowMatched {
        /// How many ALLOW policies apply.
        applicable: usize,
    },
    /// No policy applies to the destination at this enforcement point.
    NoPolicy,
    /// Only DENY policies apply, and none matched.
    NoDenyMatched {
        /// How many DENY policies apply.
        applicable: usize,
    },
    /// The effective PeerAuthentication is STRICT and the peer is plaintext.
    StrictMtls {
        /// The PeerAuthentication that made the port STRICT.
        policy: ResourceId,
        /// Whether a `portLevelMtls` entry did.
        port_level: bool,
    },
    /// A token was presented and rejected.
    JwtRejected(JwtRejection),
    /// A reason read back from text.
    Text(String),
}

impl PartialEq for Reason {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = |f: &mut fmt::Formatter<'_>, verb: &str, m: &MatchedRule| -> fmt::Result {
            write!(f, "{verb} by {} rule {}: {}", m.policy().qualified(), m.rule(), m.explanation())
        };
        match self {
            Reason::Denied(m) => rule(f, "denied", m),
            Reason::Allowed(m) => rule(f, "allowed", m),
            Reason::Custom(m) => {
                rule(f, "denied by CUSTOM", m)?;
                write!(
                    f,
                    "; extension provider {:?} cannot be consulted here, so the request is denied (fail closed)",
                    m.provider().unwrap_or("")
                )
            }
            Reason::NoAllowMatched { applicable } => {
                write!(f, "no ALLOW policy matched ({applicable} appl{})", if *applicable == 1 { "ies" } else { "y" })
            }
            Reason::NoPolicy => f.write_str("no policy applies"),
            Reason::NoDenyMatched { applicable } => write!(
                f,
                "no ALLOW policy applies and no DENY policy matched ({applicable} appl{})",
                if *applicable == 1 { "ies" } else { "y" }
            ),
            Reason::StrictMtls { policy, port_level } => write!(
                f,
                "PeerAuthentication STRICT rejects plaintext (set by {}{})",
                policy.qualified(),
                if *port_level { " portLevelMtls" } else { "" }
            ),
            Reason::JwtRejected(why) => write!(f, "JWT rejected: {why}"),
            Reason::Text(t) => f.write_str(t),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Reason::Text)
    }
}

impl Decision {
    /// The rejected token's reason, when a token was rejected (status 401).
    pub fn jwt_rejection(&self) -> Option<&JwtRejection> {
        match &self.reason {
            Reason::JwtRejected(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn new(allowed: bool, action: Action, reason: Reason, enforcement: Enforcement) -> Self {
        let status = match enforcement {
            Enforcement::Ztunnel => None,
            Enforcement::Waypoint if allowed => Some(200),
            Enforcement::Waypoint if matches!(reason, Reason::JwtRejected(_)) => Some(401),
            Enforcement::Waypoint => Some(403),
        };
        let (policy, rule) = match &reason {
            Reason::Denied(m) | Reason::Allowed(m) | Reason::Custom(m) => {
                (Some(m.policy().qualified().clone()), Some(m.rule()))
            }
            Reason::StrictMtls { policy, .. } => (Some(policy.qualified().clone()), None),
            _ => (None, None),
        };
        Decision { allowed, status, action, policy, rule, reason, enforcement, token_forwarding: None, dry_run: None }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "ALLOW" } else { "DENY" };
        write!(f, "{verdict} at {}", self.enforcement.as_str())?;
        if let Some(s) = self.status {
            write!(f, " ({s})")?;
        }
        write!(f, ": {}", self.reason)
    }
}
