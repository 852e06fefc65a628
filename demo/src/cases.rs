//! A validation matrix: requests with what they must give, run for real and printed side by side.

use crate::client::{Call, Outcome};

/// What a case must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// This HTTP status.
    Status(u16),
    /// A refused connection.
    Refused,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Status(s) => write!(f, "{s}"),
            Expect::Refused => f.write_str("refused"),
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
    pub expect: Expect,
}

/// Runs the cases, prints one line each; true when every case gave what it must.
pub async fn run(cases: &[Case<'_>]) -> bool {
    let mut all = true;
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for case in cases {
        let got = case.call.send().await;
        let ok = matches!((&got, case.expect), (Outcome::Status(s, _), Expect::Status(e)) if *s == e)
            || matches!((&got, case.expect), (Outcome::Refused(_), Expect::Refused));
        all &= ok;
        println!(
            "  {} {:<width$}  expected {:<7}  got {got}",
            if ok { "ok  " } else { "FAIL" },
            case.name,
            case.expect.to_string()
        );
    }
    all
}
