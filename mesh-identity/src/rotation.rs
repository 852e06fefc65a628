//! When to renew a certificate: a pure schedule from its validity period, a grace ratio, caller-supplied jitter
//! and `now`.
//!
//! Istio's agent renews when the remaining lifetime drops below a grace period of `ratio × lifetime`
//! (`SECRET_GRACE_PERIOD_RATIO`, 0.5 by default), jittered so a fleet issued at once does not renew at once.
//! The current certificate stays usable until its `notAfter` while the new one is fetched.

use std::time::Duration;

use rustls_pki_types::UnixTime;

/// Istio's default grace period ratio: renew once half the lifetime remains.
pub const DEFAULT_GRACE_RATIO: f64 = 0.5;

/// A shift of the renewal time, drawn by the caller (this crate has no randomness of its own).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Jitter {
    /// No shift.
    #[default]
    None,
    /// Added to the grace ratio (Istio draws it from `±SECRET_GRACE_PERIOD_RATIO_JITTER`, 0.01 by default):
    /// positive renews earlier, negative later.
    Fraction(f64),
    /// Renew this much earlier.
    Earlier(Duration),
    /// Renew this much later.
    Later(Duration),
}

/// How early to renew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    grace_ratio: f64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy { grace_ratio: DEFAULT_GRACE_RATIO }
    }
}

impl RenewalPolicy {
    /// Renew once `grace_ratio` of the lifetime remains; clamped to `0.0..=1.0` (NaN reads as the default).
    /// 0 renews at expiry, 1 at once.
    pub fn new(grace_ratio: f64) -> Self {
        let grace_ratio = if grace_ratio.is_nan() { DEFAULT_GRACE_RATIO } else { grace_ratio.clamp(0.0, 1.0) };
        RenewalPolicy { grace_ratio }
    }

    /// The grace ratio.
    pub fn grace_ratio(&self) -> f64 {
        self.grace_ratio
    }

    /// The schedule of a certificate valid from `not_before` to `not_after`, shifted by `jitter`. The renewal
    /// time always lies within the validity period.
    pub fn schedule(&self, not_before: UnixTime, not_after: UnixTime, jitter: Jitter) -> RenewalSchedule {
        let start = not_before.as_secs();
        let end = not_after.as_secs().max(start);
        let lifetime = end - start;
        let ratio = match jitter {
            Jitter::Fraction(f) if f.is_finite() => (self.grace_ratio + f).clamp(0.0, 1.0),
            _ => self.grace_ratio,
        };
        // The grace period in whole seconds; `ratio` is in 0..=1, so this stays within `lifetime`.
        let grace = ((lifetime as f64) * ratio).round() as u64;
        let renew_at = end.saturating_sub(grace.min(lifetime));
        let renew_at = match jitter {
            Jitter::Earlier(d) => renew_at.saturating_sub(d.as_secs()),
            Jitter::Later(d) => renew_at.saturating_add(d.as_secs()),
            Jitter::None | Jitter::Fraction(_) => renew_at,
        }
        .clamp(start, end);
        RenewalSchedule { not_before: at(start), not_after: at(end), renew_at: at(renew_at) }
    }
}

fn at(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

/// Where a certificate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenewalState {
    /// Before the renewal time: nothing to do. (Also before `notBefore`, where the certificate is not yet usable;
    /// see [`RenewalSchedule::is_usable`].)
    Fresh,
    /// Past the renewal time but before `notAfter`: fetch a new certificate, keep using this one meanwhile.
    Renew,
    /// At or past `notAfter`: unusable; a new certificate is needed before any handshake.
    Expired,
}

/// When one certificate should be renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenewalSchedule {
    not_before: UnixTime,
    not_after: UnixTime,
    renew_at: UnixTime,
}

impl RenewalSchedule {
    /// The time from which to renew.
    pub fn renew_at(&self) -> UnixTime {
        self.renew_at
    }

    /// The certificate's `notBefore`.
    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }

    /// The certificate's `notAfter`: the end of use.
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    /// The state at `now`.
    pub fn state(&self, now: UnixTime) -> RenewalState {
        if now >= self.not_after {
            RenewalState::Expired
        } else if now >= self.renew_at {
            RenewalState::Renew
        } else {
            RenewalState::Fresh
        }
    }

    /// How long from `now` until renewal is due; zero once it is.
    pub fn time_until_renewal(&self, now: UnixTime) -> Duration {
        Duration::from_secs(self.renew_at.as_secs().saturating_sub(now.as_secs()))
    }

    /// Whether the certificate may be presented at `now`: `notBefore <= now < notAfter`. It stays usable in
    /// [`RenewalState::Renew`] while the replacement is fetched.
    pub fn is_usable(&self, now: UnixTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> UnixTime {
        at(secs)
    }

    #[test]
    fn default_renews_at_half_life() {
        let s = RenewalPolicy::default().schedule(t(1000), t(1000 + 86_400), Jitter::None);
        assert_eq!(s.renew_at(), t(1000 + 43_200));
    }

    #[test]
    fn jitter_never_leaves_the_validity_period() {
        let p = RenewalPolicy::new(0.9);
        assert_eq!(p.schedule(t(100), t(200), Jitter::Fraction(0.5)).renew_at(), t(100));
        assert_eq!(p.schedule(t(100), t(200), Jitter::Earlier(Duration::from_secs(1000))).renew_at(), t(100));
        assert_eq!(p.schedule(t(100), t(200), Jitter::Later(Duration::from_secs(1000))).renew_at(), t(200));
        assert_eq!(p.schedule(t(100), t(200), Jitter::Fraction(f64::NAN)).renew_at(), t(110));
    }

    #[test]
    fn inverted_validity_is_expired_at_start() {
        let s = RenewalPolicy::default().schedule(t(200), t(100), Jitter::None);
        assert_eq!(s.state(t(200)), RenewalState::Expired);
    }
}
