//! Startup, the run loop and shutdown: identity and listeners, then the first configuration from the source,
//! then following its changes until the caller's shutdown signal, then draining.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mesh_hbone::transport::{ClientConfig, HboneClient, HboneServer, InboundRequest, WorkloadIdentities};
use mesh_identity::spiffe::IstioIdentity;
use mesh_runtime::ops::{OpsListeners, Readiness, metrics_routes};
use mesh_runtime::pki::Pki;
use mesh_runtime::shutdown::{self, Shutdown};
use mesh_runtime::source::ConfigSource;
use mesh_runtime::state::MeshState;
use mesh_runtime::{listen, rotation};
use mesh_xds::zds::PodInfo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::inpod::{self, Netns, PodEvent, PodSocketFactory, PodSockets};
use crate::node::Node;
use crate::{Config, Error, admin, capture, inbound, plaintext, socks5};

/// Runs the node proxy with `config`, its configuration from `source`, until `shutdown`; then drains and
/// returns.
///
/// Every listener is bound first, so that a port in use is an error at once. The proxy serves once the
/// source's first valid configuration is in force: until then its readiness answers 503 saying so, and an
/// invalid configuration is reported (logs, `/config_dump`) while the proxy keeps waiting. From then on an
/// invalid update is reported and the configuration in force stays. On `shutdown` readiness answers 503,
/// the listeners close, connections in flight get `config.common.drain_timeout`, and the operational
/// endpoints stop last.
pub async fn run(config: Config, source: impl ConfigSource, shutdown: Shutdown) -> Result<(), Error> {
    config.common.validate()?;
    let pki = Pki::load(&config.common)?;
    run_with_pki(config, source, pki, shutdown).await
}

/// Runs the node proxy as [`run`], its certificates from `pki` instead of the CA of `config`: a remote CA such
/// as istiod's ([`Pki::remote`]), or a CA the caller set up.
pub async fn run_with_pki(
    config: Config,
    source: impl ConfigSource,
    pki: Pki,
    shutdown: Shutdown,
) -> Result<(), Error> {
    config.common.validate()?;
    let trust_domain = config.common.trust_domain()?;
    let state = Arc::new(MeshState::new(config.common.mesh.clone()));
    let readiness = Readiness::new();
    let first_configuration = readiness.block("the first configuration");

    // Identity.
    let store = pki.store.clone();
    let identities =
        WorkloadIdentities::new(store.clone(), pki.accepted.clone()).map_err(|e| Error::Identity(e.to_string()))?;
    let own =
        IstioIdentity::new(&trust_domain, "istio-system", "ztunnel").map_err(|e| Error::Identity(e.to_string()))?;
    // Tunnels leave from the source workload's own address where it can be bound (each Pod's address on this
    // machine, or with `original_source`), so the peer's policies see the Pod, not the node.
    // The proxy's own connections carry its mark, so redirection rules let them pass.
    let mark = config.socket_mark.filter(|&mark| mark_allowed(mark));
    let client_config = ClientConfig { original_source: config.dials_from_workload(), mark, ..ClientConfig::default() };
    // In-pod mode: a Pod's tunnels are made inside its network namespace.
    let pods = Arc::new(PodSockets::default());
    let mut client = HboneClient::from_store_with_config(store.clone(), own.spiffe_id().clone(), client_config);
    if config.inpod_uds.is_some() {
        client = client.with_socket_factory(Arc::new(PodSocketFactory(Arc::clone(&pods))));
    }
    let description = source.describe();
    let node = Arc::new(Node::new(
        config.clone(),
        Arc::clone(&state),
        pki.clone(),
        identities.clone(),
        client,
        readiness.clone(),
        mark,
        description.clone(),
        Arc::clone(&pods),
    ));

    // Every listener that does not depend on the configuration, bound now.
    let ops = OpsListeners::bind(&config.common.endpoints).await?;
    let socks5_listener = bind_optional("SOCKS5", config.socks5_addr, "--socks5-addr").await?;
    let outbound_listener = bind_optional("outbound", config.outbound_addr, "--outbound-addr").await?;
    let server = HboneServer::with_identity(identities).with_tunnels(node.inbound_tunnels.clone());
    let mut inbound =
        Inbound { node: Arc::clone(&node), server, config: config.clone(), bound: HashMap::new(), waiting: Vec::new() };
    if !config.listen_on_workload_ips && config.inpod_uds.is_none() {
        inbound.bind(None).await?;
    }

    // The operational endpoints stay up (readiness answering 503) until the drain is over.
    let (ops_trigger, ops_down) = shutdown::channel();
    let metrics = {
        let node = Arc::clone(&node);
        metrics_routes(move || node.metrics.encode())
    };
    let mut tasks = ops.serve(admin::routes(Arc::clone(&node)), metrics, &readiness, &ops_down);

    // Configuration: the source's updates applied as they come.
    let (updates_tx, updates_rx) = mpsc::channel(4);
    info!(source = %description, node = %config.node, "waiting for the first configuration");
    tasks.spawn(Box::new(source).run(updates_tx));
    tasks.spawn(Arc::clone(&state).follow(updates_rx, readiness.clone()));
    let mut snapshots = state.subscribe();
    while state.status().applied == 0 {
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            () = shutdown.wait() => {
                info!("stopped before the first configuration");
                ops_trigger.trigger();
                return Ok(());
            }
        }
    }
    snapshots.mark_unchanged();
    let snapshot = state.snapshot();
    let (n, s) = (Arc::clone(&node), Arc::clone(&snapshot));
    let local = tokio::task::spawn_blocking(move || n.sync(&s)).await.unwrap_or_default();
    if local.is_empty() {
        warn!(node = %config.node, "no enrolled Pod of the configuration runs on this node (spec.nodeName)");
    }

    // `down` closes the listeners that carry traffic.
    let (trigger, down) = shutdown::channel();
    inbound.start(&down);
    if config.listen_on_workload_ips {
        inbound.sync(&local, &down).await;
    }
    if let Some(l) = socks5_listener {
        tasks.spawn(socks5::serve(Arc::clone(&node), l, down.clone()));
    }
    if let Some(l) = outbound_listener {
        tasks.spawn(capture::serve(Arc::clone(&node), l, down.clone(), None));
    }
    tasks.spawn(rotation::run(pki.clone(), down.clone()));
    // In-pod mode: istio-cni's node agent is followed once the configuration is in, as Istio's ztunnel does.
    let (pod_events_tx, mut pod_events) = mpsc::channel(1);
    let mut in_pod: BTreeMap<String, (PodInfo, Netns)> = BTreeMap::new();
    if let Some(uds) = &config.inpod_uds {
        tasks.spawn(inpod::follow_agent(uds.clone(), pod_events_tx, readiness.clone(), down.clone()));
    } else {
        drop(pod_events_tx);
    }
    first_configuration.release();
    info!(node = %config.node, workloads = local.len(), generation = snapshot.generation(), "ready");
    drop(snapshot);

    // Configuration changes: certificates, listeners, live connections and metrics brought in line.
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() { break; }
                let snapshot = snapshots.borrow_and_update().clone();
                // Issuing certificates is CPU work: off the tasks that carry traffic.
                let (n, s) = (Arc::clone(&node), Arc::clone(&snapshot));
                let Ok(local) = tokio::task::spawn_blocking(move || n.sync(&s)).await else { break };
                if config.listen_on_workload_ips {
                    inbound.sync(&local, &down).await;
                }
                if !in_pod.is_empty() {
                    pods.replace(inpod::addresses(snapshot.cluster(), &in_pod, |w| node.is_local(w)));
                }
                let (n, s) = (Arc::clone(&node), Arc::clone(&snapshot));
                let closed = tokio::task::spawn_blocking(move || n.live.enforce(&n, &s)).await.unwrap_or(0);
                let alive: std::collections::HashSet<(&str, &str)> = snapshot
                    .cluster()
                    .workloads()
                    .map(|(_, w)| (w.namespace(), w.workload_name.as_str()))
                    .collect();
                let pruned = node.metrics.tcp.prune(|namespace, name| alive.contains(&(namespace, name)));
                info!(generation = snapshot.generation(), workloads = local.len(), closed, pruned, "configuration in force");
            }
            Some(event) = pod_events.recv() => match event {
                PodEvent::Serve { pod, done } => {
                    let uid = pod.uid.clone();
                    let name = format!("{}/{}", pod.info.namespace, pod.info.name);
                    inbound.stop(&Listeners::Pod(uid.clone()));
                    let result = inbound.bind_pod(&pod, &down).await.map_err(|e| e.to_string());
                    match &result {
                        Ok(()) => {
                            info!(pod = %name, %uid, "serving the Pod in its network namespace");
                            in_pod.insert(uid, (pod.info, pod.netns));
                        }
                        Err(e) => {
                            warn!(pod = %name, %uid, error = %e, "cannot serve the Pod in its network namespace");
                            in_pod.remove(&uid);
                        }
                    }
                    pods.replace(inpod::addresses(state.snapshot().cluster(), &in_pod, |w| node.is_local(w)));
                    let _ = done.send(result);
                }
                PodEvent::Stop { uid, done } => {
                    if let Some((info, _)) = in_pod.remove(&uid) {
                        inbound.stop(&Listeners::Pod(uid.clone()));
                        pods.replace(inpod::addresses(state.snapshot().cluster(), &in_pod, |w| node.is_local(w)));
                        info!(pod = %format!("{}/{}", info.namespace, info.name), %uid, "Pod no longer served");
                    }
                    let _ = done.send(());
                }
            },
            () = shutdown.wait() => break,
        }
    }
    // Readiness answers 503 first, then the listeners close; connections in flight get the drain timeout.
    readiness.drain();
    trigger.trigger();
    let drain_timeout = config.common.drain_timeout;
    info!(timeout = ?drain_timeout, open = node.connections.open(), "draining");
    let drained = node.connections.drain(drain_timeout).await;
    if drained.closed_at_deadline > 0 {
        warn!(closed = drained.closed_at_deadline, "drain deadline passed; connections still open were closed");
    }
    if tokio::time::timeout(std::time::Duration::from_secs(1), inbound.drain()).await.is_err() {
        warn!("inbound listeners did not stop in time");
    }
    ops_trigger.trigger();
    tasks.abort_all();
    info!(drained = drained.at_start, "stopped");
    Ok(())
}

async fn bind_optional(
    what: &'static str,
    addr: Option<SocketAddr>,
    flag: &'static str,
) -> Result<Option<TcpListener>, Error> {
    match addr {
        Some(addr) => Ok(Some(listen::bind(what, addr, flag).await?)),
        None => Ok(None),
    }
}

/// Whether this process may mark its sockets (`SO_MARK` needs `CAP_NET_ADMIN`). Without the capability the
/// proxy runs unmarked and says so: that is the one-machine mode, where no redirection rules are involved.
fn mark_allowed(mark: u32) -> bool {
    let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
    match probe.and_then(|socket| socket.set_mark(mark)) {
        Ok(()) => true,
        Err(error) => {
            warn!(mark, %error, "cannot mark the proxy's own connections (SO_MARK needs CAP_NET_ADMIN); they leave unmarked, so redirection rules must not catch them by mark");
            false
        }
    }
}

/// Which inbound listeners: the shared ones, a local workload's IP, or a Pod served in-pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Listeners {
    Shared,
    Ip(IpAddr),
    /// By uid; with the Pod's outbound listener.
    Pod(String),
}

/// Listeners bound, not yet served: inbound HBONE, inbound plaintext, and for a Pod its outbound listener.
struct Bound {
    key: Listeners,
    hbone: TcpListener,
    plain: Option<TcpListener>,
    /// A Pod's outbound listener, and the Pod's uid.
    outbound: Option<(TcpListener, String)>,
}

/// The inbound listeners: bound once on the configured addresses, per local workload IP, or inside each Pod
/// served in-pod. The shared ones are bound before the first configuration and served from
/// [`Inbound::start`].
struct Inbound {
    node: Arc<Node>,
    server: HboneServer,
    config: Config,
    /// The listeners' stop signal and tasks.
    bound: HashMap<Listeners, (watch::Sender<bool>, JoinSet<()>)>,
    /// Listeners bound but not yet served.
    waiting: Vec<Bound>,
}

impl Inbound {
    /// Binds HBONE and plaintext on `ip` (the configured addresses' ports), or on the configured addresses;
    /// they are served from [`Inbound::start`].
    async fn bind(&mut self, ip: Option<IpAddr>) -> Result<(), Error> {
        let at = |addr: SocketAddr| ip.map_or(addr, |ip| SocketAddr::new(ip, addr.port()));
        let hbone = listen::bind("inbound HBONE", at(self.config.inbound_addr), "--inbound-addr").await?;
        let plain = match self.config.inbound_plaintext_addr {
            Some(addr) => Some(listen::bind("inbound plaintext", at(addr), "--inbound-plaintext-addr").await?),
            None => None,
        };
        let key = ip.map_or(Listeners::Shared, Listeners::Ip);
        self.waiting.push(Bound { key, hbone, plain, outbound: None });
        Ok(())
    }

    /// Binds and serves, inside `pod`'s network namespace, inbound HBONE and plaintext and the outbound
    /// listener, on the configured ports of every address of the Pod (transparent, marked).
    async fn bind_pod(&mut self, pod: &inpod::Pod, down: &Shutdown) -> Result<(), Error> {
        let ports = [
            Some(self.config.inbound_addr.port()),
            self.config.inbound_plaintext_addr.map(|a| a.port()),
            self.config.outbound_addr.map(|a| a.port()),
        ];
        let (netns, mark) = (pod.netns.clone(), self.node.mark);
        let made = tokio::task::spawn_blocking(move || {
            ports
                .map(|port| port.map(|port| netns.listener(SocketAddr::from(([0, 0, 0, 0], port)), mark)).transpose())
                .into_iter()
                .collect::<std::io::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::InPod { uid: pod.uid.clone(), reason: e.to_string() })?;
        let in_pod = |error: std::io::Error| Error::InPod { uid: pod.uid.clone(), reason: error.to_string() };
        let listeners = made.map_err(in_pod)?;
        let tokio_listener =
            |l: Option<std::net::TcpListener>| l.map(TcpListener::from_std).transpose().map_err(in_pod);
        let mut it = listeners.into_iter();
        let hbone = tokio_listener(it.next().flatten())?
            .ok_or_else(|| Error::InPod { uid: pod.uid.clone(), reason: "no inbound HBONE port".into() })?;
        let plain = tokio_listener(it.next().flatten())?;
        let outbound = tokio_listener(it.next().flatten())?.map(|l| (l, pod.uid.clone()));
        self.waiting.push(Bound { key: Listeners::Pod(pod.uid.clone()), hbone, plain, outbound });
        self.start(down);
        Ok(())
    }

    /// Stops the listeners of `key`, if bound.
    /// The listeners close at once; their connections drain (GOAWAY: new tunnels go elsewhere, those in flight
    /// get the drain timeout), so the tasks are left to finish rather than aborted.
    fn stop(&mut self, key: &Listeners) {
        if let Some((stop, mut set)) = self.bound.remove(key) {
            stop.send_replace(true);
            set.detach_all();
        }
    }

    /// Serves every listener bound and not yet served, until `down`.
    fn start(&mut self, down: &Shutdown) {
        for Bound { key, hbone, plain, outbound } in std::mem::take(&mut self.waiting) {
            let (stop_tx, stop_rx) = watch::channel(false);
            let mut set = JoinSet::new();
            let server = self.server.clone();
            let node = Arc::clone(&self.node);
            let until_down = down.clone();
            let drain = self.config.common.drain_timeout;
            let mut stop = stop_rx.clone();
            set.spawn(async move {
                // Boxed: the decision's state is freed once it is made, and only the relay's stays for the
                // tunnel's life.
                let handler = move |request: InboundRequest| Box::pin(inbound::handle(Arc::clone(&node), request));
                let until = async move {
                    tokio::select! {
                        () = until_down.wait() => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                };
                if let Err(e) = server.serve_until(hbone, handler, until, drain).await {
                    warn!(error = %e, "inbound HBONE listener failed");
                }
            });
            if let Some(plain) = plain {
                let node = Arc::clone(&self.node);
                let plain_down = stopped(down.clone(), stop_rx.clone());
                set.spawn(async move { plaintext::serve(node, plain, plain_down).await });
            }
            if let Some((outbound, pod)) = outbound {
                let node = Arc::clone(&self.node);
                let outbound_down = stopped(down.clone(), stop_rx.clone());
                set.spawn(async move { capture::serve(node, outbound, outbound_down, Some(pod)).await });
            }
            self.bound.insert(key, (stop_tx, set));
        }
    }

    /// Binds and serves listeners for new local IPs and stops those of IPs no longer local.
    async fn sync(&mut self, local: &std::collections::BTreeSet<IpAddr>, down: &Shutdown) {
        let gone: Vec<Listeners> = self
            .bound
            .keys()
            .filter(|key| matches!(key, Listeners::Shared) || matches!(key, Listeners::Ip(ip) if !local.contains(ip)))
            .cloned()
            .collect();
        for key in gone {
            self.stop(&key);
            info!(listeners = ?key, "inbound listeners closed: no local workload has the address");
        }
        for ip in local {
            if !self.bound.contains_key(&Listeners::Ip(*ip)) {
                match self.bind(Some(*ip)).await {
                    Ok(()) => info!(%ip, "inbound listeners bound for workload"),
                    Err(e) => warn!(%ip, error = %e, "cannot bind inbound listeners for workload"),
                }
            }
        }
        self.start(down);
    }

    /// Waits for every listener to drain.
    async fn drain(&mut self) {
        for (_, (_, mut set)) in self.bound.drain() {
            while set.join_next().await.is_some() {}
        }
    }
}

/// A shutdown signal that fires on `down` or once `stop` turns true.
fn stopped(down: Shutdown, mut stop: watch::Receiver<bool>) -> Shutdown {
    let (trigger, signal) = shutdown::channel();
    tokio::spawn(async move {
        tokio::select! {
            () = down.wait() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        trigger.trigger();
    });
    signal
}
