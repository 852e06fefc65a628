//! Istio's "sandwich" binding of third-party waypoints: the waypoint Pod is an ambient workload, its node proxy
//! terminates HBONE and delivers each tunnel as a plain connection that starts with a PROXY protocol v2 header
//! (the GatewayClass or Gateway carries `ambient.istio.io/waypoint-inbound-binding: PROXY/15088`).
//!
//! The header carries the client's address (source), the address the client dialled (destination: a Service
//! VIP and port, or the waypoint's own address) and, in TLV `0xD0`, the client's SPIFFE ID as the node proxy
//! authenticated it. That identity is trusted only because of who writes it:
//! - the listener is bound to a loopback address (the node proxy delivers inside the Pod's network namespace,
//!   on `127.0.0.1`), and a connection whose peer is not a loopback address is closed before a byte is read:
//!   the node proxy's plaintext passthrough copies any sender's bytes to `<Pod IP>:15088` verbatim, so a
//!   header arriving there could be forged;
//! - exactly one header is read, within [`HEADER_TIMEOUT`]; whatever follows is the client's payload, a second
//!   header included;
//! - a header that is not PROXY v2 with the PROXY command, lacks addresses, or does not carry exactly one
//!   well-formed identity is refused, and so is a destination this waypoint does not serve.
//!
//! Responses go to endpoints, never to a Service VIP: the waypoint Pod's own node proxy would send VIP traffic
//! back to the waypoint.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mesh_identity::spiffe::{IstioIdentity, SpiffeId};
use mesh_runtime::access::{AccessLog, Direction, Peer};
use mesh_runtime::drain::Connections;
use mesh_runtime::shutdown::Shutdown;
use ppp::v2::{Addresses, Command, Header};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::{Downstream, Proxy};
use crate::tcp::Downlink;

/// How long a connection may take to send its PROXY header. The node proxy writes it with the connection.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// The TLV Istio's ztunnel writes the client's SPIFFE ID in.
pub(crate) const IDENTITY_TLV: u8 = 0xD0;
/// The longest header read: the fixed 16 bytes, addresses and TLVs (a SPIFFE ID is at most 2,048 bytes).
const MAX_HEADER: usize = 16 + 4096;
/// The PROXY protocol v2 signature.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection was refused before its header was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderError {
    /// The peer is not on loopback: not the node proxy of this Pod.
    #[error("the peer {0} is not on loopback, so not this Pod's node proxy; nothing it sends is trusted")]
    NotLoopback(IpAddr),
    /// No complete header in time.
    #[error("no complete PROXY header within {HEADER_TIMEOUT:?}")]
    Timeout,
    /// The connection ended or failed before the header was complete.
    #[error("the connection ended before the PROXY header was complete: {0}")]
    Truncated(String),
    /// Not a PROXY protocol v2 header.
    #[error("not a PROXY protocol v2 header")]
    NotProxyV2,
    /// The header says it is longer than any the node proxy writes.
    #[error("a PROXY header of {0} bytes is longer than the {MAX_HEADER} accepted")]
    TooLong(usize),
    /// The header does not parse.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// The LOCAL command: no client to speak for.
    #[error("the PROXY header's command is LOCAL: it names no client")]
    Local,
    /// No IP addresses (UNSPEC or UNIX family): the destination is unknown.
    #[error("the PROXY header carries no IP addresses, so the destination is unknown")]
    NoAddresses,
    /// No identity TLV, or more than one.
    #[error("the PROXY header carries {0} identity TLVs (0xD0); exactly one is required")]
    Identities(usize),
    /// The identity is not a SPIFFE ID.
    #[error("the PROXY header's identity is not a SPIFFE ID: {0}")]
    BadIdentity(String),
}

/// What a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proxied {
    /// The client's address (the port is the client node proxy's pooled connection's: shared by many
    /// requests, so nothing is keyed on it).
    pub(crate) source: SocketAddr,
    /// The address the client dialled.
    pub(crate) destination: SocketAddr,
    /// The client's identity, as its node proxy authenticated it.
    pub(crate) identity: SpiffeId,
}

/// Whether a connection from `peer` may speak for clients: only this Pod's node proxy, on loopback.
pub(crate) fn trusted_peer(peer: IpAddr) -> Result<(), HeaderError> {
    let loopback = match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    if loopback { Ok(()) } else { Err(HeaderError::NotLoopback(peer)) }
}

/// Parses one whole header.
pub(crate) fn parse(bytes: &[u8]) -> Result<Proxied, HeaderError> {
    let header = Header::try_from(bytes).map_err(|e| HeaderError::Malformed(e.to_string()))?;
    if header.command != Command::Proxy {
        return Err(HeaderError::Local);
    }
    let (source, destination) = match header.addresses {
        Addresses::IPv4(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        Addresses::IPv6(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        Addresses::Unspecified | Addresses::Unix(_) => return Err(HeaderError::NoAddresses),
    };
    let mut identities = Vec::new();
    for tlv in header.tlvs() {
        let tlv = tlv.map_err(|e| HeaderError::Malformed(e.to_string()))?;
        if tlv.kind == IDENTITY_TLV {
            identities.push(tlv.value.into_owned());
        }
    }
    let [identity] = identities.as_slice() else { return Err(HeaderError::Identities(identities.len())) };
    let text = std::str::from_utf8(identity).map_err(|_| HeaderError::BadIdentity("not UTF-8".into()))?;
    let identity = SpiffeId::new(text).map_err(|e| HeaderError::BadIdentity(format!("{text:?}: {e}")))?;
    Ok(Proxied { source, destination, identity })
}

/// Reads exactly one header from `stream` (nothing past it), within [`HEADER_TIMEOUT`].
pub(crate) async fn read_header(stream: &mut TcpStream) -> Result<Proxied, HeaderError> {
    let reading = async {
        let truncated = |e: std::io::Error| HeaderError::Truncated(e.to_string());
        let mut fixed = [0u8; 16];
        stream.read_exact(&mut fixed).await.map_err(truncated)?;
        if fixed[..12] != SIGNATURE {
            return Err(HeaderError::NotProxyV2);
        }
        let length = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
        if length > MAX_HEADER {
            return Err(HeaderError::TooLong(length));
        }
        let mut whole = vec![0u8; length];
        whole[..16].copy_from_slice(&fixed);
        stream.read_exact(&mut whole[16..]).await.map_err(truncated)?;
        parse(&whole)
    };
    tokio::time::timeout(HEADER_TIMEOUT, reading).await.unwrap_or(Err(HeaderError::Timeout))
}

/// Accepts the node proxy's connections on `listener` until `shutdown`; each is tracked by `connections` for
/// the drain.
pub(crate) async fn serve(proxy: Arc<Proxy>, listener: TcpListener, shutdown: Shutdown, connections: Connections) {
    mesh_runtime::listen::accept_until(listener, &shutdown, |stream, peer| {
        let proxy = Arc::clone(&proxy);
        let tracked = connections.track();
        async move {
            let closing = tracked.child_token();
            tokio::select! {
                () = handle(proxy, stream, peer) => {}
                () = closing.cancelled() => {}
            }
        }
    })
    .await;
}

async fn handle(proxy: Arc<Proxy>, mut stream: TcpStream, peer: SocketAddr) {
    let proxied = match trusted_peer(peer.ip()) {
        Ok(()) => read_header(&mut stream).await,
        Err(e) => Err(e),
    };
    let proxied = match proxied {
        Ok(proxied) => proxied,
        Err(error) => {
            let mut line =
                AccessLog::new(Direction::Inbound, Peer { addr: Some(&peer), ..Peer::default() }, Peer::default());
            line.error = Some(&error);
            line.emit("PROXY connection refused");
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            return;
        }
    };
    let down = Downstream {
        peer: IstioIdentity::from_spiffe_id(proxied.identity.clone()).ok(),
        peer_id: proxied.identity,
        source_ip: proxied.source.ip(),
        authority: proxied.destination,
    };
    match proxy.admit(&down) {
        Ok((protocol, pinned)) => proxy.serve(down, protocol, Downlink::Proxied(stream), pinned).await,
        // Logged where it was decided; the node proxy sees the connection reset.
        Err(_) => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Protocol, Version};

    const ACCOUNTS: &str = "spiffe://cluster.local/ns/payments/sa/accounts";

    fn header(command: Command, addresses: Addresses, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut builder = Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses);
        for (kind, value) in tlvs {
            builder = builder.write_tlv(*kind, value).unwrap_or_else(|e| panic!("{e}"));
        }
        builder.build().unwrap_or_else(|e| panic!("{e}"))
    }

    fn v4() -> Addresses {
        let source: SocketAddr = ([10, 0, 1, 10], 43210).into();
        let destination: SocketAddr = ([10, 96, 0, 20], 80).into();
        (source, destination).into()
    }

    #[test]
    fn the_header_istios_ztunnel_writes_gives_addresses_and_identity() {
        let bytes = header(Command::Proxy, v4(), &[(IDENTITY_TLV, ACCOUNTS.as_bytes())]);
        let proxied = parse(&bytes);
        assert_eq!(
            proxied.map(|p| (p.source.to_string(), p.destination.to_string(), p.identity.to_string())),
            Ok(("10.0.1.10:43210".into(), "10.96.0.20:80".into(), ACCOUNTS.into()))
        );
        let v6: Addresses = (
            "[fd00::1]:1000".parse::<SocketAddr>().unwrap_or_else(|e| panic!("{e}")),
            "[fd00::2]:80".parse::<SocketAddr>().unwrap_or_else(|e| panic!("{e}")),
        )
            .into();
        assert!(parse(&header(Command::Proxy, v6, &[(IDENTITY_TLV, ACCOUNTS.as_bytes())])).is_ok());
    }

    #[test]
    fn anything_else_is_refused() {
        let id = ACCOUNTS.as_bytes();
        let local = header(Command::Local, v4(), &[(IDENTITY_TLV, id)]);
        assert_eq!(parse(&local), Err(HeaderError::Local));
        let unspec = header(Command::Proxy, Addresses::Unspecified, &[(IDENTITY_TLV, id)]);
        assert_eq!(parse(&unspec), Err(HeaderError::NoAddresses));
        assert_eq!(parse(&header(Command::Proxy, v4(), &[])), Err(HeaderError::Identities(0)));
        let two = header(Command::Proxy, v4(), &[(IDENTITY_TLV, id), (IDENTITY_TLV, id)]);
        assert_eq!(parse(&two), Err(HeaderError::Identities(2)));
        let other_tlv = header(Command::Proxy, v4(), &[(0x04, b"noop"), (IDENTITY_TLV, id)]);
        assert!(parse(&other_tlv).is_ok(), "other TLVs are ignored");
        let not_spiffe = header(Command::Proxy, v4(), &[(IDENTITY_TLV, b"accounts")]);
        assert!(matches!(parse(&not_spiffe), Err(HeaderError::BadIdentity(_))));
        let not_utf8 = header(Command::Proxy, v4(), &[(IDENTITY_TLV, &[0xff, 0xfe])]);
        assert!(matches!(parse(&not_utf8), Err(HeaderError::BadIdentity(_))));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(HeaderError::Malformed(_))));
        let whole = header(Command::Proxy, v4(), &[(IDENTITY_TLV, id)]);
        for cut in 0..whole.len() {
            assert!(parse(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn only_loopback_peers_speak_for_clients() {
        assert!(trusted_peer(IpAddr::from([127, 0, 0, 1])).is_ok());
        assert!(trusted_peer(IpAddr::from([127, 77, 3, 9])).is_ok());
        assert!(trusted_peer("::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))).is_ok());
        assert!(trusted_peer("::ffff:127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))).is_ok());
        assert_eq!(
            trusted_peer(IpAddr::from([10, 0, 1, 10])),
            Err(HeaderError::NotLoopback(IpAddr::from([10, 0, 1, 10])))
        );
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics_the_parser(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&bytes);
            let mut signed = SIGNATURE.to_vec();
            signed.extend_from_slice(&bytes);
            let _ = parse(&signed);
        }
    }
}
