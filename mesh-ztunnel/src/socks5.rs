//! The SOCKS5 outbound listener (RFC 1928, CONNECT without authentication), as Istio's ztunnel offers on
//! 15080: the source workload is identified by the client's source IP, the destination is the address or
//! host name in the request. The reply is sent once the upstream side is open, so a denial is the client's
//! connection refused ("connection not allowed by ruleset").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::node::Node;
use crate::outbound::{self, Dialled};
use mesh_runtime::shutdown::Shutdown;

/// How long a client may take over its greeting and request.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Reply codes.
const SUCCEEDED: u8 = 0x00;
const GENERAL_FAILURE: u8 = crate::error::socks5_reply::GENERAL_FAILURE;
const COMMAND_NOT_SUPPORTED: u8 = 0x07;
const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

/// A malformed or unsupported SOCKS5 exchange.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Socks5Error {
    /// Not SOCKS version 5.
    #[error("not SOCKS5 (version byte {0})")]
    Version(u8),
    /// The client offers no method this server supports (only "no authentication").
    #[error("the client offers no supported authentication method")]
    NoMethod,
    /// Only CONNECT is supported.
    #[error("command {0} is not supported (only CONNECT)")]
    Command(u8),
    /// Unknown address type.
    #[error("address type {0} is not supported")]
    AddressType(u8),
    /// The host name is not UTF-8.
    #[error("the host name is not valid")]
    HostName,
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Accepts SOCKS5 clients until shutdown.
pub(crate) async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: Shutdown) {
    mesh_runtime::listen::accept_until(listener, &shutdown, |stream, peer| handle(Arc::clone(&node), stream, peer))
        .await;
}

async fn handle(node: Arc<Node>, mut stream: TcpStream, peer: SocketAddr) {
    let dialled = match tokio::time::timeout(HANDSHAKE, handshake(&mut stream)).await {
        Ok(Ok(dialled)) => dialled,
        Ok(Err(e)) => {
            debug!(src.addr = %peer, error = %e, "SOCKS5 handshake failed");
            let code = match e {
                Socks5Error::Command(_) => Some(COMMAND_NOT_SUPPORTED),
                Socks5Error::AddressType(_) => Some(ADDRESS_TYPE_NOT_SUPPORTED),
                Socks5Error::HostName => Some(GENERAL_FAILURE),
                _ => None,
            };
            if let Some(code) = code {
                let _ = stream.write_all(&reply(code)).await;
            }
            return;
        }
        Err(_) => return,
    };
    outbound::proxy(node, stream, peer.ip(), dialled, |result, mut stream| async move {
        let code = match result {
            Ok(()) => SUCCEEDED,
            Err(code) => code,
        };
        stream.write_all(&reply(code)).await.ok()?;
        (code == SUCCEEDED).then_some(stream)
    })
    .await;
}

/// Reads the greeting and the request, answers the greeting, and returns the destination.
pub(crate) async fn handshake(stream: &mut TcpStream) -> Result<Dialled, Socks5Error> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(Socks5Error::Version(head[0]));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        stream.write_all(&[5, 0xff]).await?;
        return Err(Socks5Error::NoMethod);
    }
    stream.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    stream.read_exact(&mut request).await?;
    if request[0] != 5 {
        return Err(Socks5Error::Version(request[0]));
    }
    let dialled = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            stream.read_exact(&mut ip).await?;
            Dialled::Addr(SocketAddr::new(IpAddr::from(Ipv4Addr::from(ip)), stream.read_u16().await?))
        }
        4 => {
            let mut ip = [0u8; 16];
            stream.read_exact(&mut ip).await?;
            Dialled::Addr(SocketAddr::new(IpAddr::from(Ipv6Addr::from(ip)), stream.read_u16().await?))
        }
        3 => {
            let len = stream.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            stream.read_exact(&mut name).await?;
            let name = String::from_utf8(name).map_err(|_| Socks5Error::HostName)?;
            let port = stream.read_u16().await?;
            match name.parse::<IpAddr>() {
                Ok(ip) => Dialled::Addr(SocketAddr::new(ip, port)),
                Err(_) if !name.is_empty() => Dialled::Host(name, port),
                Err(_) => return Err(Socks5Error::HostName),
            }
        }
        other => return Err(Socks5Error::AddressType(other)),
    };
    if request[1] != 1 {
        return Err(Socks5Error::Command(request[1]));
    }
    Ok(dialled)
}

/// A reply with `code` and an unspecified bound address.
fn reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}
