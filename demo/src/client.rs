//! A client in a Pod: HTTP/1.1 through its node proxy's SOCKS5 listener, from the Pod's own address (which is
//! how the node proxy knows who is calling).
//!
//! What the client saw is kept exact, because only one thing is a refusal by policy: the node proxy's SOCKS5
//! reply 2, "connection not allowed by ruleset", which it sends when the destination's node proxy answered
//! the HBONE CONNECT with 401. A timeout, an unreachable host (reply 4), a general failure (reply 1), a
//! connection closed or reset before a response, or a connection the operating system refused are other
//! outcomes, and never stand in for a denial.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a request may take, from connecting to the node proxy to the end of the response.
const DEADLINE: Duration = Duration::from_secs(10);

/// SOCKS5 reply 2 (RFC 1928): connection not allowed by ruleset.
pub const NOT_ALLOWED: u8 = 2;

/// Where a connection was when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting to the node proxy, or the SOCKS5 exchange with it.
    Socks5,
    /// After the node proxy's SOCKS5 success reply, before a whole HTTP response head.
    Http,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Socks5 => "in the SOCKS5 exchange",
            Stage::Http => "before an HTTP response",
        })
    }
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response: status and body.
    Status(u16, String),
    /// Refused by policy: the node proxy's SOCKS5 reply 2 ("connection not allowed by ruleset"), its answer
    /// when the destination's node proxy refused the HBONE CONNECT with 401.
    Denied,
    /// A SOCKS5 failure reply other than 2: 1 general failure, 4 host unreachable, 5 connection refused, ...
    Socks5Reply(u8),
    /// The connection was reset. Through SOCKS5, the way this client always connects, a node proxy refuses
    /// with reply 2 before any byte is relayed, so a reset is a connection cut short, not a denial (only a
    /// connection redirected by iptables, which has no reply to carry the refusal, is refused with a reset).
    Reset(Stage),
    /// Closed cleanly (end of stream) with no response.
    Closed(Stage),
    /// The operating system refused the TCP connection (nothing listens there).
    ConnectionRefused(Stage),
    /// No response within the deadline.
    TimedOut,
    /// Anything else: binding the Pod's address, a malformed request, another I/O error.
    Failed(String),
}

impl Outcome {
    /// True only for a refusal by policy: the SOCKS5 reply 2.
    pub fn is_denied(&self) -> bool {
        matches!(self, Outcome::Denied)
    }

    /// The outcome of a SOCKS5 reply code other than 0 (succeeded).
    pub fn from_socks5_reply(code: u8) -> Outcome {
        if code == NOT_ALLOWED { Outcome::Denied } else { Outcome::Socks5Reply(code) }
    }

    /// The outcome of an I/O error at `stage`.
    pub fn from_io(stage: Stage, e: &std::io::Error) -> Outcome {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::ConnectionRefused => Outcome::ConnectionRefused(stage),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => Outcome::Reset(stage),
            ErrorKind::UnexpectedEof => Outcome::Closed(stage),
            ErrorKind::TimedOut => Outcome::TimedOut,
            _ => Outcome::Failed(format!("{stage}: {e}")),
        }
    }

    /// The outcome of an HTTP client error: the I/O error under it if there is one, else a close before a
    /// whole response head.
    fn from_http(e: &hyper::Error) -> Outcome {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return Outcome::from_io(Stage::Http, io);
            }
            source = s.source();
        }
        if e.is_incomplete_message() { Outcome::Closed(Stage::Http) } else { Outcome::Failed(format!("HTTP: {e}")) }
    }
}

/// What a SOCKS5 reply code means (RFC 1928).
fn socks5_meaning(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned",
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(code, body) => write!(f, "{code} {}", body.lines().next().unwrap_or_default()),
            Outcome::Denied => write!(f, "refused by policy (SOCKS5 reply 2, {})", socks5_meaning(NOT_ALLOWED)),
            Outcome::Socks5Reply(code) => {
                write!(f, "SOCKS5 reply {code} ({}), not a policy refusal", socks5_meaning(*code))
            }
            Outcome::Reset(stage) => write!(f, "connection reset {stage}"),
            Outcome::Closed(stage) => write!(f, "connection closed {stage}"),
            Outcome::ConnectionRefused(stage) => write!(f, "connection refused by the operating system {stage}"),
            Outcome::TimedOut => write!(f, "timed out after {}s", DEADLINE.as_secs()),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// An HTTP request.
pub struct Call<'a> {
    /// The Pod's address the client binds.
    pub from: IpAddr,
    /// The node proxy's SOCKS5 address.
    pub proxy: SocketAddr,
    /// `host:port` or `ip:port` as the client dials it.
    pub to: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// A bearer token.
    pub token: Option<&'a str>,
}

impl Call<'_> {
    /// Sends the request.
    pub async fn send(&self) -> Outcome {
        self.send_within(DEADLINE).await
    }

    /// Sends the request, giving up after `deadline`.
    pub async fn send_within(&self, deadline: Duration) -> Outcome {
        tokio::time::timeout(deadline, self.exchange()).await.unwrap_or(Outcome::TimedOut)
    }

    async fn exchange(&self) -> Outcome {
        let stream = match self.connect().await {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(handshake) => handshake,
            Err(e) => return Outcome::from_http(&e),
        };
        tokio::spawn(connection);
        let host = self.to.rsplit_once(':').map_or(self.to, |(h, _)| h);
        let mut request = hyper::Request::builder().method(self.method).uri(self.path).header("host", host);
        if let Some(token) = self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match request.body(Full::new(Bytes::new())) {
            Ok(request) => request,
            Err(e) => return Outcome::Failed(format!("bad request: {e}")),
        };
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                Outcome::Status(status, String::from_utf8_lossy(&body).into_owned())
            }
            Err(e) => Outcome::from_http(&e),
        }
    }

    /// SOCKS5 CONNECT (RFC 1928, no authentication) with the destination as a host name or address; the
    /// stream once the node proxy replied "succeeded", else what it replied or what went wrong.
    async fn connect(&self) -> Result<TcpStream, Outcome> {
        let io = |e: std::io::Error| Outcome::from_io(Stage::Socks5, &e);
        let socket = if self.from.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| Outcome::Failed(format!("socket: {e}")))?;
        socket.bind(SocketAddr::new(self.from, 0)).map_err(|e| Outcome::Failed(format!("bind {}: {e}", self.from)))?;
        let mut s = socket.connect(self.proxy).await.map_err(io)?;
        let _ = s.set_nodelay(true);
        let (host, port) =
            self.to.rsplit_once(':').ok_or_else(|| Outcome::Failed("destination is not host:port".into()))?;
        let port: u16 = port.parse().map_err(|_| Outcome::Failed(format!("bad port in {}", self.to)))?;
        let len = u8::try_from(host.len()).map_err(|_| Outcome::Failed("host name too long".into()))?;
        s.write_all(&[5, 1, 0]).await.map_err(io)?;
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice).await.map_err(io)?;
        if choice != [5, 0] {
            return Err(Outcome::Failed(format!("the node proxy chose SOCKS method {:?}", choice)));
        }
        let mut request = vec![5, 1, 0, 3, len];
        request.extend(host.as_bytes());
        request.extend(port.to_be_bytes());
        s.write_all(&request).await.map_err(io)?;
        // VER REP RSV ATYP, then the bound address (whose length ATYP gives) and port.
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.map_err(io)?;
        if head[0] != 5 {
            return Err(Outcome::Failed(format!("not a SOCKS5 reply (version {})", head[0])));
        }
        if head[1] != 0 {
            return Err(Outcome::from_socks5_reply(head[1]));
        }
        let bound = match head[3] {
            1 => 4,
            4 => 16,
            3 => usize::from(s.read_u8().await.map_err(io)?),
            other => return Err(Outcome::Failed(format!("SOCKS5 reply with address type {other}"))),
        };
        let mut rest = vec![0u8; bound + 2];
        s.read_exact(&mut rest).await.map_err(io)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::net::TcpListener;

    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn call(proxy: SocketAddr) -> Call<'static> {
        Call { from: LOCAL, proxy, to: "ledger.payments:8080", method: "GET", path: "/", token: None }
    }

    /// Reads a greeting and a CONNECT with a host name, answering the greeting.
    async fn read_request(s: &mut TcpStream) {
        let mut greeting = [0u8; 3];
        s.read_exact(&mut greeting).await.unwrap();
        s.write_all(&[5, 0]).await.unwrap();
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.unwrap();
        let mut rest = vec![0u8; usize::from(head[4]) + 2];
        s.read_exact(&mut rest).await.unwrap();
    }

    /// Reads an HTTP request head (all of it: closing with bytes unread would reset).
    async fn read_head(s: &mut TcpStream) {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.unwrap());
        }
    }

    /// A one-connection SOCKS5 server doing `then` with the accepted stream.
    async fn server<F, Fut>(then: F) -> SocketAddr
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            then(s).await;
        });
        addr
    }

    async fn replying(code: u8) -> Outcome {
        let proxy = server(move |mut s| async move {
            read_request(&mut s).await;
            s.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        })
        .await;
        call(proxy).send_within(Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn only_reply_2_is_a_denial() {
        assert_eq!(replying(2).await, Outcome::Denied);
        assert!(replying(2).await.is_denied());
        for code in [1, 4, 5] {
            let got = replying(code).await;
            assert_eq!(got, Outcome::Socks5Reply(code));
            assert!(!got.is_denied(), "reply {code} is not a denial");
        }
    }

    #[tokio::test]
    async fn a_timeout_is_not_a_denial() {
        let proxy = server(|mut s| async move {
            read_request(&mut s).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let got = call(proxy).send_within(Duration::from_millis(200)).await;
        assert_eq!(got, Outcome::TimedOut);
        assert!(!got.is_denied());
    }

    #[tokio::test]
    async fn a_close_before_the_reply_is_not_a_denial() {
        let proxy = server(|mut s| async move { read_request(&mut s).await }).await;
        let got = call(proxy).send_within(Duration::from_secs(5)).await;
        assert_eq!(got, Outcome::Closed(Stage::Socks5));
        assert!(!got.is_denied());
    }

    #[tokio::test]
    async fn a_close_before_the_response_is_not_a_denial() {
        let proxy = server(|mut s| async move {
            read_request(&mut s).await;
            s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80]).await.unwrap();
            read_head(&mut s).await;
        })
        .await;
        let got = call(proxy).send_within(Duration::from_secs(5)).await;
        assert_eq!(got, Outcome::Closed(Stage::Http));
        assert!(!got.is_denied());
    }

    #[tokio::test]
    async fn a_reset_is_not_a_denial() {
        // Closing with the client's greeting unread makes the kernel send a reset.
        let proxy = server(|s| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(s);
        })
        .await;
        let got = call(proxy).send_within(Duration::from_secs(5)).await;
        assert_eq!(got, Outcome::Reset(Stage::Socks5));
        assert!(!got.is_denied());
    }

    #[tokio::test]
    async fn nothing_listening_is_not_a_denial() {
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let proxy = listener.local_addr().unwrap();
        drop(listener);
        let got = call(proxy).send_within(Duration::from_secs(5)).await;
        assert_eq!(got, Outcome::ConnectionRefused(Stage::Socks5));
        assert!(!got.is_denied());
    }

    #[tokio::test]
    async fn a_response_through_the_proxy_is_its_status() {
        let proxy = server(|mut s| async move {
            read_request(&mut s).await;
            s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80]).await.unwrap();
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 20\r\n\r\nRBAC: access denied\n").await.unwrap();
        })
        .await;
        let got = call(proxy).send_within(Duration::from_secs(5)).await;
        assert_eq!(got, Outcome::Status(403, "RBAC: access denied\n".into()));
        assert!(!got.is_denied());
    }
}
