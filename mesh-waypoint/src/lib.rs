//! `mesh-waypoint`: the reference waypoint of the mesh. See `mesh-waypoint --help`; [`serve::run`] runs it.
//!
//! - [`args`]: the command line. [`identity`]: the Gateway's identity and certificate.
//! - [`proxy`]: accepting tunnels; [`served`]: what a tunnel is addressed to, whether this waypoint serves it,
//!   and its endpoints; [`protocol`]: HTTP or TCP.
//! - [`http`]: policy and forwarding per request; [`tcp`]: policy and relay per connection; [`forwarding`]:
//!   the headers of a forwarded request; [`reply`]: the waypoint's own answers; [`upstream`]: the onward hop.
//! - [`pool`]: HTTP connections to endpoints, kept for the next request.
//! - [`jwks`]: fetching `jwksUri` documents; [`metrics`], [`admin`]: the operational endpoints.
#![forbid(unsafe_code)]

mod admin;
pub mod args;
mod forwarding;
mod http;
mod identity;
mod jwks;
mod metrics;
mod pool;
mod protocol;
mod proxy;
mod reply;
pub mod serve;
mod served;
mod tcp;
mod upstream;
