//! A proxy's PKI: where certificates come from (the CA of the command line, or a remote CA such as istiod),
//! the certificate store they go into (which rotation renews and the HBONE server and client read at each
//! handshake), and the trust domains peers are accepted from.
//!
//! With a local CA a certificate is issued the moment it is wanted. With a remote CA, [`Pki::want`] records the
//! identity and wakes [`crate::rotation::run`], which asks the CA (a key generated here, a CSR sent), retries
//! with back-off, and renews at half-life; the store's trust bundle becomes the roots of the CA's answers.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::ca::LocalCa;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain, TrustDomains};
use mesh_identity::store::{CertificateStore, StoreOptions};
use rustls_pki_types::UnixTime;
use tokio::sync::Notify;

use crate::ca::CaSetupError;
use crate::config::{CommonConfig, ConfigError};

/// The PKI could not be set up, or a certificate not issued.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The CA could not be loaded.
    #[error(transparent)]
    Ca(#[from] CaSetupError),
    /// The namespace and service account do not make an identity.
    #[error("the identity ns/{namespace}/sa/{service_account}: {reason}")]
    Identity {
        /// The namespace.
        namespace: String,
        /// The service account.
        service_account: String,
        /// Why.
        reason: String,
    },
    /// Issuing failed.
    #[error("issuing the certificate of {identity}: {reason}")]
    Issue {
        /// The identity.
        identity: String,
        /// Why.
        reason: String,
    },
}

/// A CA reached over the network that signs certificate signing requests, such as istiod's (or
/// cert-manager's istio-csr's) `IstioCertificateService`.
pub trait RemoteCa: Send + Sync + 'static {
    /// Where the CA is, for logs and the admin endpoint.
    fn address(&self) -> &str;

    /// Has the CA sign `csr_pem` for `identity`, valid for `ttl`. The answer is Istio's: PEM certificates,
    /// the leaf first and the roots last; the caller checks it. The error is the CA's reason, for the logs.
    fn sign<'a>(
        &'a self,
        identity: &'a IstioIdentity,
        csr_pem: &'a str,
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + 'a>>;
}

/// Where a proxy's certificates come from.
#[derive(Clone)]
pub enum Issuer {
    /// A CA in the process, from the command line ([`crate::ca::CaSource`]).
    Local(Arc<LocalCa>),
    /// A CA reached over the network.
    Remote(Arc<dyn RemoteCa>),
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Issuer::Local(ca) => f.debug_tuple("Local").field(&ca.trust_domain()).finish(),
            Issuer::Remote(ca) => f.debug_tuple("Remote").field(&ca.address()).finish(),
        }
    }
}

/// The issuer, the store and the trust domains peers are accepted from. Cheap to clone.
#[derive(Clone)]
pub struct Pki {
    /// Where certificates come from.
    pub issuer: Issuer,
    /// The certificates issued.
    pub store: CertificateStore,
    /// The trust domains accepted from peers: the mesh's own, then its aliases.
    pub accepted: Vec<TrustDomain>,
    wanted: Arc<Wanted>,
}

/// The identities a remote CA is to keep certificates for, and the wake-up of the task that asks for them.
#[derive(Default)]
pub(crate) struct Wanted {
    identities: Mutex<BTreeSet<SpiffeId>>,
    pub(crate) changed: Notify,
}

impl Pki {
    /// Loads or generates the CA of `config`, and an empty store trusting it for the mesh's trust domain and
    /// its aliases.
    pub fn load(config: &CommonConfig) -> Result<Self, PkiError> {
        let trust_domain = config.trust_domain()?;
        let accepted = config.trust_domains()?;
        let ca = config.ca.load(&trust_domain, UnixTime::now())?;
        let options = StoreOptions { workload_ttl: config.cert_ttl, ..StoreOptions::default() };
        let store = CertificateStore::with_options([ca.trust_bundle().clone()].into_iter().collect(), options);
        let domains = TrustDomains::new(trust_domain, accepted.iter().skip(1).cloned());
        store.replace_mesh_bundle(&domains, ca.trust_bundle().clone());
        Ok(Pki { issuer: Issuer::Local(Arc::new(ca)), store, accepted, wanted: Arc::default() })
    }

    /// Certificates from `ca`, into an empty store that trusts nothing until the CA's first answer brings
    /// its roots. The CA command-line settings of `config` are not used; its trust domain, aliases and
    /// certificate TTL are.
    pub fn remote(config: &CommonConfig, ca: Arc<dyn RemoteCa>) -> Result<Self, PkiError> {
        config.trust_domain()?;
        let accepted = config.trust_domains()?;
        let options = StoreOptions { workload_ttl: config.cert_ttl, ..StoreOptions::default() };
        let store = CertificateStore::with_options(TrustBundleSet::new(), options);
        Ok(Pki { issuer: Issuer::Remote(ca), store, accepted, wanted: Arc::default() })
    }

    /// The mesh's trust domain and its aliases.
    pub fn trust_domains(&self) -> Option<TrustDomains> {
        let (local, aliases) = self.accepted.split_first()?;
        Some(TrustDomains::new(local.clone(), aliases.iter().cloned()))
    }

    /// The identity of service account `sa` in `namespace`, in the mesh's trust domain.
    pub fn identity(&self, namespace: &str, sa: &str) -> Result<IstioIdentity, PkiError> {
        let identity_error =
            |reason: String| PkiError::Identity { namespace: namespace.into(), service_account: sa.into(), reason };
        let trust_domain = self.accepted.first().ok_or_else(|| identity_error("no trust domain".into()))?;
        IstioIdentity::new(trust_domain, namespace, sa).map_err(|e| identity_error(e.to_string()))
    }

    /// Issues a certificate for `identity` into the store now (renewal shifted by [`crate::rotation::jitter`]).
    /// Only a local CA issues on the spot; with a remote one use [`Pki::want`].
    pub fn issue(&self, identity: &IstioIdentity) -> Result<SpiffeId, PkiError> {
        let spiffe_id = identity.spiffe_id();
        let failed = |reason: String| PkiError::Issue { identity: spiffe_id.to_string(), reason };
        match &self.issuer {
            Issuer::Local(ca) => {
                self.store
                    .issue(ca, identity, UnixTime::now(), crate::rotation::jitter(spiffe_id))
                    .map_err(|e| failed(e.to_string()))?;
                Ok(spiffe_id.clone())
            }
            Issuer::Remote(ca) => Err(failed(format!(
                "certificates come from the CA at {}; they are asked for in the background",
                ca.address()
            ))),
        }
    }

    /// Keeps a certificate for `identity` in the store from now on: issued at once by a local CA, asked for
    /// in the background from a remote one (the store holds it once the CA answers). Returns whether the
    /// store holds one now.
    pub fn want(&self, identity: &IstioIdentity) -> Result<bool, PkiError> {
        if self.store.get(identity.spiffe_id()).is_some() {
            return Ok(true);
        }
        match &self.issuer {
            Issuer::Local(_) => self.issue(identity).map(|_| true),
            Issuer::Remote(_) => {
                let added = self.wanted_identities().insert(identity.spiffe_id().clone());
                if added {
                    self.wanted.changed.notify_one();
                }
                Ok(false)
            }
        }
    }

    /// Waits, at most `limit`, until the store holds a certificate for `spiffe_id`, when one is being asked of a
    /// remote CA; returns whether it holds one.
    pub async fn wait_for(&self, spiffe_id: &SpiffeId, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.store.get(spiffe_id).is_some() {
                return true;
            }
            if !self.wanted_identities().contains(spiffe_id) || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drops the certificate of `spiffe_id` and stops renewing it.
    pub fn forget(&self, spiffe_id: &SpiffeId) {
        self.wanted_identities().remove(spiffe_id);
        self.store.remove(spiffe_id);
    }

    /// The identities a certificate is kept for: those stored, and those asked of a remote CA.
    pub fn identities(&self) -> BTreeSet<SpiffeId> {
        let mut all: BTreeSet<SpiffeId> = self.store.identities().into_iter().collect();
        all.extend(self.wanted_identities().iter().cloned());
        all
    }

    /// When the roots peers are verified with expire: the local CA's root, or the last of the roots the remote
    /// CA sent; `None` before a remote CA has answered.
    pub fn roots_not_after(&self) -> Option<UnixTime> {
        match &self.issuer {
            Issuer::Local(ca) => Some(ca.not_after()),
            Issuer::Remote(_) => {
                let bundles = self.store.trust_bundles().current();
                let local = self.accepted.first()?;
                bundles.get(local.as_str()).and_then(|bundle| bundle.not_after())
            }
        }
    }

    pub(crate) fn wanted(&self) -> &Arc<Wanted> {
        &self.wanted
    }

    pub(crate) fn wanted_identities(&self) -> std::sync::MutexGuard<'_, BTreeSet<SpiffeId>> {
        self.wanted.identities.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
