//! Istio's TCP metrics, with its names and labels: `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total`, `istio_tcp_sent_bytes_total`.
//! `reporter` is `source` for outbound connections and `destination` for inbound ones; what is not known is
//! `unknown`, as Istio writes it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Why a connection ended the way it did (`response_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFlags {
    /// Nothing to report.
    None,
    /// AuthorizationPolicy (or PeerAuthentication) denied it.
    Denied,
    /// The upstream could not be reached.
    ConnectFailure,
}

impl ResponseFlags {
    fn as_str(self) -> &'static str {
        match self {
            ResponseFlags::None => "-",
            ResponseFlags::Denied => "DENY",
            ResponseFlags::ConnectFailure => "CONNECT",
        }
    }
}

/// The labels of one connection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpLabels {
    reporter: String,
    source_workload: String,
    source_workload_namespace: String,
    source_principal: String,
    source_app: String,
    destination_workload: String,
    destination_workload_namespace: String,
    destination_principal: String,
    destination_service: String,
    destination_service_name: String,
    destination_service_namespace: String,
    request_protocol: String,
    response_flags: String,
    connection_security_policy: String,
}

/// Who is on each side of a connection, as far as the proxy knows.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// Source workload name, namespace, principal (with `spiffe://`), `app` label.
    pub source: Side,
    /// Destination workload name, namespace, principal.
    pub destination: Side,
    /// Destination service host, name and namespace.
    pub service: Option<(String, String, String)>,
    /// Whether the connection is mTLS.
    pub mtls: bool,
}

/// One side of a connection.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// Workload name (a Pod's Deployment or other controller, as Istio names it).
    pub workload: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// SPIFFE ID.
    pub principal: Option<String>,
    /// `app` label.
    pub app: Option<String>,
}

impl Peers {
    /// The labels, for `reporter` ("source" or "destination").
    pub fn labels(&self, reporter: &'static str, flags: ResponseFlags) -> TcpLabels {
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".to_owned());
        let (host, name, ns) =
            self.service.clone().unwrap_or_else(|| ("unknown".into(), "unknown".into(), "unknown".into()));
        TcpLabels {
            reporter: reporter.to_owned(),
            source_workload: or_unknown(&self.source.workload),
            source_workload_namespace: or_unknown(&self.source.namespace),
            source_principal: or_unknown(&self.source.principal),
            source_app: or_unknown(&self.source.app),
            destination_workload: or_unknown(&self.destination.workload),
            destination_workload_namespace: or_unknown(&self.destination.namespace),
            destination_principal: or_unknown(&self.destination.principal),
            destination_service: host,
            destination_service_name: name,
            destination_service_namespace: ns,
            request_protocol: "tcp".to_owned(),
            response_flags: flags.as_str().to_owned(),
            connection_security_policy: if self.mtls { "mutual_tls" } else { "unknown" }.to_owned(),
        }
    }
}

/// The proxy's metrics.
///
/// Series do not outlive their workloads: after each configuration change, [`Metrics::prune`] drops the series
/// of workloads that are gone, unless a connection they count is still open. What peers send cannot grow the
/// set of series past the workloads the configuration holds (and `unknown`).
pub struct Metrics {
    registry: Registry,
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
    /// Every series, with how many of its connections are open.
    series: Mutex<HashMap<TcpLabels, usize>>,
    /// Serialises encoding (the registry is read-only after construction; the families are lock-free).
    encode: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let opened = Family::<TcpLabels, Counter>::default();
        let closed = Family::<TcpLabels, Counter>::default();
        let received = Family::<TcpLabels, Counter>::default();
        let sent = Family::<TcpLabels, Counter>::default();
        registry.register("istio_tcp_connections_opened", "TCP connections opened", opened.clone());
        registry.register("istio_tcp_connections_closed", "TCP connections closed", closed.clone());
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the client (request direction)",
            received.clone(),
        );
        registry.register("istio_tcp_sent_bytes", "Bytes sent to the client (response direction)", sent.clone());
        Metrics { registry, opened, closed, received, sent, series: Mutex::default(), encode: Mutex::new(()) }
    }
}

impl Metrics {
    fn series(&self) -> std::sync::MutexGuard<'_, HashMap<TcpLabels, usize>> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection opened.
    pub fn opened(&self, labels: &TcpLabels) {
        {
            // The labels are cloned only for a new series, not on every connection.
            let mut series = self.series();
            match series.get_mut(labels) {
                Some(open) => *open += 1,
                None => {
                    series.insert(labels.clone(), 1);
                }
            }
        }
        self.opened.get_or_create(labels).inc();
    }

    /// A connection closed after `received` bytes from the client and `sent` to it.
    pub fn closed(&self, labels: &TcpLabels, received: u64, sent: u64) {
        if let Some(open) = self.series().get_mut(labels) {
            *open = open.saturating_sub(1);
        }
        self.closed.get_or_create(labels).inc();
        self.received.get_or_create(labels).inc_by(received);
        self.sent.get_or_create(labels).inc_by(sent);
    }

    /// A connection refused before any byte went through: opened and closed at once.
    pub fn refused(&self, labels: &TcpLabels) {
        self.opened(labels);
        self.closed(labels, 0, 0);
    }

    /// Drops the series of workloads `alive` no longer holds (by namespace and workload name), except those
    /// with a connection still open. Returns how many series went.
    pub fn prune(&self, alive: impl Fn(&str, &str) -> bool) -> usize {
        let known = |workload: &str, namespace: &str| workload == "unknown" || alive(namespace, workload);
        let mut series = self.series();
        let gone: Vec<TcpLabels> = series
            .iter()
            .filter(|(labels, open)| {
                **open == 0
                    && !(known(&labels.source_workload, &labels.source_workload_namespace)
                        && known(&labels.destination_workload, &labels.destination_workload_namespace))
            })
            .map(|(labels, _)| labels.clone())
            .collect();
        for labels in &gone {
            series.remove(labels);
            self.opened.remove(labels);
            self.closed.remove(labels);
            self.received.remove(labels);
            self.sent.remove(labels);
        }
        gone.len()
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let _guard = self.encode.lock();
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_istio_names_and_labels() {
        let metrics = Metrics::default();
        let peers = Peers {
            source: Side {
                workload: Some("accounts-0".into()),
                principal: Some("spiffe://cluster.local/ns/payments/sa/accounts".into()),
                ..Side::default()
            },
            mtls: true,
            ..Peers::default()
        };
        let labels = peers.labels("destination", ResponseFlags::None);
        metrics.opened(&labels);
        metrics.closed(&labels, 10, 20);
        let text = metrics.encode();
        assert!(
            text.contains("istio_tcp_connections_opened_total{reporter=\"destination\",source_workload=\"accounts-0\""),
            "{text}"
        );
        assert!(text.contains("istio_tcp_sent_bytes_total{"), "{text}");
        assert!(text.contains("connection_security_policy=\"mutual_tls\"} 20"), "{text}");
        assert!(text.contains("destination_workload=\"unknown\""), "{text}");
    }

    #[test]
    fn series_of_gone_workloads_are_dropped_unless_a_connection_is_open() {
        let metrics = Metrics::default();
        let peers = |workload: &str| Peers {
            source: Side { workload: Some(workload.into()), namespace: Some("payments".into()), ..Side::default() },
            ..Peers::default()
        };
        let (gone, open, kept) = (
            peers("old").labels("source", ResponseFlags::None),
            peers("busy").labels("source", ResponseFlags::None),
            peers("accounts").labels("source", ResponseFlags::None),
        );
        metrics.refused(&gone);
        metrics.opened(&open);
        metrics.refused(&kept);
        let alive = |ns: &str, w: &str| ns == "payments" && w == "accounts";
        assert_eq!(metrics.prune(alive), 1);
        let text = metrics.encode();
        assert!(!text.contains("source_workload=\"old\""), "{text}");
        assert!(text.contains("source_workload=\"busy\""), "an open connection keeps its series: {text}");
        assert!(text.contains("source_workload=\"accounts\""), "{text}");
        metrics.closed(&open, 1, 2);
        assert_eq!(metrics.prune(alive), 1, "once closed, it goes at the next change");
        assert!(!metrics.encode().contains("source_workload=\"busy\""));
    }
}
