//! Compiled RequestAuthentication.

use crate::crd::JwtRule;
use crate::model::policy::Scope;
use crate::resource::ResourceId;

/// Claims whose string value is always split at spaces before matching.
pub const SPACE_DELIMITED_CLAIMS: [&str; 2] = ["scope", "permission"];

/// A validated RequestAuthentication.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRequestAuthentication {
    /// `namespace/name`.
    pub id: ResourceId,
    /// Where the rules apply.
    pub scope: Scope,
    /// The JWT rules, validated.
    pub rules: Vec<JwtRule>,
}

impl CompiledRequestAuthentication {
    /// Claims split at spaces for tokens of `issuer`, beside `scope` and `permission`.
    pub fn space_delimited_claims<'a>(&'a self, issuer: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.issuer.as_deref() == Some(issuer))
            .flat_map(|r| r.space_delimited_claims.iter().flatten().map(String::as_str))
    }
}
