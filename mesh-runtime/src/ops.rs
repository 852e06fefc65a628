//! The operational endpoints both proxies serve, with the same conventions: admin (15000, `/config_dump` and
//! views), Prometheus metrics (15020, `/metrics` and Istio's `/stats/prometheus`, in one content type) and
//! readiness (15021, `/healthz/ready`: 200 once nothing holds it back, 503 naming what does, and 503 from
//! the start of a drain). They stay up until the drain is over, so that a probe sees the drain.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::StatusCode;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::Endpoints;
use crate::http::{Reply, Routes, serve};
use crate::listen::{self, ListenError};
use crate::shutdown::Shutdown;

/// The content type of `/metrics`: the OpenMetrics text that `prometheus-client` encodes, as Istio's ztunnel
/// serves it.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the proxy is ready to serve, and if not, what it waits for. Cheap to clone.
///
/// Each thing a proxy needs before serving holds a [`Blocker`] (the configuration, the certificates, a
/// Gateway); the proxy is ready once every blocker is gone, until [`Readiness::drain`].
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<ReadyState>,
}

#[derive(Debug, Default)]
struct ReadyState {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, String>>,
    /// Conditions worth saying that do not stop serving, by topic.
    notes: Mutex<BTreeMap<String, String>>,
    draining: std::sync::atomic::AtomicBool,
}

/// Holds the proxy not ready until dropped (or [`Blocker::release`]d).
#[derive(Debug)]
#[must_use = "the proxy is ready as soon as the blocker is dropped"]
pub struct Blocker {
    ready: Readiness,
    id: u64,
}

/// What `/healthz/ready` and `/config_dump` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyStatus {
    /// Whether the proxy serves.
    pub ready: bool,
    /// What it waits for, if anything.
    pub waiting_for: Vec<String>,
    /// Whether it is draining.
    pub draining: bool,
    /// What is wrong without stopping it from serving (the configuration source unreachable, the last update
    /// refused), by topic.
    pub notes: BTreeMap<String, String>,
}

impl Readiness {
    /// Ready, with nothing holding it back.
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Not ready until the returned blocker is dropped; `what` is reported meanwhile ("the first
    /// configuration", "certificates").
    pub fn block(&self, what: impl Into<String>) -> Blocker {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.waiting().insert(id, what.into());
        Blocker { ready: self.clone(), id }
    }

    /// Says `text` about `topic` on `/healthz/ready` and in the status without taking the proxy out of
    /// service: the configuration in force is still enforced (a proxy that left service whenever its control
    /// plane did would take every replica down with it).
    pub fn note(&self, topic: &str, text: impl Into<String>) {
        self.notes().insert(topic.to_owned(), text.into());
    }

    /// Withdraws what was said about `topic`.
    pub fn clear_note(&self, topic: &str) {
        self.notes().remove(topic);
    }

    /// Not ready from now on: the drain has started.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the proxy serves.
    pub fn is_ready(&self) -> bool {
        !self.inner.draining.load(Ordering::Relaxed) && self.waiting().is_empty()
    }

    /// The state, for the admin view.
    pub fn status(&self) -> ReadyStatus {
        let draining = self.inner.draining.load(Ordering::Relaxed);
        let waiting_for: Vec<String> = self.waiting().values().cloned().collect();
        ReadyStatus { ready: !draining && waiting_for.is_empty(), waiting_for, draining, notes: self.notes().clone() }
    }

    /// `/healthz/ready`.
    pub fn routes(&self) -> Routes {
        let ready = self.clone();
        Routes::new().get("/healthz/ready", "200 when serving; 503 saying why not", move |_| {
            let status = ready.status();
            let notes: String = status.notes.iter().map(|(topic, text)| format!("{topic}: {text}\n")).collect();
            if status.ready {
                Reply::text(format!("ready\n{notes}"))
            } else if status.draining {
                Reply::status(StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n")
            } else {
                Reply::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: waiting for {}\n{notes}", status.waiting_for.join(", ")),
                )
            }
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, String>> {
        self.inner.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.inner.notes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Blocker {
    /// No longer holds the proxy back.
    pub fn release(self) {}
}

impl Drop for Blocker {
    fn drop(&mut self) {
        self.ready.waiting().remove(&self.id);
    }
}

/// `/metrics` and `/stats/prometheus`, both answering `render()` as [`METRICS_CONTENT_TYPE`].
pub fn metrics_routes(render: impl Fn() -> String + Send + Sync + 'static) -> Routes {
    let render = Arc::new(render);
    let again = Arc::clone(&render);
    Routes::new().get("/metrics", "Prometheus metrics", move |_| Reply::with_type(METRICS_CONTENT_TYPE, render())).get(
        "/stats/prometheus",
        "Prometheus metrics (Istio's path)",
        move |_| Reply::with_type(METRICS_CONTENT_TYPE, again()),
    )
}

/// The three operational listeners, bound.
#[derive(Debug)]
pub struct OpsListeners {
    admin: TcpListener,
    metrics: TcpListener,
    readiness: TcpListener,
}

impl OpsListeners {
    /// Binds the three endpoints; a port in use is an error naming the endpoint.
    pub async fn bind(endpoints: &Endpoints) -> Result<Self, ListenError> {
        Ok(OpsListeners {
            admin: listen::bind("admin", endpoints.admin, "--admin-addr").await?,
            metrics: listen::bind("metrics", endpoints.metrics, "--metrics-addr").await?,
            readiness: listen::bind("readiness", endpoints.readiness, "--readiness-addr").await?,
        })
    }

    /// Serves the admin routes, the metrics routes and `readiness` until `until`.
    pub fn serve(self, admin: Routes, metrics: Routes, readiness: &Readiness, until: &Shutdown) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        tasks.spawn(serve(self.admin, admin, until.clone()));
        tasks.spawn(serve(self.metrics, metrics, until.clone()));
        tasks.spawn(serve(self.readiness, readiness.routes(), until.clone()));
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_blocker_is_gone_and_never_again_once_draining() {
        let ready = Readiness::new();
        assert!(ready.is_ready());
        let config = ready.block("the first configuration");
        let certs = ready.block("certificates");
        assert_eq!(ready.status().waiting_for, ["the first configuration", "certificates"]);
        drop(config);
        assert!(!ready.is_ready());
        certs.release();
        assert!(ready.is_ready());
        ready.drain();
        let status = ready.status();
        assert!(!status.ready && status.draining, "{status:?}");
        let late = ready.block("anything");
        drop(late);
        assert!(!ready.is_ready());
    }

    #[test]
    fn a_note_is_said_without_leaving_service() {
        let ready = Readiness::new();
        ready.note("configuration source", "the Kubernetes API is unreachable");
        let status = ready.status();
        assert!(status.ready, "{status:?}");
        assert_eq!(
            status.notes.get("configuration source").map(String::as_str),
            Some("the Kubernetes API is unreachable")
        );
        ready.clear_note("configuration source");
        assert!(ready.status().notes.is_empty());
    }
}
