//! Python bindings of `mesh-policy`: `Mesh`, `Decision` and the exceptions, as the package `mesh_policy`.
//!
//! Requests and decisions cross the boundary as plain dicts in the shared check-request shape; they are
//! converted through JSON so that Python's own types (str, int, list, dict, None, bool) map one to one.

use mesh_policy::{CheckRequest, Decision as RustDecision, Mesh as RustMesh, MeshConfig, PathNormalization};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

mod finding;
mod trace;

pyo3::create_exception!(_native, MeshPolicyError, PyValueError, "Base of every mesh_policy error; a ValueError.");
pyo3::create_exception!(
    _native,
    InvalidManifestError,
    MeshPolicyError,
    "A manifest failed validation; the message names the resource and field."
);
pyo3::create_exception!(
    _native,
    InvalidRequestError,
    MeshPolicyError,
    "A check request is malformed; the message names the field."
);

fn json_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    PyModule::import(py, "json")
}

pub(crate) fn to_python(py: Python<'_>, value: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| MeshPolicyError::new_err(e.to_string()))?;
    Ok(json_module(py)?.call_method1("loads", (text,))?.unbind())
}

/// A mesh's security configuration: apply manifests, then check requests.
#[pyclass(module = "mesh_policy")]
struct Mesh {
    inner: RustMesh,
}

#[pymethods]
impl Mesh {
    #[new]
    #[pyo3(signature = (root_namespace = "istio-system", trust_domain = "cluster.local", trust_domain_aliases = None, path_normalization = "BASE"))]
    fn new(
        root_namespace: &str,
        trust_domain: &str,
        trust_domain_aliases: Option<Vec<String>>,
        path_normalization: &str,
    ) -> PyResult<Self> {
        let path_normalization: PathNormalization =
            serde_json::from_value(serde_json::Value::String(path_normalization.to_owned())).map_err(|_| {
                InvalidRequestError::new_err(format!(
                    "path_normalization: {path_normalization:?} is not one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES"
                ))
            })?;
        let config = MeshConfig {
            root_namespace: root_namespace.to_owned(),
            trust_domain: trust_domain.to_owned(),
            trust_domain_aliases: trust_domain_aliases.unwrap_or_default(),
            path_normalization,
            ..MeshConfig::default()
        };
        Ok(Mesh { inner: RustMesh::new(config) })
    }

    /// Applies a multi-document YAML manifest; returns a report dict.
    fn apply_yaml(&mut self, py: Python<'_>, text: &str) -> PyResult<Py<PyAny>> {
        let report = self.inner.apply_yaml(text).map_err(|e| InvalidManifestError::new_err(e.to_string()))?;
        let out = PyDict::new(py);
        let applied: Vec<String> = report.applied.iter().map(ToString::to_string).collect();
        out.set_item("applied", PyList::new(py, applied)?)?;
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|s| format!("{} {} {}", s.api_version, s.kind, s.name.as_deref().unwrap_or("")).trim_end().to_owned())
            .collect();
        out.set_item("skipped", PyList::new(py, skipped)?)?;
        let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
        out.set_item("warnings", PyList::new(py, warnings)?)?;
        Ok(out.into_any().unbind())
    }

    /// Reads and applies a manifest file.
    fn apply_file(&mut self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Py<PyAny>> {
        let text = std::fs::read_to_string(&path)?;
        self.apply_yaml(py, &text)
    }

    /// Supplies the JWKS document behind a RequestAuthentication `jwksUri` (nothing is fetched).
    fn add_jwks(&mut self, uri: &str, jwks_json: &str) -> PyResult<()> {
        self.inner.add_jwks(uri, jwks_json).map_err(|e| InvalidManifestError::new_err(format!("JWKS for {uri}: {e}")))
    }

    /// Checks a request dict; returns a Decision. Raw tokens are validated at `now` (Unix seconds; default:
    /// the current time).
    #[pyo3(signature = (request, now = None))]
    fn check(&self, py: Python<'_>, request: &Bound<'_, PyAny>, now: Option<f64>) -> PyResult<Decision> {
        let text: String = json_module(py)?
            .call_method1("dumps", (request,))?
            .extract()
            .map_err(|_| InvalidRequestError::new_err("request must be a dict of JSON-compatible values"))?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let req: CheckRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            InvalidRequestError::new_err(format!("invalid check request: {path}: {}", e.into_inner()))
        })?;
        let now = seconds(py, now)?;
        let decision = self.inner.check_at(&req, now).map_err(|e| InvalidRequestError::new_err(e.to_string()))?;
        Ok(Decision { inner: decision })
    }

    /// Traces a connection (or, with `http`, a request) from a source workload to a destination address through
    /// every hop; returns a Trace. Tokens are validated at `request["now"]`, else `now`, else the current time.
    #[pyo3(signature = (request, now = None))]
    fn trace(&self, py: Python<'_>, request: &Bound<'_, PyAny>, now: Option<f64>) -> PyResult<trace::Trace> {
        let text: String = json_module(py)?
            .call_method1("dumps", (request,))?
            .extract()
            .map_err(|_| InvalidRequestError::new_err("request must be a dict of JSON-compatible values"))?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let req: mesh_policy::TraceRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            InvalidRequestError::new_err(format!("invalid trace request: {path}: {}", e.into_inner()))
        })?;
        let now = seconds(py, now)?;
        let result = self.inner.trace(&req, now).map_err(|e| InvalidRequestError::new_err(e.to_string()))?;
        Ok(trace::Trace { inner: result })
    }

    /// Findings about the applied configuration, most severe first: Finding objects with a stable code, a
    /// severity, the resources involved, a message and a fix.
    fn analyze(&self) -> Vec<finding::Finding> {
        self.inner.analyze().into_iter().map(|inner| finding::Finding { inner }).collect()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("Mesh(resources={}, root_namespace={:?})", self.inner.len(), self.inner.config().root_namespace)
    }
}

/// `now` in whole seconds, as token times are; the current time when absent.
fn seconds(py: Python<'_>, now: Option<f64>) -> PyResult<u64> {
    let now = match now {
        Some(t) => t,
        None => PyModule::import(py, "time")?.call_method0("time")?.extract::<f64>()?,
    };
    if !now.is_finite() || now < 0.0 {
        return Err(InvalidRequestError::new_err("now: must be a non-negative number of seconds"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(now as u64)
}

/// The answer to a check.
#[pyclass(module = "mesh_policy", frozen)]
pub(crate) struct Decision {
    pub(crate) inner: RustDecision,
}

#[pymethods]
impl Decision {
    /// Whether the connection / request goes through.
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed
    }
    /// 200, 401 or 403 at a waypoint; None at ztunnel.
    #[getter]
    fn status(&self) -> Option<u16> {
        self.inner.status
    }
    /// ALLOW, DENY or CUSTOM.
    #[getter]
    fn action(&self) -> &'static str {
        self.inner.action.as_str()
    }
    /// namespace/name of the deciding policy, or None.
    #[getter]
    fn policy(&self) -> Option<String> {
        self.inner.policy.as_deref().map(str::to_owned)
    }
    /// Index of the matching rule, or None.
    #[getter]
    fn rule(&self) -> Option<usize> {
        self.inner.rule
    }
    /// Why.
    #[getter]
    fn reason(&self) -> String {
        self.inner.reason.to_string()
    }
    /// "ztunnel" or "waypoint".
    #[getter]
    fn enforcement(&self) -> &'static str {
        self.inner.enforcement.as_str()
    }
    /// How the waypoint forwards a validated token (`forward_original_token`, `output_payload_to_header`,
    /// `output_claim_to_headers`), or None when no token was validated here.
    #[getter]
    fn token_forwarding(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(f) = &self.inner.token_forwarding else { return Ok(None) };
        let out = PyDict::new(py);
        out.set_item("forward_original_token", f.forward_original_token)?;
        out.set_item("output_payload_to_header", f.output_payload_to_header.as_deref())?;
        out.set_item("output_claim_to_headers", f.output_claim_to_headers.clone())?;
        Ok(Some(out.into_any().unbind()))
    }
    /// When dry-run policies apply: the Decision they would produce if enforced; else None.
    #[getter]
    fn dry_run(&self) -> Option<Decision> {
        self.inner.dry_run.as_deref().map(|d| Decision { inner: d.clone() })
    }
    /// The decision as a dict in the shared shape.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.inner)
    }
    fn __bool__(&self) -> bool {
        self.inner.allowed
    }
    fn __repr__(&self) -> String {
        format!(
            "Decision(allowed={}, status={}, action={:?}, policy={}, rule={}, reason={:?}, enforcement={:?})",
            if self.inner.allowed { "True" } else { "False" },
            self.inner.status.map_or("None".to_owned(), |s| s.to_string()),
            self.inner.action.as_str(),
            self.inner.policy.as_deref().map_or("None".to_owned(), |p| format!("{p:?}")),
            self.inner.rule.map_or("None".to_owned(), |r| r.to_string()),
            self.inner.reason.to_string(),
            self.inner.enforcement.as_str(),
        )
    }
    fn __str__(&self) -> String {
        self.inner.to_string()
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Mesh>()?;
    m.add_class::<Decision>()?;
    m.add_class::<trace::Trace>()?;
    m.add_class::<finding::Finding>()?;
    m.add_class::<trace::Hop>()?;
    m.add("MeshPolicyError", m.py().get_type::<MeshPolicyError>())?;
    m.add("InvalidManifestError", m.py().get_type::<InvalidManifestError>())?;
    m.add("InvalidRequestError", m.py().get_type::<InvalidRequestError>())?;
    Ok(())
}
