//! The compiled, evaluated form of the policies: matchers, constraints, rules.

pub mod constraint;
pub mod path;
pub mod peer_authentication;
pub mod policy;
pub mod request_authentication;
pub mod request_principal;
pub mod string_match;
