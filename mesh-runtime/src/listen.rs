//! Binding listeners, with errors an operator can act on.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::Shutdown;

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Something else listens there.
    #[error(
        "{what} {addr}: the port is in use (another proxy, or a previous run still draining?); choose another with {flag}"
    )]
    InUse {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The option that sets it.
        flag: &'static str,
    },
    /// The address is not one of this machine's.
    #[error("{what} {addr}: no interface has this address; choose another with {flag}")]
    NotLocal {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The option that sets it.
        flag: &'static str,
    },
    /// Any other failure.
    #[error("{what} {addr}: {source}")]
    Other {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
}

/// Binds `addr` for the listener `what`, set by the command-line option `flag`.
pub async fn bind(what: &'static str, addr: SocketAddr, flag: &'static str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => ListenError::InUse { what, addr, flag },
        io::ErrorKind::AddrNotAvailable => ListenError::NotLocal { what, addr, flag },
        _ => ListenError::Other { what, addr, source },
    })
}

/// Accepts connections until `shutdown`, each served by `serve` on a task of its own, with `TCP_NODELAY` set.
/// A failed accept (out of file descriptors, say) is logged and retried after a pause, not in a tight loop.
pub async fn accept_until<F, Fut>(listener: TcpListener, shutdown: &Shutdown, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, peer));
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_names_the_listener_and_the_option() -> Result<(), Box<dyn std::error::Error>> {
        let taken = TcpListener::bind("127.0.0.1:0").await?;
        let addr = taken.local_addr()?;
        let err = bind("admin", addr, "--admin-addr").await.err().ok_or("bound twice")?;
        let text = err.to_string();
        assert!(matches!(err, ListenError::InUse { .. }), "{text}");
        assert!(text.contains("admin") && text.contains("--admin-addr") && text.contains("in use"), "{text}");
        Ok(())
    }
}
