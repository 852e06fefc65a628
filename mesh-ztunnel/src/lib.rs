//! `mesh-ztunnel`: the reference per-node L4 proxy of an ambient mesh, as a library with one entry point.
//!
//! [`run`] takes the settings ([`Config`], plain data), a configuration source (any
//! [`ConfigSource`](mesh_runtime::source::ConfigSource): files, or a control plane) and a shutdown signal the
//! caller owns, and serves until that signal: every enrolled Pod of the node gets a SPIFFE identity and a
//! certificate, mTLS over HBONE to and from other node proxies and waypoints, and L4 AuthorizationPolicy at
//! its inbound. Everything that can go wrong is an [`Error`].
//!
//! Inside: the listeners are modules of their own (SOCKS5 and iptables capture outbound, HBONE and
//! redirected plaintext inbound), with the routing of outbound connections, the node's shared state, the
//! re-authorization of live connections after each change, and the admin and metrics views.
#![forbid(unsafe_code)]

mod admin;
#[cfg(feature = "cli")]
pub mod args;
mod capture;
mod config;
mod error;
mod inbound;
mod inpod;
mod live;
mod metrics;
mod node;
mod outbound;
mod plaintext;
mod serve;
mod socks5;

pub use config::Config;
pub use error::Error;
pub use live::Closed;
pub use serve::{run, run_with_pki};

/// The workspace README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
