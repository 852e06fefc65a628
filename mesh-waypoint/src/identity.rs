//! The waypoint's own identity: `spiffe://<trust domain>/ns/<Gateway namespace>/sa/<its service account>`,
//! its certificate issued from the CA into a store that rotation renews and both the HBONE server and client
//! read at each handshake.

use std::sync::Arc;

use mesh_identity::ca::LocalCa;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::store::{CertificateStore, StoreOptions};
use mesh_runtime::args::CommonArgs;
use rustls_pki_types::UnixTime;
use serde::Serialize;

/// The identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdentityError {
    /// A flag is wrong.
    #[error("{0}")]
    Flag(String),
    /// The CA could not be loaded.
    #[error(transparent)]
    Ca(#[from] mesh_runtime::ca::CaSetupError),
    /// The Gateway's service account does not make an identity.
    #[error("the waypoint identity ns/{namespace}/sa/{service_account}: {reason}")]
    Identity {
        /// The Gateway's namespace.
        namespace: String,
        /// Its service account.
        service_account: String,
        /// Why.
        reason: String,
    },
    /// Issuing failed.
    #[error("issuing the waypoint certificate: {0}")]
    Issue(String),
}

/// The CA, the store and the trust domains peers are accepted from.
#[derive(Clone)]
pub(crate) struct Pki {
    /// The CA certificates are issued from.
    pub(crate) ca: Arc<LocalCa>,
    /// The store holding the waypoint's certificate.
    pub(crate) store: CertificateStore,
    /// The trust domains accepted from peers.
    pub(crate) accepted: Vec<TrustDomain>,
}

impl Pki {
    /// Loads or generates the CA, and an empty store trusting it.
    pub(crate) fn load(args: &CommonArgs) -> Result<Self, IdentityError> {
        let trust_domain = args.trust_domain().map_err(IdentityError::Flag)?;
        let accepted = args.accepted_trust_domains().map_err(IdentityError::Flag)?;
        let ca = args.ca_source().load(&trust_domain, UnixTime::now())?;
        let bundles = [ca.trust_bundle().clone()].into_iter().collect();
        let options = StoreOptions { workload_ttl: args.cert_ttl, ..StoreOptions::default() };
        let store = CertificateStore::with_options(bundles, options);
        Ok(Pki { ca: Arc::new(ca), store, accepted })
    }

    /// Issues the certificate of service account `sa` in `namespace`; returns its SPIFFE ID.
    pub(crate) fn issue(&self, namespace: &str, sa: &str) -> Result<SpiffeId, IdentityError> {
        let identity = IstioIdentity::new(self.ca.trust_domain(), namespace, sa).map_err(|e| {
            IdentityError::Identity { namespace: namespace.into(), service_account: sa.into(), reason: e.to_string() }
        })?;
        let jitter = mesh_runtime::rotation::jitter(identity.spiffe_id());
        self.store
            .issue(&self.ca, &identity, UnixTime::now(), jitter)
            .map_err(|e| IdentityError::Issue(e.to_string()))?;
        Ok(identity.spiffe_id().clone())
    }

    /// The certificates held, for the admin view.
    pub(crate) fn certificates(&self) -> Vec<CertView> {
        let now = UnixTime::now().as_secs();
        self.store
            .identities()
            .into_iter()
            .filter_map(|id| {
                let stored = self.store.get(&id)?;
                let not_after = stored.not_after().as_secs();
                Some(CertView {
                    identity: id.to_string(),
                    not_after,
                    valid_for_seconds: not_after.saturating_sub(now),
                    next_renewal: stored.schedule().renew_at().as_secs(),
                    chain_length: stored.chain().len(),
                })
            })
            .collect()
    }
}

/// A certificate as the admin view shows it.
#[derive(Debug, Serialize)]
pub(crate) struct CertView {
    /// Its SPIFFE ID.
    pub(crate) identity: String,
    /// Its expiry, Unix seconds.
    pub(crate) not_after: u64,
    /// Seconds left.
    pub(crate) valid_for_seconds: u64,
    /// When it is renewed, Unix seconds.
    pub(crate) next_renewal: u64,
    /// Certificates in its chain.
    pub(crate) chain_length: usize,
}
