//! A client in a Pod: HTTP/1.1 through its node proxy's SOCKS5 listener, from the Pod's own address (which is
//! how the node proxy knows who is calling).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response.
    Status(u16, String),
    /// The connection was refused (by policy at L4, or nothing there).
    Refused(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(code, body) => write!(f, "{code} {}", body.lines().next().unwrap_or_default()),
            Outcome::Refused(why) => write!(f, "connection refused ({why})"),
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
        match tokio::time::timeout(Duration::from_secs(10), self.exchange()).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Refused("timed out".into()),
        }
    }

    async fn exchange(&self) -> Outcome {
        let stream = match self.connect().await {
            Ok(s) => s,
            Err(why) => return Outcome::Refused(why),
        };
        let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
            return Outcome::Refused("HTTP handshake failed".into());
        };
        tokio::spawn(connection);
        let host = self.to.rsplit_once(':').map_or(self.to, |(h, _)| h);
        let mut request = hyper::Request::builder().method(self.method).uri(self.path).header("host", host);
        if let Some(token) = self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let Ok(request) = request.body(Full::new(Bytes::new())) else {
            return Outcome::Refused("bad request".into());
        };
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                Outcome::Status(status, String::from_utf8_lossy(&body).into_owned())
            }
            Err(_) => Outcome::Refused("closed before a response".into()),
        }
    }

    /// SOCKS5 CONNECT (RFC 1928, no authentication) with the destination as a host name or address.
    async fn connect(&self) -> Result<TcpStream, String> {
        let socket =
            if self.from.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
        socket.bind(SocketAddr::new(self.from, 0)).map_err(|e| format!("bind {}: {e}", self.from))?;
        let mut s = socket.connect(self.proxy).await.map_err(|e| format!("node proxy {}: {e}", self.proxy))?;
        let _ = s.set_nodelay(true);
        let (host, port) = self.to.rsplit_once(':').ok_or("destination is not host:port")?;
        let port: u16 = port.parse().map_err(|_| "bad port")?;
        s.write_all(&[5, 1, 0]).await.map_err(|e| e.to_string())?;
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice).await.map_err(|e| e.to_string())?;
        let mut request = vec![5, 1, 0, 3, u8::try_from(host.len()).map_err(|_| "host too long")?];
        request.extend(host.as_bytes());
        request.extend(port.to_be_bytes());
        s.write_all(&request).await.map_err(|e| e.to_string())?;
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
        match reply[1] {
            0 => Ok(s),
            2 => Err("denied by L4 policy".into()),
            4 => Err("unreachable".into()),
            code => Err(format!("SOCKS5 reply {code}")),
        }
    }
}
