//! Python bindings of `mesh-policy`: `Mesh`, `Decision` and the exceptions, as the package `mesh_policy`.
//!
//! Requests and decisions cross the boundary as plain dicts in the shared check-request shape; they are
//! converted through JSON so that Python's own types (str, int, list, dict, None, bool) map one to one.

use mesh_policy::{CheckRequest, Decision as RustDecision, Mesh as RustMesh, MeshConfig, PathNormalization};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::RwLock;

use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

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

pyo3::create_exception!(
    _native,
    InvalidConfigError,
    InvalidRequestError,
    "The Mesh's settings are invalid (a trust domain, the root namespace, ...); a subclass of InvalidRequestError."
);

/// Longest error message raised, in bytes: a huge value quoted in a message is cut.
const MAX_MESSAGE_BYTES: usize = 8192;

/// Deepest nesting of lists and dicts a request may use.
const MAX_REQUEST_DEPTH: usize = 64;

/// `message` cut to [`MAX_MESSAGE_BYTES`].
fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &message[..end], message.len() - end)
}

pub(crate) fn to_python(py: Python<'_>, value: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| MeshPolicyError::new_err(e.to_string()))?;
    Ok(PyModule::import(py, "json")?.call_method1("loads", (text,))?.unbind())
}

/// Writes a Python value of the JSON types (dict with str keys, list, tuple, str, int, float, bool, None) as
/// JSON text, in the dict's order. Anything else is an error naming where it is; no Python code runs.
fn write_json(obj: &Bound<'_, PyAny>, path: &mut String, depth: usize, out: &mut String) -> Result<(), String> {
    let at = |path: &str| if path.is_empty() { "request".to_owned() } else { format!("request{path}") };
    if depth > MAX_REQUEST_DEPTH {
        return Err(format!("{}: nested deeper than {MAX_REQUEST_DEPTH} levels", at(path)));
    }
    if obj.is_none() {
        out.push_str("null");
    } else if let Ok(b) = obj.cast::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if let Ok(i) = obj.cast::<PyInt>() {
        match (i.extract::<i64>(), i.extract::<u64>()) {
            (Ok(n), _) => out.push_str(&n.to_string()),
            (_, Ok(n)) => out.push_str(&n.to_string()),
            _ => return Err(format!("{}: integer out of range", at(path))),
        }
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(format!("{}: {v} is not a JSON number", at(path)));
        }
        out.push_str(&serde_json::Number::from_f64(v).map_or_else(|| "null".to_owned(), |n| n.to_string()));
    } else if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow().map_err(|_| format!("{}: not valid UTF-8 text (lone surrogate)", at(path)))?;
        out.push_str(&serde_json::Value::from(&*s).to_string());
    } else if let Ok(d) = obj.cast::<PyDict>() {
        out.push('{');
        for (i, (k, v)) in d.iter().enumerate() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(format!("{}: keys must be str, not {}", at(path), type_name(&k)));
            };
            let key = key.to_cow().map_err(|_| format!("{}: a key is not valid UTF-8 text", at(path)))?;
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::from(&*key).to_string());
            out.push(':');
            let len = path.len();
            path.push_str(&format!("[{:?}]", truncate(&key, 64)));
            write_json(&v, path, depth + 1, out)?;
            path.truncate(len);
        }
        out.push('}');
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        out.push('[');
        let items: Vec<Bound<'_, PyAny>> = match obj.cast::<PyList>() {
            Ok(l) => l.iter().collect(),
            Err(_) => obj.cast::<PyTuple>().map(|t| t.iter().collect()).unwrap_or_default(),
        };
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            write_json(v, path, depth + 1, out)?;
            path.truncate(len);
        }
        out.push(']');
    } else {
        return Err(format!(
            "{}: a {} is not a JSON value (use dict, list, str, int, float, bool or None)",
            at(path),
            type_name(obj)
        ));
    }
    Ok(())
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "value".to_owned(), |n| n.to_string())
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A text argument: `str`, or `bytes` holding UTF-8 (a leading byte order mark is allowed).
fn text_arg(obj: &Bound<'_, PyAny>, what: &str, err: fn(String) -> PyErr) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_cow()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| err(format!("{what}: not valid UTF-8 text (lone surrogate)")));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return utf8(b.as_bytes().to_vec(), what, err);
    }
    Err(err(format!("{what}: expected str, not {}", type_name(obj))))
}

fn utf8(bytes: Vec<u8>, what: &str, err: fn(String) -> PyErr) -> PyResult<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        err(format!("{what}: not valid UTF-8 (invalid byte at offset {at})"))
    })
}

fn manifest_error(message: String) -> PyErr {
    InvalidManifestError::new_err(bounded(message))
}

fn request_error(message: String) -> PyErr {
    InvalidRequestError::new_err(bounded(message))
}

fn config_error(message: String) -> PyErr {
    InvalidConfigError::new_err(bounded(message))
}

fn poisoned<T>(_: T) -> PyErr {
    MeshPolicyError::new_err("the mesh is unusable: an earlier call panicked while changing it")
}

/// A mesh's security configuration: apply manifests, then check requests.
///
/// Safe to share between threads: checks run in parallel without the GIL, applies are serialized and wait
/// for running checks. No Python code runs while the mesh is locked, so a check made from inside a callback
/// of another call cannot deadlock or fail.
#[pyclass(module = "mesh_policy", frozen)]
struct Mesh {
    inner: RwLock<RustMesh>,
}

#[pymethods]
impl Mesh {
    #[new]
    #[pyo3(signature = (root_namespace = None, trust_domain = None, trust_domain_aliases = None, path_normalization = None, max_manifest_bytes = None))]
    fn new(
        root_namespace: Option<&Bound<'_, PyAny>>,
        trust_domain: Option<&Bound<'_, PyAny>>,
        trust_domain_aliases: Option<&Bound<'_, PyAny>>,
        path_normalization: Option<&Bound<'_, PyAny>>,
        max_manifest_bytes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let defaults = MeshConfig::default();
        let text = |v: Option<&Bound<'_, PyAny>>, what: &str, default: String| match v {
            None => Ok(default),
            Some(v) => text_arg(v, what, config_error),
        };
        let root_namespace = text(root_namespace, "root_namespace", defaults.root_namespace.clone())?;
        let trust_domain = text(trust_domain, "trust_domain", defaults.trust_domain.clone())?;
        let trust_domain_aliases = match trust_domain_aliases {
            None => Vec::new(),
            Some(v) if v.is_none() => Vec::new(),
            Some(v) if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() => {
                let mut out = Vec::new();
                for (i, item) in v.try_iter()?.enumerate() {
                    out.push(text_arg(&item?, &format!("trust_domain_aliases[{i}]"), config_error)?);
                }
                out
            }
            Some(v) => {
                return Err(config_error(format!(
                    "trust_domain_aliases: expected a list of str, not {}",
                    type_name(v)
                )));
            }
        };
        let path_normalization = text(path_normalization, "path_normalization", "BASE".to_owned())?;
        let path_normalization: PathNormalization =
            serde_json::from_value(serde_json::Value::String(path_normalization.clone())).map_err(|_| {
                config_error(format!(
                    "path_normalization: {path_normalization:?} is not one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES"
                ))
            })?;
        let max_manifest_bytes = match max_manifest_bytes {
            None => defaults.max_manifest_bytes,
            Some(v) => match (v.cast::<PyInt>(), v.is_instance_of::<PyBool>()) {
                (Ok(i), false) => i.extract::<usize>().map_err(|_| {
                    config_error("max_manifest_bytes: must be a non-negative number of bytes".to_owned())
                })?,
                _ => return Err(config_error(format!("max_manifest_bytes: expected int, not {}", type_name(v)))),
            },
        };
        let config = MeshConfig {
            root_namespace,
            trust_domain,
            trust_domain_aliases,
            path_normalization,
            max_manifest_bytes,
            ..defaults
        };
        config
            .validate()
            .map_err(|errors| config_error(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
        Ok(Mesh { inner: RwLock::new(RustMesh::new(config)) })
    }

    /// Applies a multi-document YAML manifest (str, or UTF-8 bytes); returns a report dict.
    fn apply_yaml(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let text = text_arg(text, "manifest", manifest_error)?;
        self.apply_text(py, &text)
    }

    /// Reads and applies a manifest file.
    fn apply_file(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Py<PyAny>> {
        let bytes = py.detach(|| std::fs::read(&path))?;
        let text = utf8(bytes, &path.display().to_string(), manifest_error)?;
        self.apply_text(py, &text)
    }

    /// Supplies the JWKS document behind a RequestAuthentication `jwksUri` (nothing is fetched).
    fn add_jwks(&self, py: Python<'_>, uri: &Bound<'_, PyAny>, jwks_json: &Bound<'_, PyAny>) -> PyResult<()> {
        let uri = text_arg(uri, "uri", manifest_error)?;
        let jwks_json = text_arg(jwks_json, "jwks_json", manifest_error)?;
        py.detach(|| {
            let mut mesh = self.inner.write().map_err(poisoned)?;
            mesh.add_jwks(&uri, &jwks_json).map_err(|e| manifest_error(format!("JWKS for {uri}: {e}")))
        })
    }

    /// Checks a request dict; returns a Decision. Raw tokens are validated at `now` (Unix seconds; default:
    /// the current time).
    #[pyo3(signature = (request, now = None))]
    fn check(&self, py: Python<'_>, request: &Bound<'_, PyAny>, now: Option<&Bound<'_, PyAny>>) -> PyResult<Decision> {
        let text = request_json(request)?;
        let now = seconds(now)?;
        let snapshot = self.snapshot(py)?;
        let decision = py.detach(|| {
            let req: CheckRequest = parse_request(&text, "check")?;
            snapshot.check_at(&req, now).map_err(|e| request_error(e.to_string()))
        })?;
        Ok(Decision { inner: decision })
    }

    /// Checks a list (or tuple) of request dicts in one call, against one snapshot and one `now`; returns a
    /// Decision per request, in order. The requests are read while holding the GIL, then checked with it
    /// released. An invalid request raises InvalidRequestError naming its index and field.
    #[pyo3(signature = (requests, now = None))]
    fn check_many(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Decision>> {
        let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = requests.cast::<PyList>() {
            list.iter().collect()
        } else if let Ok(tuple) = requests.cast::<PyTuple>() {
            tuple.iter().collect()
        } else {
            return Err(request_error(format!("requests: expected a list of dicts, not {}", type_name(requests))));
        };
        let texts = items
            .iter()
            .enumerate()
            .map(|(i, request)| request_text(request).map_err(|e| request_error(format!("requests[{i}]: {e}"))))
            .collect::<PyResult<Vec<String>>>()?;
        let now = seconds(now)?;
        let snapshot = self.snapshot(py)?;
        let decisions = py.detach(|| {
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let req: CheckRequest =
                        parse_shape(text, "check").map_err(|e| request_error(format!("requests[{i}]: {e}")))?;
                    snapshot.check_at(&req, now).map_err(|e| request_error(format!("requests[{i}]: {e}")))
                })
                .collect::<PyResult<Vec<_>>>()
        })?;
        Ok(decisions.into_iter().map(|inner| Decision { inner }).collect())
    }

    /// Traces a connection (or, with `http`, a request) from a source workload to a destination address through
    /// every hop; returns a Trace. Tokens are validated at `request["now"]`, else `now`, else the current time.
    #[pyo3(signature = (request, now = None))]
    fn trace(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<trace::Trace> {
        let text = request_json(request)?;
        let now = seconds(now)?;
        let snapshot = self.snapshot(py)?;
        let result = py.detach(|| {
            let req: mesh_policy::TraceRequest = parse_request(&text, "trace")?;
            snapshot.trace(&req, now).map_err(|e| request_error(e.to_string()))
        })?;
        Ok(trace::Trace { inner: result })
    }

    /// Findings about the applied configuration, most severe first: Finding objects with a stable code, a
    /// severity, the resources involved, a message and a fix.
    fn analyze(&self, py: Python<'_>) -> PyResult<Vec<finding::Finding>> {
        let snapshot = self.snapshot(py)?;
        let findings = py.detach(|| snapshot.analyze());
        Ok(findings.into_iter().map(|inner| finding::Finding { inner }).collect())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| Ok(self.inner.read().map_err(poisoned)?.len()))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| {
            let mesh = self.inner.read().map_err(poisoned)?;
            Ok(format!("Mesh(resources={}, root_namespace={:?})", mesh.len(), mesh.config().root_namespace))
        })
    }
}

/// A request dict as JSON text, written without running Python code.
fn request_json(request: &Bound<'_, PyAny>) -> PyResult<String> {
    request_text(request).map_err(request_error)
}

fn request_text(request: &Bound<'_, PyAny>) -> Result<String, String> {
    if !request.is_instance_of::<PyDict>() {
        return Err(format!("request: expected a dict, not {}", type_name(request)));
    }
    let mut text = String::new();
    write_json(request, &mut String::new(), 0, &mut text)?;
    Ok(text)
}

/// A request of the shared shapes from its JSON text, with the path of a field that does not fit.
fn parse_request<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> PyResult<T> {
    parse_shape(text, what).map_err(request_error)
}

fn parse_shape<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        format!("invalid {what} request: {path}: {}", e.into_inner())
    })
}

/// `now` in whole seconds, as token times are: a number, or the current time when absent.
fn seconds(now: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    let now = match now {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.cast::<PyInt>(), v.cast::<PyFloat>(), v.is_instance_of::<PyBool>()) {
            (Ok(i), _, false) => Some(i.extract::<f64>().unwrap_or(f64::NAN)),
            (_, Ok(f), _) => Some(f.value()),
            _ => return Err(request_error(format!("now: expected a number of seconds, not {}", type_name(v)))),
        },
    };
    let now = match now {
        Some(t) => t,
        None => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
        }
    };
    if !now.is_finite() || now < 0.0 {
        return Err(request_error("now: must be a non-negative number of seconds".to_owned()));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(now as u64)
}

impl Mesh {
    /// The current snapshot: checks and traces run against it without holding the lock, so an apply never waits
    /// for them, nor they for an apply.
    fn snapshot(&self, py: Python<'_>) -> PyResult<std::sync::Arc<mesh_policy::Snapshot>> {
        py.detach(|| Ok(self.inner.read().map_err(poisoned)?.snapshot()))
    }

    /// Applies `text` with the GIL released, then builds the report dict.
    fn apply_text(&self, py: Python<'_>, text: &str) -> PyResult<Py<PyAny>> {
        let report = py.detach(|| {
            let mut mesh = self.inner.write().map_err(poisoned)?;
            mesh.apply_yaml(text).map_err(|e| manifest_error(e.to_string()))
        })?;
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
    m.add_class::<trace::Hop>()?;
    m.add_class::<finding::Finding>()?;
    m.add("MeshPolicyError", m.py().get_type::<MeshPolicyError>())?;
    m.add("InvalidManifestError", m.py().get_type::<InvalidManifestError>())?;
    m.add("InvalidRequestError", m.py().get_type::<InvalidRequestError>())?;
    m.add("InvalidConfigError", m.py().get_type::<InvalidConfigError>())?;
    Ok(())
}
