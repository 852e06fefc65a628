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
//! The pieces, in the order a policy goes through them: [`manifest`] reads YAML into the [`crd`] types,
//! [`compile`] validates them as Istio's webhook does and produces the [`model`], which the `index` and
//! `eval` modules evaluate behind [`Mesh::check`].
#![forbid(unsafe_code)]

mod analyze;
pub mod compile;
pub mod config;
pub mod crd;
pub mod decision;
pub mod error;
pub mod eval;
pub mod headers;
mod index;
pub mod manifest;
pub mod mesh;
pub mod model;
pub mod request;
pub mod resource;
pub mod scenario;

pub use config::MeshConfig;
pub use crd::{Action, MtlsMode};
pub use decision::{Decision, Reason, TokenForwarding};
pub use error::{ApplyError, FieldError, ManifestError, RequestError};
pub use headers::Headers;
pub use mesh::{ApplyReport, Mesh, Warning};
pub use model::path::PathNormalization;
pub use request::{CheckRequest, Enforcement};
pub use resource::{Kind, ResourceId};
