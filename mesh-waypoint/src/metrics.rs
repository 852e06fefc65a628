//! Istio's standard metrics, as a waypoint reports them (`reporter="waypoint"`): for HTTP,
//! `istio_requests_total` and `istio_request_duration_milliseconds`; for TCP, `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_sent_bytes_total` (to the client) and
//! `istio_tcp_received_bytes_total` (from the client).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The labels of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// Always `waypoint`.
    pub(crate) reporter: &'static str,
    /// The client workload's name, or `unknown`.
    pub(crate) source_workload: String,
    /// Its namespace, or `unknown`.
    pub(crate) source_workload_namespace: String,
    /// The client's identity (`spiffe://...`).
    pub(crate) source_principal: String,
    /// The endpoint's workload name, or `unknown`.
    pub(crate) destination_workload: String,
    /// Its namespace.
    pub(crate) destination_workload_namespace: String,
    /// The endpoint's identity, or `unknown`.
    pub(crate) destination_principal: String,
    /// The service's host name, or `unknown`.
    pub(crate) destination_service: String,
    /// The service's name.
    pub(crate) destination_service_name: String,
    /// The service's namespace.
    pub(crate) destination_service_namespace: String,
    /// `http`, `grpc` or `tcp`.
    pub(crate) request_protocol: &'static str,
    /// The status the client got (`0` for a TCP connection).
    pub(crate) response_code: u16,
    /// Envoy's response flags: `-`, `RBAC` (denied by policy), `UF` (upstream connect failed or refused),
    /// `UH` (no endpoint), `DC` (the client went away).
    pub(crate) response_flags: &'static str,
    /// Always `mutual_tls`: every client arrives over HBONE.
    pub(crate) connection_security_policy: &'static str,
}

/// The metrics and their registry. Series do not outlive their workloads: [`Metrics::prune`], after each
/// configuration change, drops the series of workloads that are gone unless a TCP connection they count is
/// still open.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Every series, with how many of its TCP connections are open.
    series: Mutex<HashMap<RequestLabels, usize>>,
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    tcp_opened: Family<RequestLabels, Counter>,
    tcp_closed: Family<RequestLabels, Counter>,
    tcp_sent: Family<RequestLabels, Counter>,
    tcp_received: Family<RequestLabels, Counter>,
}

/// Istio's default duration buckets, in milliseconds.
const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];

impl Metrics {
    /// Registered, at zero.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration =
            Family::<RequestLabels, Histogram>::new_with_constructor((|| Histogram::new(BUCKETS)) as fn() -> Histogram);
        registry.register("istio_requests", "Requests (and TCP connections) the waypoint handled", requests.clone());
        registry.register(
            "istio_request_duration_milliseconds",
            "Time from a request's headers to its response's headers, in milliseconds",
            duration.clone(),
        );
        let (tcp_opened, tcp_closed, tcp_sent, tcp_received) =
            (Family::default(), Family::default(), Family::default(), Family::default());
        registry.register("istio_tcp_connections_opened", "TCP connections opened", tcp_opened.clone());
        registry.register("istio_tcp_connections_closed", "TCP connections closed", tcp_closed.clone());
        registry.register("istio_tcp_sent_bytes", "Bytes sent to TCP clients", tcp_sent.clone());
        registry.register("istio_tcp_received_bytes", "Bytes received from TCP clients", tcp_received.clone());
        Metrics {
            series: Mutex::default(),
            registry: Mutex::new(registry),
            requests,
            duration,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
        }
    }

    fn series(&self) -> std::sync::MutexGuard<'_, HashMap<RequestLabels, usize>> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists the series of `labels`, adding `opened` to its open connections; the labels are cloned only for
    /// a new series, not on every request.
    fn count(&self, labels: &RequestLabels, opened: usize) {
        let mut series = self.series();
        match series.get_mut(labels) {
            Some(open) => *open += opened,
            None => {
                series.insert(labels.clone(), opened);
            }
        }
    }

    /// Records a TCP connection opened.
    pub(crate) fn tcp_opened(&self, labels: &RequestLabels) {
        self.count(labels, 1);
        self.tcp_opened.get_or_create(labels).inc();
    }

    /// Records a TCP connection closed, with the bytes it carried each way.
    pub(crate) fn tcp_closed(&self, labels: &RequestLabels, sent: u64, received: u64) {
        if let Some(open) = self.series().get_mut(labels) {
            *open = open.saturating_sub(1);
        }
        self.tcp_closed.get_or_create(labels).inc();
        self.tcp_sent.get_or_create(labels).inc_by(sent);
        self.tcp_received.get_or_create(labels).inc_by(received);
    }

    /// Records one request.
    pub(crate) fn record(&self, labels: &RequestLabels, took: Duration) {
        self.count(labels, 0);
        self.requests.get_or_create(labels).inc();
        self.duration.get_or_create(labels).observe(took.as_secs_f64() * 1000.0);
    }

    /// Drops the series of workloads `alive` (namespace, workload name) no longer holds, except those with a
    /// TCP connection still open. Returns how many went.
    pub(crate) fn prune(&self, alive: impl Fn(&str, &str) -> bool) -> usize {
        let known = |workload: &str, namespace: &str| workload == "unknown" || alive(namespace, workload);
        let mut series = self.series();
        let gone: Vec<RequestLabels> = series
            .iter()
            .filter(|(l, open)| {
                **open == 0
                    && !(known(&l.source_workload, &l.source_workload_namespace)
                        && known(&l.destination_workload, &l.destination_workload_namespace))
            })
            .map(|(l, _)| l.clone())
            .collect();
        for labels in &gone {
            series.remove(labels);
            self.requests.remove(labels);
            self.duration.remove(labels);
            self.tcp_opened.remove(labels);
            self.tcp_closed.remove(labels);
            self.tcp_sent.remove(labels);
            self.tcp_received.remove(labels);
        }
        gone.len()
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            return format!("# encoding failed: {e}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_their_labels() {
        let m = Metrics::new();
        let labels =
            RequestLabels { reporter: "waypoint", response_code: 403, response_flags: "RBAC", ..Default::default() };
        m.record(&labels, Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("istio_requests_total{"), "{text}");
        assert!(text.contains("response_code=\"403\""), "{text}");
        assert!(text.contains("istio_request_duration_milliseconds_bucket{"), "{text}");
    }

    #[test]
    fn series_of_gone_workloads_are_dropped_unless_a_tcp_connection_is_open() {
        let m = Metrics::new();
        let of = |workload: &str| RequestLabels {
            reporter: "waypoint",
            source_workload: workload.into(),
            source_workload_namespace: "payments".into(),
            destination_workload: "ledger".into(),
            destination_workload_namespace: "payments".into(),
            ..Default::default()
        };
        m.record(&of("old"), Duration::from_millis(1));
        m.tcp_opened(&of("busy"));
        m.record(&of("accounts"), Duration::from_millis(1));
        let alive = |ns: &str, w: &str| ns == "payments" && (w == "accounts" || w == "ledger");
        assert_eq!(m.prune(alive), 1);
        let text = m.render();
        assert!(!text.contains("source_workload=\"old\""), "{text}");
        assert!(text.contains("source_workload=\"busy\""), "{text}");
        assert!(text.contains("source_workload=\"accounts\""), "{text}");
        m.tcp_closed(&of("busy"), 1, 1);
        assert_eq!(m.prune(alive), 1);
        assert!(!m.render().contains("source_workload=\"busy\""));
    }
}
