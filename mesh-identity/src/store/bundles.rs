//! Trust bundles that are replaced while serving: a [`TrustBundleSet`] behind a lock, swapped whole.

use std::sync::{Arc, PoisonError, RwLock};

use crate::bundle::{TrustBundle, TrustBundleSet};
use crate::spiffe::TrustDomains;

/// A [`TrustBundleSet`] that is replaced atomically while verifiers read it. Cheap to clone; clones share the
/// set.
///
/// A reader takes the current set ([`SharedTrustBundles::current`]: a read lock held for one `Arc` clone) and
/// keeps it for the whole of one verification, so a replacement never mixes two sets in one chain check. A
/// writer builds the new set aside and swaps it in.
#[derive(Debug, Clone, Default)]
pub struct SharedTrustBundles {
    current: Arc<RwLock<Arc<TrustBundleSet>>>,
}

impl SharedTrustBundles {
    /// Starts with `bundles`.
    pub fn new(bundles: TrustBundleSet) -> Self {
        SharedTrustBundles { current: Arc::new(RwLock::new(Arc::new(bundles))) }
    }

    /// The set as it is now.
    pub fn current(&self) -> Arc<TrustBundleSet> {
        // A poisoned lock still holds a whole set: the writers only ever store a finished one.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the whole set; returns the one replaced.
    pub fn replace(&self, bundles: TrustBundleSet) -> Arc<TrustBundleSet> {
        let new = Arc::new(bundles);
        std::mem::replace(&mut *self.current.write().unwrap_or_else(PoisonError::into_inner), new)
    }

    /// Changes a copy of the current set with `change` and swaps it in; concurrent updates are serialized, so
    /// none is lost. The bundles themselves are shared, not copied.
    pub fn update(&self, change: impl FnOnce(&mut TrustBundleSet)) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = TrustBundleSet::clone(&current);
        change(&mut next);
        *current = Arc::new(next);
    }

    /// Replaces the bundle of the mesh's local trust domain and of each alias with `bundle`, in one swap;
    /// bundles of other (federated) trust domains stay.
    ///
    /// To rotate a root with an overlap, give a bundle holding both the old and the new root, and later one
    /// holding the new root only.
    pub fn replace_mesh_bundle(&self, domains: &TrustDomains, bundle: TrustBundle) {
        self.update(|set| set.insert_with_aliases(domains, bundle));
    }
}
