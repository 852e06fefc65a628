//! The certificates of the workloads a proxy serves and the trust bundles it verifies peers with, each replaced
//! atomically while connections are open.
//!
//! A node proxy holds one X.509-SVID per local workload and renews each on its schedule; a waypoint holds its
//! own. [`CertificateStore`] keeps them keyed by SPIFFE ID, with the [`crate::bundle::TrustBundleSet`] (and its
//! trust domain aliases) as [`SharedTrustBundles`]. TLS reads both through rustls's extension points:
//!
//! - [`IdentityResolver`] implements `ResolvesServerCert` and `ResolvesClientCert` for one identity and
//!   takes the certificate stored at the moment of each handshake;
//! - [`crate::tls::SpiffeServerVerifier`] and [`crate::tls::SpiffeClientVerifier`] over a
//!   [`crate::verify::ChainVerifier::shared`] take the bundles current at each verification.
//!
//! So a configuration is built once per identity ([`CertificateStore::server_config`],
//! [`CertificateStore::client_config`]) and kept across rotations: a handshake in flight and established
//! connections keep what they negotiated, and the next handshake presents the renewed certificate and trusts
//! the replaced bundles. The hot path is a read lock and an `Arc` clone per handshake.
//!
//! Renewal follows [`crate::rotation`]: each stored certificate gets a [`crate::rotation::RenewalSchedule`]
//! when stored; [`CertificateStore::next_renewal`] tells the owner how long to sleep and
//! [`CertificateStore::renew_due`] issues replacements from a [`crate::ca::LocalCa`]. The store has no timer
//! and reads no clock for renewal: `now` is passed in. The one clock involved is the rustls [`TimeProvider`]
//! of its TLS configurations, the same one that dates peer verification (below).
//!
//! # Expired certificates are never presented (fail closed)
//!
//! The resolvers compare the stored certificate's validity with the clock of the store's configurations, the
//! rustls [`TimeProvider`] of [`StoreOptions::time_provider`] that also dates peer verification. Outside
//! `notBefore..notAfter` (or when that clock gives no time) nothing is presented: the server aborts the
//! handshake, the client sends no certificate and the server refuses it. The entry stays in the store,
//! due, so the next [`CertificateStore::renew_due`] replaces it; [`CertificateStore::remove`] drops it.
//!
//! ```
//! use std::time::Duration;
//!
//! use mesh_identity::ca::{CaOptions, LocalCa};
//! use mesh_identity::rotation::Jitter;
//! use mesh_identity::spiffe::{IstioIdentity, TrustDomain};
//! use mesh_identity::store::CertificateStore;
//! use rustls::pki_types::UnixTime;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let td = TrustDomain::new("cluster.local")?;
//! let now = UnixTime::now();
//! let ca = LocalCa::new_root(td.clone(), &CaOptions::default(), now)?;
//! let store = CertificateStore::new([ca.trust_bundle().clone()].into_iter().collect());
//!
//! // Two local workloads, each with a certificate from the CA.
//! let reviews = IstioIdentity::new(&td, "bookinfo", "reviews")?;
//! let ratings = IstioIdentity::new(&td, "bookinfo", "ratings")?;
//! store.issue(&ca, &reviews, now, Jitter::None)?;
//! store.issue(&ca, &ratings, now, Jitter::None)?;
//!
//! // One configuration per identity, kept for the life of the proxy.
//! let server = store.server_config(reviews.spiffe_id(), [td.clone()])?;
//! let client = store.client_config(ratings.spiffe_id(), [reviews.spiffe_id().clone()])?;
//! assert_eq!(server.alpn_protocols, [b"h2".to_vec()]);
//! # drop(client);
//!
//! // The owner's loop: sleep until the next renewal, then renew what is due (24 h certificates renew at 12 h).
//! assert_eq!(store.next_renewal(now), Some(Duration::from_secs(12 * 3600)));
//! let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 12 * 3600));
//! let report = store.renew_due(&ca, later, |_| Jitter::None);
//! assert_eq!(report.renewed.len(), 2);
//! // The configurations built above now present the new certificates.
//! # Ok(())
//! # }
//! ```

mod bundles;
mod config;
mod entry;
mod error;
mod renew;
mod resolve;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};

pub use bundles::SharedTrustBundles;
pub use entry::StoredCertificate;
pub use error::StoreError;
pub use renew::{RenewalFailure, RenewalReport};
pub use resolve::IdentityResolver;

use self::resolve::Slot;
use crate::bundle::{TrustBundle, TrustBundleSet};
use crate::ca::{DEFAULT_WORKLOAD_TTL, IssuedSvid, KeyAlgorithm};
use crate::rotation::{Jitter, RenewalPolicy};
use crate::spiffe::{SpiffeId, TrustDomains};
use crate::tls::WorkloadCertificate;

/// How a [`CertificateStore`] loads, dates and renews certificates.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// When stored certificates are due for renewal (Istio's half-life by default).
    pub renewal: RenewalPolicy,
    /// The TTL of certificates the store has the CA issue ([`DEFAULT_WORKLOAD_TTL`], 24 h, by default).
    pub workload_ttl: Duration,
    /// The key algorithm of certificates the store has the CA issue (ECDSA P-256 by default).
    pub key_algorithm: KeyAlgorithm,
    /// Loads private keys for rustls and runs the store's TLS configurations ([`crate::crypto::provider`] by
    /// default).
    pub crypto_provider: Arc<CryptoProvider>,
    /// The clock of the store's TLS configurations: peers are verified, and own certificates checked for
    /// validity, at its time. rustls's system clock by default; a test or a simulation passes its own.
    pub time_provider: Arc<dyn TimeProvider>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            renewal: RenewalPolicy::default(),
            workload_ttl: DEFAULT_WORKLOAD_TTL,
            key_algorithm: KeyAlgorithm::default(),
            crypto_provider: crate::crypto::provider(),
            time_provider: Arc::new(DefaultTimeProvider),
        }
    }
}

/// The certificates of many workloads, keyed by SPIFFE ID, and the trust bundles, each replaced atomically.
/// Cheap to clone; clones are the same store. See the [module documentation](self).
#[derive(Clone)]
pub struct CertificateStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// A slot lives as long as the store holds a certificate for it or a resolver refers to it, so a
    /// configuration built before an identity is stored (or after it is removed) sees it when it is (again).
    slots: RwLock<HashMap<SpiffeId, Arc<Slot>>>,
    bundles: SharedTrustBundles,
    options: StoreOptions,
}

impl fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateStore")
            .field("identities", &self.identities())
            .field("trust_domains", &self.trust_bundles().current().trust_domains().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl CertificateStore {
    /// An empty store trusting `bundles`, with the default [`StoreOptions`].
    pub fn new(bundles: TrustBundleSet) -> Self {
        Self::with_options(bundles, StoreOptions::default())
    }

    /// An empty store trusting `bundles`.
    pub fn with_options(bundles: TrustBundleSet, options: StoreOptions) -> Self {
        let inner = Inner { slots: RwLock::default(), bundles: SharedTrustBundles::new(bundles), options };
        CertificateStore { inner: Arc::new(inner) }
    }

    /// The options the store was made with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    fn slots(&self) -> RwLockReadGuard<'_, HashMap<SpiffeId, Arc<Slot>>> {
        // A poisoned map is still consistent: every change to it is a single insert or remove.
        self.inner.slots.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn slots_mut(&self) -> RwLockWriteGuard<'_, HashMap<SpiffeId, Arc<Slot>>> {
        self.inner.slots.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot of `spiffe_id`, made empty if there is none yet.
    fn slot(&self, spiffe_id: &SpiffeId) -> Arc<Slot> {
        if let Some(slot) = self.slots().get(spiffe_id) {
            return Arc::clone(slot);
        }
        Arc::clone(self.slots_mut().entry(spiffe_id.clone()).or_default())
    }

    /// Stores `certificate` under its SPIFFE ID, replacing the one there in one step; returns the replaced one.
    /// Its renewal time follows [`StoreOptions::renewal`], shifted by `jitter`.
    ///
    /// Handshakes that already took the old certificate, and connections established with it, are unaffected;
    /// the next handshake presents this one.
    pub fn insert(
        &self,
        certificate: &WorkloadCertificate,
        jitter: Jitter,
    ) -> Result<Option<Arc<StoredCertificate>>, StoreError> {
        let stored = self.load(certificate, jitter)?;
        Ok(self.slot(&stored.spiffe_id).set(Some(stored)))
    }

    /// Stores an SVID the local CA issued with its key, as [`CertificateStore::insert`], without a PEM round
    /// trip.
    pub fn insert_issued(
        &self,
        issued: IssuedSvid,
        jitter: Jitter,
    ) -> Result<Option<Arc<StoredCertificate>>, StoreError> {
        let spiffe_id = issued.spiffe_id().clone();
        let certificate =
            WorkloadCertificate::try_from(issued).map_err(|source| StoreError::Certificate { spiffe_id, source })?;
        self.insert(&certificate, jitter)
    }

    /// Loads the key for rustls and schedules the renewal.
    fn load(&self, certificate: &WorkloadCertificate, jitter: Jitter) -> Result<Arc<StoredCertificate>, StoreError> {
        let spiffe_id = certificate.spiffe_id().clone();
        let certified = match certificate.certified_key(&self.inner.options.crypto_provider) {
            Ok(certified) => certified,
            Err(source) => return Err(StoreError::Certificate { spiffe_id, source }),
        };
        let schedule = self.inner.options.renewal.schedule(certificate.not_before(), certificate.not_after(), jitter);
        Ok(Arc::new(StoredCertificate { spiffe_id, certified: Arc::new(certified), schedule }))
    }

    /// The certificate stored for `spiffe_id`, whether or not it is valid now.
    pub fn get(&self, spiffe_id: &SpiffeId) -> Option<Arc<StoredCertificate>> {
        self.slots().get(spiffe_id).and_then(|slot| slot.get())
    }

    /// Removes the certificate of `spiffe_id`; returns it. Handshakes for that identity fail from now on
    /// (established connections stay), until a certificate is stored for it again.
    pub fn remove(&self, spiffe_id: &SpiffeId) -> Option<Arc<StoredCertificate>> {
        let mut slots = self.slots_mut();
        let slot = slots.get(spiffe_id)?;
        let removed = slot.set(None);
        // Keep the empty slot while resolvers refer to it, so that storing the identity again reaches them.
        if Arc::strong_count(slot) == 1 {
            slots.remove(spiffe_id);
        }
        removed
    }

    /// The identities with a stored certificate, in order.
    pub fn identities(&self) -> Vec<SpiffeId> {
        let mut ids: Vec<SpiffeId> =
            self.slots().iter().filter(|(_, slot)| slot.get().is_some()).map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids
    }

    /// How many identities have a stored certificate.
    pub fn len(&self) -> usize {
        self.slots().values().filter(|slot| slot.get().is_some()).count()
    }

    /// Whether no identity has a stored certificate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The certificate resolver of `spiffe_id`, for a TLS server or client: it presents whatever certificate
    /// the store holds for the identity at each handshake, including one stored after the resolver was made.
    pub fn resolver(&self, spiffe_id: &SpiffeId) -> IdentityResolver {
        IdentityResolver {
            spiffe_id: spiffe_id.clone(),
            slot: self.slot(spiffe_id),
            time: Arc::clone(&self.inner.options.time_provider),
        }
    }

    /// The trust bundles, shared with every verifier of the store's configurations.
    pub fn trust_bundles(&self) -> &SharedTrustBundles {
        &self.inner.bundles
    }

    /// Replaces the whole trust bundle set in one step; returns the set replaced. Verifications already
    /// running finish with the old set; the next ones use `bundles`.
    pub fn replace_trust_bundles(&self, bundles: TrustBundleSet) -> Arc<TrustBundleSet> {
        self.inner.bundles.replace(bundles)
    }

    /// Replaces the bundle of the mesh's trust domain and its aliases in one step, keeping other trust domains'
    /// bundles; see [`SharedTrustBundles::replace_mesh_bundle`].
    pub fn replace_mesh_bundle(&self, domains: &TrustDomains, bundle: TrustBundle) {
        self.inner.bundles.replace_mesh_bundle(domains, bundle);
    }

    /// Drops the slots that hold no certificate and that no resolver refers to.
    fn sweep(&self) {
        self.slots_mut().retain(|_, slot| Arc::strong_count(slot) > 1 || slot.get().is_some());
    }
}
