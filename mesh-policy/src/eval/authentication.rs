//! RequestAuthentication at the waypoint: find the request's tokens, validate them against the applicable
//! rules, and turn the result into the token attributes policies see.

use std::collections::BTreeMap;
use std::sync::Arc;

use mesh_identity::jwt::{Authenticator, HeaderLocation, Jwks, JwtRule, Outcome, VerifiedToken};

use crate::decision::JwtRejection;

use crate::decision::TokenForwarding;
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::resource::ResourceId;

/// JWKS documents a caller supplied for `jwksUri`s, since this crate fetches nothing.
pub(crate) type JwksDocuments = BTreeMap<String, Arc<Jwks>>;

/// One authenticator per RequestAuthentication, its rules resolved to JWKS documents.
#[derive(Debug, Default)]
pub(crate) struct Authenticators(BTreeMap<ResourceId, Built>);

/// An authenticator with what it was built from, so that the next snapshot can keep it (and its cache of
/// verified tokens) when neither changed.
#[derive(Debug)]
struct Built {
    from: Arc<CompiledRequestAuthentication>,
    documents: Vec<Option<Arc<Jwks>>>,
    authenticator: Arc<Authenticator>,
}

impl Authenticators {
    pub(crate) fn build<'a>(
        request_auths: impl Iterator<Item = &'a Arc<CompiledRequestAuthentication>>,
        documents: &JwksDocuments,
        previous: Option<&Authenticators>,
    ) -> Self {
        let mut out = BTreeMap::new();
        for ra in request_auths {
            let docs: Vec<Option<Arc<Jwks>>> =
                ra.rules
                    .iter()
                    .map(|r| {
                        if r.jwks.is_some() {
                            None
                        } else {
                            r.jwks_uri.as_ref().and_then(|u| documents.get(u).cloned())
                        }
                    })
                    .collect();
            let same_documents = |b: &Built| {
                b.documents.len() == docs.len()
                    && b.documents.iter().zip(&docs).all(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    })
            };
            if let Some(b) = previous.and_then(|p| p.0.get(&ra.id)).filter(|b| *b.from == **ra && same_documents(b)) {
                let kept = Built { from: Arc::clone(ra), documents: docs, authenticator: Arc::clone(&b.authenticator) };
                out.insert(ra.id.clone(), kept);
                continue;
            }
            let rules = ra
                .rules
                .iter()
                .map(|r| JwtRule {
                    issuer: r.issuer.clone().unwrap_or_default(),
                    audiences: r.audiences.clone().unwrap_or_default(),
                    jwks: match (&r.jwks, &r.jwks_uri) {
                        // Validated when the resource was applied.
                        (Some(inline), _) => Jwks::from_json(inline).ok().map(Arc::new),
                        (None, Some(uri)) => documents.get(uri).cloned(),
                        (None, None) => None,
                    },
                    from_headers: r
                        .from_headers
                        .iter()
                        .flatten()
                        .map(|h| HeaderLocation {
                            name: h.name.clone().unwrap_or_default(),
                            prefix: h.prefix.clone().unwrap_or_default(),
                        })
                        .collect(),
                    from_params: r.from_params.clone().unwrap_or_default(),
                    from_cookies: r.from_cookies.clone().unwrap_or_default(),
                })
                .collect();
            let authenticator = Arc::new(Authenticator::new(rules));
            out.insert(ra.id.clone(), Built { from: Arc::clone(ra), documents: docs, authenticator });
        }
        Authenticators(out)
    }

    /// Whether two snapshots share the authenticator (and its token cache) of a RequestAuthentication.
    #[cfg(test)]
    pub(crate) fn shares(&self, other: &Authenticators, id: &ResourceId) -> bool {
        match (self.0.get(id), other.0.get(id)) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.authenticator, &b.authenticator),
            _ => false,
        }
    }

    /// Validates the request's tokens against every applicable RequestAuthentication. A token verified by any
    /// of them authenticates the request; otherwise a rejection rejects it; no token leaves it anonymous.
    /// `headers` are (name, value) pairs; `path` includes the query.
    pub(crate) fn authenticate<'a, 'h>(
        &self,
        applicable: impl Iterator<Item = &'a CompiledRequestAuthentication>,
        headers: impl IntoIterator<Item = (&'h str, &'h str)> + Clone,
        path: &str,
        now: Option<u64>,
    ) -> Result<Option<(Arc<VerifiedToken>, TokenForwarding)>, JwtRejection> {
        let mut rejection = None;
        for ra in applicable {
            let Some(auth) = self.0.get(&ra.id).map(|b| &b.authenticator) else { continue };
            match auth.authenticate(headers.clone(), path, now) {
                Outcome::Verified { token, rule } => {
                    let forwarding = ra.rules.get(rule).map(forwarding).unwrap_or_default();
                    return Ok(Some((token, forwarding)));
                }
                Outcome::Rejected(error) => {
                    rejection.get_or_insert_with(|| JwtRejection { error, request_authentication: ra.id.clone() });
                }
                Outcome::NoToken => {}
            }
        }
        rejection.map_or(Ok(None), Err)
    }
}

fn forwarding(rule: &crate::crd::JwtRule) -> TokenForwarding {
    TokenForwarding {
        forward_original_token: rule.forward_original_token.unwrap_or(false),
        output_payload_to_header: rule.output_payload_to_header.clone(),
        output_claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .flatten()
            .map(|c| (c.header.clone().unwrap_or_default(), c.claim.clone().unwrap_or_default()))
            .collect(),
    }
}
