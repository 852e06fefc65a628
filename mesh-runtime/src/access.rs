//! Access logs: one line per connection (and per request at a waypoint), at `info` on the `access` target,
//! with Istio's ztunnel field names, so that the queries and dashboards written for it read both proxies:
//! `src.addr`, `src.workload`, `src.namespace`, `src.identity`, `dst.addr`, `dst.hbone_addr`, `dst.service`,
//! `dst.workload`, `dst.namespace`, `dst.identity`, `direction`, `bytes_sent`, `bytes_recv`, `duration`,
//! `error`. Beside them, what explains a decision: `decision` (`allow` or `deny`), `policy` and `reason`; and
//! at a waypoint the request: `http.method`, `http.path`, `http.host`, `http.status`. A field with no value
//! is left out.
//!
//! `bytes_sent` counts what went to the destination and `bytes_recv` what came back from it, as Istio's
//! ztunnel counts them.

use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

// `display` as the field values use it is the one `tracing`'s macros bring into scope.

/// Which way a connection goes, from the reporting proxy's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into a workload of this proxy (or the waypoint's destination).
    Inbound,
    /// Out of a workload of this node.
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// One side of a connection, as far as the proxy knows it.
#[derive(Clone, Copy, Default)]
pub struct Peer<'a> {
    /// Its address (with the port when known).
    pub addr: Option<&'a dyn Display>,
    /// Its workload name.
    pub workload: Option<&'a str>,
    /// Its namespace.
    pub namespace: Option<&'a str>,
    /// Its identity (`spiffe://...`).
    pub identity: Option<&'a dyn Display>,
}

impl std::fmt::Debug for Peer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.addr.map(ToString::to_string))
            .field("workload", &self.workload)
            .field("namespace", &self.namespace)
            .field("identity", &self.identity.map(ToString::to_string))
            .finish()
    }
}

/// The request a waypoint's line is about.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The host (`:authority`).
    pub host: &'a str,
    /// The status the client got.
    pub status: u16,
}

/// One access-log line.
#[derive(Clone, Copy)]
pub struct AccessLog<'a> {
    /// Which way the connection goes.
    pub direction: Direction,
    /// The client.
    pub src: Peer<'a>,
    /// What the client claims to be its address (a `forwarded: for=` it wrote), when that is not `src.addr`:
    /// logged as `src.claimed_addr`, never trusted.
    pub claimed_addr: Option<IpAddr>,
    /// The destination, `addr` being where this proxy connected (a peer's HBONE port for a tunnel).
    pub dst: Peer<'a>,
    /// The address the tunnel is for (the CONNECT authority), when there is a tunnel.
    pub hbone_addr: Option<&'a dyn Display>,
    /// The Service's host name.
    pub service: Option<&'a str>,
    /// `allow` or `deny`, when a policy was evaluated.
    pub decision: Option<&'a str>,
    /// `namespace/name` of the deciding policy.
    pub policy: Option<&'a str>,
    /// Why, as the decision explains itself.
    pub reason: Option<&'a dyn Display>,
    /// The request, at a waypoint.
    pub request: Option<Request<'a>>,
    /// Bytes sent to the destination.
    pub bytes_sent: u64,
    /// Bytes received from it.
    pub bytes_recv: u64,
    /// How long the connection (or request) took.
    pub duration: Duration,
    /// Why it failed, if it did.
    pub error: Option<&'a dyn Display>,
}

impl std::fmt::Debug for AccessLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("direction", &self.direction)
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("decision", &self.decision)
            .field("error", &self.error.map(ToString::to_string))
            .finish_non_exhaustive()
    }
}

impl<'a> AccessLog<'a> {
    /// A line for a connection going `direction`, from `src` to `dst`, with nothing else known yet.
    pub fn new(direction: Direction, src: Peer<'a>, dst: Peer<'a>) -> Self {
        AccessLog {
            direction,
            src,
            claimed_addr: None,
            dst,
            hbone_addr: None,
            service: None,
            decision: None,
            policy: None,
            reason: None,
            request: None,
            bytes_sent: 0,
            bytes_recv: 0,
            duration: Duration::ZERO,
            error: None,
        }
    }

    /// Writes the line, with `message` (`connection complete`, `connection denied`, `request`).
    pub fn emit(&self, message: &str) {
        let duration = format!("{}ms", self.duration.as_millis());
        let request = self.request;
        tracing::event!(
            target: "access",
            parent: None,
            tracing::Level::INFO,
            src.addr = self.src.addr.map(display),
            src.claimed_addr = self.claimed_addr.map(display),
            src.workload = self.src.workload,
            src.namespace = self.src.namespace,
            src.identity = self.src.identity.map(display),
            dst.addr = self.dst.addr.map(display),
            dst.hbone_addr = self.hbone_addr.map(display),
            dst.service = self.service,
            dst.workload = self.dst.workload,
            dst.namespace = self.dst.namespace,
            dst.identity = self.dst.identity.map(display),
            direction = self.direction.as_str(),
            http.method = request.map(|r| r.method),
            http.path = request.map(|r| r.path),
            http.host = request.map(|r| r.host),
            http.status = request.map(|r| r.status),
            decision = self.decision,
            policy = self.policy,
            reason = self.reason.map(display),
            bytes_sent = self.bytes_sent,
            bytes_recv = self.bytes_recv,
            duration = %duration,
            error = self.error.map(display),
            "{message}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what is written, as a log pipeline reads it.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Collected {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_carries_istio_ztunnel_field_names_and_leaves_out_what_is_unknown() {
        let collected = Collected::default();
        let writer = collected.clone();
        let subscriber =
            tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || writer.clone()).finish();
        let src: std::net::SocketAddr = ([10, 0, 1, 4], 41000).into();
        let dst: std::net::SocketAddr = ([10, 0, 2, 7], 15008).into();
        let authority: std::net::SocketAddr = ([10, 0, 2, 7], 8080).into();
        let identity = "spiffe://cluster.local/ns/payments/sa/accounts";
        tracing::subscriber::with_default(subscriber, || {
            let mut line = AccessLog::new(
                Direction::Outbound,
                Peer {
                    addr: Some(&src),
                    workload: Some("accounts"),
                    namespace: Some("payments"),
                    identity: Some(&identity),
                },
                Peer { addr: Some(&dst), workload: Some("ledger"), namespace: Some("payments"), identity: None },
            );
            line.hbone_addr = Some(&authority);
            line.bytes_sent = 12;
            line.bytes_recv = 34;
            line.duration = Duration::from_millis(7);
            line.emit("connection complete");
        });
        let text = String::from_utf8(collected.0.lock().map(|v| v.clone()).unwrap_or_default()).unwrap_or_default();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
        assert_eq!(line["target"], "access", "{text}");
        assert_eq!(line["message"], "connection complete");
        assert_eq!(line["src.addr"], "10.0.1.4:41000");
        assert_eq!(line["src.workload"], "accounts");
        assert_eq!(line["src.namespace"], "payments");
        assert_eq!(line["src.identity"], identity);
        assert_eq!(line["dst.addr"], "10.0.2.7:15008");
        assert_eq!(line["dst.hbone_addr"], "10.0.2.7:8080");
        assert_eq!(line["dst.workload"], "ledger");
        assert_eq!(line["direction"], "outbound");
        assert_eq!((line["bytes_sent"].as_u64(), line["bytes_recv"].as_u64()), (Some(12), Some(34)));
        assert_eq!(line["duration"], "7ms");
        for absent in ["dst.identity", "dst.service", "error", "decision", "http.method", "src.claimed_addr"] {
            assert!(line.get(absent).is_none(), "{absent} has no value and is left out: {text}");
        }
    }
}
