//! What the reference proxies `mesh-ztunnel` and `mesh-waypoint` share, so that each proxy is only its
//! listeners and its calls into the libraries, and both behave alike:
//!
//! - [`config`]: the settings both proxies take, as plain data (shown in `/config_dump`).
//! - [`source`]: where configuration comes from. [`source::ConfigSource`] is the one interface a source
//!   implements (files and directories today, a Kubernetes API watcher next); it sends the whole set of
//!   documents at start and after every change.
//!   With the `kubernetes` feature, `kubernetes::KubeSource` lists and watches the Kubernetes API.
//! - [`state`]: the [`Mesh`](mesh_policy::Mesh) behind a lock, the current [`Snapshot`](mesh_policy::Snapshot)
//!   published to every task, and the outcome of the last reload. An invalid document is reported (file,
//!   document, field) and the last good configuration stays in force.
//! - [`ca`]: the CA certificates are issued from: Istio's plug-in files, or a root generated at start and
//!   written where the operator asks; [`pki`]: that CA with the certificate store it issues into.
//!   [`rotation`] renews certificates on schedule.
//! - [`http`]: the small HTTP/1 server the admin (15000), metrics (15020) and readiness (15021) endpoints run on;
//!   [`ops`]: those endpoints' conventions (readiness and what holds it back, the metrics content type).
//! - [`metrics`]: Istio's TCP metric families with one label type and one set of response flags;
//!   [`access`]: access-log lines with Istio ztunnel's field names.
//! - [`listen`]: binding listeners with errors an operator can act on (a port in use, an address not on the
//!   machine).
//! - [`shutdown`]: SIGTERM and SIGINT as a drain signal; [`drain`]: connections in flight, waited for until
//!   the drain deadline and then closed.
//! - With the `cli` feature, for binaries: [`args`] (the shared command line), [`logging`] (log output) and
//!   [`command`] (a proxy's `main`: settings, files checked at start, runtime, SIGTERM).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod access;
#[cfg(feature = "cli")]
pub mod args;
pub mod ca;
#[cfg(feature = "cli")]
pub mod command;
pub mod config;
pub mod drain;
pub mod http;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod listen;
#[cfg(feature = "cli")]
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod pki;
pub mod rotation;
pub mod shutdown;
pub mod source;
pub mod state;

/// Seconds since the Unix epoch, the `now` the libraries take.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
