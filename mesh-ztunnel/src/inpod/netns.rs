//! Sockets made inside a Pod's network namespace: its listeners (15008, 15006, 15001) and the proxy's
//! connections on its behalf. A socket belongs to the namespace it was created in for its whole life, so only
//! the creation runs there, on a short-lived thread that enters the namespace (`setns`) and ends with it; the
//! proxy's own threads never change namespace.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, PoisonError, RwLock};

use mesh_hbone::transport::SocketFactory;
use socket2::{Domain, Protocol, Socket, Type};

/// A Pod's network namespace, as istio-cni's node agent handed it over.
#[derive(Debug, Clone)]
pub(crate) struct Netns(Arc<OwnedFd>);

impl Netns {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Netns(Arc::new(fd))
    }

    /// Runs `make` inside the namespace, on a thread of its own.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        make: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let fd = Arc::clone(&self.0);
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || {
                rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                    .map_err(|e| io::Error::other(format!("cannot enter the Pod's network namespace: {e}")))?;
                make()
            })?
            .join()
            .map_err(|_| io::Error::other("the thread that entered the Pod's network namespace failed"))?
    }

    /// A listener on `addr` inside the namespace: transparent (it accepts what TPROXY rules send it), marked,
    /// non-blocking.
    pub(crate) fn listener(&self, addr: SocketAddr, mark: Option<u32>) -> io::Result<std::net::TcpListener> {
        self.run(move || {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            if addr.is_ipv4() {
                socket.set_ip_transparent_v4(true)?;
            } else {
                socket.set_ip_transparent_v6(true)?;
            }
            if let Some(mark) = mark {
                socket.set_mark(mark)?;
            }
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            socket.set_nonblocking(true)?;
            Ok(socket.into())
        })
    }

    /// A TCP socket inside the namespace for a connection to `target`.
    pub(crate) fn tcp_socket(&self, target: SocketAddr) -> io::Result<Socket> {
        self.run(move || Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP)))
    }
}

/// The network namespaces of the Pods served in-pod, by Pod address: the proxy's connections from a Pod (its
/// tunnels) and to it (the inbound upstream) are made inside the Pod's namespace.
#[derive(Debug, Default)]
pub(crate) struct PodSockets {
    addresses: RwLock<super::Addresses>,
}

impl PodSockets {
    /// The namespace of the Pod at `ip`.
    pub(crate) fn netns(&self, ip: IpAddr) -> Option<Netns> {
        self.addresses.read().unwrap_or_else(PoisonError::into_inner).by_ip.get(&ip).cloned()
    }

    /// Replaces the map.
    pub(crate) fn replace(&self, addresses: super::Addresses) {
        *self.addresses.write().unwrap_or_else(PoisonError::into_inner) = addresses;
    }

    /// The address of the Pod `uid`, as the configuration knows it.
    pub(crate) fn address(&self, uid: &str) -> Option<IpAddr> {
        self.addresses.read().unwrap_or_else(PoisonError::into_inner).by_uid.get(uid).copied()
    }
}

/// The HBONE client's sockets for tunnels from a Pod served in-pod.
#[derive(Debug, Clone)]
pub(crate) struct PodSocketFactory(pub(crate) Arc<PodSockets>);

impl SocketFactory for PodSocketFactory {
    fn tcp_socket(&self, source_ip: IpAddr, target: SocketAddr) -> Option<io::Result<Socket>> {
        self.0.netns(source_ip).map(|netns| netns.tcp_socket(target))
    }
}
