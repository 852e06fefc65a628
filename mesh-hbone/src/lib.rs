//! HBONE, the tunnel protocol of Istio's ambient mesh, as ztunnel speaks it: one HTTP/2 CONNECT stream per
//! proxied connection, over mutual TLS between node proxies, on port 15008.
//!
//! The default build is zero-IO (no sockets, no clock, no runtime):
//! - [`connect`]: the CONNECT request, built to and read from `http::Request<()>`, with its headers:
//!   [`authority`], [`baggage`], [`forwarded`], [`traceparent`].
//! - [`status`]: the status table both ends share, and the server-side validation of a CONNECT.
//! - [`settings`]: HTTP/2 settings with ztunnel's defaults.
//! - [`pool`]: connection pooling as a pure state machine, time passed in.
//! - [`double`]: the two hops of double HBONE through a network gateway.
//!
//! The `tokio` feature adds `transport`: an h2 + tokio-rustls client and server using `mesh-identity`'s
//! mTLS configurations, double HBONE through a gateway, and a relay between a tunnel and a TCP stream.
//!
//! A CONNECT as a client proxy builds it and a server proxy judges it:
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use http::StatusCode;
//! use mesh_hbone::status::{InboundRules, validate};
//! use mesh_hbone::{ConnectRequest, Forwarded};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let workload: SocketAddr = "10.0.0.1:40000".parse()?;
//! let request = ConnectRequest::new("10.0.0.2:8080".parse::<SocketAddr>()?)
//!     .with_forwarded(Forwarded::for_source(workload))
//!     .to_request()?;
//! assert_eq!(request.uri(), "10.0.0.2:8080");
//! assert_eq!(request.headers()["forwarded"], r#"for="10.0.0.1:40000""#);
//!
//! // The destination's proxy was dialled at 10.0.0.2:15008: the tunnel goes to port 8080 of that IP.
//! let rules = InboundRules::default();
//! let (method, uri, headers) = (request.method(), request.uri(), request.headers());
//! let accepted = validate(method, uri, headers, "10.0.0.2:15008".parse()?, &rules)?;
//! assert_eq!(accepted.target, "10.0.0.2:8080".parse()?);
//!
//! // Dialled at another address, the same CONNECT is a 400.
//! let refused = validate(method, uri, headers, "10.0.0.3:15008".parse()?, &rules).unwrap_err();
//! assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod authority;
pub mod baggage;
pub mod connect;
pub mod double;
pub mod forwarded;
pub mod pool;
pub mod settings;
pub mod status;
pub mod traceparent;
#[cfg(feature = "tokio")]
pub mod transport;

pub use authority::{AuthorityError, HboneAddress};
pub use baggage::{Baggage, BaggageError, WorkloadKind};
pub use connect::{ConnectError, ConnectRequest};
pub use forwarded::{Forwarded, ForwardedError, ForwardedFor};
pub use settings::H2Settings;
pub use status::{Rejection, RejectionKind};
pub use traceparent::{TraceParent, TraceParentError};
