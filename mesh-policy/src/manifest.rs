//! Multi-document Kubernetes YAML: find the resources this crate evaluates, report the rest as skipped.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::cluster::{self, ClusterObject};
use crate::crd::{AuthorizationPolicySpec, ObjectMeta, PeerAuthenticationSpec, RequestAuthenticationSpec};
use crate::error::{FieldError, ManifestError};
use crate::resource::Kind;

/// The API group of the kinds this crate evaluates.
pub const GROUP: &str = "security.istio.io";
/// Versions of that group accepted for the three kinds.
pub const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// A Kubernetes object of one of the three kinds, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    /// `security.istio.io/v1` or `security.istio.io/v1beta1`.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// Name, namespace, annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec; an absent spec is an empty one.
    #[serde(default = "Option::default")]
    pub spec: Option<S>,
    /// Ignored.
    #[serde(default)]
    pub status: Option<Value>,
}

/// A resource of a kind this crate evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// An AuthorizationPolicy.
    AuthorizationPolicy(Object<AuthorizationPolicySpec>),
    /// A RequestAuthentication.
    RequestAuthentication(Object<RequestAuthenticationSpec>),
    /// A PeerAuthentication.
    PeerAuthentication(Object<PeerAuthenticationSpec>),
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Resource::RequestAuthentication(_) => Kind::RequestAuthentication,
            Resource::PeerAuthentication(_) => Kind::PeerAuthentication,
        }
    }

    /// The metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::AuthorizationPolicy(o) => &o.metadata,
            Resource::RequestAuthentication(o) => &o.metadata,
            Resource::PeerAuthentication(o) => &o.metadata,
        }
    }
}

/// A document of another kind, left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based index of the document.
    pub document: usize,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// Its `metadata.name`, when it has one.
    pub name: Option<String>,
}

/// What a YAML stream holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    /// Resources of the three kinds, with the index of their document.
    pub resources: Vec<(usize, Resource)>,
    /// Cluster objects the model reads (Namespace, Service, Pod, ServiceEntry, WorkloadEntry, Gateway), with the
    /// index of their document.
    pub cluster: Vec<(usize, ClusterObject)>,
    /// Everything else.
    pub skipped: Vec<Skipped>,
}

/// Parses a multi-document YAML stream. `List` objects (as `kubectl get -o yaml` prints) are unpacked.
/// Errors are collected for every document rather than stopping at the first.
pub fn parse(text: &str) -> Result<Manifest, Vec<ManifestError>> {
    let (manifest, errors) = parse_all(text);
    if errors.is_empty() { Ok(manifest) } else { Err(errors) }
}

/// What [`parse`] reads, and every error, so a caller can go on to check the documents that did parse.
pub(crate) fn parse_all(text: &str) -> (Manifest, Vec<ManifestError>) {
    let mut manifest = Manifest::default();
    let mut errors = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(value) => object(document, value, &mut manifest, &mut errors),
            Err(e) => {
                errors.push(ManifestError::Yaml { document, message: e.to_string() });
                // The stream cannot be resynchronised after a syntax error.
                break;
            }
        }
    }
    (manifest, errors)
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn object(document: usize, value: Value, manifest: &mut Manifest, errors: &mut Vec<ManifestError>) {
    if !value.is_mapping() {
        errors.push(ManifestError::NotAnObject { document, message: "not a Kubernetes object (a mapping)".into() });
        return;
    }
    let (Some(api_version), Some(kind)) = (str_field(&value, "apiVersion"), str_field(&value, "kind")) else {
        errors.push(ManifestError::NotAnObject {
            document,
            message: "not a Kubernetes object: `apiVersion` and `kind` must be set".into(),
        });
        return;
    };
    let (api_version, kind) = (api_version.to_owned(), kind.to_owned());
    let name = value.get("metadata").and_then(|m| str_field(m, "name")).map(str::to_owned);
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));

    if kind.ends_with("List") {
        if let Some(Value::Sequence(items)) = value.get("items") {
            for item in items.clone() {
                object(document, item, manifest, errors);
            }
            return;
        }
    }
    if let Some(k) = cluster::kind_of(group, &kind) {
        let value_namespace = value.get("metadata").and_then(|m| str_field(m, "namespace")).map(str::to_owned);
        let value_namespace = value_namespace.as_deref();
        match cluster_object(k, value) {
            Ok(o) => manifest.cluster.push((document, o)),
            Err(e) => {
                let ns = match value_namespace {
                    _ if k == Kind::Namespace => "",
                    Some(ns) if !ns.is_empty() => ns,
                    _ => "default",
                };
                let resource = crate::resource::ResourceId::new(k, ns, name.as_deref().unwrap_or("<unnamed>"));
                errors.push(ManifestError::Invalid { document, resource: resource.to_string(), errors: vec![e] })
            }
        }
        return;
    }
    let Some(our_kind) = Kind::from_name(&kind).filter(|_| group == GROUP) else {
        manifest.skipped.push(Skipped { document, api_version, kind, name });
        return;
    };
    let resource_name = || {
        let ns = value.get("metadata").and_then(|m| str_field(m, "namespace")).unwrap_or("default");
        format!("{kind} {ns}/{}", name.as_deref().unwrap_or("<unnamed>"))
    };
    if !VERSIONS.contains(&version) {
        errors.push(ManifestError::Invalid {
            document,
            resource: resource_name(),
            errors: vec![FieldError::new(
                "apiVersion",
                format!("unsupported version {version:?} of {GROUP}: use v1 or v1beta1"),
            )],
        });
        return;
    }
    let resource = match our_kind {
        Kind::AuthorizationPolicy => typed(value.clone()).map(Resource::AuthorizationPolicy),
        Kind::RequestAuthentication => typed(value.clone()).map(Resource::RequestAuthentication),
        _ => typed(value.clone()).map(Resource::PeerAuthentication),
    };
    match resource {
        Ok(r) => {
            if r.metadata().name.as_deref().unwrap_or("").is_empty() {
                errors.push(ManifestError::Invalid {
                    document,
                    resource: resource_name(),
                    errors: vec![FieldError::new("metadata.name", "must be set")],
                });
            } else {
                manifest.resources.push((document, r));
            }
        }
        Err(e) => errors.push(ManifestError::Invalid { document, resource: resource_name(), errors: vec![e] }),
    }
}

fn cluster_object(kind: Kind, value: Value) -> Result<ClusterObject, FieldError> {
    Ok(match kind {
        Kind::Namespace => ClusterObject::Namespace(typed_value(value)?),
        Kind::Service => ClusterObject::Service(typed_value(value)?),
        Kind::Pod => ClusterObject::Pod(typed_value(value)?),
        Kind::ServiceEntry => ClusterObject::ServiceEntry(typed_value(value)?),
        Kind::WorkloadEntry => ClusterObject::WorkloadEntry(typed_value(value)?),
        _ => ClusterObject::Gateway(typed_value(value)?),
    })
}

/// Deserializes with the path of the failing field, and a hint where YAML's typing surprises.
fn typed<S: DeserializeOwned>(value: Value) -> Result<Object<S>, FieldError> {
    typed_value(value)
}

fn typed_value<T: DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let mut message = e.inner().to_string();
        if message.contains("expected a string") && (message.contains("integer") || message.contains("boolean")) {
            message.push_str(" (quote the value: Kubernetes requires a string here)");
        }
        FieldError::new(if field == "." { String::new() } else { field }, message)
    })
}
