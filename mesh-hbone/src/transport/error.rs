//! Transport errors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_identity::spiffe::SpiffeId;
use mesh_identity::tls::{PeerIdentityError, TlsError};

use super::socket::ConnectTcpError;
use crate::connect::ConnectError;
use crate::settings::SettingsError;
use crate::status::Refused;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CONNECT request is malformed.
    #[error("invalid CONNECT request: {0}")]
    Request(#[from] ConnectError),
    /// The client has no certificate for the source identity a tunnel was asked to open as.
    #[error("no certificate for source identity {identity}: store one before opening tunnels as it")]
    NoCertificate {
        /// The source identity.
        identity: SpiffeId,
    },
    /// The TLS configuration could not be built.
    #[error("cannot build the mTLS client configuration: {0}")]
    TlsConfig(#[from] TlsError),
    /// The settings are unusable.
    #[error("invalid HTTP/2 settings: {0}")]
    Settings(#[from] SettingsError),
    /// The original source IP could not be bound.
    #[error(transparent)]
    Bind(ConnectTcpError),
    /// The TCP connect failed.
    #[error("TCP connect to {address} failed: {source} (is a NetworkPolicy blocking HBONE port 15008?)")]
    Connect {
        /// The peer proxy's address.
        address: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// A step did not finish in time.
    #[error("{step} with {address} timed out after {after:?}")]
    Timeout {
        /// `TCP connect` or `TLS handshake`.
        step: &'static str,
        /// The peer proxy's address.
        address: SocketAddr,
        /// The limit.
        after: Duration,
    },
    /// The TLS handshake failed (including a peer identity that was not expected).
    #[error("mTLS handshake with {address} failed: {source}")]
    Handshake {
        /// The peer proxy's address.
        address: SocketAddr,
        /// The error rustls reported.
        source: io::Error,
    },
    /// The peer did not negotiate HTTP/2.
    #[error("peer {address} did not negotiate ALPN h2; it is not an HBONE endpoint")]
    NoH2 {
        /// The peer proxy's address.
        address: SocketAddr,
    },
    /// The peer's identity could not be read.
    #[error("peer identity: {0}")]
    PeerIdentity(#[from] PeerIdentityError),
    /// HTTP/2 failed.
    #[error("HTTP/2 with {address} failed: {source}")]
    H2 {
        /// The peer proxy's address.
        address: SocketAddr,
        /// The h2 error.
        source: h2::Error,
    },
    /// The connection this checkout was waiting for could not be established.
    #[error("the shared connection to {address} failed: {reason}")]
    SharedConnectFailed {
        /// The peer proxy's address.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The peer answered the CONNECT with an error status.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Double HBONE: the outer tunnel to the gateway opened, the inner hop to the destination failed.
    #[error("double HBONE to {destination} through gateway {gateway}: {source}")]
    Inner {
        /// The gateway's HBONE address.
        gateway: SocketAddr,
        /// The inner CONNECT's authority.
        destination: String,
        /// What failed on the inner hop.
        source: Box<ClientError>,
    },
}

impl ClientError {
    /// The refusal, when the peer answered with an error status (through a gateway, either hop's).
    pub fn refused(&self) -> Option<&Refused> {
        match self {
            ClientError::Refused(refused) => Some(refused),
            ClientError::Inner { source, .. } => source.refused(),
            _ => None,
        }
    }
}

/// Why a server could not be built or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS configuration could not be built.
    #[error("cannot build the mTLS server configuration: {0}")]
    TlsConfig(#[from] TlsError),
    /// The settings are unusable.
    #[error("invalid HTTP/2 settings: {0}")]
    Settings(#[from] SettingsError),
    /// A socket operation failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The server has no identity at the address the client dialled: the connection was closed before TLS.
    #[error("{peer} dialled {dialled}, where this server has no identity; connection refused before TLS")]
    NoIdentity {
        /// The client's address.
        peer: SocketAddr,
        /// The local address it dialled.
        dialled: SocketAddr,
    },
    /// The TLS handshake failed or timed out.
    #[error("mTLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// The client's address.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The peer's identity could not be read.
    #[error("peer identity: {0}")]
    PeerIdentity(#[from] PeerIdentityError),
    /// The client completed TLS but not the HTTP/2 handshake (its preface and SETTINGS) in time.
    #[error("{peer} sent no HTTP/2 preface within {after:?} of the TLS handshake")]
    Preface {
        /// The client's address.
        peer: SocketAddr,
        /// The limit ([`ServerLimits::preface_timeout`](super::ServerLimits::preface_timeout)).
        after: Duration,
    },
    /// HTTP/2 failed.
    #[error("HTTP/2 with {peer} failed: {source}")]
    H2 {
        /// The client's address.
        peer: SocketAddr,
        /// The h2 error.
        source: h2::Error,
    },
}

/// A tunnel that ended with a reset (RST_STREAM, or GOAWAY closing its connection) rather than END_STREAM: what
/// was read of it is not the whole transfer. It travels inside the `io::Error` (kind `ConnectionReset`) that
/// [`HboneStream`](super::HboneStream) reads and [`relay`](super::relay) returns; `get_ref()` and `downcast_ref`
/// reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HBONE tunnel cut short, {by} with {reason:?} ({reason}): the transfer is incomplete")]
pub struct TunnelReset {
    /// The HTTP/2 error code: CONNECT_ERROR when the far end's TCP connection failed (RFC 9113 section 8.5),
    /// CANCEL when the far end gave up, and so on.
    pub reason: h2::Reason,
    /// `stream reset` or `connection closed (GOAWAY)`.
    pub by: &'static str,
}
