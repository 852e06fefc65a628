//! Scenario files shared by the examples, embedded so the examples run from anywhere.

/// The payments scenario: allow-nothing namespace, L4 allow for `accounts`, L7 JWT and scope rules.
pub const PAYMENTS: &str = include_str!("scenarios/payments.yaml");

/// The Bookinfo scenario: L4 allow for the ingress gateway, L7 GET-only for `sa/curl`.
pub const BOOKINFO: &str = include_str!("scenarios/bookinfo.yaml");
