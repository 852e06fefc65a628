//! RequestAuthentication: validation as Istio's webhook does it.

use crate::compile::fields::{self, Problems};
use crate::crd::RequestAuthenticationSpec;
use crate::model::policy::Scope;
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::resource::ResourceId;

/// Validates and compiles one RequestAuthentication.
pub(crate) fn compile(
    id: ResourceId,
    spec: &RequestAuthenticationSpec,
    root_namespace: &str,
    p: &mut Problems,
) -> Option<CompiledRequestAuthentication> {
    let targets = fields::targets(p, &spec.target_ref, &spec.target_refs, id.namespace(), root_namespace);
    fields::one_attachment(p, spec.selector.is_some(), targets.is_some());
    let scope = match (targets, &spec.selector) {
        (Some(t), _) => Scope::Targets(t),
        (None, Some(sel)) => Scope::Selector(fields::selector(p, "spec.selector", sel)),
        (None, None) => Scope::Namespace,
    };
    let rules = spec.jwt_rules.clone().unwrap_or_default();
    for (i, r) in rules.iter().enumerate() {
        let at = format!("spec.jwtRules[{i}]");
        let issuer = r.issuer.as_deref().unwrap_or("");
        let jwks_uri = r.jwks_uri.as_deref().unwrap_or("");
        if issuer.is_empty() && jwks_uri.is_empty() {
            p.error(format!("{at}.issuer"), "issuer or jwksUri must be non-empty string");
        }
        for (j, a) in r.audiences.iter().flatten().enumerate() {
            if a.is_empty() {
                p.error(format!("{at}.audiences[{j}]"), "audience must be non-empty string");
            }
        }
        if !(jwks_uri.is_empty() || jwks_uri.starts_with("https://") || jwks_uri.starts_with("http://")) {
            p.error(format!("{at}.jwksUri"), format!("URI scheme of {jwks_uri:?} is not supported: use http or https"));
        }
        if let Some(jwks) = &r.jwks
            && let Err(e) = mesh_identity::jwt::Jwks::from_json(jwks)
        {
            p.error(format!("{at}.jwks"), format!("jwks parse error: {e}"));
        }
        for (j, h) in r.from_headers.iter().flatten().enumerate() {
            if h.name.as_deref().unwrap_or("").is_empty() {
                p.error(format!("{at}.fromHeaders[{j}].name"), "location header name must be non-empty string");
            }
        }
        for (j, q) in r.from_params.iter().flatten().enumerate() {
            if q.is_empty() {
                p.error(format!("{at}.fromParams[{j}]"), "location query must be non-empty string");
            }
        }
        for (j, c) in r.from_cookies.iter().flatten().enumerate() {
            if c.is_empty() {
                p.error(format!("{at}.fromCookies[{j}]"), "cookie name must be non-empty string");
            }
        }
        for (j, o) in r.output_claim_to_headers.iter().flatten().enumerate() {
            let header = o.header.as_deref().unwrap_or("");
            if header.is_empty() || o.claim.as_deref().unwrap_or("").is_empty() {
                p.error(
                    format!("{at}.outputClaimToHeaders[{j}]"),
                    "outputClaimToHeaders header and claim value must be non-empty string",
                );
            } else if !header.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                p.error(format!("{at}.outputClaimToHeaders[{j}].header"), format!("invalid header name {header:?}"));
            }
        }
        if let Some(t) = &r.timeout {
            let ok = t.strip_suffix('s').and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n >= 0.001);
            if !ok {
                p.error(
                    format!("{at}.timeout"),
                    format!("invalid duration {t:?}: expected seconds such as \"5s\", at least 1ms"),
                );
            }
        }
    }
    if !p.errors.is_empty() {
        return None;
    }
    Some(CompiledRequestAuthentication { id, scope, rules })
}
