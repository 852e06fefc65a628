//! The renewal schedule of issued certificates, at chosen times.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{NOW, at};
use mesh_identity::ca::{CaOptions, DEFAULT_WORKLOAD_TTL, LocalCa};
use mesh_identity::rotation::{DEFAULT_GRACE_RATIO, Jitter, RenewalPolicy, RenewalState};
use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
use mesh_identity::svid::Svid;
use proptest::prelude::*;

const HOUR: u64 = 3600;

fn issued_svid() -> Svid {
    let td = TrustDomain::new("cluster.local").unwrap();
    let ca = LocalCa::new_root(td.clone(), &CaOptions::default(), at(NOW)).unwrap();
    let id = IstioIdentity::new(&td, "default", "bookinfo").unwrap();
    let issued = ca.issue(&id, DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    Svid::parse(issued.leaf()).unwrap()
}

#[test]
fn istio_defaults_renew_a_24h_certificate_after_12h() {
    let svid = issued_svid();
    assert_eq!(RenewalPolicy::default().grace_ratio(), DEFAULT_GRACE_RATIO);
    let schedule = RenewalPolicy::default().schedule(svid.not_before(), svid.not_after(), Jitter::None);
    assert_eq!(schedule.renew_at(), at(NOW + 12 * HOUR));
    assert_eq!(schedule.not_after(), at(NOW + 24 * HOUR));

    assert_eq!(schedule.state(at(NOW)), RenewalState::Fresh);
    assert_eq!(schedule.time_until_renewal(at(NOW + HOUR)), Duration::from_secs(11 * HOUR));
    assert_eq!(schedule.state(at(NOW + 12 * HOUR - 1)), RenewalState::Fresh);
    assert_eq!(schedule.state(at(NOW + 12 * HOUR)), RenewalState::Renew);
    assert_eq!(schedule.time_until_renewal(at(NOW + 13 * HOUR)), Duration::ZERO);
    // Still usable while the new certificate is fetched, up to notAfter.
    assert!(schedule.is_usable(at(NOW + 24 * HOUR - 1)));
    assert_eq!(schedule.state(at(NOW + 24 * HOUR)), RenewalState::Expired);
    assert!(!schedule.is_usable(at(NOW + 24 * HOUR)));
    assert!(!schedule.is_usable(at(NOW - 1)), "not usable before notBefore");
}

#[test]
fn ratio_and_jitter_move_the_renewal_time() {
    let (start, end) = (at(NOW), at(NOW + 24 * HOUR));
    let policy = RenewalPolicy::new(0.25);
    assert_eq!(policy.schedule(start, end, Jitter::None).renew_at(), at(NOW + 18 * HOUR));
    // Istio's ±1% jitter on the ratio: +0.01 renews 14.4 minutes earlier.
    assert_eq!(policy.schedule(start, end, Jitter::Fraction(0.01)).renew_at(), at(NOW + 18 * HOUR - 864));
    assert_eq!(policy.schedule(start, end, Jitter::Fraction(-0.01)).renew_at(), at(NOW + 18 * HOUR + 864));
    let ten_minutes = Duration::from_secs(600);
    assert_eq!(policy.schedule(start, end, Jitter::Earlier(ten_minutes)).renew_at(), at(NOW + 18 * HOUR - 600));
    assert_eq!(policy.schedule(start, end, Jitter::Later(ten_minutes)).renew_at(), at(NOW + 18 * HOUR + 600));
    // Out-of-range ratios are clamped: 0 renews at expiry, 1 immediately.
    assert_eq!(RenewalPolicy::new(-3.0).schedule(start, end, Jitter::None).renew_at(), end);
    assert_eq!(RenewalPolicy::new(7.0).schedule(start, end, Jitter::None).renew_at(), start);
}

proptest! {
    #[test]
    fn renewal_stays_within_validity(
        start in 0u64..4_000_000_000,
        life in 0u64..400 * 86_400,
        ratio in -1.0f64..2.0,
        fraction in -1.0f64..1.0,
        shift in 0u64..1_000_000,
        kind in 0u8..4,
        probe in 0u64..500 * 86_400,
    ) {
        let jitter = match kind {
            0 => Jitter::None,
            1 => Jitter::Fraction(fraction),
            2 => Jitter::Earlier(Duration::from_secs(shift)),
            _ => Jitter::Later(Duration::from_secs(shift)),
        };
        let s = RenewalPolicy::new(ratio).schedule(at(start), at(start + life), jitter);
        prop_assert!(s.not_before() <= s.renew_at() && s.renew_at() <= s.not_after());
        let now = at(start + probe);
        let state = s.state(now);
        prop_assert_eq!(state == RenewalState::Expired, !s.is_usable(now));
        prop_assert_eq!(state == RenewalState::Fresh, s.time_until_renewal(now) > Duration::ZERO);
    }
}
