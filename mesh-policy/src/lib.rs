//! Istio's `AuthorizationPolicy`, `RequestAuthentication` and `PeerAuthentication`, evaluated exactly as an
//! ambient mesh enforces them, with no IO.
//!
//! Load the Kubernetes YAML you `kubectl apply`, then ask whether a connection (at the destination's
//! **ztunnel**, L4) or a request (at the **waypoint**, L7) is allowed. Every [`Decision`] names the policy and
//! rule that decided, and why.
//!
//! ```
//! use mesh_policy::{CheckRequest, Mesh};
//!
//! let mut mesh = Mesh::default();
//! mesh.apply_yaml(r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: ledger, namespace: payments}
//! spec:
//!   selector: {matchLabels: {app: ledger}}
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/payments/sa/accounts"]}}]
//!     to: [{operation: {ports: ["8080"]}}]
//! "#)?;
//!
//! let request: CheckRequest = serde_json::from_str(r#"{
//!   "destination": {"namespace": "payments", "workload_labels": {"app": "ledger"}, "port": 8080},
//!   "source": {"principal": "cluster.local/ns/payments/sa/accounts"}
//! }"#)?;
//! let decision = mesh.check(&request)?;
//! assert!(decision.allowed);
//! assert_eq!(decision.policy.as_deref(), Some("payments/ledger"));
//! assert_eq!(
//!     decision.reason.to_string(),
//!     "allowed by payments/ledger rule 0: source principal is cluster.local/ns/payments/sa/accounts \
//!      and destination port is 8080"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The pieces, in the order a policy goes through them: [`manifest`] reads YAML into the [`crd`] types (and
//! the [`cluster`] objects), a compile step validates them as Istio's webhook does and lowers each policy to
//! the enforcement point that enforces it, and an index keeps them by where they attach. Every change makes
//! an immutable [`Snapshot`] that checks ([`Snapshot::check`]) and traces ([`Snapshot::trace`]) run against.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod analyze;
pub mod cluster;
// Internal: validation and lowering, evaluation, and the compiled form are not part of the public API; their
// `pub` items are visible to the crate only.
#[allow(unreachable_pub)]
mod compile;
pub mod config;
pub mod crd;
pub mod decision;
pub mod error;
#[allow(unreachable_pub)]
mod eval;
pub mod headers;
mod index;
pub mod manifest;
pub mod mesh;
#[allow(unreachable_pub)]
mod model;
mod named;
pub mod proxy;
pub mod request;
pub mod resource;
pub mod scenario;
pub mod snapshot;
pub mod trace;
pub mod xds;

pub use analyze::{Finding, Involved, Severity};
pub use compile::DRY_RUN_ANNOTATION;
pub use config::MeshConfig;
pub use crd::{Action, MtlsMode};
pub use decision::{Decision, JwtRejection, MatchedRule, Reason, TokenForwarding};
pub use error::{ApplyError, FieldError, ManifestError, RequestError};
pub use headers::Headers;
pub use mesh::{ApplyReport, Mesh, ReloadError, Source, SourceError, Warning};
pub use model::path::PathNormalization;
pub use model::peer_authentication::EffectiveMtls;
pub use request::{CheckRequest, Enforcement};
pub use resource::{Kind, ResourceId};
pub use snapshot::Snapshot;
pub use trace::{TraceError, TraceRequest, TraceResult};
