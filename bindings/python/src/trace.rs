//! `Trace` and `Hop`: a trace's result, with its fields as attributes and `to_dict()` in the shared shape.

use mesh_policy::trace::{EndpointTrace, Hop as RustHop, TraceResult};
use pyo3::prelude::*;

use crate::{Decision, to_python};

/// The result of a trace: what the client sees, and each hop's decision.
#[pyclass(module = "mesh_policy", frozen)]
pub(crate) struct Trace {
    pub(crate) inner: TraceResult,
}

/// One enforcement point on the way.
#[pyclass(module = "mesh_policy", frozen)]
pub(crate) struct Hop {
    inner: RustHop,
}

fn endpoint(e: &EndpointTrace) -> TraceResult {
    TraceResult {
        allowed: e.allowed,
        status: e.status,
        refused: e.refused,
        denied_by: e.denied_by,
        endpoint: e.endpoint.clone(),
        hops: e.hops.clone(),
        endpoints: Vec::new(),
    }
}

#[pymethods]
impl Trace {
    /// Whether every hop allows.
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed
    }
    /// With `http`: what the client receives (200, 401, 403, 503); None without `http` or when refused.
    #[getter]
    fn status(&self) -> Option<u16> {
        self.inner.status
    }
    /// Whether the client's own connection is refused or reset.
    #[getter]
    fn refused(&self) -> bool {
        self.inner.refused
    }
    /// Index in `hops` of the hop that denied, or None.
    #[getter]
    fn denied_by(&self) -> Option<usize> {
        self.inner.denied_by
    }
    /// The destination workload followed (namespace/name), or None.
    #[getter]
    fn endpoint(&self) -> Option<String> {
        self.inner.endpoint.clone()
    }
    /// Every enforcement point on the way, in order.
    #[getter]
    fn hops(&self) -> Vec<Hop> {
        self.inner.hops.iter().map(|h| Hop { inner: h.clone() }).collect()
    }
    /// One trace per endpoint when the destination has several; empty otherwise.
    #[getter]
    fn endpoints(&self) -> Vec<Trace> {
        self.inner.endpoints.iter().map(|e| Trace { inner: endpoint(e) }).collect()
    }
    /// The hop that denied, or None.
    #[getter]
    fn denied_hop(&self) -> Option<Hop> {
        let i = self.inner.denied_by?;
        self.inner.hops.get(i).map(|h| Hop { inner: h.clone() })
    }
    /// The result as a dict in the shared shape.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.inner)
    }
    fn __bool__(&self) -> bool {
        self.inner.allowed
    }
    fn __repr__(&self) -> String {
        let hops: Vec<String> = self
            .inner
            .hops
            .iter()
            .map(|h| {
                let verdict = if h.decision.allowed { "allow" } else { "deny" };
                format!("{}:{verdict}", h.proxy.as_str())
            })
            .collect();
        format!(
            "Trace(allowed={}, status={}, refused={}, endpoint={}, hops=[{}])",
            if self.inner.allowed { "True" } else { "False" },
            self.inner.status.map_or("None".to_owned(), |s| s.to_string()),
            if self.inner.refused { "True" } else { "False" },
            self.inner.endpoint.as_deref().map_or("None".to_owned(), |e| format!("{e:?}")),
            hops.join(", "),
        )
    }
}

#[pymethods]
impl Hop {
    /// "waypoint" or "ztunnel".
    #[getter]
    fn proxy(&self) -> &'static str {
        self.inner.proxy.as_str()
    }
    /// The waypoint Gateway (namespace/name) or the destination's node, or None.
    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.name.clone()
    }
    /// The identity this hop sees; None for a plaintext peer.
    #[getter]
    fn peer(&self) -> Option<String> {
        self.inner.peer.clone()
    }
    /// The hop's decision.
    #[getter]
    fn decision(&self) -> Decision {
        Decision { inner: self.inner.decision.clone() }
    }
    /// The hop as a dict in the shared shape.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.inner)
    }
    fn __repr__(&self) -> String {
        format!(
            "Hop(proxy={:?}, name={:?}, peer={:?}, decision={})",
            self.proxy(),
            self.inner.name.as_deref().unwrap_or(""),
            self.inner.peer.as_deref().unwrap_or(""),
            self.inner.decision
        )
    }
}
