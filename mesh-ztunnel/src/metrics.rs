//! What the node proxy records about a connection: Istio's TCP metrics ([`mesh_runtime::metrics`]), `reporter`
//! being `source` for outbound connections and `destination` for inbound ones, with response flags as Istio's
//! ztunnel writes them; and its access-log line ([`mesh_runtime::access`]).

use std::fmt::Display;

use mesh_runtime::access::{AccessLog, Direction, Peer};
use mesh_runtime::metrics::{Reporter, ResponseFlags, ServiceName, TcpLabels, TcpMetrics};
use prometheus_client::registry::Registry;

/// Who is on each side of a connection, as far as the proxy knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peers {
    /// The client.
    pub(crate) source: Side,
    /// The destination workload (or waypoint).
    pub(crate) destination: Side,
    /// Destination service host, name and namespace.
    pub(crate) service: Option<(String, String, String)>,
    /// Whether the connection is mTLS.
    pub(crate) mtls: bool,
}

/// One side of a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Side {
    /// The Pod's (or other workload's) own name, as access logs give it.
    pub(crate) name: Option<String>,
    /// Workload name (a Pod's Deployment or other controller, as Istio names it).
    pub(crate) workload: Option<String>,
    /// Namespace.
    pub(crate) namespace: Option<String>,
    /// SPIFFE ID.
    pub(crate) principal: Option<String>,
    /// `app` label.
    pub(crate) app: Option<String>,
}

impl Side {
    fn view(&self) -> mesh_runtime::metrics::Side<'_> {
        mesh_runtime::metrics::Side {
            workload: self.workload.as_deref(),
            namespace: self.namespace.as_deref(),
            principal: self.principal.as_deref(),
            app: self.app.as_deref(),
        }
    }
}

impl Peers {
    /// The access-log line of a connection going `direction` from `src` to `dst` (the addresses this proxy
    /// sees), with what is known of both sides.
    pub(crate) fn access<'a>(
        &'a self,
        direction: Direction,
        src: &'a dyn Display,
        dst: &'a dyn Display,
    ) -> AccessLog<'a> {
        let peer = |side: &'a Side, addr: &'a dyn Display| Peer {
            addr: Some(addr),
            workload: side.name.as_deref(),
            namespace: side.namespace.as_deref(),
            identity: side.principal.as_ref().map(|p| p as &dyn Display),
        };
        let mut line = AccessLog::new(direction, peer(&self.source, src), peer(&self.destination, dst));
        line.service = self.service.as_ref().map(|(host, _, _)| host.as_str());
        line
    }

    /// The labels, as `reporter` reports them.
    pub(crate) fn labels(&self, reporter: Reporter, flags: ResponseFlags) -> TcpLabels {
        let service = self.service.as_ref().map(|(host, name, namespace)| ServiceName { host, name, namespace });
        let labels = TcpLabels::new(reporter, self.source.view(), self.destination.view(), service).with_flags(flags);
        if self.mtls { labels } else { labels.plaintext() }
    }
}

/// The registry and the TCP families.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Istio's TCP families.
    pub(crate) tcp: TcpMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let tcp = TcpMetrics::register(&mut registry);
        Metrics { registry, tcp }
    }
}

impl Metrics {
    /// The exposition text.
    pub(crate) fn encode(&self) -> String {
        mesh_runtime::metrics::encode(&self.registry)
    }
}
