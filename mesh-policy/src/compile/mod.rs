//! Validation and compilation: a [`Resource`] as written becomes the form enforcement points evaluate, or a
//! list of errors naming each invalid field.

mod authorization;
pub(crate) mod fields;
mod peer_authentication;
mod request_authentication;
mod xds;

use std::sync::Arc;

pub use authorization::DRY_RUN_ANNOTATION;

use crate::config::MeshConfig;
use crate::error::FieldError;
use crate::manifest::Resource;
use crate::model::peer_authentication::CompiledPeerAuthentication;
use crate::model::policy::PolicyRef;
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::resource::ResourceId;
use fields::Problems;

/// A warning with the analyzer's stable code for it.
pub(crate) type CodedWarning = (&'static str, FieldError);

/// A compiled resource.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// An AuthorizationPolicy.
    AuthorizationPolicy(PolicyRef),
    /// A PeerAuthentication.
    PeerAuthentication(Arc<CompiledPeerAuthentication>),
    /// A RequestAuthentication.
    RequestAuthentication(Arc<CompiledRequestAuthentication>),
}

impl Compiled {
    /// The resource's id.
    pub fn id(&self) -> &ResourceId {
        match self {
            Compiled::AuthorizationPolicy(p) => &p.id,
            Compiled::PeerAuthentication(p) => &p.id,
            Compiled::RequestAuthentication(p) => &p.id,
        }
    }
}

/// Validates and compiles a resource: the compiled form and warnings, or the id and every error found.
pub fn resource(
    r: &Resource,
    config: &MeshConfig,
) -> Result<(Compiled, Vec<CodedWarning>), (ResourceId, Vec<FieldError>)> {
    let meta = r.metadata();
    let namespace = meta.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    let id = ResourceId::new(r.kind(), namespace, meta.name.as_deref().unwrap_or(""));
    let mut p = Problems::default();
    let compiled = match r {
        Resource::AuthorizationPolicy(o) => {
            let spec = o.spec.clone().unwrap_or_default();
            authorization::compile(id.clone(), meta, &spec, config, &mut p)
                .map(|c| Compiled::AuthorizationPolicy(Arc::new(c)))
        }
        Resource::PeerAuthentication(o) => {
            let spec = o.spec.clone().unwrap_or_default();
            peer_authentication::compile(id.clone(), meta, &spec, &config.root_namespace, &mut p)
                .map(|c| Compiled::PeerAuthentication(Arc::new(c)))
        }
        Resource::RequestAuthentication(o) => {
            let spec = o.spec.clone().unwrap_or_default();
            request_authentication::compile(id.clone(), &spec, &config.root_namespace, &mut p)
                .map(|c| Compiled::RequestAuthentication(Arc::new(c)))
        }
    };
    match compiled {
        Some(c) if p.errors.is_empty() => Ok((c, p.warnings)),
        _ => Err((id, p.errors)),
    }
}

/// Validates and compiles one of istiod's L4 authorizations ([`crate::xds::Authorization`]).
pub(crate) fn xds_authorization(a: &crate::xds::Authorization) -> Result<Compiled, (ResourceId, Vec<FieldError>)> {
    xds::compile(a).map(|p| Compiled::AuthorizationPolicy(Arc::new(p)))
}
