//! The two scenarios the project is built around, run for real on one machine: node proxies, waypoints,
//! backends and a token issuer as processes and sockets on loopback, real HTTP requests through them, and
//! what each gives against what the guide says it must.
//!
//! - [`payments`], the payments guide (`payments-ambient.txt`).
//! - [`bookinfo`], the Bookinfo guide (`bookinfo-ambient.txt`).
#![forbid(unsafe_code)]

pub mod access_log;
pub mod backend;
pub mod bookinfo;
pub mod cases;
pub mod client;
pub mod issuer;
pub mod payments;
pub mod procs;
pub mod topology;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

impl DemoError {
    /// An error saying `what`.
    pub fn new(what: impl Into<String>) -> Self {
        DemoError(what.into())
    }
}
