//! The original destination of a connection that iptables or nftables redirected to the proxy (`REDIRECT`,
//! `DNAT`), as netfilter's connection tracking recorded it: `SO_ORIGINAL_DST` for IPv4 and
//! `IP6T_SO_ORIGINAL_DST` for IPv6 (Linux).
//!
//! A node proxy captures a workload's outbound traffic this way and needs the address the workload dialled.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Why the original destination cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OriginalDstError {
    /// The socket's own address cannot be read (the socket is closed, for example).
    #[error("cannot read the socket's local address: {0}")]
    LocalAddress(io::Error),
    /// Connection tracking has no entry for the connection: it was not redirected by a NAT rule, or conntrack
    /// does not run in the socket's network namespace.
    #[error(
        "connection to {local} is not tracked by netfilter, so it has no original destination (was it redirected \
         by an iptables/nftables NAT rule in this network namespace?)"
    )]
    NotTracked {
        /// The socket's own address.
        local: SocketAddr,
    },
    /// The kernel refused the lookup for another reason.
    #[error("cannot read the original destination of the connection to {local}: {error}")]
    Lookup {
        /// The socket's own address.
        local: SocketAddr,
        /// What the kernel said.
        error: io::Error,
    },
    /// The kernel answered with an address that is not an IP socket address.
    #[error("the original destination of the connection to {local} is not an IP socket address")]
    NotInet {
        /// The socket's own address.
        local: SocketAddr,
    },
    /// Not Linux: there is no `SO_ORIGINAL_DST`.
    #[error("reading the original destination (SO_ORIGINAL_DST) is only supported on Linux")]
    Unsupported,
}

/// The destination `stream` had before netfilter redirected it: the address its peer dialled.
///
/// IPv4 connections (including IPv4-mapped ones on an IPv6 socket) are looked up with `SO_ORIGINAL_DST`,
/// IPv6 ones with `IP6T_SO_ORIGINAL_DST`. A connection that was tracked but not translated reports its own
/// local address.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn original_dst(stream: &TcpStream) -> Result<SocketAddr, OriginalDstError> {
    let local = stream.local_addr().map_err(OriginalDstError::LocalAddress)?;
    let socket = socket2::SockRef::from(stream);
    let v4 = match local {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
    };
    let found = if v4 { socket.original_dst_v4() } else { socket.original_dst_v6() };
    let address = found.map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => OriginalDstError::NotTracked { local },
        _ => OriginalDstError::Lookup { local, error },
    })?;
    address.as_socket().ok_or(OriginalDstError::NotInet { local })
}

/// The destination `stream` had before netfilter redirected it; not supported outside Linux.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn original_dst(_stream: &TcpStream) -> Result<SocketAddr, OriginalDstError> {
    Err(OriginalDstError::Unsupported)
}
