//! Whether a tunnel carries HTTP or plain TCP: from the Service port's declaration when there is one, else from
//! the first bytes the client sends.
//!
//! Declared: `appProtocol`, else the port's `protocol` (ServiceEntry) or the prefix of its name before `-`
//! (Istio's port naming): `http`, `http2`, `grpc`, `grpc-web`, `h2c` are HTTP; `tcp`, `tls`, `https`, `mongo`,
//! `mysql`, `redis` and any other declared value are TCP. Undeclared: an HTTP/1 method followed by a space, or
//! the HTTP/2 connection preface, is HTTP; other bytes, end of stream, or silence for [`SNIFF_TIMEOUT`] (a
//! server-first protocol) are TCP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use mesh_policy::cluster::ServicePort;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long the first bytes are waited for before a connection is taken as TCP.
pub(crate) const SNIFF_TIMEOUT: Duration = Duration::from_millis(100);

/// What a port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 or HTTP/2 (gRPC included).
    Http,
    /// Anything else, proxied at L4.
    Tcp,
    /// Nothing declared: decided from the first bytes.
    Detect,
}

/// The protocol a Service port declares.
pub(crate) fn declared(port: Option<&ServicePort>) -> Protocol {
    match port {
        Some(p) => declared_by(p.name.as_deref(), p.protocol.as_deref(), p.app_protocol.as_deref()),
        None => Protocol::Detect,
    }
}

/// The protocol a port's name, protocol and appProtocol declare.
fn declared_by(name: Option<&str>, protocol: Option<&str>, app_protocol: Option<&str>) -> Protocol {
    // Kubernetes' default `protocol: TCP` says nothing about the application protocol.
    let protocol = protocol.filter(|p| !p.eq_ignore_ascii_case("TCP"));
    if let Some(value) = app_protocol.or(protocol) {
        return classify(value).unwrap_or(Protocol::Tcp);
    }
    let prefix = name.map(|n| n.split('-').next().unwrap_or(n));
    prefix.and_then(classify).unwrap_or(Protocol::Detect)
}

/// A known protocol name: HTTP or TCP; `None` for a name that is not a protocol.
fn classify(value: &str) -> Option<Protocol> {
    match value.to_ascii_lowercase().as_str() {
        "http" | "http2" | "grpc" | "grpc-web" | "h2c" | "kubernetes.io/h2c" => Some(Protocol::Http),
        "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" | "udp" => Some(Protocol::Tcp),
        _ => None,
    }
}

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const METHODS: [&[u8]; 9] = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"];

/// What the first bytes say: `Some(true)` HTTP, `Some(false)` not HTTP, `None` not enough bytes yet.
pub(crate) fn looks_like_http(first: &[u8]) -> Option<bool> {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] == H2_PREFACE[..n] && n > 0 {
        return (n == H2_PREFACE.len()).then_some(true);
    }
    for method in METHODS {
        let m = first.len().min(method.len());
        if m > 0 && first[..m] == method[..m] {
            if first.len() <= method.len() {
                return None;
            }
            if first[method.len()] == b' ' {
                return Some(true);
            }
        }
    }
    if first.is_empty() { None } else { Some(false) }
}

/// Reads the first bytes of `stream` to decide whether it is HTTP; returns the decision and the bytes read,
/// which [`Prefixed`] replays.
pub(crate) async fn detect<S: AsyncRead + Unpin>(stream: &mut S) -> (bool, Bytes) {
    let mut buf = BytesMut::with_capacity(64);
    let reading = async {
        loop {
            if let Some(http) = looks_like_http(&buf) {
                return http;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    };
    let http = tokio::time::timeout(SNIFF_TIMEOUT, reading).await.unwrap_or(false);
    (http, buf.freeze())
}

/// A stream whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read before it.
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn declarations_decide_when_there_are_some() {
        assert_eq!(declared(None), Protocol::Detect);
        assert_eq!(declared_by(Some("http"), Some("TCP"), None), Protocol::Http);
        assert_eq!(declared_by(Some("grpc-api"), None, None), Protocol::Http);
        assert_eq!(declared_by(Some("web"), None, Some("http2")), Protocol::Http);
        assert_eq!(declared_by(Some("http"), None, Some("tcp")), Protocol::Tcp);
        assert_eq!(declared_by(Some("tcp-db"), Some("TCP"), None), Protocol::Tcp);
        assert_eq!(declared_by(None, Some("HTTP"), None), Protocol::Http);
        assert_eq!(declared_by(None, Some("MONGO"), None), Protocol::Tcp);
        assert_eq!(declared_by(Some("web"), Some("TCP"), None), Protocol::Detect);
        assert_eq!(declared_by(None, None, None), Protocol::Detect);
    }

    #[test]
    fn first_bytes_decide_otherwise() {
        assert_eq!(looks_like_http(b""), None);
        assert_eq!(looks_like_http(b"GE"), None);
        assert_eq!(looks_like_http(b"GET"), None);
        assert_eq!(looks_like_http(b"GET /"), Some(true));
        assert_eq!(looks_like_http(b"DELETE /x"), Some(true));
        assert_eq!(looks_like_http(b"GETX"), Some(false));
        assert_eq!(looks_like_http(b"PRI * HTTP/2"), None);
        assert_eq!(looks_like_http(H2_PREFACE), Some(true));
        assert_eq!(looks_like_http(b"\x16\x03\x01"), Some(false));
        assert_eq!(looks_like_http(b"hello"), Some(false));
    }

    #[tokio::test]
    async fn detected_bytes_are_read_again() -> Result<(), Box<dyn std::error::Error>> {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"POST /a HTTP/1.1\r\n").await?;
        let mut server = server;
        let (http, prefix) = detect(&mut server).await;
        assert!(http);
        let mut replayed = Prefixed::new(prefix, server);
        client.write_all(b"rest").await?;
        drop(client);
        let mut all = Vec::new();
        replayed.read_to_end(&mut all).await?;
        assert_eq!(all, b"POST /a HTTP/1.1\r\nrest");
        // Silence: TCP after the timeout, nothing read.
        let (_quiet, mut server) = tokio::io::duplex(64);
        assert_eq!(detect(&mut server).await, (false, Bytes::new()));
        Ok(())
    }
}
