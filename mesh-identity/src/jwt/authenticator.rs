//! Authenticating a request against a set of rules: find its tokens, check each, and say what was found.

use std::fmt;
use std::sync::Arc;

use super::cache::{CacheStats, DEFAULT_CACHE_CAPACITY, TokenCache};
use super::claims::VerifiedToken;
use super::error::JwtError;
use super::location::{Location, Locations};
use super::rule::JwtRule;
use super::token::{Jws, MAX_TOKEN_LEN};
use super::validate::{Audiences, check_period};
use super::verify::verify_signature;

/// What a request's tokens amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No rule's location carries a token. Istio lets such a request through unauthenticated (an
    /// AuthorizationPolicy may still require a principal).
    NoToken,
    /// Every token found is valid. `token` is the first one found, `rule` the index of the rule it passed.
    Verified {
        /// The first token found.
        token: Arc<VerifiedToken>,
        /// The index, in the rules given to the [`Authenticator`], of the rule it passed.
        rule: usize,
    },
    /// A token is invalid: the request must be refused (HTTP 401), whatever other tokens it carries.
    Rejected(JwtError),
}

/// The rules of the RequestAuthentications that apply to a workload, and a cache of the tokens they accepted.
///
/// Rules are checked as Envoy's `jwt_authn` filter checks Istio's configuration:
///
/// - Tokens are looked for in every rule's locations (see [`JwtRule::uses_default_locations`]). No token
///   anywhere gives [`Outcome::NoToken`]; any invalid token rejects the request, even beside a valid one.
/// - A token is checked under the rules that declared the location it was found in and whose issuer is its `iss`,
///   in order; the first rule it passes is the one reported, and if it passes none, the first rule's error is.
///   No such rule gives `Jwt issuer is not configured`.
/// - Under a rule, the cheap checks come first, as in Envoy: validity period, then audience, then the signature.
///
/// Thread-safe; the cache is behind a mutex held only for a hash lookup.
pub struct Authenticator {
    rules: Vec<JwtRule>,
    audiences: Vec<Audiences>,
    locations: Locations,
    cache: TokenCache,
}

impl Authenticator {
    /// An authenticator remembering up to [`DEFAULT_CACHE_CAPACITY`] verified tokens.
    pub fn new(rules: Vec<JwtRule>) -> Self {
        Self::with_cache_capacity(rules, DEFAULT_CACHE_CAPACITY)
    }

    /// An authenticator remembering up to `capacity` verified tokens, least recently used evicted first; `0`
    /// disables the cache.
    pub fn with_cache_capacity(rules: Vec<JwtRule>, capacity: usize) -> Self {
        let audiences = rules.iter().map(|rule| Audiences::new(&rule.audiences)).collect();
        let locations = Locations::new(&rules);
        Authenticator { rules, audiences, locations, cache: TokenCache::new(capacity) }
    }

    /// The rules, in the order given; [`Outcome::Verified::rule`](Outcome::Verified) indexes this.
    pub fn rules(&self) -> &[JwtRule] {
        &self.rules
    }

    /// The token cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Authenticates one request.
    ///
    /// `headers` are (name, value) pairs, names compared case-insensitively, repeated names allowed; `path` is the
    /// request path including its query string; `now` is the current Unix time in seconds, needed for any token
    /// with `exp` or `nbf` (without it such tokens are rejected).
    pub fn authenticate<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
        path: &str,
        now: Option<u64>,
    ) -> Outcome {
        let found = self.locations.extract(headers, path);
        let mut first = None;
        for (i, token) in found.iter().enumerate() {
            // The same token in the same place twice (e.g. a repeated header) is checked once.
            if found[..i].iter().any(|earlier| earlier.location == token.location && earlier.token == token.token) {
                continue;
            }
            let Some(location) = self.locations.get(token.location) else { continue };
            match self.check(&token.token, location, now) {
                Ok(verified) => {
                    first.get_or_insert(verified);
                }
                Err(error) => return Outcome::Rejected(error),
            }
        }
        match first {
            Some((token, rule)) => Outcome::Verified { token, rule },
            None => Outcome::NoToken,
        }
    }

    /// Checks one token found at `location`.
    fn check(
        &self,
        token: &str,
        location: &Location,
        now: Option<u64>,
    ) -> Result<(Arc<VerifiedToken>, usize), JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge { len: token.len(), limit: MAX_TOKEN_LEN });
        }
        // Answered from the cache when the token already passed the rule it would be checked under first.
        let cached = self.cache.lookup(token, |entry| {
            let rule = self.candidates(location, Some(&entry.token.issuer)).next()?;
            entry.rules.contains(&rule).then(|| (Arc::clone(&entry.token), entry.not_before, rule))
        });
        if let Some((verified, not_before, rule)) = cached {
            return match check_period(verified.expires_at, not_before, now) {
                Ok(()) => Ok((verified, rule)),
                Err(error) => {
                    if error == JwtError::Expired {
                        self.cache.remove(token);
                    }
                    Err(error)
                }
            };
        }

        let jws = Jws::parse(token)?;
        let mut first_error = None;
        let mut passed = None;
        for rule in self.candidates(location, jws.claims.issuer.as_deref()) {
            match self.check_under(&jws, rule, now) {
                Ok(()) => {
                    passed = Some(rule);
                    break;
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let Some(rule) = passed else {
            return Err(first_error.unwrap_or(JwtError::UnknownIssuer));
        };
        let issuer = self.rules.get(rule).map(|rule| rule.issuer.clone()).unwrap_or_default();
        let not_before = jws.claims.not_before;
        let verified = Arc::new(VerifiedToken::new(issuer, jws.claims));
        self.cache.insert(token, &verified, not_before, rule);
        Ok((verified, rule))
    }

    /// The rules a token of `issuer` found at `location` is checked under, in order.
    fn candidates<'s>(&'s self, location: &'s Location, issuer: Option<&'s str>) -> impl Iterator<Item = usize> + 's {
        location.rules.iter().copied().filter(move |&rule| {
            issuer.is_some_and(|issuer| self.rules.get(rule).is_some_and(|rule| rule.issuer == issuer))
        })
    }

    /// Checks a parsed token under one rule whose issuer it carries.
    fn check_under(&self, jws: &Jws<'_>, rule: usize, now: Option<u64>) -> Result<(), JwtError> {
        check_period(jws.claims.expires_at, jws.claims.not_before, now)?;
        if !self.audiences.get(rule).is_some_and(|audiences| audiences.allow(&jws.claims.audiences)) {
            return Err(JwtError::AudienceNotAllowed);
        }
        let jwks = self.rules.get(rule).and_then(|rule| rule.jwks.as_deref()).ok_or(JwtError::JwksMissing)?;
        verify_signature(jwks, jws.alg, jws.kid.as_deref(), jws.signing_input.as_bytes(), &jws.signature)
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").field("rules", &self.rules).field("cache", &self.cache.stats()).finish()
    }
}
