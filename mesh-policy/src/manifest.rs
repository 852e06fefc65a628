//! Multi-document Kubernetes YAML: find the resources this crate evaluates, report the rest as skipped.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::cluster::{self, ClusterObject};
use crate::config::DEFAULT_MAX_MANIFEST_BYTES;
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
    /// Cluster objects the model reads (Namespace, Service, Pod, ServiceEntry, WorkloadEntry, Gateway,
    /// GatewayClass), with the
    /// index of their document.
    pub cluster: Vec<(usize, ClusterObject)>,
    /// istiod's L4 authorizations, from a node proxy's state ([`crate::xds::State`]), with the index of their
    /// document.
    pub authorizations: Vec<(usize, crate::xds::Authorization)>,
    /// Everything else.
    pub skipped: Vec<Skipped>,
}

/// Parses a multi-document YAML stream of at most [`DEFAULT_MAX_MANIFEST_BYTES`]. `List` objects (as
/// `kubectl get -o yaml` prints) are unpacked. Errors are collected for every document rather than stopping at
/// the first.
pub fn parse(text: &str) -> Result<Manifest, Vec<ManifestError>> {
    parse_with_limit(text, DEFAULT_MAX_MANIFEST_BYTES)
}

/// [`parse`] with a limit on the size of the stream, in bytes.
///
/// Reading is bounded by the input: a stream over `max_bytes` is refused before it is parsed, and the YAML
/// reader's budgets (nodes, events, scalar bytes, alias replay) are set in proportion to the stream's size, so
/// that aliases cannot expand to much more than the text itself. Nesting deeper than [`MAX_DEPTH`] is refused.
/// Duplicate keys in a mapping are an error. A UTF-8 byte order mark at the start is skipped, as kubectl does.
///
/// Documents are numbered among the stream's non-empty documents.
pub fn parse_with_limit(text: &str, max_bytes: usize) -> Result<Manifest, Vec<ManifestError>> {
    let (manifest, errors) = parse_all(text, max_bytes);
    if errors.is_empty() { Ok(manifest) } else { Err(errors) }
}

/// What [`parse_with_limit`] reads, and every error, so a caller can go on to check the documents that did
/// parse.
pub(crate) fn parse_all(text: &str, max_bytes: usize) -> (Manifest, Vec<ManifestError>) {
    let mut manifest = Manifest::default();
    if text.len() > max_bytes {
        return (manifest, vec![ManifestError::TooLarge { bytes: text.len(), limit: max_bytes }]);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs: Vec<Value> = match serde_saphyr::from_multiple_with_options(text, reader_options(text.len())) {
        Ok(docs) => docs,
        Err(e) => return (manifest, vec![yaml_error(text, &e)]),
    };
    let mut errors = Vec::new();
    for (i, value) in docs.into_iter().enumerate() {
        if !value.is_null() {
            object(i + 1, value, &mut manifest, &mut errors);
        }
    }
    (manifest, errors)
}

/// Deepest nesting of collections a manifest may use. The kinds read here nest about 10 deep (12 in a `List`),
/// `managedFields` included; a limit well above that also keeps the stack small on threads with little of it.
pub const MAX_DEPTH: usize = 32;

/// The YAML reader's budgets for a stream of `len` bytes: without aliases a stream cannot hold more nodes,
/// events or scalar bytes than these; aliases may replay about half the stream again, and no more.
fn reader_options(len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = len / 4 + 16;
    budget.max_nodes = len + 1024;
    budget.max_events = 2 * len + 1024;
    budget.max_aliases = len / 4 + 16;
    budget.max_anchors = len / 4 + 16;
    budget.max_total_scalar_bytes = len + len / 2 + 1024;
    budget.max_depth = MAX_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = len / 2 + 1024;
    options
}

/// A syntax error or exceeded budget, with the document it is in.
fn yaml_error(text: &str, e: &serde_saphyr::Error) -> ManifestError {
    let message = e.to_string();
    let message = message.strip_prefix("error: ").unwrap_or(&message).to_owned();
    let document = match e.location() {
        Some(at) => document_at(text, usize::try_from(at.line()).unwrap_or(usize::MAX)),
        None => 1,
    };
    ManifestError::Yaml { document, message }
}

/// The 1-based index of the document that holds 1-based `line`: one more than the `---` separators before it
/// that follow some content.
fn document_at(text: &str, line: usize) -> usize {
    let mut document = 1;
    let mut content = false;
    for l in text.lines().take(line.saturating_sub(1)) {
        let has_content = |s: &str| !s.trim_start().is_empty() && !s.trim_start().starts_with('#');
        match l.strip_prefix("---").filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t'])) {
            Some(rest) => {
                if content {
                    document += 1;
                }
                // `--- {a: 1}` starts a document with content on the separator's line.
                content = has_content(rest);
            }
            None => content |= has_content(l),
        }
    }
    document
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn object(document: usize, value: Value, manifest: &mut Manifest, errors: &mut Vec<ManifestError>) {
    if !value.is_mapping() {
        errors.push(ManifestError::NotAnObject { document, message: "not a Kubernetes object (a mapping)".into() });
        return;
    }
    let state_keys = ["workloads", "services", "policies"];
    if value.get("apiVersion").is_none()
        && value.get("kind").is_none()
        && state_keys.iter().any(|k| value.get(*k).is_some())
    {
        // A node proxy's state, as Istio's ztunnel dumps it (`istioctl ztunnel-config all -o json`).
        // Through JSON's data model, where enums are written as maps (`{"Exact": "..."}`), as ztunnel writes them.
        let state =
            serde_json::to_value(&value).map_err(|e| vec![FieldError::new("", e.to_string())]).and_then(|json| {
                serde_path_to_error::deserialize::<_, crate::xds::State>(json)
                    .map_err(|e| vec![FieldError::new(e.path().to_string(), e.inner().to_string())])
            });
        match state {
            Ok(state) => {
                manifest.cluster.extend(crate::xds::objects(&state).into_iter().map(|o| (document, o)));
                manifest.authorizations.extend(state.policies.into_iter().map(|a| (document, a)));
            }
            Err(errs) => errors.push(ManifestError::Invalid {
                document,
                resource: "ztunnel state (workloads, services, policies)".into(),
                errors: errs,
            }),
        }
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

    if kind.ends_with("List")
        && let Some(Value::Sequence(items)) = value.get("items")
    {
        for item in items.clone() {
            object(document, item, manifest, errors);
        }
        return;
    }
    let resource_name = || {
        let ns = value.get("metadata").and_then(|m| str_field(m, "namespace")).unwrap_or("default");
        format!("{kind} {ns}/{}", name.as_deref().unwrap_or("<unnamed>"))
    };
    if let Some(k) = cluster::kind_of(group, &kind) {
        let value_namespace = value.get("metadata").and_then(|m| str_field(m, "namespace")).map(str::to_owned);
        let value_namespace = value_namespace.as_deref();
        match cluster_object(k, value) {
            Ok(o) => manifest.cluster.push((document, o)),
            Err(errors_found) => {
                let ns = match value_namespace {
                    _ if k.is_cluster_scoped() => "",
                    Some(ns) if !ns.is_empty() => ns,
                    _ => "default",
                };
                let resource = crate::resource::ResourceId::new(k, ns, name.as_deref().unwrap_or("<unnamed>"));
                errors.push(ManifestError::Invalid { document, resource: resource.to_string(), errors: errors_found })
            }
        }
        return;
    }
    let our_kind = match classify(group, &kind) {
        Class::Ours(k) => k,
        Class::Other => {
            manifest.skipped.push(Skipped { document, api_version, kind, name });
            return;
        }
        Class::Mistake(field, message) => {
            errors.push(ManifestError::Invalid {
                document,
                resource: resource_name(),
                errors: vec![FieldError::new(field, message)],
            });
            return;
        }
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
        Err(e) => errors.push(ManifestError::Invalid { document, resource: resource_name(), errors: e }),
    }
}

fn cluster_object(kind: Kind, value: Value) -> Result<ClusterObject, Vec<FieldError>> {
    Ok(match kind {
        Kind::Namespace => ClusterObject::Namespace(typed_value(value)?),
        Kind::Service => ClusterObject::Service(typed_value(value)?),
        Kind::Pod => ClusterObject::Pod(typed_value(value)?),
        Kind::ServiceEntry => ClusterObject::ServiceEntry(typed_value(value)?),
        Kind::WorkloadEntry => ClusterObject::WorkloadEntry(typed_value(value)?),
        Kind::GatewayClass => ClusterObject::GatewayClass(typed_value(value)?),
        _ => ClusterObject::Gateway(typed_value(value)?),
    })
}

/// Deserializes with the path of the failing field, and a hint where YAML's typing surprises.
fn typed<S: DeserializeOwned>(value: Value) -> Result<Object<S>, Vec<FieldError>> {
    typed_value(value)
}

/// Deserializes an object of a kind this crate reads, refusing first every null list item anywhere in it
/// ([`null_items`]), then reporting the first field that does not fit its type, with its path.
fn typed_value<T: DeserializeOwned>(value: Value) -> Result<T, Vec<FieldError>> {
    let mut nulls = Vec::new();
    null_items(&value, &mut String::new(), &mut nulls);
    if !nulls.is_empty() {
        return Err(nulls);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let mut message = e.inner().to_string();
        if message.contains("expected a string") && (message.contains("integer") || message.contains("boolean")) {
            message.push_str(" (quote the value: Kubernetes requires a string here)");
        }
        vec![FieldError::new(if field == "." { String::new() } else { field }, message)]
    })
}

/// The message for a null list item.
const NULL_ITEM: &str = "null list item (a bare `-`, `~` or `null`): Kubernetes rejects null items in lists; \
                         remove the item or give it a value";

/// Appends an error for every item of a list, at any depth of `value`, that is null: `rules:` followed by a bare
/// `-`, `from: [~]`, `values: [null]`. Serde would read a null object as an empty one (an empty rule or source
/// matches everything: access widened) and a null string as a type error without saying why, so every list is
/// checked here, once, before any kind's types are read; `path` is the path of `value` in serde_path_to_error's
/// form (`spec.rules[0].from[1]`).
///
/// Kubernetes refuses such an item: the schema of a custom resource (the security kinds, ServiceEntry,
/// WorkloadEntry, Gateway) types every item of its lists, and null is not of that type; the API server reads a
/// core object's (Service, Pod) null item as an empty value, which its validation rejects in every list the
/// cluster model reads (a port without a number, a container without a name, an IP that is not one). A null
/// item in a list the model does not read is refused too, which fails closed. Mapping values are left alone:
/// Kubernetes prunes a null field as if it were absent, which is how serde's defaults read it.
fn null_items(value: &Value, path: &mut String, out: &mut Vec<FieldError>) {
    match value {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if item.is_null() {
                    out.push(FieldError::new(path.clone(), NULL_ITEM));
                } else {
                    null_items(item, path, out);
                }
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match key {
                    Value::String(k) => path.push_str(k),
                    Value::Number(n) => path.push_str(&n.to_string()),
                    Value::Bool(b) => path.push_str(if *b { "true" } else { "false" }),
                    _ => path.push('?'),
                }
                null_items(item, path, out);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => null_items(&tagged.value, path, out),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// What a document's group and kind make of it.
enum Class {
    /// One of the kinds this crate evaluates.
    Ours(Kind),
    /// A kind of another group: skipped and listed.
    Other,
    /// Almost certainly meant as one of ours, but misspelled: `(field, message)`. Skipping it would silently
    /// drop a policy (a DENY-all left out allows everything).
    Mistake(&'static str, String),
}

const KINDS: [Kind; 3] = [Kind::AuthorizationPolicy, Kind::RequestAuthentication, Kind::PeerAuthentication];

fn classify(group: &str, kind: &str) -> Class {
    let known = Kind::from_name(kind);
    // Kinds are long: three edits still name one (`AuthorizationPolicies`).
    let near_kind = || KINDS.into_iter().find(|k| near(kind, k.as_str(), 3));
    if group == GROUP {
        return match (known, near_kind()) {
            (Some(k), _) => Class::Ours(k),
            (None, Some(k)) => Class::Mistake("kind", format!("unknown kind {kind:?} in {GROUP}: did you mean {k}?")),
            (None, None) => Class::Mistake(
                "kind",
                format!(
                    "unknown kind {kind:?} in {GROUP}: the group has AuthorizationPolicy, RequestAuthentication and \
                     PeerAuthentication"
                ),
            ),
        };
    }
    if near(group, GROUP, 2) {
        let meant = known.or_else(near_kind).map_or_else(|| kind.to_owned(), |k| k.as_str().to_owned());
        return Class::Mistake(
            "apiVersion",
            format!("unknown API group {group:?}: did you mean {GROUP} (kind {meant})?"),
        );
    }
    // The core group has none of these kinds: `apiVersion: v1` with one of our kinds is a missing group.
    if group.is_empty()
        && let Some(k) = known.or_else(near_kind)
    {
        return Class::Mistake("apiVersion", format!("{k} is in the API group {GROUP}: write {GROUP}/v1"));
    }
    Class::Other
}

/// Whether `a` is `b` differing only in ASCII case, or within `max` single-character edits of it: a typo.
fn near(a: &str, b: &str, max: usize) -> bool {
    a.eq_ignore_ascii_case(b) || within_edits(&a.to_ascii_lowercase(), &b.to_ascii_lowercase(), max)
}

/// Whether the Levenshtein distance of `a` and `b` is at most `max` (cost bounded by the length of `b`).
fn within_edits(a: &str, b: &str, max: usize) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_by_line() {
        let text = "# header\n---\na: 1\n---\n# only a comment\n---\nb: 2\n--- {c: 3}\n---\nd: [\n";
        let at: Vec<usize> = (1..=10).map(|line| document_at(text, line)).collect();
        assert_eq!(at, [1, 1, 1, 1, 2, 2, 2, 2, 3, 4]);
    }

    #[test]
    fn near_kinds_and_groups() {
        assert!(near("AuthorisationPolicy", "AuthorizationPolicy", 3));
        assert!(near("AuthorizationPolicies", "AuthorizationPolicy", 3));
        assert!(near("Security.Istio.io", GROUP, 2));
        assert!(near("securty.istio.io", GROUP, 2));
        assert!(!near("networking.istio.io", GROUP, 2));
        assert!(!near("policy.linkerd.io", GROUP, 2));
        assert!(!near(&"x".repeat(1 << 20), GROUP, 2));
        assert!(matches!(classify("policy.linkerd.io", "AuthorizationPolicy"), Class::Other));
        assert!(matches!(classify("networking.istio.io", "VirtualService"), Class::Other));
        assert!(matches!(classify("", "Service"), Class::Other));
    }
}
