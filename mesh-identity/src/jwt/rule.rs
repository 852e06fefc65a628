//! One `jwtRules` entry of an Istio RequestAuthentication, with its JWKS already in hand.

use std::sync::Arc;

use super::jwks::Jwks;
use super::location::HeaderLocation;

/// One RequestAuthentication `jwtRule`, resolved: the issuer, what it accepts, its keys and where its tokens are
/// carried.
#[derive(Debug, Clone, Default)]
pub struct JwtRule {
    /// The `iss` a token must carry to be checked under this rule.
    pub issuer: String,
    /// The accepted audiences; empty accepts any. (Istio's default — the service's hostname — is the caller's to
    /// fill in.) Compared ignoring an `http://`/`https://` prefix and a trailing `/`, as Envoy does.
    pub audiences: Vec<String>,
    /// The issuer's keys. `None` means the JWKS behind `jwksUri` was not supplied: tokens of this issuer are then
    /// rejected (fail closed).
    pub jwks: Option<Arc<Jwks>>,
    /// Headers the token may be carried in, each with a value prefix to strip (e.g. `Bearer `).
    pub from_headers: Vec<HeaderLocation>,
    /// Query parameters the token may be carried in.
    pub from_params: Vec<String>,
    /// Cookies the token may be carried in.
    pub from_cookies: Vec<String>,
}

impl JwtRule {
    /// A rule for `issuer` with the given keys, any audience and the default locations.
    pub fn new(issuer: impl Into<String>, jwks: Option<Arc<Jwks>>) -> Self {
        JwtRule { issuer: issuer.into(), jwks, ..JwtRule::default() }
    }

    /// Whether the rule names no location, so the defaults apply: `Authorization: Bearer <token>` and the
    /// `access_token` query parameter. As in Envoy, naming only a cookie replaces the defaults too.
    pub fn uses_default_locations(&self) -> bool {
        self.from_headers.is_empty() && self.from_params.is_empty() && self.from_cookies.is_empty()
    }
}
