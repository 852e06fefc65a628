//! Outbound TCP connects, optionally from a chosen source IP.
//!
//! A node proxy that keeps the original source address of the traffic it carries (ztunnel's original-source
//! binding) binds its outbound socket to that IP before connecting. When the IP is not one of the node's own,
//! the kernel only allows it on a transparent socket (`IP_TRANSPARENT`, Linux, which needs `CAP_NET_ADMIN`):
//! the bind is first tried plainly, and transparently only if the address is not local.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// Why a connect failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectTcpError {
    /// The source IP could not be bound.
    #[error(
        "cannot bind source IP {source_ip}: {error} (binding an address that is not the node's own needs \
         IP_TRANSPARENT, which needs CAP_NET_ADMIN)"
    )]
    Bind {
        /// The source IP asked for.
        source_ip: IpAddr,
        /// What the kernel said.
        error: io::Error,
    },
    /// The source IP and the target are of different IP versions.
    #[error("source IP {source_ip} and target {target} are not of the same IP version")]
    FamilyMismatch {
        /// The source IP asked for.
        source_ip: IpAddr,
        /// The target.
        target: SocketAddr,
    },
    /// The connect failed.
    #[error("TCP connect to {target} failed: {error}")]
    Connect {
        /// The target.
        target: SocketAddr,
        /// What the kernel said.
        error: io::Error,
    },
    /// The connect did not finish in time.
    #[error("TCP connect to {target} timed out after {after:?}")]
    Timeout {
        /// The target.
        target: SocketAddr,
        /// The limit.
        after: Duration,
    },
}

/// Connects to `target` within `timeout`, from `source_ip` when given (any port), with `TCP_NODELAY` set.
///
/// A `source_ip` that is unspecified (`0.0.0.0`, `::`) means the kernel chooses, as with `None`.
pub async fn connect_tcp(
    target: SocketAddr,
    source_ip: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectTcpError> {
    let socket = match source_ip.filter(|ip| !ip.is_unspecified()) {
        None => {
            let socket = if target.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
            socket.map_err(|error| ConnectTcpError::Connect { target, error })?
        }
        Some(source_ip) => bound_socket(source_ip, target)?,
    };
    let stream = tokio::time::timeout(timeout, socket.connect(target))
        .await
        .map_err(|_| ConnectTcpError::Timeout { target, after: timeout })?
        .map_err(|error| ConnectTcpError::Connect { target, error })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A socket bound to `source_ip`, transparently when the address is not local.
fn bound_socket(source_ip: IpAddr, target: SocketAddr) -> Result<TcpSocket, ConnectTcpError> {
    if source_ip.is_ipv4() != target.is_ipv4() {
        return Err(ConnectTcpError::FamilyMismatch { source_ip, target });
    }
    let bind_error = |error| ConnectTcpError::Bind { source_ip, error };
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP)).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    let local = SocketAddr::new(source_ip, 0);
    match socket.bind(&local.into()) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AddrNotAvailable => {
            set_transparent(&socket, source_ip).map_err(bind_error)?;
            socket.bind(&local.into()).map_err(bind_error)?;
        }
        Err(error) => return Err(bind_error(error)),
    }
    Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(socket)))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_transparent(socket: &Socket, source_ip: IpAddr) -> io::Result<()> {
    if source_ip.is_ipv4() { socket.set_ip_transparent_v4(true) } else { socket.set_ip_transparent_v6(true) }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_transparent(_: &Socket, _: IpAddr) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "transparent sockets are Linux-only"))
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn binds_the_source_ip() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        // All of 127.0.0.0/8 is local on Linux; elsewhere only 127.0.0.1 may be.
        let source: IpAddr = if cfg!(target_os = "linux") { "127.0.0.9" } else { "127.0.0.1" }.parse().unwrap();
        let (stream, accepted) = tokio::join!(connect_tcp(target, Some(source), LIMIT), listener.accept());
        let stream = stream.unwrap();
        assert_eq!(stream.local_addr().unwrap().ip(), source);
        assert_eq!(accepted.unwrap().1.ip(), source);
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn unspecified_source_lets_the_kernel_choose() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let unspecified = Some(IpAddr::from([0, 0, 0, 0]));
        let (stream, _) = tokio::join!(connect_tcp(target, unspecified, LIMIT), listener.accept());
        assert_eq!(stream.unwrap().local_addr().unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[tokio::test]
    async fn mismatched_families_are_refused() {
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let error = connect_tcp(target, Some("::1".parse().unwrap()), LIMIT).await.unwrap_err();
        assert!(matches!(error, ConnectTcpError::FamilyMismatch { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_foreign_source_needs_transparency() {
        // 192.0.2.1 (TEST-NET-1) is not this host's: binding it needs IP_TRANSPARENT, which an unprivileged
        // process does not get. With CAP_NET_ADMIN the bind succeeds and the connect goes on.
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        match connect_tcp(target, Some("192.0.2.1".parse().unwrap()), Duration::from_millis(200)).await {
            Err(ConnectTcpError::Bind { source_ip, error }) => {
                assert_eq!(source_ip, IpAddr::from([192, 0, 2, 1]));
                assert!(
                    matches!(error.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported),
                    "{error}"
                );
            }
            Err(ConnectTcpError::Connect { .. } | ConnectTcpError::Timeout { .. }) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
}
