//! The configuration in force: a [`Mesh`] behind a lock, its current [`Snapshot`] published on a watch channel
//! (every task holds an `Arc` and never waits for a reload), and the outcome of the last reload for the admin
//! view.

use std::sync::{Arc, Mutex, PoisonError};

use mesh_policy::{Mesh, MeshConfig, Snapshot, Source};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::ops::Readiness;
use crate::source::{ConfigUpdate, Document};

/// The readiness topic of a configuration source that cannot be read.
pub const SOURCE_NOTE: &str = "configuration source";
/// The readiness topic of a configuration update that was refused.
pub const REFUSED_NOTE: &str = "configuration refused";

/// The outcome of the last reload, as the admin view shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// The generation of the snapshot in force.
    pub generation: u64,
    /// Reloads applied.
    pub applied: u64,
    /// Reloads refused (the configuration in force was kept).
    pub rejected: u64,
    /// Why the last reload was refused, if it was: one entry per invalid document or unreadable file.
    pub last_errors: Vec<String>,
    /// Warnings of the configuration in force.
    pub warnings: Vec<String>,
}

/// The mesh configuration of a proxy. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MeshState {
    mesh: Mutex<Mesh>,
    current: watch::Sender<Arc<Snapshot>>,
    status: Mutex<ReloadStatus>,
    /// The documents in force, so that an update that changes nothing makes no new snapshot.
    applied: Mutex<Vec<Document>>,
}

impl MeshState {
    /// An empty configuration with `config`.
    pub fn new(config: MeshConfig) -> Self {
        let mesh = Mesh::new(config);
        let (current, _) = watch::channel(mesh.snapshot());
        MeshState { mesh: Mutex::new(mesh), current, status: Mutex::default(), applied: Mutex::default() }
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.borrow())
    }

    /// Notified of every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.subscribe()
    }

    /// The documents in force: those of the last update a source sent that applied.
    pub fn documents(&self) -> Vec<Document> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The outcome of the last reload.
    pub fn status(&self) -> ReloadStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the whole configuration with `documents`, or, if any is invalid, keeps the configuration in
    /// force and returns every error (file, document, field).
    pub fn apply(&self, documents: &[Document]) -> Result<Arc<Snapshot>, Vec<String>> {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        if applied.as_slice() == documents && self.status().applied > 0 {
            // Unchanged (the source's first update repeats what was read at start): nothing to do.
            self.status.lock().unwrap_or_else(PoisonError::into_inner).last_errors.clear();
            return Ok(self.snapshot());
        }
        let sources: Vec<Source<'_>> = documents.iter().map(|d| Source { name: &d.name, text: &d.text }).collect();
        let mut mesh = self.mesh.lock().unwrap_or_else(PoisonError::into_inner);
        let result = mesh.replace_all(&sources);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(report) => {
                let snapshot = mesh.snapshot();
                status.generation = snapshot.generation();
                status.applied += 1;
                status.last_errors.clear();
                status.warnings = report.warnings.iter().map(ToString::to_string).collect();
                for warning in &report.warnings {
                    warn!(%warning, "configuration warning");
                }
                info!(generation = snapshot.generation(), resources = snapshot.len(), "configuration applied");
                self.current.send_replace(Arc::clone(&snapshot));
                *applied = documents.to_vec();
                Ok(snapshot)
            }
            Err(e) => {
                status.rejected += 1;
                status.last_errors = e.0.iter().map(ToString::to_string).collect();
                for invalid in &e.0 {
                    error!(error = %invalid, "invalid configuration; the configuration in force is kept");
                }
                Err(status.last_errors.clone())
            }
        }
    }

    /// Records a source that could not be read; the configuration in force is kept.
    pub fn unreadable(&self, why: &str) {
        error!(error = %why, "configuration unreadable; the configuration in force is kept");
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.rejected += 1;
        status.last_errors = vec![why.to_owned()];
    }

    /// Runs `change` on the mesh (to supply a JWKS, say) and publishes the resulting snapshot.
    pub fn update<T>(&self, change: impl FnOnce(&mut Mesh) -> T) -> T {
        let mut mesh = self.mesh.lock().unwrap_or_else(PoisonError::into_inner);
        let out = change(&mut mesh);
        self.current.send_replace(mesh.snapshot());
        out
    }

    /// Applies each update from `updates` until the channel closes. Parsing and compiling run on a blocking
    /// thread, so a large reload never stalls the tasks that carry traffic. What goes wrong is said on
    /// `readiness` (topics [`SOURCE_NOTE`] and [`REFUSED_NOTE`]) until an update applies; the proxy keeps
    /// serving the configuration in force meanwhile.
    pub async fn follow(self: Arc<Self>, mut updates: mpsc::Receiver<ConfigUpdate>, readiness: Readiness) {
        while let Some(update) = updates.recv().await {
            match update {
                Ok(documents) => {
                    readiness.clear_note(SOURCE_NOTE);
                    let state = Arc::clone(&self);
                    match tokio::task::spawn_blocking(move || state.apply(&documents)).await {
                        Ok(Ok(_)) => readiness.clear_note(REFUSED_NOTE),
                        Ok(Err(errors)) => readiness
                            .note(REFUSED_NOTE, format!("{} (the configuration in force is kept)", errors.join("; "))),
                        Err(e) => {
                            error!(error = %e, "applying the configuration failed; the configuration in force is kept")
                        }
                    }
                }
                Err(e) => {
                    readiness.note(SOURCE_NOTE, e.to_string());
                    self.unreadable(&e.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY_ALL: &str =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: a}\nspec: {}\n";

    #[test]
    fn an_invalid_document_keeps_the_configuration_in_force_and_names_the_file() {
        let state = MeshState::new(MeshConfig::default());
        let good = [Document { name: "good.yaml".into(), text: DENY_ALL.into() }];
        let applied = state.apply(&good).map(|s| s.generation());
        assert!(applied.is_ok());
        let before = state.snapshot().generation();
        let bad = [Document { name: "bad.yaml".into(), text: DENY_ALL.replace("spec: {}", "spec: {action: MAYBE}") }];
        let errors = state.apply(&bad).err().unwrap_or_default();
        assert!(errors.iter().any(|e| e.contains("bad.yaml") && e.contains("action")), "{errors:?}");
        assert_eq!(state.snapshot().generation(), before);
        assert_eq!(state.snapshot().len(), 1);
        let status = state.status();
        assert_eq!((status.applied, status.rejected), (1, 1));
        // The same documents again make no new snapshot.
        let again = state.apply(&good).map(|s| s.generation());
        assert_eq!(again.ok(), Some(before));
    }

    #[tokio::test]
    async fn what_goes_wrong_is_said_on_readiness_until_an_update_applies() {
        use std::collections::BTreeMap;
        let state = Arc::new(MeshState::new(MeshConfig::default()));
        let readiness = Readiness::new();
        let (tx, rx) = mpsc::channel(1);
        let following = tokio::spawn(Arc::clone(&state).follow(rx, readiness.clone()));
        let until = |check: fn(&BTreeMap<String, String>) -> bool| {
            let readiness = readiness.clone();
            async move {
                for _ in 0..500 {
                    if check(&readiness.status().notes) {
                        return true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                false
            }
        };
        let unreachable = crate::source::SourceError::Unreachable {
            server: "the Kubernetes API at https://10.96.0.1".into(),
            kind: "Pod".into(),
            reason: "connection refused".into(),
        };
        let _ = tx.send(Err(unreachable)).await;
        assert!(until(|n| n.get(SOURCE_NOTE).is_some_and(|t| t.contains("connection refused"))).await);
        assert!(readiness.is_ready(), "the configuration in force is still served");
        let bad = DENY_ALL.replace("spec: {}", "spec: {action: MAYBE}");
        let _ = tx.send(Ok(vec![Document { name: "bad.yaml".into(), text: bad }])).await;
        assert!(
            until(|n| !n.contains_key(SOURCE_NOTE)
                && n.get(REFUSED_NOTE).is_some_and(|t| t.contains("bad.yaml") && t.contains("kept")))
            .await,
            "the source answers again, its update refused: {:?}",
            readiness.status()
        );
        let _ = tx.send(Ok(vec![Document { name: "good.yaml".into(), text: DENY_ALL.into() }])).await;
        assert!(until(BTreeMap::is_empty).await, "an applied update clears every note: {:?}", readiness.status());
        drop(tx);
        let _ = following.await;
        assert_eq!(state.status().applied, 1);
    }

    #[test]
    fn subscribers_see_each_new_snapshot() {
        let state = MeshState::new(MeshConfig::default());
        let mut rx = state.subscribe();
        let _ = state.apply(&[Document { name: "p.yaml".into(), text: DENY_ALL.into() }]);
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(rx.borrow_and_update().len(), 1);
    }
}
