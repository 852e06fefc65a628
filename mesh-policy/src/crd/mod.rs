//! Serde types that mirror the Kubernetes custom resources, field for field.
//!
//! These are what a manifest *says*. Nothing here is evaluated: compilation turns a validated resource into
//! the form the enforcement points run. Unknown fields are rejected everywhere, because a typo such as
//! `principal:` for `principals:` would otherwise drop a constraint and widen access. A null item in any list
//! (which serde would read as an empty object, an empty rule matching everything) is refused before these types
//! are read, by [`crate::manifest`].

pub mod authorization_policy;
pub mod meta;
pub mod peer_authentication;
pub mod request_authentication;

pub use authorization_policy::{
    Action, AuthorizationPolicySpec, Condition, ExtensionProvider, From, Operation, Rule, Source, To,
};
pub use meta::{ObjectMeta, PolicyTargetReference, WorkloadSelector};
pub use peer_authentication::{MtlsMode, PeerAuthenticationSpec, PeerMtls, PortKey, PortLevelMtls};
pub use request_authentication::{ClaimToHeader, JwtHeader, JwtRule, RequestAuthenticationSpec};
