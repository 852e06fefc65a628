//! The HBONE transport (feature `tokio`): HTTP/2 (h2) over mutual TLS (tokio-rustls), with
//! `mesh-identity`'s HBONE configurations.
//!
//! - [`HboneClient`]: pooled mTLS HTTP/2 connections to peer proxies, one CONNECT stream per tunnel,
//!   returning an [`HboneStream`] and the peer's verified identity. [`HboneClient::connect_double`] reaches a
//!   destination through a network gateway (double HBONE). Idle connections are closed in the background.
//! - [`HboneServer`]: accepts mTLS connections, validates each CONNECT with [`crate::status::validate`], asks
//!   a caller-supplied [`Handler`] for the upstream (or a [`crate::Rejection`]) and relays bytes both ways, or
//!   hands the tunnel to the handler ([`TakeOver`]) to serve HTTP in it; [`HboneServer::serve_until`] drains
//!   on shutdown. Its certificate is chosen per connection by the dialled address ([`ServerIdentity`],
//!   [`WorkloadIdentities`] for a node proxy's workloads).
//! - Certificates from a [`CertificateStore`](mesh_identity::store::CertificateStore): servers and
//!   [`HboneClient::from_store`] present the certificate current at each handshake, so rotations need no
//!   rebuilding and keep the pool.
//! - [`Tunnels`]: the open tunnels, inbound and outbound, each with a [`TunnelHandle`] (peer, target, bytes
//!   each way, opening time, `close()`), and a [`TunnelObserver`] for metrics.
//! - [`relay`]: copies a tunnel to and from another stream without staging the bytes, as the server does with
//!   each upstream and a client proxy does with the workload's connection.
//! - [`connect_tcp`]: outbound TCP, optionally bound to the original source IP (transparently when it is not
//!   the node's own), for the client's connections and for handlers' upstreams, whose kernel buffers it fixes
//!   ([`SocketBuffers`]) so that a stalled tunnel holds a bounded amount of kernel memory.
//! - [`original_dst`]: the address a workload dialled before iptables/nftables redirected its connection to
//!   the proxy (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST`).
//!
//! What an untrusted peer controls is bounded (see [`ServerLimits`] and the README): connections served at
//! once, concurrent streams per connection (SETTINGS), header list size, the time of every phase of a
//! connection (TLS handshake, HTTP/2 preface, keepalive with unpredictable PING payloads, idle, the final
//! GOAWAY), upstream connects in flight per connection and in total (a reset CONNECT cancels its handler),
//! bytes waiting in send buffers per connection and in total, the kernel buffers of upstream sockets, the
//! rate of control frames and of their bytes, and the size of SETTINGS frames.
//!
//! A tunnel that ends with a reset rather than END_STREAM reads as an error ([`TunnelReset`]) on both sides;
//! a relay whose upstream fails resets its tunnel with CONNECT_ERROR.

//!
//! A server proxy and a client proxy on loopback, with certificates from a local CA:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use mesh_hbone::transport::{Destination, HboneClient, HboneServer, InboundRequest, connect_tcp};
//! use mesh_hbone::{ConnectRequest, Rejection};
//! use mesh_identity::ca::{CaOptions, LocalCa};
//! use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
//! use mesh_identity::tls::WorkloadCertificate;
//! use rustls_pki_types::UnixTime;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let td = TrustDomain::new("cluster.local")?;
//! let ca = LocalCa::new_root(td.clone(), &CaOptions::default(), UnixTime::now())?;
//! let bundles = Arc::new([ca.trust_bundle().clone()].into_iter().collect());
//! let svid = |sa: &str| -> Result<WorkloadCertificate, Box<dyn std::error::Error>> {
//!     let id = IstioIdentity::new(&td, "default", sa)?;
//!     let issued = ca.issue(&id, Duration::from_secs(3600), UnixTime::now())?;
//!     let key = issued.private_key_pem().ok_or("the CA generated the key, so it has it")?;
//!     Ok(WorkloadCertificate::from_pem(&issued.cert_chain_pem(), &key)?)
//! };
//!
//! // The application: an echo server.
//! let app = TcpListener::bind("127.0.0.1:0").await?;
//! let app_addr = app.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut socket, _)) = app.accept().await {
//!         tokio::spawn(async move {
//!             let (mut r, mut w) = socket.split();
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!     }
//! });
//!
//! // The destination's proxy: authorization would go in the handler.
//! let server = HboneServer::new(&svid("echo")?, Arc::clone(&bundles), [td.clone()])?;
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let hbone = listener.local_addr()?;
//! tokio::spawn(async move {
//!     server
//!         .serve(listener, |request: InboundRequest| async move {
//!             connect_tcp(request.target, None, Duration::from_secs(5))
//!                 .await
//!                 .map_err(|e| Rejection::UpstreamConnect { target: request.target, reason: e.to_string() })
//!         })
//!         .await
//! });
//!
//! // The source's proxy opens a tunnel to the application, expecting the destination's identity.
//! let client = HboneClient::new(svid("sleep")?, bundles);
//! let destination = Destination { address: hbone, identities: vec![IstioIdentity::new(&td, "default", "echo")?.spiffe_id().clone()] };
//! let mut tunnel = client.connect(&destination, ConnectRequest::new(app_addr)).await?;
//! assert_eq!(tunnel.peer.as_str(), "spiffe://cluster.local/ns/default/sa/echo");
//! tunnel.stream.write_all(b"ping").await?;
//! let mut echoed = [0; 4];
//! tunnel.stream.read_exact(&mut echoed).await?;
//! assert_eq!(&echoed, b"ping");
//! # Ok(())
//! # }
//! ```

//!
//! A node proxy answering for a workload IP with the store's certificate of that workload, a client proxy
//! opening a tunnel as another workload of the store, and the tunnel closed by its handle when policy changes:
//!
//! ```
//! use std::time::Duration;
//!
//! use mesh_hbone::transport::{Destination, HboneClient, HboneServer, InboundRequest, Tunnels, WorkloadIdentities};
//! use mesh_hbone::{ConnectRequest, Rejection};
//! use mesh_identity::ca::{CaOptions, LocalCa};
//! use mesh_identity::rotation::Jitter;
//! use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
//! use mesh_identity::store::CertificateStore;
//! use rustls_pki_types::UnixTime;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::{TcpListener, TcpStream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let td = TrustDomain::new("cluster.local")?;
//! let now = UnixTime::now();
//! let ca = LocalCa::new_root(td.clone(), &CaOptions::default(), now)?;
//! let store = CertificateStore::new([ca.trust_bundle().clone()].into_iter().collect());
//! let reviews = IstioIdentity::new(&td, "default", "reviews")?;
//! let sleep = IstioIdentity::new(&td, "default", "sleep")?;
//! store.issue(&ca, &reviews, now, Jitter::None)?;
//! store.issue(&ca, &sleep, now, Jitter::None)?;
//!
//! // The application of `reviews`: it says hello and keeps the connection open.
//! let app = TcpListener::bind("127.0.0.1:0").await?;
//! let app_addr = app.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut socket, _)) = app.accept().await {
//!         tokio::spawn(async move {
//!             let _ = socket.write_all(b"hello").await;
//!             let mut rest = Vec::new();
//!             let _ = socket.read_to_end(&mut rest).await;
//!         });
//!     }
//! });
//!
//! // The node proxy: `reviews` lives at 127.0.0.1; its tunnels are listed in `inbound`.
//! let identities = WorkloadIdentities::new(store.clone(), [td.clone()])?;
//! identities.insert("127.0.0.1".parse()?, reviews.spiffe_id())?;
//! let inbound = Tunnels::new();
//! let server = HboneServer::with_identity(identities).with_tunnels(inbound.clone());
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let hbone = listener.local_addr()?;
//! tokio::spawn(async move {
//!     server
//!         .serve(listener, |request: InboundRequest| async move {
//!             TcpStream::connect(request.target)
//!                 .await
//!                 .map_err(|e| Rejection::UpstreamConnect { target: request.target, reason: e.to_string() })
//!         })
//!         .await
//! });
//!
//! // The client proxy opens a tunnel as `sleep`, with the store's current certificate.
//! let client = HboneClient::from_store(store.clone(), sleep.spiffe_id().clone());
//! let destination = Destination { address: hbone, identities: vec![reviews.spiffe_id().clone()] };
//! let mut tunnel = client.connect(&destination, ConnectRequest::new(app_addr)).await?;
//! let mut hello = [0; 5];
//! tunnel.stream.read_exact(&mut hello).await?;
//! assert_eq!(tunnel.stream.handle().map(|h| h.bytes_received()), Some(5));
//!
//! // A new policy denies `sleep`: the node proxy closes its tunnels, and the client reads the reset.
//! let denied = inbound.close_where(|t| t.peer() == sleep.spiffe_id());
//! assert_eq!(denied, 1);
//! let mut rest = Vec::new();
//! let read = tokio::time::timeout(Duration::from_secs(5), tunnel.stream.read_to_end(&mut rest)).await?;
//! assert!(read.is_err());
//! # Ok(())
//! # }
//! ```

mod budget;
mod client;
mod copy;
mod error;
mod frames;
mod guard;
mod identity;
mod keepalive;
mod original_dst;
mod server;
mod socket;
mod stream;
mod trace;
mod tunnels;
mod upstream;

pub use client::{ClientConfig, DEFAULT_CONNECT_TIMEOUT, Destination, HboneClient, Tunnel};
pub use copy::relay;
pub use error::{ClientError, ServerError, TunnelReset};
pub use identity::{ServerIdentity, WorkloadIdentities};
pub use original_dst::{OriginalDstError, original_dst};
pub use server::{Drained, Handler, HboneServer, InboundRequest, ServerLimits};
pub use socket::{
    ConnectTcpError, SocketBuffers, SocketFactory, SocketOptions, connect_tcp, connect_tcp_from, connect_tcp_with,
};
pub use stream::HboneStream;
pub use trace::random_traceparent;
pub use tunnels::{Direction, TunnelHandle, TunnelObserver, Tunnels};
pub use upstream::{TakeOver, Upstream};
