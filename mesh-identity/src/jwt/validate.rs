//! The claim rules a rule applies besides the signature: the validity period and the audience.

use super::error::JwtError;

/// The clock skew allowed on `exp` and `nbf`, in seconds (Envoy's default).
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Checks `exp` and `nbf` against `now`, allowing [`CLOCK_SKEW_SECS`] either way.
///
/// A token with neither is valid at any time. A token with either cannot be checked without `now`, and is
/// rejected rather than accepted.
pub(crate) fn check_period(expires_at: Option<u64>, not_before: Option<u64>, now: Option<u64>) -> Result<(), JwtError> {
    if expires_at.is_none() && not_before.is_none() {
        return Ok(());
    }
    let now = now.ok_or(JwtError::TimeNotSupplied)?;
    if not_before.is_some_and(|nbf| now.saturating_add(CLOCK_SKEW_SECS) < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if expires_at.is_some_and(|exp| now > exp.saturating_add(CLOCK_SKEW_SECS)) {
        return Err(JwtError::Expired);
    }
    Ok(())
}

/// The audiences a rule accepts, compared as Envoy compares them: an `http://` or `https://` prefix and one
/// trailing `/` are ignored on both sides, so `https://api.example.com/` matches `api.example.com`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Audiences(Vec<String>);

impl Audiences {
    pub(crate) fn new(configured: &[String]) -> Self {
        Audiences(configured.iter().map(|aud| normalise(aud).to_owned()).collect())
    }

    /// Whether the token's `aud` list is acceptable: always when none are configured, otherwise when one of the
    /// token's audiences is configured.
    pub(crate) fn allow(&self, token: &[String]) -> bool {
        self.0.is_empty() || token.iter().any(|aud| self.0.iter().any(|allowed| allowed == normalise(aud)))
    }
}

fn normalise(aud: &str) -> &str {
    let aud = aud.strip_prefix("http://").or_else(|| aud.strip_prefix("https://")).unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_with_skew() {
        assert_eq!(check_period(None, None, None), Ok(()));
        assert_eq!(check_period(Some(1000), None, Some(1060)), Ok(()));
        assert_eq!(check_period(Some(1000), None, Some(1061)), Err(JwtError::Expired));
        assert_eq!(check_period(None, Some(1000), Some(940)), Ok(()));
        assert_eq!(check_period(None, Some(1000), Some(939)), Err(JwtError::NotYetValid));
        assert_eq!(check_period(Some(0), None, Some(61)), Err(JwtError::Expired));
        assert_eq!(check_period(Some(u64::MAX), Some(u64::MAX), Some(u64::MAX)), Ok(()));
    }

    #[test]
    fn missing_time_fails_closed() {
        assert_eq!(check_period(Some(1), None, None), Err(JwtError::TimeNotSupplied));
        assert_eq!(check_period(None, Some(1), None), Err(JwtError::TimeNotSupplied));
    }

    #[test]
    fn audiences() {
        let any = Audiences::new(&[]);
        assert!(any.allow(&[]));
        assert!(any.allow(&["x".into()]));
        let some = Audiences::new(&["https://api.example.com/".into(), "bar".into()]);
        assert!(some.allow(&["api.example.com".into()]));
        assert!(some.allow(&["nope".into(), "http://bar".into()]));
        assert!(!some.allow(&[]));
        assert!(!some.allow(&["api.example.com/v1".into(), "ba".into()]));
    }
}
