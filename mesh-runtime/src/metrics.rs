//! Istio's TCP metrics, with its names and labels, as both proxies report them:
//! `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total`
//! (from the client) and `istio_tcp_sent_bytes_total` (to the client), labelled by [`TcpLabels`]. What is not
//! known is `unknown`, as Istio writes it.
//!
//! Series do not outlive their workloads: after each configuration change a proxy calls
//! [`TcpMetrics::prune`], which drops the series of workloads that are gone unless a connection they count is
//! still open. What peers send cannot grow the set of series past the workloads the configuration holds.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Which proxy reports a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reporter {
    /// The source's node proxy (outbound).
    #[default]
    Source,
    /// The destination's node proxy (inbound).
    Destination,
    /// A waypoint.
    Waypoint,
}

impl Reporter {
    /// As Istio writes it: `source`, `destination`, `waypoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
            Reporter::Waypoint => "waypoint",
        }
    }
}

impl EncodeLabelValue for Reporter {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Why a connection or request ended the way it did: one meaning, written as each of Istio's proxies writes
/// it (Istio's ztunnel: `-`, `DENY`, `CONNECT`; Envoy, for a waypoint: `-`, `RBAC`, `UF`, `UH`, `UC`, `DC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseFlags {
    /// Nothing to report.
    #[default]
    None,
    /// AuthorizationPolicy (or PeerAuthentication) denied it.
    Denied,
    /// The upstream could not be connected to, or refused the connection.
    ConnectFailure,
    /// There was no endpoint to send it to.
    NoHealthyUpstream,
    /// The connection to the upstream ended before its response.
    UpstreamConnectionTermination,
    /// The client went away first.
    DownstreamClosed,
}

impl ResponseFlags {
    /// The flags as `reporter` writes them.
    pub fn code(self, reporter: Reporter) -> &'static str {
        match (reporter, self) {
            (_, ResponseFlags::None) => "-",
            (Reporter::Waypoint, ResponseFlags::Denied) => "RBAC",
            (Reporter::Waypoint, ResponseFlags::ConnectFailure) => "UF",
            (Reporter::Waypoint, ResponseFlags::NoHealthyUpstream) => "UH",
            (Reporter::Waypoint, ResponseFlags::UpstreamConnectionTermination) => "UC",
            (Reporter::Waypoint, ResponseFlags::DownstreamClosed) => "DC",
            (_, ResponseFlags::Denied) => "DENY",
            (
                _,
                ResponseFlags::ConnectFailure
                | ResponseFlags::NoHealthyUpstream
                | ResponseFlags::UpstreamConnectionTermination,
            ) => "CONNECT",
            (_, ResponseFlags::DownstreamClosed) => "-",
        }
    }
}

/// The labels of a TCP connection (and, with a response code beside them, of a waypoint's request).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, EncodeLabelSet)]
pub struct TcpLabels {
    /// Who reports.
    pub reporter: Reporter,
    /// The client's workload name (its Deployment or other controller, as Istio names it).
    pub source_workload: String,
    /// Its namespace.
    pub source_workload_namespace: String,
    /// Its identity (`spiffe://...`).
    pub source_principal: String,
    /// Its `app` label.
    pub source_app: String,
    /// The destination's workload name.
    pub destination_workload: String,
    /// Its namespace.
    pub destination_workload_namespace: String,
    /// Its identity.
    pub destination_principal: String,
    /// The Service's host name.
    pub destination_service: String,
    /// The Service's name.
    pub destination_service_name: String,
    /// The Service's namespace.
    pub destination_service_namespace: String,
    /// `tcp`, `http`, `grpc`.
    pub request_protocol: &'static str,
    /// [`ResponseFlags`] as the reporter writes them.
    pub response_flags: &'static str,
    /// `mutual_tls`, or `unknown` for plaintext.
    pub connection_security_policy: &'static str,
}

/// One side of a connection, as the labels name it; what is `None` is `unknown`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Side<'a> {
    /// Workload name.
    pub workload: Option<&'a str>,
    /// Namespace.
    pub namespace: Option<&'a str>,
    /// Identity (`spiffe://...`).
    pub principal: Option<&'a str>,
    /// `app` label.
    pub app: Option<&'a str>,
}

/// A Service, as the labels name it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceName<'a> {
    /// Host name.
    pub host: &'a str,
    /// Name.
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
}

impl TcpLabels {
    /// The labels of a connection from `source` to `destination` (through `service`), reported by
    /// `reporter`, with no response flags.
    pub fn new(reporter: Reporter, source: Side<'_>, destination: Side<'_>, service: Option<ServiceName<'_>>) -> Self {
        let known = |v: Option<&str>| v.unwrap_or("unknown").to_owned();
        TcpLabels {
            reporter,
            source_workload: known(source.workload),
            source_workload_namespace: known(source.namespace),
            source_principal: known(source.principal),
            source_app: known(source.app),
            destination_workload: known(destination.workload),
            destination_workload_namespace: known(destination.namespace),
            destination_principal: known(destination.principal),
            destination_service: known(service.map(|s| s.host)),
            destination_service_name: known(service.map(|s| s.name)),
            destination_service_namespace: known(service.map(|s| s.namespace)),
            request_protocol: "tcp",
            response_flags: ResponseFlags::None.code(reporter),
            connection_security_policy: "mutual_tls",
        }
    }

    /// The same labels, for a plaintext connection.
    pub fn plaintext(mut self) -> Self {
        self.connection_security_policy = "unknown";
        self
    }

    /// The same labels with `flags`.
    pub fn with_flags(mut self, flags: ResponseFlags) -> Self {
        self.response_flags = flags.code(self.reporter);
        self
    }

    /// Whether both sides are workloads `alive` (namespace, workload name) still holds, or unknown.
    pub fn alive(&self, alive: &impl Fn(&str, &str) -> bool) -> bool {
        let known = |workload: &str, namespace: &str| workload == "unknown" || alive(namespace, workload);
        known(&self.source_workload, &self.source_workload_namespace)
            && known(&self.destination_workload, &self.destination_workload_namespace)
    }
}

/// The series a family of label sets has, with how many connections each counts open: what
/// [`TcpMetrics::prune`] (and a proxy's own families) drop when their workloads are gone.
#[derive(Debug)]
pub struct Series<L> {
    open: Mutex<HashMap<L, usize>>,
}

impl<L> Default for Series<L> {
    fn default() -> Self {
        Series { open: Mutex::default() }
    }
}

impl<L: Clone + Eq + Hash> Series<L> {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<L, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A series seen, with `opened` more connections open (0 for a request). The labels are cloned only for a
    /// new series.
    pub fn seen(&self, labels: &L, opened: usize) {
        let mut open = self.open();
        match open.get_mut(labels) {
            Some(n) => *n += opened,
            None => {
                open.insert(labels.clone(), opened);
            }
        }
    }

    /// One of the series' connections closed.
    pub fn closed(&self, labels: &L) {
        if let Some(n) = self.open().get_mut(labels) {
            *n = n.saturating_sub(1);
        }
    }

    /// Removes and returns the series with no connection open that `keep` refuses.
    pub fn take_gone(&self, keep: impl Fn(&L) -> bool) -> Vec<L> {
        let mut open = self.open();
        let gone: Vec<L> = open.iter().filter(|(l, n)| **n == 0 && !keep(l)).map(|(l, _)| l.clone()).collect();
        for labels in &gone {
            open.remove(labels);
        }
        gone
    }
}

/// The four TCP families, registered in a proxy's registry.
#[derive(Debug, Default)]
pub struct TcpMetrics {
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
    series: Series<TcpLabels>,
}

impl TcpMetrics {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = TcpMetrics::default();
        registry.register("istio_tcp_connections_opened", "TCP connections opened", metrics.opened.clone());
        registry.register("istio_tcp_connections_closed", "TCP connections closed", metrics.closed.clone());
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the client (request direction)",
            metrics.received.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the client (response direction)",
            metrics.sent.clone(),
        );
        metrics
    }

    /// A connection opened.
    pub fn opened(&self, labels: &TcpLabels) {
        self.series.seen(labels, 1);
        self.opened.get_or_create(labels).inc();
    }

    /// A connection closed after `received` bytes from the client and `sent` to it.
    pub fn closed(&self, labels: &TcpLabels, received: u64, sent: u64) {
        self.series.closed(labels);
        self.closed.get_or_create(labels).inc();
        self.received.get_or_create(labels).inc_by(received);
        self.sent.get_or_create(labels).inc_by(sent);
    }

    /// A connection refused before any byte went through: opened and closed at once.
    pub fn refused(&self, labels: &TcpLabels) {
        self.opened(labels);
        self.closed(labels, 0, 0);
    }

    /// Drops the series of workloads `alive` (namespace, workload name) no longer holds, except those with a
    /// connection still open. Returns how many series went.
    pub fn prune(&self, alive: impl Fn(&str, &str) -> bool) -> usize {
        let gone = self.series.take_gone(|labels| labels.alive(&alive));
        for labels in &gone {
            self.opened.remove(labels);
            self.closed.remove(labels);
            self.received.remove(labels);
            self.sent.remove(labels);
        }
        gone.len()
    }
}

/// The exposition text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        return format!("# encoding failed: {e}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(reporter: Reporter, workload: &str) -> TcpLabels {
        let source = Side {
            workload: Some(workload),
            namespace: Some("payments"),
            principal: Some("spiffe://cluster.local/ns/payments/sa/accounts"),
            ..Side::default()
        };
        TcpLabels::new(reporter, source, Side::default(), None)
    }

    #[test]
    fn counters_carry_istio_names_and_labels() {
        let mut registry = Registry::default();
        let metrics = TcpMetrics::register(&mut registry);
        let l = labels(Reporter::Destination, "accounts");
        metrics.opened(&l);
        metrics.closed(&l, 10, 20);
        metrics.refused(&labels(Reporter::Destination, "probe").with_flags(ResponseFlags::Denied));
        let text = encode(&registry);
        assert!(
            text.contains("istio_tcp_connections_opened_total{reporter=\"destination\",source_workload=\"accounts\""),
            "{text}"
        );
        assert!(text.contains("connection_security_policy=\"mutual_tls\"} 20"), "{text}");
        assert!(text.contains("destination_workload=\"unknown\""), "{text}");
        assert!(text.contains("source_workload=\"probe\"") && text.contains("response_flags=\"DENY\""), "{text}");
    }

    #[test]
    fn flags_are_written_as_each_proxy_writes_them() {
        assert_eq!(ResponseFlags::Denied.code(Reporter::Destination), "DENY");
        assert_eq!(ResponseFlags::Denied.code(Reporter::Waypoint), "RBAC");
        assert_eq!(ResponseFlags::ConnectFailure.code(Reporter::Source), "CONNECT");
        assert_eq!(ResponseFlags::ConnectFailure.code(Reporter::Waypoint), "UF");
        assert_eq!(ResponseFlags::NoHealthyUpstream.code(Reporter::Waypoint), "UH");
        assert_eq!(ResponseFlags::None.code(Reporter::Waypoint), "-");
    }

    #[test]
    fn series_of_gone_workloads_are_dropped_unless_a_connection_is_open() {
        let mut registry = Registry::default();
        let metrics = TcpMetrics::register(&mut registry);
        let (gone, open, kept) =
            (labels(Reporter::Source, "old"), labels(Reporter::Source, "busy"), labels(Reporter::Source, "accounts"));
        metrics.refused(&gone);
        metrics.opened(&open);
        metrics.refused(&kept);
        let alive = |ns: &str, w: &str| ns == "payments" && w == "accounts";
        assert_eq!(metrics.prune(alive), 1);
        let text = encode(&registry);
        assert!(!text.contains("source_workload=\"old\""), "{text}");
        assert!(text.contains("source_workload=\"busy\""), "an open connection keeps its series: {text}");
        assert!(text.contains("source_workload=\"accounts\""), "{text}");
        metrics.closed(&open, 1, 2);
        assert_eq!(metrics.prune(alive), 1, "once closed, it goes at the next change");
        assert!(!encode(&registry).contains("source_workload=\"busy\""));
    }
}
