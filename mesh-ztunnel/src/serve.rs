//! Startup, the run loop and shutdown: configuration, identity, listeners, then following configuration
//! changes until SIGTERM, then draining.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mesh_hbone::transport::{ClientConfig, HboneClient, HboneServer, InboundRequest, WorkloadIdentities};
use mesh_identity::spiffe::IstioIdentity;
use mesh_runtime::http::{Reply, Routes};
use mesh_runtime::pki::Pki;
use mesh_runtime::shutdown::{self, Shutdown};
use mesh_runtime::source::{ConfigSource, FileSource};
use mesh_runtime::state::MeshState;
use mesh_runtime::{http, listen, rotation};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::args::Args;
use crate::node::Node;
use crate::{admin, capture, inbound, plaintext, socks5};

/// Runs the node proxy until SIGTERM or SIGINT, then drains.
pub async fn run(args: Args) -> Result<(), String> {
    let common = &args.common;
    let trust_domain = common.trust_domain()?;

    // Configuration: read once now (an unreadable or invalid configuration stops the start), then followed.
    let source = FileSource::new(common.config.clone(), common.reload_interval);
    let documents = source.load().map_err(|e| format!("configuration: {e}"))?;
    let state = Arc::new(MeshState::new(common.mesh_config()));
    state.apply(&documents).map_err(|errors| format!("configuration is invalid:\n  {}", errors.join("\n  ")))?;

    // Identity.
    let pki = Pki::load(common).map_err(|e| e.to_string())?;
    let store = pki.store.clone();
    let identities = WorkloadIdentities::new(store.clone(), pki.accepted.clone()).map_err(|e| e.to_string())?;
    let own = IstioIdentity::new(&trust_domain, "istio-system", "ztunnel").map_err(|e| e.to_string())?;
    // Tunnels leave from the source workload's own address where it can be bound (each Pod's address on this
    // machine, or with --original-source), so the peer's policies see the Pod, not the node.
    // The proxy's own connections carry its mark, so redirection rules let them pass.
    let mark = args.mark().filter(|&mark| mark_allowed(mark));
    let client_config = ClientConfig {
        original_source: args.original_source || args.listen_on_workload_ips,
        mark,
        ..ClientConfig::default()
    };
    let client = HboneClient::from_store_with_config(store.clone(), own.spiffe_id().clone(), client_config);
    let mut node = Node::new(
        args.node.clone(),
        Arc::clone(&state),
        pki.clone(),
        identities.clone(),
        client,
        args.inbound_addr.port(),
    );
    node.mark = mark;
    let node = Arc::new(node);
    let local = node.sync(&state.snapshot());
    if local.is_empty() {
        warn!(node = %args.node, "no enrolled Pod of the configuration runs on this node (spec.nodeName)");
    }

    // `down` closes the listeners that carry traffic; the operational endpoints stay up (readiness answering
    // 503) until the drain is over.
    let (trigger, down) = shutdown::channel();
    let (ops_trigger, ops_down) = shutdown::channel();
    let mut tasks = JoinSet::new();

    // Operational endpoints.
    let admin = listen::bind("admin", common.admin_addr, "--admin-addr").await.map_err(|e| e.to_string())?;
    let metrics = listen::bind("metrics", common.metrics_addr, "--metrics-addr").await.map_err(|e| e.to_string())?;
    let readiness =
        listen::bind("readiness", common.readiness_addr, "--readiness-addr").await.map_err(|e| e.to_string())?;
    tasks.spawn(http::serve(admin, admin::routes(Arc::clone(&node)), ops_down.clone()));
    let n = Arc::clone(&node);
    let metrics_routes = Routes::new()
        .get("/metrics", "Prometheus metrics", {
            let n = Arc::clone(&n);
            move |_| Reply::with_type("application/openmetrics-text; version=1.0.0; charset=utf-8", n.metrics.encode())
        })
        .get("/stats/prometheus", "Prometheus metrics", move |_| {
            Reply::with_type("application/openmetrics-text; version=1.0.0; charset=utf-8", n.metrics.encode())
        });
    tasks.spawn(http::serve(metrics, metrics_routes, ops_down.clone()));
    let n = Arc::clone(&node);
    let ready_routes = Routes::new().get("/healthz/ready", "200 once serving", move |_| {
        if n.is_ready() { Reply::text("ready\n") } else { Reply::status(http_status(503), "not ready\n") }
    });
    tasks.spawn(http::serve(readiness, ready_routes, ops_down.clone()));

    // Outbound listeners.
    if args.enabled("socks5") {
        let l = listen::bind("SOCKS5", args.socks5_addr, "--socks5-addr").await.map_err(|e| e.to_string())?;
        tasks.spawn(socks5::serve(Arc::clone(&node), l, down.clone()));
    }
    if args.enabled("outbound") {
        let l = listen::bind("outbound", args.outbound_addr, "--outbound-addr").await.map_err(|e| e.to_string())?;
        tasks.spawn(capture::serve(Arc::clone(&node), l, down.clone()));
    }

    // Inbound listeners: one shared address, or one per local workload IP.
    let server = HboneServer::with_identity(identities).with_tunnels(node.inbound_tunnels.clone());
    let mut inbound =
        Inbound { node: Arc::clone(&node), server, args: args.clone(), down: down.clone(), bound: HashMap::new() };
    if args.listen_on_workload_ips {
        inbound.sync(&local).await;
    } else {
        inbound.bind(None).await?;
    }

    // Configuration changes: reload, then bring certificates, listeners and live connections in line.
    let (updates_tx, updates_rx) = mpsc::channel(4);
    info!(source = %source.describe(), "following configuration");
    tasks.spawn(Box::new(source).run(updates_tx));
    tasks.spawn(Arc::clone(&state).follow(updates_rx));
    let mut snapshots = state.subscribe();
    snapshots.mark_unchanged();
    tasks.spawn(rotation::run(store, Arc::clone(&pki.ca), down.clone()));

    node.ready.store(true, Ordering::Relaxed);
    info!(node = %args.node, workloads = local.len(), "ready");

    let mut signal = tokio::spawn(shutdown::signal());
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() { break; }
                let snapshot = snapshots.borrow_and_update().clone();
                // Issuing certificates is CPU work: off the tasks that carry traffic.
                let (n, s) = (Arc::clone(&node), Arc::clone(&snapshot));
                let Ok(local) = tokio::task::spawn_blocking(move || n.sync(&s)).await else { break };
                if args.listen_on_workload_ips {
                    inbound.sync(&local).await;
                }
                let (n, s) = (Arc::clone(&node), Arc::clone(&snapshot));
                let closed = tokio::task::spawn_blocking(move || n.live.enforce(&n, &s)).await.unwrap_or(0);
                let alive: std::collections::HashSet<(&str, &str)> = snapshot
                    .cluster()
                    .workloads()
                    .map(|(_, w)| (w.namespace(), w.workload_name.as_str()))
                    .collect();
                let pruned = node.metrics.prune(|namespace, name| alive.contains(&(namespace, name)));
                info!(generation = snapshot.generation(), workloads = local.len(), closed, pruned, "configuration in force");
            }
            _ = &mut signal => break,
        }
    }
    // Readiness answers 503 first, then the listeners close; connections in flight get the drain timeout.
    node.ready.store(false, Ordering::Relaxed);
    trigger.trigger();
    info!(timeout = ?common.drain_timeout, open = node.connections.open(), "draining");
    let drained = node.connections.drain(common.drain_timeout).await;
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

fn http_status(code: u16) -> ::http::StatusCode {
    ::http::StatusCode::from_u16(code).unwrap_or(::http::StatusCode::SERVICE_UNAVAILABLE)
}

/// The inbound listeners, bound once or per local workload IP.
struct Inbound {
    node: Arc<Node>,
    server: HboneServer,
    args: Args,
    down: Shutdown,
    /// Per bound IP (`None`: the shared address): the listeners' stop signal and tasks.
    bound: HashMap<Option<IpAddr>, (watch::Sender<bool>, JoinSet<()>)>,
}

impl Inbound {
    /// Binds HBONE and plaintext on `ip` (the configured addresses' ports), or on the configured addresses.
    async fn bind(&mut self, ip: Option<IpAddr>) -> Result<(), String> {
        let at = |addr: SocketAddr| ip.map_or(addr, |ip| SocketAddr::new(ip, addr.port()));
        let hbone = listen::bind("inbound HBONE", at(self.args.inbound_addr), "--inbound-addr")
            .await
            .map_err(|e| e.to_string())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut set = JoinSet::new();
        let server = self.server.clone();
        let node = Arc::clone(&self.node);
        let down = self.down.clone();
        let drain = self.args.common.drain_timeout;
        let mut stop = stop_rx.clone();
        set.spawn(async move {
            // Boxed: the decision's state is freed once it is made, and only the relay's stays for the tunnel's life.
            let handler = move |request: InboundRequest| Box::pin(inbound::handle(Arc::clone(&node), request));
            let until = async move {
                tokio::select! {
                    () = down.wait() => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            };
            if let Err(e) = server.serve_until(hbone, handler, until, drain).await {
                warn!(error = %e, "inbound HBONE listener failed");
            }
        });
        if self.args.enabled("plaintext") {
            let plain =
                listen::bind("inbound plaintext", at(self.args.inbound_plaintext_addr), "--inbound-plaintext-addr")
                    .await
                    .map_err(|e| e.to_string())?;
            let node = Arc::clone(&self.node);
            let (plain_down_tx, plain_down) = shutdown::channel();
            let down = self.down.clone();
            let mut stop = stop_rx;
            set.spawn(async move {
                tokio::select! {
                    () = plaintext::serve(node, plain, plain_down) => {}
                    () = async {
                        tokio::select! {
                            () = down.wait() => {}
                            _ = stop.wait_for(|s| *s) => {}
                        }
                        plain_down_tx.trigger();
                        std::future::pending::<()>().await
                    } => {}
                }
            });
        }
        self.bound.insert(ip, (stop_tx, set));
        Ok(())
    }

    /// Binds listeners for new local IPs and stops those of IPs no longer local.
    async fn sync(&mut self, local: &std::collections::BTreeSet<IpAddr>) {
        let gone: Vec<Option<IpAddr>> =
            self.bound.keys().filter(|ip| !ip.is_some_and(|ip| local.contains(&ip))).copied().collect();
        for ip in gone {
            if let Some((stop, _set)) = self.bound.remove(&ip) {
                stop.send_replace(true);
                info!(ip = ?ip, "inbound listeners closed: no local workload has the address");
            }
        }
        for ip in local {
            if !self.bound.contains_key(&Some(*ip)) {
                match self.bind(Some(*ip)).await {
                    Ok(()) => info!(%ip, "inbound listeners bound for workload"),
                    Err(e) => warn!(%ip, error = %e, "cannot bind inbound listeners for workload"),
                }
            }
        }
    }

    /// Waits for every listener to drain.
    async fn drain(&mut self) {
        for (_, (_, mut set)) in self.bound.drain() {
            while set.join_next().await.is_some() {}
        }
    }
}
