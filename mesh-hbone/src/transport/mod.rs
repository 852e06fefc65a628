//! The HBONE transport (feature `tokio`): HTTP/2 (h2) over mutual TLS (tokio-rustls), with
//! `mesh-identity`'s HBONE configurations.
//!
//! - [`HboneClient`]: pooled mTLS HTTP/2 connections to peer proxies, one CONNECT stream per tunnel,
//!   returning an [`HboneStream`] and the peer's verified identity. [`HboneClient::connect_double`] reaches a
//!   destination through a network gateway (double HBONE). Idle connections are closed in the background.
//! - [`HboneServer`]: accepts mTLS connections, validates each CONNECT with [`crate::status::validate`], asks
//!   a caller-supplied handler for the upstream (or a [`crate::Rejection`]) and copies bytes both ways.
//! - [`relay`]: copies a tunnel to and from another stream without staging the bytes, as the server does with
//!   each upstream and a client proxy does with the workload's connection.
//! - [`connect_tcp`]: outbound TCP, optionally bound to the original source IP (transparently when it is not
//!   the node's own), for the client's connections and for handlers' upstreams.
//!
//! What an untrusted peer controls is bounded: connections served at once, concurrent streams per connection
//! (SETTINGS), header list size, TLS handshake time, PING keepalive, idle connections, and what a relay
//! holds (within the flow-control window).

mod client;
mod copy;
mod error;
mod keepalive;
mod server;
mod socket;
mod stream;
mod trace;

pub use client::{ClientConfig, DEFAULT_CONNECT_TIMEOUT, Destination, HboneClient, Tunnel};
pub use copy::relay;
pub use error::{ClientError, ServerError};
pub use server::{HboneServer, InboundRequest, ServerLimits};
pub use socket::{ConnectTcpError, connect_tcp};
pub use stream::HboneStream;
pub use trace::random_traceparent;
