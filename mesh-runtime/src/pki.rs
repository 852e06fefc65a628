//! A proxy's PKI: the CA of the command line, the certificate store it issues into (which rotation renews and
//! the HBONE server and client read at each handshake), and the trust domains peers are accepted from.

use std::sync::Arc;

use mesh_identity::ca::LocalCa;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain, TrustDomains};
use mesh_identity::store::{CertificateStore, StoreOptions};
use rustls_pki_types::UnixTime;

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

/// The CA, the store and the trust domains peers are accepted from. Cheap to clone.
#[derive(Clone)]
pub struct Pki {
    /// The CA certificates are issued from.
    pub ca: Arc<LocalCa>,
    /// The certificates issued.
    pub store: CertificateStore,
    /// The trust domains accepted from peers: the mesh's own, then its aliases.
    pub accepted: Vec<TrustDomain>,
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
        Ok(Pki { ca: Arc::new(ca), store, accepted })
    }

    /// The identity of service account `sa` in `namespace`, in the CA's trust domain.
    pub fn identity(&self, namespace: &str, sa: &str) -> Result<IstioIdentity, PkiError> {
        IstioIdentity::new(self.ca.trust_domain(), namespace, sa).map_err(|e| PkiError::Identity {
            namespace: namespace.into(),
            service_account: sa.into(),
            reason: e.to_string(),
        })
    }

    /// Issues a certificate for `identity` into the store (renewal shifted by [`crate::rotation::jitter`]).
    pub fn issue(&self, identity: &IstioIdentity) -> Result<SpiffeId, PkiError> {
        let spiffe_id = identity.spiffe_id();
        self.store
            .issue(&self.ca, identity, UnixTime::now(), crate::rotation::jitter(spiffe_id))
            .map_err(|e| PkiError::Issue { identity: spiffe_id.to_string(), reason: e.to_string() })?;
        Ok(spiffe_id.clone())
    }
}
