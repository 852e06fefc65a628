//! Everything that can go wrong in the node proxy, as one type: what stops it starting, and what ends a
//! connection. How each connection error reaches the client (the HBONE status, the SOCKS5 reply) and the
//! metrics (the response flags) is decided here and nowhere else.

use std::net::{IpAddr, SocketAddr};

use mesh_hbone::Rejection;
use mesh_runtime::config::ConfigError;
use mesh_runtime::listen::ListenError;
use mesh_runtime::metrics::ResponseFlags;
use mesh_runtime::pki::PkiError;

use crate::live::Closed;

/// Why the node proxy could not start, or a connection did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The CA or a certificate could not be set up.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A listener could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The node's own identity or certificate resolver could not be made.
    #[error("identity: {0}")]
    Identity(String),
    /// A Pod handed over by istio-cni could not be served inside its network namespace.
    #[error("Pod {uid}: {reason}")]
    InPod {
        /// The Pod's uid.
        uid: String,
        /// What failed.
        reason: String,
    },

    /// An outbound connection's client is not a workload of this node in the mesh.
    #[error("source {0} is not a workload of this node in the mesh")]
    UnknownSource(IpAddr),
    /// An inbound connection's destination is not a workload of this node.
    #[error("no workload of this node has the address {0}")]
    NotLocal(SocketAddr),
    /// A redirected connection's original destination is unknown (it was not redirected).
    #[error("the connection was not redirected, so its destination is unknown")]
    NotRedirected,
    /// The peer's certificate names no Istio workload identity.
    #[error("{0} is not an Istio workload identity")]
    NotIstioIdentity(String),
    /// Policy (AuthorizationPolicy, or PeerAuthentication for plaintext) denies the connection.
    #[error("{reason}")]
    Denied {
        /// The decision, explained.
        reason: String,
        /// `namespace/name` of the deciding policy, if one decided.
        policy: Option<String>,
    },
    /// The destination cannot be reached (no endpoint, no address, a host that does not resolve).
    #[error("{0}")]
    Unreachable(String),
    /// The peer proxy refused the tunnel.
    #[error("refused by {peer}: {reason}")]
    Refused {
        /// Which proxy.
        peer: String,
        /// What it answered.
        reason: String,
        /// Whether it was a policy denial (401).
        denied: bool,
    },
    /// The connection to the destination workload (or outside the mesh) failed.
    #[error("connecting to {target}: {reason}")]
    Connect {
        /// Where.
        target: SocketAddr,
        /// What the system said.
        reason: String,
    },
    /// An open connection was closed: a new configuration denies it, or the drain deadline passed.
    #[error("{}", .0.as_str())]
    Closed(Closed),
}

/// SOCKS5 reply codes (RFC 1928).
pub(crate) mod socks5_reply {
    /// General SOCKS server failure.
    pub(crate) const GENERAL_FAILURE: u8 = 0x01;
    /// Connection not allowed by ruleset.
    pub(crate) const NOT_ALLOWED: u8 = 0x02;
    /// Host unreachable.
    pub(crate) const HOST_UNREACHABLE: u8 = 0x04;
}

impl Error {
    /// Whether policy refused it (here or at the peer).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Error::Denied { .. }
                | Error::NotIstioIdentity(_)
                | Error::UnknownSource(_)
                | Error::Refused { denied: true, .. }
                | Error::Closed(Closed::Denied)
        )
    }

    /// The response flags of the connection's metric series.
    pub fn response_flags(&self) -> ResponseFlags {
        if self.is_denial() {
            return ResponseFlags::Denied;
        }
        match self {
            Error::Unreachable(_) | Error::NotLocal(_) => ResponseFlags::NoHealthyUpstream,
            Error::Closed(Closed::Drained) => ResponseFlags::None,
            _ => ResponseFlags::ConnectFailure,
        }
    }

    /// The answer to an HBONE CONNECT: 401 for a denial, 503 when the destination cannot be reached.
    pub(crate) fn rejection(&self, target: SocketAddr) -> Rejection {
        if self.is_denial() {
            Rejection::Denied { reason: self.to_string() }
        } else {
            Rejection::UpstreamConnect { target, reason: self.to_string() }
        }
    }

    /// The SOCKS5 reply: "not allowed by ruleset" for a denial, "host unreachable", or a general failure.
    pub(crate) fn socks5_reply(&self) -> u8 {
        if self.is_denial() {
            socks5_reply::NOT_ALLOWED
        } else if matches!(self, Error::Unreachable(_) | Error::Connect { .. }) {
            socks5_reply::HOST_UNREACHABLE
        } else {
            socks5_reply::GENERAL_FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_one_status_reply_and_flag() {
        let target: SocketAddr = ([10, 0, 0, 1], 8080).into();
        let denied = Error::Denied { reason: "DENY at ztunnel".into(), policy: Some("payments/deny".into()) };
        assert_eq!(denied.rejection(target).kind().status().as_u16(), 401);
        assert_eq!(denied.socks5_reply(), socks5_reply::NOT_ALLOWED);
        assert_eq!(denied.response_flags(), ResponseFlags::Denied);
        let peer_denied = Error::Refused { peer: "10.0.0.2:15008".into(), reason: "401".into(), denied: true };
        assert_eq!(peer_denied.socks5_reply(), socks5_reply::NOT_ALLOWED);
        let unavailable = Error::Refused { peer: "10.0.0.2:15008".into(), reason: "503".into(), denied: false };
        assert_eq!(unavailable.socks5_reply(), socks5_reply::GENERAL_FAILURE);
        assert_eq!(unavailable.response_flags(), ResponseFlags::ConnectFailure);
        let refused = Error::Connect { target, reason: "connection refused".into() };
        assert_eq!(refused.rejection(target).kind().status().as_u16(), 503);
        assert_eq!(refused.socks5_reply(), socks5_reply::HOST_UNREACHABLE);
        assert_eq!(Error::NotLocal(target).response_flags(), ResponseFlags::NoHealthyUpstream);
        assert_eq!(Error::Closed(Closed::Denied).response_flags(), ResponseFlags::Denied);
        assert_eq!(Error::Closed(Closed::Drained).response_flags(), ResponseFlags::None);
    }
}
