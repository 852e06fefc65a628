//! A validation matrix: requests with what they must give, run for real and printed side by side. A refusal
//! counts only as a refusal by policy (the SOCKS5 reply 2), and only with the refusing node proxy's own log
//! line for that connection, which is printed as the evidence.

use crate::access_log::{self, Denial};
use crate::client::{Call, Outcome};
use crate::procs::Procs;

/// What a case must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// This HTTP status.
    Status(u16),
    /// Refused by policy: the client's node proxy answers SOCKS5 reply 2, and the destination's node proxy
    /// logs this denial.
    Refused(Denial<'a>),
    /// This HTTP status (from the waypoint), because a node proxy behind it denied the waypoint's own
    /// connection and logs this denial.
    StatusAfter(u16, Denial<'a>),
}

impl Expect<'_> {
    /// The denial a node proxy must log.
    fn denial(&self) -> Option<&Denial<'_>> {
        match self {
            Expect::Status(_) => None,
            Expect::Refused(d) | Expect::StatusAfter(_, d) => Some(d),
        }
    }

    /// True when `got` is what this expects (the log aside).
    fn matches(&self, got: &Outcome) -> bool {
        match (self, got) {
            (Expect::Status(e) | Expect::StatusAfter(e, _), Outcome::Status(s, _)) => s == e,
            (Expect::Refused(_), got) => got.is_denied(),
            _ => false,
        }
    }
}

impl std::fmt::Display for Expect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Status(s) | Expect::StatusAfter(s, _) => write!(f, "{s}"),
            Expect::Refused(_) => f.write_str("refused"),
        }
    }
}

/// One request of the matrix.
pub struct Case<'a> {
    /// What it shows.
    pub name: &'a str,
    /// The request.
    pub call: Call<'a>,
    /// What it must give.
    pub expect: Expect<'a>,
}

/// Runs the cases, prints one line each (and, under a denial, the node proxy's log line that shows it); true
/// when every case gave what it must.
pub async fn run(procs: &Procs, cases: &[Case<'_>]) -> bool {
    let mut all = true;
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for case in cases {
        let mark = case.expect.denial().map(|d| access_log::mark(procs, d.by));
        let got = case.call.send().await;
        let outcome_ok = case.expect.matches(&got);
        let evidence = match (case.expect.denial(), mark) {
            (Some(denial), Some(mark)) => Some((denial, access_log::wait_for(procs, denial, mark).await)),
            _ => None,
        };
        let ok = outcome_ok && evidence.as_ref().is_none_or(|(_, found)| found.is_some());
        all &= ok;
        println!(
            "  {} {:<width$}  expected {:<7}  got {got}",
            if ok { "ok  " } else { "FAIL" },
            case.name,
            case.expect.to_string()
        );
        match evidence {
            Some((denial, Some(entry))) => println!("       {}'s log: {}", denial.by, entry.shown),
            Some((denial, None)) => println!(
                "       FAIL {}'s log has no policy denial of {} to {} for this request",
                denial.by, denial.source, denial.destination
            ),
            None => {}
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Stage;

    const PROBE: Denial<'static> = Denial {
        by: "node-b",
        source: "cluster.local/ns/payments/sa/probe",
        destination: std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 61, 2, 20)), 8080),
    };

    #[test]
    fn refused_is_met_only_by_a_denial() {
        let refused = Expect::Refused(PROBE);
        assert!(refused.matches(&Outcome::Denied));
        for other in [
            Outcome::Socks5Reply(1),
            Outcome::Socks5Reply(4),
            Outcome::TimedOut,
            Outcome::Closed(Stage::Socks5),
            Outcome::Closed(Stage::Http),
            Outcome::Reset(Stage::Http),
            Outcome::ConnectionRefused(Stage::Socks5),
            Outcome::Failed("bind".into()),
            Outcome::Status(403, String::new()),
        ] {
            assert!(!refused.matches(&other), "{other} must not pass for refused");
        }
    }

    #[test]
    fn a_status_is_met_by_that_status_only() {
        assert!(Expect::Status(403).matches(&Outcome::Status(403, String::new())));
        assert!(!Expect::Status(403).matches(&Outcome::Status(200, String::new())));
        assert!(!Expect::Status(403).matches(&Outcome::Denied));
        assert!(Expect::StatusAfter(503, PROBE).matches(&Outcome::Status(503, String::new())));
        assert!(!Expect::StatusAfter(503, PROBE).matches(&Outcome::TimedOut));
    }
}
