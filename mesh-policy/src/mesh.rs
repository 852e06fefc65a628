//! [`Mesh`]: the resources applied so far, compiled and indexed, and the check against them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::compile::{self, Compiled};
use crate::config::MeshConfig;
use crate::decision::Decision;
use crate::error::{ApplyError, FieldError, ManifestError, RequestError};
use crate::eval::authentication::{Authenticators, JwksDocuments};
use crate::eval::{self, attributes::Attributes};
use crate::index::Index;
use crate::manifest::{self, Skipped};
use crate::model::peer_authentication::{self, CompiledPeerAuthentication, EffectiveMtls};
use crate::model::policy::PolicyRef;
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::request::{CheckRequest, Destination, Enforcement};
use crate::resource::ResourceId;

/// A warning about an applied resource: accepted, but probably not doing what its author meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
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
pub struct ApplyReport {
    /// Resources created or replaced, in document order.
    pub applied: Vec<ResourceId>,
    /// Documents of other kinds, left alone.
    pub skipped: Vec<Skipped>,
    /// Accepted resources that look wrong.
    pub warnings: Vec<Warning>,
}

/// A mesh's security configuration: apply manifests, then check requests against them.
///
/// Applying is atomic: if any document of a manifest is invalid, nothing of it is applied. A resource
/// replaces the one of the same kind, namespace and name, as `kubectl apply` does.
#[derive(Debug)]
pub struct Mesh {
    config: MeshConfig,
    policies: BTreeMap<ResourceId, PolicyRef>,
    peers: BTreeMap<ResourceId, Arc<CompiledPeerAuthentication>>,
    request_auths: BTreeMap<ResourceId, Arc<CompiledRequestAuthentication>>,
    warnings: BTreeMap<ResourceId, Vec<Warning>>,
    jwks: JwksDocuments,
    authenticators: Authenticators,
    index: Index,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh::new(MeshConfig::default())
    }
}

impl Mesh {
    /// An empty mesh.
    pub fn new(config: MeshConfig) -> Self {
        let index =
            Index::build(&config.root_namespace, &config.waypoint_gateway_class, [].iter(), [].iter(), [].iter());
        Mesh {
            config,
            policies: BTreeMap::new(),
            peers: BTreeMap::new(),
            request_auths: BTreeMap::new(),
            warnings: BTreeMap::new(),
            jwks: JwksDocuments::new(),
            authenticators: Authenticators::default(),
            index,
        }
    }

    /// The settings.
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// Applies a multi-document YAML manifest.
    pub fn apply_yaml(&mut self, text: &str) -> Result<ApplyReport, ApplyError> {
        self.config.validate().map_err(|e| ApplyError(vec![ManifestError::Config(e)]))?;
        let parsed = manifest::parse_with_limit(text, self.config.max_manifest_bytes).map_err(ApplyError)?;
        let mut report = ApplyReport { skipped: parsed.skipped, ..ApplyReport::default() };
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        let mut first_document = rustc_hash::FxHashMap::default();
        for (document, resource) in &parsed.resources {
            match compile::resource(resource, &self.config) {
                Ok((c, mut warnings)) => {
                    let id = c.id().clone();
                    if let Some(first) = first_document.insert(id.clone(), *document) {
                        warnings.push(FieldError::new(
                            "metadata.name",
                            format!(
                                "defined in document {first} and again in document {document} of the same manifest: \
                                 the later definition replaces the earlier"
                            ),
                        ));
                    }
                    let warnings: Vec<Warning> =
                        warnings.into_iter().map(|detail| Warning { resource: id.clone(), detail }).collect();
                    report.warnings.extend(warnings.iter().cloned());
                    report.applied.push(id);
                    compiled.push((c, warnings));
                }
                Err((id, errs)) => {
                    errors.push(ManifestError::Invalid { document: *document, resource: id.to_string(), errors: errs })
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApplyError(errors));
        }
        for (c, warnings) in compiled {
            self.warnings.insert(c.id().clone(), warnings);
            match c {
                Compiled::AuthorizationPolicy(p) => {
                    self.policies.insert(p.id.clone(), p);
                }
                Compiled::PeerAuthentication(p) => {
                    self.peers.insert(p.id.clone(), p);
                }
                Compiled::RequestAuthentication(p) => {
                    self.request_auths.insert(p.id.clone(), p);
                }
            }
        }
        self.reindex();
        Ok(report)
    }

    /// Removes a resource; returns whether it was there.
    pub fn remove(&mut self, id: &ResourceId) -> bool {
        let removed = self.policies.remove(id).is_some()
            || self.peers.remove(id).is_some()
            || self.request_auths.remove(id).is_some();
        if removed {
            self.warnings.remove(id);
            self.reindex();
        }
        removed
    }

    /// Every applied AuthorizationPolicy, compiled, by id.
    pub fn authorization_policies(&self) -> impl Iterator<Item = &PolicyRef> {
        self.policies.values()
    }

    /// Every applied RequestAuthentication, compiled.
    pub fn request_authentications(&self) -> impl Iterator<Item = &Arc<CompiledRequestAuthentication>> {
        self.request_auths.values()
    }

    /// The warnings each applied resource got when it was applied.
    pub fn apply_warnings(&self) -> impl Iterator<Item = &Warning> {
        self.warnings.values().flatten()
    }

    /// Findings about the applied configuration as a whole: every resource's warnings, and cross-resource
    /// problems such as waypoint policies that read token claims where no RequestAuthentication validates
    /// tokens.
    pub fn analyze(&self) -> Vec<Warning> {
        crate::analyze::analyze(self)
    }

    /// How many resources are applied.
    pub fn len(&self) -> usize {
        self.policies.len() + self.peers.len() + self.request_auths.len()
    }

    /// Whether nothing is applied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Supplies the JWKS document behind a `jwksUri`, as the caller fetched it: RequestAuthentication rules that
    /// name the URI validate tokens with it. Until a rule's document is supplied, its tokens are rejected.
    pub fn add_jwks(&mut self, uri: &str, jwks_json: &str) -> Result<(), mesh_identity::jwt::JwksError> {
        let jwks = mesh_identity::jwt::Jwks::from_json(jwks_json)?;
        self.jwks.insert(uri.to_owned(), Arc::new(jwks));
        self.authenticators = Authenticators::build(self.request_auths.values(), &self.jwks);
        Ok(())
    }

    fn reindex(&mut self) {
        self.authenticators = Authenticators::build(self.request_auths.values(), &self.jwks);
        self.index = Index::build(
            &self.config.root_namespace,
            &self.config.waypoint_gateway_class,
            self.policies.values(),
            self.peers.values(),
            self.request_auths.values(),
        );
    }

    /// The effective mTLS mode ztunnel applies to plaintext arriving at a workload port.
    pub fn effective_mtls(&self, destination: &Destination) -> EffectiveMtls {
        let [mesh, ns, workload] = self.index.peer_authentications(destination);
        peer_authentication::resolve(mesh, ns, workload, destination.port)
    }

    /// Checks a request at its enforcement point, with no clock: a raw token carrying `exp` or `nbf` is rejected
    /// because its validity cannot be decided. Use [`Mesh::check_at`] when requests carry raw tokens.
    pub fn check(&self, req: &CheckRequest) -> Result<Decision, RequestError> {
        self.check_inner(req, None)
    }

    /// Checks a request at its enforcement point at `now` (Unix seconds), the time raw tokens are validated at.
    pub fn check_at(&self, req: &CheckRequest, now: u64) -> Result<Decision, RequestError> {
        self.check_inner(req, Some(now))
    }

    fn check_inner(&self, req: &CheckRequest, now: Option<u64>) -> Result<Decision, RequestError> {
        if req.destination.namespace.is_empty() {
            return Err(RequestError(FieldError::new("destination.namespace", "must be set")));
        }
        match req.enforcement_point() {
            Enforcement::Ztunnel => {
                let attrs = Attributes::new(req, false, self.config.path_normalization, None)?;
                Ok(eval::ztunnel(&self.index, req, &attrs))
            }
            Enforcement::Waypoint => {
                let Some(http) = &req.http else {
                    return Err(RequestError(FieldError::new(
                        "http",
                        "must be set for a waypoint check (method and path at least)",
                    )));
                };
                let validated;
                let mut forwarding = None;
                let jwt = match &req.jwt {
                    Some(jwt) => Some(jwt),
                    None => {
                        let applicable = self.index.request_authentications(&req.destination);
                        match self.authenticators.authenticate(applicable, http, now) {
                            Ok(token) => {
                                validated = token.map(|(attrs, f)| {
                                    forwarding = Some(f);
                                    attrs
                                });
                                validated.as_ref()
                            }
                            Err(why) => {
                                return Ok(Decision::new(
                                    false,
                                    crate::crd::Action::Deny,
                                    crate::decision::Reason::JwtRejected(why),
                                    Enforcement::Waypoint,
                                ));
                            }
                        }
                    }
                };
                let mut attrs = Attributes::new(req, true, self.config.path_normalization, jwt)?;
                if let Some((issuer, _)) = attrs.token_subject() {
                    let extra: Vec<&str> = self
                        .index
                        .request_authentications(&req.destination)
                        .flat_map(|ra| ra.space_delimited_claims(issuer))
                        .collect();
                    attrs.split_claims(extra);
                }
                let mut decision = eval::waypoint(&self.index, req, &attrs);
                decision.token_forwarding = forwarding;
                Ok(decision)
            }
        }
    }
}
