//! RequestAuthentication at the waypoint: find the request's tokens, validate them against the applicable
//! rules, and turn the result into the token attributes policies see.

use std::collections::BTreeMap;
use std::sync::Arc;

use mesh_identity::jwt::{Authenticator, HeaderLocation, Jwks, JwtRule, Outcome, VerifiedToken};

use crate::decision::TokenForwarding;
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::request::{HttpRequest, JwtAttributes};
use crate::resource::ResourceId;

/// JWKS documents a caller supplied for `jwksUri`s, since this crate fetches nothing.
pub(crate) type JwksDocuments = BTreeMap<String, Arc<Jwks>>;

/// One authenticator per RequestAuthentication, its rules resolved to JWKS documents.
#[derive(Debug, Default)]
pub(crate) struct Authenticators(BTreeMap<ResourceId, Authenticator>);

impl Authenticators {
    pub(crate) fn build<'a>(
        request_auths: impl Iterator<Item = &'a Arc<CompiledRequestAuthentication>>,
        documents: &JwksDocuments,
    ) -> Self {
        let mut out = BTreeMap::new();
        for ra in request_auths {
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
            out.insert(ra.id.clone(), Authenticator::new(rules));
        }
        Authenticators(out)
    }

    /// Validates the request's tokens against every applicable RequestAuthentication. A token verified by any
    /// of them authenticates the request; otherwise a rejection rejects it; no token leaves it anonymous.
    pub(crate) fn authenticate<'a>(
        &self,
        applicable: impl Iterator<Item = &'a CompiledRequestAuthentication>,
        http: &HttpRequest,
        now: Option<u64>,
    ) -> Result<Option<(JwtAttributes, TokenForwarding)>, String> {
        let headers = http.headers.iter();
        let mut rejection = None;
        for ra in applicable {
            let Some(auth) = self.0.get(&ra.id) else { continue };
            match auth.authenticate(headers.clone(), &http.path, now) {
                Outcome::Verified { token, rule } => {
                    let forwarding = ra.rules.get(rule).map(forwarding).unwrap_or_default();
                    return Ok(Some((attributes(&token), forwarding)));
                }
                Outcome::Rejected(e) => {
                    rejection.get_or_insert_with(|| format!("{e} (RequestAuthentication {})", ra.id.qualified()));
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

fn attributes(token: &VerifiedToken) -> JwtAttributes {
    JwtAttributes {
        principal: token.principal(),
        audiences: token.audiences.clone(),
        presenter: token.presenter.clone(),
        claims: token.claims.clone(),
    }
}
