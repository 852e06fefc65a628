//! Istio's standard metrics, as a waypoint reports them (`reporter="waypoint"`): for HTTP,
//! `istio_requests_total` and `istio_request_duration_milliseconds`, labelled by the TCP labels and the
//! response code; for TCP, the TCP families of [`mesh_runtime::metrics`].

use std::time::Duration;

use mesh_runtime::metrics::{Series, TcpLabels, TcpMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The labels of a request: those of its connection, and the status the client got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// Who, to whom, how.
    #[prometheus(flatten)]
    pub(crate) tcp: TcpLabels,
    /// The status the client got.
    pub(crate) response_code: u16,
}

/// The metrics and their registry. Series do not outlive their workloads: [`Metrics::prune`], after each
/// configuration change, drops the series of workloads that are gone unless a TCP connection they count is
/// still open.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    request_series: Series<RequestLabels>,
    /// Istio's TCP families.
    pub(crate) tcp: TcpMetrics,
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
        registry.register("istio_requests", "Requests the waypoint handled", requests.clone());
        registry.register(
            "istio_request_duration_milliseconds",
            "Time from a request's headers to its response's headers, in milliseconds",
            duration.clone(),
        );
        let tcp = TcpMetrics::register(&mut registry);
        Metrics { registry, requests, duration, request_series: Series::default(), tcp }
    }

    /// Records one request.
    pub(crate) fn record(&self, labels: &RequestLabels, took: Duration) {
        self.request_series.seen(labels, 0);
        self.requests.get_or_create(labels).inc();
        self.duration.get_or_create(labels).observe(took.as_secs_f64() * 1000.0);
    }

    /// Drops the series of workloads `alive` (namespace, workload name) no longer holds, except TCP series
    /// with a connection still open. Returns how many went.
    pub(crate) fn prune(&self, alive: impl Fn(&str, &str) -> bool) -> usize {
        let gone = self.request_series.take_gone(|labels| labels.tcp.alive(&alive));
        for labels in &gone {
            self.requests.remove(labels);
            self.duration.remove(labels);
        }
        gone.len() + self.tcp.prune(alive)
    }

    /// The exposition text.
    pub(crate) fn render(&self) -> String {
        mesh_runtime::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_runtime::metrics::{Reporter, ResponseFlags, Side};

    fn of(workload: &str) -> TcpLabels {
        let source = Side { workload: Some(workload), namespace: Some("payments"), ..Side::default() };
        let destination = Side { workload: Some("ledger"), namespace: Some("payments"), ..Side::default() };
        TcpLabels::new(Reporter::Waypoint, source, destination, None)
    }

    #[test]
    fn requests_are_counted_with_their_labels() {
        let m = Metrics::new();
        let labels = RequestLabels { tcp: of("accounts").with_flags(ResponseFlags::Denied), response_code: 403 };
        m.record(&labels, Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("istio_requests_total{reporter=\"waypoint\""), "{text}");
        assert!(text.contains("response_flags=\"RBAC\"") && text.contains("response_code=\"403\""), "{text}");
        assert!(text.contains("istio_request_duration_milliseconds_bucket{"), "{text}");
    }

    #[test]
    fn series_of_gone_workloads_are_dropped_unless_a_tcp_connection_is_open() {
        let m = Metrics::new();
        m.record(&RequestLabels { tcp: of("old"), response_code: 200 }, Duration::from_millis(1));
        m.tcp.opened(&of("busy"));
        m.record(&RequestLabels { tcp: of("accounts"), response_code: 200 }, Duration::from_millis(1));
        let alive = |ns: &str, w: &str| ns == "payments" && (w == "accounts" || w == "ledger");
        assert_eq!(m.prune(alive), 1);
        let text = m.render();
        assert!(!text.contains("source_workload=\"old\""), "{text}");
        assert!(text.contains("source_workload=\"busy\""), "{text}");
        assert!(text.contains("source_workload=\"accounts\""), "{text}");
        m.tcp.closed(&of("busy"), 1, 1);
        assert_eq!(m.prune(alive), 1);
        assert!(!m.render().contains("source_workload=\"busy\""));
    }
}
