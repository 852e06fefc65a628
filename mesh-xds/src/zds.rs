//! istio-cni's in-pod redirection protocol (ZDS), without IO.
//!
//! The node agent of istio-cni listens on a unix `SOCK_SEQPACKET` socket (`/var/run/ztunnel/ztunnel.sock`,
//! Istio's `INPOD_UDS`); the node proxy connects once its configuration is in, and speaks first with
//! [`hello`]. Each packet then holds one [`WorkloadRequest`] of at most
//! [`MAX_PACKET`] bytes; an add carries the Pod's network namespace as the one `SCM_RIGHTS` descriptor of the
//! packet, nothing else carries one. The proxy answers every request with one [`ack`] (an empty error) or
//! [`nack`]. On each connection the agent first sends every Pod it knows of (adds, or keeps for Pods the proxy
//! already serves after it restarted), then `SnapshotSent`: the Pods the proxy serves that were not named by
//! then are gone.
//!
//! [`decode`] reads one packet (its bytes, the descriptors that came with it, whether the kernel truncated
//! it) into a [`Request`]; [`Session`] turns the requests of one connection into what the proxy does. The
//! descriptor type is the caller's (`OwnedFd` in a proxy), so nothing here touches the system; a descriptor
//! that comes with a refused packet is handed back in the error, for the caller to close.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use crate::proto::zds::{self, Ack, Version, WorkloadRequest, WorkloadResponse, ZdsHello, workload_request::Payload};

/// The largest packet the agent sends.
pub const MAX_PACKET: usize = 1024;

/// Who a Pod is, as the agent says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// The Pod's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its service account.
    pub service_account: String,
}

/// One request of the agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<F> {
    /// Serve the Pod `uid` in the network namespace `netns`.
    Add {
        /// The Pod's uid (Kubernetes `metadata.uid`).
        uid: String,
        /// Who it is, when the agent says.
        info: Option<PodInfo>,
        /// Its network namespace.
        netns: F,
    },
    /// Keep serving the Pod `uid` (it was served before this connection).
    Keep {
        /// The Pod's uid.
        uid: String,
    },
    /// Stop serving the Pod `uid`.
    Del {
        /// The Pod's uid.
        uid: String,
    },
    /// Every Pod the agent knows of was named.
    SnapshotSent,
}

/// A packet that is not a request the proxy can act on. The descriptors that came with it are in
/// [`Refused::descriptors`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZdsError {
    /// The packet or its control data were cut by the kernel.
    #[error("the packet was truncated (more than {MAX_PACKET} bytes, or more than one descriptor)")]
    Truncated,
    /// The bytes are not a `WorkloadRequest`.
    #[error("not a WorkloadRequest: {0}")]
    Decode(String),
    /// A request without payload.
    #[error("a WorkloadRequest without payload")]
    NoPayload,
    /// A request that names no Pod.
    #[error("a {request} without a Pod uid")]
    NoUid {
        /// Which request.
        request: &'static str,
    },
    /// An add without its network namespace.
    #[error("add of Pod {uid} came without its network namespace")]
    NoNamespace {
        /// The Pod's uid.
        uid: String,
    },
    /// Descriptors where none belong, or more than one.
    #[error("{count} descriptors came with a {request}; only an add carries one, its network namespace")]
    Descriptors {
        /// Which request.
        request: &'static str,
        /// How many.
        count: usize,
    },
    /// A keep for a Pod the proxy does not serve.
    #[error("keep of Pod {uid}, which this proxy does not serve")]
    UnknownKeep {
        /// The Pod's uid.
        uid: String,
    },
}

/// A refused packet: why, and the descriptors it carried (to be closed by the caller).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused<F> {
    /// Why.
    pub error: ZdsError,
    /// The descriptors that came with it.
    pub descriptors: Vec<F>,
}

/// The proxy's first message: `ZdsHello{version: V1}`.
pub fn hello() -> Vec<u8> {
    ZdsHello { version: Version::V1 as i32 }.encode_to_vec()
}

/// The answer to a request done.
pub fn ack() -> Vec<u8> {
    response(String::new())
}

/// The answer to a request refused or failed, saying why.
pub fn nack(error: &str) -> Vec<u8> {
    // The agent logs the reason; an empty one would read as success.
    let error = if error.is_empty() { "failed".to_owned() } else { error.to_owned() };
    response(error)
}

fn response(error: String) -> Vec<u8> {
    WorkloadResponse { payload: Some(zds::workload_response::Payload::Ack(Ack { error })) }.encode_to_vec()
}

/// Reads one packet: `bytes` as received, the `descriptors` of its `SCM_RIGHTS` control messages, and whether
/// the kernel reported it or its control data `truncated`.
pub fn decode<F>(bytes: &[u8], mut descriptors: Vec<F>, truncated: bool) -> Result<Request<F>, Refused<F>> {
    let refuse = |error: ZdsError, descriptors: Vec<F>| Refused { error, descriptors };
    if truncated || bytes.len() > MAX_PACKET {
        return Err(refuse(ZdsError::Truncated, descriptors));
    }
    let request = match WorkloadRequest::decode(bytes) {
        Ok(request) => request,
        Err(e) => return Err(refuse(ZdsError::Decode(e.to_string()), descriptors)),
    };
    let Some(payload) = request.payload else { return Err(refuse(ZdsError::NoPayload, descriptors)) };
    let (name, uid) = match &payload {
        Payload::Add(a) => ("add", a.uid.as_str()),
        Payload::Keep(k) => ("keep", k.uid.as_str()),
        Payload::Del(d) => ("del", d.uid.as_str()),
        Payload::SnapshotSent(_) => ("snapshot_sent", "-"),
    };
    if uid.is_empty() {
        return Err(refuse(ZdsError::NoUid { request: name }, descriptors));
    }
    let expected = usize::from(matches!(payload, Payload::Add(_)));
    if descriptors.len() > expected {
        let count = descriptors.len();
        return Err(refuse(ZdsError::Descriptors { request: name, count }, descriptors));
    }
    Ok(match payload {
        Payload::Add(add) => {
            let Some(netns) = descriptors.pop() else {
                return Err(refuse(ZdsError::NoNamespace { uid: add.uid }, descriptors));
            };
            let info = add.workload_info.map(|w| PodInfo {
                name: w.name,
                namespace: w.namespace,
                service_account: w.service_account,
            });
            Request::Add { uid: add.uid, info, netns }
        }
        Payload::Keep(keep) => Request::Keep { uid: keep.uid },
        Payload::Del(del) => Request::Del { uid: del.uid },
        Payload::SnapshotSent(_) => Request::SnapshotSent,
    })
}

/// What the proxy does for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<F> {
    /// Start serving the Pod (or, for a Pod served already, take the new namespace: the Pod was recreated
    /// with the same uid, which Kubernetes does not do, so the old one is replaced).
    Serve {
        /// The Pod's uid.
        uid: String,
        /// Who it is.
        info: Option<PodInfo>,
        /// Its network namespace.
        netns: F,
    },
    /// Nothing to do (a keep).
    Keep,
    /// Stop serving these Pods: a del, or the Pods the snapshot left out.
    Stop(Vec<String>),
}

/// The state of one connection to the agent: which Pods the proxy serves, and which of them the agent named
/// since the connection began (until its snapshot is complete).
#[derive(Debug, Clone, Default)]
pub struct Session {
    served: BTreeMap<String, Option<PodInfo>>,
    named: BTreeSet<String>,
    snapshot_complete: bool,
}

impl Session {
    /// A connection, the proxy serving `served` from before (a reconnection after the agent restarted).
    pub fn new(served: impl IntoIterator<Item = (String, Option<PodInfo>)>) -> Self {
        Session { served: served.into_iter().collect(), named: BTreeSet::new(), snapshot_complete: false }
    }

    /// The Pods served now.
    pub fn served(&self) -> impl Iterator<Item = (&str, Option<&PodInfo>)> {
        self.served.iter().map(|(uid, info)| (uid.as_str(), info.as_ref()))
    }

    /// Whether the agent's snapshot is complete on this connection.
    pub fn snapshot_complete(&self) -> bool {
        self.snapshot_complete
    }

    /// What `request` means; the proxy acts, then acks (or nacks if acting failed, and calls
    /// [`Session::failed`]).
    pub fn apply<F>(&mut self, request: Request<F>) -> Result<Action<F>, ZdsError> {
        match request {
            Request::Add { uid, info, netns } => {
                self.named.insert(uid.clone());
                self.served.insert(uid.clone(), info.clone());
                Ok(Action::Serve { uid, info, netns })
            }
            Request::Keep { uid } => {
                if !self.served.contains_key(&uid) {
                    return Err(ZdsError::UnknownKeep { uid });
                }
                self.named.insert(uid);
                Ok(Action::Keep)
            }
            Request::Del { uid } => {
                self.named.remove(&uid);
                Ok(Action::Stop(self.served.remove(&uid).map(|_| uid).into_iter().collect()))
            }
            Request::SnapshotSent => {
                let gone: Vec<String> = if self.snapshot_complete {
                    Vec::new()
                } else {
                    self.served.keys().filter(|uid| !self.named.contains(*uid)).cloned().collect()
                };
                for uid in &gone {
                    self.served.remove(uid);
                }
                self.snapshot_complete = true;
                Ok(Action::Stop(gone))
            }
        }
    }

    /// Serving `uid` failed after [`Action::Serve`]: it is not served.
    pub fn failed(&mut self, uid: &str) {
        self.served.remove(uid);
        self.named.remove(uid);
    }
}
