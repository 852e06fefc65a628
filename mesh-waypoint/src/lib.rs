//! `mesh-waypoint`: the reference waypoint of an ambient mesh, as a library with one entry point.
//!
//! [`run`] takes the settings ([`Config`], plain data), a configuration source (any
//! [`ConfigSource`](mesh_runtime::source::ConfigSource): files, or a control plane) and a shutdown signal the
//! caller owns, and serves the Services and workloads whose `istio.io/use-waypoint` names its Gateway until
//! that signal: RequestAuthentication and AuthorizationPolicy on each HTTP request (the L4 attributes of the
//! same policies on TCP), then forwarding over HBONE with its own identity. Everything that can go wrong is
//! an [`Error`].
//!
//! Inside: accepting tunnels and resolving what each is addressed to; HTTP per request and TCP per
//! connection; the onward hop and its connection pool; the forwarded headers and the waypoint's own answers;
//! JWKS fetching; the admin and metrics views.
#![forbid(unsafe_code)]

mod admin;
#[cfg(feature = "cli")]
pub mod args;
mod config;
#[cfg(feature = "kubernetes")]
pub mod controller;
mod error;
mod forwarding;
mod http;
mod identity;
mod jwks;
mod metrics;
mod pool;
mod protocol;
mod proxy;
mod reply;
mod sandwich;
mod serve;
mod served;
mod tcp;
mod upstream;

pub use config::{Config, GatewayName, JwksConfig, Onward};
pub use error::Error;
pub use serve::run;
