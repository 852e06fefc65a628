//! The connection to istio-cni's node agent: a unix `SOCK_SEQPACKET` socket at `INPOD_UDS`, reconnected
//! with back-off (10 ms doubling to 15 s) for as long as the proxy runs. The proxy is not ready until the
//! agent's snapshot is complete on a connection, and not ready again while it is disconnected; the Pods it
//! serves stay served across reconnections (the agent names them again, then `SnapshotSent` stops the rest).

use std::collections::BTreeMap;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use mesh_runtime::ops::{Blocker, Readiness};
use mesh_runtime::shutdown::Shutdown;
use mesh_xds::zds::{self, Action, PodInfo, Session};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags, SocketAddrUnix,
    SocketType,
};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{Netns, Pod, PodEvent};

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(15);
const NOT_READY: &str = "the istio-cni node agent's snapshot (INPOD_UDS)";

/// Follows the agent at `path` until `shutdown`, handing each Pod to the proxy through `events`.
pub(crate) async fn run(
    path: std::path::PathBuf,
    events: mpsc::Sender<PodEvent>,
    readiness: Readiness,
    shutdown: Shutdown,
) {
    let mut served: BTreeMap<String, Option<PodInfo>> = BTreeMap::new();
    let mut blocker = Some(readiness.block(NOT_READY));
    let mut backoff = FIRST_BACKOFF;
    loop {
        let connected = tokio::select! {
            connected = async { connect(&path) } => connected,
            () = shutdown.wait() => return,
        };
        let socket = match connected {
            Ok(socket) => socket,
            Err(e) => {
                warn!(path = %path.display(), error = %e, retry_in = ?backoff, "cannot connect to the istio-cni node agent; is it running?");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.wait() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        info!(path = %path.display(), "connected to the istio-cni node agent");
        let ended = follow(&socket, &mut served, &events, &mut blocker, &readiness, &shutdown).await;
        match ended {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, served = served.len(), "connection to the istio-cni node agent lost; the Pods served stay served; reconnecting")
            }
        }
        if blocker.is_none() {
            blocker = Some(readiness.block(NOT_READY));
        }
    }
}

/// One connection: hello, then one answer per request. `Ok` when the proxy stops.
async fn follow(
    socket: &UnixStream,
    served: &mut BTreeMap<String, Option<PodInfo>>,
    events: &mpsc::Sender<PodEvent>,
    blocker: &mut Option<Blocker>,
    readiness: &Readiness,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let mut session = Session::new(served.clone());
    send(socket, &zds::hello()).await?;
    loop {
        let packet = tokio::select! {
            packet = receive(socket) => packet?,
            () = shutdown.wait() => return Ok(()),
        };
        let (bytes, descriptors, truncated) = packet;
        if bytes.is_empty() && descriptors.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the agent closed the connection"));
        }
        let answer = match zds::decode(&bytes, descriptors, truncated) {
            Err(refused) => {
                warn!(error = %refused.error, "request of the istio-cni node agent refused");
                zds::nack(&refused.error.to_string())
            }
            Ok(request) => match session.apply(request) {
                Err(e) => {
                    warn!(error = %e, "request of the istio-cni node agent refused");
                    zds::nack(&e.to_string())
                }
                Ok(action) => match act(action, &mut session, events).await {
                    Some(Ok(())) => zds::ack(),
                    Some(Err(e)) => zds::nack(&e),
                    None => return Ok(()),
                },
            },
        };
        send(socket, &answer).await?;
        *served = session.served().map(|(uid, info)| (uid.to_owned(), info.cloned())).collect();
        if session.snapshot_complete()
            && let Some(blocker) = blocker.take()
        {
            info!(pods = served.len(), "the istio-cni node agent's snapshot is in");
            blocker.release();
            readiness.clear_note("istio-cni");
        }
    }
}

/// Has the proxy do what `action` says; `None` when the proxy is stopping.
async fn act(
    action: Action<OwnedFd>,
    session: &mut Session,
    events: &mpsc::Sender<PodEvent>,
) -> Option<Result<(), String>> {
    match action {
        Action::Keep => Some(Ok(())),
        Action::Serve { uid, info, netns } => {
            let Some(info) = info else {
                session.failed(&uid);
                return Some(Err(format!(
                    "add of Pod {uid} without workload_info: the Pod cannot be matched to its workload"
                )));
            };
            debug!(%uid, pod = %format!("{}/{}", info.namespace, info.name), "Pod handed over");
            let (done, result) = oneshot::channel();
            let pod = Pod { uid: uid.clone(), info, netns: Netns::new(netns) };
            events.send(PodEvent::Serve { pod, done }).await.ok()?;
            let result = result.await.ok()?;
            if result.is_err() {
                session.failed(&uid);
            }
            Some(result)
        }
        Action::Stop(uids) => {
            for uid in uids {
                let (done, stopped) = oneshot::channel();
                events.send(PodEvent::Stop { uid, done }).await.ok()?;
                stopped.await.ok()?;
            }
            Some(Ok(()))
        }
    }
}

/// A connected, non-blocking SEQPACKET socket to `path`, registered with tokio.
fn connect(path: &Path) -> io::Result<UnixStream> {
    let socket =
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, rustix::net::SocketFlags::CLOEXEC, None)?;
    rustix::net::connect(&socket, &SocketAddrUnix::new(path)?)?;
    rustix::io::ioctl_fionbio(&socket, true)?;
    // tokio's unix stream only waits for readiness and hands the descriptor to the calls below; packets keep
    // their boundaries.
    UnixStream::from_std(std::os::unix::net::UnixStream::from(socket))
}

async fn send(socket: &UnixStream, bytes: &[u8]) -> io::Result<()> {
    loop {
        socket.writable().await?;
        match socket.try_io(Interest::WRITABLE, || Ok(rustix::net::send(socket, bytes, SendFlags::NOSIGNAL)?)) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One packet: its bytes, the descriptors that came with it, and whether anything was cut.
async fn receive(socket: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>, bool)> {
    // Room for one more byte and one more descriptor than allowed, so that excess shows as truncation or as
    // a second descriptor, never silently.
    let mut buffer = vec![0u8; zds::MAX_PACKET + 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    loop {
        socket.readable().await?;
        let received = socket.try_io(Interest::READABLE, || {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let message = rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
            let mut descriptors = Vec::new();
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = m {
                    descriptors.extend(rights);
                }
            }
            let truncated = message.flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC);
            Ok((message.bytes, descriptors, truncated))
        });
        match received {
            Ok((n, descriptors, truncated)) => {
                buffer.truncate(n);
                return Ok((buffer, descriptors, truncated));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
