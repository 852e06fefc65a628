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
use crate::proxy::HttpView;
use crate::request::{CheckRequest, HttpRequest, JwtAttributes};
use mesh_identity::jwt::VerifiedToken;

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
    /// Parses the Istio form of a principal; `None` for any other shape. The parser is mesh-identity's.
    pub fn parse(principal: &'a str) -> Option<Self> {
        let (trust_domain, namespace, service_account) = mesh_identity::spiffe::split_principal(principal)?;
        Some(Identity { trust_domain, namespace, service_account })
    }
}

/// Where the HTTP attributes come from: the shared request shape, or a proxy's request.
#[derive(Debug, Clone, Copy)]
enum Http<'a> {
    Shape(&'a HttpRequest),
    Proxy(HttpView<'a>),
}

impl<'a> Http<'a> {
    fn method(self) -> &'a str {
        match self {
            Http::Shape(h) => &h.method,
            Http::Proxy(h) => h.method,
        }
    }

    fn host(self) -> Option<&'a str> {
        match self {
            Http::Shape(h) => h.host.as_deref(),
            Http::Proxy(h) => h.host,
        }
    }

    /// Every value of a header (name compared without regard to case), joined with `,` as Envoy joins repeated
    /// headers for matching.
    fn header(self, name: &str) -> Option<Cow<'a, str>> {
        match self {
            Http::Shape(h) => h.headers.get(name),
            Http::Proxy(h) => {
                let mut values = h.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
                let first = values.next()?;
                match values.next() {
                    None => Some(first),
                    Some(second) => {
                        let mut joined = format!("{first},{second}");
                        values.for_each(|v| {
                            joined.push(',');
                            joined.push_str(&v);
                        });
                        Some(Cow::Owned(joined))
                    }
                }
            }
        }
    }
}

/// The request's token: attributes given with the request, or a token the waypoint verified (borrowed from
/// the verified-token cache, never copied).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Token<'a> {
    Given(&'a JwtAttributes),
    Verified(&'a VerifiedToken),
}

impl<'a> Token<'a> {
    fn claims(self) -> &'a serde_json::Map<String, Value> {
        match self {
            Token::Given(t) => &t.claims,
            Token::Verified(t) => &t.claims,
        }
    }

    fn audiences(self) -> &'a [String] {
        match self {
            Token::Given(t) => &t.audiences,
            Token::Verified(t) => &t.audiences,
        }
    }

    fn presenter(self) -> Option<&'a str> {
        match self {
            Token::Given(t) => t.presenter.as_deref(),
            Token::Verified(t) => t.presenter.as_deref(),
        }
        .or_else(|| self.claims().get("azp").and_then(Value::as_str))
    }

    fn subject(self) -> Option<(&'a str, &'a str)> {
        match self {
            Token::Verified(t) => Some((t.issuer.as_str(), t.subject.as_deref().unwrap_or(""))),
            Token::Given(t) => {
                let iss = t.claims.get("iss").and_then(Value::as_str);
                let sub = t.claims.get("sub").and_then(Value::as_str);
                match (iss, sub) {
                    (Some(i), Some(s)) => Some((i, s)),
                    _ => t.principal.as_deref().and_then(|p| p.rsplit_once('/')),
                }
            }
        }
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
    http: Option<Http<'a>>,
    path: Option<Cow<'a, str>>,
    jwt: Option<Token<'a>>,
    token_subject: OnceCell<Option<(&'a str, &'a str)>>,
    extra_split_claims: Vec<&'a str>,
    /// TLS server name.
    pub sni: Option<&'a str>,
}

fn canonical(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| ip.to_canonical())
}

fn normalized_path(path: &str, normalization: PathNormalization) -> Result<Cow<'_, str>, RequestError> {
    if !path.starts_with('/') {
        return Err(RequestError(FieldError::new("http.path", "must start with '/'")));
    }
    Ok(normalize(path, normalization))
}

impl<'a> Attributes<'a> {
    /// Attributes of a request, with HTTP and token attributes only when `l7`. `jwt` is the request's token:
    /// the pre-validated one of the request, or one the waypoint validated.
    pub(crate) fn new(
        req: &'a CheckRequest,
        l7: bool,
        normalization: PathNormalization,
        jwt: Option<Token<'a>>,
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
            Some(h) => Some(normalized_path(&h.path, normalization)?),
            None => None,
        };
        Ok(Attributes {
            principal,
            identity,
            source_ip: canonical(req.source.ip),
            remote_ip: canonical(req.source.remote_ip),
            destination_ip: canonical(req.destination.ip),
            destination_port: req.destination.port,
            http: http.map(Http::Shape),
            path,
            jwt: if l7 { jwt } else { None },
            token_subject: OnceCell::new(),
            extra_split_claims: Vec::new(),
            sni: if l7 { req.connection.as_ref().and_then(|c| c.sni.as_deref()) } else { None },
        })
    }

    /// Attributes of a proxy's connection and, when `http` is given, its request; the peer is already parsed.
    pub(crate) fn proxy(
        c: &crate::proxy::Connection<'a>,
        http: Option<(&crate::proxy::Request<'a>, PathNormalization)>,
        jwt: Option<Token<'a>>,
    ) -> Result<Self, RequestError> {
        let identity = OnceCell::new();
        let _ = identity.set(c.peer.map(|p| Identity {
            trust_domain: p.trust_domain_name(),
            namespace: p.namespace(),
            service_account: p.service_account(),
        }));
        let (view, path, remote_ip, sni) = match http {
            Some((r, normalization)) => {
                (Some(Http::Proxy(r.http)), Some(normalized_path(r.http.path, normalization)?), r.remote_ip, r.sni)
            }
            None => (None, None, None, None),
        };
        Ok(Attributes {
            principal: c.peer.map(|p| p.principal()),
            identity,
            source_ip: canonical(c.source_ip),
            remote_ip: canonical(remote_ip),
            destination_ip: canonical(c.target.ip),
            destination_port: c.target.port,
            http: view,
            path,
            jwt: if http.is_some() { jwt } else { None },
            token_subject: OnceCell::new(),
            extra_split_claims: Vec::new(),
            sni,
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

    /// The original client address, or the peer address.
    pub fn remote_ip(&self) -> Option<IpAddr> {
        self.remote_ip.or(self.source_ip)
    }

    /// `:authority`, else the `host` header.
    pub fn host(&self) -> Option<Cow<'a, str>> {
        let h = self.http?;
        h.host().map(Cow::Borrowed).or_else(|| h.header("host"))
    }

    /// `:method`.
    pub fn method(&self) -> Option<&'a str> {
        self.http.map(Http::method)
    }

    /// The normalized path.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// A header, repeated values joined with `,`.
    pub fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        self.http?.header(name)
    }

    /// The token's `(iss, sub)`: from the claims, or the principal split at its last `/`.
    pub fn token_subject(&self) -> Option<(&'a str, &'a str)> {
        *self.token_subject.get_or_init(|| self.jwt.and_then(Token::subject))
    }

    /// `azp`.
    pub fn presenter(&self) -> Option<&'a str> {
        self.jwt?.presenter()
    }

    /// Whether any audience matches.
    pub fn audiences_match(&self, ms: &[StringMatch]) -> bool {
        let Some(jwt) = self.jwt else { return false };
        if !jwt.audiences().is_empty() {
            return jwt.audiences().iter().any(|a| ms.iter().any(|m| m.matches(a)));
        }
        jwt.claims().get("aud").is_some_and(|v| value_matches(v, ms, false))
    }

    /// Whether the claim at `path` matches: a string directly (split at spaces for space-delimited claims),
    /// a list when any string element does. Other types never match.
    pub fn claim_matches(&self, path: &[Box<str>], ms: &[StringMatch]) -> bool {
        let Some(jwt) = self.jwt else { return false };
        let Some((first, rest)) = path.split_first() else { return false };
        let mut value = jwt.claims().get(&**first);
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
