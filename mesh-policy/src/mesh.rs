//! [`Mesh`]: the resources applied so far, and the current [`Snapshot`] of them that checks run against.

use std::sync::Arc;

use crate::cluster::{Cluster, ClusterObject};
use crate::compile::{self, Compiled};
use crate::config::MeshConfig;
use crate::decision::Decision;
use crate::error::{ApplyError, FieldError, ManifestError, RequestError};
use crate::manifest::{self, Skipped};
use crate::model::peer_authentication::EffectiveMtls;
use crate::request::{CheckRequest, Destination};
use crate::resource::ResourceId;
use crate::snapshot::{Resources, Snapshot};
use crate::trace::{TraceError, TraceRequest, TraceResult};

/// A warning about an applied resource: accepted, but probably not doing what its author meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The analyzer's stable code for it, e.g. `ztunnel-allow-never-matches`.
    pub code: &'static str,
    /// The resource.
    pub resource: ResourceId,
    /// The field and the message.
    pub detail: FieldError,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.resource, self.detail)
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// Resources created or replaced, in document order.
    pub applied: Vec<ResourceId>,
    /// Documents of other kinds, left alone.
    pub skipped: Vec<Skipped>,
    /// Accepted resources that look wrong.
    pub warnings: Vec<Warning>,
}

/// One source of manifests for [`Mesh::replace_all`]: a file's name (or any label the caller reports errors
/// with) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Where the text comes from, e.g. a file path.
    pub name: &'a str,
    /// Multi-document YAML.
    pub text: &'a str,
}

/// An invalid document of one source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {error}")]
pub struct SourceError {
    /// The source's name.
    pub name: String,
    /// What is wrong, with the document and field.
    pub error: ManifestError,
}

/// A replacement was refused: the listed documents are invalid, and the configuration in force is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration not replaced; {} invalid: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ReloadError(pub Vec<SourceError>);

/// A mesh's security configuration and cluster model: apply manifests, then check requests and trace
/// connections against them.
///
/// Applying is atomic: if any document of a manifest is invalid, nothing of it is applied. A resource
/// replaces the one of the same kind, namespace and name, as `kubectl apply` does. Every change makes a new
/// [`Snapshot`]; [`Mesh::snapshot`] hands out the current one, which stays valid (and unchanged) for as long as
/// its holder keeps it.
#[derive(Debug)]
pub struct Mesh {
    current: Arc<Snapshot>,
    /// What [`Mesh::replace_all`] compiled from each source last time, by name: a source whose text is
    /// unchanged is not parsed or compiled again, and its resources stay the same objects.
    compiled: std::collections::HashMap<String, (String, Arc<Prepared>)>,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh::new(MeshConfig::default())
    }
}

/// Documents of one text, parsed and compiled, ready to go into a snapshot.
#[derive(Debug)]
struct Prepared {
    report: ApplyReport,
    resources: Vec<(Compiled, Vec<Warning>)>,
    cluster: Vec<(ResourceId, Arc<ClusterObject>)>,
}

impl Prepared {
    /// Puts the compiled resources in (the same objects, shared), replacing those of the same ids; returns the
    /// report.
    fn install(&self, resources: &mut Resources) -> ApplyReport {
        for (c, warnings) in &self.resources {
            if warnings.is_empty() {
                resources.warnings.remove(c.id());
            } else {
                resources.warnings.insert(c.id().clone(), warnings.clone());
            }
            match c {
                Compiled::AuthorizationPolicy(p) => {
                    resources.policies.insert(p.id.clone(), Arc::clone(p));
                }
                Compiled::PeerAuthentication(p) => {
                    resources.peers.insert(p.id.clone(), Arc::clone(p));
                }
                Compiled::RequestAuthentication(p) => {
                    resources.request_auths.insert(p.id.clone(), Arc::clone(p));
                }
            }
        }
        for (id, object) in &self.cluster {
            resources.cluster.insert(id.clone(), Arc::clone(object));
        }
        self.report.clone()
    }
}

impl Mesh {
    /// An empty mesh.
    pub fn new(config: MeshConfig) -> Self {
        Mesh {
            current: Arc::new(Snapshot::build(0, config, Resources::default(), None)),
            compiled: std::collections::HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &MeshConfig {
        self.current.config()
    }

    /// The current snapshot: share it with the threads that check requests.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current)
    }

    /// The cluster model.
    pub fn cluster(&self) -> &Cluster {
        self.current.cluster()
    }

    fn compile(&self, text: &str) -> Result<Prepared, Vec<ManifestError>> {
        let config = self.current.config();
        config.validate().map_err(|e| vec![ManifestError::Config(e)])?;
        // Parsed in a frame of its own, so that the reader's recursion starts on a shallow stack.
        let (parsed, errors) = manifest::parse_all(text, config.max_manifest_bytes);
        self.compile_parsed(parsed, errors)
    }

    fn compile_parsed(
        &self,
        parsed: manifest::Manifest,
        mut errors: Vec<ManifestError>,
    ) -> Result<Prepared, Vec<ManifestError>> {
        let config = self.current.config();
        let mut report = ApplyReport { skipped: parsed.skipped, ..ApplyReport::default() };
        let mut resources = Vec::new();
        let mut cluster = Vec::new();
        let mut first_document = rustc_hash::FxHashMap::default();
        for (document, resource) in &parsed.resources {
            match compile::resource(resource, config) {
                Ok((c, mut warnings)) => {
                    let id = c.id().clone();
                    if let Some(first) = first_document.insert(id.clone(), *document) {
                        warnings.push((
                            "resource-defined-twice",
                            FieldError::new(
                            "metadata.name",
                            format!(
                                "defined in document {first} and again in document {document} of the same manifest: \
                                 the later definition replaces the earlier"
                            ),
                        )));
                    }
                    let warnings: Vec<Warning> = warnings
                        .into_iter()
                        .map(|(code, detail)| Warning { code, resource: id.clone(), detail })
                        .collect();
                    report.warnings.extend(warnings.iter().cloned());
                    report.applied.push(id);
                    resources.push((c, warnings));
                }
                Err((id, errs)) => {
                    errors.push(ManifestError::Invalid { document: *document, resource: id.to_string(), errors: errs })
                }
            }
        }
        for (document, authorization) in &parsed.authorizations {
            match compile::xds_authorization(authorization) {
                Ok(c) => {
                    let id = c.id().clone();
                    if let Some(first) = first_document.insert(id.clone(), *document) {
                        errors.push(ManifestError::Invalid {
                            document: *document,
                            resource: id.to_string(),
                            errors: vec![FieldError::new(
                                "name",
                                format!("defined in document {first} and again in document {document}"),
                            )],
                        });
                        continue;
                    }
                    report.applied.push(id);
                    resources.push((c, Vec::new()));
                }
                Err((id, errs)) => {
                    errors.push(ManifestError::Invalid { document: *document, resource: id.to_string(), errors: errs })
                }
            }
        }
        for (document, object) in parsed.cluster {
            let meta = object.metadata();
            let kind = object.kind();
            let namespace = match kind {
                k if k.is_cluster_scoped() => "",
                _ => meta.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default"),
            };
            let name = meta.name.as_deref().unwrap_or("");
            let id = ResourceId::new(kind, namespace, name);
            let mut errs = object.validate();
            if name.is_empty() {
                errs.insert(0, FieldError::new("metadata.name", "must be set"));
            }
            if errs.is_empty() {
                report.applied.push(id.clone());
                cluster.push((id, Arc::new(object)));
            } else {
                errors.push(ManifestError::Invalid { document, resource: id.to_string(), errors: errs });
            }
        }
        if errors.is_empty() {
            Ok(Prepared { report, resources, cluster })
        } else {
            errors.sort_by_key(ManifestError::document);
            Err(errors)
        }
    }

    fn replace(&mut self, resources: Resources) {
        let next = self.current.generation() + 1;
        let snapshot = Snapshot::build(next, self.current.config().clone(), resources, Some(&self.current));
        self.current = Arc::new(snapshot);
    }

    /// Applies a multi-document YAML manifest.
    pub fn apply_yaml(&mut self, text: &str) -> Result<ApplyReport, ApplyError> {
        let compiled = self.compile(text).map_err(ApplyError)?;
        let mut resources = self.current.sources().clone();
        let report = compiled.install(&mut resources);
        self.replace(resources);
        Ok(report)
    }

    /// Replaces the whole configuration with the resources of `sources` (for example every file of a
    /// directory, read again after a change). When any document of any source is invalid, every invalid
    /// document is reported by source, document and field, and the configuration in force stays as it was:
    /// a broken file never widens (or narrows) access. JWKS documents supplied with [`Mesh::add_jwks`] stay, and
    /// the verified-token cache of a RequestAuthentication that did not change survives the replacement.
    ///
    /// A source whose name and text are those of the previous replacement is not parsed or compiled again:
    /// a configuration split into many sources (one per file, or one per resource of a control plane) costs,
    /// on each change, the compilation of what changed and a new snapshot.
    pub fn replace_all(&mut self, sources: &[Source<'_>]) -> Result<ApplyReport, ReloadError> {
        let mut errors = Vec::new();
        // The entries of unchanged sources move to the new cache as they are (no text copied again).
        let mut before = std::mem::take(&mut self.compiled);
        let mut compiled = std::collections::HashMap::with_capacity(sources.len());
        let mut all = Vec::with_capacity(sources.len());
        for source in sources {
            let entry = match before.remove_entry(source.name) {
                Some((name, (text, prepared))) if text == source.text => Some((name, (text, prepared))),
                _ => None,
            };
            if let Some((name, (text, prepared))) = entry {
                all.push(Arc::clone(&prepared));
                compiled.insert(name, (text, prepared));
                continue;
            }
            match self.compile(source.text) {
                Ok(c) => {
                    let c = Arc::new(c);
                    all.push(Arc::clone(&c));
                    compiled.insert(source.name.to_owned(), (source.text.to_owned(), c));
                }
                Err(errs) => {
                    errors.extend(errs.into_iter().map(|error| SourceError { name: source.name.to_owned(), error }))
                }
            }
        }
        if !errors.is_empty() {
            // Nothing changes: the cache keeps what it had, and what compiled this time.
            before.extend(compiled);
            self.compiled = before;
            return Err(ReloadError(errors));
        }
        let mut report = ApplyReport::default();
        let mut resources = Resources { jwks: self.current.sources().jwks.clone(), ..Resources::default() };
        for c in all {
            let r = c.install(&mut resources);
            report.applied.extend(r.applied);
            report.skipped.extend(r.skipped);
            report.warnings.extend(r.warnings);
        }
        self.compiled = compiled;
        self.replace(resources);
        Ok(report)
    }

    /// Removes a resource; returns whether it was there.
    pub fn remove(&mut self, id: &ResourceId) -> bool {
        let mut resources = self.current.sources().clone();
        let removed = resources.policies.remove(id).is_some()
            || resources.peers.remove(id).is_some()
            || resources.request_auths.remove(id).is_some()
            || resources.cluster.remove(id).is_some();
        if removed {
            resources.warnings.remove(id);
            self.replace(resources);
        }
        removed
    }

    /// The id of every applied resource, security kinds first, in order.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceId> {
        self.current.resources()
    }

    /// The warnings each applied resource got when it was applied.
    pub fn apply_warnings(&self) -> impl Iterator<Item = &Warning> {
        self.current.apply_warnings()
    }

    /// Findings about the applied configuration as a whole; see [`Snapshot::analyze`].
    pub fn analyze(&self) -> Vec<crate::analyze::Finding> {
        self.current.analyze()
    }

    /// How many resources are applied, cluster objects included.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Whether nothing is applied.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Supplies the JWKS document behind a `jwksUri`, as the caller fetched it: RequestAuthentication rules that
    /// name the URI validate tokens with it. Until a rule's document is supplied, its tokens are rejected.
    pub fn add_jwks(&mut self, uri: &str, jwks_json: &str) -> Result<(), mesh_identity::jwt::JwksError> {
        let jwks = mesh_identity::jwt::Jwks::from_json(jwks_json)?;
        let mut resources = self.current.sources().clone();
        resources.jwks.insert(uri.to_owned(), Arc::new(jwks));
        self.replace(resources);
        Ok(())
    }

    /// The effective mTLS mode ztunnel applies to plaintext arriving at a workload port.
    pub fn effective_mtls(&self, destination: &Destination) -> EffectiveMtls {
        self.current.effective_mtls(destination)
    }

    /// Checks a request at its enforcement point; see [`Snapshot::check`].
    pub fn check(&self, req: &CheckRequest) -> Result<Decision, RequestError> {
        self.current.check(req)
    }

    /// Checks a request at its enforcement point at `now` (Unix seconds); see [`Snapshot::check_at`].
    pub fn check_at(&self, req: &CheckRequest, now: u64) -> Result<Decision, RequestError> {
        self.current.check_at(req, now)
    }

    /// Traces a connection or request across every hop; see [`Snapshot::trace`].
    pub fn trace(&self, req: &TraceRequest, now: u64) -> Result<TraceResult, TraceError> {
        self.current.trace(req, now)
    }
}
