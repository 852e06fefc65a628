//! The attributes of a check request as policies look at them: identity parsed, path normalized, headers
//! case-insensitive, claims split where Istio splits them.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use serde_json::Value;

use crate::error::{FieldError, RequestError};
use crate::model::path::{PathNormalization, normalize};
use crate::model::request_authentication::SPACE_DELIMITED_CLAIMS;
use crate::model::string_match::StringMatch;
use crate::request::{CheckRequest, HttpRequest, JwtAttributes};

/// An Istio identity `<trust domain>/ns/<namespace>/sa/<service account>`, borrowed from a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// Trust domain.
    pub trust_domain: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Service account.
    pub service_account: &'a str,
}

impl<'a> Identity<'a> {
    /// Parses the Istio form of a principal; `None` for any other shape.
    pub fn parse(principal: &'a str) -> Option<Self> {
        // Exactly four slashes: td / "ns" / namespace / "sa" / account.
        let mut slashes = [0usize; 4];
        let mut n = 0;
        for (i, b) in principal.bytes().enumerate() {
            if b == b'/' {
                *slashes.get_mut(n)? = i;
                n += 1;
            }
        }
        let [a, b, c, d] = slashes;
        if n != 4 || &principal[a..b] != "/ns" || &principal[c..d] != "/sa" {
            return None;
        }
        let (trust_domain, namespace, service_account) = (&principal[..a], &principal[b + 1..c], &principal[d + 1..]);
        (!trust_domain.is_empty() && !namespace.is_empty() && !service_account.is_empty()).then_some(Identity {
            trust_domain,
            namespace,
            service_account,
        })
    }
}

/// What policies evaluate.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// Peer principal; `None` for plaintext.
    pub principal: Option<&'a str>,
    identity: OnceCell<Option<Identity<'a>>>,
    /// Direct peer address; IPv4-mapped IPv6 as IPv4.
    pub source_ip: Option<IpAddr>,
    remote_ip: Option<IpAddr>,
    /// Destination address; IPv4-mapped IPv6 as IPv4.
    pub destination_ip: Option<IpAddr>,
    /// Destination port.
    pub destination_port: Option<u16>,
    http: Option<&'a HttpRequest>,
    path: Option<Cow<'a, str>>,
    jwt: Option<&'a JwtAttributes>,
    token_subject: OnceCell<Option<(&'a str, &'a str)>>,
    extra_split_claims: Vec<&'a str>,
    /// TLS server name.
    pub sni: Option<&'a str>,
}

impl<'a> Attributes<'a> {
    /// Attributes of a request, with HTTP and token attributes only when `l7`. `jwt` is the request's token:
    /// the pre-validated one of the request, or one the waypoint validated.
    pub fn new(
        req: &'a CheckRequest,
        l7: bool,
        normalization: PathNormalization,
        jwt: Option<&'a JwtAttributes>,
    ) -> Result<Self, RequestError> {
        let principal = req.source.principal.as_deref();
        if principal == Some("") {
            return Err(RequestError(FieldError::new(
                "source.principal",
                "must not be empty; omit it for a plaintext peer",
            )));
        }
        if let Some(rest) = principal.and_then(|p| p.strip_prefix("spiffe://")) {
            return Err(RequestError(FieldError::new(
                "source.principal",
                format!("write the principal without the spiffe:// prefix: {rest:?}"),
            )));
        }
        let identity = OnceCell::new();
        if let Some(ns) = req.source.namespace.as_deref() {
            // A plaintext peer (or a non-Istio principal) has no namespace to match: the field is ignored.
            if let Some(id) = *identity.get_or_init(|| principal.and_then(Identity::parse))
                && ns != id.namespace
            {
                return Err(RequestError(FieldError::new(
                    "source.namespace",
                    format!("{ns:?} contradicts the principal's namespace {:?}", id.namespace),
                )));
            }
        }
        let http = if l7 { req.http.as_ref() } else { None };
        let path = match http {
            Some(h) => {
                if !h.path.starts_with('/') {
                    return Err(RequestError(FieldError::new("http.path", "must start with '/'")));
                }
                Some(normalize(&h.path, normalization))
            }
            None => None,
        };
        Ok(Attributes {
            principal,
            identity,
            source_ip: req.source.ip.map(|ip| ip.to_canonical()),
            remote_ip: req.source.remote_ip.map(|ip| ip.to_canonical()),
            destination_ip: req.destination.ip.map(|ip| ip.to_canonical()),
            destination_port: req.destination.port,
            http,
            path,
            jwt: if l7 { jwt } else { None },
            token_subject: OnceCell::new(),
            extra_split_claims: Vec::new(),
            sni: if l7 { req.connection.as_ref().and_then(|c| c.sni.as_deref()) } else { None },
        })
    }

    /// The principal in Istio's form, when it is; parsed on first use.
    #[inline]
    pub fn identity(&self) -> Option<Identity<'a>> {
        *self.identity.get_or_init(|| self.principal.and_then(Identity::parse))
    }

    /// Adds claims that RequestAuthentication rules split at spaces.
    pub fn split_claims(&mut self, claims: impl IntoIterator<Item = &'a str>) {
        self.extra_split_claims.extend(claims);
    }

    /// Whether the request carries a validated token.
    pub fn jwt(&self) -> Option<&'a JwtAttributes> {
        self.jwt
    }

    /// The original client address, or the peer address.
    pub fn remote_ip(&self) -> Option<IpAddr> {
        self.remote_ip.or(self.source_ip)
    }

    /// `:authority`.
    pub fn host(&self) -> Option<Cow<'a, str>> {
        let h = self.http?;
        h.host.as_deref().map(Cow::Borrowed).or_else(|| self.header("host"))
    }

    /// `:method`.
    pub fn method(&self) -> Option<&'a str> {
        self.http.map(|h| h.method.as_str())
    }

    /// The normalized path.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// A header by name, any case: repeated headers joined with `,` in request order, as Envoy matches them.
    pub fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        self.http?.headers.get(name)
    }

    /// The token's `(iss, sub)`: from the claims, or the principal split at its last `/`.
    pub fn token_subject(&self) -> Option<(&'a str, &'a str)> {
        *self.token_subject.get_or_init(|| self.read_token_subject())
    }

    fn read_token_subject(&self) -> Option<(&'a str, &'a str)> {
        let jwt = self.jwt?;
        let iss = jwt.claims.get("iss").and_then(Value::as_str);
        let sub = jwt.claims.get("sub").and_then(Value::as_str);
        match (iss, sub) {
            (Some(i), Some(s)) => Some((i, s)),
            _ => jwt.principal.as_deref().and_then(|p| p.rsplit_once('/')),
        }
    }

    /// `azp`.
    pub fn presenter(&self) -> Option<&'a str> {
        let jwt = self.jwt?;
        jwt.presenter.as_deref().or_else(|| jwt.claims.get("azp").and_then(Value::as_str))
    }

    /// Whether any audience matches.
    pub fn audiences_match(&self, ms: &[StringMatch]) -> bool {
        let Some(jwt) = self.jwt else { return false };
        if !jwt.audiences.is_empty() {
            return jwt.audiences.iter().any(|a| ms.iter().any(|m| m.matches(a)));
        }
        jwt.claims.get("aud").is_some_and(|v| value_matches(v, ms, false))
    }

    /// Whether the claim at `path` matches: a string directly (split at spaces for space-delimited claims),
    /// a list when any string element does. Other types never match.
    pub fn claim_matches(&self, path: &[Box<str>], ms: &[StringMatch]) -> bool {
        let Some(jwt) = self.jwt else { return false };
        let Some((first, rest)) = path.split_first() else { return false };
        let mut value = jwt.claims.get(&**first);
        for key in rest {
            value = value.and_then(|v| v.get(&**key));
        }
        let split = rest.is_empty()
            && (SPACE_DELIMITED_CLAIMS.contains(&&**first) || self.extra_split_claims.contains(&&**first));
        value.is_some_and(|v| value_matches(v, ms, split))
    }
}

fn value_matches(v: &Value, ms: &[StringMatch], split: bool) -> bool {
    match v {
        Value::String(s) if split => s.split(' ').filter(|p| !p.is_empty()).any(|p| ms.iter().any(|m| m.matches(p))),
        Value::String(s) => ms.iter().any(|m| m.matches(s)),
        Value::Array(items) => items.iter().any(|i| i.as_str().is_some_and(|s| ms.iter().any(|m| m.matches(s)))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity() {
        let id = Identity::parse("cluster.local/ns/payments/sa/accounts");
        let expected = Identity { trust_domain: "cluster.local", namespace: "payments", service_account: "accounts" };
        assert_eq!(id, Some(expected));
        assert!(Identity::parse("cluster.local/ns/payments/sa/accounts/x").is_none());
        assert!(Identity::parse("cluster.local/ns/payments").is_none());
        assert!(Identity::parse("td/namespace/a/sa/b").is_none());
        assert!(Identity::parse("/ns/a/sa/b").is_none());
    }
}
