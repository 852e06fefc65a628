//! Configuration from the Kubernetes API: a [`ConfigSource`] that lists and watches the objects the cluster
//! model and the policies are made of (kube-rs' watchers), and sends the whole set whenever it changes.
//!
//! What is watched ([`Watched::ALL`]): Namespaces, Services and Pods (core/v1), ServiceEntries and
//! WorkloadEntries (networking.istio.io/v1), Gateways (gateway.networking.k8s.io/v1), AuthorizationPolicies,
//! RequestAuthentications and PeerAuthentications (security.istio.io/v1), across all namespaces.
//!
//! A partial view never reaches the proxy:
//! - the first update is sent only once every kind has been listed completely;
//! - a watch that restarts (a `410 Gone`, an expired resource version, the API server restarting) relists; the
//!   source keeps the objects it had for that kind and sends nothing until the relist is complete, so the
//!   configuration in force stays meanwhile;
//! - a burst of events is sent as one update, once nothing has changed for [`KubeSource::settle`].
//!
//! While the API cannot be reached the source reports it (`SourceError::Unreachable`, shown in the proxy's
//! `/config_dump`) and retries with kube-runtime's backoff; the proxy keeps enforcing what it has.
//!
//! The proxy's service account needs `list` and `watch` on those resources and nothing else:
//! `deploy/rbac.yaml` is that ClusterRole.
//!
//! Each object becomes one [`Document`] named `Kind namespace/name`, so an invalid object is reported by kind,
//! name and field. `metadata.managedFields` and the `last-applied-configuration` annotation are dropped.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, TypeMeta};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use crate::source::{ConfigSource, ConfigUpdate, Document, SourceError, SourceTask};

/// A kind the source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// The API group (`""` for core).
    pub group: &'static str,
    /// The version.
    pub version: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// The resource name in URLs.
    pub plural: &'static str,
}

impl Watched {
    /// Every kind the cluster model and the policies read.
    pub const ALL: [Watched; 9] = [
        Watched { group: "", version: "v1", kind: "Namespace", plural: "namespaces" },
        Watched { group: "", version: "v1", kind: "Service", plural: "services" },
        Watched { group: "", version: "v1", kind: "Pod", plural: "pods" },
        Watched { group: "networking.istio.io", version: "v1", kind: "ServiceEntry", plural: "serviceentries" },
        Watched { group: "networking.istio.io", version: "v1", kind: "WorkloadEntry", plural: "workloadentries" },
        Watched { group: "gateway.networking.k8s.io", version: "v1", kind: "Gateway", plural: "gateways" },
        Watched {
            group: "security.istio.io",
            version: "v1",
            kind: "AuthorizationPolicy",
            plural: "authorizationpolicies",
        },
        Watched {
            group: "security.istio.io",
            version: "v1",
            kind: "RequestAuthentication",
            plural: "requestauthentications",
        },
        Watched {
            group: "security.istio.io",
            version: "v1",
            kind: "PeerAuthentication",
            plural: "peerauthentications",
        },
    ];

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_owned() } else { format!("{}/{}", self.group, self.version) }
    }

    fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(self.group, self.version, self.kind), self.plural)
    }
}

/// The client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    /// No configuration was found (no kubeconfig, not in a cluster), or it is invalid.
    #[error("the Kubernetes API configuration: {0}")]
    Config(String),
    /// The client could not be built from it.
    #[error("the Kubernetes API client: {0}")]
    Client(String),
}

/// The objects of a cluster, listed and watched through its API.
#[derive(Clone)]
pub struct KubeSource {
    client: kube::Client,
    url: String,
    kinds: Vec<Watched>,
    settle: Duration,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource").field("url", &self.url).field("kinds", &self.kinds.len()).finish()
    }
}

impl KubeSource {
    /// Watches every kind of [`Watched::ALL`] through `client` (at `url`, for logs).
    pub fn new(client: kube::Client, url: impl Into<String>) -> Self {
        KubeSource { client, url: url.into(), kinds: Watched::ALL.to_vec(), settle: Duration::from_millis(50) }
    }

    /// The API server of `kubeconfig` (its current context), else the one the environment names: `KUBECONFIG`
    /// or `~/.kube/config`, or the in-cluster service account when running in a Pod.
    pub async fn connect(kubeconfig: Option<PathBuf>) -> Result<Self, KubeSourceError> {
        let (client, url) = client(kubeconfig).await?;
        Ok(KubeSource::new(client, url))
    }

    /// The API server `config` describes.
    pub fn from_config(config: kube::Config) -> Result<Self, KubeSourceError> {
        let (client, url) = build(config)?;
        Ok(KubeSource::new(client, url))
    }

    /// How long the objects must stay unchanged before an update is sent (50 ms): a burst of events is one
    /// update.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }
}

/// A client of the API server of `kubeconfig` (its current context), else of the one the environment names, as
/// [`KubeSource::connect`] finds it; with the server's URL, for logs.
pub async fn client(kubeconfig: Option<PathBuf>) -> Result<(kube::Client, String), KubeSourceError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| KubeSourceError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| KubeSourceError::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| KubeSourceError::Config(e.to_string()))?,
    };
    build(config)
}

fn build(config: kube::Config) -> Result<(kube::Client, String), KubeSourceError> {
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| KubeSourceError::Client(e.to_string()))?;
    Ok((client, url))
}

/// What the source holds of one kind.
#[derive(Default)]
struct Kind {
    /// The objects, by `namespace/name`, as JSON.
    objects: BTreeMap<String, String>,
    /// A relist under way: the objects listed so far.
    relisting: Option<BTreeMap<String, String>>,
    /// Whether a complete list has been seen.
    listed: bool,
}

impl ConfigSource for KubeSource {
    fn describe(&self) -> String {
        format!("the Kubernetes API at {}", self.url)
    }

    fn run(self: Box<Self>, updates: mpsc::Sender<ConfigUpdate>) -> SourceTask {
        Box::pin(async move {
            let streams = self.kinds.iter().enumerate().map(|(i, watched)| {
                let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &watched.resource());
                watcher(api, watcher::Config::default()).default_backoff().map(move |event| (i, event)).boxed()
            });
            let mut events = futures::stream::select_all(streams);
            let mut kinds: Vec<Kind> = self.kinds.iter().map(|_| Kind::default()).collect();
            let mut changed = false;
            let mut failing: HashMap<usize, String> = HashMap::new();
            loop {
                let complete = kinds.iter().all(|k| k.listed && k.relisting.is_none());
                let next = if changed && complete {
                    match tokio::time::timeout(self.settle, events.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            // Settled: send the whole set.
                            changed = false;
                            if updates.send(Ok(documents(&self.kinds, &kinds))).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                } else {
                    events.next().await
                };
                let Some((i, event)) = next else { return };
                let (Some(watched), Some(kind)) = (self.kinds.get(i), kinds.get_mut(i)) else { continue };
                match event {
                    Ok(event) => {
                        if failing.remove(&i).is_some() {
                            tracing::info!(kind = watched.kind, "the Kubernetes API answers again");
                        }
                        changed |= apply(watched, kind, event);
                    }
                    Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                        // The resource version expired: the watcher relists, and nothing is sent until it is done.
                        tracing::info!(kind = watched.kind, "the watch expired (410 Gone); relisting");
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        if failing.insert(i, reason.clone()).as_ref() != Some(&reason) {
                            tracing::warn!(kind = watched.kind, error = %reason, "watching the Kubernetes API failed; retrying, the configuration in force stays");
                            let error = SourceError::Unreachable {
                                server: self.describe(),
                                kind: watched.kind.to_owned(),
                                reason,
                            };
                            if updates.send(Err(error)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        })
    }
}

/// Applies one watch event to what the source holds of its kind; whether the complete set changed.
fn apply(watched: &Watched, kind: &mut Kind, event: watcher::Event<DynamicObject>) -> bool {
    match event {
        watcher::Event::Init => {
            kind.relisting = Some(BTreeMap::new());
            false
        }
        watcher::Event::InitApply(object) => {
            let (key, json) = entry(watched, object);
            kind.relisting.get_or_insert_with(BTreeMap::new).insert(key, json);
            false
        }
        watcher::Event::InitDone => {
            let listed = kind.relisting.take().unwrap_or_default();
            let changed = !kind.listed || listed != kind.objects;
            kind.objects = listed;
            kind.listed = true;
            changed
        }
        watcher::Event::Apply(object) => {
            let (key, json) = entry(watched, object);
            kind.objects.insert(key, json.clone()) != Some(json)
        }
        watcher::Event::Delete(object) => {
            let (key, _) = entry(watched, object);
            kind.objects.remove(&key).is_some()
        }
    }
}

/// An object's key (`namespace/name`) and its JSON, with its kind and version set (list items carry neither)
/// and the fields no policy reads dropped.
fn entry(watched: &Watched, mut object: DynamicObject) -> (String, String) {
    object.types = Some(TypeMeta { api_version: watched.api_version(), kind: watched.kind.to_owned() });
    object.metadata.managed_fields = None;
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    let key = format!(
        "{}/{}",
        object.metadata.namespace.as_deref().unwrap_or(""),
        object.metadata.name.as_deref().unwrap_or("")
    );
    let json = serde_json::to_string(&object).unwrap_or_default();
    (key, json)
}

/// The whole set, one document per object, named by kind and `namespace/name`.
fn documents(watched: &[Watched], kinds: &[Kind]) -> Vec<Document> {
    watched
        .iter()
        .zip(kinds)
        .flat_map(|(w, kind)| {
            kind.objects.iter().map(move |(key, json)| Document {
                name: format!("{} {}", w.kind, key.trim_start_matches('/')),
                text: json.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str) -> DynamicObject {
        let mut object = DynamicObject::new(name, &Watched::ALL[2].resource()).within("payments");
        object.data = serde_json::json!({"status": {"podIP": ip}});
        object
    }

    #[test]
    fn a_relist_changes_nothing_until_it_is_complete_and_then_replaces_the_kind() {
        let pods = Watched::ALL[2];
        let mut kind = Kind::default();
        assert!(!apply(&pods, &mut kind, watcher::Event::Init));
        assert!(!apply(&pods, &mut kind, watcher::Event::InitApply(pod("a", "10.0.0.1"))));
        assert!(!kind.listed && kind.objects.is_empty(), "nothing is in force before the first list is complete");
        assert!(apply(&pods, &mut kind, watcher::Event::InitDone), "the first complete list is a change");
        assert_eq!(kind.objects.keys().collect::<Vec<_>>(), ["payments/a"]);
        // A relist: the objects in force stay until it completes; a relist that finds the same objects is no
        // change, one that finds others replaces the kind (what it no longer lists is deleted).
        assert!(!apply(&pods, &mut kind, watcher::Event::Init));
        assert!(!apply(&pods, &mut kind, watcher::Event::InitApply(pod("b", "10.0.0.2"))));
        assert_eq!(kind.objects.keys().collect::<Vec<_>>(), ["payments/a"], "kept during the relist");
        assert!(kind.relisting.is_some());
        assert!(apply(&pods, &mut kind, watcher::Event::InitDone));
        assert_eq!(kind.objects.keys().collect::<Vec<_>>(), ["payments/b"]);
        assert!(!apply(&pods, &mut kind, watcher::Event::Init));
        assert!(!apply(&pods, &mut kind, watcher::Event::InitApply(pod("b", "10.0.0.2"))));
        assert!(!apply(&pods, &mut kind, watcher::Event::InitDone), "the same objects: no update");
        // Events: the same object again is no change; a changed one and a deletion are.
        assert!(!apply(&pods, &mut kind, watcher::Event::Apply(pod("b", "10.0.0.2"))));
        assert!(apply(&pods, &mut kind, watcher::Event::Apply(pod("b", "10.0.0.3"))));
        assert!(apply(&pods, &mut kind, watcher::Event::Delete(pod("b", "10.0.0.3"))));
        assert!(!apply(&pods, &mut kind, watcher::Event::Delete(pod("b", "10.0.0.3"))));
    }
}
