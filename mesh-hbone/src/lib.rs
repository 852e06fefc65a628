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
//! The `tokio` feature adds [`transport`]: an h2 + tokio-rustls client and server using `mesh-identity`'s
//! mTLS configurations.
#![forbid(unsafe_code)]

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
