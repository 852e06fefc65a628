//! A Kubernetes API server double for tests, on a real socket: list and watch as the API server serves them
//! (resource versions, chunked watch streams, bookmarks), with failures the test scripts (`410 Gone`,
//! dropped streams, going away). Shared by the tests of the crates that read the Kubernetes API.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One resource's objects and its watchers.
#[derive(Default)]
struct Resource {
    /// By `namespace/name`.
    objects: BTreeMap<String, Value>,
    /// Every change, with its resource version: what a watch from an older version replays.
    log: Vec<(u64, &'static str, Value)>,
    watchers: Vec<mpsc::UnboundedSender<Bytes>>,
    /// The next watch is answered with an expired resource version (410 Gone).
    gone_next: bool,
    lists: usize,
}

#[derive(Default)]
struct Cluster {
    version: u64,
    /// By URL path (`/api/v1/pods`).
    resources: HashMap<String, Resource>,
    /// Every status patch: the object's URL and the patch.
    patches: Vec<(String, Value)>,
}

/// What an object URL names: the resource's list path, the object's key (`namespace/name`), a subresource.
fn object_path(path: &str) -> Option<(String, String, Option<String>)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (format!("/api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
        _ => return None,
    };
    let owned = |s: &&str| (*s).to_owned();
    match rest {
        ["namespaces", namespace, plural, name, sub @ ..] => {
            Some((format!("{prefix}/{plural}"), format!("{namespace}/{name}"), sub.first().map(owned)))
        }
        [plural, name, sub @ ..] if *plural != "namespaces" || sub.is_empty() => {
            Some((format!("{prefix}/{plural}"), format!("/{name}"), sub.first().map(owned)))
        }
        _ => None,
    }
}

fn json_response(status: u16, value: &Value) -> Response<BoxBody<Bytes, Infallible>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap()
}

/// The API server double.
#[derive(Clone, Default)]
pub struct ApiServer {
    cluster: Arc<Mutex<Cluster>>,
}

fn path_of(api_version: &str, plural: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}/{plural}")
    } else {
        format!("/api/{api_version}/{plural}")
    }
}

fn key(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("")
    )
}

impl ApiServer {
    /// Adds or replaces an object (`ADDED` or `MODIFIED` to watchers).
    pub fn apply(&self, plural: &str, mut object: Value) {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.version += 1;
        let version = cluster.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let path = path_of(object["apiVersion"].as_str().unwrap(), plural);
        let resource = cluster.resources.entry(path).or_default();
        let kind = if resource.objects.insert(key(&object), object.clone()).is_some() { "MODIFIED" } else { "ADDED" };
        resource.log.push((version, kind, object.clone()));
        let line = Bytes::from(format!("{}\n", json!({"type": kind, "object": object})));
        resource.watchers.retain(|w| w.send(line.clone()).is_ok());
    }

    /// Removes an object (`DELETED` to watchers).
    pub fn delete(&self, api_version: &str, plural: &str, namespace: &str, name: &str) {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.version += 1;
        let version = cluster.version;
        let resource = cluster.resources.entry(path_of(api_version, plural)).or_default();
        let Some(mut object) = resource.objects.remove(&format!("{namespace}/{name}")) else { return };
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        resource.log.push((version, "DELETED", object.clone()));
        let line = Bytes::from(format!("{}\n", json!({"type": "DELETED", "object": object})));
        resource.watchers.retain(|w| w.send(line.clone()).is_ok());
    }

    /// Replaces a resource's objects without telling its watchers (as changes missed while a watch was down),
    /// answers its next watch with 410 Gone, and drops its streams: the client must relist to see them.
    pub fn rewrite_behind_watchers(&self, api_version: &str, plural: &str, objects: Vec<Value>) {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.version += 1;
        let version = cluster.version;
        let resource = cluster.resources.entry(path_of(api_version, plural)).or_default();
        resource.objects.clear();
        resource.log.clear();
        for mut object in objects {
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            resource.objects.insert(key(&object), object);
        }
        resource.gone_next = true;
        resource.watchers.clear();
    }

    /// The status patches received so far.
    pub fn patches(&self) -> Vec<(String, Value)> {
        self.cluster.lock().unwrap().patches.clone()
    }

    /// A request for one object: GET it, or PATCH its status (recorded, merged, and sent to watchers).
    fn answer_object(
        &self,
        method: &hyper::Method,
        path: &str,
        body: &[u8],
    ) -> Option<Response<BoxBody<Bytes, Infallible>>> {
        let (list, key, sub) = object_path(path)?;
        let not_found = || {
            json_response(
                404,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "NotFound", "code": 404, "message": format!("{key} not found")}),
            )
        };
        let mut cluster = self.cluster.lock().unwrap();
        if method == hyper::Method::GET && sub.is_none() {
            let found = cluster.resources.get(&list).and_then(|r| r.objects.get(&key)).cloned();
            return Some(found.map_or_else(not_found, |o| json_response(200, &o)));
        }
        if method == hyper::Method::PATCH && sub.as_deref() == Some("status") {
            let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            cluster.patches.push((path.to_owned(), patch.clone()));
            cluster.version += 1;
            let version = cluster.version;
            let Some(resource) = cluster.resources.get_mut(&list) else { return Some(not_found()) };
            let Some(object) = resource.objects.get_mut(&key) else { return Some(not_found()) };
            object["status"] = patch["status"].clone();
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            let object = object.clone();
            resource.log.push((version, "MODIFIED", object.clone()));
            let line = Bytes::from(format!("{}\n", json!({"type": "MODIFIED", "object": object})));
            resource.watchers.retain(|w| w.send(line.clone()).is_ok());
            return Some(json_response(200, &object));
        }
        None
    }

    pub fn lists(&self, api_version: &str, plural: &str) -> usize {
        self.cluster.lock().unwrap().resources.get(&path_of(api_version, plural)).map_or(0, |r| r.lists)
    }

    fn answer(&self, uri: &hyper::Uri) -> Response<BoxBody<Bytes, Infallible>> {
        let path = uri.path().to_owned();
        let query: HashMap<String, String> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let mut cluster = self.cluster.lock().unwrap();
        let version = cluster.version;
        let resource = cluster.resources.entry(path.clone()).or_default();
        if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let (tx, rx) = mpsc::unbounded_channel();
            if resource.gone_next {
                resource.gone_next = false;
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410});
                let _ = tx.send(Bytes::from(format!("{}\n", json!({"type": "ERROR", "object": status}))));
                drop(tx);
            } else {
                let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
                for (v, kind, object) in &resource.log {
                    if *v > from {
                        let _ = tx.send(Bytes::from(format!("{}\n", json!({"type": kind, "object": object}))));
                    }
                }
                // A bookmark, as the API server sends them to move a watcher's resource version on.
                let bookmark = json!({"type": "BOOKMARK", "object": {"kind": "Bookmark", "apiVersion": "v1",
                    "metadata": {"resourceVersion": version.to_string()}}});
                let _ = tx.send(Bytes::from(format!("{bookmark}\n")));
                resource.watchers.push(tx);
            }
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
            });
            return Response::builder()
                .header("content-type", "application/json")
                .body(StreamBody::new(stream).boxed())
                .unwrap();
        }
        resource.lists += 1;
        let items: Vec<&Value> = resource.objects.values().collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": version.to_string()},
            "items": items});
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(list.to_string())).boxed())
            .unwrap()
    }

    /// Serves on `listener` until the task is aborted.
    pub fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let server = self.clone();
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let server = server.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let server = server.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let object = server.answer_object(&parts.method, parts.uri.path(), &body);
                            let response = object.unwrap_or_else(|| server.answer(&parts.uri));
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        })
    }

    /// Goes away: the listener closes and every stream is cut.
    pub fn stop(&self, task: JoinHandle<()>) {
        task.abort();
        for resource in self.cluster.lock().unwrap().resources.values_mut() {
            resource.watchers.clear();
        }
    }
}

/// The resource name of each kind the mesh reads.
pub fn plural(kind: &str) -> &'static str {
    match kind {
        "Namespace" => "namespaces",
        "Service" => "services",
        "Pod" => "pods",
        "ServiceEntry" => "serviceentries",
        "WorkloadEntry" => "workloadentries",
        "Gateway" => "gateways",
        "AuthorizationPolicy" => "authorizationpolicies",
        "RequestAuthentication" => "requestauthentications",
        "PeerAuthentication" => "peerauthentications",
        _ => "unknown",
    }
}

/// A kubeconfig whose current context is the server at `url`, with no credentials.
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{url}\"}}\n\
         users:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: double\n  context: {{cluster: double, user: nobody}}\n\
         current-context: double\n"
    )
}
