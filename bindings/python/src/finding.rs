//! `Finding`: one analyzer finding, with its fields as attributes and `to_dict()`.

use mesh_policy::Finding as RustFinding;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::to_python;

/// A finding of the analyzer: a stable code, a severity, the resources involved, a message and a fix.
#[pyclass(module = "mesh_policy", frozen)]
pub(crate) struct Finding {
    pub(crate) inner: RustFinding,
}

#[pymethods]
impl Finding {
    /// A stable code, e.g. "waypoint-identity-not-allowed".
    #[getter]
    fn code(&self) -> &'static str {
        self.inner.code
    }
    /// "error", "warning" or "info".
    #[getter]
    fn severity(&self) -> &'static str {
        self.inner.severity.as_str()
    }
    /// The resources involved, the first being the one to change: dicts with kind, namespace, name and field.
    #[getter]
    fn resources(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        self.inner
            .resources
            .iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("kind", r.resource.kind().as_str())?;
                let ns = r.resource.namespace();
                d.set_item("namespace", (!ns.is_empty()).then_some(ns))?;
                d.set_item("name", r.resource.name())?;
                d.set_item("field", r.field.as_deref())?;
                Ok(d.into_any().unbind())
            })
            .collect()
    }
    /// What is wrong.
    #[getter]
    fn message(&self) -> &str {
        &self.inner.message
    }
    /// How to fix it.
    #[getter]
    fn fix(&self) -> &str {
        &self.inner.fix
    }
    /// The finding as a dict.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.inner)
    }
    fn __repr__(&self) -> String {
        format!(
            "Finding(code={:?}, severity={:?}, message={:?})",
            self.inner.code,
            self.inner.severity.as_str(),
            self.inner.message
        )
    }
    fn __str__(&self) -> String {
        self.inner.to_string()
    }
}
