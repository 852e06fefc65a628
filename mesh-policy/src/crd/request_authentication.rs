//! `security.istio.io` `RequestAuthentication`, field for field as the CRD defines it.

use serde::{Deserialize, Serialize};

use super::meta::{PolicyTargetReference, WorkloadSelector};

/// `spec` of a RequestAuthentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthenticationSpec {
    /// Workloads the rules apply to.
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources the rules attach to.
    #[serde(default)]
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// How tokens are validated, one rule per issuer.
    #[serde(default)]
    pub jwt_rules: Option<Vec<JwtRule>>,
}

/// How to validate tokens of one issuer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The `iss` a token must carry for this rule to validate it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; when empty, the service's hostname is accepted.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// Where to fetch the JWKS.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The JWKS inline, as a JSON string.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Headers the token may come in.
    #[serde(default)]
    pub from_headers: Option<Vec<JwtHeader>>,
    /// Query parameters the token may come in.
    #[serde(default)]
    pub from_params: Option<Vec<String>>,
    /// Cookies the token may come in.
    #[serde(default)]
    pub from_cookies: Option<Vec<String>>,
    /// Header to copy the verified payload into (base64url).
    #[serde(default)]
    pub output_payload_to_header: Option<String>,
    /// Keep the original token on the forwarded request.
    #[serde(default)]
    pub forward_original_token: Option<bool>,
    /// Claims copied into request headers.
    #[serde(default)]
    pub output_claim_to_headers: Option<Vec<ClaimToHeader>>,
    /// Timeout for fetching the JWKS, as a protobuf Duration string (`"5s"`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Claims whose string value is split at spaces, beside the built-in `scope` and `permission`.
    #[serde(default)]
    pub space_delimited_claims: Option<Vec<String>>,
}

/// A header a token may be carried in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// Header name.
    #[serde(default)]
    pub name: Option<String>,
    /// A prefix to strip, e.g. `"Bearer "`.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A claim copied into a header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// Header name.
    #[serde(default)]
    pub header: Option<String>,
    /// Claim name.
    #[serde(default)]
    pub claim: Option<String>,
}
