//! Outbound TCP connects, optionally from a chosen source IP.
//!
//! A node proxy that keeps the original source address of the traffic it carries (ztunnel's original-source
//! binding) binds its outbound socket to that IP before connecting. When the IP is not one of the node's own,
//! the kernel only allows it on a transparent socket (`IP_TRANSPARENT`, Linux, which needs `CAP_NET_ADMIN`):
//! the bind is first tried plainly, and transparently only if the address is not local.
//!
//! Upstream sockets get fixed buffer sizes ([`SocketBuffers::UPSTREAM`]). A relay stops reading its upstream
//! while the tunnel's peer does not read, and the kernel then holds what the upstream keeps sending in the
//! socket's receive buffer; left to autotuning, that buffer grows to `net.ipv4.tcp_rmem`'s maximum (6 MiB or
//! more) for every stalled tunnel. The send buffer, for a peer that sends to an upstream that does not read,
//! likewise grows to `net.ipv4.tcp_wmem`'s maximum (4 MiB).

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

/// The kernel buffer sizes of a TCP socket (`SO_RCVBUF`, `SO_SNDBUF`), in bytes; `None` leaves a buffer to
/// the kernel's autotuning.
///
/// Setting a size turns autotuning off for that buffer: it neither grows with the connection's bandwidth-delay
/// product nor, when the application stops reading (or the far end does), with the bytes waiting. Linux
/// doubles the value for its own bookkeeping (`getsockopt` reports twice what was set) and caps it at
/// `net.core.rmem_max` / `net.core.wmem_max` (212,992 bytes by default on many distributions; this needs no
/// privilege). A socket's throughput is then at most its buffer per round trip: 256 KiB is about 2 GiB/s at
/// 125 µs (a node's own pods), 250 MiB/s at 1 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketBuffers {
    /// `SO_RCVBUF`: what the kernel holds of what the far end sent and the application has not read.
    pub recv: Option<u32>,
    /// `SO_SNDBUF`: what the kernel holds of what the application wrote and the far end has not acknowledged.
    pub send: Option<u32>,
}

impl SocketBuffers {
    /// For a relay's upstream: 256 KiB each way. What [`connect_tcp`] sets, and what
    /// [`ServerLimits::upstream_buffers`](super::ServerLimits::upstream_buffers) holds upstreams to.
    pub const UPSTREAM: SocketBuffers = SocketBuffers { recv: Some(256 * 1024), send: Some(256 * 1024) };

    /// Both buffers left to autotuning: for a socket that is always read, such as an HBONE connection's, whose
    /// HTTP/2 frames are read as they come and bounded by flow control.
    pub const AUTOTUNED: SocketBuffers = SocketBuffers { recv: None, send: None };

    /// Sets the sizes on a connected socket (or one about to connect).
    pub(crate) fn apply(&self, socket: socket2::SockRef<'_>) -> io::Result<()> {
        if let Some(recv) = self.recv {
            socket.set_recv_buffer_size(recv as usize)?;
        }
        if let Some(send) = self.send {
            socket.set_send_buffer_size(send as usize)?;
        }
        Ok(())
    }
}

impl Default for SocketBuffers {
    fn default() -> Self {
        SocketBuffers::UPSTREAM
    }
}

/// How a connection's socket is set up before it connects: its kernel buffers and, on Linux, a firewall mark
/// (`SO_MARK`, which needs `CAP_NET_ADMIN`). A node proxy marks its own connections so that the redirection
/// rules around it let them pass (Istio's ztunnel uses mark 1337, `0x539`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SocketOptions {
    /// The kernel buffer sizes.
    pub buffers: SocketBuffers,
    /// The firewall mark, if any.
    pub mark: Option<u32>,
}

impl From<SocketBuffers> for SocketOptions {
    fn from(buffers: SocketBuffers) -> Self {
        SocketOptions { buffers, mark: None }
    }
}

impl SocketOptions {
    fn apply(&self, socket: socket2::SockRef<'_>) -> io::Result<()> {
        self.buffers.apply(socket2::SockRef::from(&*socket))?;
        if let Some(mark) = self.mark {
            set_mark(socket, mark)?;
        }
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_mark(socket: socket2::SockRef<'_>, mark: u32) -> io::Result<()> {
    socket.set_mark(mark)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_mark(_: socket2::SockRef<'_>, _: u32) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "socket marks are Linux-only"))
}

/// Connects to `target` within `timeout`, from `source_ip` when given (any port), with `TCP_NODELAY` set and
/// the buffers of an upstream ([`SocketBuffers::UPSTREAM`]).
///
/// A `source_ip` that is unspecified (`0.0.0.0`, `::`) means the kernel chooses, as with `None`.
pub async fn connect_tcp(
    target: SocketAddr,
    source_ip: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectTcpError> {
    connect_tcp_with(target, source_ip, timeout, SocketBuffers::UPSTREAM).await
}

/// [`connect_tcp`] with the socket's buffer sizes (a [`SocketBuffers`]) or all its [`SocketOptions`] chosen,
/// set before the connect (so the window scale the kernel offers fits the receive buffer, and the SYN carries
/// the mark).
pub async fn connect_tcp_with(
    target: SocketAddr,
    source_ip: Option<IpAddr>,
    timeout: Duration,
    options: impl Into<SocketOptions>,
) -> Result<TcpStream, ConnectTcpError> {
    let options = options.into();
    let socket = match source_ip.filter(|ip| !ip.is_unspecified()) {
        None => {
            let socket = if target.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
            socket.map_err(|error| ConnectTcpError::Connect { target, error })?
        }
        Some(source_ip) => bound_socket(source_ip, target)?,
    };
    connect_socket(socket, target, timeout, options).await
}

/// Applies `options` to `socket` and connects it to `target` within `timeout`.
async fn connect_socket(
    socket: TcpSocket,
    target: SocketAddr,
    timeout: Duration,
    options: SocketOptions,
) -> Result<TcpStream, ConnectTcpError> {
    options.apply(socket2::SockRef::from(&socket)).map_err(|error| ConnectTcpError::Connect { target, error })?;
    let stream = tokio::time::timeout(timeout, socket.connect(target))
        .await
        .map_err(|_| ConnectTcpError::Timeout { target, after: timeout })?
        .map_err(|error| ConnectTcpError::Connect { target, error })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Makes the sockets of outgoing connections from some source addresses itself. A node proxy in Istio's
/// in-pod mode makes each Pod's connections inside the Pod's network namespace, so that they leave from the
/// Pod as its own traffic would.
pub trait SocketFactory: Send + Sync + 'static {
    /// A new TCP socket (not yet connected, of `target`'s address family) for a connection from `source_ip`
    /// to `target`; `None` to make it as usual.
    fn tcp_socket(&self, source_ip: IpAddr, target: SocketAddr) -> Option<io::Result<Socket>>;
}

/// [`connect_tcp_with`] from a socket made by a [`SocketFactory`]: the options are applied, then it connects.
pub async fn connect_tcp_from(
    socket: Socket,
    target: SocketAddr,
    timeout: Duration,
    options: impl Into<SocketOptions>,
) -> Result<TcpStream, ConnectTcpError> {
    socket.set_nonblocking(true).map_err(|error| ConnectTcpError::Connect { target, error })?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    connect_socket(socket, target, timeout, options.into()).await
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

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn upstreams_get_fixed_buffers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let (stream, _) = tokio::join!(connect_tcp(target, None, LIMIT), listener.accept());
        let stream = stream.unwrap();
        let socket = socket2::SockRef::from(&stream);
        // Linux doubles the size set, within the administrator's maximum.
        let max = |name: &str| -> usize {
            let path = format!("/proc/sys/net/core/{name}");
            std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
        };
        assert_eq!(socket.recv_buffer_size().unwrap(), 2 * (256 * 1024).min(max("rmem_max")));
        assert_eq!(socket.send_buffer_size().unwrap(), 2 * (256 * 1024).min(max("wmem_max")));
        let small = SocketBuffers { recv: Some(8 * 1024), send: None };
        let (stream, _) = tokio::join!(connect_tcp_with(target, None, LIMIT, small), listener.accept());
        assert_eq!(socket2::SockRef::from(&stream.unwrap()).recv_buffer_size().unwrap(), 16 * 1024);
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
